"""Issue 11, item 6: hostile input gets a quick clear error.

Each class (absurd nesting, control characters, unreadable files, a file over
the 5 MB cap, 500,000 keys in one mapping, 200,000 documents, over-long
values, a hostile `encrypted:` header, names AWS rejects, symlinks of every
sort) yields exit 1 and one positioned line per problem through the real
CLI, never a traceback, or is accepted only if valid. The heavy cases also
run in a subprocess that must finish within 20 s and under 200 MB of peak
RSS (a guard against hangs, not a benchmark: bench/hostile_input.py prints
the figures). Recursive and exponential YAML aliases: test_i6_manifest_yaml_limits.py.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

from reconciler.crypto import envelope
from reconciler.manifest import loader
from tests.conftest import ROOT, run

STACK = "apiVersion: reconciler/v1\nkind: Stack\nmetadata: {name: test}\nspec: {region: us-east-1}\n"
HEAD = "apiVersion: reconciler/v1\nkind: KmsProvider\nmetadata: {name: main}\nspec:\n"
ROLE = ("apiVersion: reconciler/v1\nkind: IamRole\nmetadata: {name: r}\nspec:\n"
        "  trust: {awsAccount: {accountId: '123456789012', externalId: ext-id}}\n")
ROTATION = ("apiVersion: reconciler/v1\nkind: AccessKeyRotation\nmetadata: {name: r}\nspec:\n  interval: 30d\n"
            "  outputs: {vault: v, accessKeyId: {secret: id}, secretAccessKey: {secret: key}}\n")
VAULT = ("apiVersion: reconciler/v1\nkind: Vault\nmetadata: {name: v}\n"
         "spec: {provider: main, store: {local: {path: .reconciler/v}}, default: true}\n")
LIMIT_S = 20
LIMIT_RSS_MB = 200


def stack_dir(tmp_path: pathlib.Path, files: dict[str, str | bytes] | None = None) -> pathlib.Path:
    directory = tmp_path / "stack"
    directory.mkdir(parents=True)
    (directory / "stack.yaml").write_text(STACK)
    for name, content in (files or {}).items():
        path = directory / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return directory


def errors_of(result) -> list[str]:
    """The error lines of a failed validate: exit 1, no traceback, no internal error."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output, result.output
    return [line for line in result.output.splitlines() if line.startswith("Error:")]


def one_error(result) -> str:
    found = errors_of(result)
    assert len(found) == 1, found
    return found[0]


