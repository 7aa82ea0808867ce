"""The IAM adapter for the IAM kinds (IamRole, OidcProvider, AccessKeyRotation,
DynamicIamTemplate): every IAM call they make, errors translated
(aws/errors.py). IAM is global: one client, made in ``GLOBAL_REGION``
(aws/factory.py). Policy documents go out as JSON text and come back as
objects (boto3 decodes IAM's URL-encoded documents)."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from typing import Any

from reconciler import errors
from reconciler.aws import adapter

DETAILS_PAGE = 1000  # ListRoles and GetAccountAuthorizationDetails return at most 1,000 items a page
INVALID_PRINCIPAL = "invalid principal"  # how IAM and KMS word a principal they do not know (yet)
MALFORMED = ("MalformedPolicyDocument", "MalformedPolicyDocumentException")


def tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def _document(value: Any) -> dict[str, Any]:
    """A policy document as IAM returns it: an object, or (raw API) URL-encoded JSON text."""
    if isinstance(value, Mapping):
        return dict(value)
    text = str(value)
    try:
        return dict(json.loads(text))
    except ValueError:
        return dict(json.loads(urllib.parse.unquote(text)))


def invalid_principal(exc: errors.ReconcilerError) -> bool:
    """An error saying a policy names a principal AWS does not know: a typo, or
    (right after it was created) an identity IAM has not propagated yet."""
    return (isinstance(exc, errors.AwsError) and exc.code in MALFORMED
            and INVALID_PRINCIPAL in exc.message.lower())


class IamAdapter(adapter.Adapter):
    service = "iam"

    # -- OIDC providers ------------------------------------------------------------
    def oidc_provider(self, arn: str) -> dict[str, Any] | None:
        """Url (without https://), audiences, thumbprints and tags of a provider; None when gone."""
        try:
            found = self._call("GetOpenIDConnectProvider", OpenIDConnectProviderArn=arn)
        except errors.AwsNotFound:
            return None
        return {"url": found.get("Url", ""), "audiences": list(found.get("ClientIDList") or []),
                "thumbprints": list(found.get("ThumbprintList") or []),
                "tags": {t["Key"]: t["Value"] for t in found.get("Tags") or []}}

    def oidc_provider_arns(self) -> list[str]:
        return [str(p["Arn"]) for p in self._call("ListOpenIDConnectProviders").get("OpenIDConnectProviderList", [])]

    def create_oidc_provider(self, url: str, audiences: list[str], thumbprints: list[str] | None,
                             tags: Mapping[str, str]) -> str:
        params: dict[str, Any] = dict(Url=url, ClientIDList=audiences, Tags=tag_list(tags))
        if thumbprints is not None:
            params["ThumbprintList"] = thumbprints
        return str(self._call("CreateOpenIDConnectProvider", **params)["OpenIDConnectProviderArn"])

    def add_audience(self, arn: str, audience: str) -> None:
        self._call("AddClientIDToOpenIDConnectProvider", OpenIDConnectProviderArn=arn, ClientID=audience)

    def remove_audience(self, arn: str, audience: str) -> None:
        self._call("RemoveClientIDFromOpenIDConnectProvider", OpenIDConnectProviderArn=arn, ClientID=audience)

    def set_thumbprints(self, arn: str, thumbprints: list[str]) -> None:
        self._call("UpdateOpenIDConnectProviderThumbprint", OpenIDConnectProviderArn=arn, ThumbprintList=thumbprints)

    def tag_oidc_provider(self, arn: str, tags: Mapping[str, str]) -> None:
        if tags:
            self._call("TagOpenIDConnectProvider", OpenIDConnectProviderArn=arn, Tags=tag_list(tags))

    def untag_oidc_provider(self, arn: str, keys: list[str]) -> None:
        if keys:
            self._call("UntagOpenIDConnectProvider", OpenIDConnectProviderArn=arn, TagKeys=keys)

    def delete_oidc_provider(self, arn: str) -> None:
        try:
            self._call("DeleteOpenIDConnectProvider", OpenIDConnectProviderArn=arn)
        except errors.AwsNotFound:
            return  # already gone: what delete wants

    # -- roles -----------------------------------------------------------------------
    def role(self, name: str) -> dict[str, Any] | None:
        """GetRole's Role (trust policy decoded to an object), or None when there is no such role."""
        try:
            role = dict(self._call("GetRole", RoleName=name)["Role"])
        except errors.AwsNotFound:
            return None
        role["AssumeRolePolicyDocument"] = _document(role.get("AssumeRolePolicyDocument") or "{}")
        return role

    def role_details(self) -> dict[str, dict[str, Any]]:
        """Every role of the account by name, as ``role`` gives one, with its
        inline policies (``RolePolicyList``, documents decoded), attached
        policies and tags: ListRoles (description, session duration) and
        GetAccountAuthorizationDetails for roles (the rest), one page per 1,000
        roles each, instead of three or more calls per role."""
        listed = {str(r["RoleName"]): r for r in self._pages("ListRoles", "Roles", largest_page=DETAILS_PAGE)}
        found = {}
        for detail in self._pages("GetAccountAuthorizationDetails", "RoleDetailList", largest_page=DETAILS_PAGE,
                                  Filter=["Role"]):
            name = str(detail["RoleName"])
            role = {**listed.get(name, {}), **detail}
            role["AssumeRolePolicyDocument"] = _document(detail.get("AssumeRolePolicyDocument") or "{}")
            role["RolePolicyList"] = {str(p["PolicyName"]): _document(p.get("PolicyDocument") or "{}")
                                      for p in detail.get("RolePolicyList") or []}
            found[name] = role
        return found

    def role_tags(self, name: str) -> dict[str, str]:
        return {t["Key"]: t["Value"] for t in self._pages("ListRoleTags", "Tags", RoleName=name)}

    def inline_policies(self, name: str) -> dict[str, dict[str, Any]]:
        """Every inline policy of the role, by name."""
        found = {}
        for policy in self._pages("ListRolePolicies", "PolicyNames", RoleName=name):
            document = self._call("GetRolePolicy", RoleName=name, PolicyName=policy)["PolicyDocument"]
            found[str(policy)] = _document(document)
        return found

    def attached_policies(self, name: str) -> list[str]:
        return sorted(str(p["PolicyArn"]) for p in
                      self._pages("ListAttachedRolePolicies", "AttachedPolicies", RoleName=name))

    def create_role(self, name: str, *, path: str, trust: Mapping[str, Any], description: str,
                    max_session: int, tags: Mapping[str, str]) -> dict[str, Any]:
        return dict(self._call("CreateRole", RoleName=name, Path=path, AssumeRolePolicyDocument=json.dumps(trust),
                               Description=description, MaxSessionDuration=max_session,
                               Tags=tag_list(tags))["Role"])

    def update_role(self, name: str, *, description: str, max_session: int) -> None:
        self._call("UpdateRole", RoleName=name, Description=description, MaxSessionDuration=max_session)

    def set_trust(self, name: str, trust: Mapping[str, Any]) -> None:
        self._call("UpdateAssumeRolePolicy", RoleName=name, PolicyDocument=json.dumps(trust))

    def put_inline_policy(self, name: str, policy: str, document: Mapping[str, Any]) -> None:
        self._call("PutRolePolicy", RoleName=name, PolicyName=policy, PolicyDocument=json.dumps(document))

    def delete_inline_policy(self, name: str, policy: str) -> None:
        try:
            self._call("DeleteRolePolicy", RoleName=name, PolicyName=policy)
        except errors.AwsNotFound:
            return

    def attach(self, name: str, policy_arn: str) -> None:
        self._call("AttachRolePolicy", RoleName=name, PolicyArn=policy_arn)

    def detach(self, name: str, policy_arn: str) -> None:
        try:
            self._call("DetachRolePolicy", RoleName=name, PolicyArn=policy_arn)
        except errors.AwsNotFound:
            return

    def tag_role(self, name: str, tags: Mapping[str, str]) -> None:
        if tags:
            self._call("TagRole", RoleName=name, Tags=tag_list(tags))

    def untag_role(self, name: str, keys: list[str]) -> None:
        if keys:
            self._call("UntagRole", RoleName=name, TagKeys=keys)

    def instance_profiles(self, name: str) -> list[str]:
        return sorted(str(p["InstanceProfileName"]) for p in
                      self._pages("ListInstanceProfilesForRole", "InstanceProfiles", RoleName=name))

    def delete_role(self, name: str) -> None:
        """Detach and delete the role's policies (IAM refuses DeleteRole before),
        then the role. A role someone put in an instance profile is refused
        before anything changes: removing it would break whatever runs with it."""
        if self.role(name) is None:
            return
        profiles = self.instance_profiles(name)
        if profiles:
            raise errors.AwsError(
                f"role {name} is in instance profile(s) {', '.join(profiles)}, added outside reconciler; nothing "
                f"was deleted. Remove it from them first (aws iam remove-role-from-instance-profile "
                f"--role-name {name} --instance-profile-name NAME), then apply again", "DeleteConflict")
        for policy in self.inline_policies(name):
            self.delete_inline_policy(name, policy)
        for arn in self.attached_policies(name):
            self.detach(name, arn)
        try:
            self._call("DeleteRole", RoleName=name)
        except errors.AwsNotFound:
            return

    # -- users and their access keys (AccessKeyRotation) ---------------------------------
    def user(self, name: str) -> dict[str, Any] | None:
        """GetUser's User (UserName, Arn, Path...), or None when there is no such user."""
        try:
            return dict(self._call("GetUser", UserName=name)["User"])
        except errors.AwsNotFound:
            return None

    def access_keys(self, user: str) -> dict[str, str]:
        """Every access key of ``user``: key id -> status (``Active`` / ``Inactive``)."""
        return {str(k["AccessKeyId"]): str(k["Status"])
                for k in self._pages("ListAccessKeys", "AccessKeyMetadata", UserName=user)}

    def create_access_key(self, user: str) -> tuple[str, str]:
        """A new key of ``user``: (key id, secret access key). The secret is
        returned once, here: the caller seals it at once and never logs it."""
        key = self._call("CreateAccessKey", UserName=user)["AccessKey"]
        return str(key["AccessKeyId"]), str(key["SecretAccessKey"])

    def set_access_key_status(self, user: str, key_id: str, status: str) -> None:
        self._call("UpdateAccessKey", UserName=user, AccessKeyId=key_id, Status=status)

    def delete_access_key(self, user: str, key_id: str) -> None:
        try:
            self._call("DeleteAccessKey", UserName=user, AccessKeyId=key_id)
        except errors.AwsNotFound:
            return  # already gone: what delete wants

    # -- users made for leases (DynamicIamTemplate) ----------------------------------------
    def create_user(self, name: str, *, path: str, boundary: str | None, tags: Mapping[str, str]) -> dict[str, Any]:
        params: dict[str, Any] = dict(UserName=name, Path=path, Tags=tag_list(tags))
        if boundary:
            params["PermissionsBoundary"] = boundary
        return dict(self._call("CreateUser", **params)["User"])

    def move_user(self, name: str, path: str) -> None:
        self._call("UpdateUser", UserName=name, NewPath=path)

    def user_details(self) -> dict[str, dict[str, Any]]:
        """Every user of the account by name, with what GetUser, ListUserTags,
        ListGroupsForUser, ListAttachedUserPolicies and ListUserPolicies /
        GetUserPolicy give one by one: Path, Arn, PermissionsBoundary, Tags,
        GroupList (names), AttachedManagedPolicies and ``UserPolicyList`` (inline
        policies by name, documents decoded). GetAccountAuthorizationDetails for
        users: one page per 1,000 users of the account."""
        found = {}
        for detail in self._pages("GetAccountAuthorizationDetails", "UserDetailList", largest_page=DETAILS_PAGE,
                                  Filter=["User"]):
            user = dict(detail)
            user["UserPolicyList"] = {str(p["PolicyName"]): _document(p.get("PolicyDocument") or "{}")
                                      for p in detail.get("UserPolicyList") or []}
            found[str(detail["UserName"])] = user
        return found

    def users(self, path_prefix: str) -> list[dict[str, Any]]:
        return [dict(u) for u in self._pages("ListUsers", "Users", PathPrefix=path_prefix)]

    def user_tags(self, name: str) -> dict[str, str]:
        return {t["Key"]: t["Value"] for t in self._pages("ListUserTags", "Tags", UserName=name)}

    def tag_user(self, name: str, tags: Mapping[str, str]) -> None:
        if tags:
            self._call("TagUser", UserName=name, Tags=tag_list(tags))

    def untag_user(self, name: str, keys: list[str]) -> None:
        if keys:
            self._call("UntagUser", UserName=name, TagKeys=keys)

    def set_user_boundary(self, name: str, boundary: str | None) -> None:
        if boundary:
            self._call("PutUserPermissionsBoundary", UserName=name, PermissionsBoundary=boundary)
            return
        try:
            self._call("DeleteUserPermissionsBoundary", UserName=name)
        except errors.AwsNotFound:
            return

    def user_groups(self, name: str) -> list[str]:
        return sorted(str(g["GroupName"]) for g in self._pages("ListGroupsForUser", "Groups", UserName=name))

    def add_to_group(self, name: str, group: str) -> None:
        self._call("AddUserToGroup", UserName=name, GroupName=group)

    def remove_from_group(self, name: str, group: str) -> None:
        try:
            self._call("RemoveUserFromGroup", UserName=name, GroupName=group)
        except errors.AwsNotFound:
            return

    def user_attached(self, name: str) -> list[str]:
        return sorted(str(p["PolicyArn"]) for p in
                      self._pages("ListAttachedUserPolicies", "AttachedPolicies", UserName=name))

    def attach_user(self, name: str, policy_arn: str) -> None:
        self._call("AttachUserPolicy", UserName=name, PolicyArn=policy_arn)

    def detach_user(self, name: str, policy_arn: str) -> None:
        try:
            self._call("DetachUserPolicy", UserName=name, PolicyArn=policy_arn)
        except errors.AwsNotFound:
            return

    def user_inline(self, name: str) -> dict[str, dict[str, Any]]:
        found = {}
        for policy in self._pages("ListUserPolicies", "PolicyNames", UserName=name):
            document = self._call("GetUserPolicy", UserName=name, PolicyName=policy)["PolicyDocument"]
            found[str(policy)] = _document(document)
        return found

    def put_user_inline(self, name: str, policy: str, document: Mapping[str, Any]) -> None:
        self._call("PutUserPolicy", UserName=name, PolicyName=policy, PolicyDocument=json.dumps(document))

    def delete_user_inline(self, name: str, policy: str) -> None:
        try:
            self._call("DeleteUserPolicy", UserName=name, PolicyName=policy)
        except errors.AwsNotFound:
            return

    def strip_and_delete_user(self, name: str) -> list[str]:
        """Delete ``name`` with everything attached to it, in the order IAM
        requires (DeleteUser refuses with DeleteConflict while any is left):
        access keys, inline and managed policies, group memberships; then, if
        IAM still refuses (someone added more by hand), the login profile, MFA
        devices (deactivated, virtual ones deleted), SSH public keys, signing
        certificates and service-specific credentials. What was removed, for
        the record. A user already gone is done (nothing removed)."""
        removed: list[str] = []
        try:
            keys = self.access_keys(name)
        except errors.AwsNotFound:
            return removed
        for key in keys:
            self.delete_access_key(name, key)
            removed.append(f"access key {key}")
        for policy in self._pages("ListUserPolicies", "PolicyNames", UserName=name):
            self.delete_user_inline(name, str(policy))
        for arn in self.user_attached(name):
            self.detach_user(name, arn)
        for group in self.user_groups(name):
            self.remove_from_group(name, group)
        try:
            self._call("DeleteUser", UserName=name)
            return removed
        except errors.AwsNotFound:
            return removed
        except errors.AwsError as exc:
            if exc.code != "DeleteConflict":
                raise
        removed.extend(self._strip_by_hand(name))
        try:
            self._call("DeleteUser", UserName=name)
        except errors.AwsNotFound:
            pass
        return removed

    def _strip_by_hand(self, name: str) -> list[str]:
        """What reconciler never adds to a lease's user but someone may have."""
        removed: list[str] = []
        try:
            self._call("GetLoginProfile", UserName=name)
        except errors.AwsNotFound:
            pass
        else:
            self._call("DeleteLoginProfile", UserName=name)
            removed.append("login profile")
        for device in self._pages("ListMFADevices", "MFADevices", UserName=name):
            serial = str(device["SerialNumber"])
            self._call("DeactivateMFADevice", UserName=name, SerialNumber=serial)
            if ":mfa/" in serial:  # a virtual device is an IAM object of its own
                try:
                    self._call("DeleteVirtualMFADevice", SerialNumber=serial)
                except errors.AwsNotFound:
                    pass
            removed.append(f"MFA device {serial}")
        for ssh in self._pages("ListSSHPublicKeys", "SSHPublicKeys", UserName=name):
            self._call("DeleteSSHPublicKey", UserName=name, SSHPublicKeyId=ssh["SSHPublicKeyId"])
            removed.append(f"SSH public key {ssh['SSHPublicKeyId']}")
        for cert in self._pages("ListSigningCertificates", "Certificates", UserName=name):
            self._call("DeleteSigningCertificate", UserName=name, CertificateId=cert["CertificateId"])
            removed.append(f"signing certificate {cert['CertificateId']}")
        for credential in self._call("ListServiceSpecificCredentials",
                                     UserName=name).get("ServiceSpecificCredentials", []):
            self._call("DeleteServiceSpecificCredential", UserName=name,
                       ServiceSpecificCredentialId=credential["ServiceSpecificCredentialId"])
            removed.append(f"service credential {credential['ServiceSpecificCredentialId']}")
        return removed

    # -- listing (import, drift --unmanaged) ------------------------------------------------
    def access_key_details(self, user: str) -> list[dict[str, str]]:
        """Every access key of ``user``, oldest first: id, status and creation date (ISO 8601)."""
        keys = self._pages("ListAccessKeys", "AccessKeyMetadata", UserName=user)
        return [{"id": str(k["AccessKeyId"]), "status": str(k["Status"]), "created": k["CreateDate"].isoformat()}
                for k in sorted(keys, key=lambda k: k["CreateDate"])]

    def roles(self, path_prefix: str = "/") -> list[dict[str, Any]]:
        """ListRoles under ``path_prefix`` (RoleName, Path, Arn...; no tags: ``role_tags`` reads them)."""
        return [dict(r) for r in self._pages("ListRoles", "Roles", PathPrefix=path_prefix)]
