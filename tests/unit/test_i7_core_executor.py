"""Issue 7 items 1, 4, 5 at apply: the executor carries out both replace
orders, timed actions and references, with a small fake kind (no kind of the
product needs them yet; the AWS side of real kinds is tested in tests/aws).
Each step is recorded in state as it happens."""

from __future__ import annotations

import dataclasses
import types

import pytest

from reconciler import apply, kinds
from reconciler.plan import actions, model, planner, refs
from reconciler.state import local
from reconciler.state import model as state_model
from tests.golden import fake_kind
from tests.unit.test_core import NOW

Action = actions.Action


class Widgets:
    """A kind that records what it was asked to do (and the state the executor had saved by then)."""

    kind = fake_kind.KIND

    def __init__(self, backend: local.LocalBackend) -> None:
        self.backend = backend
        self.log: list[tuple[str, str, tuple[str, ...]]] = []

    def _note(self, what: str, name: str) -> None:
        self.log.append((what, name, tuple(sorted(self.backend.read().resources))))

    def desired(self, resource, config, *, resolve_values=True):  # pragma: no cover - plans come ready-made
        raise NotImplementedError

    def refresh(self, aws, entry, desired):  # pragma: no cover
        return planner.Refreshed(dict(entry.attributes), dict(entry.ids))

    def check(self, aws, desired, entry):  # pragma: no cover
        return []

    def create(self, aws, desired, checkpoint):
        self._note("create", desired.name)
        return state_model.ResourceState(self.kind, desired.name, "managed", {"id": f"new-{desired.name}"},
                                         dict(desired.attributes), {}, desired.dependencies)

    def update(self, aws, desired, entry, change, checkpoint):
        self._note("update", desired.name)
        return dataclasses.replace(entry, attributes=dict(desired.attributes))

    def delete(self, aws, entry):
        self._note("delete", entry.name)

    def run_timed(self, aws, desired, entry, change, checkpoint):
        self._note(f"{change.action.value} {change.subject}".strip(), desired.name)
        return dataclasses.replace(entry, ids={**entry.ids, "done": change.action.value})


@pytest.fixture()
def widgets(tmp_path, monkeypatch):
    backend = local.LocalBackend(tmp_path / "state.json")
    handler = Widgets(backend)
    monkeypatch.setitem(kinds.HANDLERS, fake_kind.KIND, handler)
    with backend.lock("test"):
        yield backend, handler


def widget(name: str, **attributes) -> model.Desired:
    return model.Desired(fake_kind.KIND, name, "managed", {"displayName": name, **attributes}, {},
                         replace_on=frozenset({"displayName"}))


def recorded(name: str, **ids) -> state_model.ResourceState:
    return state_model.ResourceState(fake_kind.KIND, name, "managed", {"id": f"old-{name}", **ids},
                                     {"displayName": name}, {})


def plan_and_apply(backend, want, *, now=NOW):
    prior = backend.read()
    plan = planner.make_plan(plan_id="p", now=now, stack="s", directory="/d", manifests_hash="h",
                             desired={d.address: d for d in want}, prior=prior, refreshed={}, adopted={},
                             refresh=True, rules={fake_kind.KIND: fake_kind.RULES})
    return plan, apply.apply_plan(plan, backend, types.SimpleNamespace(), allow_destroy=True)


def test_destroy_before_create_deletes_the_old_object_first(widgets):
    backend, handler = widgets
    backend.write(state_model.State().with_resource(recorded("a")))
    plan, result = plan_and_apply(backend, [dataclasses.replace(widget("a", displayName="b"))])
    assert [c.action for c in plan.actionable] == [Action.DELETE_THEN_CREATE]
    assert handler.log == [("delete", "a", ("Widget/a",)), ("create", "a", ())]  # gone from state before create
    assert result.state.resources["Widget/a"].ids == {"id": "new-a"} and result.state.deposed == {}


def test_timed_actions_are_carried_out_by_the_kind(widgets):
    backend, handler = widgets
    leases = {"lease-old": "2026-01-01T00:00:00+00:00", "lease-new": "2027-01-01T00:00:00+00:00"}
    backend.write(state_model.State().with_resource(
        recorded("a", rotatedAt="2025-01-01T00:00:00+00:00", leases=leases)))
    plan, result = plan_and_apply(backend, [widget("a", rotateEveryDays=30)])
    assert [(c.action, c.subject) for c in plan.actionable] == [(Action.UPDATE, ""), (Action.ROTATE, ""),
                                                               (Action.REVOKE, "lease-old")]
    assert [what for what, _, _ in handler.log] == ["update", "rotate", "revoke lease-old"]
    assert result.state.resources["Widget/a"].ids["done"] == "revoke"


def test_references_are_resolved_from_what_this_apply_made(widgets):
    backend, handler = widgets
    user = widget("user", target={"$ref": "Widget/maker#id"})
    plan, result = plan_and_apply(backend, [user, widget("maker")])
    assert [c.address for c in plan.actionable] == ["Widget/maker", "Widget/user"]
    assert plan.actionable[1].after["target"] == refs.Ref("Widget/maker", "id").unknown()
    assert result.state.resources["Widget/user"].attributes["target"] == "new-maker"
