"""Issue 9: access-key rotation that can never strand a consumer. The real CLI
against the sandbox; the clock set by RECONCILER_NOW, never slept."""

from __future__ import annotations

import json
import pathlib
import textwrap

import boto3
import botocore.exceptions
import pytest
from botocore.awsrequest import AWSResponse

from reconciler import errors
from reconciler.aws import propagation
from reconciler.kinds import access_key_rotation
from tests.aws.test_i6_keys_quota import _Raw, inject  # noqa: F401  (fixture)
from tests.aws.test_vaults import STORES, docs, key_doc, vault_doc
from tests.conftest import run, state_of

T0 = "2030-01-01T00:00:00Z"
DUE = "2030-02-01T00:00:00Z"  # 31 days on: past the 30-day interval
ADDRESS = "AccessKeyRotation/app"


def rotation_doc(extra: str = "", user: str = "app-user") -> str:
    return textwrap.dedent(f"""\
        apiVersion: reconciler/v1
        kind: AccessKeyRotation
        metadata: {{name: app}}
        spec:
          userName: {user}
          auth: {{accessKey: {{accessKeyId: {{env: MGR_ID}}, secretAccessKey: {{env: MGR_SECRET}}}}}}
          interval: 30d
          gracePeriod: 1h
          outputs:
            accessKeyId: {{secret: key-id}}
            secretAccessKey: {{secret: key-secret}}
        """) + extra


def iam():
    return boto3.client("iam", region_name="us-east-1")


def user_keys(user: str = "app-user") -> dict[str, str]:
    return {k["AccessKeyId"]: k["Status"] for k in iam().list_access_keys(UserName=user)["AccessKeyMetadata"]}


def caller(key_id: str, secret: str) -> str:
    sts = boto3.client("sts", region_name="us-east-1", aws_access_key_id=key_id, aws_secret_access_key=secret)
    return sts.get_caller_identity()["Arn"]


def pair(directory: pathlib.Path) -> tuple[str, str]:
    got = [run("secret", "get", f"main/{name}", "--dir", directory) for name in ("key-id", "key-secret")]
    for result in got:
        assert result.exit_code == 0, result.output
    return got[0].output, got[1].output


@pytest.fixture()
def manager(aws, monkeypatch):
    """The target user and a manager user whose keys the rotation's auth names."""
    iam().create_user(UserName="app-user")
    iam().create_user(UserName="manager")
    key = iam().create_access_key(UserName="manager")["AccessKey"]
    monkeypatch.setenv("MGR_ID", key["AccessKeyId"])
    monkeypatch.setenv("MGR_SECRET", key["SecretAccessKey"])
    monkeypatch.setenv("RECONCILER_NOW", T0)
    return key["AccessKeyId"]


@pytest.fixture()
def rotated(manager, stack):
    """A stack whose first apply issued the first key (at T0)."""
    def make(extra: str = "", store: str = STORES["local"]) -> pathlib.Path:
        directory = stack({"main.yaml": docs(key_doc(), vault_doc(store), rotation_doc(extra))})
        applied = run("apply", directory, "--auto-approve")
        assert applied.exit_code == 0, applied.output
        return directory
    return make


def at(monkeypatch, when: str) -> None:
    monkeypatch.setenv("RECONCILER_NOW", when)


def current(directory: pathlib.Path) -> str:
    return state_of(directory)["resources"][ADDRESS]["ids"]["current"]["id"]


