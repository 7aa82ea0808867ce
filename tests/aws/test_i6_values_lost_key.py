"""Issue 6 item 7: a vault whose KMS key is gone (not disabled, not pending
deletion: gone) never looks converged. Every secret whose envelope names the
lost key stays critical drift, in plan and drift, until its value is
re-supplied (fromEnv from its variable, encrypted by a new envelope) or
regenerated (generate, only with --regenerate-lost)."""

from __future__ import annotations

import json
import urllib.request

import boto3

from tests.aws.test_vaults import docs, encrypt, get, key_doc, secret_doc, vault_doc
from tests.conftest import run, state_of

HINTS = {
    "Secret/from-env": "`reconciler apply` writes it again from its fromEnv variable once the vault has a "
                       "working key",
    "Secret/pasted": "encrypt the value again (`reconciler secret encrypt`) and replace its `encrypted:` "
                     "envelope, then apply",
    "Secret/made": "`reconciler apply --regenerate-lost` generates a new value (whoever used the old one "
                   "needs the new)",
}


def lose_every_key(sandbox: str) -> None:
    """Every KMS key vanishes for good (the local store and state stay): what
    AWS shows once a deletion window has passed."""
    urllib.request.urlopen(urllib.request.Request(f"{sandbox}/moto-api/reset", method="POST")).read()


def drift_notes(directory) -> dict[str, dict]:
    result = run("drift", directory, "--format", "json")
    assert result.exit_code == 2, result.output  # every caller expects critical drift
    return {d["address"]: d for d in json.loads(result.stdout)["drift"]}


def lost_note(arn: str, address: str, provider: str = "") -> str:
    return (f"its envelope no longer decrypts: key {arn}{provider} no longer exists, so every stored "
            f"version is lost; re-supply the value: {HINTS[address]}")


def test_secrets_under_a_lost_key_stay_critical_until_resupplied(aws, stack, monkeypatch):
    monkeypatch.setenv("APP_PASSWORD", "env-value")
    directory = stack({"main.yaml": docs(key_doc(), vault_doc()),
                       "s.yaml": docs(secret_doc("from-env", "fromEnv: APP_PASSWORD"),
                                      secret_doc("made", "generate: {length: 12}"))})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    (directory / "p.yaml").write_text(secret_doc("pasted", f"encrypted: {encrypt(directory, 'main', 'pasted', 'p1')}"))
    assert run("apply", directory, "--auto-approve").exit_code == 0
    old_made = get(directory, "main/made")
    lost = state_of(directory)["resources"]["KmsProvider/key"]["ids"]["arn"]

    lose_every_key(aws)
    report = drift_notes(directory)
    assert report["KmsProvider/key"]["gone"] and report["KmsProvider/key"]["severity"] == "critical"
    for address in HINTS:
        assert report[address]["severity"] == "critical"
        assert report[address]["note"] == lost_note(lost, address, " (KmsProvider/key)")
    plan = run("plan", directory)
    assert plan.exit_code == 0, plan.output
    assert "+ KmsProvider/key" in plan.stdout
    assert "~ Secret/from-env" in plan.stdout  # its variable re-supplies it once the new key exists
    assert "Secret/made will be" not in plan.stdout and "Secret/pasted will be" not in plan.stdout

    refused = run("apply", directory, "--auto-approve")  # a gone key is never silently made again
    assert refused.exit_code == 1 and "destroys or replaces KmsProvider/key" in refused.output
    assert state_of(directory)["resources"]["KmsProvider/key"]["ids"]["arn"] == lost  # refused before any write
    assert run("apply", directory, "--auto-approve", "--allow-destroy").exit_code == 0
    assert get(directory, "main/from-env") == "env-value"
    report = drift_notes(directory)
    assert sorted(report) == ["Secret/made", "Secret/pasted"]  # never "clean" while values are lost
    for address in ("Secret/made", "Secret/pasted"):
        assert report[address]["severity"] == "critical" and report[address]["changes"] == []
        assert report[address]["note"] == lost_note(lost, address)
    plan = run("plan", directory, "--detailed-exitcode")
    assert plan.exit_code == 0  # nothing it may do without being asked
    assert f"# Secret/made [CRITICAL]: {lost_note(lost, 'Secret/made')}" in plan.stdout
    assert f"# Secret/pasted [CRITICAL]: {lost_note(lost, 'Secret/pasted')}" in plan.stdout
    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert sorted(drift_notes(directory)) == ["Secret/made", "Secret/pasted"]

    # a new envelope (under the new key) re-supplies the pasted value
    (directory / "p.yaml").write_text(secret_doc("pasted", f"encrypted: {encrypt(directory, 'main', 'pasted', 'p2')}"))
    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert get(directory, "main/pasted") == "p2"
    assert sorted(drift_notes(directory)) == ["Secret/made"]

    # only --regenerate-lost makes a generated value again
    plan = run("plan", directory, "--regenerate-lost")
    assert "~ Secret/made" in plan.stdout and "~ value = (sensitive, will change)" in plan.stdout
    assert run("apply", directory, "--auto-approve", "--regenerate-lost").exit_code == 0
    new_made = get(directory, "main/made")
    assert len(new_made) == 12 and new_made != old_made
    assert run("drift", directory).exit_code == 0
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0


def test_fromenv_secret_under_a_lost_key_is_rewritten_by_the_next_apply(aws, stack, monkeypatch):
    """The lost key is one no KmsProvider in state holds any more (the vault moved on): the
    secret's own refresh finds it gone and the plan writes the value again from its variable."""
    monkeypatch.setenv("APP_PASSWORD", "env-value")
    directory = stack({"main.yaml": docs(key_doc(), vault_doc()),
                       "s.yaml": secret_doc("from-env", "fromEnv: APP_PASSWORD")})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    lose_every_key(aws)
    other = boto3.client("kms", region_name="us-east-1").create_key(Description="")["KeyMetadata"]
    path = directory / ".reconciler" / "state.json"
    data = json.loads(path.read_text())
    # the vault's provider now holds another key (replaced long ago); the secret's envelope names the lost one
    data["resources"]["KmsProvider/key"]["ids"] = {"keyId": other["KeyId"], "arn": other["Arn"]}
    path.write_text(json.dumps(data))
    lost = data["resources"]["Secret/from-env"]["ids"]["keyArn"]
    plan = run("plan", directory)
    assert plan.exit_code == 0, plan.output
    assert f"# Secret/from-env [CRITICAL]: {lost_note(lost, 'Secret/from-env')}" in plan.stdout
    assert "~ Secret/from-env" in plan.stdout
    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert get(directory, "main/from-env") == "env-value"
    assert run("drift", directory).exit_code == 0


def test_regenerate_lost_is_refused_with_a_saved_plan(aws, stack, tmp_path):
    directory = stack({"main.yaml": docs(key_doc(), vault_doc())})
    planfile = tmp_path / "x.plan"
    assert run("plan", directory, "--out", planfile).exit_code == 0
    result = run("apply", planfile, "--auto-approve", "--regenerate-lost")
    assert result.exit_code == 1
    assert result.stderr == ("Error: --regenerate-lost cannot be combined with a saved plan "
                             "(give it to plan)\n")
