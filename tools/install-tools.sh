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

if [ ! -x "$bin/helm" ]; then
  echo "building helm $HELM_VERSION (first time only, about 3 minutes)..." >&2
  # The version ldflag makes `helm version` report the pinned version instead of a bare major.
  GOBIN="$bin.tmp" GOFLAGS=-mod=mod go install \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
  mv "$bin.tmp/helm" "$bin/helm"
fi
if [ ! -x "$bin/kubeconform" ]; then
  echo "building kubeconform $KUBECONFORM_VERSION..." >&2
  GOBIN="$bin.tmp" GOFLAGS=-mod=mod go install -ldflags "-s -w" \
    "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
  mv "$bin.tmp/kubeconform" "$bin/kubeconform"
fi
# kube-score's version is not in the directory's name: the binary carries it, and `kube-score`
# links to the pinned one.
if [ ! -x "$bin/kube-score-$KUBE_SCORE_VERSION" ]; then
  echo "building kube-score $KUBE_SCORE_VERSION (about a minute)..." >&2
  GOBIN="$bin.tmp" GOFLAGS=-mod=mod go install -ldflags "-s -w -X main.version=$KUBE_SCORE_VERSION" \
    "github.com/zegl/kube-score/cmd/kube-score@$KUBE_SCORE_VERSION"
  mv "$bin.tmp/kube-score" "$bin/kube-score-$KUBE_SCORE_VERSION"
fi
ln -sfn "kube-score-$KUBE_SCORE_VERSION" "$bin/kube-score"
# actionlint likewise: the versioned binary, and a link to the pinned one.
if [ ! -x "$bin/actionlint-$ACTIONLINT_VERSION" ]; then
  echo "building actionlint $ACTIONLINT_VERSION (about a minute)..." >&2
  GOBIN="$bin.tmp" GOFLAGS=-mod=mod go install \
    -ldflags "-s -w -X github.com/rhysd/actionlint.version=$ACTIONLINT_VERSION" \
    "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
  mv "$bin.tmp/actionlint" "$bin/actionlint-$ACTIONLINT_VERSION"
fi
ln -sfn "actionlint-$ACTIONLINT_VERSION" "$bin/actionlint"
rmdir "$bin.tmp" 2>/dev/null || true
echo "$bin"
