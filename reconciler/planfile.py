"""Saved plan files: written where --out says (checked before any work),
read back, and refused once applied or when the state or the manifests
moved on since the plan was made."""

from __future__ import annotations

import json
import os
import pathlib
from typing import TYPE_CHECKING

from reconciler import errors
from reconciler.plan import model as plan_model
from reconciler.state import model as state_model

if TYPE_CHECKING:
    from reconciler import engine


def check_plan_path(path: str | pathlib.Path) -> None:
    """Refuse a plan file that could not be written, before any work."""
    target = pathlib.Path(path)
    if target.is_dir():
        raise errors.ConfigError(f"--out {path}: is a directory; give a file name")
    if not target.parent.is_dir():
        raise errors.ConfigError(f"--out {path}: no such directory {target.parent}")
    if not os.access(target.parent, os.W_OK):
        raise errors.ConfigError(f"--out {path}: directory {target.parent} is not writable")


def save_plan(plan: plan_model.Plan, path: str | pathlib.Path) -> None:
    target = pathlib.Path(path)
    try:
        target.write_text(json.dumps(plan.to_json(), indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        raise errors.ConfigError(f"--out {path}: cannot write the plan file ({exc.strerror})") from None


def load_plan(path: str | pathlib.Path) -> plan_model.Plan:
    try:
        data = json.loads(pathlib.Path(path).read_text())
        if data.get("format") != plan_model.PLAN_FORMAT:
            raise errors.PlanError(f"{path}: not a reconciler plan file")
        return plan_model.Plan.from_json(data)
    except (OSError, UnicodeDecodeError) as exc:
        raise errors.PlanError(f"{path}: cannot read plan file ({exc})") from exc
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise errors.PlanError(f"{path}: not a reconciler plan file (corrupt or truncated)") from exc


def check_saved_plan(plan: plan_model.Plan, workspace: engine.Workspace, state: state_model.State) -> None:
    """Refuse a plan that was already applied or whose inputs moved on since."""
    if plan.id in state.applied_plans:
        raise errors.PlanError(f"plan {plan.id} was already applied; run plan again")
    if state.lineage != plan.state_lineage or state.serial != plan.state_serial:
        made = f"lineage {plan.state_lineage or '(no state yet)'}, serial {plan.state_serial}"
        now = f"lineage {state.lineage or '(no state yet)'}, serial {state.serial}"
        raise errors.PlanError(f"saved plan is stale: it was made against state {made}, but the state is "
                               f"now {now}; run plan again")
    if workspace.config.source.content_hash != plan.manifests_hash:
        raise errors.PlanError("saved plan is stale: the manifests in "
                               f"{workspace.config.source.directory} changed since it was made; "
                               "run plan again")
