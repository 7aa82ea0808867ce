"""Issue 7 item 6: kinds own their rules. The planner knows no kind by name
and imports nothing from kinds/; each kind hands in its notes, refusals,
per-attribute drift severity and IAM permissions; handlers implement only
the capabilities they have, checked before any write."""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

from reconciler import apply, errors, kinds
from reconciler.kinds import base
from reconciler.plan import actions, model, planner
from reconciler.plan import rules as plan_rules
from reconciler.state import model as state_model
from tests.unit.test_core import NOW, desired, entry

PLAN = pathlib.Path(__file__).resolve().parents[2] / "reconciler" / "plan"
Action = actions.Action


def plan_with(rules, want, prior, live=None):
    return planner.make_plan(plan_id="p", now=NOW, stack="s", directory="/d", manifests_hash="h",
                             desired={d.address: d for d in want}, prior=prior, refreshed=live or {},
                             adopted={}, refresh=True, rules=rules)


def test_the_planner_names_no_kind_and_plan_imports_no_kind():
    assert not re.search(r"KmsProvider|Vault|Secret", (PLAN / "planner.py").read_text())
    for path in PLAN.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("reconciler.kinds"), path


def test_a_kind_without_rules_gets_no_kind_notes_and_kms_rules_add_them():
    prior = state_model.State("l", 1).with_resource(entry("a", protect=False, deletionWindowDays=9))
    bare = plan_with({}, [], prior).actionable[0]
    assert bare.action is Action.DELETE and bare.notes == ()
    noted = plan_with(kinds.RULES, [], prior).actionable[0]
    assert noted.notes == ("the key is scheduled for deletion in 9 days, never deleted outright; cancel with "
                           "`aws kms cancel-key-deletion` within the window",)


class Gadgets(plan_rules.Rules):
    noun = "gadget"
    replace_order = Action.DELETE_THEN_CREATE
    offers_protect = True
    protected_replace_hint = "make a new gadget"

    def review(self, change, context):
        if change.action is Action.DELETE_THEN_CREATE:
            return plan_rules.Review(("old gadget goes first",), (f"{change.address}: no gadgets today",))
        return plan_rules.Review(("reviewed",))


def test_replace_order_wording_and_refusals_come_from_the_kind():
    prior = state_model.State("l", 1).with_resource(entry("a", protect=False))
    live = {"KmsProvider/a": planner.Refreshed(dict(entry("a", protect=False).attributes))}
    rules = {"KmsProvider": Gadgets()}
    with pytest.raises(errors.PlanError, match=r"^KmsProvider/a: no gadgets today$"):
        plan_with(rules, [desired("a", keySpec="RSA_2048", protect=False)], prior, live)
    protected = state_model.State("l", 1).with_resource(entry("a"))
    live = {"KmsProvider/a": planner.Refreshed(dict(entry("a").attributes))}
    with pytest.raises(errors.PlanError, match=r"changing keySpec replaces the gadget, and the gadget is protected "
                                               r"\(protect: true\); make a new gadget"):
        plan_with(rules, [desired("a", keySpec="RSA_2048")], protected, live)
    kms = plan_with(kinds.RULES, [desired("a", keySpec="RSA_2048", protect=False)],
                    state_model.State("l", 1).with_resource(entry("a", protect=False)),
                    {"KmsProvider/a": planner.Refreshed(dict(entry("a", protect=False).attributes))})
    assert kms.actionable[0].action is Action.CREATE_THEN_DELETE


def test_a_review_sees_the_whole_plan_and_notes_every_change():
    plan = plan_with({"KmsProvider": Gadgets()}, [desired("a"), desired("b")], state_model.State())
    assert [c.notes for c in plan.changes] == [("reviewed",), ("reviewed",)]


