"""Issue 6 items 9 and 24 through the real CLI: a destroy plan and a drifted
secret that is only in state show no value-derived token in any format, and
a value change says only that it will change (no guessed version numbers)."""

from __future__ import annotations

import json

import pytest

from tests.aws.test_vaults import STORES, docs, encrypt, key_doc, secret_doc, vault_doc
from tests.conftest import run, state_of


@pytest.fixture()
def applied(aws, stack, monkeypatch):
    monkeypatch.setenv("APP_PASSWORD", "pw-value-1")
    directory = stack({"main.yaml": docs(key_doc(), vault_doc()),
                       "s.yaml": docs(secret_doc("from-env", "fromEnv: APP_PASSWORD"),
                                      secret_doc("made", "generate: {length: 12}"))})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    envelope = encrypt(directory, "main", "pasted", "pasted-value")
    (directory / "p.yaml").write_text(secret_doc("pasted", f"encrypted: {envelope}"))
    assert run("apply", directory, "--auto-approve").exit_code == 0
    return directory


def tokens(directory) -> list[str]:
    """Every value-derived token state holds (and the digests refresh compares)."""
    found = []
    for entry in state_of(directory)["resources"].values():
        if entry["kind"] == "Secret":
            if not entry["attributes"]["value"].startswith("generation:"):  # not derived from a value
                found.append(entry["attributes"]["value"].split(":", 1)[1])
            found.append(entry["ids"]["storedDigest"][:12])
    assert len(found) == 5
    return found


@pytest.mark.parametrize("fmt", ["text", "json", "markdown"])
def test_destroy_plan_shows_no_fingerprint_in_any_format(applied, tmp_path, fmt):
    secrets = tokens(applied)
    (applied / "s.yaml").unlink()
    (applied / "p.yaml").unlink()
    plan = run("plan", applied, "--format", fmt, "--out", tmp_path / "x.plan")
    assert plan.exit_code == 0, plan.output
    assert plan.stdout.count("Secret/") >= 3
    saved = (tmp_path / "x.plan").read_text()
    for token in secrets:
        assert token not in plan.stdout
        assert token not in saved
    if fmt != "json":
        assert "- value       = (sensitive)" in plan.stdout


def test_drift_of_a_removed_secret_shows_no_digest(applied):
    (applied / "s.yaml").unlink()
    store = applied / ".reconciler" / "vault"
    other = encrypt(applied, "main", "made", "swapped")
    data = json.loads((store / "made.json").read_text())
    data["versions"].append({"version": 2, "createdAt": "x", "envelope": other})
    (store / "made.json").write_text(json.dumps(data))
    secrets = tokens(applied)
    for fmt in ("text", "json", "markdown"):
        plan = run("plan", applied, "--format", fmt)
        assert plan.exit_code == 0, plan.output
        assert "Secret/made" in plan.stdout
        assert "(changed outside reconciler)" not in plan.stdout
        for token in secrets:
            assert token not in plan.stdout
    assert "~ value = (sensitive) -> (sensitive)" in run("plan", applied).stdout


@pytest.mark.parametrize("store", ["ssm", "local"])
def test_value_change_says_it_will_change_without_a_version_number(aws, stack, monkeypatch, store):
    monkeypatch.setenv("APP_PASSWORD", "one")
    directory = stack({"main.yaml": docs(key_doc(), vault_doc(STORES[store]),
                                         secret_doc("pw", "fromEnv: APP_PASSWORD"))})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    monkeypatch.setenv("APP_PASSWORD", "two")
    plan = run("plan", directory)
    assert plan.exit_code == 0, plan.output
    assert "~ value = (sensitive, will change)" in plan.stdout
    assert "version" not in plan.stdout
