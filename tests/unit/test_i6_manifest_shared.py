"""Issue 6, items 1b and 4: two KmsProviders may not declare one alias in one
region (replica regions included), and two Vaults may not share a store
location (the same place, or one inside the other). Both are validation
errors reported at every declaration involved, before any AWS call."""

from __future__ import annotations

import pytest

from tests.conftest import run

STACK = "apiVersion: reconciler/v1\nkind: Stack\nmetadata: {name: test}\nspec: {region: us-east-1}\n"
ALIAS_RULE = ("two keys cannot share an alias in a region (each apply would move it to the other): "
              "pick another alias")
STORE_RULE = ("two vaults cannot share a store location: moving a secret between them would overwrite "
              "and then delete its entry")


def key(name: str, body: str) -> str:
    return f"apiVersion: reconciler/v1\nkind: KmsProvider\nmetadata: {{name: {name}}}\nspec:\n{body}"


def vault(name: str, store: str) -> str:
    return (f"apiVersion: reconciler/v1\nkind: Vault\nmetadata: {{name: {name}}}\n"
            f"spec:\n  provider: k\n  store: {store}\n")


def check(tmp_path, documents: list[str]):
    directory = tmp_path / "stack"
    directory.mkdir()
    (directory / "stack.yaml").write_text(STACK)
    (directory / "all.yaml").write_text("---\n".join(documents))
    result = run("validate", directory)
    assert "Traceback" not in result.output
    return directory / "all.yaml", result


def errors_of(result) -> list[str]:
    return [line.removeprefix("Error: ") for line in result.output.splitlines() if line.startswith("Error:")]


# -- 1b: aliases -------------------------------------------------------------------
def test_the_same_alias_in_one_region_is_an_error_at_both(tmp_path):
    path, result = check(tmp_path, [key("a", "  alias: team/x\n"), key("b", "  alias: alias/team/x\n")])
    assert result.exit_code == 1
    assert errors_of(result) == [
        f"{path}:5:10: KmsProvider/a: alias alias/team/x is also declared by KmsProvider/b (at {path}:11:10) "
        f"in us-east-1; {ALIAS_RULE}",
        f"{path}:11:10: KmsProvider/b: alias alias/team/x is also declared by KmsProvider/a (at {path}:5:10) "
        f"in us-east-1; {ALIAS_RULE}"]
    plan = run("plan", path.parent)  # refused the same way, before any AWS call
    assert plan.exit_code == 1 and f"{path}:5:10: KmsProvider/a: alias alias/team/x" in plan.output


def test_a_replica_region_collides_with_another_keys_region(tmp_path):
    path, result = check(tmp_path, [
        key("a", "  alias: team/x\n  multiRegion: true\n  replicaRegions: [us-west-2]\n"),
        key("b", "  alias: team/x\n  region: us-west-2\n")])
    assert errors_of(result) == [
        f"{path}:5:10: KmsProvider/a: alias alias/team/x is also declared by KmsProvider/b (at {path}:13:10) "
        f"in us-west-2 (a replica region of this key); {ALIAS_RULE}",
        f"{path}:13:10: KmsProvider/b: alias alias/team/x is also declared by KmsProvider/a (at {path}:5:10) "
        f"in us-west-2; {ALIAS_RULE}"]


def test_an_adopted_managed_key_counts_too(tmp_path):
    path, result = check(tmp_path, [key("a", "  alias: team/x\n"),
                                    key("b", "  keyId: alias/old\n  manage: true\n  alias: team/x\n")])
    assert [e.split(": ", 3)[:2] for e in errors_of(result)] == [
        [f"{path}:5:10", "KmsProvider/a"], [f"{path}:13:10", "KmsProvider/b"]]


@pytest.mark.parametrize("documents", [
    [key("a", "  alias: team/x\n"), key("b", "  alias: team/x\n  region: us-west-2\n")],
    [key("a", "  alias: team/x\n"), key("b", "  alias: team/y\n")],
    [key("a", "  alias: team/x\n  multiRegion: true\n  replicaRegions: [us-west-2, eu-west-1]\n")],
    [key("a", "  alias: team/x\n  multiRegion: true\n  replicaRegions: [us-west-2]\n"),
     key("b", "  alias: team/x\n  region: eu-west-1\n")],
], ids=["other-region", "other-alias", "one-key-with-replicas", "replica-elsewhere"])
def test_distinct_aliases_validate(tmp_path, documents):
    _path, result = check(tmp_path, documents)
    assert result.exit_code == 0, result.output


# -- 4: vault stores ---------------------------------------------------------------------
KEY = key("k", "  alias: team/k\n")


