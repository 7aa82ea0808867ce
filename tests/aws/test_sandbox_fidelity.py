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


INVALID_TOKEN = "The security token included in the request is invalid."


def _user_key(endpoint: str) -> tuple:
    iam = _client(endpoint, "iam")
    user = f"rotating-{time.monotonic_ns()}"
    arn = iam.create_user(UserName=user)["User"]["Arn"]
    return iam, arn, iam.create_access_key(UserName=user)["AccessKey"]


def _sts_as(endpoint: str, key: dict, secret: str | None = None):
    return _client(endpoint, "sts", key=key["AccessKeyId"], secret=secret or key["SecretAccessKey"])


def _refused(call: Callable[[], object], code: str) -> str:
    with pytest.raises(botocore.exceptions.ClientError) as info:
        call()
    error = info.value.response["Error"]
    assert (error["Code"], info.value.response["ResponseMetadata"]["HTTPStatusCode"]) == (code, 403)
    return error["Message"]


def deleted_access_key_is_refused(endpoint: str) -> None:
    iam, _, key = _user_key(endpoint)
    iam.delete_access_key(UserName=key["UserName"], AccessKeyId=key["AccessKeyId"])
    assert _refused(_sts_as(endpoint, key).get_caller_identity, "InvalidClientTokenId") == INVALID_TOKEN


def inactive_access_key_is_refused_until_reactivated(endpoint: str) -> None:
    iam, arn, key = _user_key(endpoint)
    iam.update_access_key(UserName=key["UserName"], AccessKeyId=key["AccessKeyId"], Status="Inactive")
    sts = _sts_as(endpoint, key)
    assert _refused(sts.get_caller_identity, "InvalidClientTokenId") == INVALID_TOKEN
    iam.update_access_key(UserName=key["UserName"], AccessKeyId=key["AccessKeyId"], Status="Active")
    assert sts.get_caller_identity()["Arn"] == arn


def wrong_secret_is_signature_mismatch(endpoint: str) -> None:
    _, arn, key = _user_key(endpoint)
    wrong = _sts_as(endpoint, key, secret=key["SecretAccessKey"][::-1])
    assert "does not match" in _refused(wrong.get_caller_identity, "SignatureDoesNotMatch")
    role = "arn:aws:iam::123456789012:role/any"
    _refused(lambda: wrong.assume_role(RoleArn=role, RoleSessionName="s1"), "SignatureDoesNotMatch")  # every action
    assert _sts_as(endpoint, key).get_caller_identity()["Arn"] == arn


# -- checks stock moto passes too: MOTO-NOTES's claims our features rely on, and
# what the STS fix (10) must leave alone; run on both, so the sandbox keeps them ----
def fresh_access_key_identifies_its_user(endpoint: str) -> None:
    """GetCallerIdentity signed with a just-created key answers with its user
    (AWS's behaviour; stock moto does it too, so no STOCK_FAILURES entry)."""
    _, arn, key = _user_key(endpoint)
    identity = _sts_as(endpoint, key).get_caller_identity()
    assert (identity["Arn"], identity["Account"]) == (arn, "123456789012")


def third_access_key_is_limit_exceeded(endpoint: str) -> None:
    """Two access keys per user (AWS's quota; stock moto enforces it too, so no
    STOCK_FAILURES entry): the third CreateAccessKey is LimitExceeded, HTTP 409."""
    iam, _, key = _user_key(endpoint)
    iam.create_access_key(UserName=key["UserName"])
    with pytest.raises(botocore.exceptions.ClientError) as info:
        iam.create_access_key(UserName=key["UserName"])
    assert info.value.response["Error"]["Code"] == "LimitExceeded"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert "AccessKeysPerUser: 2" in info.value.response["Error"]["Message"]
    assert len(iam.list_access_keys(UserName=key["UserName"])["AccessKeyMetadata"]) == 2


def other_credentials_and_services_are_as_stock(endpoint: str) -> None:
    """Not AWS's behaviour but moto's, pinned so fix 10 stays scoped: credentials
    IAM never issued (the tests' ``testing``) and assumed-role keys still call
    STS, and services other than STS still ignore an IAM key's secret."""
    assert _client(endpoint, "sts").get_caller_identity()["Arn"] == "arn:aws:sts::123456789012:user/moto"
    creds = _client(endpoint, "sts").assume_role(RoleArn="arn:aws:iam::123456789012:role/any",
                                                 RoleSessionName="s1")["Credentials"]
    assumed = boto3.client("sts", region_name="us-east-1", endpoint_url=endpoint,
                           aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                           aws_session_token=creds["SessionToken"])
    assert assumed.get_caller_identity()["Arn"] == "arn:aws:sts::123456789012:assumed-role/any/s1"
    _, _, key = _user_key(endpoint)
    wrong = _client(endpoint, "iam", key=key["AccessKeyId"], secret="x" * 40)
    assert wrong.get_user(UserName=key["UserName"])["User"]["UserName"] == key["UserName"]


HOLDS_ON_STOCK: list[Callable[[str], None]] = [
    fresh_access_key_identifies_its_user, third_access_key_is_limit_exceeded,
    other_credentials_and_services_are_as_stock,
]


CHECKS: list[Callable[[str], None]] = [
    key_usage_defaults_to_encrypt_decrypt,
    rsa_oaep_round_trip, multi_region_replica_decrypts_primary_ciphertext,
    disabled_key_cannot_encrypt_or_decrypt, pending_deletion_key_cannot_decrypt,
    replicate_keeps_primary_primary, replica_has_its_own_aliases,
    replicate_single_region_is_validation_error, rotation_period_is_returned,
    access_denied_is_typed_for_json_services, oidc_audiences_can_be_added_and_removed,
    new_principal_is_refused_until_propagated, key_policy_naming_a_new_role_is_refused_until_propagated,
    deleted_access_key_is_refused, inactive_access_key_is_refused_until_reactivated,
    wrong_secret_is_signature_mismatch,
]


@pytest.mark.parametrize("check", CHECKS + HOLDS_ON_STOCK, ids=lambda c: c.__name__)
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
    # GetCallerIdentity answers (as user/moto) with a deleted key
    "deleted_access_key_is_refused": (pytest.fail.Exception, "DID NOT RAISE"),
    "inactive_access_key_is_refused_until_reactivated": (pytest.fail.Exception, "DID NOT RAISE"),
    "wrong_secret_is_signature_mismatch": (pytest.fail.Exception, "DID NOT RAISE"),  # the secret is never checked
}


def test_every_check_says_how_stock_moto_fails():
    assert sorted(STOCK_FAILURES) == sorted(c.__name__ for c in CHECKS)
    assert not set(STOCK_FAILURES) & {c.__name__ for c in HOLDS_ON_STOCK}


@pytest.mark.parametrize("check", HOLDS_ON_STOCK, ids=lambda c: c.__name__)
def test_stock_moto_does_too(stock_moto, check):
    check(stock_moto)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_stock_moto_does_not(stock_moto, check):
    expected, what = STOCK_FAILURES[check.__name__]
    with pytest.raises(expected) as info:
        check(stock_moto)
    if isinstance(info.value, botocore.exceptions.ClientError):
        assert info.value.response["Error"]["Code"] == what
    else:
        assert what in str(info.value)  # this very check failed, not an unrelated one
