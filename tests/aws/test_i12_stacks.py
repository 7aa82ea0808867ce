"""Issue 12, many stacks, against the sandbox: plan and drift of a tree of
three stacks (one broken) side by side, one report with a section per stack
root, the worst exit code, JSON keyed by root, and `plan --changed-since`
planning only the stack a branch changed."""

from __future__ import annotations

import json
import re
import pathlib
import shutil

import boto3
import pytest

from tests.conftest import run
from tests.unit.test_i12_stacks import BROKEN_VAULT, git, key_yaml, sections, stack_yaml


@pytest.fixture()
def tree(tmp_path: pathlib.Path) -> pathlib.Path:
    """stacks/alpha and stacks/beta (one key each), stacks/gamma (a dangling reference)."""
    root = tmp_path / "stacks"
    for name, body in {"alpha": key_yaml("alpha-key"), "beta": key_yaml("beta-key"), "gamma": BROKEN_VAULT}.items():
        (root / name).mkdir(parents=True)
        (root / name / "stack.yaml").write_text(stack_yaml(name))
        (root / name / "main.yaml").write_text(body)
    return root


def key_id(directory: pathlib.Path, name: str) -> str:
    state = json.loads((directory / ".reconciler" / "state.json").read_text())
    return state["resources"][f"KmsProvider/{name}"]["ids"]["keyId"]


def test_plan_of_three_stacks_reports_each_and_exits_with_the_worst(aws, tree):
    result = run("plan", tree, "--detailed-exitcode")
    assert result.exit_code == 1  # gamma's error wins over the others' changes
    assert sections(result.output) == [f"==> {tree / n} <==" for n in ("alpha", "beta", "gamma")]
    alpha, beta, gamma = result.output.split("==> ")[1:]
    assert "+ KmsProvider/alpha-key" in alpha and "Plan: 1 to create," in alpha
    assert "+ KmsProvider/beta-key" in beta and "Plan: 1 to create," in beta
    assert "Error: " in gamma and "Vault/app: provider refers to KmsProvider/missing" in gamma
    assert result.output.rstrip().endswith("3 stacks: 2 with changes, 1 failed.")

    shutil.rmtree(tree / "gamma")
    assert run("plan", tree, "--detailed-exitcode").exit_code == 2
    assert run("plan", tree).exit_code == 0  # changes exit 2 only with --detailed-exitcode


def test_plan_of_a_tree_as_json_is_a_list_keyed_by_root(aws, tree):
    result = run("plan", tree, "--format", "json")
    assert result.exit_code == 1
    listed = json.loads(result.stdout)
    assert [(s["root"], s["name"], s["status"]) for s in listed] == [
        (str(tree / "alpha"), "alpha", "changes"), (str(tree / "beta"), "beta", "changes"),
        (str(tree / "gamma"), "gamma", "error")]
    assert [c["address"] for c in listed[0]["plan"]["changes"]] == ["KmsProvider/alpha-key"]
    assert listed[2]["plan"] is None and "provider refers to KmsProvider/missing" in listed[2]["errors"][0]


def test_drift_of_three_stacks_reports_the_drifted_one_despite_the_broken_one(aws, tree):
    for name in ("alpha", "beta"):
        assert run("apply", tree / name, "--auto-approve").exit_code == 0
    boto3.client("kms", region_name="us-east-1").disable_key(KeyId=key_id(tree / "beta", "beta-key"))

    result = run("drift", tree, "--stack-parallelism", "2")
    assert result.exit_code == 1  # gamma failed; beta's drift is still reported
    alpha, beta, gamma = result.output.split("==> ")[1:]
    assert "No drift." in alpha
    assert "KmsProvider/beta-key" in beta and "1 critical" in beta
    assert "provider refers to KmsProvider/missing" in gamma
    assert result.output.rstrip().endswith("3 stacks: 1 drifted, 1 without drift, 1 failed.")

    shutil.rmtree(tree / "gamma")
    drifted = run("drift", tree, "--format", "json")
    assert drifted.exit_code == 2
    assert [(s["name"], s["status"], s["drift"]["critical"]) for s in json.loads(drifted.stdout)] == [
        ("alpha", "clean", 0), ("beta", "drift", 1)]


def test_plan_changed_since_plans_only_the_stack_a_branch_changed(aws, tree):
    top = tree.parent
    (top / ".gitignore").write_text(".reconciler/\n")
    git(top, "init", "-q", "-b", "main")
    git(top, "add", "-A")
    git(top, "commit", "-q", "-m", "three stacks")
    git(top, "checkout", "-q", "-b", "beta-description")
    (tree / "beta" / "main.yaml").write_text(key_yaml("beta-key") + "  description: the beta key\n")
    git(top, "commit", "-q", "-am", "beta: describe the key")

    result = run("plan", tree, "--changed-since", "main", "--detailed-exitcode")
    assert result.exit_code == 2, result.output  # gamma did not change: not planned, its error not seen
    assert sections(result.output) == [f"==> {tree / 'beta'} <=="]
    assert re.search(r'\+ description +\= "the beta key"', result.output), result.output
    assert result.output.rstrip().endswith("1 stack: 1 with changes.")
