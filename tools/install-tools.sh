#!/usr/bin/env bash
# Install the pinned helm, kubeconform, kube-score, actionlint, sops, kubeseal and age with `go install` into a
# versioned cache outside the work tree, so later runs (and CI on the same machine) reuse them. Prints the bin
# directory.
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
  echo "building $target (first time only; helm takes about 3 minutes, sops 2, the others 1)..." >&2
  SECONDS=0
  GOBIN="$bin.tmp" GOFLAGS=-mod=mod go install -ldflags "-s -w $ldflags" "$package"
  local name=${package%@*}
  mv "$bin.tmp/${name##*/}" "$bin/$target"
  echo "built $target in ${SECONDS}s" >&2
}

# build_in_module TARGET MODULE@VERSION PACKAGE LDFLAGS: go build ./PACKAGE inside the downloaded module, with
# its own go.mod and go.sum, into $bin/TARGET, once. For a module whose go.mod declares another path than the
# one it is served under: `go install` refuses those.
build_in_module() {
  local target=$1 module=$2 package=$3 ldflags=$4 dir
  [ -x "$bin/$target" ] && return
  echo "building $target (first time only; about 1 minute)..." >&2
  SECONDS=0
  dir=$(cd / && go mod download -json "$module" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$dir" ] || { echo "go mod download $module gave no source directory" >&2; exit 1; }
  mkdir -p "$bin.tmp"
  (cd "$dir" && go build -ldflags "-s -w $ldflags" -o "$bin.tmp/$target" "./$package")
  mv "$bin.tmp/$target" "$bin/$target"
  echo "built $target in ${SECONDS}s" >&2
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
# Secrets in Git (tests/test_crd_schemas.py): versioned binaries, unversioned links, as above.
build "sops-$SOPS_VERSION" "github.com/getsops/sops/v3/cmd/sops@$SOPS_VERSION" ""
ln -sfn "sops-$SOPS_VERSION" "$bin/sops"
# The module's go.mod says github.com/bitnami/sealed-secrets (refused by the Go proxy here), so
# `go install github.com/bitnami-labs/sealed-secrets/cmd/kubeseal@...` fails on the path mismatch.
build_in_module "kubeseal-$SEALED_SECRETS_VERSION" "github.com/bitnami-labs/sealed-secrets@$SEALED_SECRETS_VERSION" \
  cmd/kubeseal "-X main.VERSION=$SEALED_SECRETS_VERSION"
ln -sfn "kubeseal-$SEALED_SECRETS_VERSION" "$bin/kubeseal"
for cmd in age age-keygen; do
  build "$cmd-$AGE_VERSION" "filippo.io/age/cmd/$cmd@$AGE_VERSION" "-X main.Version=$AGE_VERSION"
  ln -sfn "$cmd-$AGE_VERSION" "$bin/$cmd"
done
rmdir "$bin.tmp" 2>/dev/null || true
echo "$bin"