def test_drift_severity_is_per_attribute():
    kms = kinds.RULES["KmsProvider"]
    assert kms.severity("keyState", "Enabled", "Disabled") is plan_rules.Severity.CRITICAL
    assert kms.severity("replicas.eu-west-1.keyState", "Enabled", "PendingDeletion") is plan_rules.Severity.CRITICAL
    assert kms.severity("description", "a", "b") is plan_rules.Severity.WARNING
    assert plan_rules.worst([plan_rules.Severity.INFO, plan_rules.Severity.CRITICAL,
                             plan_rules.Severity.WARNING]) is plan_rules.Severity.CRITICAL
    prior = state_model.State("l", 1).with_resource(entry("a", keyState="Enabled"))
    live = {"KmsProvider/a": planner.Refreshed({**entry("a").attributes, "keyState": "Disabled"})}
    assert planner.detect_drift(prior, live, rules={})[0].severity == "warning"  # no rules: nothing critical
    assert planner.detect_drift(prior, live, rules=kinds.RULES)[0].severity == "critical"


def test_an_unreadable_secret_is_one_critical_item_by_the_secret_rules():
    arn = "arn:aws:kms:us-east-1:111122223333:key/k"
    key = state_model.ResourceState("KmsProvider", "k", "managed", {"keyId": "k", "arn": arn}, {"keyState": "Enabled"}, {})
    vault = state_model.ResourceState("Vault", "v", "managed", {}, {"provider": "k"}, {})
    secret = state_model.ResourceState("Secret", "s", "managed", {"keyArn": arn, "storedDigest": "d"},
                                       {"vault": "v", "value": "generation:1"}, {})
    prior = state_model.State("l", 1, {e.address: e for e in (key, vault, secret)})
    live = {"KmsProvider/k": planner.Refreshed({"keyState": "PendingDeletion"}),
            "Secret/s": planner.Refreshed(dict(secret.attributes), dict(secret.ids))}
    items = {i.address: i for i in planner.detect_drift(prior, live, rules=kinds.RULES)}
    assert items["Secret/s"].severity == "critical" and "is PendingDeletion; cancel the deletion" in items["Secret/s"].note
    assert "Secret/s" not in {i.address for i in planner.detect_drift(prior, live, rules={})}


def test_permissions_name_exact_arns_where_known():
    kms = kinds.RULES["KmsProvider"]
    new = desired("a", alias="alias/team/a")
    first = {p.resources: p for p in kms.permissions(new, {new.address: new}, state_model.State())}
    create = first[("*",)]  # ListAliases / ListKeys and CreateKey: AWS offers no ARN for them
    assert {a for p in kms.permissions(new, {new.address: new}, state_model.State())
            if p.resources == ("*",) for a in p.actions} == {"kms:CreateKey", "kms:ListAliases", "kms:ListKeys",
                                                             "kms:TagResource",  # the Tags of CreateKey
                                                             "tag:GetResources"}  # finding it by its tags
    (key,) = [p for p in kms.permissions(new, {new.address: new}, state_model.State())
              if p.conditions == (("StringEquals", "aws:ResourceTag/reconciler:address", ("KmsProvider/a",)),)]
    assert key.resources == ("arn:aws:kms:us-east-1:*:key/*",)
    assert "kms:ScheduleKeyDeletion" not in key.actions  # protected: never scheduled for deletion
    assert first[("arn:aws:kms:us-east-1:*:alias/team/a",)].actions == (
        "kms:CreateAlias", "kms:DeleteAlias", "kms:UpdateAlias")
    assert create.note
    arn = "arn:aws:kms:us-east-1:111122223333:key/a"
    recorded = state_model.State().with_resource(
        state_model.ResourceState("KmsProvider", "a", "managed", {"keyId": "a", "arn": arn}, {}, {}))
    later = kms.permissions(new, {new.address: new}, recorded)
    assert "kms:CreateKey" not in {a for p in later for a in p.actions}
    assert [p.conditions for p in later if p.resources == (arn,)] == [()]
    read = model.Desired("KmsProvider", "a", "read", {}, {"region": "us-east-1"}, lookup={"keyId": "a"})
    only = [p for p in kms.permissions(read, {}, recorded) if p.resources == (arn,)]
    assert len(only) == 1 and not any(a.startswith(("kms:Put", "kms:Schedule")) for a in only[0].actions)


