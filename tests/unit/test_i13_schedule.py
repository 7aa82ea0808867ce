"""Issue 13 item 2, the pure part: which of a plan's changes may run side by
side (plan/schedule.py), the executor's merge of writes made side by side
(apply.rebase), and the request-quota window with an injected clock
(aws/quotas.py). Plans are made by the real planner over a small fake kind."""

from __future__ import annotations

import dataclasses

import pytest

from reconciler import apply, errors
from reconciler.aws import quotas
from reconciler.plan import actions, model, planner, schedule
from reconciler.state import model as state_model
from tests.golden import fake_kind
from tests.unit.test_core import NOW

Action = actions.Action


def widget(name: str, *depends_on: str, **attributes) -> model.Desired:
    return model.Desired(fake_kind.KIND, name, "managed", {"displayName": name, **attributes}, {},
                         replace_on=frozenset({"displayName"}),
                         dependencies=tuple(f"Widget/{d}" for d in depends_on))


def recorded(name: str, *depends_on: str, **attributes) -> state_model.ResourceState:
    return state_model.ResourceState(fake_kind.KIND, name, "managed", {"id": f"old-{name}"},
                                     {"displayName": name, **attributes}, {},
                                     tuple(f"Widget/{d}" for d in depends_on))


def plan_of(want: list[model.Desired], prior: state_model.State | None = None) -> tuple[model.Plan, state_model.State]:
    prior = prior or state_model.State()
    plan = planner.make_plan(plan_id="p", now=NOW, stack="s", directory="/d", manifests_hash="h",
                             desired={d.address: d for d in want}, prior=prior, refreshed={}, adopted={},
                             refresh=True, rules={fake_kind.KIND: fake_kind.RULES})
    return plan, prior


def waves(plan: model.Plan, prior: state_model.State) -> list[list[str]]:
    """The waves, each sorted by address (within one, the order does not matter)."""
    return [sorted((f"{c.action.symbol} {c.address}" for c in wave), key=lambda t: t.split()[1])
            for wave in schedule.schedule(plan, prior).waves()]


def waits_of(plan: model.Plan, prior: state_model.State) -> dict[str, set[str]]:
    """Each change (by address and action) -> the changes it waits for."""
    planned = schedule.schedule(plan, prior)
    name = [f"{c.action.value} {c.address}" for c in planned.changes]
    return {name[i]: {name[w] for w in waits} for i, waits in enumerate(planned.waits)}


def test_independent_changes_share_a_wave_and_dependents_wait_for_what_they_depend_on():
    plan, prior = plan_of([widget("a"), widget("b"), widget("c", "a"),
                           widget("d", target={"$ref": "Widget/c#id"}), widget("e")])
    assert waves(plan, prior) == [["+ Widget/a", "+ Widget/b", "+ Widget/e"], ["+ Widget/c"], ["+ Widget/d"]]
    assert waits_of(plan, prior) == {
        "create Widget/a": set(), "create Widget/b": set(), "create Widget/e": set(),
        "create Widget/c": {"create Widget/a"},  # a dependency
        "create Widget/d": {"create Widget/c"},  # a reference
    }


def test_a_change_waits_for_what_it_depends_on_through_resources_that_do_not_change():
    prior = state_model.State()
    for entry in (recorded("base"), recorded("middle", "base"), recorded("side")):
        prior = prior.with_resource(entry)
    # base is updated, middle stays as it is, top (new) depends on middle: top waits for base
    plan, prior = plan_of([widget("base", size=2), widget("middle", "base"), widget("top", "middle"),
                           widget("side", size=3)], prior)
    assert waits_of(plan, prior) == {"update Widget/base": set(), "update Widget/side": set(),
                                     "create Widget/top": {"update Widget/base"}}
    assert waves(plan, prior) == [["~ Widget/base", "~ Widget/side"], ["+ Widget/top"]]


