"""Issue 12, many stacks, without AWS: a tree of stacks found by their Stack
documents, validated side by side into one report with the worst exit code,
`reconciler stacks` for a CI matrix, and `--changed-since` on a real git
repository (Atlantis's autoplan)."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import textwrap

import pytest

from tests.conftest import EXAMPLES, run

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def stack_yaml(name: str, backend: str = "") -> str:
    return textwrap.dedent(f"""\
        apiVersion: reconciler/v1
        kind: Stack
        metadata: {{name: {name}}}
        spec:
          region: us-east-1
        """) + backend


def key_yaml(name: str) -> str:
    return textwrap.dedent(f"""\
        apiVersion: reconciler/v1
        kind: KmsProvider
        metadata: {{name: {name}}}
        spec:
          spec: SYMMETRIC_DEFAULT
          alias: {name}
        """)


BROKEN_VAULT = textwrap.dedent("""\
    apiVersion: reconciler/v1
    kind: Vault
    metadata: {name: app}
    spec:
      provider: missing
      store: {local: {path: .reconciler/app}}
    """)

S3_BACKEND = "  backend:\n    s3: {bucket: states, key: beta.json}\n"


@pytest.fixture()
def tree(tmp_path: pathlib.Path) -> pathlib.Path:
    """stacks/alpha and stacks/nested/beta (valid), stacks/gamma (a dangling reference)."""
    root = tmp_path / "stacks"
    for where, files in {"alpha": {"stack.yaml": stack_yaml("alpha"), "keys.yaml": key_yaml("a-key")},
                         "nested/beta": {"stack.yaml": stack_yaml("beta", S3_BACKEND),
                                         "keys/key.yaml": key_yaml("b-key")},
                         "gamma": {"stack.yaml": stack_yaml("gamma"), "vault.yaml": BROKEN_VAULT}}.items():
        for name, text in files.items():
            path = root / where / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return root


def sections(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("==> ")]


def test_validate_of_a_tree_reports_every_stack_and_fails_for_the_broken_one(tree):
    result = run("validate", tree)
    assert result.exit_code == 1
    assert sections(result.output) == [f"==> {tree / 'alpha'} <==", f"==> {tree / 'gamma'} <==",
                                       f"==> {tree / 'nested' / 'beta'} <=="]
    alpha, gamma, beta = result.output.split("==> ")[1:]
    assert "Valid: stack alpha, 1 resource(s)." in alpha
    assert "Valid: stack beta, 1 resource(s)." in beta
    assert f"Error: {tree / 'gamma' / 'vault.yaml'}:5:13: Vault/app: provider refers to KmsProvider/missing" in gamma
    assert "1 error found." in gamma
    assert result.output.rstrip().endswith("3 stacks: 2 valid, 1 invalid.")


def test_validate_of_a_tree_of_valid_stacks_exits_0(tree):
    shutil.rmtree(tree / "gamma")
    result = run("validate", tree)
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith("2 stacks: 2 valid.")


def test_a_single_stack_directory_validates_exactly_as_before():
    result = run("validate", EXAMPLES / "quickstart")
    assert result.exit_code == 0
    assert result.output == "Valid: stack quickstart, 4 resource(s).\n"


def test_a_tree_with_one_stack_below_its_top_is_still_one_stack(tmp_path):
    (tmp_path / "infra").mkdir()
    (tmp_path / "infra" / "stack.yaml").write_text(stack_yaml("only"))
    (tmp_path / "keys.yaml").write_text(key_yaml("k"))
    result = run("validate", tmp_path)
    assert result.output == "Valid: stack only, 1 resource(s).\n"


def test_stacks_lists_roots_as_json_for_a_ci_matrix(tree):
    result = run("stacks", tree, "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {"root": str(tree / "alpha"), "name": "alpha", "backend": "local"},
        {"root": str(tree / "gamma"), "name": "gamma", "backend": "local"},
        {"root": str(tree / "nested" / "beta"), "name": "beta", "backend": "s3"}]
    text = run("stacks", tree)
    assert text.stdout.splitlines()[0] == f"{tree / 'alpha'}\talpha\tlocal"


def test_stacks_of_a_tree_without_any_stack_is_an_error(tmp_path):
    (tmp_path / "keys.yaml").write_text(key_yaml("k"))
    result = run("stacks", tmp_path)
    assert result.exit_code == 1
    assert result.output == (f"Error: {tmp_path / 'keys.yaml'}:1:1: not part of any stack: no Stack document in "
                             f"{tmp_path} or a directory above it\n1 error found.\n")
    (tmp_path / "keys.yaml").write_text("services: {web: {image: nginx}}\n")  # YAML, but not ours
    assert run("stacks", tmp_path).output == f"Error: {tmp_path}: no Stack document in this directory tree\n"


def test_a_stack_whose_stack_document_does_not_parse_is_reported_not_dropped(tree):
    (tree / "delta").mkdir()
    (tree / "delta" / "stack.yaml").write_text("apiVersion: reconciler/v1\nkind: Stack\nmetadata: {name: d\n")
    (tree / "compose.yml").write_text("services: {web: {image: nginx}}\n")  # not ours: ignored
    result = run("validate", tree)
    assert result.exit_code == 1
    assert f"==> {tree / 'delta'} <==" in sections(result.output)
    assert f"Error: {tree / 'delta' / 'stack.yaml'}:4:1: invalid YAML" in result.output
    assert "compose.yml" not in result.output
    listed = run("stacks", tree, "--format", "json")
    assert listed.exit_code == 1
    assert [s["name"] for s in json.loads(listed.stdout)] == ["alpha", "gamma", "beta"]
    assert f"Error: {tree / 'delta' / 'stack.yaml'}:4:1: invalid YAML" in listed.stderr


def test_plan_of_a_tree_refuses_out_and_target_before_any_aws_call(tree, tmp_path):
    result = run("plan", tree, "--out", tmp_path / "plan.json")
    assert result.exit_code == 1
    assert result.output == "Error: --out is for one stack; give its directory (without --changed-since)\n"
    assert run("plan", tree, "--target", "KmsProvider/a-key").exit_code == 1


# -- --changed-since on a real git repository ------------------------------------------
def git(cwd: pathlib.Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false",
                    *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture()
def repo(tree):
    """The tree committed on main, then a branch that changes stacks/alpha."""
    top = tree.parent
    git(top, "init", "-q", "-b", "main")
    git(top, "add", "-A")
    git(top, "commit", "-q", "-m", "three stacks")
    git(top, "checkout", "-q", "-b", "change-alpha")
    (tree / "alpha" / "keys.yaml").write_text(key_yaml("a-key").replace("SYMMETRIC_DEFAULT", "RSA_2048"))
    git(top, "commit", "-q", "-am", "alpha: an RSA key")
    return tree


def test_changed_since_selects_only_the_stack_a_branch_changed(repo):
    listed = run("stacks", repo, "--changed-since", "main", "--format", "json")
    assert listed.exit_code == 0, listed.output
    assert [s["name"] for s in json.loads(listed.stdout)] == ["alpha"]
    result = run("validate", repo, "--changed-since", "main")
    assert result.exit_code == 0, result.output  # gamma's error is not looked at: gamma did not change
    assert sections(result.output) == [f"==> {repo / 'alpha'} <=="]
    assert result.output.rstrip().endswith("1 stack: 1 valid.")


def test_changed_since_counts_uncommitted_and_untracked_files(repo):
    (repo / "nested" / "beta" / "keys" / "more.yaml").write_text(key_yaml("b-two"))  # untracked
    listed = run("stacks", repo, "--changed-since", "main", "--format", "json")
    assert [s["name"] for s in json.loads(listed.stdout)] == ["alpha", "beta"]
    git(repo.parent, "checkout", "-q", "main")  # only the untracked file is left
    assert [s["name"] for s in json.loads(run("stacks", repo, "--changed-since", "main", "--format",
                                              "json").stdout)] == ["beta"]
    (repo / "gamma" / "vault.yaml").write_text(BROKEN_VAULT + "# a comment\n")  # unstaged
    assert [s["name"] for s in json.loads(run("stacks", repo, "--changed-since", "main", "--format",
                                              "json").stdout)] == ["gamma", "beta"]


def test_changed_since_with_nothing_changed_says_so(repo):
    result = run("validate", repo, "--changed-since", "HEAD")
    assert result.exit_code == 0
    assert result.output == f"No stack under {repo} has changed since HEAD.\n"
    assert json.loads(run("stacks", repo, "--changed-since", "HEAD", "--format", "json").stdout) == []


def test_changed_since_refuses_an_unknown_ref_and_a_directory_outside_git(repo, tmp_path_factory):
    unknown = run("plan", repo, "--changed-since", "no-such-branch")
    assert unknown.exit_code == 1
    assert unknown.output == (f"Error: --changed-since no-such-branch: unknown revision in the git repository at "
                              f"{repo.parent.resolve()}\n")
    outside = tmp_path_factory.mktemp("outside")
    (outside / "stack.yaml").write_text(stack_yaml("lonely"))
    result = run("stacks", outside, "--changed-since", "main")
    assert result.exit_code == 1
    assert result.output == f"Error: --changed-since: {outside} is not inside a git repository\n"
    option = run("stacks", repo, "--changed-since", "--output=x")  # never handed to git as an option
    assert option.exit_code == 1
    assert option.output == "Error: --changed-since '--output=x': not a git revision\n"


def test_stacks_of_a_tree_whose_only_stack_document_is_broken_says_why(tmp_path):
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "stack.yaml").write_text("apiVersion: reconciler/v1\nkind: Stack\nmetadata: [\n")
    result = run("stacks", tmp_path, "--format", "json")
    assert result.exit_code == 1
    assert result.stdout == "[]\n"
    assert result.stderr.startswith(f"Error: {tmp_path / 'only' / 'stack.yaml'}:4:1: invalid YAML")
