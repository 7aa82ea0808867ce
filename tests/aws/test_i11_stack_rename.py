"""Issue 11 item 4: renaming the Stack is planned as a re-bind of every
envelope it affects (generated, pasted and fromEnv values), and apply re-binds
them; nothing silently stops decrypting, older versions included."""

from __future__ import annotations

import json

from reconciler.crypto import envelope as env
from tests.aws.test_vaults import docs, encrypt, get, key_doc, secret_doc, vault_doc
from tests.conftest import run, state_of


def _renamed(directory, name: str, *, former: str | None = None) -> None:
    text = (directory / "stack.yaml").read_text().replace("metadata: {name: test}", f"metadata: {{name: {name}}}")
    if former:
        text += f"  formerNames: [{former}]\n"
    (directory / "stack.yaml").write_text(text)


def _bound_to(directory, name: str) -> list[str]:
    """The stack each kept version of a local-store secret is bound to, oldest first."""
    data = json.loads((directory / ".reconciler" / "vault" / f"{name}.json").read_text())
    return [env.Envelope.parse(v["envelope"]).binding.stack for v in data["versions"]]


def test_a_renamed_stack_re_binds_every_envelope_and_every_version_still_decrypts(aws, stack, monkeypatch):
    monkeypatch.setenv("APP_PASSWORD", "from-the-env")
    directory = stack({"main.yaml": docs(key_doc(), vault_doc(), secret_doc("made", "generate: {length: 16}"),
                                          secret_doc("env", "fromEnv: APP_PASSWORD"))})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    (directory / "p.yaml").write_text(secret_doc("pasted", f"encrypted: {encrypt(directory, 'main', 'pasted', 'p1')}"))
    assert run("apply", directory, "--auto-approve").exit_code == 0
    made = get(directory, "main/made")
    assert state_of(directory)["stack"] == "test"

    _renamed(directory, "payments")
    refused = run("plan", directory)  # the pasted envelope names the old stack: said, with the way out
    assert refused.exit_code == 1
    assert "bound to stack test, vault main, secret pasted, not to stack payments" in refused.output
    assert "list test under the Stack's spec.formerNames" in refused.output

    _renamed(directory, "payments", former="test")
    plan = run("plan", directory)
    assert plan.exit_code == 0, plan.output
    for name in ("made", "pasted", "env"):
        assert f"~ Secret/{name}" in plan.output
    assert plan.output.count("re-bind: its envelope is bound to the stack's former name test") == 3
    assert "changed outside reconciler" not in plan.output  # our own re-bind to come is not drift
    drift = run("drift", directory)
    assert drift.exit_code == 0 and "the plan re-binds it" in drift.output  # info: never pages
    assert "+ Secret" not in plan.output and "KmsProvider/key" not in plan.output.split("following actions")[-1]

    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert get(directory, "main/made") == made  # the same value, never generated again
    assert get(directory, "main/pasted") == "p1" and get(directory, "main/env") == "from-the-env"
    for name in ("made", "pasted", "env"):
        assert _bound_to(directory, name)[-1] == "payments"
    assert _bound_to(directory, "made") == ["test", "payments"]
    assert get(directory, "main/made", "--version", "1") == made  # stored before the rename: still decrypts
    recorded = state_of(directory)
    assert recorded["stack"] == "payments" and recorded["formerStacks"] == ["test"]
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0
    assert run("drift", directory).exit_code == 0


def test_a_renamed_stack_whose_state_was_lost_finds_its_objects_by_their_former_name(aws, stack):
    directory = stack({"main.yaml": docs(key_doc(), vault_doc(), secret_doc("made", "generate: {length: 16}"))})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    made = get(directory, "main/made")
    for name in ("state.json", "state.json.backup"):
        (directory / ".reconciler" / name).unlink()
    _renamed(directory, "payments", former="test")
    plan = run("plan", directory)
    assert plan.exit_code == 0, plan.output
    assert "<= KmsProvider/key" in plan.output and "<= Secret/made" in plan.output
    assert "+ KmsProvider" not in plan.output
    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert get(directory, "main/made") == made


def test_a_state_written_by_another_stack_name_is_refused_unless_former_names_say_so(aws, stack):
    directory = stack({"main.yaml": docs(key_doc(), vault_doc(), secret_doc("made", "generate: {length: 16}"))})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    _renamed(directory, "payments")
    for command in ("plan", "drift"):
        refused = run(command, directory)
        assert refused.exit_code == 1
        assert "Stack/payments: its state" in refused.output and "was written by stack test" in refused.output
        assert "list test under spec.formerNames" in refused.output


def test_a_rename_of_a_state_that_never_recorded_its_name_is_critical_not_silent(aws, stack):
    directory = stack({"main.yaml": docs(key_doc(), vault_doc(), secret_doc("made", "generate: {length: 16}"))})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    state = state_of(directory)
    del state["stack"]  # written by an older reconciler
    (directory / ".reconciler" / "state.json").write_text(json.dumps(state))
    _renamed(directory, "payments")
    drift = run("drift", directory)
    assert drift.exit_code == 2
    assert ("Secret/made [CRITICAL]: its envelope is bound to stack test, not to this stack, so it no longer "
            "decrypts here; if this stack was renamed from test, list test under the Stack's spec.formerNames") \
        in " ".join(drift.output.split())


def test_a_vault_entry_of_another_stack_is_never_written_over(aws, stack):
    directory = stack({"main.yaml": docs(key_doc(), vault_doc(), secret_doc("made", "generate: {length: 16}"))})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    made = get(directory, "main/made")
    for name in ("state.json", "state.json.backup"):
        (directory / ".reconciler" / name).unlink()
    _renamed(directory, "payments")  # and formerNames forgotten: the entry is another stack's
    refused = run("plan", directory)
    assert refused.exit_code == 1
    assert ("Secret/made: Vault/main's store already holds an entry named made, bound to stack test, vault main, "
            "secret made; if this stack was renamed from test, list test under the Stack's spec.formerNames") \
        in " ".join(refused.output.split())
    assert _bound_to(directory, "made") == ["test"]
    _renamed(directory, "payments", former="test")
    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert get(directory, "main/made") == made