@pytest.mark.parametrize("first,second,shown", [
    ("{local: {path: vaults/a/}}", "{local: {path: ./vaults/a/b/}}", ("local path vaults/a/", "local path ./vaults/a/b/")),
    ("{local: {path: vaults/a}}", "{local: {path: other/../vaults/a}}", ("local path vaults/a", "local path other/../vaults/a")),
    ("{ssm: {path: /team}}", "{ssm: {path: /team/app}}", ("SSM path /team in us-east-1", "SSM path /team/app in us-east-1")),
    ("{ssm: {path: /}}", "{ssm: {path: /team, region: us-east-1}}", ("SSM path / in us-east-1", "SSM path /team in us-east-1")),
    ("{s3: {bucket: bkt, prefix: team/}}", "{s3: {bucket: bkt, prefix: team/app/, region: eu-west-1}}",
     ("s3://bkt/team/", "s3://bkt/team/app/")),
    ("{s3: {bucket: bkt}}", "{s3: {bucket: bkt, prefix: x/}}", ("s3://bkt/", "s3://bkt/x/")),
    ("{secretsmanager: {prefix: team/}}", "{secretsmanager: {prefix: team/app/}}",
     ("Secrets Manager prefix 'team/' in us-east-1", "Secrets Manager prefix 'team/app/' in us-east-1")),
    ("{secretsmanager: {prefix: x/}}", "{secretsmanager: {prefix: x/}}",
     ("Secrets Manager prefix 'x/' in us-east-1", "Secrets Manager prefix 'x/' in us-east-1")),
], ids=["local-nested", "local-normalised", "ssm-nested", "ssm-root", "s3-nested-any-region", "s3-whole-bucket",
        "sm-nested", "sm-same"])
def test_overlapping_stores_are_an_error_at_both_vaults(tmp_path, first, second, shown):
    path, result = check(tmp_path, [KEY, vault("one", first), vault("two", second)])
    assert result.exit_code == 1
    errors = errors_of(result)
    assert len(errors) == 2, result.output
    one, two = errors
    assert one.startswith(f"{path}:12:") and two.startswith(f"{path}:19:")
    assert f": Vault/one: store {shown[0]} overlaps the store of Vault/two ({shown[1]}, at {two.split(': ')[0]}); " \
           f"{STORE_RULE}" in one
    assert f": Vault/two: store {shown[1]} overlaps the store of Vault/one ({shown[0]}, at {one.split(': ')[0]}); " \
           f"{STORE_RULE}" in two


def test_the_error_points_at_the_field_naming_the_location(tmp_path):
    path, result = check(tmp_path, [KEY, vault("one", "\n    local:\n      path: shared"),
                                    vault("two", "\n    s3: {bucket: bkt}"), vault("three", "\n    local: {path: shared}"),
                                    vault("four", "\n    s3:\n      bucket: bkt\n      prefix: p/")])
    assert [e.split(": ")[0:2] for e in errors_of(result)] == [
        [f"{path}:14:13", "Vault/one"], [f"{path}:22:18", "Vault/two"], [f"{path}:30:19", "Vault/three"],
        [f"{path}:40:15", "Vault/four"]]


@pytest.mark.parametrize("first,second", [
    ("{local: {path: vaults/a}}", "{local: {path: vaults/ab}}"),
    ("{local: {path: vaults/a}}", "{local: {path: vaults/b}}"),
    ("{ssm: {path: /team}}", "{ssm: {path: /teamx}}"),
    ("{ssm: {path: /team}}", "{ssm: {path: /team/app, region: us-west-2}}"),
    ("{s3: {bucket: one, prefix: x/}}", "{s3: {bucket: two, prefix: x/}}"),
    ("{s3: {bucket: bkt, prefix: a/}}", "{s3: {bucket: bkt, prefix: b/}}"),
    ("{secretsmanager: {prefix: x/}}", "{secretsmanager: {prefix: x/, region: us-west-2}}"),
    ("{ssm: {path: /x}}", "{secretsmanager: {prefix: /x}}"),
], ids=["local-sibling-name", "local-sibling", "ssm-sibling-name", "ssm-other-region", "s3-other-bucket",
        "s3-sibling", "sm-other-region", "different-services"])
def test_separate_stores_validate(tmp_path, first, second):
    _path, result = check(tmp_path, [KEY, vault("one", first), vault("two", second)])
    assert result.exit_code == 0, result.output


def test_an_absolute_local_path_inside_the_stack_overlaps_a_relative_one(tmp_path, monkeypatch):
    directory = tmp_path / "stack"
    directory.mkdir()
    (directory / "stack.yaml").write_text(STACK)
    (directory / "all.yaml").write_text("---\n".join([
        KEY, vault("one", "{local: {path: vaults}}"), vault("two", f"{{local: {{path: {directory}/vaults/x}}}}")]))
    monkeypatch.chdir(tmp_path)
    result = run("validate", "stack")  # a relative stack directory
    assert [e.split(": ")[1] for e in errors_of(result)] == ["Vault/one", "Vault/two"]


def test_a_symlink_to_another_vaults_directory_overlaps_it(tmp_path, monkeypatch):
    directory = tmp_path / "stack"
    directory.mkdir()
    (directory / "real").mkdir()
    (directory / "link").symlink_to(directory / "real")
    (directory / "stack.yaml").write_text(STACK)
    (directory / "all.yaml").write_text("---\n".join([
        KEY, vault("one", "{local: {path: real}}"), vault("two", "{local: {path: link/sub}}")]))
    result = run("validate", directory)
    assert result.exit_code == 1
    assert [e.split(": ")[1] for e in errors_of(result)] == ["Vault/one", "Vault/two"]
