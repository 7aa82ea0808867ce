"""Issue 6 item 5 (pure side): deposed objects in the state model, their JSON,
and the planner's deletes for them."""

from __future__ import annotations

import dataclasses
import json

import pytest

from reconciler import errors
from reconciler.plan import actions, model, planner
from reconciler.state import model as state_model
from tests.unit.test_core import desired, entry, plan_of


def with_deposed() -> state_model.State:
    old = dataclasses.replace(entry("a", keyId="old", protect=False), ids={"keyId": "old"})
    return (state_model.State("lin", 4).with_resource(entry("a", protect=False))
            .with_deposed("KmsProvider/a", state_model.Deposed("1a2b3c4d", old)))


def test_state_with_deposed_round_trips_through_json():
    state = with_deposed()
    text = state_model.dumps(state)
    back = state_model.State.from_json(json.loads(text))
    assert back == state
    assert json.loads(text)["deposed"]["KmsProvider/a"][0]["id"] == "1a2b3c4d"
    assert back.deposed_object("KmsProvider/a", "1a2b3c4d").resource.attributes["keyId"] == "old"
    assert back.without_deposed("KmsProvider/a", "1a2b3c4d").deposed == {}


def test_older_state_without_deposed_still_loads():
    data = state_model.State("lin", 2).with_resource(entry("a")).to_json()
    del data["deposed"]
    loaded = state_model.State.from_json(data)
    assert loaded.deposed == {} and "KmsProvider/a" in loaded.resources


def test_deposed_id_is_short_and_fresh():
    first, second = (state_model.Deposed.of(entry("a")) for _ in range(2))
    assert len(first.id) == 8 and first.id != second.id


def test_plan_deletes_every_deposed_object_after_the_other_changes():
    prior = with_deposed()
    live = {"KmsProvider/a": planner.Refreshed({**entry("a", protect=False).attributes, "description": "x"})}
    plan = plan_of([desired("a", protect=False)], prior, live)
    update, gone = plan.actionable
    assert (update.address, update.action) == ("KmsProvider/a", actions.Action.UPDATE)
    assert gone.address == "KmsProvider/a (deposed 1a2b3c4d)"
    assert (gone.action, gone.deposed, gone.resource_address) == (actions.Action.DELETE, "1a2b3c4d",
                                                                  "KmsProvider/a")
    assert gone.notes[0] == "deposed object left by an interrupted replace; its deletion is retried"
    assert gone.requires_allow_destroy and gone.before["keyId"] == "old"
    again = model.Plan.from_json(json.loads(json.dumps(plan.to_json())))
    assert again.actionable[1] == gone


def test_deposed_object_of_a_removed_resource_is_still_deleted():
    prior = with_deposed().without_resource("KmsProvider/a")
    plan = plan_of([], prior, {})
    (gone,) = plan.actionable
    assert gone.deposed == "1a2b3c4d"


def test_a_protected_deposed_object_refuses_the_plan():
    prior = state_model.State("l", 1).with_deposed(
        "KmsProvider/a", state_model.Deposed("feedbeef", entry("a", protect=True)))
    with pytest.raises(errors.PlanError, match="KmsProvider/a: refusing to destroy a protected resource"):
        plan_of([], prior, {})


def test_a_deposed_record_of_the_current_object_is_never_deleted():
    """A run stopped after recording the deposed object but before its successor
    existed: the deposed record is the current key, which must stay."""
    current = entry("a", protect=False)
    prior = state_model.State("l", 1).with_resource(current).with_deposed(
        "KmsProvider/a", state_model.Deposed("0badc0de", current))
    plan = plan_of([desired("a", protect=False)], prior,
                   {"KmsProvider/a": planner.Refreshed(dict(current.attributes))})
    assert plan.actionable == ()
