"""Fixes applied to moto (in the server process, before it starts) where it
differs from AWS in ways reconciler depends on. Each fix is proven by a test
in tests/aws/test_sandbox_fidelity.py that fails on stock moto.

1. ReplicateKey: stock moto shares the primary's multi-Region configuration
   with the replica (so the primary then describes itself as REPLICA), shares
   its alias table, ignores Description/Tags/Policy, and answers HTTP 500 for
   a single-Region key. Here the primary stays PRIMARY, the replica has its
   own aliases, description, tags and policy, and a single-Region key gets
   ValidationException, as on AWS.
2. Rotation period: stock moto accepts RotationPeriodInDays and never returns
   it; here GetKeyRotationStatus returns it (365 by default) while rotation is
   enabled, and out-of-range periods are rejected.
3. Access denied on JSON-protocol services (KMS, Secrets Manager, SSM,
   DynamoDB): stock moto answers HTTP 403 with an XML body, which botocore
   reads as error code "403" with no message; here it is the typed
   ``AccessDeniedException`` with AWS's message, as AWS sends it.
4. RSA keys: stock moto's Decrypt cannot undo RSAES_OAEP encryption made with
   the public key from GetPublicKey, and its Encrypt ignores the algorithm.
   Here both are real RSA OAEP (SHA-1 or SHA-256) with the key's own pair,
   shared by a multi-Region primary and its replicas.
5. Multi-Region keys: stock moto's ciphertext header has room for a 36-byte
   key id and cuts ``mrk-`` ids (40 bytes), so nothing encrypted under one
   decrypts. Here the header fits them, and a replica decrypts what its
   primary encrypted (they share key material, as on AWS).
6. Key state: stock moto encrypts and decrypts with Disabled and
   PendingDeletion keys. Here those fail with DisabledException /
   KMSInvalidStateException, as on AWS.
7. CreateKey without KeyUsage: stock moto records no usage (DescribeKey has
   KeyUsage null); AWS defaults it to ENCRYPT_DECRYPT.
8. OIDC provider audiences: stock moto does not implement
   AddClientIDToOpenIDConnectProvider / RemoveClientIDFromOpenIDConnectProvider
   (HTML 500, unreadable by botocore); here they add (idempotently) and remove
   a client id, as AWS does.
9. IAM eventual consistency (a switch, off by default): AWS refuses, for a
   while, a trust policy naming a role or OIDC provider created moments ago
   (MalformedPolicyDocument "Invalid principal in policy"); stock moto never
   does. With ``RECONCILER_SANDBOX_PROPAGATION_SECONDS=N`` in the sandbox's
   environment (read at every call), CreateRole and UpdateAssumeRolePolicy
   refuse such a principal for its first N seconds, and KMS CreateKey and
   PutKeyPolicy refuse a key policy naming it (MalformedPolicyDocumentException,
   "one or more invalid principals"), so the retry that copes with it is
   tested end to end.
10. IAM user access keys used to call STS: stock moto (with auth off, as the
    sandbox runs) looks at nothing but the access key id, so a deleted key
    still answers GetCallerIdentity (as the placeholder ``user/moto``), an
    Inactive key and a wrong secret access key still answer as the user.
    Here every STS action signed (SigV4 ``Authorization`` header) with a key
    IAM issued to a user fails as on AWS: InvalidClientTokenId (403) once the
    key is deleted (or its user is) or while it is Inactive, and
    SignatureDoesNotMatch (403) when the signature, recomputed by moto's own
    ``IAMRequest`` check, is wrong. Other credentials (the tests'
    ``testing``, assumed-role keys) and other services are untouched.
11. User permission boundaries: stock moto's CreateUser drops
    ``PermissionsBoundary`` and PutUserPermissionsBoundary /
    DeleteUserPermissionsBoundary are HTML 500s. Here CreateUser and
    PutUserPermissionsBoundary store it, GetUser (and CreateUser's answer)
    return it as ``{PermissionsBoundaryType: Policy, PermissionsBoundaryArn}``,
    ListUsers does not (AWS's listing omits it), and
    DeleteUserPermissionsBoundary removes it (succeeding on a user without one).
    A boundary naming a policy that does not exist is NoSuchEntity ("Scope ARN:
    ... does not exist or is not attachable.", HTTP 404) and no user is created;
    as with AttachUserPolicy, AWS-managed ``arn:aws:iam::aws:policy/...``
    policies exist only when the server runs with
    ``MOTO_IAM_LOAD_MANAGED_POLICIES=true``. A boundary does not block
    DeleteUser (AWS's DeleteUser lists no boundary among what must go first).
12. DeleteUser: stock moto deletes a user that still has access keys, group
    memberships, a login profile, MFA devices, SSH public keys or signing
    certificates (DeleteConflict only for policies). Here DeleteUser refuses
    with DeleteConflict (HTTP 409, "Cannot delete entity, must ... first.")
    while any of them, or a service-specific credential, inline or attached
    policy, remains, as on AWS. And DeleteVirtualMFADevice refuses
    (DeleteConflict) a device still assigned to a user, which stock moto
    deletes, leaving the user holding it: AWS wants DeactivateMFADevice first.
13. Service-specific credentials: stock moto does not implement
    CreateServiceSpecificCredential / ListServiceSpecificCredentials /
    DeleteServiceSpecificCredential (HTML 500). Here they create (two per user
    and service, for codecommit.amazonaws.com and cassandra.amazonaws.com),
    list (optionally by service, without the password) and delete them, with
    AWS's errors (LimitExceeded, NotSupportedService, NoSuchEntity).
14. IAM action names: stock moto's access control names an action by the
    service's SigV4 signing name, so the Resource Groups Tagging API's
    GetResources is checked as ``tagging:GetResources`` and a policy granting
    ``tag:GetResources`` (AWS's IAM name, what ``reconciler policy`` prints)
    is denied. Here actions carry their IAM prefix (``tag:``).
15. Pagination of listings: stock moto returns every alias of a region in one
    ListAliases page whatever ``Limit`` says, pages DescribeParameters by 10
    whatever ``MaxResults`` says, and GetAccountAuthorizationDetails in one
    page whatever ``MaxItems`` says. Here each honours its page size (AWS's
    default when it is not given: 50 aliases, 10 parameters, 100 items) with
    AWS's continuation fields (``Truncated``/``NextMarker``, ``NextToken``,
    ``IsTruncated``/``Marker``), so a refresh that lists in pages is tested
    over more than one page.
16. CreateKey's cost: stock moto makes an RSA-2048 key pair for every key,
    symmetric ones included (AWS has no pair for them), about 57 ms of CPU
    each: most of the sandbox's time in an apply of many keys, where AWS's
    CreateKey is cheap. Here a symmetric or HMAC key has no pair (one is
    made only if moto ever reads it) and GetPublicKey on it is refused with
    UnsupportedOperationException, as on AWS, where stock moto hands out the
    public half of its made-up pair; asymmetric keys get theirs at once.
17. Request dispatch (speed, not behaviour): stock moto finds which service a
    request is for by listing its package directory, with a stat of each of
    its ~200 entries, twice per request (over half of the server's CPU for a
    DescribeKey). Here the list is read once: the modules do not change
    while the server runs.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import secrets
import string
import struct
from typing import Any
from urllib.parse import urlparse

from moto.core import authorization
from moto.iam import access_control
from moto.core import exceptions as core_exceptions
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from moto.kms import exceptions as kms_exceptions
from moto.kms import utils as kms_utils
from moto.kms import models as kms_models
from moto.core.responses import ActionResult, EmptyResult
from moto.core import serialize as core_serialize
from moto.core import utils as core_utils
from moto.iam import exceptions as iam_exceptions
from moto.iam import models as iam_models
from moto.iam import access_control as iam_access_control
from moto.iam import responses as iam_responses
from moto.sts import responses as sts_responses
from moto.kms import responses as kms_responses

_applied = False
DEFAULT_ROTATION_DAYS = 365


def _replicate_key(self: kms_models.KmsBackend, key_id: str, replica_region: str) -> kms_models.Key:
    primary = self.keys[self.get_key_id(key_id)]
    if not primary.multi_region:
        raise kms_exceptions.ValidationException(
            f"{primary.arn} is not a multi-Region key; only multi-Region keys can be replicated")
    config = primary.multi_region_configuration
    if config["MultiRegionKeyType"] != "PRIMARY":
        raise kms_exceptions.ValidationException(f"{primary.arn} is not a primary key")
    if replica_region == self.region_name or any(r["Region"] == replica_region for r in config["ReplicaKeys"]):
        raise kms_exceptions.AlreadyExistsException(
            f"a replica of {primary.arn} already exists in {replica_region}")
    replica = copy.copy(primary)
    replica.region = replica_region
    replica.arn = primary.arn.replace(f":{self.region_name}:", f":{replica_region}:", 1)
    replica.aliases = {}
    replica.grants = {}
    replica.rotations = []
    replica.description = ""
    replica.policy = replica.generate_default_policy()
    replica.key_state, replica.enabled, replica.deletion_date = "Enabled", True, None
    config["ReplicaKeys"].append({"Arn": replica.arn, "Region": replica_region})
    replica.multi_region_configuration = {
        "MultiRegionKeyType": "REPLICA",
        "PrimaryKey": dict(config["PrimaryKey"]),
        "ReplicaKeys": config["ReplicaKeys"],  # one list, kept in step for every copy
    }
    kms_models.kms_backends[self.account_id][replica_region].keys[replica.id] = replica
    return replica


def _replicate_key_response(self: kms_responses.KmsResponse) -> str:
    key_id = self._get_param("KeyId")
    self._validate_key_id(key_id)
    replica_region = self._get_param("ReplicaRegion")
    replica = self.kms_backend.replicate_key(key_id, replica_region)
    replica.description = self._get_param("Description") or ""
    if self._get_param("Policy"):
        replica.policy = self._get_param("Policy")
    tags = self._get_param("Tags") or []
    if tags:
        kms_models.kms_backends[self.current_account][replica_region].tagger.tag_resource(replica.id, tags)
    return json.dumps({"ReplicaKeyMetadata": replica.to_dict()["KeyMetadata"],
                       "ReplicaPolicy": replica.policy})


def _enable_key_rotation(self: kms_responses.KmsResponse) -> str:
    key_id = self._get_param("KeyId")
    period = self._get_param("RotationPeriodInDays")
    if period is not None and not 90 <= int(period) <= 2560:
        raise kms_exceptions.ValidationException(
            f"RotationPeriodInDays {period} is out of range; it must be between 90 and 2560")
    result = _ORIGINAL["enable_key_rotation"](self)
    key = self.kms_backend.keys[self.kms_backend.get_key_id(key_id)]
    days = int(period) if period is not None else DEFAULT_ROTATION_DAYS
    key.rotation_period_in_days = days  # type: ignore[attr-defined]
    return result


def _get_key_rotation_status(self: kms_responses.KmsResponse) -> str:
    result = json.loads(_ORIGINAL["get_key_rotation_status"](self))
    key = self.kms_backend.keys[self.kms_backend.get_key_id(self._get_param("KeyId"))]
    result["KeyId"] = key.arn
    if result.get("KeyRotationEnabled"):
        result["RotationPeriodInDays"] = getattr(key, "rotation_period_in_days", DEFAULT_ROTATION_DAYS)
    return json.dumps(result)


def _authenticate_and_authorize_action(self: Any, iam_request_cls: type, resource: str = "*") -> None:
    try:
        _ORIGINAL["authorize"](self, iam_request_cls, resource)
    except core_exceptions.AccessDeniedError as exc:
        if not self.headers.get("X-Amz-Target"):
            raise  # query and REST protocols (IAM, STS, S3) do get XML
        message = exc.message
        raise core_exceptions.JsonRESTError("AccessDeniedException", message) from exc


class DisabledException(core_exceptions.JsonRESTError):
    code = 400

    def __init__(self, arn: str) -> None:
        super().__init__("DisabledException", f"{arn} is disabled.")


class KMSInvalidStateException(core_exceptions.JsonRESTError):
    code = 400

    def __init__(self, arn: str, state: str) -> None:
        super().__init__("KMSInvalidStateException", f"{arn} is pending deletion." if
                         state == "PendingDeletion" else f"{arn} is in state {state}.")


def _check_usable(key: kms_models.Key) -> None:
    if key.key_state == "Disabled":
        raise DisabledException(key.arn)
    if key.key_state != "Enabled":
        raise KMSInvalidStateException(key.arn, key.key_state)


_OAEP = {"RSAES_OAEP_SHA_1": hashes.SHA1, "RSAES_OAEP_SHA_256": hashes.SHA256}
KEY_ID_LEN = 40  # room for mrk- ids
_HEADER = f">{KEY_ID_LEN}s{kms_utils.IV_LEN}s{kms_utils.TAG_LEN}s"
_HEADER_LEN = KEY_ID_LEN + kms_utils.IV_LEN + kms_utils.TAG_LEN


def _serialize_ciphertext_blob(ciphertext: Any) -> bytes:
    header = struct.pack(_HEADER, ciphertext.key_id.encode("utf-8"), ciphertext.iv, ciphertext.tag)
    return header + ciphertext.ciphertext


def _deserialize_ciphertext_blob(ciphertext_blob: bytes) -> Any:
    blob = ciphertext_blob
    key_id, iv, tag = struct.unpack(_HEADER, blob[:_HEADER_LEN])
    return kms_utils.Ciphertext(key_id=key_id.rstrip(b"\0").decode("utf-8"), iv=iv,
                                ciphertext=blob[_HEADER_LEN:], tag=tag)


def _backend_encrypt(self: kms_models.KmsBackend, key_id: str, plaintext: bytes,
                     encryption_context: dict[str, str]) -> tuple[bytes, str]:
    key = self.keys.get(self.any_id_to_key_id(key_id))
    if key is not None:
        _check_usable(key)
    return _ORIGINAL["backend_encrypt"](self, key_id, plaintext, encryption_context)


def _backend_decrypt(self: kms_models.KmsBackend, ciphertext_blob: bytes, encryption_context: dict[str, str],
                     key_id: str | None = None) -> tuple[bytes, str]:
    plaintext, arn = _ORIGINAL["backend_decrypt"](self, ciphertext_blob, encryption_context, key_id)
    _check_usable(self.keys[self.get_key_id(arn)])
    return plaintext, arn


def _rsa_key(self: kms_responses.KmsResponse) -> kms_models.Key | None:
    algorithm = self._get_param("EncryptionAlgorithm")
    if algorithm not in _OAEP:
        return None
    key_id = self._get_param("KeyId")
    if not key_id:
        raise kms_exceptions.ValidationException("KeyId is required for asymmetric decryption")
    self._validate_key_id(key_id)
    key = self.kms_backend.keys[self.kms_backend.any_id_to_key_id(key_id)]
    if key.key_spec not in ("RSA_2048", "RSA_3072", "RSA_4096"):
        raise kms_exceptions.InvalidKeyUsageException()
    _check_usable(key)
    return key


def _oaep(algorithm: str) -> padding.OAEP:
    digest = _OAEP[algorithm]()
    return padding.OAEP(mgf=padding.MGF1(algorithm=digest), algorithm=digest, label=None)


def _decrypt_response(self: kms_responses.KmsResponse) -> str:
    key = _rsa_key(self)
    if key is None:
        return _ORIGINAL["decrypt"](self)
    algorithm = self._get_param("EncryptionAlgorithm")
    try:
        private = key.private_key.private_key  # type: ignore[attr-defined]
        plaintext = private.decrypt(self._get_param("CiphertextBlob"), _oaep(algorithm))
    except ValueError:
        raise kms_exceptions.InvalidCiphertextException() from None
    return json.dumps({"Plaintext": base64.b64encode(plaintext).decode(), "KeyId": key.arn,
                       "EncryptionAlgorithm": algorithm})


def _encrypt_response(self: kms_responses.KmsResponse) -> str:
    key = _rsa_key(self)
    if key is None:
        return _ORIGINAL["encrypt"](self)
    algorithm = self._get_param("EncryptionAlgorithm")
    public = key.private_key.private_key.public_key()  # type: ignore[attr-defined]
    blob = public.encrypt(self._get_param("Plaintext"), _oaep(algorithm))
    return json.dumps({"CiphertextBlob": base64.b64encode(blob).decode(), "KeyId": key.arn,
                       "EncryptionAlgorithm": algorithm})


def _create_key(self: kms_models.KmsBackend, policy: str | None, key_usage: str, key_spec: str,
                description: str, tags: Any, multi_region: bool = False, origin: str = "AWS_KMS") -> Any:
    _refuse_unpropagated_key_policy(self, policy)
    return _ORIGINAL["create_key"](self, policy, key_usage or "ENCRYPT_DECRYPT", key_spec, description, tags,
                                   multi_region, origin)


# -- fix 16: no RSA pair made for a symmetric key ----------------------------------------------
class _PairOnDemand(kms_utils.AbstractPrivateKey):
    """A symmetric key's stand-in for moto's key pair: made at its first use."""

    def __init__(self, key_spec: str) -> None:
        self.key_spec = key_spec
        self._pair: kms_utils.AbstractPrivateKey | None = None

    def _made(self) -> kms_utils.AbstractPrivateKey:
        if self._pair is None:
            self._pair = _ORIGINAL["generate_private_key"](self.key_spec)
        return self._pair

    def sign(self, message: bytes, signing_algorithm: str) -> bytes:
        return self._made().sign(message, signing_algorithm)

    def verify(self, message: bytes, signature: bytes, signing_algorithm: str) -> bool:
        return self._made().verify(message, signature, signing_algorithm)

    def public_key(self) -> bytes:
        return self._made().public_key()

    def __getattr__(self, name: str) -> Any:  # private_key, key_size: what moto reads off a pair
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._made(), name)


# -- fix 17: moto's modules listed once, not on every request ----------------------------------
def _list_modules_once() -> None:
    from moto import backends

    modules = tuple(backends.list_of_moto_modules())
    _ORIGINAL["list_of_moto_modules"] = backends.list_of_moto_modules
    backends.list_of_moto_modules = lambda: modules  # type: ignore[assignment]


def _get_public_key(self: kms_models.KmsBackend, key_id: str) -> tuple[kms_models.Key, bytes]:
    key = self.describe_key(key_id)
    if isinstance(key.private_key, _PairOnDemand):
        raise core_exceptions.JsonRESTError(
            "UnsupportedOperationException",
            f"{key.arn} key usage is {key.key_usage} and key spec is {key.key_spec}: it has no public key")
    return _ORIGINAL["get_public_key"](self, key_id)


def _generate_private_key(key_spec: str) -> kms_utils.AbstractPrivateKey:
    if key_spec.startswith(("RSA_", "ECC_", "SM2")):
        return _ORIGINAL["generate_private_key"](key_spec)
    return _PairOnDemand(key_spec)


def _add_client_id(self: iam_responses.IamResponse) -> Any:
    provider = self.backend.get_open_id_connect_provider(self._get_param("OpenIDConnectProviderArn"))
    client_id = self._get_param("ClientID")
    if client_id not in provider.client_id_list:
        provider.client_id_list.append(client_id)
    return EmptyResult()


def _remove_client_id(self: iam_responses.IamResponse) -> Any:
    provider = self.backend.get_open_id_connect_provider(self._get_param("OpenIDConnectProviderArn"))
    client_id = self._get_param("ClientID")
    provider.client_id_list = [c for c in provider.client_id_list if c != client_id]
    return EmptyResult()


PROPAGATION_ENV = "RECONCILER_SANDBOX_PROPAGATION_SECONDS"


def _created(backend: Any, arn: str) -> Any:
    """When the role or OIDC provider ``arn`` names was created (None: not one of them)."""
    if ":oidc-provider/" in arn:
        provider = backend.open_id_providers.get(arn)
        return provider.create_date if provider is not None else None
    if ":role/" in arn:
        return next((r.create_date for r in backend.roles.values() if r.arn == arn), None)
    return None


def _refuse_unpropagated(backend: Any, document: str) -> None:
    """MalformedPolicyDocument for a principal younger than the switch's seconds."""
    seconds = float(os.environ.get(PROPAGATION_ENV) or 0)
    if seconds <= 0:
        return
    try:
        statements = json.loads(document).get("Statement", [])
    except (ValueError, AttributeError):
        return
    for statement in [statements] if isinstance(statements, dict) else statements:
        principal = statement.get("Principal") if isinstance(statement, dict) else None
        for kind, values in (principal.items() if isinstance(principal, dict) else []):
            for arn in values if isinstance(values, list) else [values]:
                created = _created(backend, str(arn))
                if created is not None and (core_utils.utcnow() - created).total_seconds() < seconds:
                    raise iam_exceptions.MalformedPolicyDocument(f'Invalid principal in policy: "{kind}":"{arn}"')


