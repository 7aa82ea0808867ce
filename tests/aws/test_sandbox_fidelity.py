"""Each fidelity fix behaves as AWS does on the sandbox, and the same check
fails on stock moto (run as a separate, unpatched server process)."""

from __future__ import annotations

import datetime
import functools
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
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
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


def tagging_actions_carry_their_iam_prefix(endpoint: str) -> None:
    iam = _client(endpoint, "iam")
    user = f"tagger-{time.monotonic_ns()}"
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "tag:GetResources", "Resource": "*"}]}))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    tagging = _client(endpoint, "resourcegroupstaggingapi", key=key["AccessKeyId"], secret=key["SecretAccessKey"])
    _reset_auth(endpoint, "0")
    try:
        found = tagging.get_resources(ResourceTypeFilters=["kms:key"])
    finally:
        _reset_auth(endpoint, "inf")
    assert found["ResponseMetadata"]["HTTPStatusCode"] == 200


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


def symmetric_key_has_no_public_key(endpoint: str) -> None:
    """Fix 16: a symmetric key has no key pair (stock moto makes an RSA-2048
    one for every key, ~57 ms of CPU per CreateKey, and hands out its public half)."""
    kms = _client(endpoint, "kms")
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        kms.get_public_key(KeyId=key)
    assert refused.value.response["Error"]["Code"] == "UnsupportedOperationException"
    rsa_key = kms.create_key(KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]
    public = serialization.load_der_public_key(kms.get_public_key(KeyId=rsa_key)["PublicKey"])
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 2048


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


# -- IAM users: permission boundaries (fix 11), what blocks DeleteUser and the calls
# that strip a user (fix 12), service-specific credentials (fix 13) --------------------
def _unique(prefix: str) -> str:
    return f"{prefix}-{time.monotonic_ns()}"


def _managed_policy(iam) -> str:
    document = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]})
    return iam.create_policy(PolicyName=_unique("boundary"), PolicyDocument=document)["Policy"]["Arn"]


def _boundary(arn: str) -> dict:
    return {"PermissionsBoundaryType": "Policy", "PermissionsBoundaryArn": arn}


def _iam_error(call: Callable[[], object]) -> tuple[str, int, str]:
    with pytest.raises(botocore.exceptions.ClientError) as info:
        call()
    response = info.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


def user_permissions_boundary_is_stored(endpoint: str) -> None:
    iam = _client(endpoint, "iam")
    arn, user = _managed_policy(iam), _unique("bounded")
    created = iam.create_user(UserName=user, Path="/leases/", PermissionsBoundary=arn)["User"]
    assert iam.get_user(UserName=user)["User"].get("PermissionsBoundary") == _boundary(arn), "user-boundary"
    assert created["PermissionsBoundary"] == _boundary(arn)
    listed = [u for u in iam.list_users(PathPrefix="/leases/")["Users"] if u["UserName"] == user]
    assert len(listed) == 1 and "PermissionsBoundary" not in listed[0]  # AWS's listing omits it


def user_permissions_boundary_can_be_replaced_and_removed(endpoint: str) -> None:
    iam = _client(endpoint, "iam")
    first, second, user = _managed_policy(iam), _managed_policy(iam), _unique("rebounded")
    iam.create_user(UserName=user)
    assert "PermissionsBoundary" not in iam.get_user(UserName=user)["User"]
    iam.put_user_permissions_boundary(UserName=user, PermissionsBoundary=first)
    assert iam.get_user(UserName=user)["User"]["PermissionsBoundary"] == _boundary(first)
    iam.put_user_permissions_boundary(UserName=user, PermissionsBoundary=second)
    assert iam.get_user(UserName=user)["User"]["PermissionsBoundary"] == _boundary(second)
    iam.delete_user_permissions_boundary(UserName=user)
    assert "PermissionsBoundary" not in iam.get_user(UserName=user)["User"]
    iam.delete_user_permissions_boundary(UserName=user)  # none left: still succeeds
    iam.put_user_permissions_boundary(UserName=user, PermissionsBoundary=first)
    iam.delete_user(UserName=user)  # a boundary does not block DeleteUser
    assert _iam_error(lambda: iam.get_user(UserName=user))[0] == "NoSuchEntity"


