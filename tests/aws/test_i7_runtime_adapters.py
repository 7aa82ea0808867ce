"""Issue 7 item 7: one adapter factory for every service; IAM and STS are
global, KMS (and the stores) regional; auth is resolved, and its paths
anchored, in one place."""

from __future__ import annotations

import boto3
import pytest

from reconciler.aws import factory, session


def test_regional_adapters_talk_to_their_region(aws):
    key = boto3.client("kms", region_name="us-west-2").create_key()["KeyMetadata"]["KeyId"]
    adapters = factory.Adapters(session.ClientFactory())
    west = adapters.kms("us-west-2", None)
    assert west.region == "us-west-2" and west.describe_key(key)["KeyId"] == key
    assert adapters.kms("us-east-1", None).describe_key(key) is None


def test_global_adapters_need_no_region(aws):
    boto3.client("iam", region_name="us-east-1").create_role(RoleName="reader", AssumeRolePolicyDocument="{}")
    adapters = factory.Adapters(session.ClientFactory())
    assert adapters.sts({"defaultChain": {}}).caller_arn().startswith("arn:aws:sts::123456789012:")
    iam = adapters.iam(None)
    assert iam.role_arn("reader") == "arn:aws:iam::123456789012:role/reader"
    assert iam.role_arn("nobody") is None


def test_auth_is_checked_and_anchored_at_the_stack_directory(aws, tmp_path, monkeypatch):
    adapters = factory.Adapters(session.ClientFactory(), tmp_path)
    monkeypatch.delenv("MISSING_KEY_ID", raising=False)
    with pytest.raises(session.AuthError) as caught:
        adapters.check({"accessKey": {"accessKeyId": {"env": "MISSING_KEY_ID"},
                                      "secretAccessKey": {"env": "AWS_SECRET_ACCESS_KEY"}}}, "us-east-1")
    assert caught.value.field == ("accessKey", "accessKeyId", "env")
    web = {"webIdentity": {"roleArn": "arn:aws:iam::123456789012:role/r", "tokenFile": "token"}}
    with pytest.raises(session.AuthError, match=str(tmp_path / "token")):
        adapters.check(web, "us-east-1")  # relative to the stack directory, not the working one
    (tmp_path / "token").write_text("jwt")
    adapters.check(web, "us-east-1")