def _create_role(self: Any, role_name: str, assume_role_policy_document: str, *args: Any, **kwargs: Any) -> Any:
    _refuse_unpropagated(self, assume_role_policy_document)
    return _ORIGINAL["create_role"](self, role_name, assume_role_policy_document, *args, **kwargs)


def _update_assume_role_policy(self: Any, role_name: str, policy_document: str) -> None:
    _refuse_unpropagated(self, policy_document)
    _ORIGINAL["update_assume_role_policy"](self, role_name, policy_document)


class MalformedKeyPolicy(core_exceptions.JsonRESTError):
    code = 400

    def __init__(self) -> None:
        super().__init__("MalformedPolicyDocumentException",
                         "Policy contains a statement with one or more invalid principals.")


def _refuse_unpropagated_key_policy(backend: kms_models.KmsBackend, policy: str | None) -> None:
    """A key policy naming a principal IAM has not propagated: KMS's own refusal."""
    if not policy:
        return
    try:
        _refuse_unpropagated(iam_models.iam_backends[backend.account_id]["aws"], policy)
    except iam_exceptions.MalformedPolicyDocument:
        raise MalformedKeyPolicy() from None


def _put_key_policy(self: kms_models.KmsBackend, key_id: str, policy: str) -> None:
    _refuse_unpropagated_key_policy(self, policy)
    _ORIGINAL["put_key_policy"](self, key_id, policy)


