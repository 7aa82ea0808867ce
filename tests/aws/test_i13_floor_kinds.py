"""Issue 13 item 1 for the kinds the first pass left (AccessKeyRotation,
DynamicIamTemplate with its leases, OidcProvider, Vault): a no-op plan makes
exactly the lower bound of calls, counted by the botocore hook. What AWS lists
is listed once per run (a vault store's current version ids for a rotation's
outputs, the account's users with GetAccountAuthorizationDetails for the
leases' users); what it cannot list is read per object (ListAccessKeys per
rotation, GetOpenIDConnectProvider per provider, GetBucketVersioning per
bucket). Every test runs with pages of 2 (RECONCILER_PAGE_SIZE, honoured by
the sandbox), so each listing is followed over more than one page, and
checks the listing-based refresh sees every out-of-band change the
per-object one does: the same drift, item for item, with the listing denied
(the per-object fallback)."""

from __future__ import annotations

import json
import math
import textwrap

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from tests.aws.test_i6_keys_quota import _Raw, inject  # noqa: F401  (fixture)
from tests.aws.test_i10_leases import account, create, template  # noqa: F401  (fixture)
from tests.aws.test_i13_refresh_floor import by_operation
from tests.aws.test_vaults import docs, key_doc, vault_doc, versioned_bucket
from tests.conftest import run, state_of

PAGE = 2
ROTATIONS = 4  # eight outputs: four pages of ListSecrets
LEASES = 4  # with the manager, five users: three pages of GetAccountAuthorizationDetails