_MEASURE = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_pid, status, usage = os.wait4(child.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def bounded(directory: pathlib.Path) -> tuple[int, str, float, float]:
    """`reconciler validate` in a subprocess: exit code, stderr, seconds, peak RSS in MB.
    Killed past LIMIT_S (a hang fails the test instead of the suite)."""
    with open(directory.parent / "stderr", "w+b") as stderr:
        started = time.monotonic()
        # measured through a small fresh process: a child forked straight from this (large) test
        # process would count this process's pages in its peak RSS (Linux ru_maxrss spans the fork)
        process = subprocess.Popen([sys.executable, "-c", _MEASURE, sys.executable, "-m", "reconciler.cli",
                                    "validate", str(directory)],
                                   stdout=subprocess.PIPE, stderr=stderr, cwd=ROOT, start_new_session=True)
        try:
            out, _ = process.communicate(timeout=LIMIT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
            pytest.fail(f"validate did not finish within {LIMIT_S} s")
        elapsed = time.monotonic() - started
        code, peak_kb = (int(x) for x in out.split())
        stderr.seek(0)
        return code, stderr.read().decode(), elapsed, peak_kb / 1024


def keys(n: int) -> str:
    """A flow mapping of ``n`` distinct short keys (null values), compact enough to stay under 5 MB."""
    digits = "abcdefghijklmnopqrstuvwxyz0123456789"

    def name(i: int) -> str:
        out = "k"
        while True:
            i, r = divmod(i, 36)
            out += digits[r]
            if not i:
                return out

    return "{" + ",".join(name(i) for i in range(n)) + "}"


HEAVY = {
    "nesting-1000-flow": HEAD + "  tags: " + "[" * 1000 + "]" * 1000 + "\n",
    "nesting-1000-block": HEAD + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(1000)),
    "500k-keys": HEAD + "  tags: " + keys(500_000) + "\n",
    "200k-documents": "---\nkind: Nope\n" * 200_000,
    "over-5MB": HEAD + "  description: x\n" + "# " + "x" * (loader.MAX_FILE_BYTES + 10) + "\n",
    "long-value": HEAD + "  alias: " + "x" * 4_000_000 + "\n",
    "500k-item-list": HEAD + "  replicaRegions: [" + ",".join(["us-east-2"] * 500_000) + "]\n",
}


@pytest.mark.parametrize("name", list(HEAVY))
def test_heavy_input_is_refused_in_bounded_time_and_memory(tmp_path, name):
    text = HEAVY[name]
    if name != "over-5MB":  # every other case must be refused for what it is, not for its size
        assert len(text.encode()) <= loader.MAX_FILE_BYTES
    directory = stack_dir(tmp_path, {"bad.yaml": text})
    code, stderr, _seconds, peak_mb = bounded(directory)
    assert code == 1, stderr[-2000:]
    assert "Traceback" not in stderr and "internal error" not in stderr
    assert stderr.splitlines()[0].startswith(f"Error: {directory / 'bad.yaml'}:"), stderr[:500]
    assert peak_mb < LIMIT_RSS_MB, f"{peak_mb:.0f} MB"


def test_nesting_1000_deep_is_one_positioned_error(tmp_path):
    directory = stack_dir(tmp_path, {"bad.yaml": HEAVY["nesting-1000-block"]})
    assert one_error(run("validate", directory)) == (
        f"Error: {directory / 'bad.yaml'}:{4 + loader.MAX_DEPTH - 1}:{2 * loader.MAX_DEPTH - 1}: "
        f"invalid YAML: nested more than {loader.MAX_DEPTH} levels deep")
    directory = stack_dir(tmp_path / "flow", {"bad.yaml": HEAVY["nesting-1000-flow"]})
    assert one_error(run("validate", directory)).startswith(f"Error: {directory / 'bad.yaml'}:5:")


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f", "\x9b", "\ufffe"])
def test_a_raw_control_character_is_one_positioned_line_shown_escaped(tmp_path, char):
    directory = stack_dir(tmp_path, {"bad.yaml": HEAD + f"  description: ab{char}c\n"})
    result = run("validate", directory)
    line = one_error(result)
    kind = "control character" if ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F else "character"
    assert line == (f"Error: {directory / 'bad.yaml'}:5:18: invalid YAML: {kind} U+{ord(char):04X} "
                    f"({ascii(char)}) is not allowed in YAML")
    assert char not in result.output


@pytest.mark.parametrize("escape,char", [("\\0", "\x00"), ("\\a", "\x07"), ("\\e", "\x1b"), ("\\x7f", "\x7f"),
                                         ("\\x9b", "\x9b")])
def test_a_control_character_written_as_an_escape_is_refused_too(tmp_path, escape, char):
    directory = stack_dir(tmp_path, {"bad.yaml": HEAD + f'  description: "ab{escape}c"\n'})
    result = run("validate", directory)
    assert one_error(result) == (f"Error: {directory / 'bad.yaml'}:5:16: control character U+{ord(char):04X} "
                                 f"({ascii(char)}) in a value; manifests hold no control characters")
    assert char not in result.output


def test_a_control_character_in_a_key_is_refused(tmp_path):
    directory = stack_dir(tmp_path, {"bad.yaml": HEAD + '  "a\\eb": 1\n'})
    assert one_error(run("validate", directory)).endswith("control character U+001B ('\\x1b') in a value; "
                                                         "manifests hold no control characters")


def test_tabs_newlines_and_unicode_stay_allowed(tmp_path):
    directory = stack_dir(tmp_path, {"key.yaml": HEAD + '  alias: main\n  description: "tab\\there\\nzweite Zeile – ü"\n'
                                                       "  tags: {Équipe: plateforme, 'Cost Center': '42'}\n"})
    result = run("validate", directory)
    assert result.exit_code == 0, result.output


def test_a_fifo_is_reported_not_waited_on(tmp_path):
    directory = stack_dir(tmp_path)
    os.mkfifo(directory / "pipe.yaml")
    assert one_error(run("validate", directory)) == (
        f"Error: {directory / 'pipe.yaml'}:1:1: cannot read: a FIFO (named pipe), not a regular file")


def test_a_directory_named_like_a_manifest_is_reported(tmp_path):
    directory = stack_dir(tmp_path)
    (directory / "x.yaml").mkdir()
    assert one_error(run("validate", directory)) == (
        f"Error: {directory / 'x.yaml'}:1:1: a directory named like a manifest file; rename it, or remove it")


def test_a_file_that_is_not_utf8_is_reported_where_the_bad_byte_is(tmp_path):
    directory = stack_dir(tmp_path, {"bad.yaml": (HEAD + "  description: café\n").encode("latin-1")})
    assert one_error(run("validate", directory)) == (
        f"Error: {directory / 'bad.yaml'}:5:19: not UTF-8 text: byte 0xe9 (invalid continuation byte); "
        "save the file as UTF-8")


def test_a_utf8_byte_order_mark_is_fine(tmp_path):
    directory = stack_dir(tmp_path, {"key.yaml": b"\xef\xbb\xbf" + (HEAD + "  alias: main\n").encode()})
    assert run("validate", directory).exit_code == 0


def test_a_file_over_the_size_cap_says_so(tmp_path):
    directory = stack_dir(tmp_path, {"bad.yaml": HEAVY["over-5MB"]})
    size = (directory / "bad.yaml").stat().st_size
    assert one_error(run("validate", directory)) == (
        f"Error: {directory / 'bad.yaml'}:1:1: file is {size:,} bytes, over the limit of 5,242,880 bytes (5 MB) "
        "for one manifest file; split it into several files")


def test_a_file_at_the_size_cap_is_read(tmp_path):
    text = HEAD + "  alias: main\n"
    text += "#" * (loader.MAX_FILE_BYTES - len(text) - 1) + "\n"
    directory = stack_dir(tmp_path, {"key.yaml": text})
    assert (directory / "key.yaml").stat().st_size == loader.MAX_FILE_BYTES
    assert run("validate", directory).exit_code == 0


def test_500k_keys_in_one_mapping_is_one_error_at_the_key_past_the_limit(tmp_path):
    directory = stack_dir(tmp_path, {"bad.yaml": HEAVY["500k-keys"]})
    line = one_error(run("validate", directory))
    assert line.startswith(f"Error: {directory / 'bad.yaml'}:5:")
    assert line.endswith(f"invalid YAML: a mapping of more than {loader.MAX_ENTRIES:,} keys")


def test_a_huge_list_is_one_error_too(tmp_path):
    directory = stack_dir(tmp_path, {"bad.yaml": HEAVY["500k-item-list"]})
    assert one_error(run("validate", directory)).endswith(
        f"invalid YAML: a list of more than {loader.MAX_ENTRIES:,} items")


def test_many_nodes_in_one_file_are_refused_before_they_are_built(tmp_path):
    lists = "".join(f"  k{i}: [" + ",".join(["1"] * 1000) + "]\n" for i in range(30))
    directory = stack_dir(tmp_path, {"bad.yaml": HEAD.replace("spec:\n", "spec:\n  policy:\n") +
                                     lists.replace("  k", "    k")})
    assert one_error(run("validate", directory)).endswith(
        f"invalid YAML: more than {loader.MAX_NODES:,} YAML nodes in one file; split it into several files")


def test_200k_documents_stop_at_the_document_limit(tmp_path):
    directory = stack_dir(tmp_path, {"bad.yaml": HEAVY["200k-documents"]})
    found = errors_of(run("validate", directory))
    assert found[0] == (f"Error: {directory / 'bad.yaml'}:{2 * loader.MAX_DOCUMENTS + 1}:1: more than "
                        f"{loader.MAX_DOCUMENTS:,} YAML documents in one file; split it into several files")
    assert len(found) <= loader.MAX_DOCUMENTS + 1


def _cli_caps_errors() -> bool:
    """Whether the CLI lists at most the first 100 errors (a change in reconciler/cli.py)."""
    import inspect

    from reconciler import cli
    return "MAX_LISTED" in inspect.getsource(cli)


@pytest.mark.xfail(not _cli_caps_errors(), strict=True,
                   reason="needs the reconciler/cli.py change reported for issue 11 item 6")
def test_200k_documents_list_the_first_100_errors_then_a_count(tmp_path):
    directory = stack_dir(tmp_path, {"bad.yaml": HEAVY["200k-documents"]})
    result = run("validate", directory)
    found = errors_of(result)
    assert len(found) == 100
    assert f"and {loader.MAX_DOCUMENTS + 1 - 100:,} more errors" in result.output


@pytest.mark.parametrize("text", [
    HEAD + "  alias: " + "x" * 100_000 + "\n",
    "kind: " + "x" * 100_000 + "\n",
    HEAD + "  " + "k" * 100_000 + ": 1\n",
    HEAD + "  tags: {" + "k" * 100_000 + ": v}\n",
    HEAD + "  tags: {a: " + "v" * 100_000 + "}\n",
    HEAD + "  description: " + "d" * 100_000 + "\n",
    HEAD + "  spec: " + "S" * 100_000 + "\n",
    HEAD + "  alias: a\n  alias: " + "x" * 100_000 + "\n" + "  " + "k" * 100_000 + ": 1\n  " + "k" * 100_000 + ": 2\n",
    HEAD.replace("main", "m" * 100_000) + "  alias: main\n",
    HEAD + "  x: *" + "a" * 100_000 + "\n",
    HEAD + "  deletionWindowDays: " + "9" * 100_000 + "\n",
], ids=["alias", "kind", "field", "tag-key", "tag-value", "description", "enum", "duplicate-key", "name",
        "undefined-alias", "huge-integer"])
def test_an_over_long_value_is_quoted_at_most_200_characters(tmp_path, text):
    directory = stack_dir(tmp_path, {"bad.yaml": text})
    found = errors_of(run("validate", directory))
    assert found
    for line in found:
        assert len(line) < len(str(directory / "bad.yaml")) + 700, line[:400]
        longest = max(len(run_) for run_ in _runs(line))
        assert longest <= loader.MAX_QUOTED + 1, line[:400]


def _runs(line: str) -> list[str]:
    """Runs of one repeated character: what a quoted over-long value leaves in a line."""
    runs, start = [], 0
    for i in range(1, len(line) + 1):
        if i == len(line) or line[i] != line[start]:
            runs.append(line[start:i])
            start = i
    return runs


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _secret(header: bytes) -> str:
    sealed = f"rcl:v1:{_b64(header)}:{_b64(b'wrapped')}:{_b64(b'n' * 12)}:{_b64(b'c' * 16)}"
    return VAULT + "---\n" + ("apiVersion: reconciler/v1\nkind: Secret\nmetadata: {name: s}\n"
                              f"spec: {{encrypted: '{sealed}'}}\n")


def _envelope_is_hardened() -> bool:
    """Whether reconciler/crypto/envelope.py refuses these headers (the change reported for item 6)."""
    deep = ("[" * 5000 + "]" * 5000).encode()
    try:
        envelope.Envelope.parse(f"rcl:v1:{_b64(deep)}:{_b64(b'w')}:{_b64(b'n' * 12)}:{_b64(b'c' * 16)}")
    except envelope.EnvelopeError:
        pass
    except RecursionError:
        return False
    header = json.dumps({"a": "SYMMETRIC_DEFAULT", "c": {"secret": "s", "stack": "test", "vault": "v"},
                         "k": "not-an-arn"}, sort_keys=True, separators=(",", ":")).encode()
    try:
        envelope.Envelope.parse(f"rcl:v1:{_b64(header)}:{_b64(b'w')}:{_b64(b'n' * 12)}:{_b64(b'c' * 16)}")
    except envelope.EnvelopeError:
        return True
    return False


HOSTILE_HEADERS = {
    "deeply-nested": ("[" * 100_000 + "]" * 100_000).encode(),
    "nested-in-binding": json.dumps({"a": "SYMMETRIC_DEFAULT", "k": "arn:aws:kms:us-east-1:123456789012:key/x",
                                     "c": {"secret": "s", "stack": "test", "vault": "v"}}).encode()
    .replace(b'"s"', b"[" * 3000 + b"]" * 3000),
    "non-arn-key": json.dumps({"a": "SYMMETRIC_DEFAULT", "c": {"secret": "s", "stack": "test", "vault": "v"},
                               "k": "not-an-arn"}, sort_keys=True, separators=(",", ":")).encode(),
    "non-string-binding": json.dumps({"a": "SYMMETRIC_DEFAULT", "c": {"secret": 1, "stack": "test", "vault": "v"},
                                      "k": "arn:aws:kms:us-east-1:123456789012:key/x"}, sort_keys=True,
                                     separators=(",", ":")).encode(),
}


@pytest.mark.xfail(not _envelope_is_hardened(), strict=True,
                   reason="needs the reconciler/crypto/envelope.py change reported for issue 11 item 6")
@pytest.mark.parametrize("name", list(HOSTILE_HEADERS))
def test_a_hostile_envelope_header_is_one_positioned_error(tmp_path, name):
    directory = stack_dir(tmp_path, {"key.yaml": HEAD + "  alias: main\n", "secret.yaml": _secret(HOSTILE_HEADERS[name])})
    line = one_error(run("validate", directory))
    assert line.startswith(f"Error: {directory / 'secret.yaml'}:9:19: Secret/s: encrypted: malformed envelope"), line


def test_a_deeply_nested_envelope_header_never_hangs_or_crashes_the_process(tmp_path):
    directory = stack_dir(tmp_path, {"key.yaml": HEAD + "  alias: main\n",
                                     "secret.yaml": _secret(HOSTILE_HEADERS["deeply-nested"])})
    code, stderr, _seconds, peak_mb = bounded(directory)
    assert code == 1 and "Traceback" not in stderr, stderr
    assert peak_mb < LIMIT_RSS_MB


# (text after the document head, expected message fragment): names AWS rejects
NAMES = [
    (HEAD + "  alias: alias/\n", 'spec.alias: "alias/" is not valid; expected a KMS alias name'),
    (HEAD + "  alias: alias/aws/x\n", 'spec.alias: "alias/aws/x" is reserved'),
    (HEAD + "  alias: aws/x\n", 'spec.alias: "aws/x" is reserved'),
    (HEAD + "  alias: alias/a b\n", 'spec.alias: "alias/a b" is not valid'),
    (HEAD + "  alias: alias/a:b\n", 'spec.alias: "alias/a:b" is not valid'),
    (HEAD + "  alias: alias/" + "a" * 251 + "\n", "is not valid; expected a KMS alias name"),
    (HEAD + "  alias: " + "a" * 251 + "\n", "is not valid; expected a KMS alias name"),
    (HEAD + '  alias: "main\\n"\n', 'spec.alias: "main\\n" is not valid'),
    (HEAD + "  tags: {'aws:team': x}\n", 'spec.tags: key "aws:team" is reserved'),
    (HEAD + "  tags: {'AWS:team': x}\n", 'spec.tags: key "AWS:team" is reserved'),
    (HEAD + "  tags: {team: 'aws:x'}\n", 'spec.tags.team: "aws:x" is reserved'),
    (HEAD + "  tags: {'a*b': x}\n", 'spec.tags: key "a*b" is not valid; expected a tag key'),
    (HEAD + "  tags: {team: 'a;b'}\n", 'spec.tags.team: "a;b" is not valid; expected a tag value'),
    (HEAD + "  tags: {" + "k" * 129 + ": x}\n", "is 129 characters long; expected 1 to 128 characters"),
    (HEAD + "  tags: {k: " + "v" * 257 + "}\n", "is 257 characters long; expected at most 256 characters"),
    (HEAD + "  tags: {'': x}\n", 'spec.tags: key "" is 0 characters long'),
    (HEAD + "  tags: {team: 1}\n", "spec.tags.team: expected string, got int"),
    (ROLE + "  roleName: rôle\n", 'spec.roleName: "rôle" is not valid; expected the IAM role name'),
    (ROLE + "  roleName: " + "r" * 65 + "\n", "is not valid; expected the IAM role name"),
    (ROLE + "  roleName: 'a b'\n", 'spec.roleName: "a b" is not valid'),
    (ROLE + "  path: /a b/\n", 'spec.path: "/a b/" is not valid; expected an IAM path'),
    (ROLE + "  path: /a\n", 'spec.path: "/a" is not valid'),
    (ROLE + "  path: //\n", 'spec.path: "//" is not valid'),
    (ROLE + "  path: /é/\n", 'spec.path: "/é/" is not valid'),
    (ROLE + "  path: /" + "a/" * 300 + "\n", "is 601 characters long; expected at most 512 characters"),
    (ROTATION + "  userName: 'bob smith'\n", 'spec.userName: "bob smith" is not valid; expected the IAM user'),
    (ROTATION + "  userName: " + "u" * 65 + "\n", "is not valid; expected the IAM user"),
    (ROTATION + "  userName: ü\n", 'spec.userName: "ü" is not valid'),
]


@pytest.mark.parametrize("text,message", NAMES, ids=[f"{i}-{m[:30]}" for i, (_, m) in enumerate(NAMES)])
def test_names_aws_rejects_are_refused(tmp_path, text, message):
    files = {"bad.yaml": text}
    if "AccessKeyRotation" in text:
        files["vault.yaml"] = HEAD + "  alias: main\n---\n" + VAULT
    directory = stack_dir(tmp_path, files)
    found = errors_of(run("validate", directory))
    assert any(message in line for line in found), found
    assert all(line.startswith(f"Error: {directory}") for line in found), found


@pytest.mark.parametrize("text", [
    HEAD + "  alias: alias/main\n", HEAD + "  alias: main/x_y-z\n", HEAD + "  alias: alias/alias/x\n",
    HEAD + "  alias: alias/" + "a" * 250 + "\n", HEAD + "  alias: aws\n",
    HEAD + "  alias: main\n  tags: {'Cost Center': 'a.b:c/d=e+f-g@h', team: ''}\n",
    ROLE + "  roleName: Role_+=,.@-1\n  path: /a/b.c/\n", ROLE + "  path: /\n",
])
def test_names_aws_accepts_stay_valid(tmp_path, text):
    directory = stack_dir(tmp_path, {"ok.yaml": text})
    result = run("validate", directory)
    assert result.exit_code == 0, result.output


def test_a_dangling_symlink_is_reported(tmp_path):
    directory = stack_dir(tmp_path)
    (directory / "gone.yaml").symlink_to(tmp_path / "nowhere.yaml")
    assert one_error(run("validate", directory)) == (
        f"Error: {directory / 'gone.yaml'}:1:1: dangling symlink: {tmp_path / 'nowhere.yaml'} does not exist")


def test_a_dangling_symlink_without_a_manifest_name_is_reported_too(tmp_path):
    directory = stack_dir(tmp_path)
    (directory / "shared").symlink_to(tmp_path / "missing-dir")
    assert "dangling symlink to" in one_error(run("validate", directory))


def test_a_looping_symlink_is_reported(tmp_path):
    directory = stack_dir(tmp_path)
    (directory / "a.yaml").symlink_to(directory / "b.yaml")
    (directory / "b.yaml").symlink_to(directory / "a.yaml")
    found = errors_of(run("validate", directory))
    assert found == [f"Error: {directory / name}:1:1: symlink loop ({name} -> {directory / other} leads back to itself)"
                     for name, other in (("a.yaml", "b.yaml"), ("b.yaml", "a.yaml"))]


def test_a_symlink_to_a_device_is_reported_not_read(tmp_path):
    directory = stack_dir(tmp_path)
    (directory / "null.yaml").symlink_to("/dev/null")
    (directory / "zero.yml").symlink_to("/dev/zero")  # read to the end, this would never stop
    assert errors_of(run("validate", directory)) == [
        f"Error: {directory / 'null.yaml'}:1:1: cannot read: a symlink to /dev/null, a character device, "
        "not a regular file",
        f"Error: {directory / 'zero.yml'}:1:1: cannot read: a symlink to /dev/zero, a character device, "
        "not a regular file"]


def test_a_symlink_named_like_a_manifest_to_a_directory_is_reported(tmp_path):
    directory = stack_dir(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    (directory / "more.yaml").symlink_to(tmp_path / "elsewhere")
    assert one_error(run("validate", directory)) == (
        f"Error: {directory / 'more.yaml'}:1:1: a symlink to a directory named like a manifest file; "
        "rename it, or remove it")


def test_a_symlinked_directory_is_loaded(tmp_path):
    directory = stack_dir(tmp_path)
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "key.yaml").write_text(HEAD + "  alias: main\n")
    (directory / "keys").symlink_to(shared)
    result = run("validate", directory)
    assert result.exit_code == 0, result.output
    assert "1 resource(s)" in result.output
    (shared / "key.yaml").write_text(HEAD + "  alias: alias/\n")
    assert one_error(run("validate", directory)).startswith(f"Error: {directory / 'keys' / 'key.yaml'}:5:10: ")


def test_a_symlinked_directory_that_loops_is_reported(tmp_path):
    directory = stack_dir(tmp_path)
    (directory / "sub").mkdir()
    (directory / "sub" / "up").symlink_to(directory)
    assert one_error(run("validate", directory)) == (
        f"Error: {directory / 'sub' / 'up'}:1:1: symlink loop: up -> {directory} is a directory that contains it; "
        "remove it")


def test_a_second_symlink_to_loaded_manifests_is_reported(tmp_path):
    directory = stack_dir(tmp_path)
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "key.yaml").write_text(HEAD + "  alias: main\n")
    (directory / "a").symlink_to(shared)
    (directory / "b").symlink_to(shared)
    assert one_error(run("validate", directory)) == (
        f"Error: {directory / 'b'}:1:1: symlink to {shared}, whose manifests are already loaded as "
        f"{directory / 'a'}; remove one of the two")