ISSUED_KEYS = "_reconciler_issued_user_keys"  # on each IAMBackend, so /moto-api/reset clears it


def _create_access_key(self: iam_models.IAMBackend, *args: Any, **kwargs: Any) -> Any:
    key = _ORIGINAL["create_access_key"](self, *args, **kwargs)
    self.__dict__.setdefault(ISSUED_KEYS, set()).add(key.access_key_id)
    return key


def _issuer(key_id: str) -> tuple[str, iam_models.IAMBackend] | None:
    """The account and IAM backend that issued user access key ``key_id`` (None: not one IAM issued)."""
    for account_id, account in list(iam_models.iam_backends.items()):
        for backend in list(account.values()):
            if key_id in backend.__dict__.get(ISSUED_KEYS, ()):
                return account_id, backend
    return None


def _live_user_key(backend: iam_models.IAMBackend, key_id: str) -> Any:
    """The access key if it still exists and its user does (None: deleted)."""
    key = backend.access_keys.get(key_id)
    user = backend.users.get(key.user_name) if key is not None and key.user_name else None
    return key if user is not None and key in user.access_keys else None


def _check_user_key_signature(self: sts_responses.TokenResponse, account_id: str) -> None:
    """moto's own SigV4 check (as with auth on): SignatureDoesNotMatch for a wrong secret."""
    path = self.raw_path
    query = urlparse(self.uri).query
    request = iam_access_control.IAMRequest(
        account_id=account_id, method=self.method, path=f"{path}?{query}" if query else path,
        data=self.data, body=self.raw_body, headers=self.headers, action=self._get_action())
    request.check_signature()


