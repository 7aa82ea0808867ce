"""IAM policy documents (key policies, trust policies, inline policies),
compared by meaning rather than by text. Pure.

AWS hands back a document it was given in another shape than it was given:
it rewrites a bare account id principal to ``arn:aws:iam::<id>:root``,
reorders principals and condition keys, and IAM returns documents as
(URL-decoded) JSON strings. Terraform users know the result as a diff that
never goes away (terraform-provider-aws #402, #720, #30870). ``normalize``
maps every spelling of one meaning to one value, so two documents that
grant the same are ``equal``; ``changes`` says which statement was added,
removed or changed, as ``AttributeChange`` values the plan already shows.

Normalised: key order; a single value vs a one-element list; statement order
(and a statement written twice); an empty ``Sid`` vs none; a JSON string vs
the object; a principal account id vs its root ARN; condition operator and
key order, condition keys' case (IAM matches them case-insensitively), and
condition values written as numbers or booleans vs strings. A missing
``Version`` is ``2008-10-17``, as IAM reads it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.plan import diff

DEFAULT_VERSION = "2008-10-17"  # what IAM assumes when a document has no Version
_ACCOUNT = re.compile(r"^[0-9]{12}$")
_LISTS = ("Action", "NotAction", "Resource", "NotResource")
_PRINCIPALS = ("Principal", "NotPrincipal")


def parse(document: Any) -> Any:
    """A document given as a JSON string is the object it spells; anything else as is."""
    if isinstance(document, str):
        try:
            return json.loads(document)
        except ValueError:
            return document
    return document


def is_document(value: Any) -> bool:
    """Whether ``value`` is a policy document (an object, or its JSON text, with a ``Statement``)."""
    if isinstance(value, str) and not value.lstrip().startswith("{"):
        return False  # not JSON text of an object: no need to try parsing it
    parsed = parse(value)
    return isinstance(parsed, Mapping) and "Statement" in parsed


def _strings(value: Any) -> list[str]:
    """A single value or a list, as a sorted list of unique strings."""
    items = value if isinstance(value, list) else [value]
    return sorted({_scalar(v) for v in items})


def _scalar(value: Any) -> str:
    """Condition values and ids as IAM reads them: ``true`` and ``"true"`` alike."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def root_arn(account: str) -> str:
    return f"arn:aws:iam::{account}:root"


def _principal_value(kind: str, value: str) -> str:
    """AWS stores a bare account id given as an ``AWS`` principal as that account's root ARN."""
    return root_arn(value) if kind == "AWS" and _ACCOUNT.match(value) else value


def _principal(value: Any) -> Any:
    if not isinstance(value, Mapping):
        return _scalar(value)  # "*"
    return {kind: sorted({_principal_value(kind, v) for v in _strings(ids)})
            for kind, ids in sorted(value.items())}


def _condition(value: Any) -> Any:
    if not isinstance(value, Mapping):
        return value
    return {operator: ({key.lower(): _strings(values) for key, values in sorted(keys.items())}
                       if isinstance(keys, Mapping) else keys)
            for operator, keys in sorted(value.items()) if keys != {}}


def normalize_statement(statement: Any) -> Any:
    """One statement in its one canonical shape (not a statement: as given)."""
    if not isinstance(statement, Mapping):
        return statement
    out: dict[str, Any] = {}
    for field, value in statement.items():
        if field == "Sid":
            if value:
                out["Sid"] = value
        elif field in _LISTS:
            out[field] = _strings(value)
        elif field in _PRINCIPALS:
            out[field] = _principal(value)
        elif field == "Condition":
            if value:
                out["Condition"] = _condition(value)
        else:
            out[field] = value
    return dict(sorted(out.items()))


def statements(document: Any) -> list[Any]:
    """The statements of a document, a single statement object read as a list of one."""
    parsed = parse(document)
    found = parsed.get("Statement", []) if isinstance(parsed, Mapping) else []
    return list(found) if isinstance(found, list) else [found]


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def normalize(document: Any) -> Any:
    """The document in one canonical shape: equal documents normalise equal."""
    parsed = parse(document)
    if not isinstance(parsed, Mapping):
        return parsed
    out = {k: v for k, v in parsed.items() if k != "Statement"}
    out["Version"] = parsed.get("Version") or DEFAULT_VERSION
    unique = {_key(s): s for s in map(normalize_statement, statements(parsed))}
    out["Statement"] = [unique[k] for k in sorted(unique)]
    return dict(sorted(out.items()))


def equal(a: Any, b: Any) -> bool:
    """Whether two documents (objects or JSON strings) mean the same."""
    return _key(normalize(a)) == _key(normalize(b))