def boundary_naming_a_missing_policy_is_no_such_entity(endpoint: str) -> None:
    iam = _client(endpoint, "iam")
    missing, user = f"arn:aws:iam::123456789012:policy/{_unique('missing')}", _unique("unbounded")
    code, status, message = _iam_error(lambda: iam.create_user(UserName=user, PermissionsBoundary=missing))
    assert (code, status) == ("NoSuchEntity", 404)
    assert message == f"Scope ARN: {missing} does not exist or is not attachable."
    assert _iam_error(lambda: iam.get_user(UserName=user))[0] == "NoSuchEntity"  # no user was created
    iam.create_user(UserName=user)
    assert _iam_error(lambda: iam.put_user_permissions_boundary(
        UserName=user, PermissionsBoundary=missing))[:2] == ("NoSuchEntity", 404)
    assert _iam_error(lambda: iam.put_user_permissions_boundary(
        UserName=user, PermissionsBoundary="not-a-policy-arn-at-all"))[0] == "InvalidInput"
    # an AWS-managed policy is a boundary exactly when AttachUserPolicy can attach it
    # (moto has them only with MOTO_IAM_LOAD_MANAGED_POLICIES=true)
    aws_managed = "arn:aws:iam::aws:policy/ReadOnlyAccess"
    try:
        iam.attach_user_policy(UserName=user, PolicyArn=aws_managed)
    except botocore.exceptions.ClientError as exc:
        assert exc.response["Error"]["Code"] == "NoSuchEntity"
        assert _iam_error(lambda: iam.put_user_permissions_boundary(
            UserName=user, PermissionsBoundary=aws_managed))[0] == "NoSuchEntity"
    else:
        iam.put_user_permissions_boundary(UserName=user, PermissionsBoundary=aws_managed)
        assert iam.get_user(UserName=user)["User"]["PermissionsBoundary"] == _boundary(aws_managed)


