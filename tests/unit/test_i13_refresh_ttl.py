"""Issue 13 item 5, the pure core: the --refresh-ttl decision (plan/freshness.py),
the durations it takes, the state fields it reads (a read time per entry, the
manifests of the last complete apply) and what apply records (apply.completed).
The sandbox side is tests/aws/test_i13_refresh_ttl.py."""

from __future__ import annotations

import dataclasses
import datetime

import pytest

from reconciler import apply, errors
from reconciler.plan import freshness, model
from reconciler.state import model as state_model
from tests.conftest import run

NOW = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)
TTL = datetime.timedelta(minutes=5)
HASH = "h" * 64


def at(minutes_ago: float) -> str:
    return (NOW - datetime.timedelta(minutes=minutes_ago)).isoformat(timespec="seconds")


def entry(name: str, minutes_ago: float | None = 1) -> state_model.ResourceState:
    return state_model.ResourceState("KmsProvider", name, state_model.Mode.MANAGED, {"keyId": name},
                                     {"description": name}, {}, (),
                                     at(minutes_ago) if minutes_ago is not None else "")


def state(*entries: state_model.ResourceState, **fields) -> state_model.State:
    base = state_model.State("lineage", 3, {e.address: e for e in entries}, stack="test", manifests_hash=HASH)
    return dataclasses.replace(base, **fields)


def decide(prior: state_model.State, *, desired=None, scope=None, behind_backup=False, now=NOW,
           manifests_hash=HASH) -> freshness.Decision:
    return freshness.decide(TTL, now, prior, stack="test", manifests_hash=manifests_hash,
                            desired=prior.resources if desired is None else desired, scope=scope,
                            behind_backup=behind_backup)


# -- durations -------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "seconds"), [("300", 300), ("90s", 90), ("5m", 300), ("1h", 3600),
                                                ("1d", 86400), ("24h", 86400)])
def test_a_duration_is_seconds_or_a_number_with_a_unit(text, seconds):
    assert freshness.parse_ttl(text) == datetime.timedelta(seconds=seconds)


EXPECTED = "give seconds (300) or a number with s, m or h (90s, 5m, 1h), at most 24h"


@pytest.mark.parametrize(("text", "message"), [
    ("5x", f"--refresh-ttl 5x: not a duration; {EXPECTED}"),
    ("abc", f"--refresh-ttl abc: not a duration; {EXPECTED}"),
    ("-5", f"--refresh-ttl -5: not a duration; {EXPECTED}"),
    ("1.5h", f"--refresh-ttl 1.5h: not a duration; {EXPECTED}"),
    ("5 m", f"--refresh-ttl 5 m: not a duration; {EXPECTED}"),
    ("", f"--refresh-ttl : not a duration; {EXPECTED}"),
    ("0", "--refresh-ttl 0: must be more than 0 (leave --refresh-ttl out to always refresh)"),
    ("0m", "--refresh-ttl 0m: must be more than 0 (leave --refresh-ttl out to always refresh)"),
    ("25h", f"--refresh-ttl 25h: longer than 24h; {EXPECTED}"),
    ("99999999999", f"--refresh-ttl 99999999999: not a duration; {EXPECTED}"),
])
def test_a_bad_duration_is_one_clear_error(text, message):
    with pytest.raises(errors.ConfigError) as raised:
        freshness.parse_ttl(text)
    assert raised.value.message == message


@pytest.mark.parametrize("command", [["plan"], ["apply", "--auto-approve"]])
@pytest.mark.parametrize(("text", "line"), [
    ("5x", f"Error: --refresh-ttl 5x: not a duration; {EXPECTED}"),
    ("0", "Error: --refresh-ttl 0: must be more than 0 (leave --refresh-ttl out to always refresh)"),
    ("25h", f"Error: --refresh-ttl 25h: longer than 24h; {EXPECTED}"),
])
def test_the_cli_refuses_a_bad_duration_in_one_line_exit_1_before_any_work(tmp_path, command, text, line):
    result = run(*command, tmp_path / "nowhere", "--refresh-ttl", text)  # the stack is not even looked for
    assert (result.exit_code, result.output) == (1, f"{line}\n")


def test_the_ttl_and_no_refresh_are_one_or_the_other(tmp_path):
    result = run("plan", tmp_path, "--refresh-ttl", "5m", "--no-refresh")
    assert result.exit_code == 1
    assert result.output == ("Error: --refresh-ttl and --no-refresh: give one (--no-refresh never reads live AWS; "
                             "--refresh-ttl reads it unless every object was read within DURATION)\n")