def test_vault_and_secret_permissions_are_the_store_and_the_key():
    vault = model.Desired("Vault", "v", "managed", {"provider": "a", "store": {"s3": {"bucket": "b", "prefix": "p/"}}},
                          {"region": "eu-west-1"})
    secret = model.Desired("Secret", "s", "managed", {"vault": "v"}, {"region": "eu-west-1"})
    stack = {vault.address: vault, secret.address: secret}
    found = kinds.RULES["Vault"].permissions(vault, stack, state_model.State())
    assert sorted({p.resources for p in found}) == [("arn:aws:kms:eu-west-1:*:key/*",), ("arn:aws:s3:::b",),
                                                    ("arn:aws:s3:::b/p/*",)]
    assert kinds.RULES["Secret"].permissions(secret, stack, state_model.State()) == found
    ssm = model.Desired("Vault", "v", "managed", {"provider": "a", "store": {"ssm": {"path": "/team/"}}},
                        {"region": "eu-west-1"})
    assert [p.to_json()["resources"] for p in kinds.RULES["Vault"].permissions(ssm, stack, state_model.State())
            if p.actions[0].startswith("ssm:")] == [["*"], ["arn:aws:ssm:eu-west-1:*:parameter/team/*"]]  # DescribeParameters


def test_handlers_implement_only_what_they_can_and_the_executor_says_so_up_front():
    vault, secret, key = (kinds.HANDLERS[k] for k in ("Vault", "Secret", "KmsProvider"))
    for handler in (vault, secret):
        assert not isinstance(handler, base.Replaces)
        assert isinstance(handler, base.Creates) and isinstance(handler, base.Updates)
    assert not isinstance(vault, base.Adopts) and not isinstance(vault, base.FindsOwned)  # nothing in AWS
    # a secret state lacks is read in when its vault holds an entry bound to it (never adopted by id)
    assert isinstance(secret, base.Adopts) and isinstance(secret, base.FindsOwned)
    assert isinstance(key, base.FindsOwned)
    assert isinstance(key, base.Adopts) and isinstance(key, base.Replaces)
    assert base.missing(vault, Action.READ) == "a Vault cannot be adopted or read (read)"
    assert base.missing(key, Action.CREATE_THEN_DELETE) is None
    assert base.missing(key, Action.ROTATE) == "a KmsProvider cannot be rotated or revoked (rotate)"
    change = model.ResourceChange("Vault/v", "Vault", "v", Action.READ, "read", None, {})
    plan = model.Plan("p", "t", "s", "/d", "h", None, 0, True, (), (change,), (), {})
    with pytest.raises(errors.PlanError, match=r"^Vault/v: a Vault cannot be adopted or read \(read\)$"):
        apply.check_preconditions(plan, allow_destroy=True)


def test_timed_rules_refuse_an_action_that_is_not_timed():
    with pytest.raises(ValueError, match="not a timed action"):
        plan_rules.Timed(Action.UPDATE, "why")


def test_the_stack_permissions_are_collected_and_merged():
    vault = model.Desired("Vault", "v", "managed", {"provider": "a", "store": {"local": {"path": "x"}}},
                          {"region": "us-east-1"})
    secret = model.Desired("Secret", "s", "managed", {"vault": "v"}, {"region": "us-east-1"})
    key = desired("a")
    stack = {d.address: d for d in (vault, secret, key)}
    found = plan_rules.permissions_of(stack, state_model.State(), kinds.RULES)
    assert {r for p in found for r in p.resources} == {"*", "arn:aws:kms:us-east-1:*:key/*"}  # local store: no AWS
    keys = [p for p in found if p.resources == ("arn:aws:kms:us-east-1:*:key/*",)
            and p.conditions == (("StringEquals", "aws:ResourceTag/reconciler:address", ("KmsProvider/a",)),)]
    (merged,) = keys  # the key's own calls and the vault's DescribeKey, one entry
    assert {"kms:DescribeKey", "kms:EnableKey"} <= set(merged.actions)
    assert list(merged.actions) == sorted(set(merged.actions))
    assert plan_rules.permissions_of(stack, state_model.State(), {}) == ()
