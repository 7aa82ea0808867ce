"""Issue 7 item 11: golden plans. Each ``tests/golden/<case>/`` holds the
inputs of one plan (``manifests/``, ``desired.json`` for the fake kind,
``state.json``, ``live.json``, ``options.json``) and what the plan must be
(``plan.txt`` and ``plan.json``, or ``error.txt`` for a refused plan). No
AWS: the manifests go through the kinds' pure ``desired``, the live values
are given. ``RECONCILER_GOLDEN_UPDATE=1`` rewrites the expected files."""

from __future__ import annotations

import datetime
import json
import os
import pathlib
from collections.abc import Mapping
from typing import Any

import pytest

from reconciler import engine, errors, graph, kinds
from reconciler.manifest import model as manifest
from reconciler.plan import model, planner
from reconciler.render import structured, text
from reconciler.state import model as state_model
from tests.golden import fake_kind

GOLDEN = pathlib.Path(__file__).resolve().parents[1] / "golden"
UPDATE = os.environ.get("RECONCILER_GOLDEN_UPDATE") == "1"
PLAN_ID = "00000000-0000-4000-8000-000000000000"
NOW = "2026-01-15T12:00:00+00:00"
RULES = {**kinds.RULES, fake_kind.KIND: fake_kind.RULES}  # the fake kind: for these plans only


def cases() -> list[pathlib.Path]:
    return sorted(p for p in GOLDEN.iterdir() if p.is_dir() and not p.name.startswith("_"))


def _read(case: pathlib.Path, name: str, default: Any) -> Any:
    path = case / name
    return json.loads(path.read_text()) if path.exists() else default


def _desired(case: pathlib.Path) -> dict[str, model.Desired]:
    wanted: dict[str, model.Desired] = {}
    if (case / "manifests").is_dir():
        config, _ = manifest.load_or_raise(str(case / "manifests"))
        wanted.update(engine.desired_of(config))
    for data in _read(case, "desired.json", []):
        want = model.Desired.from_json(data)
        wanted[want.address] = want
    return wanted


def _refreshed(found: Mapping[str, Any], entry: state_model.ResourceState | None) -> planner.Refreshed:
    """A live object: ``attributes`` whole, or ``patch`` over what state records; null: gone."""
    if "patch" in found:
        assert entry is not None, "a patch needs the resource in state"
        attributes: Mapping[str, Any] | None = {**entry.attributes, **found["patch"]}
    else:
        attributes = found.get("attributes")
    ids = found.get("ids", dict(entry.ids) if entry is not None else {})
    info = tuple(model.DriftItem.from_json(i) for i in found.get("info", ()))
    return planner.Refreshed(attributes, ids, info)


def _live(case: pathlib.Path, prior: state_model.State,
          ) -> tuple[dict[str, planner.Refreshed], dict[str, planner.Refreshed]]:
    """Live AWS: as state records it unless ``live.json`` says otherwise."""
    data = _read(case, "live.json", {})
    refreshed = {a: planner.Refreshed(dict(e.attributes), dict(e.ids)) for a, e in prior.resources.items()}
    for address, found in data.get("refreshed", {}).items():
        refreshed[address] = (planner.Refreshed(None) if found is None
                              else _refreshed(found, prior.resources.get(address)))
    adopted = {a: _refreshed(f, None) for a, f in data.get("adopted", {}).items()}
    return refreshed, adopted


def golden_plan(case: pathlib.Path) -> model.Plan:
    """The plan of one case, as the engine makes it after refresh (sensitive values hidden)."""
    options = _read(case, "options.json", {})
    prior = state_model.State.from_json(_read(case, "state.json", {"version": 1, "lineage": None, "serial": 0}))
    desired = _desired(case)
    refreshed, adopted = _live(case, prior)
    refresh = options.get("refresh", True)
    dependencies = graph.Graph()
    for address, want in desired.items():
        dependencies.add_node(address)
        for dep in want.dependencies:
            dependencies.add_edge(address, dep)
    plan = planner.make_plan(
        plan_id=PLAN_ID, now=datetime.datetime.fromisoformat(options.get("now", NOW)), stack="golden",
        directory=f"/golden/{case.name}", manifests_hash="golden", desired=desired, prior=prior,
        refreshed=refreshed if refresh else {}, adopted=adopted, refresh=refresh,
        targets=tuple(options.get("targets", ())), dependency_graph=dependencies, rules=RULES)
    return engine.hide_sensitive(plan)


def _outputs(case: pathlib.Path) -> dict[str, str]:
    try:
        plan = golden_plan(case)
    except errors.PlanError as exc:
        return {"error.txt": exc.message + "\n"}
    return {"plan.txt": text.render_plan(plan), "plan.json": structured.plan_json(plan)}


@pytest.mark.parametrize("case", cases(), ids=lambda p: p.name)
def test_golden_plan(case: pathlib.Path) -> None:
    outputs = _outputs(case)
    if UPDATE:
        for name in ("plan.txt", "plan.json", "error.txt"):
            (case / name).unlink(missing_ok=True)
        for name, content in outputs.items():
            (case / name).write_text(content)
    for name, content in outputs.items():
        expected = case / name
        assert expected.exists(), f"{expected} is missing (RECONCILER_GOLDEN_UPDATE=1 writes it)"
        assert content == expected.read_text(), f"{case.name}/{name} differs (RECONCILER_GOLDEN_UPDATE=1 rewrites it)"
    for name in {"plan.txt", "plan.json", "error.txt"} - set(outputs):
        assert not (case / name).exists(), f"{case.name}: expected {name}, but the plan gave {sorted(outputs)}"


def test_there_are_enough_golden_cases() -> None:
    assert len(cases()) >= 12


def test_the_fake_kind_is_registered_for_the_golden_plans_only() -> None:
    assert fake_kind.KIND not in kinds.RULES and fake_kind.KIND not in kinds.HANDLERS
