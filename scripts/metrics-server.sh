#!/usr/bin/env bash
# Builds (once) metrics-server, which the local stack runs for `kubectl top`,
# from the pinned module in tools/metricsserver, and prints the directory that
# holds it. Cached outside the clone, keyed by version, like the control plane
# (scripts/controlplane.sh): a cold build takes minutes.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
# The version is the one tools/metricsserver/go.mod pins.
VERSION=$(sed -n 's|^require sigs.k8s.io/metrics-server \(v[^ ]*\)$|\1|p' "$here/tools/metricsserver/go.mod")
[ -n "$VERSION" ] || { echo "metrics-server.sh: no sigs.k8s.io/metrics-server version in tools/metricsserver/go.mod" >&2; exit 1; }
cache=${VK_TITUS_CACHE:-$HOME/.cache/vk-titus}
bin="$cache/metrics-server/$VERSION"

if [ ! -x "$bin/metrics-server" ]; then
  mkdir -p "$bin"
  cd "$here/tools/metricsserver"
  echo "building metrics-server $VERSION into $bin ..." >&2
  start=$(date +%s)
  # Built to a temp name and renamed, so an interrupted build never leaves a
  # half-written binary that the check above would take for a good one.
  # Its Makefile stamps the version into client-go's, as here.
  go build -trimpath -ldflags "-s -w -X k8s.io/client-go/pkg/version.gitVersion=$VERSION" \
    -o "$bin/.metrics-server.tmp" sigs.k8s.io/metrics-server/cmd/metrics-server
  mv "$bin/.metrics-server.tmp" "$bin/metrics-server"
  echo "built metrics-server in $(($(date +%s) - start))s" >&2
fi
echo "$bin"
