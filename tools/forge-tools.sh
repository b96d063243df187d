#!/usr/bin/env bash
# Build the pinned Gitea (the forge the review-mode tests open pull requests on) from its Go module,
# idempotently, into a versioned cache outside the work tree:
#   ${OVERSEER_CACHE:-$HOME/.cache/overseer}/forge/gitea-<version>/{gitea,options,templates,public}
# Gitea reads options/ and templates/ from its work path at run time (a build without the bindata tag),
# so they are copied next to the binary. CGO_ENABLED=0: no SQLite, Gitea's database is PostgreSQL.
# A first build takes about 10 minutes on 2 cores (run under nice); afterwards a run returns at once.
#
# Usage: tools/forge-tools.sh            build what is missing, then print the Gitea directory (last line)
#        tools/forge-tools.sh --dir      only print the Gitea directory
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

cache="${OVERSEER_CACHE:-$HOME/.cache/overseer}"
dir="$cache/forge/gitea-$GITEA_VERSION"

if [[ "${1:-}" == "--dir" ]]; then
  echo "$dir"
  exit 0
fi
log() { echo "forge-tools: $*" >&2; }
command -v go >/dev/null || { log "go is required to build Gitea; install Go 1.26+"; exit 1; }

if [[ ! -x "$dir/gitea" ]]; then
  log "building Gitea $GITEA_VERSION from its Go module (first time only, about 10 minutes)"
  src="$(GOFLAGS=-mod=mod go mod download -json "code.gitea.io/gitea@$GITEA_VERSION" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  # The module cache is read-only, and the build writes into its tree.
  work="$cache/forge/src-$GITEA_VERSION"
  rm -rf "$work" && mkdir -p "$(dirname "$work")"
  cp -r "$src" "$work" && chmod -R u+w "$work"
  (
    cd "$work"
    CGO_ENABLED=0 nice go build -trimpath \
      -ldflags "-s -w -X main.Version=${GITEA_VERSION#v}" -o gitea.tmp .
  )
  mkdir -p "$dir.tmp"
  mv "$work/gitea.tmp" "$dir.tmp/gitea"
  cp -r "$work/options" "$work/templates" "$dir.tmp/"
  [[ -d "$work/public" ]] && cp -r "$work/public" "$dir.tmp/"
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
  rm -rf "$work"
fi
echo "$dir"
