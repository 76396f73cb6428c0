#!/usr/bin/env bash
# Install and start PostgreSQL from Debian's packages for the call-log tests.
#
# Idempotent: safe to run again on a machine where it already ran (it only installs
# what is missing, starts the cluster when it is down and (re)sets the password).
# Runs as root. Progress goes to stderr; stdout is only the test database URL, so
#   CALLBRIDGE_TEST_PG_URL=$(bash .ci/postgres.sh)
# works.
set -euo pipefail

DB_USER=callbridge
DB_PASSWORD=callbridge
DATABASES=(callbridge callbridge_test callbridge_cluster callbridge_cluster_test)  # the multi-process cluster: bench, tests
PORT=5432

say() { echo "postgres.sh: $*" >&2; }

as_postgres() {
    # runuser is in util-linux (always there); su needs a login shell for postgres.
    if command -v runuser >/dev/null 2>&1; then
        runuser -u postgres -- "$@"
    else
        su postgres -s /bin/sh -c "$(printf '%q ' "$@")"
    fi
}

if [ "$(id -u)" -ne 0 ]; then
    say "must run as root (it installs packages and starts the server)"
    exit 1
fi

if ! dpkg-query -W -f='${Status}' postgresql 2>/dev/null | grep -q "install ok installed"; then
    say "installing PostgreSQL from Debian packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y --no-install-recommends postgresql >&2
fi

# The package normally creates a "main" cluster; a policy file may have prevented it.
if [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
    version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    say "creating cluster $version/main"
    pg_createcluster --port "$PORT" "$version" main >&2
fi

# Use the cluster on our port (or the first one if none is configured on it).
line=$(pg_lsclusters -h | awk -v p="$PORT" '$3 == p' | head -n 1)
if [ -z "$line" ]; then
    line=$(pg_lsclusters -h | head -n 1)
fi
read -r version cluster port status _ <<<"$line"
if [ "$port" != "$PORT" ]; then
    say "no cluster on port $PORT; using $version/$cluster on port $port"
fi

if [[ "$status" != online* ]]; then
    say "starting cluster $version/$cluster"
    # No systemd in containers: pg_ctlcluster starts the server directly.
    pg_ctlcluster "$version" "$cluster" start >&2 || service postgresql start >&2
fi

for _ in $(seq 1 60); do
    if pg_isready -q -h 127.0.0.1 -p "$port"; then
        break
    fi
    sleep 0.5
done
if ! pg_isready -q -h 127.0.0.1 -p "$port"; then
    say "PostgreSQL did not become ready on 127.0.0.1:$port"
    exit 1
fi

as_postgres psql -p "$port" -v ON_ERROR_STOP=1 -q >&2 <<SQL
DO \$\$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_USER') THEN
        CREATE ROLE $DB_USER LOGIN PASSWORD '$DB_PASSWORD';
    ELSE
        ALTER ROLE $DB_USER LOGIN PASSWORD '$DB_PASSWORD';
    END IF;
END
\$\$;
SQL

for db in "${DATABASES[@]}"; do
    exists=$(as_postgres psql -p "$port" -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")
    if [ "$exists" != "1" ]; then
        say "creating database $db"
        as_postgres createdb -p "$port" -O "$DB_USER" "$db" >&2
    fi
done

echo "postgresql+asyncpg://$DB_USER:$DB_PASSWORD@127.0.0.1:$port/callbridge_test"
