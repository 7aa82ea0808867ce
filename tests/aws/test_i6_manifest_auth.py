"""Issue 6, items 18 and 13 (auth part): a relative webIdentity.tokenFile is
read from the stack directory (like store paths), whatever the current
directory; a missing env var or token file named by an auth block is
reported by plan and apply at the file:line:col of that field, before any
change."""

from __future__ import annotations

import json

import boto3

from tests.conftest import run, state_of

SYMMETRIC = "apiVersion: reconciler/v1\nkind: KmsProvider\nmetadata: {name: main}\nspec:\n  alias: team/main\n"


def web_identity(token: str, arn: str) -> str:
    return SYMMETRIC + f"  auth:\n    webIdentity: {{roleArn: '{arn}', tokenFile: {token}}}\n"


def role() -> str:
    iam = boto3.client("iam", region_name="us-east-1")
    return iam.create_role(RoleName="deployer", AssumeRolePolicyDocument="{}")["Role"]["Arn"]


def errors_of(result) -> list[str]:
    assert "Traceback" not in result.output
    return [line for line in result.output.splitlines() if line.startswith("Error:")]


def test_a_relative_token_file_is_read_from_the_stack_directory(aws, stack, tmp_path, monkeypatch, calls):
    directory = stack({"key.yaml": web_identity("ci/token", role())})
    (directory / "ci").mkdir()
    (directory / "ci" / "token").write_text("header.payload.signature")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = run("apply", directory, "--auto-approve")
    assert result.exit_code == 0, result.output
    assert calls.count("AssumeRoleWithWebIdentity") == 1
    assert "KmsProvider/main" in state_of(directory)["resources"]
    # state keeps the path as written: it is resolved against wherever the stack is checked out
    auth = state_of(directory)["resources"]["KmsProvider/main"]["connection"]["auth"]
    assert auth["webIdentity"]["tokenFile"] == "ci/token"
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0


def test_a_token_in_the_current_directory_is_not_used(aws, stack, tmp_path, monkeypatch, calls):
    directory = stack({"key.yaml": web_identity("token", role())})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "token").write_text("header.payload.signature")
    monkeypatch.chdir(elsewhere)
    calls.clear()
    result = run("plan", directory)
    assert result.exit_code == 1
    assert errors_of(result) == [
        f"Error: {directory / 'key.yaml'}:7:82: KmsProvider/main: auth.webIdentity.tokenFile: "
        f"{directory / 'token'} does not exist"]
    assert calls.calls == []


def test_a_missing_env_var_is_reported_at_its_field_by_plan(aws, stack, calls):
    text = SYMMETRIC + "  auth:\n    accessKey:\n      accessKeyId: {env: MY_KEY_ID}\n" \
                       "      secretAccessKey: {env: MY_SECRET}\n"
    directory = stack({"key.yaml": text})
    result = run("plan", directory)
    assert result.exit_code == 1
    assert errors_of(result) == [
        f"Error: {directory / 'key.yaml'}:8:26: KmsProvider/main: auth.accessKey.accessKeyId: "
        "environment variable MY_KEY_ID is not set"]
    assert calls.calls == []


def test_an_inherited_stack_auth_is_reported_at_the_stack(aws, stack, calls, monkeypatch):
    directory = stack({"key.yaml": SYMMETRIC})
    (directory / "stack.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: Stack\nmetadata: {name: test}\nspec:\n  region: us-east-1\n"
        "  auth:\n    accessKey:\n      accessKeyId: {env: STACK_KEY_ID}\n"
        "      secretAccessKey: {env: STACK_SECRET}\n")
    monkeypatch.setenv("STACK_KEY_ID", "AKIAFAKEFORTESTS0000")
    result = run("plan", directory)
    assert errors_of(result) == [
        f"Error: {directory / 'stack.yaml'}:9:30: KmsProvider/main: auth.accessKey.secretAccessKey: "
        "environment variable STACK_SECRET is not set (auth inherited from Stack/test)"]
    assert calls.calls == []


def test_apply_of_a_saved_plan_reports_the_field_before_any_change(aws, stack, tmp_path, monkeypatch, calls):
    text = SYMMETRIC + "  auth:\n    accessKey:\n      accessKeyId: {env: MY_KEY_ID}\n" \
                       "      secretAccessKey: {env: MY_SECRET}\n"
    directory = stack({"key.yaml": text})
    monkeypatch.setenv("MY_KEY_ID", "AKIAFAKEFORTESTS0000")
    monkeypatch.setenv("MY_SECRET", "not-a-real-secret-value-canary")
    saved = tmp_path / "change.plan"
    assert run("plan", directory, "--out", saved).exit_code == 0
    monkeypatch.delenv("MY_SECRET")
    calls.clear()
    result = run("apply", saved, "--auto-approve")
    assert result.exit_code == 1
    assert errors_of(result) == [
        f"Error: {directory / 'key.yaml'}:9:30: KmsProvider/main: auth.accessKey.secretAccessKey: "
        "environment variable MY_SECRET is not set"]
    assert calls.writes == []
    assert not (directory / ".reconciler" / "state.json").exists()


def test_the_s3_state_backend_reads_a_relative_token_from_the_stack_directory(aws, stack, tmp_path,
                                                                              monkeypatch):
    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="rcl-state")
    arn = role()
    directory = stack({"key.yaml": SYMMETRIC})
    (directory / "stack.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: Stack\nmetadata: {name: test}\nspec:\n  region: us-east-1\n"
        f"  auth:\n    webIdentity: {{roleArn: '{arn}', tokenFile: token}}\n"
        "  backend:\n    s3: {bucket: rcl-state, key: test.json}\n")
    (directory / "token").write_text("header.payload.signature")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = run("apply", directory, "--auto-approve")
    assert result.exit_code == 0, result.output
    body = boto3.client("s3", region_name="us-east-1").get_object(Bucket="rcl-state", Key="test.json")["Body"]
    assert "KmsProvider/main" in json.loads(body.read())["resources"]


def test_a_missing_profile_is_reported_at_its_field(aws, stack, tmp_path, monkeypatch, calls):
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    directory = stack({"key.yaml": SYMMETRIC + "  auth:\n    defaultChain: {profile: nosuch}\n"})
    result = run("plan", directory)
    assert result.exit_code == 1
    assert errors_of(result) == [
        f"Error: {directory / 'key.yaml'}:7:29: KmsProvider/main: auth.defaultChain.profile: "
        "profile 'nosuch' not found"]
    assert calls.calls == []
