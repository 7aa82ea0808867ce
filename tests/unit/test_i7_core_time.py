"""Issue 7 item 4: time as an input. One clock (``RECONCILER_NOW`` sets it);
the planner takes ``now`` and kinds plan timed actions by it."""

from __future__ import annotations

import datetime
import json

import pytest
from click.testing import CliRunner

from reconciler import cli, clock, errors
from reconciler.plan import actions, model, planner
from reconciler.plan import rules as plan_rules
from reconciler.state import model as state_model
from reconciler.stores import base as store_base

Action = actions.Action
UTC = datetime.UTC


def test_the_clock_is_set_by_reconciler_now(monkeypatch):
    monkeypatch.setenv(clock.ENV, "2026-03-01T08:30:00Z")
    assert clock.now() == datetime.datetime(2026, 3, 1, 8, 30, tzinfo=UTC)
    monkeypatch.setenv(clock.ENV, "2026-03-01T10:30:00+02:00")
    assert clock.stamp() == "2026-03-01T08:30:00+00:00"
    monkeypatch.setenv(clock.ENV, "2026-03-01T08:30:00")  # no zone: UTC
    assert clock.now().tzinfo is not None and clock.now().hour == 8
    assert store_base.now() == "2026-03-01T08:30:00+00:00"  # a stored version's date
    monkeypatch.setenv(clock.ENV, "next tuesday")
    with pytest.raises(errors.ConfigError, match="RECONCILER_NOW='next tuesday': not an ISO-8601 time"):
        clock.now()


def test_without_the_variable_the_clock_is_real_utc(monkeypatch):
    monkeypatch.delenv(clock.ENV, raising=False)
    before = datetime.datetime.now(UTC)
    assert before <= clock.now() <= datetime.datetime.now(UTC)


def test_a_plan_made_by_the_cli_is_dated_by_the_clock(tmp_path, monkeypatch):
    (tmp_path / "stack.yaml").write_text("apiVersion: reconciler/v1\nkind: Stack\nmetadata: {name: t}\n"
                                         "spec: {region: us-east-1}\n")
    monkeypatch.setenv(clock.ENV, "2030-05-06T07:08:09Z")
    result = CliRunner().invoke(cli.main, ["plan", str(tmp_path), "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["createdAt"] == "2030-05-06T07:08:09+00:00"


class Rotating(plan_rules.Rules):
    """Rotation due 30 days after ``ids.rotatedAt``."""

    def timed(self, desired, entry, now, live=None, prior=None):
        due = datetime.datetime.fromisoformat(entry.ids["rotatedAt"]) + datetime.timedelta(days=30)
        return (plan_rules.Timed(Action.ROTATE, f"due since {due.date()}"),) if now >= due else ()


def widget(description: str = "d") -> model.Desired:
    return model.Desired("Widget", "w", "managed", {"description": description}, {}, replace_on=frozenset({"kind"}))


def recorded(description: str = "d") -> state_model.State:
    return state_model.State("l", 1).with_resource(state_model.ResourceState(
        "Widget", "w", "managed", {"rotatedAt": "2026-01-01T00:00:00+00:00"}, {"description": description}, {}))


def plan_at(now: datetime.datetime, want: list[model.Desired], prior: state_model.State) -> model.Plan:
    return planner.make_plan(plan_id="p", now=now, stack="s", directory="/d", manifests_hash="h",
                             desired={d.address: d for d in want}, prior=prior, refreshed={}, adopted={},
                             refresh=True, rules={"Widget": Rotating()})


def test_timed_actions_fall_due_by_the_given_now():
    early = plan_at(datetime.datetime(2026, 1, 30, 23, 59, tzinfo=UTC), [widget()], recorded())
    assert early.actionable == () and early.created_at == "2026-01-30T23:59:00+00:00"
    due = plan_at(datetime.datetime(2026, 1, 31, tzinfo=UTC), [widget()], recorded())
    (rotate,) = due.actionable
    assert (rotate.address, rotate.action, rotate.notes) == ("Widget/w", Action.ROTATE, ("due since 2026-01-31",))


def test_a_timed_action_follows_the_update_of_the_same_resource():
    plan = plan_at(datetime.datetime(2026, 6, 1, tzinfo=UTC), [widget("new")], recorded("old"))
    assert [c.action for c in plan.actionable] == [Action.UPDATE, Action.ROTATE]


def test_an_object_being_created_or_deleted_has_no_timed_action():
    now = datetime.datetime(2026, 6, 1, tzinfo=UTC)
    assert [c.action for c in plan_at(now, [widget()], state_model.State()).actionable] == [Action.CREATE]
    gone = recorded()
    assert [c.action for c in plan_at(now, [], gone).actionable] == [Action.DELETE]


@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_a_time_out_of_range_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv(clock.ENV, value)
    with pytest.raises(errors.ConfigError, match=r"not an ISO-8601 time in range"):
        clock.now()
