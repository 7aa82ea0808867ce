"""Every example stack validates, applies on the sandbox, and then plans clean."""

from __future__ import annotations

import boto3
import pytest

from tests.aws import test_i10_example
from tests.aws.test_i9_rotation_example import by_hand
from tests.conftest import EXAMPLES, run, state_of

NAMES = sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir())


def test_examples_exist():
    assert {"quickstart", "pulumi-cmk", "cerby-vault", "infisical-external-kms", "iam-user-rotation",
            "dynamic-iam"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_example_applies_and_is_then_clean(aws, example, name, monkeypatch):
    monkeypatch.setenv("DATABASE_PASSWORD", "example-password")
    if name == "iam-user-rotation":  # the guide's steps 1 and 2, by hand: the users, the manager's key
        by_hand(monkeypatch)
    if name == "dynamic-iam":  # the guide's prerequisite: the manager and its key, the boundary, group, policy
        test_i10_example.by_hand(monkeypatch)
    if name == "ci":  # its state bucket, made once by hand as the stack's comment says
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="example-reconciler-state")
    directory = example(name)
    assert run("validate", directory).exit_code == 0
    applied = run("apply", directory, "--auto-approve")
    assert applied.exit_code == 0, applied.output
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0
    assert run("drift", directory).exit_code == 0


def test_cerby_key_is_rsa_4096_multi_region_with_us_west_2_replica(aws, example):
    directory = example("cerby-vault")
    assert run("apply", directory, "--auto-approve").exit_code == 0
    key = state_of(directory)["resources"]["KmsProvider/cerby-rsa"]["ids"]["keyId"]
    assert key.startswith("mrk-")
    west = boto3.client("kms", region_name="us-west-2").describe_key(KeyId=key)["KeyMetadata"]
    assert west["KeySpec"] == "RSA_4096" and west["MultiRegionConfiguration"]["MultiRegionKeyType"] == "REPLICA"
    # protect defaults to true: removing the key from the manifests is refused
    (directory / "stack.yaml").write_text((directory / "stack.yaml").read_text().split("---")[0])
    assert run("plan", directory).exit_code == 1


def test_pulumi_key_rotates_every_180_days(aws, example):
    directory = example("pulumi-cmk")
    assert run("apply", directory, "--auto-approve").exit_code == 0
    key = state_of(directory)["resources"]["KmsProvider/pulumi-secrets"]["ids"]["keyId"]
    status = boto3.client("kms", region_name="us-east-1").get_key_rotation_status(KeyId=key)
    assert status["KeyRotationEnabled"] and status["RotationPeriodInDays"] == 180


def test_cerby_vault_secrets_read_back_in_both_regions(aws, example):
    directory = example("cerby-vault")
    assert run("apply", directory, "--auto-approve").exit_code == 0
    east = run("secret", "get", "cerby/api-signing-seed", "--dir", directory)
    west = run("secret", "get", "cerby/api-signing-seed", "--dir", directory, "--region", "us-west-2")
    assert east.exit_code == 0 and len(east.stdout) == 64 and east.stdout == west.stdout


def test_infisical_example_runs_with_the_default_chain_and_uses_the_default_vault(aws, example, monkeypatch,
                                                                                calls):
    monkeypatch.setenv("DATABASE_PASSWORD", "from-the-deploy-env")
    directory = example("infisical-external-kms")
    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert ("sts", "AssumeRole") not in {(s, o) for s, o, _ in calls.calls}  # the role is for Infisical
    got = run("secret", "get", "app/database-password", "--dir", directory)
    assert got.stdout == "from-the-deploy-env"
