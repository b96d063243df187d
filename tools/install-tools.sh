#!/usr/bin/env bash
# Install the pinned helm, kubeconform, kube-score and actionlint with `go install` into a versioned cache outside the
# work tree, so later runs (and CI on the same machine) reuse them. Prints the bin directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${OVERSEER_CACHE:-$HOME/.cache/overseer}
bin="$cache/tools/helm-$HELM_VERSION-kubeconform-$KUBECONFORM_VERSION/bin"
mkdir -p "$bin"
command -v go >/dev/null || { echo "go is required to build helm and kubeconform; install Go 1.24+" >&2; exit 1; }

# build TARGET PACKAGE@VERSION LDFLAGS: go install the package into $bin/TARGET, once.
build() {
  local target=$1 package=$2 ldflags=$3
  [ -x "$bin/$target" ] && return
  echo "building $target (first time only; helm takes about 3 minutes, the others 1)..." >&2
  GOBIN="$bin.tmp" GOFLAGS=-mod=mod go install -ldflags "-s -w $ldflags" "$package"
  local name=${package%@*}
  mv "$bin.tmp/${name##*/}" "$bin/$target"
}

# The version ldflags make each tool report the pinned version instead of a bare major or "dev".
build helm "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" \
  "-X helm.sh/helm/v4/internal/version.version=$HELM_VERSION"
build kubeconform "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION" ""
# kube-score's and actionlint's versions are not in the directory's name: the binaries carry
# them, and `kube-score` and `actionlint` link to the pinned ones.
build "kube-score-$KUBE_SCORE_VERSION" "github.com/zegl/kube-score/cmd/kube-score@$KUBE_SCORE_VERSION" \
  "-X main.version=$KUBE_SCORE_VERSION"
ln -sfn "kube-score-$KUBE_SCORE_VERSION" "$bin/kube-score"
build "actionlint-$ACTIONLINT_VERSION" "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION" \
  "-X github.com/rhysd/actionlint.version=$ACTIONLINT_VERSION"
ln -sfn "actionlint-$ACTIONLINT_VERSION" "$bin/actionlint"
rmdir "$bin.tmp" 2>/dev/null || true
echo "$bin"
