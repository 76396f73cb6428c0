#!/bin/sh
# How web/static/vendor/chart.umd.min.js was obtained (the /reports page's charts).
#
#   Chart.js (npm package "chart.js"), version below, MIT licence, https://www.chartjs.org/
#   Source: https://github.com/chartjs/Chart.js
#
# npm installs the published package in a throw-away directory (no install scripts run);
# its single-file UMD build, which bundles its one dependency (@kurkle/color, MIT), is
# copied with the licence next to it. No CDN: the pages load it from /static/vendor/ under
# their strict Content-Security-Policy (Chart.js draws on <canvas> and needs no eval).
# Run it again to refresh (change VERSION), then commit web/static/vendor/.
set -eu

VERSION="${CHARTJS_VERSION:-4.6.2}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$HERE/web/static/vendor"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

cd "$TMP"
npm init -y >/dev/null
npm install --ignore-scripts --no-audit --no-fund "chart.js@$VERSION" >/dev/null
PKG="$TMP/node_modules/chart.js"
test "$(node -p "require('$PKG/package.json').version")" = "$VERSION"
test "$(node -p "require('$PKG/package.json').license")" = "MIT"

mkdir -p "$DEST"
cp "$PKG/dist/chart.umd.min.js" "$DEST/chart.umd.min.js"
cp "$PKG/LICENSE.md" "$DEST/chart.js.LICENSE.md"
{
    echo "chart.umd.min.js: Chart.js $VERSION (npm package chart.js), MIT licence (chart.js.LICENSE.md)."
    echo "Obtained by scripts/vendor-chartjs.sh (npm install chart.js@$VERSION; tarball $(npm view "chart.js@$VERSION" dist.tarball))"
    echo "integrity $(node -p "require('$TMP/package-lock.json').packages['node_modules/chart.js'].integrity")"
    echo "sha256 $(sha256sum "$DEST/chart.umd.min.js" | cut -d' ' -f1)  chart.umd.min.js"
} > "$DEST/README.txt"
cat "$DEST/README.txt"
