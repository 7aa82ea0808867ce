"""Issue 13 item 5: no work when nothing can have changed. ``plan
--refresh-ttl`` skips the refresh of an unchanged stack whose state says
every object was read from live AWS within the TTL (by the clock:
RECONCILER_NOW), and reads live AWS as usual otherwise: a manifest change, an
interrupted run, an apply that did not finish, an object read too long ago.
Whether live AWS was read is counted call by call (a botocore hook), and an
out-of-band change made after the last read is the proof: not seen while the
refresh is skipped, seen without the flag and once the TTL has passed."""

from __future__ import annotations

import datetime
import json
import textwrap

import boto3
import pytest

from tests.aws.test_i6_keys_quota import inject, json_error  # noqa: F401  (fixture)
from tests.aws.test_i7_runtime_journal import kill_after  # noqa: F401  (fixture)
from tests.conftest import run, state_of
from tests.unit.test_i12_render import schema_errors

T0 = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)
READ_AT = "2026-03-01T12:00:00+00:00"  # T0 as state records it
SKIPPED = "Refresh skipped: every object was read within 5m (oldest 2m ago); live AWS was not read."


def key(name: str, description: str = "") -> str:
    return textwrap.dedent(f"""\
        apiVersion: reconciler/v1
        kind: KmsProvider
        metadata: {{name: {name}}}
        spec:
          alias: ttl/{name}
          description: {description or f'key {name}'}
          protect: false
          deletionWindowDays: 7
        """)


def keys(*names: str, **descriptions: str) -> dict[str, str]:
    return {"keys.yaml": "---\n".join(key(n, descriptions.get(n, "")) for n in names)}


@pytest.fixture()
def clock(monkeypatch: pytest.MonkeyPatch):
    """clock(minutes, seconds): set the one clock to T0 + that."""

    def at(minutes: int = 0, seconds: int = 0) -> None:
        when = T0 + datetime.timedelta(minutes=minutes, seconds=seconds)
        monkeypatch.setenv("RECONCILER_NOW", when.isoformat())

    at(0)
    return at


@pytest.fixture()
def applied(aws, stack, clock):
    """Keys a and b applied at T0."""
    directory = stack(keys("a", "b"))
    result = run("apply", directory, "--auto-approve")
    assert result.exit_code == 0, result.output
    return directory


def described_by_hand(directory, name: str, text: str) -> None:
    key_id = state_of(directory)["resources"][f"KmsProvider/{name}"]["ids"]["keyId"]
    boto3.client("kms", region_name="us-east-1").update_key_description(KeyId=key_id, Description=text)


def edit_state(directory, change) -> None:
    path = directory / ".reconciler" / "state.json"
    state = json.loads(path.read_text())
    change(state)
    path.write_text(json.dumps(state))


def first_line(result) -> str:
    return result.stdout.splitlines()[0]


def test_apply_records_when_each_object_was_read_and_the_manifests_it_made_live(applied):
    state = state_of(applied)
    assert {a: r["readAt"] for a, r in state["resources"].items()} == {"KmsProvider/a": READ_AT,
                                                                        "KmsProvider/b": READ_AT}
    assert len(state["manifestsHash"]) == 64


def test_a_change_made_out_of_band_within_the_ttl_is_not_seen_and_no_aws_call_is_made(applied, clock, calls):
    clock(1)
    described_by_hand(applied, "a", "changed by hand")
    clock(2)
    calls.clear()
    skipped = run("plan", applied, "--refresh-ttl", "5m", "--detailed-exitcode")
    assert skipped.exit_code == 0, skipped.output
    assert first_line(skipped) == SKIPPED
    assert "No changes. The recorded state matches the manifests." in skipped.stdout
    assert "changed by hand" not in skipped.stdout
    assert calls.calls == []  # live AWS was not read: not one call
    assert first_line(run("plan", applied, "--refresh-ttl", "300")) == SKIPPED  # seconds: the same TTL

    seen = run("plan", applied, "--detailed-exitcode")  # without the flag: refreshed as ever
    assert seen.exit_code == 2 and "changed by hand" in seen.stdout
    assert calls.count("DescribeKey") == 2

    clock(5, 1)  # the TTL has passed for both keys
    calls.clear()
    late = run("plan", applied, "--refresh-ttl", "5m", "--detailed-exitcode")
    assert late.exit_code == 2 and "changed by hand" in late.stdout
    assert first_line(late) == ("Refreshed despite --refresh-ttl 5m: KmsProvider/a was read 5m1s ago, over 5m "
                                "(1 more read over 5m ago).")
    assert calls.count("DescribeKey") == 2


