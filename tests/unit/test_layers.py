"""The layers hold (import-linter contracts in .importlinter): the pure core
imports no AWS, CLI or sandbox code; cli -> engine -> executor -> kinds ->
{stores, crypto} -> aws; only the sandbox imports moto; only aws/ imports boto3."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _lint(config: pathlib.Path) -> subprocess.CompletedProcess[str]:
    lint = shutil.which("lint-imports") or str(pathlib.Path(sys.executable).parent / "lint-imports")
    return subprocess.run([lint, "--config", str(config), "--no-cache"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_import_contracts_are_kept():
    done = _lint(ROOT / ".importlinter")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_a_broken_contract_is_caught(tmp_path):
    """The check can fail: a contract the code breaks today is reported."""
    config = tmp_path / "broken.ini"
    config.write_text("[importlinter]\nroot_package = reconciler\ninclude_external_packages = True\n\n"
                      "[importlinter:contract:x]\nname = kinds may not import aws\ntype = forbidden\n"
                      "source_modules =\n    reconciler.kinds\nforbidden_modules =\n    reconciler.aws\n")
    done = _lint(config)
    assert done.returncode == 1
    assert "kinds may not import aws BROKEN" in done.stdout