def _check_user_key(self: sts_responses.TokenResponse) -> None:
    """An STS request signed with an IAM user's access key: the key must exist, be Active and sign right."""
    header = self.headers.get("Authorization") or ""
    if not header.startswith("AWS4-HMAC-SHA256"):
        return  # unsigned (AssumeRoleWithWebIdentity) or presigned: as stock moto
    key_id = header.partition("Credential=")[2].partition("/")[0]
    issuer = _issuer(key_id)
    if issuer is None:
        return  # not a key IAM issued (e.g. "testing"): as stock moto
    account_id, backend = issuer
    key = _live_user_key(backend, key_id)
    if key is None or key.status != "Active":
        raise core_exceptions.InvalidClientTokenIdError()
    _check_user_key_signature(self, account_id)


def _sts_authenticate(self: sts_responses.TokenResponse, resource: str = "*") -> None:
    _check_user_key(self)
    _ORIGINAL["sts_authenticate"](self, resource)


BOUNDARY = "_reconciler_permissions_boundary_arn"  # on each moto User, so /moto-api/reset clears it


def _user_boundary(user: iam_models.User) -> dict[str, str] | None:
    arn = user.__dict__.get(BOUNDARY)
    return {"PermissionsBoundaryType": "Policy", "PermissionsBoundaryArn": arn} if arn else None