@pytest.mark.parametrize(("seconds", "shown"), [(0, "0s"), (45, "45s"), (300, "5m"), (301, "5m1s"),
                                                 (3600, "1h"), (5430, "1h30m30s"), (86400, "24h")])
def test_spans_are_written_as_terraform_and_go_write_durations(seconds, shown):
    assert freshness.span(datetime.timedelta(seconds=seconds)) == shown


# -- the decision ----------------------------------------------------------------------
def test_skipped_when_nothing_can_have_changed_and_every_object_was_read_within_the_ttl():
    decision = decide(state(entry("a", 1), entry("b", 2)))
    assert decision == freshness.Decision("5m", True, "every object was read within 5m (oldest 2m ago)")
    assert decision.line == "Refresh skipped: every object was read within 5m (oldest 2m ago); live AWS was not read."


def test_read_exactly_the_ttl_ago_is_within_it_a_second_more_is_not():
    assert decide(state(entry("a", 5))).skipped
    late = decide(state(entry("a", 5 + 1 / 60), entry("b", 6), entry("c", 1)))
    assert late == freshness.Decision("5m", False, "KmsProvider/b was read 6m ago, over 5m (1 more read over 5m ago)")
    assert late.line == "Refreshed despite --refresh-ttl 5m: KmsProvider/b was read 6m ago, over 5m (1 more read over " \
                        "5m ago)."


@pytest.mark.parametrize(("prior", "kwargs", "reason"), [
    (state(entry("a")), {"behind_backup": True}, "the state is behind its backup (restored from an older copy)"),
    (state(entry("a"), journal=(state_model.JournalEntry("op", "KmsProvider/a", state_model.Operation.CREATE,
                                                          "create-key", {}, at(1)),)), {},
     "the state's journal holds 1 open operation (KmsProvider/a): an interrupted run to finish"),
    (state(entry("a"), deposed={"KmsProvider/a": (state_model.Deposed("d1", entry("a")),)}), {},
     "the state holds deposed objects (KmsProvider/a): an interrupted replace"),
    (state(entry("a"), stack="other"), {}, "the state was written by stack other"),
    (state(entry("a"), manifests_hash=None), {},
     "the state records no complete apply of these manifests (none yet, one under way, or one that did not finish)"),
    (state(entry("a")), {"manifests_hash": "x" * 64}, "the manifests changed since they were last applied"),
    (state(entry("a")), {"desired": ["KmsProvider/a", "KmsProvider/b"]}, "not in state: KmsProvider/b"),
    (state(entry("a"), entry("b")), {"desired": ["KmsProvider/a"]}, "in state, not in the manifests: KmsProvider/b"),
    (state(), {}, "nothing in state to read"),
    (state(entry("a"), entry("b", None)), {}, "KmsProvider/b has no recorded read from live AWS"),
    (state(entry("a", -1)), {}, "KmsProvider/a was read at 2026-03-01T12:01:00+00:00, later than now by the clock "
                                "(the clock went back)"),
])
def test_each_condition_alone_makes_the_plan_refresh(prior, kwargs, reason):
    assert decide(prior, **kwargs) == freshness.Decision("5m", False, reason)


def test_only_the_scope_of_a_targeted_plan_counts():
    prior = state(entry("a", 1), entry("b", None), entry("c", 30))
    assert not decide(prior).skipped
    targeted = decide(prior, scope={"KmsProvider/a"}, desired=["KmsProvider/a", "KmsProvider/b", "KmsProvider/c"])
    assert targeted == freshness.Decision("5m", True, "every object in scope (1) was read within 5m (oldest 1m ago)")
    assert decide(prior, scope={"KmsProvider/a", "KmsProvider/c"}).reason == "KmsProvider/c was read 30m ago, over 5m"


def test_many_addresses_are_named_three_then_counted():
    journal = tuple(state_model.JournalEntry(f"op{i}", f"KmsProvider/k{i}", state_model.Operation.CREATE, "s", {},
                                             at(1)) for i in range(5))
    assert decide(state(entry("a"), journal=journal)).reason == (
        "the state's journal holds 5 open operations (KmsProvider/k0, KmsProvider/k1, KmsProvider/k2 and 2 more): "
        "an interrupted run to finish")


# -- state: what is recorded, and how -----------------------------------------------------
def test_an_entry_without_a_read_time_encodes_as_before_and_one_with_it_round_trips():
    unread = entry("a", None)
    assert "readAt" not in unread.to_json()
    assert state_model.ResourceState.from_json(unread.to_json()) == unread
    read = entry("a", 2)
    assert read.to_json()["readAt"] == "2026-03-01T11:58:00+00:00"
    assert state_model.ResourceState.from_json(read.to_json()) == read
    assert read.read(read.read_at) is read and unread.unread() is unread
    assert "manifestsHash" not in state(unread, manifests_hash=None).to_json()
    again = state_model.State.from_json(state(read).to_json())
    assert again.manifests_hash == HASH and again.resources["KmsProvider/a"].read_at == read.read_at


