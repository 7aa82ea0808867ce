"""Issue 6 item 1a: an alias held by a key this stack does not manage is never
taken over: plan refuses naming the key, and apply never moves it either."""

from __future__ import annotations

import textwrap

import boto3

from tests.aws.test_kms_lifecycle import SYMMETRIC
from tests.conftest import run, state_of


def foreign_key(region: str = "us-east-1", alias: str = "alias/team/main") -> str:
    kms = boto3.client("kms", region_name=region)
    kid = kms.create_key(Description="someone else's")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=alias, TargetKeyId=kid)
    return kid


def target(alias: str, region: str = "us-east-1") -> str:
    return boto3.client("kms", region_name=region).describe_key(KeyId=alias)["KeyMetadata"]["KeyId"]


def test_plan_refuses_an_alias_held_by_an_unmanaged_key(aws, stack):
    theirs = foreign_key()
    directory = stack({"key.yaml": SYMMETRIC})
    for command in (("plan", directory), ("apply", directory, "--auto-approve")):
        result = run(*command)
        assert result.exit_code == 1
        (line,) = [line for line in result.output.splitlines() if line.startswith("Error:")]
        assert line == (f"Error: {directory / 'key.yaml'}:3:18: KmsProvider/main: alias alias/team/main in "
                        f"us-east-1 already points at key {theirs}, which this stack does not manage; adopt "
                        "that key (keyId: alias/team/main with manage: true, or `reconciler import`) or "
                        "choose another alias")
    assert target("alias/team/main") == theirs
    assert len(boto3.client("kms", region_name="us-east-1").list_keys()["Keys"]) == 1  # nothing created


def test_plan_checks_every_replica_region(aws, stack):
    theirs = foreign_key("us-west-2")
    directory = stack({"key.yaml": SYMMETRIC + "  multiRegion: true\n  replicaRegions: [us-west-2]\n"})
    result = run("plan", directory)
    assert result.exit_code == 1
    assert (f"KmsProvider/main: alias alias/team/main in us-west-2 already points at key {theirs}, "
            "which this stack does not manage") in result.output
    assert "in us-east-1" not in result.output


def test_apply_never_takes_over_an_alias_claimed_after_the_plan(aws, stack, tmp_path):
    directory = stack({"key.yaml": SYMMETRIC})
    planfile = tmp_path / "change.plan"
    assert run("plan", directory, "--out", planfile).exit_code == 0
    theirs = foreign_key()  # claimed between plan and apply
    result = run("apply", planfile, "--auto-approve")
    assert result.exit_code == 1
    assert (f"KmsProvider/main: alias alias/team/main in us-east-1 already points at key {theirs}, which "
            "this stack does not manage") in result.output
    assert "Traceback" not in result.output
    assert target("alias/team/main") == theirs
    assert "KmsProvider/main" in state_of(directory)["resources"]  # the key it did create is recorded


TWO = textwrap.dedent("""\
    apiVersion: reconciler/v1
    kind: KmsProvider
    metadata: {{name: a}}
    spec: {{protect: false{a}}}
    ---
    apiVersion: reconciler/v1
    kind: KmsProvider
    metadata: {{name: b}}
    spec: {{protect: false{b}}}
    """)


def test_an_alias_on_a_key_of_this_stack_moves(aws, stack):
    directory = stack({"keys.yaml": TWO.format(a=", alias: shared", b="")})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    (directory / "keys.yaml").write_text(TWO.format(a="", b=", alias: shared"))
    moved = run("apply", directory, "--auto-approve")
    assert moved.exit_code == 0, moved.output
    assert target("alias/shared") == state_of(directory)["resources"]["KmsProvider/b"]["ids"]["keyId"]
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0


def test_renaming_the_alias_moves_it_and_is_not_drift(aws, stack):
    directory = stack({"key.yaml": SYMMETRIC})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    kid = state_of(directory)["resources"]["KmsProvider/main"]["ids"]["keyId"]
    (directory / "key.yaml").write_text(SYMMETRIC.replace("team/main", "team/renamed"))
    assert run("drift", directory).exit_code == 0  # the manifest changed, not AWS
    plan = run("plan", directory)
    assert '~ alias = "alias/team/main" -> "alias/team/renamed"' in " ".join(plan.output.split())
    assert run("apply", directory, "--auto-approve").exit_code == 0
    kms = boto3.client("kms", region_name="us-east-1")
    assert [a["AliasName"] for a in kms.list_aliases(KeyId=kid)["Aliases"]] == ["alias/team/renamed"]
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0
