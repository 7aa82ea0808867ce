"""Issue 7 item 5: references known after apply. A desired attribute may be
another resource's attribute; the plan resolves it from state when the
target keeps its ids and shows ``(known after apply)`` when this plan
creates or replaces the target; apply resolves it from the state as it stands."""

from __future__ import annotations

import json

import pytest

from reconciler import errors
from reconciler.plan import actions, model, planner, refs
from reconciler.render import text, values
from reconciler.state import model as state_model
from tests.unit.test_core import NOW, desired, entry

Action = actions.Action
KEY_ARN = refs.Ref("KmsProvider/k", "arn")


def user(**attributes) -> model.Desired:
    return model.Desired("Role", "r", "managed", {"keyArn": KEY_ARN.to_json(), **attributes}, {})


def key_state(arn: str = "arn:k") -> state_model.ResourceState:
    return state_model.ResourceState("KmsProvider", "k", "managed", {"keyId": "k", "arn": arn},
                                     dict(entry("k").attributes), {})


def plan_of(want, prior, live=None):
    return planner.make_plan(plan_id="p", now=NOW, stack="s", directory="/d", manifests_hash="h",
                             desired={d.address: d for d in want}, prior=prior, refreshed=live or {},
                             adopted={}, refresh=True, rules={})


def test_a_reference_is_json_and_parses_back():
    assert KEY_ARN.to_json() == {"$ref": "KmsProvider/k#arn"}
    assert refs.Ref.parse({"$ref": "KmsProvider/k#arn"}) == KEY_ARN
    assert refs.Ref.parse({"$ref": "x", "other": 1}) is None and refs.Ref.parse("KmsProvider/k#arn") is None
    with pytest.raises(errors.PlanError, match="malformed reference 'KmsProvider/k': expected KIND/NAME#ATTRIBUTE"):
        refs.Ref.parse({"$ref": "KmsProvider/k"})
    assert refs.targets({"a": [{"b": KEY_ARN.to_json()}], "c": 1}) == {"KmsProvider/k"}


def test_a_target_created_in_the_same_plan_is_known_after_apply_and_comes_first():
    plan = plan_of([user(), desired("k")], state_model.State())
    assert [c.address for c in plan.changes] == ["KmsProvider/k", "Role/r"]  # no declared dependency needed
    role = plan.changes[1]
    assert role.after == {"keyArn": {"$unknown": "KmsProvider/k#arn"}}
    assert plan.desired["Role/r"].attributes["keyArn"] == {"$ref": "KmsProvider/k#arn"}  # apply resolves it
    assert "+ keyArn = (known after apply)" in text.render_plan(plan)
    assert model.Plan.from_json(json.loads(json.dumps(plan.to_json()))) == plan


def test_a_target_that_keeps_its_ids_resolves_from_state_with_no_change():
    prior = state_model.State("l", 1).with_resource(key_state()).with_resource(
        state_model.ResourceState("Role", "r", "managed", {}, {"keyArn": "arn:k"}, {}))
    live = {"KmsProvider/k": planner.Refreshed(dict(key_state().attributes), dict(key_state().ids))}
    plan = plan_of([user(), desired("k")], prior, live)
    assert plan.actionable == ()
    moved = state_model.State("l", 1).with_resource(key_state("arn:new")).with_resource(prior.resources["Role/r"])
    (change,) = plan_of([user(), desired("k")], moved).actionable
    assert [(c.path, c.before, c.after) for c in change.changes] == [("keyArn", "arn:k", "arn:new")]


def test_a_target_being_replaced_makes_the_value_unknown():
    old = dict(entry("k", protect=False).attributes)
    prior = state_model.State("l", 1).with_resource(
        state_model.ResourceState("KmsProvider", "k", "managed", {"arn": "arn:k"}, old, {})).with_resource(
        state_model.ResourceState("Role", "r", "managed", {}, {"keyArn": "arn:k"}, {}))
    plan = plan_of([user(), desired("k", protect=False, keySpec="RSA_2048")], prior)
    role = {c.address: c for c in plan.changes}["Role/r"]
    assert role.action is Action.UPDATE
    assert "~ keyArn = \"arn:k\" -> (known after apply)" in text.render_plan(plan)


def test_a_reference_to_nothing_refuses_the_plan():
    with pytest.raises(errors.PlanError, match=r"^Role/r: refers to KmsProvider/k#arn, but KmsProvider/k is "
                                               r"neither in state nor created by this plan$"):
        plan_of([user()], state_model.State())
    prior = state_model.State("l", 1).with_resource(key_state())
    with pytest.raises(errors.PlanError, match=r"Role/r: refers to KmsProvider/k#nope, but KmsProvider/k has no nope"):
        plan_of([model.Desired("Role", "r", "managed", {"x": {"$ref": "KmsProvider/k#nope"}}, {}), desired("k")],
                prior)


def test_apply_resolves_references_from_the_state_as_it_stands():
    want = user(policy={"Statement": [{"Resource": KEY_ARN.to_json()}]})
    state = state_model.State().with_resource(key_state("arn:made-just-now"))
    resolved = refs.resolve_desired(want, state)
    assert resolved.attributes == {"keyArn": "arn:made-just-now",
                                   "policy": {"Statement": [{"Resource": "arn:made-just-now"}]}}
    plain = model.Desired("Role", "q", "managed", {"a": 1}, {})
    assert refs.resolve_desired(plain, state) is plain
    with pytest.raises(errors.PlanError, match="KmsProvider/k#arn is not known: KmsProvider/k is not in state"):
        refs.resolve_desired(want, state_model.State())


def test_values_inside_documents_show_as_known_after_apply():
    shown = values.show({"Statement": [{"Resource": KEY_ARN.unknown()}]})
    assert shown == '{"Statement": [{"Resource": "(known after apply)"}]}'
    assert values.flatten({"keyArn": KEY_ARN.unknown()}) == [("keyArn", KEY_ARN.unknown())]