def _sid(statement: Any) -> str | None:
    sid = statement.get("Sid") if isinstance(statement, Mapping) else None
    return sid if isinstance(sid, str) and sid else None


def _statement_path(path: str, statement: Any, index: int) -> str:
    sid = _sid(statement)
    return f"{path}.Statement[Sid={sid}]" if sid else f"{path}.Statement[{index}]"


def _field_changes(where: str, before: Mapping[str, Any], after: Mapping[str, Any],
                   sensitive: bool) -> list[diff.AttributeChange]:
    """A statement matched on both sides, field by field (values as written);
    a field holding a mapping (Principal, Condition) down to the key that
    changed, so a plan shows ``Principal.AWS``, not the whole principal."""
    old_norm, new_norm = normalize_statement(before), normalize_statement(after)
    return _nested(where, before, after, old_norm, new_norm, sensitive)


def _get(normalized: Mapping[str, Any], key: Any) -> Any:
    """A normalised value by the key as written (condition keys are compared case-blind)."""
    if key in normalized:
        return normalized[key]
    return normalized.get(key.lower()) if isinstance(key, str) else None


def _nested(where: str, before: Mapping[str, Any], after: Mapping[str, Any], old_norm: Any, new_norm: Any,
            sensitive: bool) -> list[diff.AttributeChange]:
    out: list[diff.AttributeChange] = []
    old_norm = old_norm if isinstance(old_norm, Mapping) else {}
    new_norm = new_norm if isinstance(new_norm, Mapping) else {}
    for field in sorted(set(before) | set(after), key=str):
        old, new = _get(old_norm, field), _get(new_norm, field)
        if _key(old) == _key(new):
            continue
        at = f"{where}.{field}"
        if field in before and field in after and isinstance(before[field], Mapping) \
                and isinstance(after[field], Mapping) and old is not None and new is not None:
            out.extend(_nested(at, before[field], after[field], old, new, sensitive))
        elif field not in before or old is None:
            out.append(diff.AttributeChange(at, diff.MISSING, after[field], sensitive, diff.DiffOperation.ADD))
        elif field not in after or new is None:
            out.append(diff.AttributeChange(at, before[field], diff.MISSING, sensitive, diff.DiffOperation.REMOVE))
        else:
            out.append(diff.AttributeChange(at, before[field], after[field], sensitive, diff.DiffOperation.CHANGE))
    return out


def _unmatched(items: Sequence[tuple[int, Any]], others: Sequence[tuple[int, Any]]) -> list[tuple[int, Any]]:
    """Statements of ``items`` with no equal statement among ``others`` (a multiset match)."""
    left: dict[str, int] = {}
    for _, statement in others:
        k = _key(normalize_statement(statement))
        left[k] = left.get(k, 0) + 1
    out = []
    for index, statement in items:
        k = _key(normalize_statement(statement))
        if left.get(k):
            left[k] -= 1
        else:
            out.append((index, statement))
    return out


def changes(path: str, before: Any, after: Any, *, sensitive: bool = False) -> list[diff.AttributeChange]:
    """What changed from ``before`` to ``after``, statement by statement: a
    statement named by the same ``Sid`` on both sides shows the fields that
    changed (``policy.Statement[Sid=Use].Action``); any other statement is
    matched by meaning, and one without a match is added or removed whole
    (``policy.Statement[Sid=X]`` or, without a Sid, its position on its side),
    except one Sid-less statement edited in place, shown field by field.
    Values are shown as written. Empty when the documents are ``equal``."""
    if equal(before, after):
        return []
    old_doc, new_doc = parse(before), parse(after)
    out: list[diff.AttributeChange] = []
    for field in sorted((set(old_doc) | set(new_doc)) - {"Statement"}):
        old, new = old_doc.get(field), new_doc.get(field)
        if field == "Version":
            old, new = old or DEFAULT_VERSION, new or DEFAULT_VERSION
        if _key(old) != _key(new):
            out.append(diff.AttributeChange(f"{path}.{field}", old_doc.get(field), new_doc.get(field), sensitive,
                                            diff.DiffOperation.CHANGE if field in old_doc and field in new_doc
                                            else diff.DiffOperation.ADD if field in new_doc
                                            else diff.DiffOperation.REMOVE))
    old_list, new_list = list(enumerate(statements(old_doc))), list(enumerate(statements(new_doc)))
    new_by_sid = {_sid(s): (i, s) for i, s in new_list if _sid(s)}
    pairs = {i: new_by_sid[_sid(s)] for i, s in old_list
             if _sid(s) in new_by_sid and isinstance(s, Mapping)}  # old index -> (new index, statement)
    paired = {i for i, _ in pairs.values()}
    rest_old = [(i, s) for i, s in old_list if i not in pairs]
    rest_new = [(i, s) for i, s in new_list if i not in paired]
    gone, came = _unmatched(rest_old, rest_new), _unmatched(rest_new, rest_old)
    if len(gone) == 1 and len(came) == 1 and all(isinstance(s, Mapping) and not _sid(s) for _, s in gone + came):
        # one statement edited in place (no Sid to match by): show the fields that changed
        (index, statement), (_, edited) = gone[0], came[0]
        out.extend(_field_changes(f"{path}.Statement[{index}]", statement, edited, sensitive))
        gone, came = [], []
    removed = {i for i, _ in gone}
    for index, statement in old_list:  # in the old document's order, then what is new
        if index in pairs:
            out.extend(_field_changes(f"{path}.Statement[Sid={_sid(statement)}]", statement,
                                      pairs[index][1], sensitive))
        elif index in removed:
            out.append(diff.AttributeChange(_statement_path(path, statement, index), statement, diff.MISSING,
                                            sensitive, diff.DiffOperation.REMOVE))
    for index, statement in came:
        out.append(diff.AttributeChange(_statement_path(path, statement, index), diff.MISSING, statement,
                                        sensitive, diff.DiffOperation.ADD))
    return out


