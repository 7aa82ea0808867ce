"""The core stays pure: manifest, graph, plan, state model, render and the
envelope format import no boto3, botocore, click or moto (kopf-style layer
check, by reading the imports)."""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "reconciler"
CORE = ["manifest", "graph.py", "plan", "state/model.py", "render", "crypto/envelope.py"]
FORBIDDEN = ("boto3", "botocore", "click", "moto")


def imports(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def core_files() -> list[pathlib.Path]:
    files = []
    for entry in CORE:
        path = PACKAGE / entry
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return files


@pytest.mark.parametrize("path", core_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_module_imports_no_aws_or_cli(path):
    bad = {name for name in imports(path) if name.split(".")[0] in FORBIDDEN}
    if path.name == "text.py":
        bad.discard("click")  # the text view colours with click, imported lazily on a terminal only
    assert not bad, f"{path} imports {sorted(bad)}"


def test_only_the_sandbox_imports_moto():
    for path in PACKAGE.rglob("*.py"):
        if "sandbox" in path.parts:
            continue
        assert not {n for n in imports(path) if n.split(".")[0] == "moto"}, path


def test_only_the_aws_package_creates_clients():
    for path in PACKAGE.rglob("*.py"):
        if path.parent.name == "aws":
            continue
        assert "boto3" not in {n.split(".")[0] for n in imports(path)}, path
