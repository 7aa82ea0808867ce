"""Issue 13 item 1: a no-op plan refreshes at the API-call floor. What AWS
can list is listed in pages shared by the whole run (aliases per region, keys'
tags by the Resource Groups Tagging API, a vault store's current version ids,
the account's roles); only what cannot be listed is read per object
(DescribeKey, GetKeyRotationStatus). Every test runs with pages of 2
(RECONCILER_PAGE_SIZE, which the sandbox honours: fidelity fix 15), so every
list call is followed over more than one page, and checks the listing-based
refresh still sees every out-of-band change."""

from __future__ import annotations

import json
import math
import textwrap

import boto3
import pytest

from tests.conftest import run, state_of

PAGE = 2
N = 5  # keys, and as many secrets: three pages of each listing
ENTRIES = 3  # entries of an SSM or S3 store: two pages


@pytest.fixture()
def paged(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("RECONCILER_PAGE_SIZE", str(PAGE))
    return PAGE


def keys_and_secrets(n: int, store: str) -> dict[str, str]:
    keys = [textwrap.dedent(f"""\
        apiVersion: reconciler/v1
        kind: KmsProvider
        metadata: {{name: key-{i}}}
        spec:
          alias: floor/key-{i}
          description: key {i}
          tags: {{n: '{i}'}}
          rotation: {{enabled: true}}
        """) for i in range(n)]
    vault = textwrap.dedent(f"""\
        apiVersion: reconciler/v1
        kind: Vault
        metadata: {{name: v}}
        spec: {{provider: key-0, default: true, store: {{{store}}}}}
        """)
    secrets = [f"apiVersion: reconciler/v1\nkind: Secret\nmetadata: {{name: s-{i}}}\nspec: {{generate: {{}}}}\n"
               for i in range(n)]
    return {"main.yaml": "---\n".join([*keys, vault, *secrets])}


def pages(items: int) -> int:
    return max(1, math.ceil(items / PAGE))


def by_operation(calls) -> dict[str, int]:
    counted: dict[str, int] = {}
    for service, operation, _region in calls.calls:
        counted[f"{service}:{operation}"] = counted.get(f"{service}:{operation}", 0) + 1
    return counted


def test_a_no_op_plan_makes_at_most_1_1x_the_lower_bound_and_sees_every_drift(aws, stack, calls, paged):
    directory = stack(keys_and_secrets(N, "secretsmanager: {prefix: floor/}"))
    assert run("apply", directory, "--auto-approve").exit_code == 0
    aliases = sum(len(p["Aliases"]) for p in boto3.client("kms").get_paginator("list_aliases").paginate())
    calls.clear()
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0
    bound = {"kms:DescribeKey": N, "kms:GetKeyRotationStatus": N,  # per key: nothing lists them
             "kms:ListAliases": pages(aliases), "resourcegroupstaggingapi:GetResources": pages(N),
             "secretsmanager:ListSecrets": pages(N)}
    made = by_operation(calls)
    assert made == bound  # every listing followed to its last page, and nothing read per object that lists
    assert len(calls.calls) <= 1.1 * sum(bound.values())
    assert not calls.writes

    # the same refresh sees every out-of-band change, on the first page or the last
    ids = {a: r["ids"] for a, r in state_of(directory)["resources"].items()}
    kms, sm = boto3.client("kms"), boto3.client("secretsmanager")
    last = ids[f"KmsProvider/key-{N - 1}"]["keyId"]  # on the last page of every listing
    kms.tag_resource(KeyId=last, Tags=[{"TagKey": "n", "TagValue": "changed"}])
    kms.delete_alias(AliasName="alias/floor/key-3")
    kms.update_key_description(KeyId=ids["KmsProvider/key-2"]["keyId"], Description="by hand")
    kms.disable_key_rotation(KeyId=ids["KmsProvider/key-1"]["keyId"])
    sm.put_secret_value(SecretId=f"floor/s-{N - 1}", SecretString="typed-in-the-console")

    drift = run("drift", directory, "--format", "json")
    assert drift.exit_code == 2, drift.output
    items = {(i["address"], c["path"]) for i in json.loads(drift.stdout)["drift"] for c in i.get("changes", [])}
    assert {(f"KmsProvider/key-{N - 1}", "tags.n"), ("KmsProvider/key-3", "alias"),
            ("KmsProvider/key-2", "description"), ("KmsProvider/key-1", "rotation.enabled"),
            (f"Secret/s-{N - 1}", "value")} <= items
    untouched = {"KmsProvider/key-0", "Secret/s-0", "Secret/s-1"}
    assert not {a for a, _ in items} & untouched


@pytest.mark.parametrize(("store", "listing", "per_entry"), [
    ("ssm: {path: /floor}", "ssm:DescribeParameters", "ssm:GetParameterHistory"),
    ("s3: {bucket: rcl-floor, prefix: team/}", "s3:ListObjectVersions", "s3:GetObject"),
])
def test_ssm_and_s3_stores_list_current_versions_in_pages(aws, stack, calls, paged, store, listing, per_entry):
    boto3.client("s3").create_bucket(Bucket="rcl-floor")
    boto3.client("s3").put_bucket_versioning(Bucket="rcl-floor", VersioningConfiguration={"Status": "Enabled"})
    directory = stack(keys_and_secrets(1, store) | {"more.yaml": "---\n".join(
        f"apiVersion: reconciler/v1\nkind: Secret\nmetadata: {{name: t-{i}}}\nspec: {{generate: {{}}}}\n"
        for i in range(ENTRIES - 1))})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    calls.clear()
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0
    made = by_operation(calls)
    assert made.get(listing) == pages(ENTRIES) and not made.get(per_entry)  # no entry's value read
    if store.startswith("ssm"):
        boto3.client("ssm").put_parameter(Name="/floor/t-1", Value="by-hand", Type="String", Overwrite=True)
    else:
        boto3.client("s3").put_object(Bucket="rcl-floor", Key="team/t-1", Body=b"by-hand")
    drift = run("drift", directory)
    assert drift.exit_code == 2, drift.output
    assert "Secret/t-1" in drift.output and "Secret/t-0" not in drift.output


ROLE = """\
apiVersion: reconciler/v1
kind: IamRole
metadata: {{name: role-{i}}}
spec:
  description: role {i}
  trust:
    awsAccount: {{accountId: "381492033652", externalId: project-{i}}}
  grants:
    - {{provider: key, actions: [encrypt, decrypt]}}
"""
KEY = "apiVersion: reconciler/v1\nkind: KmsProvider\nmetadata: {name: key}\nspec: {alias: floor/roles}\n"


def test_roles_are_refreshed_from_the_account_listing(aws, stack, calls, paged):
    roles = 3
    directory = stack({"main.yaml": "---\n".join([KEY, *(ROLE.format(i=i) for i in range(roles))])})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    in_account = len(boto3.client("iam").list_roles()["Roles"])
    calls.clear()
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0
    made = by_operation(calls)
    assert made.get("iam:ListRoles") == pages(in_account)
    assert made.get("iam:GetAccountAuthorizationDetails") == pages(in_account)
    assert not {op for op in made if op.startswith("iam:") and "Role" in op and op != "iam:ListRoles"}

    iam = boto3.client("iam")
    iam.update_role(RoleName="role-2", Description="by hand")
    iam.put_role_policy(RoleName="role-1", PolicyName="reconciler-grants", PolicyDocument=(
        '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}'))
    iam.attach_role_policy(RoleName="role-0", PolicyArn=iam.create_policy(
        PolicyName="extra", PolicyDocument=(
        '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]}'))["Policy"]["Arn"])
    drift = run("drift", directory)
    assert drift.exit_code == 2, drift.output
    for address in ("IamRole/role-0", "IamRole/role-1", "IamRole/role-2"):
        assert address in drift.output


def test_ids_an_older_state_lacks_are_learned_once_then_recorded_by_the_next_apply(aws, stack, calls):
    """A secret recorded without its store version id (an older reconciler)
    is read value and all, and what the refresh learns is recorded by the
    next apply, even one with nothing to change: the plans after it read no
    value. Nothing else of the entry changes."""
    directory = stack(keys_and_secrets(2, "secretsmanager: {prefix: learned/}"))
    assert run("apply", directory, "--auto-approve").exit_code == 0
    path = directory / ".reconciler" / "state.json"
    state = json.loads(path.read_text())
    recorded = state["resources"]["Secret/s-0"]["ids"].pop("storeVersion")
    path.write_text(json.dumps(state))
    calls.clear()
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0
    assert calls.count("GetSecretValue") == 1  # the one without a version id: its value read

    applied = run("apply", directory, "--auto-approve")
    assert applied.exit_code == 0, applied.output
    after = state_of(directory)
    assert after["serial"] == state["serial"] + 1
    assert after["resources"]["Secret/s-0"]["ids"]["storeVersion"] == recorded
    before = {k: v for k, v in state["resources"]["Secret/s-0"].items() if k not in ("ids", "readAt")}
    assert {k: v for k, v in after["resources"]["Secret/s-0"].items() if k not in ("ids", "readAt")} == before
    calls.clear()
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0
    assert calls.count("GetSecretValue") == 0
    again = run("apply", directory, "--auto-approve")  # nothing learned, nothing asked: nothing written
    assert again.exit_code == 0 and state_of(directory)["serial"] == after["serial"]


def test_a_plan_of_new_secrets_reads_no_entry_its_store_listing_does_not_show(aws, stack, calls, paged):
    """Whether a new secret's name is already taken (another stack's entry, or
    this stack's when state was lost) is answered by the store's listing, made
    once for the whole run: no read per new secret. A taken name is still read,
    and still refuses the plan."""
    directory = stack(keys_and_secrets(N, "secretsmanager: {prefix: fresh/}"))
    calls.clear()
    planned = run("plan", directory, "--detailed-exitcode")
    assert planned.exit_code == 2, planned.output
    made = by_operation(calls)
    assert made.get("secretsmanager:GetSecretValue", 0) == 0
    assert made["secretsmanager:ListSecrets"] == pages(0)

    boto3.client("secretsmanager").create_secret(Name="fresh/s-1", SecretString="not an envelope")
    calls.clear()
    refused = run("plan", directory)
    assert refused.exit_code == 1
    assert "Vault/v's store already holds an entry named s-1 that is not a reconciler envelope" in refused.output
    assert by_operation(calls)["secretsmanager:GetSecretValue"] == 1  # s-1 only, read once for check and find
