#!/usr/bin/env bash
# The main job, end to end, on the embedded default (the local AWS sandbox;
# no AWS account needed): install, start the sandbox, validate, plan, apply
# examples/quickstart, then plan again, which must say "No changes".
# KEEP_SANDBOX=1 leaves the sandbox running afterwards (stop it with
# `reconciler sandbox --stop`); PORT picks its port (default 4566).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
pip install -q --disable-pip-version-check -e '.[sandbox]'
PORT="${PORT:-4566}"
PID_FILE=.reconciler/sandbox.pid
eval "$(reconciler sandbox --background --port "$PORT" --pid-file "$PID_FILE")"
if [ -z "${KEEP_SANDBOX:-}" ]; then
  trap 'reconciler sandbox --stop --pid-file "$PID_FILE" >/dev/null' EXIT
fi
rm -rf examples/quickstart/.reconciler  # a new sandbox is empty: start from empty state too
set -x
reconciler validate examples/quickstart
reconciler plan examples/quickstart
reconciler apply --auto-approve examples/quickstart
reconciler plan --detailed-exitcode examples/quickstart
reconciler secret history app/api-token --dir examples/quickstart