# -- grants: the actions a manifest names, as IAM actions ------------------------------
GRANT_ACTIONS: Mapping[str, tuple[str, ...]] = {
    "encrypt": ("kms:Encrypt",),
    "decrypt": ("kms:Decrypt",),
    "describe": ("kms:DescribeKey",),
    "generate-data-key": ("kms:GenerateDataKey",),
    "get-public-key": ("kms:GetPublicKey",),
    "re-encrypt": ("kms:ReEncryptFrom", "kms:ReEncryptTo"),
}


def grant_actions(actions: Sequence[str]) -> list[str]:
    """The IAM actions of an IamRole grant's ``actions`` (``encrypt`` -> ``kms:Encrypt``), sorted."""
    return sorted({iam for action in actions for iam in GRANT_ACTIONS[action]})


def grant_statement(actions: Sequence[str], resources: Sequence[str], *, sid: str | None = None) -> dict[str, Any]:
    """One Allow statement for a grant: its actions on exactly ``resources``
    (a key's ARN and each replica's), never ``*``."""
    statement: dict[str, Any] = {"Effect": "Allow", "Action": grant_actions(actions),
                                 "Resource": sorted(set(resources))}
    return {"Sid": sid, **statement} if sid else statement


# -- containment: is one policy no wider than another ------------------------------------
def _matches(pattern: str, value: str, *, fold: bool) -> bool:
    """IAM wildcard matching (``*``, ``?``); a wildcard in ``value`` only
    matches the same wildcard (``key/*`` is not within ``key/abc``)."""
    if fold:
        pattern, value = pattern.lower(), value.lower()
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.DOTALL) is not None


def _conditions_within(narrow: Mapping[str, Any], wide: Mapping[str, Any]) -> bool:
    """Every condition the wide statement sets, the narrow one sets identically (or more strictly)."""
    narrow_c, wide_c = _condition(narrow.get("Condition") or {}), _condition(wide.get("Condition") or {})
    return all(narrow_c.get(op, {}).get(key) == values
               for op, keys in wide_c.items() for key, values in keys.items())


def _allowed_by(action: str, resource: str, statement: Mapping[str, Any], wide: Mapping[str, Any]) -> bool:
    return (wide.get("Effect") == "Allow" and "Action" in wide and "Resource" in wide
            and any(_matches(p, action, fold=True) for p in _strings(wide["Action"]))
            and any(_matches(p, resource, fold=False) for p in _strings(wide["Resource"]))
            and _conditions_within(statement, wide))


def within(narrow: Any, wide: Any) -> bool:
    """Whether every action on every resource ``narrow`` allows, ``wide`` allows
    too (under no more conditions). Conservative: a narrow statement written with
    NotAction / NotResource / NotPrincipal is never within; ``wide``'s Deny
    statements are not taken into account (they could only make it narrower)."""
    wide_statements = [s for s in statements(wide) if isinstance(s, Mapping)]
    for statement in statements(narrow):
        if not isinstance(statement, Mapping) or statement.get("Effect") != "Allow":
            continue
        if any(field in statement for field in ("NotAction", "NotResource", "NotPrincipal")):
            return False
        for action in _strings(statement.get("Action", [])):
            for resource in _strings(statement.get("Resource", [])):
                if not any(_allowed_by(action, resource, statement, w) for w in wide_statements):
                    return False
    return True
