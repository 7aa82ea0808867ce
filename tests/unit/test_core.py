"""The pure core: graph, diff, planner, renderers. No AWS."""

from __future__ import annotations

import datetime
import json

import pytest

from reconciler import errors, graph, kinds
from reconciler.plan import actions, diff, model, planner
from reconciler.render import structured, text
from reconciler.state import model as state_model

Action = actions.Action


# -- graph ----------------------------------------------------------------------------
def test_topological_order_puts_dependencies_first_and_is_stable():
    g = graph.Graph()
    g.add_edge("Secret/s", "Vault/v")
    g.add_edge("Vault/v", "KmsProvider/k")
    g.add_node("KmsProvider/a")
    assert g.topological_order() == ["KmsProvider/a", "KmsProvider/k", "Vault/v", "Secret/s"]
    assert g.ancestors(["Secret/s"]) == {"Secret/s", "Vault/v", "KmsProvider/k"}


def test_cycle_is_found_and_named():
    g = graph.Graph()
    g.add_edge("a", "b")
    g.add_edge("b", "c")
    g.add_edge("c", "a")
    assert sorted(g.find_cycle()) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="dependency cycle"):
        g.topological_order()


# -- diff -----------------------------------------------------------------------------
def test_diff_is_attribute_level_and_exact():
    before = {"tags": {"a": "1", "b": "2"}, "n": 1, "flag": True, "list": [1, 2]}
    after = {"tags": {"a": "1", "c": "3"}, "n": 1.5, "flag": 1, "list": [2, 1]}
    changes = {c.path: (c.before, c.after) for c in diff.diff(before, after)}
    assert changes == {"tags.b": ("2", None), "tags.c": (None, "3"), "n": (1, 1.5),
                       "flag": (True, 1), "list": ([1, 2], [2, 1])}
    assert diff.diff({"x": {"y": [1]}}, {"x": {"y": [1]}}) == []


def test_diff_limited_to_keys_and_sensitive_marked():
    changes = diff.diff({"a": 1, "secret": "old", "ignored": 1}, {"a": 2, "secret": "new"},
                        keys={"a", "secret"}, sensitive=frozenset({"secret"}))
    assert [(c.path, c.sensitive) for c in changes] == [("a", False), ("secret", True)]
    assert changes[1].to_json() == {"path": "secret", "op": "change", "sensitive": True}


# -- planner --------------------------------------------------------------------------
def desired(name: str, **attributes) -> model.Desired:
    attrs = {"description": "d", "keySpec": "SYMMETRIC_DEFAULT", "protect": True, **attributes}
    return model.Desired("KmsProvider", name, "managed", attrs, {"region": "us-east-1"},
                         replace_on=frozenset({"keySpec"}), destroy_on=frozenset({"replicas"}))


def entry(name: str, **attributes) -> state_model.ResourceState:
    attrs = {"description": "d", "keySpec": "SYMMETRIC_DEFAULT", "protect": True, **attributes}
    return state_model.ResourceState("KmsProvider", name, "managed", {"keyId": name}, attrs,
                                     {"region": "us-east-1"})


NOW = datetime.datetime(2026, 1, 15, 12, tzinfo=datetime.UTC)


def plan_of(want, prior, live=None, adopted=None, targets=(), g=None):
    return planner.make_plan(plan_id="p", now=NOW, stack="s", directory="/d", manifests_hash="h",
                             desired={d.address: d for d in want}, prior=prior,
                             refreshed=live or {}, adopted=adopted or {}, refresh=True,
                             targets=targets, dependency_graph=g, rules=kinds.RULES)


def test_plan_create_update_noop_and_drift():
    prior = state_model.State("lin", 3).with_resource(entry("a")).with_resource(entry("b"))
    live = {"KmsProvider/a": planner.Refreshed({**entry("a").attributes, "description": "hand"}),
            "KmsProvider/b": planner.Refreshed(dict(entry("b").attributes))}
    plan = plan_of([desired("a"), desired("b"), desired("c")], prior, live)
    by = {c.address: c for c in plan.changes}
    assert by["KmsProvider/a"].action is Action.UPDATE
    assert [(c.path, c.before, c.after) for c in by["KmsProvider/a"].changes] == [("description", "hand", "d")]
    assert by["KmsProvider/b"].action is Action.NOOP
    assert by["KmsProvider/c"].action is Action.CREATE
    assert [d.address for d in plan.drift] == ["KmsProvider/a"]
    assert plan.drift[0].severity == "warning"
    assert (plan.state_lineage, plan.state_serial) == ("lin", 3)