def test_deletions_go_dependents_first_and_only_after_every_create_and_update():
    prior = state_model.State()
    for entry in (recorded("old-key"), recorded("old-vault", "old-key"), recorded("old-secret", "old-vault"),
                  recorded("other")):
        prior = prior.with_resource(entry)
    plan, prior = plan_of([widget("new"), widget("new-user", "new")], prior)
    assert waves(plan, prior) == [["+ Widget/new"], ["+ Widget/new-user"],
                                  ["- Widget/old-secret", "- Widget/other"], ["- Widget/old-vault"],
                                  ["- Widget/old-key"]]
    assert waits_of(plan, prior)["delete Widget/old-key"] == {"delete Widget/old-vault"}


def test_a_deletion_waits_for_dependents_through_resources_that_stay():
    prior = state_model.State()
    for entry in (recorded("root"), recorded("kept", "root"), recorded("leaf", "kept")):
        prior = prior.with_resource(entry)
    plan, prior = plan_of([widget("kept")], prior)  # root and leaf go, kept stays (updated: its dependency went)
    assert waits_of(plan, prior)["delete Widget/root"] == {"delete Widget/leaf"}


def test_the_changes_of_one_address_keep_their_order_and_deposed_objects_go_last():
    leases = {"lease-old": "2026-01-01T00:00:00+00:00"}
    entry = dataclasses.replace(recorded("a"), ids={"id": "old-a", "rotatedAt": "2025-01-01T00:00:00+00:00",
                                                    "leases": leases})
    stale = state_model.Deposed("d1", dataclasses.replace(recorded("b"), ids={"id": "older-b"}))  # a replace stopped
    prior = state_model.State().with_resource(entry).with_resource(recorded("b")).with_deposed("Widget/b", stale)
    plan, prior = plan_of([widget("a", rotateEveryDays=30), widget("b", size=1), widget("c")], prior)
    assert waves(plan, prior) == [["~ Widget/a", "~ Widget/b", "+ Widget/c"], ["! Widget/a"],
                                  ["! Widget/a (revoke lease-old)"], ["- Widget/b (deposed d1)"]]
    planned = schedule.schedule(plan, prior)
    assert [(c.action, c.subject) for c in planned.changes if c.resource_address == "Widget/a"] == [
        (Action.UPDATE, ""), (Action.ROTATE, ""), (Action.REVOKE, "lease-old")]


def test_every_wait_points_at_an_earlier_change_so_the_plan_order_is_a_valid_schedule():
    want = [widget(f"w{i}", *([f"w{i // 2}"] if i else [])) for i in range(40)]
    prior = state_model.State()
    for i in range(40, 60):
        prior = prior.with_resource(recorded(f"w{i}", *([f"w{i - 1}"] if i > 40 else [])))
    plan, prior = plan_of(want, prior)
    planned = schedule.schedule(plan, prior)
    assert len(planned.changes) == 60
    assert all(w < i for i, waits in enumerate(planned.waits) for w in waits)
    assert [len(w) for w in planned.waves()][:6] == [1, 1, 2, 4, 8, 16]  # a binary tree, level by level
    by_address = {c.address: i for i, c in enumerate(planned.changes)}
    assert sorted(planned.changes[i].address for i in planned.dependents()[by_address["Widget/w1"]]) == [
        "Widget/w2", "Widget/w3"]


# -- the merge of writes made side by side --------------------------------------
def test_writes_made_side_by_side_are_merged_not_written_over():
    start = state_model.State(lineage="l", serial=3).with_resource(recorded("kept"))
    entry = state_model.JournalEntry.begin("Widget/b", state_model.Operation.CREATE, "create", {}, "t")
    one = start.with_resource(recorded("a"))  # action 1 wrote a...
    two = start.with_journal(entry).without_resource("Widget/kept")  # ...while action 2 journaled, dropped kept
    merged = apply.rebase(start, two, one)
    assert set(merged.resources) == {"Widget/a"} and merged.journal == (entry,)
    assert merged.serial == 3 and merged.lineage == "l"
    closed = apply.rebase(merged, merged.without_journal(entry.operation_id).with_resource(recorded("b")),
                          merged.with_resource(recorded("c")))
    assert set(closed.resources) == {"Widget/a", "Widget/b", "Widget/c"} and closed.journal == ()
    assert apply.rebase(start, start, one) is one  # nothing changed: the current state as it is


