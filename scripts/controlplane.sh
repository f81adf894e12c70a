#!/usr/bin/env bash
# Builds (once) the real control-plane binaries used by `make up` and the
# end-to-end tests, and prints the directory that holds them. The binaries are
# cached outside the clone, keyed by version, because a cold build takes ~8 min.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
K8S_VERSION=v1.35.4
ETCD_VERSION=v3.6.5
cache=${VK_TITUS_CACHE:-$HOME/.cache/vk-titus}
bin="$cache/controlplane/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
tools=(etcd kube-apiserver kube-scheduler kube-controller-manager kubectl)

missing=()
for t in "${tools[@]}"; do [ -x "$bin/$t" ] || missing+=("$t"); done
if [ ${#missing[@]} -gt 0 ]; then
  mkdir -p "$bin"
  cd "$here/tools/controlplane"
  major=${K8S_VERSION#v}; major=${major%%.*}
  minor=${K8S_VERSION#v*.}; minor=${minor%%.*}
  ld=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  for t in "${missing[@]}"; do
    case $t in
      etcd) pkg=go.etcd.io/etcd/server/v3 ;;
      *) pkg=k8s.io/kubernetes/cmd/$t ;;
    esac
    echo "building $t ($pkg) into $bin ..." >&2
    start=$(date +%s)
    # Build to a temp name and rename, so an interrupted build never leaves a
    # half-written binary that the cache check would take for a good one.
    go build -trimpath -ldflags "-s -w $ld" -o "$bin/.$t.tmp" "$pkg"
    mv "$bin/.$t.tmp" "$bin/$t"
    echo "built $t in $(( $(date +%s) - start ))s" >&2
  done
fi
echo "$bin"
