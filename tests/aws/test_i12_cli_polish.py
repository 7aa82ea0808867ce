"""CLI polish (issue 12) against the sandbox: apply's progress (one line per
completed action without a terminal, one live display on one), the --target
warning, saved plans (0600, no absolute path, moved with their stack, not
stale after a comment-only edit, applied without being shown twice) and DIR
as the last argument of the state commands."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat

import pytest

from tests.conftest import converse, run, state_of

KEYS = {f"{name}.yaml": f"""\
apiVersion: reconciler/v1
kind: KmsProvider
metadata: {{name: {name}}}
spec:
  description: {name} key
  protect: false
  deletionWindowDays: 7
""" for name in ("alpha", "beta")}
DONE = re.compile(r"\[(\d)/(\d)\] \+ (KmsProvider/\w+): create done \(\d+\.\ds\)")


def test_without_a_terminal_apply_logs_one_line_per_completed_action(aws, stack):
    directory = stack(KEYS)
    result = run("apply", directory, "--auto-approve", "--parallelism", "1")  # in the plan's order
    assert result.exit_code == 0, result.output
    logged = result.stderr.splitlines()
    assert [DONE.fullmatch(line).groups() if DONE.fullmatch(line) else line for line in logged] == [
        ("1", "2", "KmsProvider/alpha"), ("2", "2", "KmsProvider/beta")]
    assert "done" not in result.stdout  # the log is on stderr; stdout has the plan and the summary
    assert result.stdout.endswith(f"Apply complete: 2 create. State serial {state_of(directory)['serial']}.\n")
    quiet = run("plan", directory)
    assert quiet.exit_code == 0 and quiet.stderr == ""  # reads are not logged


def test_side_by_side_apply_logs_one_line_per_completed_action_counted_in_completion_order(aws, stack):
    directory = stack(KEYS)
    result = run("apply", directory, "--auto-approve")  # --parallelism 10: the two keys are independent
    assert result.exit_code == 0, result.output
    found = [DONE.fullmatch(line).groups() if DONE.fullmatch(line) else line for line in result.stderr.splitlines()]
    assert [(done, total) for done, total, _address in found] == [("1", "2"), ("2", "2")]
    assert sorted(address for _done, _total, address in found) == ["KmsProvider/alpha", "KmsProvider/beta"]


def test_on_a_terminal_apply_shows_one_live_display(aws, stack, monkeypatch):
    monkeypatch.setenv("TERM", "xterm")
    directory = stack(KEYS)
    code, output = converse(["apply", str(directory), "--auto-approve"], [])
    assert code == 0, output
    assert "\x1b[?25l" in output and "\x1b[?25h" in output  # rich's live display: cursor hidden, then back
    assert "2/2" in output  # its bar counts the actions
    assert not re.search(r"^\[\d/\d\] ", output, re.MULTILINE)  # no line per resource
    assert "Apply complete: 2 create." in output


def test_target_warns_that_the_plan_is_partial(aws, stack):
    directory = stack(KEYS)
    targeted = run("plan", directory, "--target", "KmsProvider/alpha")
    assert targeted.exit_code == 0, targeted.output
    assert targeted.stderr.splitlines()[0].startswith(
        "Warning: resource targeting is in effect (KmsProvider/alpha and what they depend on): the plan may not "
        "show every change")
    assert "Plan: 1 to create" in targeted.stdout
    applied = run("apply", directory, "--auto-approve", "--target", "KmsProvider/beta")
    assert applied.exit_code == 0, applied.output
    assert "Warning: resource targeting is in effect (KmsProvider/beta and what they depend on): applied changes " \
           "may be incomplete" in applied.stderr
    assert "Warning" not in run("plan", directory).stderr


def test_a_saved_plan_is_0600_holds_no_absolute_path_and_applies_moved_with_its_stack(aws, tmp_path, stack):
    directory = stack(KEYS)  # tmp_path/stack
    planfile = tmp_path / "change.plan"
    planfile.write_text("old")
    os.chmod(planfile, 0o644)
    old_umask = os.umask(0)
    try:
        made = run("plan", directory, "--out", planfile)
    finally:
        os.umask(old_umask)
    assert made.exit_code == 0, made.output
    assert stat.S_IMODE(planfile.stat().st_mode) == 0o600
    saved = planfile.read_text()
    assert str(tmp_path) not in saved and os.path.realpath(tmp_path) not in saved
    assert json.loads(saved)["directory"] == "stack"

    moved = tmp_path.parent / f"{tmp_path.name}-moved"
    shutil.move(tmp_path, moved)
    try:
        applied = run("apply", moved / "change.plan", "--auto-approve")
        assert applied.exit_code == 0, applied.output
        assert applied.stdout.startswith(f"Applying the saved plan {moved / 'change.plan'}, made ")
        assert "will perform the following actions" not in applied.output  # reviewed once, not shown again
        assert ": 2 to create, 0 to update, 0 to replace, 0 to destroy.\n" in applied.stdout
        assert sorted(state_of(moved / "stack")["resources"]) == ["KmsProvider/alpha", "KmsProvider/beta"]
    finally:
        shutil.move(moved, tmp_path)


def test_a_comment_only_edit_keeps_a_saved_plan_good_a_real_one_does_not(aws, tmp_path, stack, calls):
    directory = stack(KEYS)
    planfile = tmp_path / "change.plan"
    assert run("plan", directory, "--out", planfile).exit_code == 0
    key = directory / "alpha.yaml"
    key.write_text("# reviewed in PR 7\n" + key.read_text().replace("alpha key", "alpha key  # payments"))
    (directory / "beta.yaml").write_text(KEYS["beta.yaml"].replace("protect: false\n", "protect: no\n"))

    other = tmp_path / "other.plan"
    assert run("plan", directory, "--out", other).exit_code == 0
    (directory / "beta.yaml").write_text(KEYS["beta.yaml"].replace("beta key", "beta key, changed"))
    calls.clear()
    stale = run("apply", other, "--auto-approve")
    assert stale.exit_code == 1
    assert stale.stderr == (f"Error: saved plan is stale: the manifests in {directory} changed since it was "
                            "made; run plan again\n")
    assert calls.writes == []

    (directory / "beta.yaml").write_text(KEYS["beta.yaml"])
    good = run("apply", planfile, "--auto-approve")
    assert good.exit_code == 0, good.output
    assert "Apply complete: 2 create." in good.stdout


@pytest.mark.parametrize("old_form", [False, True], ids=["DIR", "--dir"])
def test_state_commands_take_dir_last(aws, stack, old_form):
    directory = stack({"alpha.yaml": KEYS["alpha.yaml"]})
    assert run("apply", directory, "--auto-approve").exit_code == 0

    def where(*args: str) -> list[str]:
        return [*args, "--dir", str(directory)] if old_form else [*args, str(directory)]

    whole = run("state", "show", *where())
    assert whole.exit_code == 0, whole.output
    assert sorted(json.loads(whole.stdout)["resources"]) == ["KmsProvider/alpha"]
    one = run("state", "show", *where("KmsProvider/alpha"))
    assert one.exit_code == 0, one.output
    assert json.loads(one.stdout)["ids"] == state_of(directory)["resources"]["KmsProvider/alpha"]["ids"]
    moved = run("state", "mv", *where("KmsProvider/alpha", "KmsProvider/renamed"))
    assert moved.exit_code == 0, moved.output
    removed = run("state", "rm", *where("KmsProvider/renamed"))
    assert removed.exit_code == 0, removed.output
    assert state_of(directory)["resources"] == {}
    assert run("lease", "list", *where()).stdout == ""
