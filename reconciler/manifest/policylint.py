"""Lint of the policies and grants a stack declares: what would pass IAM's
validation but leave a key open to everyone, unmanageable, or granted an
action it can never perform. Pure: each check yields (message, path inside
spec, severity); ``model._lint`` positions them.

Warnings (errors with ``validate --strict``): an allowed wildcard action
(``*``, ``kms:*``, ``iam:*``) or ``Resource: "*"`` in an inline policy; the
same actions in a key policy, except in the account-root statement (AWS's
own default: it is what keeps the key manageable); ``Principal: "*"``
without a condition. In a key policy ``Resource: "*"`` means "this key"
(the key's ARN does not exist before the key), so it is not flagged there.

Errors always: a custom key policy without the account-root statement (only
AWS support could manage the key again); a grant of an action the key spec
cannot do (data keys from an RSA key, the public key of a symmetric key);
OIDC trust whose subject is only wildcards (any identity of the issuer that
has the audience could assume the role)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping
from typing import Any

from reconciler.plan import policydoc

Path = tuple[str | int, ...]
WILDCARD_ACTIONS = frozenset({"*", "kms:*", "iam:*"})
RSA_SPECS = frozenset({"RSA_2048", "RSA_3072", "RSA_4096"})
SYMMETRIC = "SYMMETRIC_DEFAULT"
_ROOT = re.compile(r"^(arn:aws[a-z-]*:iam::[0-9]{12}:root|[0-9]{12})$")

# what each key spec cannot do: IamRole grant actions and KMS grant operations
RSA_CANNOT = frozenset({"generate-data-key", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext"})
SYMMETRIC_CANNOT = frozenset({"get-public-key", "GetPublicKey"})


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    message: str
    path: Path  # inside spec
    severity: str  # "error" | "warning"


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _principal_is_anyone(principal: Any) -> bool:
    if principal == "*":
        return True
    return isinstance(principal, Mapping) and "*" in _as_list(principal.get("AWS"))


def is_account_root(statement: Any) -> bool:
    """The statement AWS's default key policy starts with: the account's root
    may do everything with the key, unconditionally; without it, IAM policies
    cannot grant use of the key and nobody can change its policy again."""
    if not isinstance(statement, Mapping) or statement.get("Effect") != "Allow" or statement.get("Condition"):
        return False
    principal = statement.get("Principal")
    roots = _as_list(principal.get("AWS")) if isinstance(principal, Mapping) else []
    return (any(isinstance(r, str) and _ROOT.match(r) for r in roots)
            and bool({"*", "kms:*"} & set(_as_list(statement.get("Action"))))
            and "*" in _as_list(statement.get("Resource", "*")))  # a missing Resource is another error


def _statements(document: Mapping[str, Any]) -> Iterator[tuple[Path, Mapping[str, Any]]]:
    raw = document.get("Statement")
    if isinstance(raw, Mapping):
        yield ("Statement",), raw
        return
    for index, statement in enumerate(raw if isinstance(raw, list) else []):
        if isinstance(statement, Mapping):
            yield ("Statement", index), statement


def policy_findings(document: Any, field: str, *, key_policy: bool) -> Iterator[Finding]:
    """Wildcards and open principals in one policy document at ``spec.<field>``."""
    document = policydoc.parse(document)
    if not isinstance(document, Mapping):
        return
    what = "key policy" if key_policy else "inline policy"
    for where, statement in _statements(document):
        if statement.get("Effect") != "Allow":
            continue
        at = (field, *where)
        wild = sorted(WILDCARD_ACTIONS & {a for a in _as_list(statement.get("Action")) if isinstance(a, str)})
        if wild and not (key_policy and is_account_root(statement)):
            yield Finding(f"{what} statement allows {', '.join(wild)}: grant the exact actions needed",
                          (*at, "Action"), "warning")
        if not key_policy and "*" in _as_list(statement.get("Resource")):
            yield Finding(f'{what} statement allows Resource "*": name the exact ARNs',
                          (*at, "Resource"), "warning")
        if _principal_is_anyone(statement.get("Principal")) and not statement.get("Condition"):
            yield Finding(f'{what} statement allows Principal "*" without a Condition: anyone in any '
                          "account; name the principals or add a condition", (*at, "Principal"), "warning")


def key_policy_findings(spec: Mapping[str, Any]) -> Iterator[Finding]:
    """A KmsProvider's own ``policy``: lint, and the account-root statement must be kept."""
    if "policy" not in spec or ("keyId" in spec and not spec.get("manage")):
        return  # a read-only adopted key's policy is refused as ignored (model._adopted_fields)
    yield from policy_findings(spec["policy"], "policy", key_policy=True)
    if not any(is_account_root(s) for _, s in _statements(policydoc.parse(spec["policy"]) or {})):
        yield Finding('the key policy has no account-root statement (Effect Allow, Principal {AWS: '
                      '"arn:aws:iam::<account>:root"}, Action "kms:*", Resource "*", no Condition): without it '
                      "the key becomes unmanageable (only AWS support can restore access); add it",
                      ("policy",), "error")


def cannot(key_spec: str, action: str) -> str | None:
    """Why a key of ``key_spec`` can never perform ``action`` (None: it can)."""
    if key_spec in RSA_SPECS and action in RSA_CANNOT:
        return f"an {key_spec} key cannot generate data keys (RSA keys encrypt and decrypt directly)"
    if key_spec == SYMMETRIC and action in SYMMETRIC_CANNOT:
        return "a SYMMETRIC_DEFAULT key has no public key"
    return None


def key_grant_findings(spec: Mapping[str, Any]) -> Iterator[Finding]:
    """A KmsProvider's KMS ``grants`` naming operations its key spec cannot do."""
    if "keyId" in spec:
        return  # an adopted key's spec is not in the manifest
    key_spec = str(spec.get("spec", SYMMETRIC))
    for i, grant in enumerate(spec.get("grants") or []):
        for j, operation in enumerate(grant.get("operations") or []):
            why = cannot(key_spec, operation)
            if why:
                yield Finding(f"grant {grant.get('name')} gives {operation}, but {why}",
                              ("grants", i, "operations", j), "error")


def role_grant_findings(spec: Mapping[str, Any], keys: Mapping[str, Mapping[str, Any]]) -> Iterator[Finding]:
    """An IamRole's ``grants`` naming actions the granted key's spec cannot do
    (``keys``: KmsProvider specs by name; an adopted key's spec is unknown)."""
    for i, grant in enumerate(spec.get("grants") or []):
        key = keys.get(str(grant.get("provider")))
        if key is None or "keyId" in key:
            continue
        key_spec = str(key.get("spec", SYMMETRIC))
        for j, action in enumerate(grant.get("actions") or []):
            why = cannot(key_spec, action)
            if why:
                yield Finding(f"grants {action} on KmsProvider/{grant['provider']}, but {why}",
                              ("grants", i, "actions", j), "error")


def trust_findings(spec: Mapping[str, Any]) -> Iterator[Finding]:
    """OIDC trust must pin the subject, not only the audience."""
    oidc = (spec.get("trust") or {}).get("oidc") or {}
    subject = oidc.get("subject")
    if isinstance(subject, str) and not subject.strip("*?"):
        yield Finding(f"OIDC trust with subject {subject!r} checks only the audience: any identity the issuer "
                      "signs for that audience could assume the role; give the exact subject (or a pattern "
                      "that pins the organisation)", ("trust", "oidc", "subject"), "error")
