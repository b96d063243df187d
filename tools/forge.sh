#!/usr/bin/env bash
# A local Gitea on loopback for the review-mode tests: pull requests, merges and webhooks for real.
# Gitea keeps its data in its own PostgreSQL (Debian's server; a Gitea built without CGO has no
# SQLite), both as plain processes under $OVERSEER_CACHE/forge/run, never in the work tree.
#
# Usage: tools/forge.sh up       build Gitea if needed, start it (a no-op when it answers), create
#                                the admin user and a token; print the env file path (last line)
#        tools/forge.sh down     stop Gitea and its database, and delete their data
#        tools/forge.sh env      print the env file path (fails when Gitea is not up)
#
# The env file holds OVERSEER_TEST_GITEA_URL, _USER, _PASSWORD and _TOKEN for the tests.
# Environment: OVERSEER_CACHE (default $HOME/.cache/overseer), OVERSEER_GITEA_PORT (default 3789).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${OVERSEER_CACHE:-$HOME/.cache/overseer}"
run="$cache/forge/run"
port="${OVERSEER_GITEA_PORT:-3789}"
pgport=$((port + 1))
envfile="$run/gitea.env"
url="http://127.0.0.1:$port"
log() { echo "forge: $*" >&2; }

answers() {
  python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=3)' \
    "$url/api/v1/version" 2>/dev/null
}

pg_bin() {
  local found
  found="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  [[ -n "$found" ]] || { log "Debian's PostgreSQL server is missing: run \`make test-deps\`"; exit 1; }
  echo "$found"
}
as_postgres() { if ((EUID == 0)); then runuser -u postgres -- "$@"; else "$@"; fi; }

start_db() {
  local bin
  bin="$(pg_bin)"
  if [[ ! -f "$run/pg/PG_VERSION" ]]; then
    mkdir -p "$run/pg"
    ((EUID == 0)) && chown postgres:postgres "$run/pg"
    as_postgres "$bin/initdb" -D "$run/pg" -A trust -U postgres >/dev/null
  fi
  if ! as_postgres "$bin/pg_ctl" -D "$run/pg" status >/dev/null 2>&1; then
    as_postgres "$bin/pg_ctl" -D "$run/pg" -w -l "$run/pg/server.log" \
      -o "-h 127.0.0.1 -p $pgport -k $run/pg" start >/dev/null
  fi
  "$bin/psql" -h 127.0.0.1 -p "$pgport" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='gitea'" |
    grep -q 1 || "$bin/createdb" -h 127.0.0.1 -p "$pgport" -U postgres gitea
}

write_config() {
  local dir="$1"
  mkdir -p "$run/custom/conf" "$run/data" "$run/log"
  # Copied, not linked: Gitea reads them from its work path.
  [[ -d "$run/options" ]] || cp -r "$dir/options" "$dir/templates" "$run/"
  [[ -f "$run/custom/conf/app.ini" ]] && return
  cat >"$run/custom/conf/app.ini" <<INI
; These machines run everything as root, which Gitea refuses unless told.
I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true
APP_NAME = overseer-test-forge
RUN_MODE = prod
WORK_PATH = $run

[database]
DB_TYPE = postgres
HOST = 127.0.0.1:$pgport
NAME = gitea
USER = postgres
PASSWD =
SSL_MODE = disable

[repository]
ROOT = $run/repos

[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = $port
ROOT_URL = $url/
DISABLE_SSH = true
START_SSH_SERVER = false
OFFLINE_MODE = true
LFS_START_SERVER = false
APP_DATA_PATH = $run/data

[security]
INSTALL_LOCK = true
SECRET_KEY = $(head -c 32 /dev/urandom | base64 | tr -d '/+=')
INTERNAL_TOKEN = $("$dir/gitea" generate secret INTERNAL_TOKEN)

[service]
DISABLE_REGISTRATION = true

[webhook]
; Overseer listens on loopback in the tests.
ALLOWED_HOST_LIST = loopback
DELIVER_TIMEOUT = 5

[cron]
ENABLED = false

[mailer]
ENABLED = false

[session]
PROVIDER = memory

[cache]
ADAPTER = memory

[log]
MODE = file
LEVEL = Warn
ROOT_PATH = $run/log
INI
}

up() {
  local dir
  if answers && [[ -f "$envfile" ]]; then
    echo "$envfile"
    return
  fi
  dir="$("$here/forge-tools.sh" | tail -1)"
  mkdir -p "$run"
  exec 9>"$run/.lock"
  flock 9
  if answers && [[ -f "$envfile" ]]; then
    echo "$envfile"
    return
  fi
  start_db
  write_config "$dir"
  local gitea=("$dir/gitea" --config "$run/custom/conf/app.ini" --work-path "$run")
  if ! answers; then
    log "starting Gitea on $url"
    # Every descriptor redirected at the subshell, so no caller's pipe stays open behind Gitea.
    (cd "$run" && GITEA_WORK_DIR="$run" exec setsid "${gitea[@]}" web) \
      </dev/null >"$run/log/web.out" 2>&1 9>&- &
    local deadline=$((SECONDS + 120))
    until answers; do
      ((SECONDS < deadline)) || { log "Gitea did not answer; see $run/log"; tail -20 "$run/log/web.out" >&2; exit 1; }
      sleep 0.5
    done
  fi
  if [[ ! -f "$envfile" ]]; then
    local password token
    password="ovs-$(head -c 12 /dev/urandom | base64 | tr -d '/+=')"
    (cd "$run" && "${gitea[@]}" admin user create --admin --username overseer \
      --password "$password" --email overseer@example.invalid --must-change-password=false) >/dev/null
    token="$(cd "$run" && "${gitea[@]}" admin user generate-access-token --username overseer \
      --token-name "tests-$RANDOM" --scopes all --raw | tail -1)" # after a warning about root
    umask 077
    printf 'OVERSEER_TEST_GITEA_URL=%s\nOVERSEER_TEST_GITEA_USER=overseer\nOVERSEER_TEST_GITEA_PASSWORD=%s\nOVERSEER_TEST_GITEA_TOKEN=%s\n' \
      "$url" "$password" "$token" >"$envfile.tmp"
    mv "$envfile.tmp" "$envfile"
  fi
  echo "$envfile"
}

down() {
  pkill -f "$run/custom/conf/app.ini" 2>/dev/null || true
  if [[ -f "$run/pg/PG_VERSION" ]]; then
    as_postgres "$(pg_bin)/pg_ctl" -D "$run/pg" -m fast stop >/dev/null 2>&1 || true
  fi
  rm -rf "$run"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  env) answers && [[ -f "$envfile" ]] && echo "$envfile" ;;
  *) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac
