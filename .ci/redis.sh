#!/usr/bin/env bash
# Install Debian's redis-server for the cluster tests, and start the system one.
#
# The tests start private redis-server processes of their own (a free port, a temp dir, no
# persistence: tests/cluster/redis_server.py), so that one can be killed and restarted;
# the system server on 6379 is for `callbridge serve` with [cluster] on this machine.
# Idempotent and quiet: installs only what is missing; progress goes to stderr.
set -euo pipefail

say() { echo "redis.sh: $*" >&2; }

if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        say "must run as root to install redis-server"
        exit 1
    fi
    say "installing redis-server from Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi

if ! redis-cli -p 6379 ping >/dev/null 2>&1; then
    say "starting redis-server on 127.0.0.1:6379"
    # No systemd in containers: run it daemonized directly.
    redis-server --bind 127.0.0.1 --port 6379 --daemonize yes --save "" --appendonly no \
        --logfile /var/log/redis-callbridge.log >&2 || say "could not start the system redis-server"
fi
