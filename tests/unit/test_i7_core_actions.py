"""Issue 7 item 1: one closed set of actions that says what happens; every
renderer handles every action; the summary line counts each."""

from __future__ import annotations

import json

import pytest

from reconciler.plan import actions, diff, model
from reconciler.render import structured, text

Action = actions.Action


def change_for(action: Action) -> model.ResourceChange:
    name = action.value.replace("-", "")
    changes = (diff.AttributeChange("size", 1, 2, op=diff.DiffOperation.CHANGE),) \
        if action in (Action.UPDATE, Action.CREATE_THEN_DELETE, Action.DELETE_THEN_CREATE) else ()
    subject = "lease-1" if action is Action.REVOKE else ""
    notes = (f"{action.value} is due",) if action.timed else ()
    return model.ResourceChange(f"Widget/{name}", "Widget", name, action, "managed", {"size": 1}, {"size": 2},
                                changes, notes=notes, subject=subject)


def every_action_plan() -> model.Plan:
    return model.Plan("p", "2026-01-15T12:00:00+00:00", "s", "/d", "h", None, 0, True, (),
                      tuple(change_for(a) for a in Action), (), {})


def test_symbols_say_what_happens():
    assert {a: a.symbol for a in Action} == {
        Action.NOOP: " ", Action.CREATE: "+", Action.READ: "<=", Action.UPDATE: "~",
        Action.CREATE_THEN_DELETE: "+/-", Action.DELETE_THEN_CREATE: "-/+", Action.DELETE: "-",
        Action.ROTATE: "!", Action.REVOKE: "!"}
    assert [a for a in Action if a.replaces] == [Action.CREATE_THEN_DELETE, Action.DELETE_THEN_CREATE]
    assert [a for a in Action if a.timed] == [Action.ROTATE, Action.REVOKE]
    assert len({a.verb for a in Action}) == len(Action)


def test_a_plan_file_saved_before_the_two_replaces_still_loads_as_create_first():
    assert Action("replace") is Action.CREATE_THEN_DELETE
    with pytest.raises(ValueError):
        Action("explode")


def test_text_shows_every_action_with_its_symbol_and_verb():
    out = text.render_plan(every_action_plan())
    for action in Action:
        if action is Action.NOOP:
            assert "Widget/noop" not in out
            continue
        name = action.value.replace("-", "")
        assert f"  # Widget/{name} will be {action.verb}\n  {action.symbol} Widget/{name}\n" in out, action
    assert "! lease-1" in out and "# (rotate is due)" in out


def test_summary_line_counts_each_action():
    assert text.summary_line(every_action_plan()) == (
        "Plan: 1 to create, 1 to update, 2 to replace (1 create before destroy, 1 destroy before create), "
        "1 to destroy, 1 to read, 1 to rotate, 1 to revoke.")


def test_json_and_markdown_show_every_action():
    plan = every_action_plan()
    shown = json.loads(structured.plan_json(plan))
    assert [c["action"] for c in shown["changes"]] == [a.value for a in Action]
    assert shown["summary"] == {a.value: 1 for a in Action}
    md = structured.plan_markdown(plan)
    for action in Action:
        if action is not Action.NOOP:
            assert f"| `{action.symbol}` {action.value} |" in md
    assert "| `!` revoke | `Widget/revoke` | revoke is due |" in md


def test_plan_with_every_action_round_trips_through_json():
    plan = every_action_plan()
    assert model.Plan.from_json(json.loads(json.dumps(plan.to_json()))) == plan