def test_a_symlink_to_a_directory_without_manifests_is_harmless(tmp_path):
    """Like a vault's local store reached through a symlink (test_i6_manifest_shared)."""
    directory = stack_dir(tmp_path, {"key.yaml": HEAD + "  alias: main\n"})
    (directory / "data").mkdir()
    (directory / "data" / "entry.json").write_text("{}")
    (directory / "link").symlink_to(directory / "data")
    assert run("validate", directory).exit_code == 0


def test_a_symlink_to_a_directory_above_is_a_loop(tmp_path):
    directory = stack_dir(tmp_path)
    (directory / "root").symlink_to("/")
    assert one_error(run("validate", directory)) == (
        f"Error: {directory / 'root'}:1:1: symlink loop: root -> / is a directory that contains it; remove it")


def test_a_symlink_to_a_huge_tree_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(loader, "MAX_WALK", 50)
    directory = stack_dir(tmp_path)
    tree = tmp_path / "tree"
    for i in range(60):
        (tree / f"d{i}").mkdir(parents=True)
    (directory / "big").symlink_to(tree)
    (tree / "d0" / "key.yaml").write_text("kind: Nope\n")  # not read: the tree is refused as a whole
    assert one_error(run("validate", directory)) == (
        f"Error: {directory}: more than 50 files and directories under the stack directory (does a symlink "
        "point at a large tree?); not read further")


def test_the_stack_directory_itself_must_be_a_directory(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    result = run("validate", tmp_path / "pipe")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "expected a directory of manifests" in result.output
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    result = run("validate", tmp_path / "link")
    assert result.exit_code == 1 and "dangling symlink" in result.output
