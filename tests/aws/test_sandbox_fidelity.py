"""Each fidelity fix behaves as AWS does on the sandbox, and the same check
fails on stock moto (run as a separate, unpatched server process)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import boto3
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
import botocore.exceptions
import botocore.parsers
import pytest

from reconciler.sandbox.fidelity import PROPAGATION_ENV


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def stock_moto() -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=1).read()
            break
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail("stock moto did not start")
            time.sleep(0.1)
    yield url
    process.terminate()
    process.wait(timeout=10)


def _client(endpoint: str, service: str, region: str = "us-east-1", **creds: str):
    return boto3.client(service, region_name=region, endpoint_url=endpoint,
                        aws_access_key_id=creds.get("key", "testing"),
                        aws_secret_access_key=creds.get("secret", "testing"),
                        config=botocore.config.Config(retries={"total_max_attempts": 1}))


def _reset_auth(endpoint: str, value: str) -> None:
    urllib.request.urlopen(urllib.request.Request(
        f"{endpoint}/moto-api/reset-auth", data=value.encode(), method="POST",
        headers={"Content-Type": "text/plain"})).read()


# -- the checks: each returns normally when the endpoint behaves as AWS does ----------
def replicate_keeps_primary_primary(endpoint: str) -> None:
    kms = _client(endpoint, "kms")
    key = kms.create_key(KeySpec="RSA_4096", KeyUsage="ENCRYPT_DECRYPT", MultiRegion=True)["KeyMetadata"]
    replica = kms.replicate_key(KeyId=key["KeyId"], ReplicaRegion="us-west-2", Description="replica",
                                Tags=[{"TagKey": "t", "TagValue": "v"}])["ReplicaKeyMetadata"]
    primary = kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
    west = _client(endpoint, "kms", "us-west-2")
    described = west.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
    assert primary["MultiRegionConfiguration"]["MultiRegionKeyType"] == "PRIMARY", "primary-stays-primary"
    assert described["MultiRegionConfiguration"]["MultiRegionKeyType"] == "REPLICA"
    assert replica["Arn"].split(":")[3] == "us-west-2"
    assert described["Description"] == "replica", "replica-gets-its-description"
    assert west.list_resource_tags(KeyId=key["KeyId"])["Tags"] == [{"TagKey": "t", "TagValue": "v"}]


def replica_has_its_own_aliases(endpoint: str) -> None:
    kms = _client(endpoint, "kms")
    key = kms.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    kms.replicate_key(KeyId=key, ReplicaRegion="eu-west-1")
    _client(endpoint, "kms", "eu-west-1").create_alias(AliasName="alias/only-in-eu", TargetKeyId=key)
    assert kms.list_aliases(KeyId=key)["Aliases"] == [], "replica-alias-leaks-to-primary"


def replicate_single_region_is_validation_error(endpoint: str) -> None:
    kms = _client(endpoint, "kms")
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(botocore.exceptions.ClientError) as info:
        kms.replicate_key(KeyId=key, ReplicaRegion="us-west-2")
    assert info.value.response["Error"]["Code"] == "ValidationException", "single-region-replicate-code"


def rotation_period_is_returned(endpoint: str) -> None:
    kms = _client(endpoint, "kms")
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.enable_key_rotation(KeyId=key, RotationPeriodInDays=180)
    assert kms.get_key_rotation_status(KeyId=key).get("RotationPeriodInDays") == 180, "rotation-period"


def access_denied_is_typed_for_json_services(endpoint: str) -> None:
    iam = _client(endpoint, "iam")
    user = f"nobody-{time.monotonic_ns()}"
    iam.create_user(UserName=user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    kms = _client(endpoint, "kms", key=key["AccessKeyId"], secret=key["SecretAccessKey"])
    _reset_auth(endpoint, "0")
    try:
        with pytest.raises(botocore.exceptions.ClientError) as info:
            kms.create_key()
    finally:
        _reset_auth(endpoint, "inf")
    assert info.value.response["Error"]["Code"] == "AccessDeniedException", "access-denied-code"
    assert "not authorized to perform: kms:CreateKey" in info.value.response["Error"]["Message"]


def rsa_oaep_round_trip(endpoint: str) -> None:
    kms = _client(endpoint, "kms")
    key = kms.create_key(KeySpec="RSA_4096", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]
    public = serialization.load_der_public_key(kms.get_public_key(KeyId=key)["PublicKey"])
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    blob = public.encrypt(b"data key bytes", oaep)
    out = kms.decrypt(KeyId=key, CiphertextBlob=blob, EncryptionAlgorithm="RSAES_OAEP_SHA_256")
    assert out["Plaintext"] == b"data key bytes"
    blob = kms.encrypt(KeyId=key, Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_256")["CiphertextBlob"]
    assert len(blob) == 512  # a real RSA_4096 OAEP block


def multi_region_replica_decrypts_primary_ciphertext(endpoint: str) -> None:
    kms = _client(endpoint, "kms")
    key = kms.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    kms.replicate_key(KeyId=key, ReplicaRegion="us-west-2")
    blob = kms.encrypt(KeyId=key, Plaintext=b"hello", EncryptionContext={"a": "b"})["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "b"})["Plaintext"] == b"hello"
    west = _client(endpoint, "kms", "us-west-2")
    assert west.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "b"})["Plaintext"] == b"hello"


def disabled_key_cannot_encrypt_or_decrypt(endpoint: str) -> None:
    kms = _client(endpoint, "kms")
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
    kms.disable_key(KeyId=key)
    for call in (lambda: kms.encrypt(KeyId=key, Plaintext=b"x"), lambda: kms.decrypt(CiphertextBlob=blob),
                 lambda: kms.generate_data_key(KeyId=key, KeySpec="AES_256")):
        with pytest.raises(botocore.exceptions.ClientError) as info:
            call()
        assert info.value.response["Error"]["Code"] == "DisabledException"


def pending_deletion_key_cannot_decrypt(endpoint: str) -> None:
    kms = _client(endpoint, "kms")
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
    kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    with pytest.raises(botocore.exceptions.ClientError) as info:
        kms.decrypt(CiphertextBlob=blob)
    assert info.value.response["Error"]["Code"] == "KMSInvalidStateException"


def key_usage_defaults_to_encrypt_decrypt(endpoint: str) -> None:
    kms = _client(endpoint, "kms")
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    assert kms.describe_key(KeyId=key)["KeyMetadata"].get("KeyUsage") == "ENCRYPT_DECRYPT", "key-usage"


def oidc_audiences_can_be_added_and_removed(endpoint: str) -> None:
    iam = _client(endpoint, "iam")
    arn = iam.create_open_id_connect_provider(Url=f"https://issuer-{time.monotonic_ns()}.example.com/oidc",
                                              ClientIDList=["one"])["OpenIDConnectProviderArn"]
    iam.add_client_id_to_open_id_connect_provider(OpenIDConnectProviderArn=arn, ClientID="two")
    iam.add_client_id_to_open_id_connect_provider(OpenIDConnectProviderArn=arn, ClientID="two")
    iam.remove_client_id_from_open_id_connect_provider(OpenIDConnectProviderArn=arn, ClientID="one")
    assert iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)["ClientIDList"] == ["two"]


def new_principal_is_refused_until_propagated(endpoint: str) -> None:
    """With the switch on (read by the in-process sandbox; a separate stock
    server never sees it), a trust policy naming a provider younger than the
    switch's seconds is refused as AWS does, and accepted once older."""
    iam = _client(endpoint, "iam")
    arn = iam.create_open_id_connect_provider(Url=f"https://new-{time.monotonic_ns()}.example.com",
                                              ClientIDList=["x"])["OpenIDConnectProviderArn"]
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Federated": arn}, "Action": "sts:AssumeRoleWithWebIdentity"}]})
    name = f"web-{time.monotonic_ns()}"
    os.environ[PROPAGATION_ENV] = "0.5"
    try:
        with pytest.raises(botocore.exceptions.ClientError) as info:
            iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)
        assert info.value.response["Error"]["Code"] == "MalformedPolicyDocument"
        assert f'Invalid principal in policy: "Federated":"{arn}"' in info.value.response["Error"]["Message"]
        time.sleep(0.6)
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)
    finally:
        del os.environ[PROPAGATION_ENV]


