#!/usr/bin/env bash
# Build the binaries of the local kwok test cluster (tools/cluster.sh) from Go modules, idempotently:
#   kwok, kwokctl                      go install sigs.k8s.io/kwok/cmd/...@KWOK_VERSION
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl
#                                      from tools/k8s (k8s.io/kubernetes@KUBERNETES_VERSION)
#   etcd                               from tools/etcd (go.etcd.io/etcd/server/v3@ETCD_VERSION)
# into a versioned cache outside the work tree:
#   ${OVERSEER_CACHE:-$HOME/.cache/overseer}/cluster/<versions>/bin
# and copies kwok's default Stage manifests (what `kwokctl create cluster` uses when given no stages)
# from the kwok module to <versions>/stages, so tools/cluster.sh can add a stage of its own to them.
# Nothing is downloaded but Go modules. A first build takes many minutes on 2 cores (run under nice);
# once the binaries exist a run returns at once.
#
# Usage: tools/cluster-tools.sh            build what is missing, then print the bin dir (last line)
#        tools/cluster-tools.sh --bin-dir  only print the bin dir
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

cache="${OVERSEER_CACHE:-$HOME/.cache/overseer}"
vdir="$cache/cluster/kwok-${KWOK_VERSION}_k8s-${KUBERNETES_VERSION}_etcd-${ETCD_VERSION}"
bin="$vdir/bin"
stages="$vdir/stages"

if [[ "${1:-}" == "--bin-dir" ]]; then
  echo "$bin"
  exit 0
fi

log() { echo "cluster-tools: $*" >&2; }

kwok_bins=(kwok kwokctl)
k8s_bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
etcd_bins=(etcd)
# kwokctl's defaults (pkg/kwokctl/runtime/cluster.go): node-initialize, node-heartbeat-with-lease
# (node leases are on by default) and the "fast" pod stages.
stage_files=(
  node/fast/node-initialize.yaml
  node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
  pod/fast/pod-ready.yaml
  pod/fast/pod-complete.yaml
  pod/fast/pod-delete.yaml
)

have_all() {
  local b
  for b in "$@"; do [[ -x "$bin/$b" ]] || return 1; done
}

have_stages() {
  local f
  for f in "${stage_files[@]}"; do [[ -f "$stages/$(basename "$f")" ]] || return 1; done
}

if have_all "${kwok_bins[@]}" "${k8s_bins[@]}" "${etcd_bins[@]}" && have_stages; then
  log "all binaries present in $bin"
  echo "$bin"
  exit 0
fi

command -v go >/dev/null || { log "go is not installed"; exit 1; }
# The pins in versions.env and in the two build modules must agree.
grep -qE "^(require )?[[:space:]]*k8s.io/kubernetes ${KUBERNETES_VERSION}( |\$)" "$here/k8s/go.mod" \
  || { log "tools/k8s/go.mod does not require k8s.io/kubernetes ${KUBERNETES_VERSION} (see tools/versions.env)"; exit 1; }
grep -qE "^(require )?[[:space:]]*go.etcd.io/etcd/server/v3 ${ETCD_VERSION}( |\$)" "$here/etcd/go.mod" \
  || { log "tools/etcd/go.mod does not require go.etcd.io/etcd/server/v3 ${ETCD_VERSION} (see tools/versions.env)"; exit 1; }

mkdir -p "$bin"
# One builder at a time per version set (e.g. two make targets at once).
exec 9>"$vdir/.build.lock"
flock 9

# Never fetch another Go toolchain (no network for that); fail clearly instead.
export GOTOOLCHAIN=local
go_build=(nice -n 10 go)
tmp="$(mktemp -d "$vdir/build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

# Build into $tmp, then move into $bin: a binary in $bin is always a complete one.
install_from_tmp() {
  local b
  for b in "$@"; do mv -f "$tmp/$b" "$bin/$b"; done
}

if ! have_all "${kwok_bins[@]}"; then
  log "building kwok, kwokctl ${KWOK_VERSION} (go install)"
  start=$SECONDS
  GOBIN="$tmp" "${go_build[@]}" install -p 2 -trimpath \
    "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}" "sigs.k8s.io/kwok/cmd/kwokctl@${KWOK_VERSION}"
  install_from_tmp "${kwok_bins[@]}"
  log "kwok, kwokctl built in $((SECONDS - start)) s"
fi

if ! have_stages; then
  log "copying kwok ${KWOK_VERSION} default stages to $stages"
  kwok_dir="$(cd "$tmp" && go mod download -json "sigs.k8s.io/kwok@${KWOK_VERSION}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  [[ -d "$kwok_dir/kustomize/stage" ]] || { log "kwok module source not found (got '$kwok_dir')"; exit 1; }
  mkdir -p "$tmp/stages"
  for f in "${stage_files[@]}"; do cp "$kwok_dir/kustomize/stage/$f" "$tmp/stages/"; done
  mkdir -p "$stages"
  mv -f "$tmp/stages/"*.yaml "$stages/"
fi

if ! have_all "${etcd_bins[@]}"; then
  log "building etcd ${ETCD_VERSION} (tools/etcd)"
  start=$SECONDS
  (cd "$here/etcd" && "${go_build[@]}" build -p 2 -trimpath -o "$tmp/etcd" go.etcd.io/etcd/server/v3)
  install_from_tmp "${etcd_bins[@]}"
  log "etcd built in $((SECONDS - start)) s"
fi

if ! have_all "${k8s_bins[@]}"; then
  log "building ${k8s_bins[*]} ${KUBERNETES_VERSION} (tools/k8s; many minutes the first time)"
  start=$SECONDS
  kv="${KUBERNETES_VERSION#v}"
  major="${kv%%.*}"
  minor="${kv#*.}"
  minor="${minor%%.*}"
  # What hack/lib/version.sh stamps into a release build, so /version and --version tell the truth.
  ldflags=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X ${pkg}.gitVersion=${KUBERNETES_VERSION} -X ${pkg}.gitMajor=${major}"
    ldflags+=" -X ${pkg}.gitMinor=${minor} -X ${pkg}.gitTreeState=clean"
  done
  pkgs=()
  for b in "${k8s_bins[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
  (cd "$here/k8s" && "${go_build[@]}" build -p 2 -trimpath -ldflags "${ldflags# }" -o "$tmp/" "${pkgs[@]}")
  install_from_tmp "${k8s_bins[@]}"
  log "Kubernetes binaries built in $((SECONDS - start)) s"
fi

log "binaries in $bin:"
ls -l "$bin" >&2
echo "$bin"
