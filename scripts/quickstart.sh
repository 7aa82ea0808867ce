#!/usr/bin/env bash
# The main job, end to end, on the embedded default (the local AWS sandbox;
# no AWS account needed): install, start the sandbox, validate, plan
# examples/quickstart into a plan file, apply that plan (the plan is shown
# once), then plan again, which must say "No changes".
# KEEP_SANDBOX=1 leaves the sandbox running afterwards (stop it with
# `reconciler sandbox --stop`); PORT picks its port (default 4566).
set -euo pipefail
cd "$(dirname "$0")/.."
STACK=examples/quickstart
PLAN="$STACK/.reconciler/quickstart.plan"
STEPS=7
step=0
label() {
  step=$((step + 1))
  printf '\n==> [%d/%d] %s\n' "$step" "$STEPS" "$1"
}

label "install reconciler and the sandbox into .venv"
python3 -m venv .venv
. .venv/bin/activate
pip install -q --disable-pip-version-check -e '.[sandbox]'

label "start the local AWS sandbox"
PORT="${PORT:-4566}"
PID_FILE=.reconciler/sandbox.pid
eval "$(reconciler sandbox --background --port "$PORT" --pid-file "$PID_FILE")"
if [ -z "${KEEP_SANDBOX:-}" ]; then
  trap 'reconciler sandbox --stop --pid-file "$PID_FILE" >/dev/null' EXIT
fi
rm -rf "$STACK/.reconciler"  # a new sandbox is empty: start from empty state too
mkdir -p "$STACK/.reconciler"

label "validate: reconciler validate $STACK"
reconciler validate "$STACK"

label "plan, saved for apply: reconciler plan $STACK --out $PLAN"
reconciler plan "$STACK" --out "$PLAN"

label "apply the saved plan (as reviewed, not shown again): reconciler apply $PLAN --auto-approve"
reconciler apply "$PLAN" --auto-approve

label "plan again, which must find no changes: reconciler plan $STACK --detailed-exitcode"
reconciler plan "$STACK" --detailed-exitcode

label "the generated secret's kept versions (never its value): reconciler secret history app/api-token $STACK"
reconciler secret history app/api-token "$STACK"
printf '\nDone. Next: edit %s/*.yaml and run: reconciler plan %s\n' "$STACK" "$STACK"