def _check_boundary(backend: iam_models.IAMBackend, arn: str) -> None:
    """InvalidInput for what is not a policy ARN, NoSuchEntity for a policy that does not exist."""
    if not backend.policy_arn_regex.match(arn or ""):
        raise iam_exceptions.InvalidInput(f"Value ({arn}) for parameter PermissionsBoundary is invalid.")
    if arn not in backend.managed_policies:
        raise iam_exceptions.NoSuchEntity(f"Scope ARN: {arn} does not exist or is not attachable.")


def _create_user(self: iam_responses.IamResponse) -> Any:
    boundary = self._get_param("PermissionsBoundary")
    if boundary:
        _check_boundary(self.backend, boundary)  # before the user exists: AWS creates none
    result = _ORIGINAL["create_user"](self)
    if boundary:
        self.backend.get_user(self._get_param("UserName")).__dict__[BOUNDARY] = boundary
    return result


def _put_user_permissions_boundary(self: iam_responses.IamResponse) -> Any:
    user = self.backend.get_user(self._get_param("UserName"))
    boundary = self._get_param("PermissionsBoundary")
    _check_boundary(self.backend, boundary)
    user.__dict__[BOUNDARY] = boundary
    return EmptyResult()


def _delete_user_permissions_boundary(self: iam_responses.IamResponse) -> Any:
    self.backend.get_user(self._get_param("UserName")).__dict__.pop(BOUNDARY, None)
    return EmptyResult()


