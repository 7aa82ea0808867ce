"""CLI polish (issue 12), without AWS: every option has help, every command an
example that parses, DIR is the last argument everywhere (--dir kept hidden),
plan files hold no absolute path, and the manifests hash is over parsed
documents (a comment-only edit is no change)."""

from __future__ import annotations

import pathlib
import re
import shlex
import textwrap

import click
import pytest

from reconciler import cli
from reconciler.manifest import loader
from tests.conftest import run


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    found: list[tuple[tuple[str, ...], click.Command]] = [(path, group)]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found.extend(_commands(command, path + (name,)))
        else:
            found.append((path + (name,), command))
    return found


COMMANDS = _commands(cli.main)


def test_the_walk_finds_every_command():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"plan", "apply", "rotate", "lease revoke", "state mv", "secret get", "import"} <= names
    assert len(names) >= 25


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) or "reconciler" for p, _ in COMMANDS])
def test_every_option_has_help_and_every_command_an_example(path, command):
    undocumented = [p.opts[0] for p in command.params
                    if isinstance(p, click.Option) and not p.hidden and not (p.help or "").strip()]
    assert undocumented == [], f"reconciler {' '.join(path)}: options without help: {undocumented}"
    result = run(*path, "--help")
    assert result.exit_code == 0, result.output
    assert re.search(r"^\s*Examples?:$", result.output, re.MULTILINE), \
        f"reconciler {' '.join(path)} --help shows no example"


def _examples(help_text: str) -> list[list[str]]:
    """The `reconciler ...` command lines of a help text's examples (inside
    eval "$(...)" too; redirections dropped)."""
    lines = []
    for line in help_text.split("Example", 1)[1].splitlines():
        line = line.strip()
        if line.startswith('eval "$('):
            line = line[len('eval "$('):].rstrip(')"')
        if line.startswith("reconciler "):
            words = shlex.split(line.split(" > ")[0].split(" < ")[0])
            lines.append(words[1:])
    return lines


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) or "reconciler" for p, _ in COMMANDS])
def test_every_example_parses(path, command):
    """Each example names this command and parses with its options and
    arguments (an example with a flag that does not exist fails here)."""
    examples = _examples(run(*path, "--help").output)
    assert examples, f"reconciler {' '.join(path)}: no `reconciler ...` line in its example"
    leaves = {p: c for p, c in COMMANDS if not isinstance(c, click.Group)}
    for words in examples:
        if path:
            assert tuple(words[:len(path)]) == path, words
        named = [p for p in leaves if tuple(words[:len(p)]) == p]
        assert len(named) == 1, f"{words}: names no command"
        leaf = named[0]
        leaves[leaf].make_context(" ".join(leaf), list(words[len(leaf):])).close()  # a bad option raises


WITH_DIR = [("rotate", "NAME [DIR]"), ("lease create", "TEMPLATE [DIR]"), ("lease renew", "ID [DIR]"),
            ("lease revoke", "[ID] [DIR]"), ("lease list", "[DIR]"), ("import", "KIND/NAME AWS_ID [DIR]"),
            ("secret encrypt", "[DIR]"), ("secret get", "VAULT/NAME [DIR]"), ("secret history", "VAULT/NAME [DIR]"),
            ("state show", "[ADDRESS] [DIR]"), ("state unlock", "LOCK_ID [DIR]"), ("state push", "FILE [DIR]"),
            ("state rm", "ADDRESS... [DIR]"), ("state mv", "SRC DST [DIR]"), ("state list", "[DIR]"),
            ("plan", "[DIR]")]


@pytest.mark.parametrize(("name", "usage"), WITH_DIR, ids=[n for n, _ in WITH_DIR])
def test_the_stack_directory_is_the_last_argument_and_dir_is_hidden(name, usage):
    result = run(*name.split(), "--help")
    first = result.output.splitlines()[0]
    assert first.startswith("Usage: ") and first.endswith(f" {name} [OPTIONS] {usage}"), first
    assert "--dir" not in result.output


def test_dir_given_twice_differently_is_one_error(tmp_path):
    result = run("secret", "history", "app/x", tmp_path / "a", "--dir", tmp_path / "b")
    assert result.exit_code == 1
    assert result.stderr == (f"Error: the stack directory is given twice ({tmp_path / 'a'} and --dir "
                             f"{tmp_path / 'b'}); give it once, as the last argument\n")


def test_state_show_one_argument_that_is_neither_address_nor_directory(tmp_path):
    result = run("state", "show", "KmsProvidr/typo")
    assert result.exit_code == 1
    assert result.stderr == "Error: KmsProvidr/typo: neither an address (KIND/NAME) nor a stack directory\n"


def test_lease_revoke_with_a_flag_takes_only_dir(tmp_path):
    result = run("lease", "revoke", "--expired", "abc123")
    assert result.exit_code == 1
    assert result.stderr == ("Error: lease revoke takes one of: ID, --template T, --expired (then DIR, the "
                             "stack directory)\n")


# -- the manifests hash -----------------------------------------------------------
KEY = """\
apiVersion: reconciler/v1
kind: KmsProvider
metadata: {name: main}
spec:
  description: main key
  tags: {team: platform, tier: "1"}
"""


def _hash(directory: pathlib.Path, text: str) -> str:
    (directory / "key.yaml").write_text(textwrap.dedent(text))
    source, diagnostics = loader.load_directory(directory)
    assert [d for d in diagnostics if d.severity == "error"] == []
    return source.content_hash


def test_the_hash_ignores_comments_layout_and_key_order(tmp_path):
    before = _hash(tmp_path, KEY)
    same = [
        "# reviewed in PR 12\n" + KEY.replace("main key", "main key   # the payments key"),
        KEY.replace("tags: {team: platform, tier: \"1\"}", "tags:\n    tier: '1'\n    team: platform\n"),
        "---\n" + KEY + "\n\n# trailing comment\n",
    ]
    assert [_hash(tmp_path, text) for text in same] == [before] * len(same)
    (tmp_path / "notes.yaml").write_text("# only comments: no documents\n")
    assert _hash(tmp_path, KEY) == before


def test_the_hash_sees_every_real_change(tmp_path):
    before = _hash(tmp_path, KEY)
    changed = [
        KEY.replace("main key", "main key!"),
        KEY.replace('tier: "1"', "tier: 1"),  # a string is not a number
        KEY + "  protect: false\n",
        KEY + "---\n" + KEY.replace("name: main", "name: other"),
    ]
    hashes = [_hash(tmp_path, text) for text in changed]
    assert before not in hashes and len(set(hashes)) == len(hashes)
    _hash(tmp_path, KEY)
    (tmp_path / "key.yaml").rename(tmp_path / "renamed.yaml")
    assert loader.load_directory(tmp_path)[0].content_hash != before