@functools.cache
def _rsa_material() -> tuple[str, str]:
    """A self-signed X.509 certificate (PEM) and an OpenSSH public key, for uploads."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "reconciler-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    ssh = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return cert.public_bytes(serialization.Encoding.PEM).decode(), ssh.decode()


def _login_profile(iam, user: str) -> list:
    try:
        return [iam.get_login_profile(UserName=user)["LoginProfile"]]
    except botocore.exceptions.ClientError as exc:
        assert exc.response["Error"]["Code"] == "NoSuchEntity"
        return []


def _add_virtual_mfa(iam, user: str) -> str:
    serial = iam.create_virtual_mfa_device(VirtualMFADeviceName=_unique("mfa"))["VirtualMFADevice"]["SerialNumber"]
    iam.enable_mfa_device(UserName=user, SerialNumber=serial, AuthenticationCode1="123456",
                          AuthenticationCode2="654321")
    return serial


def _strip_virtual_mfa(iam, user: str, serial: str) -> None:
    iam.deactivate_mfa_device(UserName=user, SerialNumber=serial)
    iam.delete_virtual_mfa_device(SerialNumber=serial)


def _add_hardware_mfa(iam, user: str) -> str:
    serial = _unique("GAHT")  # not a virtual device's ARN: a hardware token's serial
    iam.enable_mfa_device(UserName=user, SerialNumber=serial, AuthenticationCode1="123456",
                          AuthenticationCode2="654321")
    return serial


def _add_group(iam, user: str) -> str:
    group = iam.create_group(GroupName=_unique("group"))["Group"]["GroupName"]
    iam.add_user_to_group(GroupName=group, UserName=user)
    return group


def _add_inline_policy(iam, user: str) -> str:
    document = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]})
    iam.put_user_policy(UserName=user, PolicyName="inline", PolicyDocument=document)
    return "inline"


def _attach_policy(iam, user: str) -> str:
    arn = _managed_policy(iam)
    iam.attach_user_policy(UserName=user, PolicyArn=arn)
    return arn


# kind: (DeleteConflict message, add one by hand -> its id, the call that strips it, what is left)
_ATTACHMENTS: dict[str, tuple[str, Callable, Callable, Callable]] = {
    "access_key": (
        "must delete access keys first.",
        lambda iam, user: iam.create_access_key(UserName=user)["AccessKey"]["AccessKeyId"],
        lambda iam, user, key: iam.delete_access_key(UserName=user, AccessKeyId=key),
        lambda iam, user: iam.list_access_keys(UserName=user)["AccessKeyMetadata"]),
    "group_membership": (
        "must remove users from group first.", _add_group,
        lambda iam, user, group: iam.remove_user_from_group(GroupName=group, UserName=user),
        lambda iam, user: iam.list_groups_for_user(UserName=user)["Groups"]),
    "login_profile": (
        "must delete login profile first.",
        lambda iam, user: iam.create_login_profile(UserName=user, Password="Str0ng!Passw0rd-x"),
        lambda iam, user, _: iam.delete_login_profile(UserName=user), _login_profile),
    "virtual_mfa_device": (
        "must delete MFA devices first.", _add_virtual_mfa, _strip_virtual_mfa,
        lambda iam, user: iam.list_mfa_devices(UserName=user)["MFADevices"]),
    "hardware_mfa_device": (
        "must delete MFA devices first.", _add_hardware_mfa,
        lambda iam, user, serial: iam.deactivate_mfa_device(UserName=user, SerialNumber=serial),
        lambda iam, user: iam.list_mfa_devices(UserName=user)["MFADevices"]),
    "ssh_public_key": (
        "must delete SSH public keys first.",
        lambda iam, user: iam.upload_ssh_public_key(
            UserName=user, SSHPublicKeyBody=_rsa_material()[1])["SSHPublicKey"]["SSHPublicKeyId"],
        lambda iam, user, key: iam.delete_ssh_public_key(UserName=user, SSHPublicKeyId=key),
        lambda iam, user: iam.list_ssh_public_keys(UserName=user)["SSHPublicKeys"]),
    "signing_certificate": (
        "must delete signing certificates first.",
        lambda iam, user: iam.upload_signing_certificate(
            UserName=user, CertificateBody=_rsa_material()[0])["Certificate"]["CertificateId"],
        lambda iam, user, cert: iam.delete_signing_certificate(UserName=user, CertificateId=cert),
        lambda iam, user: iam.list_signing_certificates(UserName=user)["Certificates"]),
    "service_specific_credential": (
        "must delete service specific credentials first.",
        lambda iam, user: iam.create_service_specific_credential(
            UserName=user, ServiceName="codecommit.amazonaws.com")["ServiceSpecificCredential"][
                "ServiceSpecificCredentialId"],
        lambda iam, user, cred: iam.delete_service_specific_credential(
            UserName=user, ServiceSpecificCredentialId=cred),
        lambda iam, user: iam.list_service_specific_credentials(UserName=user)["ServiceSpecificCredentials"]),
    "inline_policy": (
        "must delete policies first.", _add_inline_policy,
        lambda iam, user, name: iam.delete_user_policy(UserName=user, PolicyName=name),
        lambda iam, user: iam.list_user_policies(UserName=user)["PolicyNames"]),
    "attached_policy": (
        "must detach all policies first.", _attach_policy,
        lambda iam, user, arn: iam.detach_user_policy(UserName=user, PolicyArn=arn),
        lambda iam, user: iam.list_attached_user_policies(UserName=user)["AttachedPolicies"]),
}


def _delete_user_refused_while_it_has(kind: str) -> Callable[[str], None]:
    message, add, strip, left = _ATTACHMENTS[kind]

    def check(endpoint: str) -> None:
        iam = _client(endpoint, "iam")
        user = _unique("stripped")
        iam.create_user(UserName=user)
        attachment = add(iam, user)
        assert left(iam, user), f"{kind} was not added"
        assert _iam_error(lambda: iam.delete_user(UserName=user)) == (
            "DeleteConflict", 409, f"Cannot delete entity, {message}")
        assert iam.get_user(UserName=user)["User"]["UserName"] == user  # refused: still there
        strip(iam, user, attachment)
        assert left(iam, user) == []
        iam.delete_user(UserName=user)
        assert _iam_error(lambda: iam.get_user(UserName=user))[0] == "NoSuchEntity"

    check.__name__ = check.__qualname__ = f"delete_user_refused_while_it_has_{kind}"
    check.__doc__ = (f"DeleteUser is DeleteConflict ({message!r}) while the user has a {kind}; the "
                     "call that strips it works, the List/Get call then shows none, DeleteUser succeeds.")
    return check


DELETE_USER_BLOCKED_BY = {kind: _delete_user_refused_while_it_has(kind) for kind in _ATTACHMENTS}


def assigned_virtual_mfa_device_cannot_be_deleted(endpoint: str) -> None:
    iam = _client(endpoint, "iam")
    user = _unique("mfa-user")
    iam.create_user(UserName=user)
    serial = _add_virtual_mfa(iam, user)
    assert _iam_error(lambda: iam.delete_virtual_mfa_device(SerialNumber=serial))[:2] == ("DeleteConflict", 409)
    _strip_virtual_mfa(iam, user, serial)
    assert serial not in {d["SerialNumber"] for d in iam.list_virtual_mfa_devices()["VirtualMFADevices"]}


def service_specific_credentials_are_created_listed_and_deleted(endpoint: str) -> None:
    iam = _client(endpoint, "iam")
    user = _unique("git-user")
    iam.create_user(UserName=user)
    made = [iam.create_service_specific_credential(UserName=user, ServiceName="codecommit.amazonaws.com")[
        "ServiceSpecificCredential"] for _ in range(2)]
    assert all(c["ServicePassword"] and c["Status"] == "Active" and c["UserName"] == user for c in made)
    assert made[0]["ServiceUserName"].startswith(f"{user}-at-123456789012")
    code, status, message = _iam_error(lambda: iam.create_service_specific_credential(
        UserName=user, ServiceName="codecommit.amazonaws.com"))
    assert (code, status) == ("LimitExceeded", 409) and "ServiceSpecificCredentialsPerUserPerService: 2" in message
    assert _iam_error(lambda: iam.create_service_specific_credential(
        UserName=user, ServiceName="s3.amazonaws.com"))[0] == "NotSupportedService"
    listed = iam.list_service_specific_credentials(UserName=user)["ServiceSpecificCredentials"]
    assert sorted(c["ServiceSpecificCredentialId"] for c in listed) == sorted(
        c["ServiceSpecificCredentialId"] for c in made)
    assert not any("ServicePassword" in c for c in listed)
    assert iam.list_service_specific_credentials(
        UserName=user, ServiceName="cassandra.amazonaws.com")["ServiceSpecificCredentials"] == []
    gone = made[0]["ServiceSpecificCredentialId"]
    iam.delete_service_specific_credential(UserName=user, ServiceSpecificCredentialId=gone)
    assert _iam_error(lambda: iam.delete_service_specific_credential(
        UserName=user, ServiceSpecificCredentialId=gone))[:2] == ("NoSuchEntity", 404)
    assert [c["ServiceSpecificCredentialId"] for c in iam.list_service_specific_credentials(
        UserName=user)["ServiceSpecificCredentials"]] == [made[1]["ServiceSpecificCredentialId"]]


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


def tags_and_boundary_do_not_block_delete_user(endpoint: str) -> None:
    """AWS's DeleteUser does not want tags or the boundary removed first (stock
    moto, which drops the boundary, agrees; pinned so fix 12 stays scoped)."""
    iam = _client(endpoint, "iam")
    user = _unique("tagged")
    iam.create_user(UserName=user, PermissionsBoundary=_managed_policy(iam), Tags=[{"Key": "lease", "Value": "x"}])
    assert iam.list_user_tags(UserName=user)["Tags"] == [{"Key": "lease", "Value": "x"}]
    iam.delete_user(UserName=user)
    assert _iam_error(lambda: iam.get_user(UserName=user))[0] == "NoSuchEntity"


HOLDS_ON_STOCK: list[Callable[[str], None]] = [
    fresh_access_key_identifies_its_user, third_access_key_is_limit_exceeded,
    other_credentials_and_services_are_as_stock, tags_and_boundary_do_not_block_delete_user,
    # stock moto refuses these two as AWS does (DeleteConflict for policies only)
    DELETE_USER_BLOCKED_BY["inline_policy"], DELETE_USER_BLOCKED_BY["attached_policy"],
]


# -- fix 15: listings honour their page size -------------------------------------------
def _pages(client, operation: str, key: str, size: int = 2, **params) -> list[int]:
    """How many items each page of a listing holds, with pages of ``size``."""
    paginator = client.get_paginator(operation)
    return [len(page[key]) for page in paginator.paginate(PaginationConfig={"PageSize": size}, **params)]


def list_aliases_honours_limit(endpoint: str) -> None:
    kms = _client(endpoint, "kms", "eu-north-1")
    for i in range(3):
        kms.create_alias(AliasName=f"alias/paged-{i}", TargetKeyId=kms.create_key()["KeyMetadata"]["KeyId"])
    counts = _pages(kms, "list_aliases", "Aliases")
    assert len(counts) > 1 and max(counts) == 2, f"list-aliases-pages: {counts}"
    names = [a["AliasName"] for p in kms.get_paginator("list_aliases").paginate(PaginationConfig={"PageSize": 2})
             for a in p["Aliases"]]
    assert len(names) == len(set(names)) and {f"alias/paged-{i}" for i in range(3)} <= set(names)


def describe_parameters_honours_max_results(endpoint: str) -> None:
    ssm = _client(endpoint, "ssm", "eu-north-1")
    for i in range(3):
        ssm.put_parameter(Name=f"/paged/p{i}", Value="v", Type="String")
    counts = _pages(ssm, "describe_parameters", "Parameters",
                    ParameterFilters=[{"Key": "Path", "Option": "OneLevel", "Values": ["/paged"]}])
    assert counts == [2, 1], f"describe-parameters-pages: {counts}"


def account_authorization_details_honour_max_items(endpoint: str) -> None:
    iam = _client(endpoint, "iam")
    before = sum(_pages(iam, "get_account_authorization_details", "RoleDetailList", 1000, Filter=["Role"]))
    for i in range(3):
        iam.create_role(RoleName=f"paged-{i}-{os.getpid()}", AssumeRolePolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": []}))
    counts = _pages(iam, "get_account_authorization_details", "RoleDetailList", Filter=["Role"])
    assert max(counts) == 2 and sum(counts) == before + 3, f"authorization-details-pages: {counts}"


CHECKS: list[Callable[[str], None]] = [
    key_usage_defaults_to_encrypt_decrypt, symmetric_key_has_no_public_key,
    rsa_oaep_round_trip, multi_region_replica_decrypts_primary_ciphertext,
    disabled_key_cannot_encrypt_or_decrypt, pending_deletion_key_cannot_decrypt,
    replicate_keeps_primary_primary, replica_has_its_own_aliases,
    replicate_single_region_is_validation_error, rotation_period_is_returned,
    access_denied_is_typed_for_json_services, oidc_audiences_can_be_added_and_removed,
    tagging_actions_carry_their_iam_prefix,
    new_principal_is_refused_until_propagated, key_policy_naming_a_new_role_is_refused_until_propagated,
    deleted_access_key_is_refused, inactive_access_key_is_refused_until_reactivated,
    wrong_secret_is_signature_mismatch,
    user_permissions_boundary_is_stored, user_permissions_boundary_can_be_replaced_and_removed,
    boundary_naming_a_missing_policy_is_no_such_entity,
    *(check for check in DELETE_USER_BLOCKED_BY.values() if check not in HOLDS_ON_STOCK),
    assigned_virtual_mfa_device_cannot_be_deleted, service_specific_credentials_are_created_listed_and_deleted,
    list_aliases_honours_limit, describe_parameters_honours_max_results,
    account_authorization_details_honour_max_items,
]


@pytest.mark.parametrize("check", CHECKS + HOLDS_ON_STOCK, ids=lambda c: c.__name__)
def test_sandbox_behaves_as_aws(aws, check):
    check(aws)


# How stock moto fails each check: exactly this exception, and the AWS error
# code or the label of the assertion that fails, so a check that broke for an
# unrelated reason does not pass as "moto differs".
STOCK_FAILURES: dict[str, tuple[type[BaseException], str]] = {
    "key_usage_defaults_to_encrypt_decrypt": (AssertionError, "key-usage"),  # KeyUsage left empty
    # a made-up RSA pair behind every symmetric key: its public half is handed out
    "symmetric_key_has_no_public_key": (pytest.fail.Exception, "DID NOT RAISE"),
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
    # checked as tagging:GetResources, which no policy grants
    "tagging_actions_carry_their_iam_prefix": (botocore.exceptions.ClientError, "403"),  # untyped, see fix 3
    # not implemented: an HTML 500 that botocore cannot parse
    "oidc_audiences_can_be_added_and_removed": (botocore.parsers.ResponseParserError, "Unable to parse"),
    "new_principal_is_refused_until_propagated": (pytest.fail.Exception, "DID NOT RAISE"),  # accepted at once
    "key_policy_naming_a_new_role_is_refused_until_propagated": (pytest.fail.Exception, "DID NOT RAISE"),
    # GetCallerIdentity answers (as user/moto) with a deleted key
    "deleted_access_key_is_refused": (pytest.fail.Exception, "DID NOT RAISE"),
    "inactive_access_key_is_refused_until_reactivated": (pytest.fail.Exception, "DID NOT RAISE"),
    "wrong_secret_is_signature_mismatch": (pytest.fail.Exception, "DID NOT RAISE"),  # the secret is never checked
    "user_permissions_boundary_is_stored": (AssertionError, "user-boundary"),  # CreateUser drops it
    # Put/DeleteUserPermissionsBoundary not implemented: an HTML 500
    "user_permissions_boundary_can_be_replaced_and_removed": (botocore.parsers.ResponseParserError,
                                                              "Unable to parse"),
    "boundary_naming_a_missing_policy_is_no_such_entity": (pytest.fail.Exception, "DID NOT RAISE"),
    # DeleteUser deletes the user with these still attached
    **{f"delete_user_refused_while_it_has_{kind}": (pytest.fail.Exception, "DID NOT RAISE") for kind in (
        "access_key", "group_membership", "login_profile", "virtual_mfa_device", "hardware_mfa_device",
        "ssh_public_key", "signing_certificate")},
    # CreateServiceSpecificCredential not implemented: an HTML 500
    "delete_user_refused_while_it_has_service_specific_credential": (botocore.parsers.ResponseParserError,
                                                                     "Unable to parse"),
    "assigned_virtual_mfa_device_cannot_be_deleted": (pytest.fail.Exception, "DID NOT RAISE"),
    "service_specific_credentials_are_created_listed_and_deleted": (botocore.parsers.ResponseParserError,
                                                                    "Unable to parse"),
    # one page whatever the page size (DescribeParameters: pages of 10)
    "list_aliases_honours_limit": (AssertionError, "list-aliases-pages"),
    "describe_parameters_honours_max_results": (AssertionError, "describe-parameters-pages"),
    "account_authorization_details_honour_max_items": (AssertionError, "authorization-details-pages"),
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


def test_the_sandbox_lists_motos_modules_once_not_per_request(aws, monkeypatch):
    """Fix 17 (speed): which service a request is for is found without listing
    moto's package directory again (stock moto lists and stats ~200 entries
    twice per request)."""
    from moto import backends

    from reconciler.sandbox import fidelity

    stock = list(fidelity._ORIGINAL["list_of_moto_modules"]())
    assert "kms" in stock and "iam" in stock
    listed: list[str] = []
    real_listdir = os.listdir
    monkeypatch.setattr(os, "listdir", lambda path=".": listed.append(str(path)) or real_listdir(path))
    assert list(backends.list_of_moto_modules()) == stock
    _client(aws, "kms").list_keys()
    assert listed == []