SERVICE_CREDENTIALS = "_reconciler_service_specific_credentials"  # on each moto User: id -> credential
CREDENTIAL_SERVICES = ("codecommit.amazonaws.com", "cassandra.amazonaws.com")


class NotSupportedService(iam_exceptions.IAMException):
    code = "NotSupportedService"


def _service_credentials(user: iam_models.User) -> dict[str, dict[str, Any]]:
    return user.__dict__.setdefault(SERVICE_CREDENTIALS, {})  # type: ignore[no-any-return]


# What DeleteUser wants gone first, one check per kind, with AWS's DeleteConflict message
_DELETE_USER_BLOCKERS: tuple[tuple[str, Any], ...] = (
    ("must delete login profile first.", lambda backend, user: user.password),
    ("must delete access keys first.", lambda backend, user: user.access_keys),
    ("must delete signing certificates first.", lambda backend, user: user.signing_certificates),
    ("must delete SSH public keys first.", lambda backend, user: user.ssh_public_keys),
    ("must delete service specific credentials first.", lambda backend, user: _service_credentials(user)),
    ("must delete MFA devices first.", lambda backend, user: user.mfa_devices),
    ("must detach all policies first.", lambda backend, user: user.managed_policies),
    ("must delete policies first.", lambda backend, user: user.policies),
    ("must remove users from group first.", lambda backend, user: backend.get_groups_for_user(user.name)),
)


def _delete_user(self: iam_models.IAMBackend, user_name: str) -> None:
    user = self.get_user(user_name)
    for message, attached in _DELETE_USER_BLOCKERS:
        if attached(self, user):
            raise iam_exceptions.DeleteConflictException(f"Cannot delete entity, {message}")
    _ORIGINAL["delete_user"](self, user_name)


def _delete_virtual_mfa_device(self: iam_models.IAMBackend, serial_number: str) -> None:
    device = self.virtual_mfa_devices.get(serial_number)
    if device is not None and device.user is not None:
        raise iam_exceptions.DeleteConflictException(
            f"MFA device {serial_number} is assigned to user {device.user.name}; deactivate it first.")
    _ORIGINAL["delete_virtual_mfa_device"](self, serial_number)


def _credential_user(self: iam_responses.IamResponse) -> iam_models.User:
    """UserName, or (List/Delete without one, as AWS allows) the caller's own user."""
    name = self._get_param("UserName")
    if name:
        return self.backend.get_user(name)
    user = self.backend.get_user_from_access_key_id(self.get_access_key())
    if user is None:
        raise iam_exceptions.NoSuchEntity("The request must name a user (UserName).")
    return user