def key_policy_naming_a_new_role_is_refused_until_propagated(endpoint: str) -> None:
    """The same switch for KMS: a key policy naming a role younger than the
    switch's seconds is refused (CreateKey and PutKeyPolicy), then accepted."""
    iam, kms = _client(endpoint, "iam"), _client(endpoint, "kms")
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:AssumeRole"}]})
    role = iam.create_role(RoleName=f"user-{time.monotonic_ns()}", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": role}, "Action": "kms:Decrypt", "Resource": "*"}]})
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    os.environ[PROPAGATION_ENV] = "0.5"
    try:
        for call in (lambda: kms.create_key(Policy=policy),
                     lambda: kms.put_key_policy(KeyId=key, PolicyName="default", Policy=policy)):
            with pytest.raises(botocore.exceptions.ClientError) as info:
                call()
            assert info.value.response["Error"]["Code"] == "MalformedPolicyDocumentException"
            assert "invalid principals" in info.value.response["Error"]["Message"]
        time.sleep(0.6)
        kms.put_key_policy(KeyId=key, PolicyName="default", Policy=policy)
    finally:
        del os.environ[PROPAGATION_ENV]


CHECKS: list[Callable[[str], None]] = [
    key_usage_defaults_to_encrypt_decrypt,
    rsa_oaep_round_trip, multi_region_replica_decrypts_primary_ciphertext,
    disabled_key_cannot_encrypt_or_decrypt, pending_deletion_key_cannot_decrypt,
    replicate_keeps_primary_primary, replica_has_its_own_aliases,
    replicate_single_region_is_validation_error, rotation_period_is_returned,
    access_denied_is_typed_for_json_services, oidc_audiences_can_be_added_and_removed,
    new_principal_is_refused_until_propagated, key_policy_naming_a_new_role_is_refused_until_propagated,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_sandbox_behaves_as_aws(aws, check):
    check(aws)


# How stock moto fails each check: exactly this exception, and the AWS error
# code or the label of the assertion that fails, so a check that broke for an
# unrelated reason does not pass as "moto differs".
STOCK_FAILURES: dict[str, tuple[type[BaseException], str]] = {
    "key_usage_defaults_to_encrypt_decrypt": (AssertionError, "key-usage"),  # KeyUsage left empty
    "rsa_oaep_round_trip": (botocore.exceptions.ClientError, "InvalidCiphertextException"),
    "multi_region_replica_decrypts_primary_ciphertext": (botocore.exceptions.ClientError,
                                                         "AccessDeniedException"),
    "disabled_key_cannot_encrypt_or_decrypt": (pytest.fail.Exception, "DID NOT RAISE"),  # encrypt succeeds
    "pending_deletion_key_cannot_decrypt": (pytest.fail.Exception, "DID NOT RAISE"),  # decrypt succeeds
    "replicate_keeps_primary_primary": (AssertionError, "replica-gets-its-description"),
    "replica_has_its_own_aliases": (AssertionError, "replica-alias-leaks-to-primary"),
    "replicate_single_region_is_validation_error": (AssertionError, "single-region-replicate-code"),  # a 500
    "rotation_period_is_returned": (AssertionError, "rotation-period"),  # RotationPeriodInDays missing
    "access_denied_is_typed_for_json_services": (AssertionError, "access-denied-code"),  # code "403"
    # not implemented: an HTML 500 that botocore cannot parse
    "oidc_audiences_can_be_added_and_removed": (botocore.parsers.ResponseParserError, "Unable to parse"),
    "new_principal_is_refused_until_propagated": (pytest.fail.Exception, "DID NOT RAISE"),  # accepted at once
    "key_policy_naming_a_new_role_is_refused_until_propagated": (pytest.fail.Exception, "DID NOT RAISE"),
}


def test_every_check_says_how_stock_moto_fails():
    assert sorted(STOCK_FAILURES) == sorted(c.__name__ for c in CHECKS)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_stock_moto_does_not(stock_moto, check):
    expected, what = STOCK_FAILURES[check.__name__]
    with pytest.raises(expected) as info:
        check(stock_moto)
    if isinstance(info.value, botocore.exceptions.ClientError):
        assert info.value.response["Error"]["Code"] == what
    else:
        assert what in str(info.value)  # this very check failed, not an unrelated one