def test_first_apply_issues_a_key_and_fills_both_outputs(manager, stack):
    directory = stack({"main.yaml": docs(key_doc(), vault_doc(), rotation_doc())})
    planned = run("plan", directory)
    assert planned.exit_code == 0, planned.output
    text = " ".join(planned.output.split())
    assert "+ AccessKeyRotation/app" in planned.output
    assert ("not yet initialised: the first access key of user app-user is issued, verified "
            "(sts:GetCallerIdentity as app-user) and written to main/key-id and main/key-secret") in text
    applied = run("apply", directory, "--auto-approve")
    assert applied.exit_code == 0, applied.output

    key_id, secret = pair(directory)
    assert caller(key_id, secret) == "arn:aws:iam::123456789012:user/app-user"
    assert user_keys() == {key_id: "Active"}
    recorded = state_of(directory)
    entry = recorded["resources"][ADDRESS]
    assert entry["ids"]["current"] == {"id": key_id, "issuedAt": "2030-01-01T00:00:00+00:00"}
    assert "previous" not in entry["ids"] and recorded["journal"] == []
    state_text = (directory / ".reconciler" / "state.json").read_text()
    assert secret not in state_text and secret not in applied.output  # never in state or output

    again = run("plan", directory, "--detailed-exitcode")
    assert again.exit_code == 0, again.output
    assert (f"AccessKeyRotation/app: key {key_id} of user app-user issued 2030-01-01T00:00:00+00:00; "
            "next rotation due at 2030-01-31T00:00:00+00:00") in again.output
    assert run("drift", directory).exit_code == 0


def test_a_due_rotation_switches_outputs_and_retires_the_old_key_only_after_grace(rotated, monkeypatch):
    directory = rotated()
    old_id, old_secret = pair(directory)

    at(monkeypatch, DUE)
    planned = run("plan", directory, "--detailed-exitcode")
    assert planned.exit_code == 2, planned.output
    assert "! AccessKeyRotation/app\n" in planned.output
    assert "rotation due since 2030-01-31T00:00:00+00:00 (every 30d)" in planned.output
    assert run("apply", directory, "--auto-approve").exit_code == 0
    new_id, new_secret = pair(directory)
    assert new_id != old_id and caller(new_id, new_secret).endswith(":user/app-user")
    assert user_keys() == {old_id: "Active", new_id: "Active"}  # the old key is not deactivated at cut-over
    ids = state_of(directory)["resources"][ADDRESS]["ids"]
    assert ids["previous"] == {"id": old_id, "retiredAt": "2030-02-01T00:00:00+00:00"}

    at(monkeypatch, "2030-02-01T00:59:00Z")  # within the grace period: nothing to do
    within = run("plan", directory, "--detailed-exitcode")
    assert within.exit_code == 0, within.output
    assert (f"previous key {old_id} stays active until 2030-02-01T01:00:00+00:00 (grace period), then is "
            "deactivated; deleted at 2030-02-01T02:00:00+00:00") in within.output

    at(monkeypatch, "2030-02-01T01:00:00Z")
    planned = run("plan", directory)
    assert f"! AccessKeyRotation/app (revoke {old_id})" in planned.output
    assert f"deactivate the previous key {old_id}" in planned.output
    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert user_keys() == {old_id: "Inactive", new_id: "Active"}
    with pytest.raises(botocore.exceptions.ClientError):
        caller(old_id, old_secret)  # an inactive key no longer works (the sandbox does as AWS)
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0  # deleted only a grace later

    at(monkeypatch, "2030-02-01T02:00:00Z")
    assert f"delete the previous key {old_id}" in run("plan", directory).output
    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert user_keys() == {new_id: "Active"}
    assert "previous" not in state_of(directory)["resources"][ADDRESS]["ids"]
    assert caller(*pair(directory)).endswith(":user/app-user")
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0


def test_an_inactive_stray_key_is_deleted_to_make_room(rotated, monkeypatch):
    directory = rotated()
    old_id = current(directory)
    stray = iam().create_access_key(UserName="app-user")["AccessKey"]["AccessKeyId"]
    iam().update_access_key(UserName="app-user", AccessKeyId=stray, Status="Inactive")
    at(monkeypatch, DUE)
    applied = run("apply", directory, "--auto-approve")
    assert applied.exit_code == 0, applied.output
    new_id = current(directory)
    assert user_keys() == {old_id: "Active", new_id: "Active"}  # the stray went, the old key kept its grace
    assert caller(*pair(directory)).endswith(":user/app-user")


