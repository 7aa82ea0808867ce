"""Issue 6 item 2, pure planner: a key that kept secret versions still need
(``versionKeys`` in the Secret's ids, clipped to what its vault keeps) is
never destroyed or replaced; a delete waits for the plan's own re-wraps and
moves, a replace does not (it runs before them). Item 3: a secret moving to
another vault says how many versions move."""

from __future__ import annotations

import pytest

from reconciler import errors, kinds
from reconciler.plan import model, planner
from reconciler.state import model as state_model
from tests.unit.test_core import NOW

OLD = "arn:aws:kms:us-east-1:111122223333:key/old-key"
NEW = "arn:aws:kms:us-east-1:111122223333:key/new-key"
CONNECTION = {"region": "us-east-1"}


def key(name: str, arn: str, **attributes) -> state_model.ResourceState:
    attrs = {"description": "d", "keySpec": "SYMMETRIC_DEFAULT", "protect": False, **attributes}
    return state_model.ResourceState("KmsProvider", name, "managed", {"keyId": arn.rsplit("/")[-1], "arn": arn},
                                     attrs, CONNECTION)


def key_wanted(name: str, **attributes) -> model.Desired:
    attrs = {"description": "d", "keySpec": "SYMMETRIC_DEFAULT", "protect": False, **attributes}
    return model.Desired("KmsProvider", name, "managed", attrs, CONNECTION, replace_on=frozenset({"keySpec"}))


def vault_attrs(provider: str, vault: str = "main", keep: int = 3) -> dict:
    return {"provider": provider, "store": {"local": {"path": f".reconciler/{vault}"}}, "default": vault == "main",
            "keepVersions": keep, "description": ""}


def secret(name: str, version_keys: dict, newest: int, vault: str = "main") -> state_model.ResourceState:
    ids = {"storedDigest": "d", "version": newest, "keyArn": NEW, "versionKeys": version_keys}
    return state_model.ResourceState("Secret", name, "managed", ids,
                                     {"vault": vault, "description": "", "value": "generation:1"}, CONNECTION,
                                     ("Vault/" + vault,))


def secret_wanted(name: str, vault: str = "main") -> model.Desired:
    return model.Desired("Secret", name, "managed", {"vault": vault, "description": "", "value": "generation:1"},
                         CONNECTION, sensitive=frozenset({"value"}), dependencies=("Vault/" + vault,))


def prior_with(*secrets: state_model.ResourceState, vault_provider: str = "new") -> state_model.State:
    state = state_model.State("lin", 1).with_resource(key("old", OLD)).with_resource(key("new", NEW))
    state = state.with_resource(state_model.ResourceState("Vault", "main", "managed", {"keyArn": NEW},
                                                          vault_attrs(vault_provider), CONNECTION, ("KmsProvider/new",)))
    for entry in secrets:
        state = state.with_resource(entry)
    return state


def plan_of(want: list[model.Desired], prior: state_model.State) -> model.Plan:
    return planner.make_plan(plan_id="p", now=NOW, stack="s", directory="/d", manifests_hash="h",
                             desired={d.address: d for d in want}, prior=prior, refreshed={}, adopted={},
                             refresh=True, rules=kinds.RULES)


def vault_wanted(provider: str = "new", vault: str = "main") -> model.Desired:
    return model.Desired("Vault", vault, "managed", vault_attrs(provider, vault), CONNECTION,
                         dependencies=("KmsProvider/" + provider,))


def test_destroying_a_key_that_kept_versions_need_is_refused_with_the_count():
    prior = prior_with(secret("a", {OLD: [1, 4], NEW: [5, 6]}, 6), secret("b", {OLD: [1, 2]}, 2))
    with pytest.raises(errors.PlanError) as refused:
        plan_of([key_wanted("new"), vault_wanted(), secret_wanted("a"), secret_wanted("b")], prior)
    # keepVersions 3: a keeps 4..6 (one under the old key), b keeps 1..2
    assert refused.value.message == (
        "KmsProvider/old: the key still wraps 3 kept secret versions (Secret/a (1), Secret/b (2)); it cannot "
        "be destroyed until they are re-wrapped under another key (apply the vault's provider change first: "
        "it re-wraps every kept version)")


def test_versions_no_longer_kept_do_not_hold_the_key():
    prior = prior_with(secret("a", {OLD: [1, 3], NEW: [4, 6]}, 6))
    plan = plan_of([key_wanted("new"), vault_wanted(), secret_wanted("a")], prior)
    assert [(c.address, c.action.value) for c in plan.actionable] == [("KmsProvider/old", "delete")]


def test_a_replica_arn_counts_as_its_key():
    replica = OLD.replace("us-east-1", "us-west-2")
    prior = prior_with(secret("a", {replica: [1, 1]}, 1))
    with pytest.raises(errors.PlanError) as refused:
        plan_of([key_wanted("new"), vault_wanted(), secret_wanted("a")], prior)
    assert "KmsProvider/old: the key still wraps 1 kept secret version (Secret/a (1))" in refused.value.message


def test_a_delete_waits_for_the_plans_rewrap_but_a_replace_does_not():
    prior = prior_with(secret("a", {OLD: [1, 2]}, 2), vault_provider="old")
    plan = plan_of([key_wanted("new"), vault_wanted("new"), secret_wanted("a")], prior)
    assert [(c.address, c.action.value) for c in plan.actionable] == [
        ("Vault/main", "update"), ("KmsProvider/old", "delete")]  # re-wrap first, then the delete
    with pytest.raises(errors.PlanError) as refused:
        plan_of([key_wanted("old", keySpec="RSA_2048"), key_wanted("new"), vault_wanted("new"),
                 secret_wanted("a")], prior)
    assert refused.value.message.startswith(
        "KmsProvider/old: the key still wraps 2 kept secret versions (Secret/a (2)); it cannot be replaced")


def test_a_secret_moving_vaults_says_how_many_versions_move():
    prior = prior_with(secret("a", {NEW: [1, 5]}, 5))
    prior = prior.with_resource(state_model.ResourceState("Vault", "other", "managed", {"keyArn": NEW},
                                                          vault_attrs("new", "other"), CONNECTION))
    plan = plan_of([key_wanted("old"), key_wanted("new"), vault_wanted(), vault_wanted(vault="other"),
                    secret_wanted("a", vault="other")], prior)
    change = next(c for c in plan.actionable if c.address == "Secret/a")
    assert change.notes == ("move 3 versions from Vault/main to Vault/other (values kept, re-sealed for the "
                            "new vault)",)
