"""Issue 6 item 9: every value-derived token is ``(sensitive)`` in every
renderer (text, JSON, Markdown), for every action and in drift, deletes
included (a deleted Secret has no desired to say what is sensitive)."""

from __future__ import annotations

import json

import pytest

from reconciler import engine, kinds
from reconciler.plan import model, planner
from reconciler.render import structured, text
from reconciler.state import model as state_model
from tests.unit.test_core import NOW

CANARY = "env:CANARY-derived-token"
CONNECTION = {"region": "us-east-1"}


def secret(name: str, value: str, **ids) -> state_model.ResourceState:
    return state_model.ResourceState("Secret", name, "managed", {"storedDigest": "d", **ids},
                                     {"vault": "main", "description": "", "value": value}, CONNECTION)


def wanted(name: str, value: str) -> model.Desired:
    return model.Desired("Secret", name, "managed", {"vault": "main", "description": "", "value": value},
                         CONNECTION, sensitive=frozenset({"value"}))


def every_action_plan() -> model.Plan:
    """create, update, delete, noop and drift on the same canary-shaped tokens."""
    prior = state_model.State("l", 3, {
        "Secret/updated": secret("updated", CANARY + "-old"),
        "Secret/deleted": secret("deleted", CANARY + "-gone"),
        "Secret/drifted-deleted": secret("drifted-deleted", CANARY + "-drift"),
        "Secret/same": secret("same", CANARY + "-same"),
    })
    desired = {d.address: d for d in (wanted("created", CANARY + "-new"), wanted("updated", CANARY + "-new2"),
                                      wanted("same", CANARY + "-same"))}
    refreshed = {a: planner.Refreshed(dict(e.attributes), dict(e.ids)) for a, e in prior.resources.items()}
    refreshed["Secret/drifted-deleted"] = planner.Refreshed(
        {**prior.resources["Secret/drifted-deleted"].attributes, "value": CANARY + "-live"})
    plan = planner.make_plan(plan_id="p", now=NOW, stack="s", directory="/d", manifests_hash="h",
                             desired=desired, prior=prior, refreshed=refreshed, adopted={}, refresh=True,
                             rules=kinds.RULES)
    return engine.hide_sensitive(plan)


def test_plan_holds_every_action_and_drift():
    plan = every_action_plan()
    actions = {c.address: c.action.value for c in plan.changes}
    assert actions == {"Secret/created": "create", "Secret/updated": "update", "Secret/deleted": "delete",
                       "Secret/drifted-deleted": "delete", "Secret/same": "no-op"}
    assert [d.address for d in plan.drift] == ["Secret/drifted-deleted"]


@pytest.mark.parametrize("renderer", ["text", "json", "markdown", "saved"])
def test_no_renderer_shows_a_value_token_for_any_action(renderer):
    plan = every_action_plan()
    shown = {"text": lambda: text.render_plan(plan), "json": lambda: structured.plan_json(plan),
             "markdown": lambda: structured.plan_markdown(plan),
             "saved": lambda: json.dumps({**plan.to_json(), "desired": {}})}[renderer]()
    assert "CANARY" not in shown
    assert "(sensitive)" in shown


def test_text_shows_each_action_as_sensitive():
    out = text.render_plan(every_action_plan())
    assert "+ value       = (sensitive)" in out  # create
    assert "~ value = (sensitive, will change)" in out  # update
    assert "- value       = (sensitive)" in out  # delete
    assert "~ value = (sensitive) -> (sensitive)" in out  # drift of a secret only in state


@pytest.mark.parametrize("renderer", ["text", "json", "markdown"])
def test_drift_report_of_a_secret_only_in_state_shows_no_token(renderer):
    prior = state_model.State("l", 1, {"Secret/x": secret("x", CANARY + "-old")})
    items = planner.detect_drift(prior, {"Secret/x": planner.Refreshed({"vault": "main", "description": "",
                                                                      "value": CANARY + "-live"})},
                                  rules=kinds.RULES)
    items = list(engine.hide_sensitive_drift(items))
    shown = {"text": text.render_drift_report, "json": structured.drift_json,
             "markdown": structured.drift_markdown}[renderer](items)
    assert "CANARY" not in shown
    assert ('"sensitive": true' if renderer == "json" else "(sensitive)") in shown