def test_an_unknown_active_key_stops_the_rotation_naming_it_and_changes_nothing(rotated, monkeypatch):
    directory = rotated()
    old = pair(directory)
    unknown = iam().create_access_key(UserName="app-user")["AccessKey"]["AccessKeyId"]
    drift = run("drift", directory)
    assert drift.exit_code == 2
    assert "[HIGH]" in drift.output and f"foreignKeys.{unknown}" in drift.output

    at(monkeypatch, DUE)
    before = (directory / ".reconciler" / "state.json").read_text()
    for command in (("plan", directory), ("apply", directory, "--auto-approve")):
        refused = run(*command)
        assert refused.exit_code == 1, refused.output
        assert (f"AccessKeyRotation/app: user app-user already holds two access keys and {unknown} (Active) "
                "was not issued by this stack") in " ".join(refused.output.split())
        assert "evictUnknownKeys: true" in refused.output
    assert (directory / ".reconciler" / "state.json").read_text() == before
    assert set(user_keys()) == {old[0], unknown} and pair(directory) == old


def test_evict_unknown_keys_deletes_the_unknown_key(rotated, monkeypatch):
    directory = rotated("  evictUnknownKeys: true\n")
    old_id = current(directory)
    unknown = iam().create_access_key(UserName="app-user")["AccessKey"]["AccessKeyId"]
    at(monkeypatch, DUE)
    assert run("apply", directory, "--auto-approve").exit_code == 0
    new_id = current(directory)
    assert unknown not in user_keys() and user_keys() == {old_id: "Active", new_id: "Active"}


def test_the_current_key_deleted_out_of_band_is_critical_and_reissued_at_once(rotated):
    directory = rotated()
    old_id = current(directory)
    iam().delete_access_key(UserName="app-user", AccessKeyId=old_id)
    drift = run("drift", directory)
    assert drift.exit_code == 2
    assert "[CRITICAL]" in drift.output and 'currentKey = "Active" -> "deleted"' in drift.output
    planned = run("plan", directory)  # not due by the clock: still rotated now
    assert (f"the current key {old_id} was deleted outside reconciler: whoever uses the outputs is broken; "
            "a new key is issued now") in " ".join(planned.output.split())
    assert run("apply", directory, "--auto-approve").exit_code == 0
    new_id, secret = pair(directory)
    assert user_keys() == {new_id: "Active"} and caller(new_id, secret).endswith(":user/app-user")
    assert "previous" not in state_of(directory)["resources"][ADDRESS]["ids"]
    assert run("drift", directory).exit_code == 0


def test_the_current_key_deactivated_out_of_band_is_reissued(rotated):
    directory = rotated()
    old_id = current(directory)
    iam().update_access_key(UserName="app-user", AccessKeyId=old_id, Status="Inactive")
    assert 'currentKey = "Active" -> "Inactive"' in run("drift", directory).output
    assert run("apply", directory, "--auto-approve").exit_code == 0
    new_id, secret = pair(directory)
    assert caller(new_id, secret).endswith(":user/app-user")
    assert user_keys() == {old_id: "Inactive", new_id: "Active"}
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0


def test_an_output_changed_out_of_band_is_drift_and_a_new_pair_is_written(rotated):
    directory = rotated()
    old_id = current(directory)
    from reconciler.stores import local
    local.LocalStore(directory / ".reconciler" / "vault", 10).put("key-id", "rcl:v1:written-by-hand")
    drift = run("drift", directory)
    assert drift.exit_code == 2
    assert 'outputValues.accessKeyId = "as written" -> "changed outside reconciler"' in drift.output
    assert "[HIGH]" in drift.output
    planned = run("plan", directory)
    assert "output main/key-id changed outside reconciler: a new key pair is issued and written" in planned.output
    assert run("apply", directory, "--auto-approve").exit_code == 0
    new_id, secret = pair(directory)
    assert new_id != old_id and caller(new_id, secret).endswith(":user/app-user")
    assert run("drift", directory).exit_code == 0


