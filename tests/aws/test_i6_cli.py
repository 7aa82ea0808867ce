"""Issue 6, items 12, 14, 15: usage errors exit 1, expected failures are one
clear line (never an internal error), and `secret encrypt` asks on a terminal
without echoing."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from reconciler.state import local, model
from tests.aws.test_vaults import CANARY, docs, key_doc, secret_doc, vault_doc
from tests.conftest import converse, run, state_of

CLI = [sys.executable, "-m", "reconciler.cli"]


# -- 14: usage errors exit 1, so 2 only ever means changes / drift -------------------
@pytest.mark.parametrize("args,message", [
    (["nosuch"], "No such command 'nosuch'"),
    (["plan", "--bogus"], "No such option '--bogus'"),
    (["plan", "--detailed-exitcode", "--format", "xml"], "'xml' is not one of 'text', 'json', 'markdown'"),
    (["drift", "--format", "yaml"], "'yaml' is not one of"),
    (["import", "KmsProvider/x"], "Missing argument 'AWS_ID'"),
    (["secret", "get"], "Missing argument 'VAULT/NAME'"),
    (["apply", "--lock-timeout", "soon"], "'soon' is not a valid float"),
])
def test_usage_errors_exit_1(args, message):
    result = run(*args)
    assert result.exit_code == 1
    assert message in result.output


def test_usage_error_exits_1_from_a_real_process(tmp_path):
    done = subprocess.run([*CLI, "plan", str(tmp_path), "--detailed-exitcode", "--no-such-flag"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "No such option '--no-such-flag'" in done.stderr


# -- 15: expected failures are one line, never an internal error ------------------------
def _state_with_entries(directory: pathlib.Path, count: int) -> None:
    (directory / "stack.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: Stack\nmetadata: {name: test}\nspec: {region: us-east-1}\n")
    backend = local.LocalBackend(directory / ".reconciler" / "state.json")
    state = model.State.empty()
    for i in range(count):
        state = state.with_resource(model.ResourceState(
            "KmsProvider", f"k{i:04d}", "managed", {"keyId": f"id-{i}", "arn": f"arn:aws:kms:x:1:key/{i}"},
            {}, {"region": "us-east-1"}))
    with backend.lock("test"):
        backend.write(state)


def test_state_list_into_a_closed_pipe_is_quiet(tmp_path):
    _state_with_entries(tmp_path, 50)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (`| head`) is already gone
    try:
        done = subprocess.run([*CLI, "state", "list", str(tmp_path)], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert done.returncode == 1
    assert done.stderr == ""  # no "internal error", no "Exception ignored ... BrokenPipeError"


def test_state_list_piped_to_head_prints_what_head_wants(tmp_path):
    _state_with_entries(tmp_path, 3000)  # more than a pipe buffer
    done = subprocess.run(f"{' '.join(CLI)} state list {tmp_path} 2>{tmp_path}/err | head -2",
                          shell=True, capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines()[0].startswith("KmsProvider/k0000\tmanaged\t")
    assert len(done.stdout.splitlines()) == 2
    assert (tmp_path / "err").read_text() == ""


def test_plan_out_into_a_missing_directory_fails_before_any_aws_call(aws, stack, calls):
    directory = stack({"k.yaml": key_doc()})
    result = run("plan", directory, "--out", "/nonexistent/dir/x.plan")
    assert result.exit_code == 1
    assert result.output == "Error: --out /nonexistent/dir/x.plan: no such directory /nonexistent/dir\n"
    assert calls.calls == []


def test_plan_out_onto_a_directory_is_refused(tmp_path):
    result = run("plan", tmp_path, "--out", tmp_path)
    assert result.exit_code == 1
    assert f"Error: Invalid value for '--out': File '{tmp_path}' is a directory." in result.output


@pytest.mark.parametrize("approve", [("--auto-approve",), ()])
def test_apply_of_a_missing_plan_file_says_so(tmp_path, approve):
    result = run("apply", tmp_path / "nosuch.plan", *approve)
    assert result.exit_code == 1
    assert result.output == f"Error: {tmp_path / 'nosuch.plan'}: no such plan file or stack directory\n"


def test_plan_out_under_a_file_says_it_is_not_a_directory(tmp_path):
    (tmp_path / "afile").write_text("x")
    result = run("plan", tmp_path, "--out", tmp_path / "afile" / "x.plan")
    assert result.exit_code == 1
    assert result.output == f"Error: --out {tmp_path / 'afile' / 'x.plan'}: {tmp_path / 'afile'} is not a directory\n"


def test_secret_get_of_a_missing_secret_names_vault_and_name(aws, stack):
    directory = stack({"main.yaml": docs(key_doc(), vault_doc())})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    result = run("secret", "get", "main/nosuch", "--dir", directory)
    assert result.exit_code == 1
    assert result.output.startswith("Error: main/nosuch: no such secret in local store ")


@pytest.mark.parametrize("address,message", [
    ("badaddr", "badaddr: expected KIND/NAME, such as KmsProvider/app-data"),
    ("KmsProvider/", "KmsProvider/: expected KIND/NAME"),
    ("DynamicIamTemplate/x", "DynamicIamTemplate/x: DynamicIamTemplate cannot be imported (a template owns no "
                             "AWS object of its own"),
    ("Stack/x", "Stack/x: Stack cannot be imported (the Stack document is configuration"),
    ("Bogus/x", "Bogus/x: Bogus cannot be imported (no such kind); importable kinds: KmsProvider"),
])
def test_import_of_what_cannot_be_imported_says_why(tmp_path, address, message):
    result = run("import", address, "key-id", "--dir", tmp_path)  # no stack there: checked first
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {message}")
    assert "keyId" not in result.output and "internal error" not in result.output


def test_secret_get_in_a_region_without_replica_names_the_problem(aws, stack):
    directory = stack({"main.yaml": docs(key_doc(), vault_doc(), secret_doc("pw", "generate: {}"))})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    arn = state_of(directory)["resources"]["KmsProvider/key"]["ids"]["arn"]
    result = run("secret", "get", "main/pw", "--region", "us-west-2", "--dir", directory)
    assert result.exit_code == 1
    assert result.output == (f"Error: main/pw: no replica of {arn} in us-west-2: --region needs a "
                             "multi-Region key replicated there (replicaRegions)\n")


# -- 12: secret encrypt on a terminal --------------------------------------------------
def test_secret_encrypt_on_a_terminal_asks_twice_without_echo(aws, stack):
    directory = stack({"main.yaml": docs(key_doc(), vault_doc())})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    code, output = converse(
        ["secret", "encrypt", "--vault", "main", "--name", "pw", "--dir", str(directory)],
        [(b"Value for main/pw:", CANARY.encode() + b"\n"),
         (b"Repeat for confirmation:", b"a typo\n"),
         (b"Value for main/pw:", CANARY.encode() + b"\n"),
         (b"Repeat for confirmation:", CANARY.encode() + b"\n")])
    assert code == 0, output
    assert CANARY not in output  # never echoed
    assert "do not match" in output
    envelope = [line for line in output.splitlines() if line.startswith("rcl:v1:")]
    assert len(envelope) == 1
    (directory / "pw.yaml").write_text(secret_doc("pw", f"encrypted: {envelope[0].strip()}"))
    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert run("secret", "get", "main/pw", "--dir", directory).output == CANARY


@pytest.mark.parametrize("flag,value", [("--name", "Db_Password"), ("--name", "x-"), ("--vault", "a" * 64),
                                        ("--name", "has/slash")])
def test_secret_encrypt_refuses_names_a_manifest_cannot_use(tmp_path, flag, value):
    args = {"--vault": "main", "--name": "pw", flag: value}
    result = run("secret", "encrypt", "--vault", args["--vault"], "--name", args["--name"], "--dir", tmp_path,
                 input="value")
    assert result.exit_code == 1
    assert "is not a name a manifest can use" in result.output
