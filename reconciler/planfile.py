"""Saved plan files: written where --out says (checked before any work),
read back, and refused once applied or when the state or the manifests
moved on since the plan was made.

A plan file is written 0600 (it names the stack's resources and ARNs) and
holds no absolute path: the stack directory is stored relative to the
directory holding the plan file, and resolved against it when the plan is
read back, so a plan file moved together with its stack (a CI artifact
unpacked into another checkout) still applies."""

from __future__ import annotations

import dataclasses
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
    if target.parent.exists() and not target.parent.is_dir():
        raise errors.ConfigError(f"--out {path}: {target.parent} is not a directory")
    if not target.parent.is_dir():
        raise errors.ConfigError(f"--out {path}: no such directory {target.parent}")
    if not os.access(target.parent, os.W_OK):
        raise errors.ConfigError(f"--out {path}: directory {target.parent} is not writable")


PLAN_FILE_MODE = 0o600


def _relative_directory(directory: str, plan_path: pathlib.Path) -> str:
    """The stack directory as a POSIX path relative to the plan file's directory."""
    relative = os.path.relpath(pathlib.Path(directory).resolve(), plan_path.absolute().parent.resolve())
    return pathlib.Path(relative).as_posix()


def save_plan(plan: plan_model.Plan, path: str | pathlib.Path) -> None:
    """Write the plan file, readable and writable by its owner only (0600,
    whatever the umask, also over an existing file)."""
    target = pathlib.Path(path)
    stored = dataclasses.replace(plan, directory=_relative_directory(plan.directory, target))
    text = json.dumps(stored.to_json(), indent=2, sort_keys=True) + "\n"
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PLAN_FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), PLAN_FILE_MODE)
            handle.write(text)
    except OSError as exc:
        raise errors.ConfigError(f"--out {path}: cannot write the plan file ({exc.strerror})") from None


def load_plan(path: str | pathlib.Path) -> plan_model.Plan:
    try:
        data = json.loads(pathlib.Path(path).read_text())
        if data.get("format") != plan_model.PLAN_FORMAT:
            raise errors.PlanError(f"{path}: not a reconciler plan file")
        plan = plan_model.Plan.from_json(data)
    except (OSError, UnicodeDecodeError) as exc:
        raise errors.PlanError(f"{path}: cannot read plan file ({exc})") from exc
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise errors.PlanError(f"{path}: not a reconciler plan file (corrupt or truncated)") from exc
    # relative to the plan file's own directory, as save_plan wrote it (an older plan file's absolute
    # path is taken as it is)
    directory = pathlib.Path(path).absolute().parent / plan.directory
    return dataclasses.replace(plan, directory=os.path.normpath(directory))


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