def test_an_overdue_rotation_is_high_drift(rotated, monkeypatch):
    directory = rotated()
    at(monkeypatch, "2030-01-31T00:30:00Z")  # due, within the grace: not overdue yet
    assert run("drift", directory).exit_code == 0
    at(monkeypatch, "2030-01-31T01:00:00Z")
    drift = run("drift", directory)
    assert drift.exit_code == 2
    assert '[HIGH]' in drift.output and 'schedule = "on time" -> "overdue since 2030-01-31T01:00:00+00:00"' in drift.output


def test_rotate_rotates_now_and_dry_run_changes_nothing(rotated):
    directory = rotated()
    old = pair(directory)
    dry = run("rotate", "app", "--dir", directory, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "! AccessKeyRotation/app" in dry.output and "rotation asked for now (reconciler rotate)" in dry.output
    assert pair(directory) == old and set(user_keys()) == {old[0]}
    done = run("rotate", "app", "--dir", directory)
    assert done.exit_code == 0, done.output
    new = pair(directory)
    assert new[0] != old[0] and caller(*new).endswith(":user/app-user")
    assert user_keys() == {old[0]: "Active", new[0]: "Active"}
    missing = run("rotate", "nope", "--dir", directory)
    assert missing.exit_code == 1
    assert "rotate nope: no AccessKeyRotation/nope in the manifests; declared: app" in missing.output


def test_rotate_refuses_to_apply_unreviewed_changes_of_what_it_depends_on(rotated):
    directory = rotated()
    old = pair(directory)
    main = directory / "main.yaml"
    main.write_text(main.read_text().replace("keepVersions: 10", "keepVersions: 5")
                    .replace("default: true", "default: true\n  description: changed"))
    refused = run("rotate", "app", "--dir", directory)
    assert refused.exit_code == 1
    assert "Vault/main must be applied first" in refused.output
    assert pair(directory) == old


def _sts_refuses(request, **_kwargs):
    body = (b'<ErrorResponse><Error><Type>Sender</Type><Code>InvalidClientTokenId</Code>'
            b'<Message>The security token included in the request is invalid.</Message></Error></ErrorResponse>')
    return AWSResponse(request.url, 403, {"Content-Type": "text/xml"}, _Raw(body))


def test_a_new_key_that_never_works_is_deleted_and_nothing_switches(rotated, inject, monkeypatch):
    directory = rotated()
    old = pair(directory)
    slept: list[float] = []
    monkeypatch.setattr(access_key_rotation, "VERIFY", propagation.Backoff(budget=3.0, sleep=slept.append))
    inject("before-send.sts.GetCallerIdentity", _sts_refuses)
    at(monkeypatch, DUE)
    failed = run("apply", directory, "--auto-approve")
    assert failed.exit_code == 1
    text = " ".join(failed.output.split())
    assert "the new access key" in text and "does not work: sts:GetCallerIdentity with it was refused" in text
    assert slept == [0.5, 1.0]  # retried within the budget (IAM eventual consistency), then gave up
    inject.clear()
    assert set(user_keys()) == {old[0]}  # the new key was deleted; the old one untouched
    assert pair(directory) == old and state_of(directory)["journal"] == []


def test_verification_retries_a_key_not_yet_propagated(rotated, monkeypatch):
    directory = rotated()
    refusals = iter([True, True])
    slept: list[float] = []

    def first_two(request, **kwargs):
        return _sts_refuses(request) if next(refusals, False) else None

    monkeypatch.setattr(access_key_rotation, "VERIFY", propagation.Backoff(budget=30.0, sleep=slept.append))
    from reconciler.aws import session
    session.register_hook("before-send.sts.GetCallerIdentity", first_two)
    try:
        at(monkeypatch, DUE)
        assert run("apply", directory, "--auto-approve").exit_code == 0
    finally:
        session.unregister_hook("before-send.sts.GetCallerIdentity", first_two)
    assert slept == [0.5, 1.0]
    assert caller(*pair(directory)).endswith(":user/app-user")


def second_put_fails():
    """A before-send hook failing the second PutSecretValue (the second output's write)."""
    seen = {"n": 0}

    def hook(request, **_kwargs):
        seen["n"] += 1
        if seen["n"] == 2:
            raw = json.dumps({"__type": "InternalServiceError", "message": "boom"}).encode()
            return AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.1"}, _Raw(raw))
        return None

    return hook


def test_a_failed_second_output_write_puts_the_first_back(rotated, inject, monkeypatch):
    directory = rotated(store=STORES["secretsmanager"])
    old = pair(directory)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    inject("before-send.secrets-manager.PutSecretValue", second_put_fails())
    at(monkeypatch, DUE)
    failed = run("apply", directory, "--auto-approve")
    assert failed.exit_code == 1
    assert "both outputs still hold the previous key (nothing was switched) and the new key was deleted" in \
        " ".join(failed.output.split())
    inject.clear()
    assert pair(directory) == old  # both outputs: the previous pair
    assert set(user_keys()) == {old[0]} and state_of(directory)["journal"] == []
    assert run("apply", directory, "--auto-approve").exit_code == 0  # and the next run rotates
    assert pair(directory)[0] != old[0]


def test_a_missing_user_refuses_the_plan_at_the_resource(manager, stack):
    directory = stack({"main.yaml": docs(key_doc(), vault_doc(), rotation_doc(user="ghost"))})
    refused = run("plan", directory)
    assert refused.exit_code == 1
    assert "main.yaml:" in refused.output
    assert "AccessKeyRotation/app: IAM user ghost does not exist; create it first or fix userName" in refused.output


def test_a_manager_without_permission_is_one_clear_line(manager, stack, inject, monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")

    def denied(request, **_kwargs):
        body = (b'<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>User: manager is '
                b'not authorized to perform: iam:GetUser</Message></Error></ErrorResponse>')
        return AWSResponse(request.url, 403, {"Content-Type": "text/xml"}, _Raw(body))

    inject("before-send.iam.GetUser", denied)
    directory = stack({"main.yaml": docs(key_doc(), vault_doc(), rotation_doc())})
    refused = run("plan", directory)
    assert refused.exit_code == 1
    line = [x for x in refused.output.splitlines() if "AccessKeyRotation/app" in x]
    assert len(line) == 1 and "AWS denied iam:GetUser (AccessDenied)" in line[0]
    assert "`reconciler policy --for app` prints" in line[0]


def test_a_user_holding_two_unknown_keys_refuses_the_first_issuance(manager, stack):
    for _ in range(2):
        iam().create_access_key(UserName="app-user")
    directory = stack({"main.yaml": docs(key_doc(), vault_doc(), rotation_doc())})
    refused = run("plan", directory)
    assert refused.exit_code == 1
    assert "user app-user already holds two access keys" in " ".join(refused.output.split())


def test_destroying_a_rotation_deletes_its_keys_and_outputs_only_with_allow_destroy(rotated):
    directory = rotated()
    key_id = current(directory)
    (directory / "main.yaml").write_text(docs(key_doc(), vault_doc()))
    planned = run("plan", directory)
    assert f"deletes access key {key_id} of user app-user" in " ".join(planned.output.split())
    assert run("apply", directory, "--auto-approve").exit_code == 1
    assert set(user_keys()) == {key_id}
    assert run("apply", directory, "--auto-approve", "--allow-destroy").exit_code == 0
    assert user_keys() == {}
    assert ADDRESS not in state_of(directory)["resources"]
    assert run("secret", "get", "main/key-id", "--dir", directory).exit_code == 1


def test_state_and_plans_never_hold_the_secret(rotated, monkeypatch):
    directory = rotated()
    at(monkeypatch, DUE)
    plan_json = run("plan", directory, "--format", "json", "--out", directory / "r.plan")
    assert run("apply", directory / "r.plan", "--auto-approve").exit_code == 0
    _key_id, secret = pair(directory)
    for text in (plan_json.output, (directory / "r.plan").read_text(),
                 (directory / ".reconciler" / "state.json").read_text(),
                 (directory / ".reconciler" / "state.json.backup").read_text()):
        assert secret not in text


def test_unit_evictable_picks_inactive_then_previous_and_refuses_unknown():
    ids = {"current": {"id": "CUR"}, "previous": {"id": "PREV"}}
    assert access_key_rotation._evictable({"CUR": "Active"}, ids, False, "u") is None
    assert access_key_rotation._evictable({"CUR": "Active", "X": "Inactive"}, ids, False, "u") == "X"
    assert access_key_rotation._evictable({"CUR": "Active", "PREV": "Active"}, ids, False, "u") == "PREV"
    assert access_key_rotation._evictable({"CUR": "Active", "X": "Active"}, ids, True, "u") == "X"
    with pytest.raises(errors.PlanError, match=r"X \(Active\) was not issued by this stack"):
        access_key_rotation._evictable({"CUR": "Active", "X": "Active"}, ids, False, "u")


def test_a_failed_write_killed_while_it_cleans_up_never_switches_to_a_deleted_key(rotated, inject, monkeypatch):
    """Review of issue 9: the cleanup of a failed rotation is journaled before
    it deletes the new key, so the next run never writes that key's pair."""
    from tests.aws.test_i7_runtime_journal import Killed, KillAfter
    from reconciler.aws import session
    directory = rotated(store=STORES["secretsmanager"])
    old = pair(directory)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    inject("before-send.secrets-manager.PutSecretValue", second_put_fails())
    at(monkeypatch, DUE)
    hook = KillAfter(1, "DeleteAccessKey")
    session.register_hook("after-call", hook)
    try:
        with pytest.raises(Killed):
            run("apply", directory, "--auto-approve")
    finally:
        session.unregister_hook("after-call", hook)
    inject.clear()
    assert pair(directory) == old  # put back before the key was deleted
    [journal] = state_of(directory)["journal"]
    assert journal["step"] == "abandoning"
    assert run("apply", directory, "--auto-approve").exit_code == 0
    key_id, secret = pair(directory)
    assert key_id == current(directory) != old[0] and caller(key_id, secret).endswith(":user/app-user")
    assert set(user_keys()) == {old[0], key_id} and state_of(directory)["journal"] == []


def test_an_inactive_current_key_is_evicted_before_the_previous_key_in_its_grace(rotated, monkeypatch):
    directory = rotated()
    at(monkeypatch, DUE)
    assert run("apply", directory, "--auto-approve").exit_code == 0
    previous, dead = state_of(directory)["resources"][ADDRESS]["ids"]["previous"]["id"], current(directory)
    iam().update_access_key(UserName="app-user", AccessKeyId=dead, Status="Inactive")
    at(monkeypatch, "2030-02-01T00:10:00Z")  # inside the previous key's grace period
    planned = run("plan", directory)
    assert f"deletes {dead} (inactive) first to make room" in " ".join(planned.output.split())
    assert run("apply", directory, "--auto-approve").exit_code == 0
    new_id = current(directory)
    assert user_keys() == {previous: "Active", new_id: "Active"}  # the previous key keeps its grace


def test_rotating_inside_the_grace_period_says_it_deletes_the_previous_key_now(rotated, monkeypatch):
    directory = rotated()
    at(monkeypatch, DUE)
    assert run("apply", directory, "--auto-approve").exit_code == 0
    previous = state_of(directory)["resources"][ADDRESS]["ids"]["previous"]["id"]
    at(monkeypatch, "2030-02-01T00:30:00Z")
    dry = run("rotate", "app", "--dir", directory, "--dry-run")
    assert (f"deletes the previous key {previous} now, before its grace period ends at 2030-02-01T01:00:00+00:00: "
            "the user can hold only two keys") in " ".join(dry.output.split())
