"""Vault costs and resumability: KMS calls per plan and per encryption, and a
re-wrap killed halfway that the next apply completes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


from reconciler import engine
from reconciler.crypto import envelope as env
from tests.aws.test_vaults import docs, get, key_doc, secret_doc, vault_doc
from tests.conftest import ROOT, run, state_of

CRYPTO = {"Decrypt", "Encrypt", "GenerateDataKey", "GetPublicKey", "ReEncrypt"}


def many(count: int, prefix: str = "s") -> str:
    return "---\n".join(secret_doc(f"{prefix}{i:04d}", "generate: {length: 16}") for i in range(count))


def kms_calls(calls) -> list[str]:
    return [op for service, op, _ in calls.calls if service == "kms"]


def test_no_change_plan_over_200_secrets_makes_no_per_secret_kms_call(aws, stack, calls):
    directory = stack({"main.yaml": docs(key_doc(), vault_doc())})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    calls.clear()
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0
    provider_only = sorted(kms_calls(calls))

    (directory / "secrets.yaml").write_text(many(200))
    assert run("apply", directory, "--auto-approve").exit_code == 0
    calls.clear()
    plan = run("plan", directory, "--detailed-exitcode")
    assert plan.exit_code == 0, plan.output
    assert sorted(kms_calls(calls)) == provider_only  # the key's own refresh, nothing per secret
    assert not CRYPTO & set(kms_calls(calls))


def test_rsa_vault_encrypting_1000_secrets_costs_one_get_public_key(aws, stack, calls):
    directory = stack({"main.yaml": docs(key_doc("RSA_3072"), vault_doc())})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    workspace = engine.open_stack(directory)
    aws_ctx = engine.new_context(workspace)
    aws_ctx.state = workspace.backend.read()
    entry = aws_ctx.state.resources["KmsProvider/key"]
    calls.clear()
    envelopes = [aws_ctx.keyring.encrypt(f"value-{i}".encode(), key_arn=entry.ids["arn"], key_spec="RSA_3072",
                                         binding=env.Binding("test", "main", f"s{i}"),
                                         connection=entry.connection) for i in range(1000)]
    assert kms_calls(calls) == ["GetPublicKey"]
    assert len({e.to_string() for e in envelopes}) == 1000  # a fresh data key and nonce each
    value = aws_ctx.keyring.decrypt(envelopes[999], binding=env.Binding("test", "main", "s999"),
                                    connection=entry.connection)
    assert value == b"value-999"


def test_rsa_vault_apply_of_50_secrets_fetches_the_public_key_once(aws, stack, calls):
    directory = stack({"main.yaml": docs(key_doc("RSA_2048"), vault_doc()), "s.yaml": many(50)})
    calls.clear()
    assert run("apply", directory, "--auto-approve").exit_code == 0
    ops = kms_calls(calls)
    assert ops.count("GetPublicKey") == 1 and "GenerateDataKey" not in ops


KILLER = textwrap.dedent("""\
    import os, sys
    from reconciler import cli
    from reconciler.aws import session
    seen = []
    def stop_after(model, **kwargs):
        if model.name == "Decrypt":
            seen.append(1)
            if len(seen) > int(os.environ["KILL_AFTER"]):
                os._exit(9)  # the process dies mid-apply, no cleanup
    session.register_hook("before-call.kms", stop_after)
    sys.argv = ["reconciler", "apply", sys.argv[1], "--auto-approve"]
    cli.main()
    """)


def test_rewrap_killed_halfway_completes_on_the_next_apply(aws, stack, calls):
    directory = stack({"main.yaml": docs(key_doc(), key_doc(name="new"), vault_doc()), "s.yaml": many(20)})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    values = {f"s{i:04d}": get(directory, f"main/s{i:04d}") for i in range(20)}
    (directory / "main.yaml").write_text(docs(key_doc(), key_doc(name="new"), vault_doc(provider="new")))
    plan = run("plan", directory)
    assert "re-wrap 20 secrets under KmsProvider/new" in plan.output

    killed = subprocess.run([sys.executable, "-c", KILLER, str(directory)], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "KILL_AFTER": "10"})
    assert killed.returncode == 9, killed.stderr
    new_arn = state_of(directory)["resources"]["KmsProvider/new"]["ids"]["arn"]
    entries = {name: state_of(directory)["resources"][f"Secret/{name}"]["ids"]["keyArn"] for name in values}
    moved = sum(1 for arn in entries.values() if arn == new_arn)
    assert 0 < moved < 20  # really interrupted halfway
    assert state_of(directory)["resources"]["Vault/main"]["attributes"]["provider"] == "key"
    for name, value in values.items():  # every secret readable in between
        assert get(directory, f"main/{name}") == value

    calls.clear()
    resumed = run("apply", directory, "--auto-approve")
    assert resumed.exit_code == 0, resumed.output
    assert [op for op in kms_calls(calls) if op == "Decrypt"].__len__() == 20 - moved
    for name, value in values.items():
        assert get(directory, f"main/{name}") == value
    state = state_of(directory)["resources"]
    assert {n: state[f"Secret/{n}"]["ids"]["keyArn"] for n in values} == {n: new_arn for n in values}
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0
    assert run("drift", directory).exit_code == 0


KILL_AFTER_STORE = textwrap.dedent("""\
    import os, sys
    from reconciler import cli
    from reconciler.aws import session
    stored = []
    def stop_after(model, **kwargs):
        stored.append(1)
        if len(stored) == int(os.environ["KILL_AFTER"]):
            os._exit(9)  # the entry is in S3, the state does not know yet
    session.register_hook("after-call.s3.PutObject", stop_after)
    # one write at a time: "killed after the k-th store" names the same write every run
    sys.argv = ["reconciler", "apply", sys.argv[1], "--auto-approve", "--parallelism", "1"]
    cli.main()
    """)


def test_rewrap_killed_between_store_and_state_is_recorded_on_resume(aws, stack):
    from tests.aws.test_vaults import STORES, versioned_bucket

    versioned_bucket()
    directory = stack({"main.yaml": docs(key_doc(), key_doc(name="new"), vault_doc(STORES["s3"])),
                       "s.yaml": many(12)})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    before = get(directory, "main/s0004")
    (directory / "main.yaml").write_text(docs(key_doc(), key_doc(name="new"),
                                              vault_doc(STORES["s3"], provider="new")))
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_STORE, str(directory)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, env={**os.environ, "KILL_AFTER": "5"})
    assert killed.returncode == 9, killed.stderr
    resumed = run("apply", directory, "--auto-approve")
    assert resumed.exit_code == 0, resumed.output
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0
    assert run("drift", directory).exit_code == 0  # the orphaned write was recorded, not reported as drift
    new_arn = state_of(directory)["resources"]["KmsProvider/new"]["ids"]["arn"]
    assert all(e["ids"]["keyArn"] == new_arn for a, e in state_of(directory)["resources"].items()
               if a.startswith("Secret/"))
    assert get(directory, "main/s0004") == before  # a generated value is never generated twice
    history = run("secret", "history", "main/s0004", "--dir", directory).output.splitlines()
    assert [line.split("\t")[0] for line in history] == ["1"]  # re-wrapped in place: same number, nothing more
    assert history[0].split("\t")[2].startswith(new_arn)


def test_generated_secret_whose_write_landed_unrecorded_is_not_generated_again(aws, stack):
    from tests.aws.test_vaults import STORES, versioned_bucket

    versioned_bucket()
    directory = stack({"main.yaml": docs(key_doc(), vault_doc(STORES["s3"])), "s.yaml": many(3)})
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_STORE, str(directory)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, env={**os.environ, "KILL_AFTER": "2"})
    assert killed.returncode == 9, killed.stderr
    first = get(directory, "main/s0001")  # landed in S3, never recorded as done
    assert run("drift", directory).exit_code == 0  # ours, not drift; s0002 was never started
    resumed = run("apply", directory, "--auto-approve")
    assert resumed.exit_code == 0, resumed.output
    # nothing left to do for it but record it, which the plan says (issue 7 item 3)
    assert "resuming interrupted write of Secret/s0001" in resumed.output
    assert "the value was stored (version 1)" in resumed.output
    assert get(directory, "main/s0001") == first
    assert len(run("secret", "history", "main/s0001", "--dir", directory).output.splitlines()) == 1
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0