def test_the_json_and_markdown_plans_say_the_refresh_was_skipped(applied, clock):
    clock(2)
    document = json.loads(run("plan", applied, "--refresh-ttl", "5m", "--format", "json").stdout)
    assert schema_errors("plan", document) == []
    assert document["refreshed"] is False and "readAt" not in document
    assert document["refreshTtl"] == {"ttl": "5m", "skipped": True,
                                      "reason": "every object was read within 5m (oldest 2m ago)"}
    markdown = run("plan", applied, "--refresh-ttl", "5m", "--format", "markdown").stdout
    assert f"> [!NOTE]\n> {SKIPPED}\n" in markdown
    assert "**No changes.** The recorded state matches the manifests." in markdown

    refreshed = json.loads(run("plan", applied, "--format", "json").stdout)
    assert schema_errors("plan", refreshed) == []
    assert refreshed["refreshed"] is True and refreshed["readAt"] == "2026-03-01T12:02:00+00:00"
    assert "refreshTtl" not in refreshed


def test_a_manifest_change_forces_the_refresh_a_comment_does_not(applied, clock, calls):
    clock(2)
    path = applied / "keys.yaml"
    path.write_text("# reviewed in PR 12\n" + path.read_text())  # the same parsed documents
    assert first_line(run("plan", applied, "--refresh-ttl", "5m")) == SKIPPED

    path.write_text(keys("a", "b", a="a new description")["keys.yaml"])
    calls.clear()
    changed = run("plan", applied, "--refresh-ttl", "5m", "--detailed-exitcode")
    assert changed.exit_code == 2 and "a new description" in changed.stdout
    assert first_line(changed) == ("Refreshed despite --refresh-ttl 5m: the manifests changed since they were "
                                   "last applied.")
    assert calls.count("DescribeKey") == 2

    clock(3)
    assert run("apply", applied, "--auto-approve").exit_code == 0
    state = state_of(applied)  # a rewritten at 3m, b found as recorded by the plan's refresh at 3m
    assert {r["readAt"] for r in state["resources"].values()} == {"2026-03-01T12:03:00+00:00"}
    clock(4)
    calls.clear()
    again = run("plan", applied, "--refresh-ttl", "5m")
    assert first_line(again) == ("Refresh skipped: every object was read within 5m (oldest 1m ago); live AWS was "
                                 "not read.")
    assert calls.calls == []


def test_a_journaled_entry_forces_the_refresh(applied, clock, calls):
    def journaled(state):
        connection = state["resources"]["KmsProvider/a"]["connection"]
        state["journal"] = [{"operationId": "op-ttl", "address": "KmsProvider/c", "operation": "create",
                             "step": "create-key", "data": {"connection": connection, "attributes": {}},
                             "startedAt": READ_AT, "attempts": 1, "lastError": ""}]

    edit_state(applied, journaled)  # everything else as the apply left it: only the journal says refresh
    clock(2)
    calls.clear()
    plan = run("plan", applied, "--refresh-ttl", "5m")
    assert plan.exit_code == 0, plan.output
    assert first_line(plan) == ("Refreshed despite --refresh-ttl 5m: the state's journal holds 1 open operation "
                                "(KmsProvider/c): an interrupted run to finish.")
    assert calls.count("DescribeKey") == 2


def test_a_run_killed_mid_apply_forces_the_refresh_until_an_apply_completes(applied, clock, calls, kill_after):
    from tests.aws.test_i7_runtime_journal import Killed

    (applied / "keys.yaml").write_text(keys("a", "b", "c")["keys.yaml"])
    clock(1)
    kill_after(1, "CreateKey")
    with pytest.raises(Killed):
        run("apply", applied, "--auto-approve")
    state = state_of(applied)
    assert [e["address"] for e in state["journal"]] == ["KmsProvider/c"] and "manifestsHash" not in state

    clock(2)
    calls.clear()
    plan = run("plan", applied, "--refresh-ttl", "5m")
    assert first_line(plan).startswith("Refreshed despite --refresh-ttl 5m: the state's journal holds 1 open "
                                       "operation (KmsProvider/c)")
    assert "resuming interrupted create of KmsProvider/c" in plan.stdout
    assert calls.count("DescribeKey") >= 2


