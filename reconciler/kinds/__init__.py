"""One module per kind: desired (pure) -> refresh -> create/update/delete."""

from __future__ import annotations

from reconciler import errors
from reconciler.kinds import access_key_rotation, base, dynamic_iam, iam_role, kms, oidc, secret, vault
from reconciler.plan import rules as plan_rules

HANDLERS: dict[str, base.Handler] = {
    "KmsProvider": kms.KmsProviderHandler(),
    "Vault": vault.VaultHandler(),
    "Secret": secret.SecretHandler(),
    "OidcProvider": oidc.OidcProviderHandler(),
    "IamRole": iam_role.IamRoleHandler(),
    "AccessKeyRotation": access_key_rotation.AccessKeyRotationHandler(),
    "DynamicIamTemplate": dynamic_iam.DynamicIamTemplateHandler(),
}

RULES: dict[str, plan_rules.Rules] = {  # what the planner knows of each kind (pure)
    "KmsProvider": kms.RULES,
    "Vault": vault.RULES,
    "Secret": secret.RULES,
    "OidcProvider": oidc.RULES,
    "IamRole": iam_role.RULES,
    "AccessKeyRotation": access_key_rotation.RULES,
    "DynamicIamTemplate": dynamic_iam.RULES,
}


def handler_for(kind: str) -> base.Handler:
    try:
        return HANDLERS[kind]
    except KeyError:
        raise errors.PlanError(f"kind {kind} is validated but not yet reconciled by this "
                               "version of reconciler") from None
