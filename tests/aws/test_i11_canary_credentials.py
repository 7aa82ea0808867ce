"""Issue 11 item 7 (for the kinds of issues 9 and 10): a rotated secret access
key and a lease's credentials never leak, in plain, base64 or hash form,
into any command's output, state, its backup or a saved plan file. The only
places they may appear: `secret get` of the rotation's output, and the one
`lease create` that hands them out."""

from __future__ import annotations

import base64
import hashlib
import json
import pathlib

from tests.aws.test_i9_rotation import DUE, at, docs, key_doc, pair, rotation_doc, vault_doc
from tests.aws.test_i9_rotation import manager  # noqa: F401  (fixture)
from tests.aws.test_i10_leases import account, template  # noqa: F401  (fixture)
from tests.conftest import run


def forms(secret: str) -> list[str]:
    raw = secret.encode()
    return [secret, base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("="),
            hashlib.sha256(raw).hexdigest(), hashlib.sha1(raw).hexdigest(), hashlib.md5(raw).hexdigest()]


def files_of(directory: pathlib.Path) -> dict[str, str]:
    reconciler = directory / ".reconciler"
    found = {str(p): p.read_text(errors="replace") for p in reconciler.glob("state.json*")}
    found.update({str(p): p.read_text() for p in directory.glob("*.plan")})
    return found


def assert_nowhere(secret: str, texts: dict[str, str]) -> None:
    for where, text in texts.items():
        for form in forms(secret):
            assert form not in text, f"a form of the secret is in {where}"


def test_a_rotated_secret_key_is_in_no_output_state_backup_or_plan_file(manager, stack, monkeypatch):
    directory = stack({"main.yaml": docs(key_doc(), vault_doc(), rotation_doc())})
    outputs: dict[str, str] = {}

    def command(*args: str) -> None:
        result = run(*args)
        assert result.exit_code == 0, result.output  # (drift is clean: nothing changed out of band)
        outputs[" ".join(map(str, args))] = result.output

    command("apply", directory, "--auto-approve")
    first = pair(directory)[1]
    at(monkeypatch, DUE)
    for fmt in ("text", "json", "markdown"):
        command("plan", directory, "--format", fmt)
    command("plan", directory, "--out", directory / "due.plan")
    command("apply", directory / "due.plan", "--auto-approve")
    command("rotate", "app", "--dir", directory, "--dry-run")
    command("rotate", "app", "--dir", directory)
    for fmt in ("text", "json", "markdown"):
        command("drift", directory, "--format", fmt)
    command("state", "list", directory)
    command("state", "show", "--dir", directory)
    command("policy", directory, "--for", "app")
    command("secret", "history", "main/key-secret", "--dir", directory)
    latest = pair(directory)[1]
    assert latest != first
    for secret in (first, latest):
        assert_nowhere(secret, {**outputs, **files_of(directory)})


def test_lease_credentials_are_printed_once_and_stored_nowhere(account, stack, monkeypatch):
    directory = stack({"template.yaml": template()})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    created = run("lease", "create", "ci", "--dir", directory, "--format", "json")
    assert created.exit_code == 0
    issued = json.loads(created.output[created.output.index("{"):created.output.rindex("}") + 1])
    secret = issued["secretAccessKey"]
    outputs = {}
    for args in (("lease", "list", "--dir", directory), ("lease", "list", "--dir", directory, "--format", "json"),
                 ("lease", "renew", issued["leaseId"], "--dir", directory),
                 ("plan", directory), ("plan", directory, "--format", "json"), ("drift", directory),
                 ("state", "show", "--dir", directory), ("policy", directory, "--for", "ci")):
        result = run(*args)
        assert result.exit_code == 0, result.output
        outputs[" ".join(map(str, args))] = result.output
    monkeypatch.setenv("RECONCILER_NOW", "2030-01-02T00:00:00Z")
    result = run("plan", directory, "--out", directory / "expired.plan")
    outputs["plan expired"] = result.output
    revoked = run("apply", directory / "expired.plan", "--auto-approve")
    assert revoked.exit_code == 0, revoked.output
    outputs["apply expired"] = revoked.output
    assert_nowhere(secret, {**outputs, **files_of(directory)})