def test_plan_replace_of_protected_is_refused_and_unprotected_needs_allow_destroy():
    prior = state_model.State("l", 1).with_resource(entry("a"))
    live = {"KmsProvider/a": planner.Refreshed(dict(entry("a").attributes))}
    with pytest.raises(errors.PlanError, match="replaces the key.*protected"):
        plan_of([desired("a", keySpec="RSA_2048")], prior, live)
    prior = state_model.State("l", 1).with_resource(entry("a", protect=False))
    live = {"KmsProvider/a": planner.Refreshed(dict(entry("a", protect=False).attributes))}
    plan = plan_of([desired("a", keySpec="RSA_2048", protect=False)], prior, live)
    (change,) = plan.actionable
    assert change.action is Action.CREATE_THEN_DELETE and change.replace_paths == ("keySpec",)
    assert change.requires_allow_destroy


def test_plan_delete_protected_refused_and_gone_resource_recreated():
    prior = state_model.State("l", 1).with_resource(entry("a"))
    with pytest.raises(errors.PlanError, match="refusing to destroy a protected resource"):
        plan_of([], prior, {"KmsProvider/a": planner.Refreshed(dict(entry("a").attributes))})
    plan = plan_of([desired("a")], prior, {"KmsProvider/a": planner.Refreshed(None)})
    assert plan.actionable[0].action is Action.CREATE
    assert plan.drift[0].gone and plan.drift[0].severity == "critical"


def test_key_state_drift_is_critical():
    prior = state_model.State("l", 1).with_resource(entry("a", keyState="Enabled"))
    plan = plan_of([desired("a", keyState="Enabled")], prior,
                   {"KmsProvider/a": planner.Refreshed({**entry("a").attributes, "keyState": "Disabled"})})
    assert plan.drift[0].severity == "critical"
    assert plan.actionable[0].changes[0].path == "keyState"


def test_removing_a_replica_of_a_protected_key_is_refused():
    prior = state_model.State("l", 1).with_resource(entry("a", replicas={"eu-west-1": {}}))
    live = {"KmsProvider/a": planner.Refreshed(dict(entry("a", replicas={"eu-west-1": {}}).attributes))}
    with pytest.raises(errors.PlanError, match="removing replicas.eu-west-1 destroys it"):
        plan_of([desired("a", replicas={})], prior, live)


def test_target_limits_scope_to_target_and_dependencies():
    g = graph.Graph()
    g.add_edge("KmsProvider/b", "KmsProvider/a")
    g.add_node("KmsProvider/c")
    plan = plan_of([desired("a"), desired("b"), desired("c")], state_model.State(), targets=["KmsProvider/b"],
                   g=g)
    assert {c.address for c in plan.changes} == {"KmsProvider/a", "KmsProvider/b"}
    with pytest.raises(errors.PlanError, match="no such resource"):
        plan_of([desired("a")], state_model.State(), targets=["KmsProvider/zz"], g=g)


def test_plan_round_trips_through_json():
    prior = state_model.State("l", 1).with_resource(entry("a"))
    live = {"KmsProvider/a": planner.Refreshed({**entry("a").attributes, "description": "x"})}
    plan = plan_of([desired("a"), desired("b")], prior, live)
    again = model.Plan.from_json(json.loads(json.dumps(plan.to_json())))
    assert again == plan


# -- renderers ------------------------------------------------------------------------
def test_text_render_shows_symbols_paths_and_masks_sensitive():
    change = model.ResourceChange(
        "Secret/db", "Secret", "db", Action.UPDATE, "managed", {"value": "OLD-CANARY"}, {"value": "NEW-CANARY"},
        (diff.AttributeChange("value", "OLD-CANARY", "NEW-CANARY", sensitive=True),
         diff.AttributeChange("tags.team", None, "x")), sensitive=("value",))
    plan = model.Plan("p", "now", "s", "/d", "h", None, 0, True, (), (change,), (), {})
    for rendered in (text.render_plan(plan), structured.plan_json(plan), structured.plan_markdown(plan)):
        assert "CANARY" not in rendered
    out = text.render_plan(plan)
    assert "~ Secret/db" in out and "value     = (sensitive, will change)" in out
    assert '+ tags.team = "x"' in out
    assert "Plan: 0 to create, 1 to update, 0 to replace, 0 to destroy." in out
    md = structured.plan_markdown(plan)
    assert "| `~` update | `Secret/db` |" in md and "```diff" in md


def test_no_changes_render():
    plan = model.Plan("p", "now", "s", "/d", "h", None, 0, True, (), (), (), {})
    assert text.render_plan(plan) == "No changes. Live AWS matches the manifests.\n"
    assert json.loads(structured.plan_json(plan))["hasChanges"] is False


def test_created_sensitive_attribute_is_masked():
    change = model.ResourceChange("Secret/db", "Secret", "db", Action.CREATE, "managed", None,
                                  {"value": "CANARY", "description": "d"}, sensitive=("value",))
    plan = model.Plan("p", "now", "s", "/d", "h", None, 0, True, (), (change,), (), {})
    out = text.render_plan(plan)
    assert "CANARY" not in out and "+ value       = (sensitive)" in out
    assert "CANARY" not in structured.plan_json(plan)