def _random(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _create_service_specific_credential(self: iam_responses.IamResponse) -> Any:
    user = self.backend.get_user(self._get_param("UserName"))
    service = self._get_param("ServiceName")
    if service not in CREDENTIAL_SERVICES:
        raise NotSupportedService(f"Service {service} is not supported for service-specific credentials.")
    credentials = _service_credentials(user)
    of_service = [c for c in credentials.values() if c["ServiceName"] == service]
    if len(of_service) >= 2:
        raise iam_exceptions.LimitExceededException(
            "Cannot exceed quota for ServiceSpecificCredentialsPerUserPerService: 2")
    suffix = f"-{len(of_service)}" if of_service else ""
    credential = {
        "CreateDate": core_utils.utcnow(), "ServiceName": service,
        "ServiceUserName": f"{user.name}-at-{self.current_account}{suffix}",
        "ServiceSpecificCredentialId": "ACCA" + _random(string.ascii_uppercase + string.digits, 17),
        "UserName": user.name, "Status": "Active",
    }
    credentials[credential["ServiceSpecificCredentialId"]] = credential
    password = base64.b64encode(secrets.token_bytes(33)).decode()
    return ActionResult({"ServiceSpecificCredential": {**credential, "ServicePassword": password}})


def _list_service_specific_credentials(self: iam_responses.IamResponse) -> Any:
    service = self._get_param("ServiceName")
    listed = [dict(c) for c in _service_credentials(_credential_user(self)).values()
              if not service or c["ServiceName"] == service]
    return ActionResult({"ServiceSpecificCredentials": listed})


def _delete_service_specific_credential(self: iam_responses.IamResponse) -> Any:
    credential_id = self._get_param("ServiceSpecificCredentialId")
    credentials = _service_credentials(_credential_user(self))
    if credentials.pop(credential_id, None) is None:
        raise iam_exceptions.NoSuchEntity(f"No such credential {credential_id}.")
    return EmptyResult()


_ORIGINAL: dict[str, Any] = {}


_IAM_PREFIX = {"tagging": "tag"}  # SigV4 signing name -> IAM action prefix, where they differ


def _iam_request_init(self: Any, *args: Any, **kwargs: Any) -> None:
    _ORIGINAL["iam_request_init"](self, *args, **kwargs)
    prefix = _IAM_PREFIX.get(getattr(self, "_service", ""))
    if prefix is not None:
        self._action = prefix + self._action[len(self._service):]


def apply() -> None:
    """Install every fix. Idempotent; call before the server starts."""
    global _applied
    if _applied:
        return
    _ORIGINAL["authorize"] = authorization.ActionAuthenticatorMixin._authenticate_and_authorize_action
    authorization.ActionAuthenticatorMixin._authenticate_and_authorize_action = (  # type: ignore[method-assign]
        _authenticate_and_authorize_action)
    _ORIGINAL["create_key"] = kms_models.KmsBackend.create_key
    kms_models.KmsBackend.create_key = _create_key  # type: ignore[method-assign]
    _ORIGINAL["backend_encrypt"] = kms_models.KmsBackend.encrypt
    _ORIGINAL["backend_decrypt"] = kms_models.KmsBackend.decrypt
    _ORIGINAL["decrypt"] = kms_responses.KmsResponse.decrypt
    _ORIGINAL["encrypt"] = kms_responses.KmsResponse.encrypt
    kms_utils._serialize_ciphertext_blob = _serialize_ciphertext_blob
    kms_utils._deserialize_ciphertext_blob = _deserialize_ciphertext_blob
    kms_models.KmsBackend.encrypt = _backend_encrypt  # type: ignore[method-assign]
    kms_models.KmsBackend.decrypt = _backend_decrypt  # type: ignore[method-assign]
    kms_responses.KmsResponse.decrypt = _decrypt_response  # type: ignore[method-assign]
    kms_responses.KmsResponse.encrypt = _encrypt_response  # type: ignore[method-assign]
    _ORIGINAL["enable_key_rotation"] = kms_responses.KmsResponse.enable_key_rotation
    _ORIGINAL["get_key_rotation_status"] = kms_responses.KmsResponse.get_key_rotation_status
    kms_models.KmsBackend.replicate_key = _replicate_key  # type: ignore[method-assign]
    kms_responses.KmsResponse.replicate_key = _replicate_key_response  # type: ignore[method-assign]
    kms_responses.KmsResponse.enable_key_rotation = _enable_key_rotation  # type: ignore[method-assign]
    kms_responses.KmsResponse.get_key_rotation_status = _get_key_rotation_status  # type: ignore[method-assign]
    iam_responses.IamResponse.add_client_id_to_open_id_connect_provider = _add_client_id  # type: ignore[attr-defined]
    iam_responses.IamResponse.remove_client_id_from_open_id_connect_provider = _remove_client_id  # type: ignore[attr-defined]
    _ORIGINAL["create_role"] = iam_models.IAMBackend.create_role
    _ORIGINAL["update_assume_role_policy"] = iam_models.IAMBackend.update_assume_role_policy
    iam_models.IAMBackend.create_role = _create_role  # type: ignore[method-assign]
    iam_models.IAMBackend.update_assume_role_policy = _update_assume_role_policy  # type: ignore[method-assign]
    _ORIGINAL["put_key_policy"] = kms_models.KmsBackend.put_key_policy
    kms_models.KmsBackend.put_key_policy = _put_key_policy  # type: ignore[method-assign]
    _ORIGINAL["create_access_key"] = iam_models.IAMBackend.create_access_key
    iam_models.IAMBackend.create_access_key = _create_access_key  # type: ignore[method-assign]
    _ORIGINAL["sts_authenticate"] = sts_responses.TokenResponse._authenticate_and_authorize_normal_action
    setattr(sts_responses.TokenResponse, "_authenticate_and_authorize_normal_action", _sts_authenticate)
    _ORIGINAL["create_user"] = iam_responses.IamResponse.create_user
    iam_responses.IamResponse.create_user = _create_user  # type: ignore[method-assign]
    setattr(iam_responses.IamResponse, "put_user_permissions_boundary", _put_user_permissions_boundary)
    setattr(iam_responses.IamResponse, "delete_user_permissions_boundary", _delete_user_permissions_boundary)
    setattr(iam_models.User, "permissions_boundary", property(_user_boundary))
    iam_responses.IamResponse.RESPONSE_KEY_PATH_TO_TRANSFORMER = {
        **iam_responses.IamResponse.RESPONSE_KEY_PATH_TO_TRANSFORMER,
        "ListUsersResponse.Users.User.PermissionsBoundary": core_serialize.never_return}
    _ORIGINAL["delete_user"] = iam_models.IAMBackend.delete_user
    iam_models.IAMBackend.delete_user = _delete_user  # type: ignore[method-assign]
    _ORIGINAL["delete_virtual_mfa_device"] = iam_models.IAMBackend.delete_virtual_mfa_device
    iam_models.IAMBackend.delete_virtual_mfa_device = _delete_virtual_mfa_device  # type: ignore[method-assign]
    for name, method in (("create_service_specific_credential", _create_service_specific_credential),
                         ("list_service_specific_credentials", _list_service_specific_credentials),
                         ("delete_service_specific_credential", _delete_service_specific_credential)):
        setattr(iam_responses.IamResponse, name, method)
    _ORIGINAL["iam_request_init"] = access_control.IAMRequestBase.__init__
    access_control.IAMRequestBase.__init__ = _iam_request_init  # type: ignore[method-assign]
    _list_modules_once()
    _ORIGINAL["generate_private_key"] = kms_models.generate_private_key
    kms_models.generate_private_key = _generate_private_key
    _ORIGINAL["get_public_key"] = kms_models.KmsBackend.get_public_key
    kms_models.KmsBackend.get_public_key = _get_public_key  # type: ignore[method-assign]
    _paginate_listings()
    _applied = True


# -- fix 15: listings honour their page size ------------------------------------------------
ALIASES_DEFAULT_PAGE, PARAMETERS_DEFAULT_PAGE, DETAILS_DEFAULT_PAGE = 50, 10, 100


def _offset(token: Any) -> int:
    try:
        return max(0, int(str(token or "0").strip()))
    except ValueError:
        return 0


def _list_aliases(self: kms_responses.KmsResponse) -> str:
    everything = json.loads(_ORIGINAL["list_aliases"](self))["Aliases"]
    start, size = _offset(self._get_param("Marker")), int(self._get_param("Limit") or ALIASES_DEFAULT_PAGE)
    page: dict[str, Any] = {"Aliases": everything[start:start + size], "Truncated": start + size < len(everything)}
    if page["Truncated"]:
        page["NextMarker"] = str(start + size)
    return json.dumps(page)


def _describe_parameters(self: Any) -> ActionResult:
    found = self.ssm_backend.describe_parameters(self._get_param("Filters"), self._get_param("ParameterFilters"))
    start = _offset(self._get_param("NextToken"))
    size = int(self._get_param("MaxResults") or PARAMETERS_DEFAULT_PAGE)
    page: dict[str, Any] = {"Parameters": [p.describe_response_object(False) for p in found[start:start + size]]}
    if start + size < len(found):
        page["NextToken"] = str(start + size)
    return ActionResult(page)


_DETAIL_LISTS = (("users", "UserDetailList"), ("groups", "GroupDetailList"), ("roles", "RoleDetailList"),
                 ("managed_policies", "Policies"))


def _account_authorization_details(self: iam_responses.IamResponse) -> ActionResult:
    """MaxItems counts the items of every list together, as AWS does."""
    details = self.backend.get_account_authorization_details(self._get_param("Filter", []))
    items = [(field, item) for key, field in _DETAIL_LISTS for item in details[key]]
    start, size = _offset(self._get_param("Marker")), int(self._get_param("MaxItems") or DETAILS_DEFAULT_PAGE)
    result: dict[str, Any] = {field: [] for _, field in _DETAIL_LISTS}
    for field, item in items[start:start + size]:
        result[field].append(item)
    result["IsTruncated"] = start + size < len(items)
    if result["IsTruncated"]:
        result["Marker"] = str(start + size)
    return ActionResult(result)


def _paginate_listings() -> None:
    _ORIGINAL["list_aliases"] = kms_responses.KmsResponse.list_aliases
    kms_responses.KmsResponse.list_aliases = _list_aliases  # type: ignore[method-assign]
    from moto.ssm import responses as ssm_responses
    ssm_responses.SimpleSystemManagerResponse.describe_parameters = _describe_parameters  # type: ignore[method-assign]
    iam_responses.IamResponse.get_account_authorization_details = (  # type: ignore[method-assign]
        _account_authorization_details)
