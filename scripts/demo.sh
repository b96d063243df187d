#!/usr/bin/env bash
# The main job, end to end: embedded PostgreSQL, the example plugin, one deployment, its chart
# rendered, committed to the demo's own GitOps repository (rendered/), and validated.
# Safe to run again: the second run finds the deployment, re-renders nothing, commits nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

unset DATABASE_URL  # the demo always uses the embedded server
export OVERSEER_HOME="${OVERSEER_HOME:-$PWD/.overseer}"
export OVERSEER_REPO="${OVERSEER_REPO:-$PWD/rendered}"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Database: embedded PostgreSQL in $OVERSEER_HOME/pgdata"
overseer db migrate

step "Register the example plugin"
overseer plugin register environments/claude/plugin.yaml

step "Deploy it"
existing=$(overseer deploy list -o json | python3 -c \
  'import json,sys; print(next((d["deployment_id"] for d in json.load(sys.stdin) if d["environment_type"] == "claude-environment"), ""))')
if [ -z "$existing" ]; then
  # The value comes from the environment, never the command line; a placeholder for the demo.
  ANTHROPIC_API_KEY="${ANTHROPIC_API_KEY:-demo-placeholder-not-a-real-key}" \
    overseer deploy create claude-environment --set-env ANTHROPIC_API_KEY \
      --tool git --requirement "Overseer demo deployment"
  existing=$(overseer deploy list -o json | python3 -c \
    'import json,sys; print(next(d["deployment_id"] for d in json.load(sys.stdin) if d["environment_type"] == "claude-environment"))')
else
  echo "deployment $existing exists already; re-rendering (a no-op when nothing changed)"
  overseer render --no-progress
fi

step "Validate: helm lint --strict, helm template | kubeconform -strict, kube-score"
overseer validate --no-progress "$OVERSEER_REPO"
overseer render --check

chart="$OVERSEER_REPO/$(overseer deploy show "$existing" -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["chart"])')"
step "Done"
cat <<MSG
GitOps repository: $OVERSEER_REPO (its own Git repository; this project's history is untouched)
Chart:             $chart
Last commit:       $(git -C "$OVERSEER_REPO" log -1 --format='%h %s')

Next:
  git -C $OVERSEER_REPO log --stat -1          # the commit, with a trailer per deployment
  helm template demo $chart --set secretEnv.ANTHROPIC_API_KEY=...
  overseer render --check                       # what CI runs: drift and hand edits
  make clean                                    # stop the database, forget it and the repository

The embedded PostgreSQL keeps running (data in .overseer/pgdata), so the next command starts at
once. \`overseer db status\` says where it runs; \`overseer db stop\` stops it.
MSG