# -- request quotas ---------------------------------------------------------------
class Clock:
    """A clock that moves only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_window_grants_at_most_its_quota_in_any_second():
    clock = Clock()
    limiter = quotas.Limiter({("kms", "CreateKey"): 3}, clock=clock, sleep=clock.sleep)
    granted = [limiter.acquire("kms", "CreateKey", "us-east-1") for _ in range(10)]
    assert [g - 100 for g in granted] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]
    assert all(granted[i + 3] - granted[i] >= quotas.WINDOW for i in range(len(granted) - 3))
    assert limiter.acquire("kms", "CreateKey", "eu-west-1") == clock.now  # per region: its own window
    assert limiter.acquire("kms", "DescribeKey", "us-east-1") is None  # not paced


def test_quotas_follow_the_table_and_raised_ones_are_given_in_the_environment(monkeypatch):
    assert quotas.QUOTAS[("kms", "CreateKey")] == 5 and quotas.QUOTAS[("kms", "PutKeyPolicy")] == 15
    assert quotas.QUOTAS[("kms", "TagResource")] == 10
    monkeypatch.setenv(quotas.ENV, "kms:CreateKey=50, kms:TagResource=0")
    limiter = quotas.Limiter()
    assert limiter.quotas[("kms", "CreateKey")] == 50 and limiter.acquire("kms", "TagResource", "r") is None
    monkeypatch.setenv(quotas.ENV, "kms:CreateKey=fast")
    with pytest.raises(errors.ConfigError, match=r"RECONCILER_REQUEST_QUOTAS: expected service:Operation=N"):
        quotas.Limiter()


class _ClaimingRules(type(fake_kind.RULES)):  # type: ignore[misc]
    """The fake kind, claiming the name in its ``alias`` attribute (as keys claim aliases)."""

    def claims(self, change: model.ResourceChange) -> frozenset[str]:
        return frozenset(str(a["alias"]) for a in (change.before, change.after) if a and a.get("alias"))


def test_changes_claiming_one_name_run_in_the_plans_order_never_side_by_side():
    """An alias moved from a to b: b takes it, a lets it go; run side by side, a's
    "delete it while it is still mine" could delete it right after b took it."""
    prior = state_model.State(resources={
        "Widget/a": recorded("a", alias="shared"), "Widget/b": recorded("b"), "Widget/c": recorded("c")})
    plan, _ = plan_of([widget("a", alias=None), widget("b", alias="shared"), widget("c", alias="other")], prior)
    rules = {fake_kind.KIND: _ClaimingRules()}
    planned = schedule.schedule(plan, prior, rules)
    name = [c.address for c in planned.changes]
    waits = {name[i]: {name[w] for w in ws} for i, ws in enumerate(planned.waits)}
    assert waits == {"Widget/a": set(), "Widget/b": {"Widget/a"}, "Widget/c": set()}
    assert schedule.schedule(plan, prior).waits == (frozenset(),) * 3  # without the claims: side by side


def test_a_key_claims_its_aliases_in_every_region_before_and_after():
    from reconciler.kinds import kms

    change = model.ResourceChange(
        "KmsProvider/a", "KmsProvider", "a", Action.UPDATE, "managed",
        before={"alias": "alias/old", "replicas": {"us-west-2": {"alias": "alias/old"}}},
        after={"alias": "alias/new", "replicas": {"us-west-2": {"alias": "alias/west"}}})
    assert kms.RULES.claims(change) == {"kms-alias:alias/old", "kms-alias:alias/new", "kms-alias:alias/west"}
    assert kms.RULES.claims(dataclasses.replace(change, before=None, after={"alias": None})) == frozenset()
