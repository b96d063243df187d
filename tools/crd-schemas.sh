#!/usr/bin/env bash
# Kubeconform schemas for the custom resources Overseer's charts and examples use (Argo CD, Flux,
# SealedSecret, ExternalSecret): the pinned modules' CRD YAML, from the Go module proxy, converted by
# crd_jsonschema.py into $OVERSEER_CACHE/kubeconform-schemas/crds-<key>/<group>/<kind>_<version>.json,
# once. <key> hashes the pins, this script and the converter, everything the files depend on.
#   crd-schemas.sh        build the directory if it is missing, then print it
#   crd-schemas.sh --dir  print it only (the Makefile exports it as OVERSEER_CRD_SCHEMAS)
# PYTHON names an interpreter with PyYAML (the Makefile passes the venv's).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${OVERSEER_CACHE:-$HOME/.cache/overseer}
pins="argo-cd $ARGOCD_VERSION source-controller $FLUX_SOURCE_CONTROLLER_VERSION
kustomize-controller $FLUX_KUSTOMIZE_CONTROLLER_VERSION helm-controller/api $FLUX_HELM_CONTROLLER_API_VERSION
controller-gen $CONTROLLER_GEN_VERSION sealed-secrets $SEALED_SECRETS_VERSION
external-secrets $EXTERNAL_SECRETS_VERSION go $CRD_GO_TOOLCHAIN"
key=$( { echo "$pins"; cat "$here/crd-schemas.sh" "$here/crd_jsonschema.py"; } | sha256sum | cut -c1-10)
out="$cache/kubeconform-schemas/crds-$key"

if [ "${1:-}" = --dir ]; then
  echo "$out"
  exit 0
fi
if [ -e "$out/.complete" ]; then
  echo "$out"
  exit 0
fi
command -v go >/dev/null || { echo "go is required to fetch the CRDs; install Go 1.24+" >&2; exit 1; }
python=${PYTHON:-python3}
"$python" -c 'import yaml' 2>/dev/null || {
  echo "$python has no PyYAML; run through \`make crd-schemas\` (uses the venv) or set PYTHON" >&2
  exit 1
}

echo "converting the pinned CRDs into kubeconform schemas (first time only; about 1 minute)..." >&2
SECONDS=0
mkdir -p "$cache/kubeconform-schemas"
staging=$(mktemp -d "$cache/kubeconform-schemas/.staging-crds-XXXXXX")
work=$(mktemp -d)
trap 'rm -rf "$staging" "$work"' EXIT

# Argo CD's and Flux's go.mod ask for Go 1.27: without it `go mod download` fetches the zip but does
# not unpack it. Only this script's Go commands run the newer toolchain (the proxy serves it).
gonew() { (cd "$work" && GOTOOLCHAIN=$CRD_GO_TOOLCHAIN go "$@"); }

# moddir MODULE@VERSION: the module's unpacked source in the module cache.
moddir() {
  local dir
  dir=$(gonew mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -d "$dir" ] || { echo "go mod download $1 gave no source directory" >&2; exit 1; }
  echo "$dir"
}

argo_mod="github.com/argoproj/argo-cd/v3@$ARGOCD_VERSION"
source_mod="github.com/fluxcd/source-controller@$FLUX_SOURCE_CONTROLLER_VERSION"
kustomize_mod="github.com/fluxcd/kustomize-controller@$FLUX_KUSTOMIZE_CONTROLLER_VERSION"
helm_mod="github.com/fluxcd/helm-controller/api@$FLUX_HELM_CONTROLLER_API_VERSION"
sealed_mod="github.com/bitnami-labs/sealed-secrets@$SEALED_SECRETS_VERSION"
eso_mod="github.com/external-secrets/external-secrets@$EXTERNAL_SECRETS_VERSION"
argo=$(moddir "$argo_mod")
source_ctl=$(moddir "$source_mod")
kustomize_ctl=$(moddir "$kustomize_mod")
sealed=$(moddir "$sealed_mod")
eso=$(moddir "$eso_mod")

# The /api module has only the Go types; generate the CRD from them the way helm-controller's
# Makefile does, inside a throwaway module whose only requirement is the pinned api module (so the
# types' dependencies are the versions its go.mod names).
gen="$work/helm-controller"
mkdir -p "$gen/crds"
echo "module overseer.invalid/crdgen" >"$gen/go.mod"
(cd "$gen" && GOTOOLCHAIN=$CRD_GO_TOOLCHAIN go get "github.com/fluxcd/helm-controller/api/...@$FLUX_HELM_CONTROLLER_API_VERSION")
(cd "$gen" && GOTOOLCHAIN=$CRD_GO_TOOLCHAIN go run "sigs.k8s.io/controller-tools/cmd/controller-gen@$CONTROLLER_GEN_VERSION" \
  crd:crdVersions=v1 paths=github.com/fluxcd/helm-controller/api/... output:crd:dir="$gen/crds")

args=()
for f in application applicationset appproject; do
  args+=("$argo_mod=$argo/manifests/crds/$f-crd.yaml")
done
for f in "$source_ctl"/config/crd/bases/*.yaml; do args+=("$source_mod=$f"); done
for f in "$kustomize_ctl"/config/crd/bases/*.yaml; do args+=("$kustomize_mod=$f"); done
for f in "$gen"/crds/*.yaml; do args+=("$helm_mod controller-gen@$CONTROLLER_GEN_VERSION=$f"); done
args+=("$sealed_mod=$sealed/helm/sealed-secrets/crds/bitnami.com_sealedsecrets.yaml")
for f in "$eso"/config/crds/bases/*.io_*.yaml; do args+=("$eso_mod=$f"); done
"$python" "$here/crd_jsonschema.py" "$staging" "${args[@]}"

touch "$staging/.complete"
# A concurrent run may have finished first; its directory is as good as ours.
mv -T "$staging" "$out" 2>/dev/null || [ -e "$out/.complete" ]
echo "CRD schemas ready in ${SECONDS}s" >&2
echo "$out"
