"""Issue 7 item 7: the explicit apply context and the keyring below kinds.
Pure: nothing here calls AWS (clients are made lazily, on first use)."""

from __future__ import annotations

import ast
import pathlib

import pytest

from reconciler import errors
from reconciler.aws import factory
from reconciler.crypto import keyring
from reconciler.kinds import base, context
from reconciler.state import model as state_model

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "reconciler"


def _imports(path: pathlib.Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.update({node.module, *(f"{node.module}.{a.name}" for a in node.names)})
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_the_keyring_builds_on_the_adapter_factory_not_on_kinds():
    for path in (PACKAGE / "crypto").glob("*.py"):
        assert not any(name.startswith("reconciler.kinds") for name in _imports(path)), path
    assert "reconciler.aws.factory" in _imports(PACKAGE / "crypto" / "keyring.py")
    ring = context.ApplyContext(factory.Adapters()).keyring
    assert isinstance(ring, keyring.Keyring) and isinstance(ring.adapters, factory.Adapters)


def test_kinds_keep_their_name_for_the_context():
    assert base.AwsContext is context.ApplyContext


def _entry(name: str = "main") -> state_model.ResourceState:
    return state_model.ResourceState("KmsProvider", name, "managed", {"keyId": "k-1", "arn": "arn:k-1"},
                                     {"alias": "alias/main"}, {"region": "us-east-1"})


class Writer:
    """The executor's state writer, as the context sees it."""

    def __init__(self, ctx: context.ApplyContext) -> None:
        self.ctx, self.written = ctx, []

    def __call__(self, state: state_model.State) -> None:
        self.written.append(state)
        self.ctx.state = state


def test_the_journal_is_written_through_the_executors_writer():
    ctx = context.ApplyContext(factory.Adapters(), stack="test")
    ctx.persist = writer = Writer(ctx)
    entry = ctx.begin("KmsProvider/main", state_model.Operation.CREATE, "create-key", {"a": 1})
    assert writer.written[-1].journal == (entry,) and entry.started_at
    moved = ctx.advance(entry, "converging", {"a": 2})
    assert writer.written[-1].journal == (moved,) and moved.operation_id == entry.operation_id
    assert ctx.journal_data("KmsProvider/main") == {"a": 2}
    ctx.settle(moved, _entry())
    assert len(writer.written) == 3  # the object and the closed entry in one write
    assert writer.written[-1].journal == () and writer.written[-1].resources["KmsProvider/main"] == _entry()
    assert ctx.journal_data("KmsProvider/main") == {}


def test_the_journal_cannot_be_written_at_plan_time():
    ctx = context.ApplyContext(factory.Adapters())
    with pytest.raises(errors.StateError, match="only during apply"):
        ctx.begin("KmsProvider/main", state_model.Operation.CREATE, "create-key", {})


def test_references_resolve_against_the_state_as_apply_leaves_it():
    ctx = context.ApplyContext(factory.Adapters())
    assert ctx.outputs("KmsProvider/main") is None  # known after apply
    ctx.state = ctx.state.with_resource(_entry())
    assert ctx.outputs("KmsProvider/main") == {"alias": "alias/main", "keyId": "k-1", "arn": "arn:k-1"}