def test_an_apply_that_did_not_finish_forces_the_refresh(applied, clock, inject, monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    (applied / "keys.yaml").write_text(keys("a", "b", a="first", b="second")["keys.yaml"])
    clock(1)
    inject("before-send.kms.UpdateKeyDescription", json_error("KMSInternalException", "down"))
    failed = run("apply", applied, "--auto-approve", "--parallelism", "1")
    assert failed.exit_code == 1
    inject.clear()
    assert "manifestsHash" not in state_of(applied)  # cleared when the apply began, never set again

    (applied / "keys.yaml").write_text(keys("a", "b")["keys.yaml"])  # back to what was applied in full
    clock(2)
    plan = run("plan", applied, "--refresh-ttl", "5m")
    assert first_line(plan) == ("Refreshed despite --refresh-ttl 5m: the state records no complete apply of these "
                                "manifests (none yet, one under way, or one that did not finish).")


def test_a_targeted_plan_reads_only_its_scope_when_it_is_older_than_the_ttl(applied, clock, calls):
    def read_long_ago(state):
        state["resources"]["KmsProvider/b"]["readAt"] = "2026-03-01T11:50:00+00:00"

    edit_state(applied, read_long_ago)
    clock(1)
    described_by_hand(applied, "a", "a by hand")
    described_by_hand(applied, "b", "b by hand")
    clock(2)
    calls.clear()
    whole = run("plan", applied, "--refresh-ttl", "5m")
    assert first_line(whole) == "Refreshed despite --refresh-ttl 5m: KmsProvider/b was read 12m ago, over 5m."
    assert calls.count("DescribeKey") == 2

    calls.clear()
    targeted = run("plan", applied, "--target", "KmsProvider/a", "--refresh-ttl", "5m")
    assert first_line(targeted) == ("Refresh skipped: every object in scope (1) was read within 5m (oldest 2m "
                                    "ago); live AWS was not read.")
    assert "a by hand" not in targeted.stdout and calls.calls == []

    clock(6)
    calls.clear()
    later = run("plan", applied, "--target", "KmsProvider/a", "--refresh-ttl", "5m")
    assert first_line(later) == "Refreshed despite --refresh-ttl 5m: KmsProvider/a was read 6m ago, over 5m."
    assert "a by hand" in later.stdout and "b by hand" not in later.stdout
    assert calls.count("DescribeKey") == 1  # the target only: b is out of scope


def test_a_plan_from_the_recorded_state_that_would_change_something_refreshes(applied, clock, calls):
    def remembered_otherwise(state):
        state["resources"]["KmsProvider/a"]["attributes"]["description"] = "what state remembers"

    edit_state(applied, remembered_otherwise)
    clock(2)
    calls.clear()
    plan = run("plan", applied, "--refresh-ttl", "5m", "--detailed-exitcode")
    assert first_line(plan) == ("Refreshed despite --refresh-ttl 5m: a plan from the recorded state would change "
                                "something, and changes are planned against live AWS only.")
    assert plan.exit_code == 0  # live AWS matches the manifests: the drift is state's, nothing to change
    assert "what state remembers" in plan.stdout and calls.count("DescribeKey") == 2


def test_apply_with_the_ttl_and_a_saved_plan_that_skipped_the_refresh(applied, clock, calls, tmp_path):
    clock(2)
    serial = state_of(applied)["serial"]
    calls.clear()
    applied_now = run("apply", applied, "--auto-approve", "--refresh-ttl", "5m")
    assert applied_now.exit_code == 0, applied_now.output
    assert first_line(applied_now) == SKIPPED and "No changes." in applied_now.stdout
    assert calls.calls == []

    saved = tmp_path / "skipped.plan"
    assert run("plan", applied, "--refresh-ttl", "5m", "--out", saved).exit_code == 0
    data = json.loads(saved.read_text())
    assert data["refreshed"] is False and data["refreshTtl"]["skipped"] is True
    result = run("apply", saved, "--auto-approve")
    assert result.exit_code == 0, result.output
    assert "No changes. The recorded state matches the manifests." in result.stdout
    assert calls.calls == [] and state_of(applied)["serial"] == serial  # nothing read, nothing written

    both = run("apply", saved, "--auto-approve", "--refresh-ttl", "5m")
    assert both.exit_code == 1 and both.output == (
        "Error: --refresh-ttl cannot be combined with a saved plan (its refresh was decided when it was made: "
        "give it to plan)\n")


def test_drift_refuses_the_ttl(applied, calls):
    calls.clear()
    refused = run("drift", applied, "--refresh-ttl", "5m")
    assert refused.exit_code == 1 and refused.output == (
        "Error: drift --refresh-ttl: drift always reads live AWS (finding what changed out of band is what it is "
        "for); --refresh-ttl is for plan and apply\n")
    assert calls.calls == []
    assert "--refresh-ttl DURATION" not in run("drift", "--help").output  # not offered; the help says why


def test_a_tree_of_stacks_skips_the_refresh_of_each_unchanged_one(aws, tmp_path, clock, calls):
    from tests.unit.test_i12_stacks import key_yaml, stack_yaml

    root = tmp_path / "stacks"
    for name in ("alpha", "beta"):
        (root / name).mkdir(parents=True)
        (root / name / "stack.yaml").write_text(stack_yaml(name))
        (root / name / "main.yaml").write_text(key_yaml(f"{name}-key"))
        assert run("apply", root / name, "--auto-approve").exit_code == 0
    (root / "beta" / "main.yaml").write_text(key_yaml("beta-key") + "  description: reviewed\n")
    clock(2)
    calls.clear()
    listed = json.loads(run("plan", root, "--refresh-ttl", "5m", "--format", "json").stdout)
    assert [(s["name"], s["plan"]["refreshTtl"]["skipped"], s["plan"]["refreshTtl"]["reason"]) for s in listed] == [
        ("alpha", True, "every object was read within 5m (oldest 2m ago)"),
        ("beta", False, "the manifests changed since they were last applied")]
    assert calls.count("DescribeKey") == 1  # beta's key only


def test_a_state_behind_its_backup_is_refused_as_before_and_with_force_refreshed(applied, clock, calls):
    path = applied / ".reconciler" / "state.json"
    older, manifests = path.read_text(), (applied / "keys.yaml").read_text()
    (applied / "keys.yaml").write_text(keys("a", "b", a="moved on")["keys.yaml"])
    clock(1)
    assert run("apply", applied, "--auto-approve").exit_code == 0
    path.write_text(older)  # restored from an older copy: fresh read times, the manifests it recorded
    (applied / "keys.yaml").write_text(manifests)
    clock(2)
    refused = run("plan", applied, "--refresh-ttl", "5m")
    assert refused.exit_code == 1 and "the state's serial went backwards" in refused.output
    calls.clear()
    forced = run("plan", applied, "--refresh-ttl", "5m", "--force")
    assert first_line(forced) == ("Refreshed despite --refresh-ttl 5m: the state is behind its backup (restored "
                                  "from an older copy).")
    assert "moved on" in forced.stdout and calls.count("DescribeKey") == 2


def test_regenerate_lost_reads_live_aws_whatever_the_ttl(applied, clock, calls):
    clock(2)
    calls.clear()
    plan = run("plan", applied, "--refresh-ttl", "5m", "--regenerate-lost")
    assert first_line(plan) == "Refreshed despite --refresh-ttl 5m: --regenerate-lost looks for keys that are gone."
    assert calls.count("DescribeKey") == 2


def test_an_apply_with_nothing_to_change_records_what_its_refresh_confirmed(applied, clock, calls):
    """The steady state of CI (apply on merge, plan on every pull request): an
    apply --refresh-ttl that finds nothing to change still records each object
    as read when its refresh began, so the plans after it may skip the refresh.
    Without the flag it writes nothing (a write would make saved plans stale)."""
    clock(10)  # past the TTL of the apply's own reads
    serial = state_of(applied)["serial"]
    without = run("apply", applied, "--auto-approve")  # not asked for: nothing written (saved plans stay valid)
    assert without.exit_code == 0 and "Nothing to apply" not in without.stdout
    assert state_of(applied)["serial"] == serial
    noop = run("apply", applied, "--auto-approve", "--refresh-ttl", "5m")
    assert noop.exit_code == 0, noop.output
    assert "No changes." in noop.stdout
    assert noop.stdout.rstrip().endswith(
        f"Nothing to apply; state records what the refresh confirmed (read 2026-03-01T12:10:00+00:00), "
        f"serial {serial + 1}.")
    state = state_of(applied)
    assert state["serial"] == serial + 1
    assert {r["readAt"] for r in state["resources"].values()} == {"2026-03-01T12:10:00+00:00"}
    again = run("apply", applied, "--auto-approve", "--refresh-ttl", "5m")  # within the TTL: refresh skipped
    assert again.exit_code == 0 and "Nothing to apply" not in again.stdout
    assert state_of(applied)["serial"] == serial + 1

    clock(12)
    calls.clear()
    skipped = run("plan", applied, "--refresh-ttl", "5m", "--detailed-exitcode")
    assert skipped.exit_code == 0, skipped.output
    assert first_line(skipped) == SKIPPED and calls.calls == []