@pytest.mark.parametrize(("value", "shape"), [(5, "a number"), ("yesterday", "a string"),
                                               ("2026-03-01T12:00:00", "a string")])  # no zone: not a time we wrote
def test_a_damaged_read_time_is_one_error_naming_the_field(value, shape):
    data = state(entry("a")).to_json()
    data["resources"]["KmsProvider/a"]["readAt"] = value
    with pytest.raises(errors.StateError) as raised:
        state_model.State.from_json(data)
    assert raised.value.message.startswith(
        f"state: resources.KmsProvider/a: malformed entry (readAt: expected an ISO-8601 time with its zone, got "
        f"{shape}); restore the previous version")


def test_a_damaged_manifests_hash_is_one_error_naming_the_field():
    data = {**state(entry("a")).to_json(), "manifestsHash": 7}
    with pytest.raises(errors.StateError) as raised:
        state_model.State.from_json(data)
    assert raised.value.message.startswith("state: manifestsHash: expected a string, got a number")


def test_unchanged_entries_are_not_encoded_again():
    cache: state_model.EncodeCache = {}
    prior = state(entry("a"), entry("b"))
    state_model.dumps(prior, cache)
    encoded = {k: v[1] for k, v in cache.items()}
    later = prior.with_resource(entry("c"))
    state_model.dumps(later, cache)
    assert all(cache[k][1] is v for k, v in encoded.items())  # a and b: the same encoded text, not re-made


# -- apply: what it records once every action is done --------------------------------------
def a_plan(**fields) -> model.Plan:
    base = model.Plan("plan-1", at(0), "test", ".", HASH, "lineage", 3, True, (), (), (), {}, read_at=at(2))
    return dataclasses.replace(base, **fields)


def test_a_complete_apply_records_its_manifests_and_what_its_refresh_found_as_recorded():
    initial = state(entry("a", 30), entry("b", 30), entry("c", 30), entry("d", 30), manifests_hash=None)
    rewritten = initial.with_resource(entry("b", 0))  # written by this apply, read then
    drifted = model.DriftItem("KmsProvider/c", "warning", ())
    done = apply.completed(a_plan(confirmed=("KmsProvider/a", "KmsProvider/b"), drift=(drifted,)), initial, rewritten)
    assert done.manifests_hash == HASH
    assert {a: e.read_at for a, e in done.resources.items()} == {
        "KmsProvider/a": at(2), "KmsProvider/b": at(0), "KmsProvider/c": "", "KmsProvider/d": at(30)}
    assert done.resources["KmsProvider/d"] is initial.resources["KmsProvider/d"]  # untouched: not encoded again


def test_a_newer_read_time_is_never_put_back_and_a_plan_without_a_refresh_records_none():
    initial = state(entry("a", 1))
    assert apply.completed(a_plan(confirmed=("KmsProvider/a",)), initial, initial).resources == initial.resources
    unread = apply.completed(a_plan(refreshed=False, read_at="", confirmed=()), initial, initial)
    assert unread.resources["KmsProvider/a"].read_at == at(1)


@pytest.mark.parametrize(("initial_hash", "plan_hash", "recorded"), [(HASH, HASH, HASH), (HASH, "x" * 64, None),
                                                                      (None, HASH, None)])
def test_a_targeted_apply_keeps_the_recorded_manifests_only_when_it_planned_the_same(initial_hash, plan_hash,
                                                                                   recorded):
    initial = state(entry("a"), manifests_hash=initial_hash)
    done = apply.completed(a_plan(targets=("KmsProvider/a",), manifests_hash=plan_hash), initial, initial)
    assert done.manifests_hash == recorded


def test_a_destroy_records_no_manifests():
    initial = state(entry("a"))
    assert apply.completed(a_plan(destroy=True), initial, state(manifests_hash=None)).manifests_hash is None


def test_the_plan_file_keeps_the_decision_and_what_apply_records():
    decision = freshness.Decision("5m", True, "every object was read within 5m (oldest 2m ago)")
    plan = a_plan(confirmed=("KmsProvider/a",), refresh_ttl=decision, destroy=True)
    assert model.Plan.from_json(plan.to_json()) == plan
    old = {k: v for k, v in plan.to_json().items() if k not in ("readAt", "confirmed", "refreshTtl", "destroy")}
    assert model.Plan.from_json(old) == a_plan(read_at="")  # a plan file of an earlier version