@pytest.fixture()
def paged(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("RECONCILER_PAGE_SIZE", str(PAGE))
    return PAGE


def pages(items: int) -> int:
    return max(1, math.ceil(items / PAGE))


def iam():
    return boto3.client("iam", region_name="us-east-1")


def denied_json(request, **_kwargs):
    raw = json.dumps({"__type": "AccessDeniedException", "message": "not authorized"}).encode()
    return AWSResponse(request.url, 400, {"Content-Type": "application/x-amz-json-1.1"}, _Raw(raw))


def denied_xml(request, **_kwargs):
    body = (b'<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not authorized'
            b'</Message></Error></ErrorResponse>')
    return AWSResponse(request.url, 403, {"Content-Type": "text/xml"}, _Raw(body))


def drift_items(directory) -> set[tuple[str, str, str]]:
    """(address, path, live value) of every drift item (path and value empty for one without changes)."""
    result = run("drift", directory, "--format", "json")
    assert result.exit_code == 2, result.output
    found = set()
    for item in json.loads(result.stdout)["drift"]:
        changes = item.get("changes") or [{}]
        for change in changes:
            found.add((item["address"], str(change.get("path", "")), json.dumps(change.get("after"), sort_keys=True)))
    return found


def key_ops(aliases: int) -> dict[str, int]:
    """A no-op plan's calls for the vault's one key (tests/aws/test_i13_refresh_floor.py)."""
    return {"kms:DescribeKey": 1, "kms:GetKeyRotationStatus": 1, "kms:ListAliases": pages(aliases),
            "resourcegroupstaggingapi:GetResources": 1}


def aliases() -> int:
    return sum(len(p["Aliases"]) for p in boto3.client("kms").get_paginator("list_aliases").paginate())


# -- AccessKeyRotation ---------------------------------------------------------------------------
def rotation_doc(i: int) -> str:
    return textwrap.dedent(f"""\
        apiVersion: reconciler/v1
        kind: AccessKeyRotation
        metadata: {{name: r-{i}}}
        spec:
          userName: user-{i}
          interval: 30d
          gracePeriod: 1h
          outputs:
            accessKeyId: {{secret: r-{i}-id}}
            secretAccessKey: {{secret: r-{i}-secret}}
        """)


@pytest.fixture()
def rotations(aws, stack, paged, monkeypatch):
    monkeypatch.setenv("RECONCILER_NOW", "2030-01-01T00:00:00Z")
    for i in range(ROTATIONS):
        iam().create_user(UserName=f"user-{i}")
    directory = stack({"main.yaml": docs(key_doc(), vault_doc("secretsmanager: {prefix: floor/}"),
                                         *(rotation_doc(i) for i in range(ROTATIONS)))})
    applied = run("apply", directory, "--auto-approve")
    assert applied.exit_code == 0, applied.output
    return directory


def test_a_rotation_costs_one_list_access_keys_and_its_outputs_are_listed(rotations, calls):
    outputs = state_of(rotations)["resources"]["AccessKeyRotation/r-0"]["ids"]["outputs"]
    assert all(o["storeVersion"] for o in outputs.values())  # the id of the version each write made
    calls.clear()
    planned = run("plan", rotations, "--detailed-exitcode")
    assert planned.exit_code == 0, planned.output
    bound = {**key_ops(aliases()), "iam:ListAccessKeys": ROTATIONS,  # per user: IAM lists keys by user only
             "secretsmanager:ListSecrets": pages(2 * ROTATIONS)}  # both outputs of every rotation, in pages
    assert by_operation(calls) == bound  # no GetUser, no GetSecretValue
    assert not calls.writes


def test_a_rotation_recorded_without_version_ids_reads_its_outputs(rotations, calls):
    recorded = state_of(rotations)
    for output in recorded["resources"]["AccessKeyRotation/r-1"]["ids"]["outputs"].values():
        del output["storeVersion"]  # as written before this change
    (rotations / ".reconciler" / "state.json").write_text(json.dumps(recorded))
    calls.clear()
    assert run("plan", rotations, "--detailed-exitcode").exit_code == 0  # the same values: no drift
    assert calls.count("GetSecretValue") == 2  # that rotation's two outputs, read; the others listed


def test_the_listed_refresh_of_rotations_sees_every_change_the_per_object_one_does(rotations, inject, calls):
    ids = {i: state_of(rotations)["resources"][f"AccessKeyRotation/r-{i}"]["ids"] for i in range(ROTATIONS)}
    client = iam()
    client.update_access_key(UserName="user-0", AccessKeyId=ids[0]["current"]["id"], Status="Inactive")
    client.delete_access_key(UserName="user-1", AccessKeyId=ids[1]["current"]["id"])
    foreign = client.create_access_key(UserName="user-2")["AccessKey"]["AccessKeyId"]
    sm = boto3.client("secretsmanager")
    sm.put_secret_value(SecretId=f"floor/r-{ROTATIONS - 1}-secret", SecretString="typed-in-the-console")  # last page
    sm.delete_secret(SecretId="floor/r-2-id", ForceDeleteWithoutRecovery=True)
    listed = drift_items(rotations)
    assert {("AccessKeyRotation/r-0", "currentKey", '"Inactive"'),
            ("AccessKeyRotation/r-1", "currentKey", '"deleted"'),
            ("AccessKeyRotation/r-2", f"foreignKeys.{foreign}", '"Active"'),
            ("AccessKeyRotation/r-2", "outputValues.accessKeyId", '"missing"'),
            (f"AccessKeyRotation/r-{ROTATIONS - 1}", "outputValues.secretAccessKey",
             '"changed outside reconciler"')} <= listed
    assert {a for a, _, _ in listed} == {f"AccessKeyRotation/r-{i}" for i in range(ROTATIONS)}

    inject("before-send.secrets-manager.ListSecrets", denied_json)  # no listing: every output read
    calls.clear()
    assert drift_items(rotations) == listed
    assert calls.count("GetSecretValue") == 2 * ROTATIONS

    # a user deleted out of band: the plan refuses, naming it; drift reports the rotation gone
    inject.clear()
    for key in client.list_access_keys(UserName="user-3")["AccessKeyMetadata"]:
        client.delete_access_key(UserName="user-3", AccessKeyId=key["AccessKeyId"])
    client.delete_user(UserName="user-3")
    refused = run("plan", rotations)
    assert refused.exit_code == 1
    assert "AccessKeyRotation/r-3: IAM user user-3 does not exist; create it first or fix userName" in refused.output
    assert "Traceback" not in refused.output
    drift = json.loads(run("drift", rotations, "--format", "json").stdout)["drift"]
    assert [i.get("gone") for i in drift if i["address"] == "AccessKeyRotation/r-3"] == [True]


# -- DynamicIamTemplate and its leases -------------------------------------------------------------
@pytest.fixture()
def leased(account, stack, paged):
    directory = stack({"template.yaml": template()})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    made = [create(directory) for _ in range(LEASES)]
    return directory, made


def test_every_lease_user_comes_from_the_account_listing(leased, calls):
    directory, _made = leased
    users = len(iam().list_users()["Users"])  # the manager and the leases' users
    assert users == LEASES + 1
    calls.clear()
    planned = run("plan", directory, "--detailed-exitcode")
    assert planned.exit_code == 0, planned.output
    assert by_operation(calls) == {"iam:GetAccountAuthorizationDetails": pages(users)}  # nothing per lease


def test_the_listed_refresh_of_leases_sees_every_change_the_per_object_one_does(leased, inject, calls):
    directory, made = leased
    client = iam()
    names = [lease["userName"] for lease in made]
    client.add_user_to_group(UserName=names[0], GroupName="writers")
    client.attach_user_policy(UserName=names[1], PolicyArn="arn:aws:iam::123456789012:policy/other")
    client.put_user_policy(UserName=names[1], PolicyName="reconciler-lease", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
    client.delete_user_permissions_boundary(UserName=names[2])
    client.delete_access_key(UserName=names[3], AccessKeyId=made[3]["accessKeyId"])
    client.detach_user_policy(UserName=names[3], PolicyArn="arn:aws:iam::123456789012:policy/read-only")
    client.remove_user_from_group(UserName=names[3], GroupName="readers")
    client.delete_user_policy(UserName=names[3], PolicyName="reconciler-lease")
    client.delete_user(UserName=names[3])
    client.create_user(UserName="stray", Path="/leases/more/", Tags=[
        {"Key": "reconciler:stack", "Value": "test"}, {"Key": "reconciler:template", "Value": "DynamicIamTemplate/ci"}])

    listed = drift_items(directory)
    addresses = {a for a, _, _ in listed}
    assert {f"DynamicIamTemplate/ci (lease {made[3]['leaseId']})", "DynamicIamTemplate/ci (orphan stray)",
            "DynamicIamTemplate/ci"} <= addresses
    (users,) = [after for a, path, after in listed if a == "DynamicIamTemplate/ci" and path == "leaseUsers"]
    for words in (f"{names[0]}): added to group writers outside reconciler",
                  f"{names[1]}): policy arn:aws:iam::123456789012:policy/other attached outside reconciler, "
                  "inline policy reconciler-lease differs from the template",
                  f"{names[2]}): permissions boundary none instead of arn:aws:iam::123456789012:policy/boundary"):
        assert words in users
    assert "3 out of step" in users

    inject("before-send.iam.GetAccountAuthorizationDetails", denied_xml)  # no listing: user by user
    calls.clear()
    assert drift_items(directory) == listed
    assert calls.count("GetUser") == LEASES and calls.count("ListUserTags") == 1  # the stray, not a lease


# -- OidcProvider and Vault: one read per object is the floor ----------------------------------------
def oidc_doc(i: int) -> str:
    return textwrap.dedent(f"""\
        apiVersion: reconciler/v1
        kind: OidcProvider
        metadata: {{name: idp-{i}}}
        spec:
          url: https://issuer-{i}.example.com
          audiences: [sts.amazonaws.com]
          tags: {{n: '{i}'}}
        """)


def test_an_oidc_provider_costs_one_get_and_its_drift_is_seen(aws, stack, paged, calls):
    providers = 3
    directory = stack({"main.yaml": docs(*(oidc_doc(i) for i in range(providers)))})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    calls.clear()
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0
    # ListOpenIDConnectProviders gives ARNs only: audiences, thumbprints and tags are GetOpenIDConnectProvider's
    assert by_operation(calls) == {"iam:GetOpenIDConnectProvider": providers}
    arns = {i: state_of(directory)["resources"][f"OidcProvider/idp-{i}"]["ids"]["arn"] for i in range(providers)}
    iam().add_client_id_to_open_id_connect_provider(OpenIDConnectProviderArn=arns[0], ClientID="extra")
    iam().tag_open_id_connect_provider(OpenIDConnectProviderArn=arns[1], Tags=[{"Key": "n", "Value": "x"}])
    found = drift_items(directory)
    assert {("OidcProvider/idp-0", "audiences", '["extra", "sts.amazonaws.com"]'),
            ("OidcProvider/idp-1", "tags.n", '"x"')} <= found
    assert "OidcProvider/idp-2" not in {a for a, _, _ in found}


def test_vaults_on_one_bucket_check_its_versioning_once(aws, stack, paged, calls):
    versioned_bucket("rcl-floor")
    vaults = [vault_doc(f"s3: {{bucket: rcl-floor, prefix: {team}/}}", name=team).replace("default: true",
                                                                                       "default: false")
              for team in ("red", "blue")]
    secrets = [f"apiVersion: reconciler/v1\nkind: Secret\nmetadata: {{name: s-{team}}}\n"
               f"spec: {{vault: {team}, generate: {{}}}}\n" for team in ("red", "blue")]
    directory = stack({"main.yaml": docs(key_doc(), *vaults, *secrets)})
    applied = run("apply", directory, "--auto-approve")
    assert applied.exit_code == 0, applied.output
    calls.clear()
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0
    assert by_operation(calls) == {**key_ops(aliases()), "s3:GetBucketVersioning": 1,  # one bucket, two vaults
                                   "s3:ListObjectVersions": 2}  # a listing per vault prefix (one entry each)
    boto3.client("s3").put_bucket_versioning(Bucket="rcl-floor", VersioningConfiguration={"Status": "Suspended"})
    refused = run("plan", directory)
    assert refused.exit_code == 1
    for team in ("red", "blue"):  # the shared answer refuses every vault on the bucket, each at its own line
        assert f"Vault/{team}: s3://rcl-floor: bucket versioning is not enabled" in refused.output
