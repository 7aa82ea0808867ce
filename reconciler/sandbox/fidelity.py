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
"""

from __future__ import annotations

import copy
import json
from typing import Any

from moto.core import authorization
from moto.core import exceptions as core_exceptions
from moto.kms import exceptions as kms_exceptions
from moto.kms import models as kms_models
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
    key.rotation_period_in_days = int(period) if period is not None else DEFAULT_ROTATION_DAYS
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


_ORIGINAL: dict[str, Any] = {}


def apply() -> None:
    """Install every fix. Idempotent; call before the server starts."""
    global _applied
    if _applied:
        return
    _ORIGINAL["authorize"] = authorization.ActionAuthenticatorMixin._authenticate_and_authorize_action
    authorization.ActionAuthenticatorMixin._authenticate_and_authorize_action = (  # type: ignore[method-assign]
        _authenticate_and_authorize_action)
    _ORIGINAL["enable_key_rotation"] = kms_responses.KmsResponse.enable_key_rotation
    _ORIGINAL["get_key_rotation_status"] = kms_responses.KmsResponse.get_key_rotation_status
    kms_models.KmsBackend.replicate_key = _replicate_key  # type: ignore[method-assign]
    kms_responses.KmsResponse.replicate_key = _replicate_key_response  # type: ignore[method-assign]
    kms_responses.KmsResponse.enable_key_rotation = _enable_key_rotation  # type: ignore[method-assign]
    kms_responses.KmsResponse.get_key_rotation_status = _get_key_rotation_status  # type: ignore[method-assign]
    _applied = True
