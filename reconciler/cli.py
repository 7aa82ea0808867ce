"""The command line: parse arguments, call the engine, render. Thin.

Every expected failure is a ReconcilerError: printed on stderr as one line
per problem, exit 1, never a traceback (set RECONCILER_DEBUG=1 to see one).
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.util
import json
import os
import pathlib
import re
import sys
import traceback
from collections.abc import Callable
from typing import Any

import click

from reconciler import __version__, engine, errors, importer, leases, multistack, planfile, policy, secret_access
from reconciler.manifest import model as manifest
from reconciler.manifest import schema
from reconciler.plan import freshness
from reconciler.refresh import PARALLELISM
from reconciler.render import structured, text
from reconciler.state import edits as state_edits
from reconciler.state import model as state_model

FORMATS = click.Choice(["text", "json", "markdown"])
MAX_LISTED = 100  # manifest errors printed; the rest are counted (200,000 bad documents stay readable)
PARALLELISM_HELP = ("At most this many AWS calls side by side (refresh and plan-time checks), and actions apply "
                    "runs side by side in dependency order (1: one at a time, in the plan's order).")
PARALLELISM_RANGE = click.IntRange(1, 64)  # aws.session.MAX_PARALLELISM
LOCK_TIMEOUT_HELP = "How long to wait for the state lock."
FORCE_ROLLBACK_HELP = "Go on with a state whose serial went backwards (restored from an older copy)."
REGENERATE_LOST_HELP = "Generate new values for generated secrets whose KMS key no longer exists."
REFRESH_TTL_HELP = ("Skip the refresh when the state says nothing can have changed: the manifests are the ones "
                    "last applied in full, no run was interrupted, and every object in scope was read from live "
                    "AWS within DURATION (300, 90s, 5m, 1h; at most 24h) by the last apply. Out-of-band changes "
                    "since that read are not seen (drift always reads live AWS); a plan that would change "
                    "anything refreshes all the same.")
REQUIRE_REMOTE_STATE = click.option(
    "--require-remote-state", is_flag=True, envvar="RECONCILER_REQUIRE_REMOTE_STATE",
    help="Refuse a stack whose state is local (CI: a runner's disk is gone after the job); "
         "also RECONCILER_REQUIRE_REMOTE_STATE=1.")


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty()) and not os.environ.get("CI")
    except (AttributeError, ValueError):
        return False


_STEP = re.compile(r"\[(\d+)/(\d+)\] ")  # "[3/10] ...": how far along a refresh or an apply is


class _Progress:
    """Where progress goes while the engine works.

    On a terminal (stderr, and not CI): one live display (rich), transient,
    showing the latest step, a bar when the step says how far along it is
    ("[3/10] ...") and the time taken. Otherwise one line on stderr per
    completed action of an apply (``Completed`` messages), nothing else: CI
    logs are the audit trail of what was done, not of every read.

    Used as ``with _progress() as progress:`` around one engine call; the
    display is gone before anything else is printed or asked."""

    def __init__(self, doing: str) -> None:
        self.doing = doing  # what the display says until the first step
        self.display: Any = None  # a rich.progress.Progress while it runs
        self.task: Any = None

    def __enter__(self) -> _Progress:
        if _is_tty(sys.stderr):
            from rich import console, progress  # only for a terminal: CI and pipes never import it
            self.display = progress.Progress(
                progress.SpinnerColumn(), progress.TextColumn("{task.description}", markup=False),
                progress.BarColumn(), progress.MofNCompleteColumn(), progress.TimeElapsedColumn(),
                console=console.Console(stderr=True, highlight=False, emoji=False),
                transient=True, redirect_stdout=False, redirect_stderr=False)
            self.task = self.display.add_task(self.doing, total=None)
            self.display.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.display is not None:
            self.display.stop()
            self.display = None

    def __call__(self, message: str) -> None:
        if self.display is None or self.task is None:
            if isinstance(message, engine.executor.Completed):
                click.echo(message, err=True)
            return
        step = _STEP.match(message)
        if step is None:
            self.display.update(self.task, description=message)
            return
        done = int(step[1]) - (0 if isinstance(message, engine.executor.Completed) or
                               not message.endswith("...") else 1)
        self.display.update(self.task, description=message[step.end():], completed=done, total=int(step[2]))

    def echo(self, chunk: str) -> None:
        """Print on stdout while the display runs (a stack's section of a
        report): above the display when both are on one terminal."""
        if self.display is not None and _is_tty(sys.stdout):
            self.display.stop()
            click.echo(chunk, nl=False)
            self.display.start()
        else:
            click.echo(chunk, nl=False)


def _progress(doing: str = "reading live AWS") -> _Progress:
    return _Progress(doing)


def _warn(diagnostics: Any) -> None:
    for diagnostic in diagnostics:
        click.echo(str(diagnostic), err=True)


def _stacks_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--changed-since and --stack-parallelism, for the commands that take a tree of several stacks."""
    command = click.option("--stack-parallelism", default=multistack.STACK_WORKERS, show_default=True,
                           type=PARALLELISM_RANGE,
                           help="In a tree of several stacks: at most this many stacks side by side.")(command)
    return click.option("--changed-since", metavar="REF",
                        help="Only the stacks whose manifests changed since this git ref (REF...HEAD, plus "
                             "uncommitted changes).")(command)


DIR_OPTION_HELP = "Deprecated: give the stack directory as DIR, the last argument."


def _dir_argument(command: Callable[..., Any]) -> Callable[..., Any]:
    """[DIR], the stack directory (default .), as the last argument, and the
    --dir it replaces, hidden and kept for existing scripts. Put it below the
    command's other arguments."""
    command = click.option("--dir", "dir_option", hidden=True, type=click.Path(file_okay=False),
                           help=DIR_OPTION_HELP)(command)
    return click.argument("directory", required=False, metavar="[DIR]", type=click.Path(file_okay=False))(command)


def _stack_dir(directory: str | None, dir_option: str | None) -> str:
    """The stack directory from DIR or the deprecated --dir (not both, unless equal)."""
    if dir_option is None:
        return directory or "."
    if directory is not None and os.path.normpath(directory) != os.path.normpath(dir_option):
        raise errors.ConfigError(f"the stack directory is given twice ({directory} and --dir {dir_option}); "
                                 "give it once, as the last argument")
    if _is_tty(sys.stderr):
        click.echo("Warning: --dir is deprecated; give the stack directory as the last argument.", err=True)
    return dir_option


def _is_address(text: str) -> bool:
    """KIND/NAME with a kind of the spec (a stack directory never reads as one
    unless named like it; ./KmsProvider/x is a directory)."""
    kind, slash, name = text.partition("/")
    return bool(slash) and kind in schema.KINDS and bool(name) and "/" not in name


def _target_warning(targets: tuple[str, ...] | list[str], *, applying: bool = False) -> None:
    """Terraform's "Resource targeting is in effect": a targeted plan is partial."""
    if not targets:
        return
    what = "applied changes may be incomplete" if applying else "the plan may not show every change"
    click.echo(f"Warning: resource targeting is in effect ({', '.join(targets)} and what they depend on): {what}; "
               "the manifests may ask for more. Use --target for exceptional cases only (an error to fix, a "
               "partial roll-out), then plan without it.", err=True)


def _refresh_ttl(text: str | None, *, no_refresh: bool = False) -> datetime.timedelta | None:
    """--refresh-ttl DURATION, checked before any work (ConfigError in one line)."""
    if text is None:
        return None
    if no_refresh:
        raise errors.ConfigError("--refresh-ttl and --no-refresh: give one (--no-refresh never reads live AWS; "
                                 "--refresh-ttl reads it unless every object was read within DURATION)")
    return freshness.parse_ttl(text)


def _many(command: multistack.Command, found: multistack.Layout, fmt: str, workers: int,
          ref: str | None) -> None:
    """Run a command on several stacks: one combined report, the worst exit code."""
    with _progress("working through the stacks") as progress:
        code = multistack.report(command, found, fmt, progress.echo, workers=workers, progress=progress, ref=ref)
    sys.exit(code)


class UsageError(click.UsageError):
    """click exits 2 on a usage error; ours exit 1, so that with
    --detailed-exitcode 2 only ever means changes or drift."""

    exit_code = 1


def _usage_exit_1(exc: click.UsageError) -> click.UsageError:
    return UsageError(exc.format_message(), exc.ctx)


class ReconcilerGroup(click.Group):
    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise _usage_exit_1(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _usage_exit_1(exc) from None
        except BrokenPipeError:
            # the reader went away (`state list | head`): stop quietly, as Unix tools do
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(1)
        except errors.ManifestError as exc:
            for diagnostic in exc.diagnostics[:MAX_LISTED]:
                click.echo(f"Error: {diagnostic}", err=True)
            count = len(exc.diagnostics)
            if count > MAX_LISTED:
                rest = count - MAX_LISTED
                click.echo(f"... and {rest:,} more error{'s' if rest != 1 else ''} (only the first "
                           f"{MAX_LISTED} are listed)", err=True)
            click.echo(f"{count} error{'s' if count != 1 else ''} found.", err=True)
            ctx.exit(exc.exit_code)
        except errors.ReconcilerError as exc:
            for line in str(exc).splitlines() or [type(exc).__name__]:
                click.echo(f"Error: {line}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("Interrupted; state was saved after the last completed action.", err=True)
            ctx.exit(130)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
            if os.environ.get("RECONCILER_DEBUG"):
                traceback.print_exc()
            click.echo(f"Error: internal error: {type(exc).__name__}: {exc} "
                       "(set RECONCILER_DEBUG=1 for a traceback, and please report it)", err=True)
            ctx.exit(1)


@click.group(cls=ReconcilerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reconciler")
def main() -> None:
    """GitOps for customer-managed AWS KMS keys and the secrets they protect.

    Every command that works on a stack takes its directory as DIR, the last
    argument (default: the current directory).

    \b
    Example:
      reconciler validate examples/quickstart
      reconciler plan examples/quickstart --out change.plan
      reconciler apply change.plan"""


# -- validate --------------------------------------------------------------------
@main.command()
@click.argument("directory", default=".", metavar="[DIR]", type=click.Path(file_okay=False))
@click.option("--strict", is_flag=True, help="Treat lint warnings (wildcards, open principals) as errors.")
@_stacks_options
def validate(directory: str, strict: bool, changed_since: str | None, stack_parallelism: int) -> None:
    """Check schemas, references and lint of the stack in DIR; list every problem.

    DIR may also be a tree of several stacks (each directory holding a Stack
    document).

    \b
    Example:
      reconciler validate examples/quickstart --strict"""
    found = multistack.layout(directory, changed_since)
    if found is not None:
        _many(multistack.validating(strict=strict), found, "text", stack_parallelism, changed_since)
    config, diagnostics = manifest.load(directory)
    if strict:
        diagnostics = [dataclasses.replace(d, severity="error") for d in diagnostics]
    failures = [d for d in diagnostics if d.severity == "error"]
    if failures or config is None:
        raise errors.ManifestError(failures or diagnostics)
    _warn(diagnostics)
    click.echo(f"Valid: stack {config.stack.name}, {len(config.resources)} resource(s).")


# -- policy ----------------------------------------------------------------------
@main.command("policy")
@click.argument("directory", default=".", metavar="[DIR]", type=click.Path(file_okay=False))
@click.option("--for", "for_name", metavar="NAME",
              help="The policy an identity the stack declares is granted (an IamRole), not apply's own.")
def policy_command(directory: str, for_name: str | None) -> None:
    """Print the least-privilege IAM policy (JSON) apply needs for the stack in DIR.

    \b
    Example:
      reconciler policy examples/pulumi-cmk --for pulumi-cmk"""
    workspace = engine.open_stack(directory)
    _warn(workspace.warnings)
    found = policy.for_identity(workspace, for_name) if for_name else policy.for_stack(workspace)
    click.echo(json.dumps(found.document, indent=2))
    for note in found.notes:
        click.echo(f"note: {note}", err=True)


# -- plan ------------------------------------------------------------------------
def _render_plan(plan: Any, fmt: str) -> str:
    match fmt:
        case "json":
            return structured.plan_json(plan)
        case "markdown":
            return structured.plan_markdown(plan)
        case _:
            return text.render_plan(plan, color=_is_tty(sys.stdout))


@main.command()
@click.argument("directory", default=".", metavar="[DIR]", type=click.Path(file_okay=False))
@click.option("--out", "out", type=click.Path(dir_okay=False), help="Save the plan for apply.")
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True,
              help="text for people, json shaped like `terraform show -json`, markdown for a pull-request "
                   "comment.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when there are changes (0: none, 1: error).")
@click.option("--target", "targets", multiple=True, metavar="KIND/NAME",
              help="Limit to this resource and what it depends on (repeatable).")
@click.option("--no-refresh", is_flag=True, help="Trust the recorded state; do not read live AWS.")
@click.option("--refresh-ttl", "refresh_ttl", metavar="DURATION", help=REFRESH_TTL_HELP)
@click.option("--regenerate-lost", is_flag=True, help=REGENERATE_LOST_HELP)
@click.option("--parallelism", default=PARALLELISM, show_default=True, type=PARALLELISM_RANGE, help=PARALLELISM_HELP)
@click.option("--force", is_flag=True, help=FORCE_ROLLBACK_HELP)
@REQUIRE_REMOTE_STATE
@_stacks_options
def plan(directory: str, out: str | None, fmt: str, detailed_exitcode: bool,
         targets: tuple[str, ...], no_refresh: bool, refresh_ttl: str | None, regenerate_lost: bool,
         parallelism: int, force: bool, require_remote_state: bool, changed_since: str | None,
         stack_parallelism: int) -> None:
    """Show what apply would change in the stack in DIR (or a tree of stacks).

    \b
    Example:
      reconciler plan examples/quickstart --out change.plan
      reconciler plan stacks/ --changed-since origin/main --format markdown
      reconciler plan examples/quickstart --refresh-ttl 5m"""
    ttl = _refresh_ttl(refresh_ttl, no_refresh=no_refresh)
    found = multistack.layout(directory, changed_since)
    if found is not None:
        if out or targets:
            raise errors.ConfigError(f"{'--out' if out else '--target'} is for one stack; give its directory "
                                     "(without --changed-since)")
        _many(multistack.planning(fmt, color=_is_tty(sys.stdout), detailed_exitcode=detailed_exitcode,
                                  refresh_live=not no_refresh, regenerate_lost=regenerate_lost,
                                  parallelism=parallelism, require_remote_state=require_remote_state, force=force,
                                  refresh_ttl=ttl),
              found, fmt, stack_parallelism, changed_since)
    if out:
        planfile.check_plan_path(out)  # before any AWS call, not after a long refresh
    workspace = engine.open_stack(directory)
    if require_remote_state:
        engine.require_remote_state(workspace)
    _warn(workspace.warnings)
    with _progress() as progress:
        the_plan = engine.make_plan(workspace, engine.new_context(workspace), refresh_live=not no_refresh,
                                    targets=targets, progress=progress, regenerate_lost=regenerate_lost,
                                    parallelism=parallelism, force=force, refresh_ttl=ttl)
    _target_warning(targets)
    click.echo(_render_plan(the_plan, fmt), nl=False)
    if out:
        planfile.save_plan(the_plan, out)
        click.echo(f"\nSaved the plan to {out}; apply it with: reconciler apply {out}", err=True)
    if detailed_exitcode and the_plan.has_changes:
        sys.exit(2)


# -- apply -----------------------------------------------------------------------
@main.command("apply")
@click.argument("target_path", default=".", metavar="[DIR|PLANFILE]", type=click.Path())
@click.option("--auto-approve", is_flag=True, help="Apply without asking.")
@click.option("--allow-destroy", is_flag=True,
              help="Allow scheduling deletion of unprotected keys (never protected ones).")
@click.option("--target", "targets", multiple=True, metavar="KIND/NAME",
              help="Limit to this resource and what it depends on (repeatable; not with a saved plan).")
@click.option("--lock-timeout", default=0.0, type=float, show_default=True, metavar="SECONDS",
              help="How long to wait for the state lock.")
@click.option("--regenerate-lost", is_flag=True, help=REGENERATE_LOST_HELP)
@click.option("--parallelism", default=PARALLELISM, show_default=True, type=PARALLELISM_RANGE, help=PARALLELISM_HELP)
@click.option("--force", is_flag=True, help=FORCE_ROLLBACK_HELP)
@click.option("--only-due", is_flag=True,
              help="Perform only timed work (due rotations, expired leases, revoke retries, interrupted runs); "
                   "refuse, changing nothing, if the plan holds anything else.")
@click.option("--refresh-ttl", "refresh_ttl", metavar="DURATION",
              help=REFRESH_TTL_HELP.replace("Skip the refresh", "Skip the plan's refresh") + " Not with a saved plan.")
@REQUIRE_REMOTE_STATE
def apply_command(target_path: str, auto_approve: bool, allow_destroy: bool, targets: tuple[str, ...],
                  lock_timeout: float, regenerate_lost: bool, parallelism: int, force: bool, only_due: bool,
                  refresh_ttl: str | None, require_remote_state: bool) -> None:
    """Make live AWS match the manifests of the stack in DIR, or do what a saved plan says.

    A saved plan is applied as it was reviewed (it is not shown again), and
    refused once applied or when the state or the manifests moved on since.

    \b
    Example:
      reconciler apply examples/quickstart --auto-approve
      reconciler apply change.plan --auto-approve"""
    ttl = _refresh_ttl(refresh_ttl)
    path = pathlib.Path(target_path)
    if not path.exists():
        raise errors.ConfigError(f"{target_path}: no such plan file or stack directory")
    interactive = _is_tty(sys.stdin) and _is_tty(sys.stdout)
    if not auto_approve and not interactive:
        raise errors.ConfigError("apply needs --auto-approve when not run from a terminal")
    saved = planfile.load_plan(path) if path.is_file() else None
    if saved is not None and targets:
        raise errors.ConfigError("--target cannot be combined with a saved plan (it was targeted when made)")
    if saved is not None and regenerate_lost:
        raise errors.ConfigError("--regenerate-lost cannot be combined with a saved plan (give it to plan)")
    if saved is not None and ttl is not None:
        raise errors.ConfigError("--refresh-ttl cannot be combined with a saved plan (its refresh was decided when "
                                 "it was made: give it to plan)")
    workspace = engine.open_stack(saved.directory if saved else path)
    if require_remote_state:
        engine.require_remote_state(workspace)
    _warn(workspace.warnings)
    aws = engine.new_context(workspace)
    with workspace.backend.lock("apply", timeout=lock_timeout):
        state = workspace.backend.read()
        if saved is not None:
            planfile.check_saved_plan(saved, workspace, state)
            the_plan = saved
        else:
            with _progress() as progress:
                the_plan = engine.make_plan(workspace, aws, targets=targets, state=state, progress=progress,
                                            regenerate_lost=regenerate_lost, parallelism=parallelism, force=force,
                                            refresh_ttl=ttl)
        if only_due:
            the_plan = engine.only_due(the_plan)  # before anything is shown or written
        _target_warning(the_plan.targets, applying=True)
        if saved is not None and the_plan.has_changes:  # reviewed when it was made: not shown twice
            click.echo(f"Applying the saved plan {target_path}, made {the_plan.created_at}: "
                       f"{text.summary_line(the_plan).removeprefix('Plan: ')}")
        else:
            click.echo(text.render_plan(the_plan, color=_is_tty(sys.stdout)), nl=False)
        if not the_plan.has_changes:
            if only_due:
                click.echo("\nNothing to do: no timed work is due.")
                return
            # asked for by --refresh-ttl, or ids an older state lacks (once): the write moves the serial on,
            # and so makes every saved plan stale
            recorded = (engine.record_confirmed(the_plan, workspace, state)
                        if ttl is not None or the_plan.learned else None)
            if recorded is not None:
                click.echo(f"\nNothing to apply; state records what the refresh confirmed (read "
                           f"{the_plan.read_at}), serial {recorded.serial}.")
            return
        engine.executor.check_preconditions(the_plan, allow_destroy=allow_destroy)
        if not auto_approve:
            click.confirm("\nApply these changes?", abort=True)
        with _progress("applying") as progress:
            result = engine.apply(the_plan, workspace, aws, allow_destroy=allow_destroy, progress=progress,
                                  parallelism=parallelism)
    counts: dict[str, int] = {}
    for _address, action in result.done:
        counts[action.value] = counts.get(action.value, 0) + 1
    summary = ", ".join(f"{n} {a}" for a, n in sorted(counts.items())) or "nothing"
    click.echo(f"\nApply complete: {summary}. State serial {result.state.serial}.")


# -- destroy ---------------------------------------------------------------------
@main.command("destroy")
@click.argument("directory", default=".", metavar="[DIR]", type=click.Path(file_okay=False))
@click.option("--auto-approve", is_flag=True, help="Destroy without asking.")
@click.option("--lock-timeout", default=0.0, type=float, show_default=True, metavar="SECONDS",
              help="How long to wait for the state lock.")
@click.option("--parallelism", default=PARALLELISM, show_default=True, type=PARALLELISM_RANGE, help=PARALLELISM_HELP)
def destroy_command(directory: str, auto_approve: bool, lock_timeout: float, parallelism: int) -> None:
    """Remove everything in the state of the stack in DIR (keys are only
    scheduled for deletion; protected ones are refused).

    \b
    Example:
      reconciler destroy examples/quickstart --auto-approve"""
    if not auto_approve and not (_is_tty(sys.stdin) and _is_tty(sys.stdout)):
        raise errors.ConfigError("destroy needs --auto-approve when not run from a terminal")
    workspace = engine.open_stack(directory)
    _warn(workspace.warnings)
    aws = engine.new_context(workspace)
    with workspace.backend.lock("destroy", timeout=lock_timeout):
        with _progress() as progress:
            the_plan = engine.destroy_plan(workspace, aws, state=workspace.backend.read(), progress=progress,
                                           parallelism=parallelism)
        if not the_plan.has_changes:
            click.echo(f"Nothing to destroy: the state of stack {workspace.config.stack.name} holds no resources.")
            return
        click.echo(text.render_plan(the_plan, color=_is_tty(sys.stdout)), nl=False)
        engine.executor.check_preconditions(the_plan, allow_destroy=True)  # implied for what the plan lists only
        if not auto_approve:
            click.confirm("\nDestroy everything listed above?", abort=True)
        with _progress("applying") as progress:
            result = engine.apply(the_plan, workspace, aws, allow_destroy=True, progress=progress,
                                  parallelism=parallelism)
    click.echo(f"\nDestroy complete: {len(result.done)} destroyed. State serial {result.state.serial}.")


# -- rotate ----------------------------------------------------------------------
@main.command("rotate")
@click.argument("name", metavar="NAME")
@_dir_argument
@click.option("--dry-run", is_flag=True, help="Show what the rotation would do; change nothing.")
@click.option("--lock-timeout", default=0.0, type=float, show_default=True, metavar="SECONDS", help=LOCK_TIMEOUT_HELP)
def rotate_command(name: str, directory: str | None, dir_option: str | None, dry_run: bool,
                   lock_timeout: float) -> None:
    """Rotate the key of the AccessKeyRotation NAME of the stack in DIR now, whatever its schedule.

    \b
    Example:
      reconciler rotate app-user-keys examples/iam-user-rotation --dry-run"""
    workspace = engine.open_stack(_stack_dir(directory, dir_option))
    _warn(workspace.warnings)
    aws = engine.new_context(workspace)
    with workspace.backend.lock("rotate", timeout=lock_timeout):
        with _progress() as progress:
            the_plan = engine.rotation_plan(workspace, aws, name, state=workspace.backend.read(), progress=progress)
        click.echo(text.render_plan(the_plan, color=_is_tty(sys.stdout)), nl=False)
        if dry_run or not the_plan.has_changes:
            return
        engine.executor.check_preconditions(the_plan, allow_destroy=False)
        with _progress("applying") as progress:
            result = engine.apply(the_plan, workspace, aws, allow_destroy=False, progress=progress)
    click.echo(f"\nRotated {name}. State serial {result.state.serial}.")


# -- lease -----------------------------------------------------------------------
@main.group()
def lease() -> None:
    """Short-lived IAM users from a DynamicIamTemplate: create, renew, revoke, list.

    \b
    Example:
      reconciler lease create app-dynamic examples/dynamic-iam --ttl 30m"""


LEASE_FORMATS = click.Choice(["env", "dotenv", "json"])


@lease.command("create")
@click.argument("template", metavar="TEMPLATE")
@_dir_argument
@click.option("--ttl", help="How long the lease lives (default: the template's defaultTtl; at most its maxTtl).")
@click.option("--format", "fmt", type=LEASE_FORMATS, default="env", show_default=True,
              help="env: export lines for a shell's eval; dotenv: a .env file; json: one object.")
@click.option("--lock-timeout", default=0.0, type=float, show_default=True, metavar="SECONDS", help=LOCK_TIMEOUT_HELP)
def lease_create(template: str, directory: str | None, dir_option: str | None, ttl: str | None, fmt: str,
                 lock_timeout: float) -> None:
    """Create an IAM user from the DynamicIamTemplate TEMPLATE of the stack in
    DIR and print its credentials (once: they are never stored).

    \b
    Example:
      eval "$(reconciler lease create app-dynamic examples/dynamic-iam --ttl 30m)"
    """
    issued = leases.create(_stack_dir(directory, dir_option), template, ttl, lock_timeout=lock_timeout)
    record = issued.lease
    match fmt:
        case "json":
            click.echo(json.dumps({"leaseId": record["id"], "template": record["template"],
                                   "userName": record["userName"], "expiresAt": record["expiresAt"],
                                   "accessKeyId": issued.access_key_id,
                                   "secretAccessKey": issued.secret_access_key}, indent=2))
        case "dotenv":
            click.echo(f"# lease {record['id']}, user {record['userName']}, expires {record['expiresAt']}")
            click.echo(f"AWS_ACCESS_KEY_ID={issued.access_key_id}")
            click.echo(f"AWS_SECRET_ACCESS_KEY={issued.secret_access_key}")
        case _:
            click.echo(f"# lease {record['id']}, user {record['userName']}, expires {record['expiresAt']}")
            click.echo(f"export AWS_ACCESS_KEY_ID={issued.access_key_id}")
            click.echo(f"export AWS_SECRET_ACCESS_KEY={issued.secret_access_key}")
    click.echo(f"Lease {record['id']} (user {record['userName']}) expires {record['expiresAt']}.", err=True)


@lease.command("renew")
@click.argument("lease_id", metavar="ID")
@_dir_argument
@click.option("--ttl", help="From now (default: the template's defaultTtl); never past creation + maxTtl.")
@click.option("--lock-timeout", default=0.0, type=float, show_default=True, metavar="SECONDS", help=LOCK_TIMEOUT_HELP)
def lease_renew(lease_id: str, directory: str | None, dir_option: str | None, ttl: str | None,
                lock_timeout: float) -> None:
    """Extend the lease ID of the stack in DIR.

    \b
    Example:
      reconciler lease renew 3f2a9c1e examples/dynamic-iam --ttl 2h"""
    renewed, note = leases.renew(_stack_dir(directory, dir_option), lease_id, ttl, lock_timeout=lock_timeout)
    click.echo(f"Lease {lease_id} now expires {renewed['expiresAt']}{f' ({note})' if note else ''}.")


@lease.command("revoke")
@click.argument("arguments", nargs=-1, metavar="[ID] [DIR]")
@click.option("--template", help="Revoke every lease of this template.")
@click.option("--expired", is_flag=True, help="Revoke every expired lease (and retry failed revokes).")
@click.option("--force", is_flag=True, help="Forget a lease whose user is confirmed gone.")
@click.option("--parallelism", default=8, show_default=True, type=click.IntRange(1, 64),
              help="At most this many leases revoked side by side.")
@click.option("--dir", "dir_option", hidden=True, type=click.Path(file_okay=False), help=DIR_OPTION_HELP)
@click.option("--lock-timeout", default=0.0, type=float, show_default=True, metavar="SECONDS", help=LOCK_TIMEOUT_HELP)
def lease_revoke(arguments: tuple[str, ...], template: str | None, expired: bool, force: bool, parallelism: int,
                 dir_option: str | None, lock_timeout: float) -> None:
    """Delete the users of leases of the stack in DIR with everything attached
    to them: the lease ID, every lease of a --template, or every --expired one
    (then the only argument is DIR).

    \b
    Example:
      reconciler lease revoke 3f2a9c1e examples/dynamic-iam
      reconciler lease revoke --expired examples/dynamic-iam"""
    one_of = "lease revoke takes one of: ID, --template T, --expired"
    before_dir = 0 if template or expired else 1  # with a flag, the only argument is DIR
    if len(arguments) > before_dir + 1 or (before_dir == 0 and arguments and not os.path.isdir(arguments[0])):
        raise errors.ConfigError(f"{one_of} (then DIR, the stack directory)")
    lease_id = arguments[0] if before_dir and arguments else None
    directory = _stack_dir(arguments[before_dir] if len(arguments) > before_dir else None, dir_option)
    if sum(bool(x) for x in (lease_id, template, expired)) != 1:
        raise errors.ConfigError(one_of)
    outcomes = leases.revoke(directory, lease_id=lease_id, template=template, expired=expired, force=force,
                             workers=parallelism, lock_timeout=lock_timeout)
    for revoked, removed, _error in outcomes:
        extra = f" (also removed: {', '.join(r for r in removed if not r.startswith('access key'))})" \
            if removed and any(not r.startswith("access key") for r in removed) else ""
        click.echo(f"Revoked lease {revoked}{extra}.")
    if not outcomes:
        click.echo("No lease to revoke.")


@lease.command("list")
@_dir_argument
@click.option("--template", help="Only this template's leases.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: one tab-separated line per lease; json: a list of objects.")
def lease_list(directory: str | None, dir_option: str | None, template: str | None, fmt: str) -> None:
    """Every lease of the stack in DIR: id, template, user, created, expires,
    state, revoke attempts, last error.

    \b
    Example:
      reconciler lease list examples/dynamic-iam --format json"""
    rows = leases.listing(_stack_dir(directory, dir_option), template)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo("\t".join([row["id"], row["template"], row["user"], row["created"], row["expires"],
                              row["state"], str(row["revokeAttempts"]), row["lastError"]]))


# -- import ----------------------------------------------------------------------
@main.command("import")
@click.argument("address", metavar="KIND/NAME")
@click.argument("aws_id", metavar="AWS_ID")
@_dir_argument
@click.option("--lock-timeout", default=0.0, type=float, show_default=True, metavar="SECONDS", help=LOCK_TIMEOUT_HELP)
def import_command(address: str, aws_id: str, directory: str | None, dir_option: str | None,
                   lock_timeout: float) -> None:
    """Adopt an existing object as KIND/NAME, declared in the stack in DIR: a key
    (id, ARN or alias), an OIDC provider (URL), a role (name); managed from then on.

    \b
    Example:
      reconciler import KmsProvider/legacy alias/legacy-key stacks/prod
      reconciler import IamRole/pulumi-cmk PulumiCMK examples/pulumi-cmk"""
    directory = _stack_dir(directory, dir_option)
    importer.check_import_address(address)
    workspace = engine.open_stack(directory)
    aws = engine.new_context(workspace)
    with workspace.backend.lock("import", timeout=lock_timeout):
        entry, note = importer.import_resource(workspace, aws, address, aws_id)
    click.echo(f"Imported {importer.described(entry)} as {address}; {note}.")


# -- drift -----------------------------------------------------------------------
@main.command()
@click.argument("directory", default=".", metavar="[DIR]", type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True,
              help="text for people, json for alerting (schemas/drift.schema.json), markdown for an issue or "
                   "comment.")
@click.option("--parallelism", default=PARALLELISM, show_default=True, type=PARALLELISM_RANGE, help=PARALLELISM_HELP)
@click.option("--force", is_flag=True, help=FORCE_ROLLBACK_HELP)
@click.option("--unmanaged", is_flag=True, help="Also list live objects tagged for this stack, or under its alias "
              "and path prefixes, that state does not record (exit 2 when any).")
@click.option("--refresh-ttl", "refresh_ttl", metavar="DURATION", hidden=True,
              help="Refused: drift always reads live AWS.")
@REQUIRE_REMOTE_STATE
@_stacks_options
def drift(directory: str, fmt: str, parallelism: int, force: bool, unmanaged: bool, refresh_ttl: str | None,
          require_remote_state: bool, changed_since: str | None, stack_parallelism: int) -> None:
    """Report every difference between the recorded state of the stack in DIR
    (or a tree of stacks) and live AWS (exit 2 on drift). Drift always reads
    live AWS: it takes no --refresh-ttl.

    \b
    Example:
      reconciler drift examples/quickstart --format json > drift.json"""
    if refresh_ttl is not None:
        raise errors.ConfigError("drift --refresh-ttl: drift always reads live AWS (finding what changed out of band "
                                 "is what it is for); --refresh-ttl is for plan and apply")
    found = multistack.layout(directory, changed_since)
    if found is not None and unmanaged:
        raise errors.ConfigError(f"{directory}: drift --unmanaged runs on one stack at a time (a stack root)")
    if found is not None:
        _many(multistack.drifting(fmt, color=_is_tty(sys.stdout), parallelism=parallelism,
                                  require_remote_state=require_remote_state, force=force), found, fmt,
              stack_parallelism, changed_since)
    workspace = engine.open_stack(directory)
    if require_remote_state:
        engine.require_remote_state(workspace)
    aws = engine.new_context(workspace)
    with _progress() as progress:
        items = engine.drift(workspace, aws, progress=progress, parallelism=parallelism, force=force)
        extra = engine.unmanaged(workspace, aws, parallelism) if unmanaged else None
    match fmt:
        case "json":
            click.echo(structured.drift_json(items, stack=workspace.config.stack.name, unmanaged=extra), nl=False)
        case "markdown":
            click.echo(structured.drift_markdown(items, stack=workspace.config.stack.name, unmanaged=extra),
                       nl=False)
        case _:
            click.echo(text.render_drift_report(items, color=_is_tty(sys.stdout), unmanaged=extra), nl=False)
    if any(item.severity != "info" for item in items) or any(u.severity != "info" for u in extra or ()):
        sys.exit(2)  # info items (grants AWS services made, a key under the alias prefix) are shown, never page


# -- stacks ----------------------------------------------------------------------
@main.command("stacks")
@click.argument("directory", default=".", metavar="[DIR]", type=click.Path(file_okay=False))
@click.option("--changed-since", metavar="REF",
              help="Only the stacks whose manifests changed since this git ref (REF...HEAD, plus uncommitted "
                   "changes).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: [{root, name, backend}], for a CI matrix.")
def stacks_command(directory: str, changed_since: str | None, fmt: str) -> None:
    """List the stack roots under DIR (each directory holding a Stack document).

    \b
    Example:
      reconciler stacks stacks/ --changed-since origin/main --format json"""
    found = multistack.listing(directory, changed_since)
    if fmt == "json":
        click.echo(json.dumps([root.to_json() for root in found.roots], indent=2))
    else:
        for root in found.roots:
            click.echo(f"{root.path}\t{root.name or '-'}\t{root.backend or '-'}")
    multistack.check_listing(found)


# -- state -----------------------------------------------------------------------

@main.group()
def state() -> None:
    """Inspect, copy out and in, and edit the recorded state; break a stale lock.

    Nothing here creates, changes or deletes anything in AWS. The stack
    directory is DIR, the last argument (default: the current directory).

    \b
    Example:
      reconciler state list examples/quickstart
      reconciler state show KmsProvider/app-data examples/quickstart"""


@state.command("list")
@click.argument("directory", default=".", metavar="[DIR]", type=click.Path(file_okay=False))
def state_list(directory: str) -> None:
    """One line per resource in the state of the stack in DIR: address, mode, id.

    \b
    Example:
      reconciler state list examples/quickstart"""
    recorded = engine.open_stack(directory).backend.read()
    for address, entry in sorted(recorded.resources.items()):
        ident = entry.ids.get("arn") or entry.ids.get("keyId") or entry.ids.get("userArn") or ""
        click.echo(f"{address}\t{entry.mode}\t{ident}")
    for address, deposed in sorted(recorded.deposed.items()):
        for old in deposed:  # replaced, deletion still to do (plan shows it)
            ident = old.resource.ids.get("arn") or old.resource.ids.get("keyId") or ""
            click.echo(f"{address} (deposed {old.id})\tdeposed\t{ident}")


@state.command("show")
@click.argument("arguments", nargs=-1, metavar="[ADDRESS] [DIR]")
@click.option("--dir", "dir_option", hidden=True, type=click.Path(file_okay=False), help=DIR_OPTION_HELP)
def state_show(arguments: tuple[str, ...], dir_option: str | None) -> None:
    """The whole state of the stack in DIR, or the entry of ADDRESS (KIND/NAME), as JSON.

    A single argument is ADDRESS when it reads as one (a kind, a slash, a
    name), else DIR.

    \b
    Example:
      reconciler state show KmsProvider/app-data examples/quickstart
      reconciler state show examples/quickstart"""
    if len(arguments) > 2:
        raise errors.ConfigError("state show takes at most ADDRESS and DIR")
    address: str | None = arguments[0] if arguments else None
    directory = arguments[1] if len(arguments) == 2 else None
    if len(arguments) == 1 and not _is_address(arguments[0]):
        if not os.path.isdir(arguments[0]):
            raise errors.ConfigError(f"{arguments[0]}: neither an address (KIND/NAME) nor a stack directory")
        address, directory = None, arguments[0]
    recorded = engine.open_stack(_stack_dir(directory, dir_option)).backend.read()
    if address is None:
        click.echo(json.dumps(recorded.to_json(), indent=2, sort_keys=True))
        return
    if address not in recorded.resources:
        raise errors.StateError(f"{address}: not in state")
    click.echo(json.dumps(recorded.resources[address].to_json(), indent=2, sort_keys=True))


@state.command("unlock")
@click.argument("lock_id", metavar="LOCK_ID")
@_dir_argument
def state_unlock(lock_id: str, directory: str | None, dir_option: str | None) -> None:
    """Break the state lock of the stack in DIR left behind by a process that
    is gone (LOCK_ID is in the "locked by" message).

    \b
    Example:
      reconciler state unlock 6f1c0d2e-4b1a-4f7e-9a51-0c3d2e1f4a5b stacks/prod"""
    click.echo(engine.open_stack(_stack_dir(directory, dir_option)).backend.unlock(lock_id))


@state.command("pull")
@click.argument("directory", default=".", metavar="[DIR]", type=click.Path(file_okay=False))
def state_pull(directory: str) -> None:
    """Print the state of the stack in DIR as JSON on stdout (decrypted, when encryptWith is set).

    \b
    Example:
      reconciler state pull stacks/prod > prod.state.json"""
    recorded = engine.open_stack(directory).backend.read()
    if recorded.lineage is None:
        click.echo("No state recorded yet.", err=True)
        return
    click.echo(state_edits.pulled(recorded), nl=False)


@state.command("push")
@click.argument("file", metavar="FILE", type=click.Path(dir_okay=False, allow_dash=True))
@_dir_argument
@click.option("--force", is_flag=True,
              help="Push even a state of another lineage, or not newer than the recorded one.")
@click.option("--lock-timeout", default=0.0, type=float, show_default=True, metavar="SECONDS", help=LOCK_TIMEOUT_HELP)
def state_push(file: str, directory: str | None, dir_option: str | None, force: bool, lock_timeout: float) -> None:
    """Replace the recorded state of the stack in DIR with FILE (JSON, as
    `state pull` prints it; - for stdin).

    Refuses a state of another lineage, or one whose serial is not newer than
    the recorded one, unless --force. The replaced state is kept as the backup.

    \b
    Example:
      reconciler state push prod.state.json stacks/prod"""
    directory = _stack_dir(directory, dir_option)
    try:
        raw = sys.stdin.buffer.read() if file == "-" else pathlib.Path(file).read_bytes()
    except OSError as exc:
        raise errors.StateError(f"{file}: cannot read ({exc.strerror})") from None
    origin = "stdin" if file == "-" else file
    pushed = state_edits.parse_pushed(raw, origin)
    backend = engine.open_stack(directory).backend
    with backend.lock("state push", timeout=lock_timeout):
        try:
            current = backend.read()
        except errors.StateError:
            if not force:
                raise
            current = state_model.State.empty()  # damaged or unreadable: --force replaces it (kept as backup)
        state_edits.check_push(pushed, current, origin=origin, where=backend.describe(), force=force)
        written = backend.write(pushed, replace_lineage=force)
    click.echo(f"Pushed {origin} to {backend.describe()}: serial {written.serial}, lineage {written.lineage}.")


@state.command("rm")
@click.argument("arguments", nargs=-1, required=True, metavar="ADDRESS... [DIR]")
@click.option("--dir", "dir_option", hidden=True, type=click.Path(file_okay=False), help=DIR_OPTION_HELP)
@click.option("--force", is_flag=True,
              help="Forget even an address with an operation in flight (its journal entries go too).")
@click.option("--lock-timeout", default=0.0, type=float, show_default=True, metavar="SECONDS", help=LOCK_TIMEOUT_HELP)
def state_rm(arguments: tuple[str, ...], dir_option: str | None, force: bool, lock_timeout: float) -> None:
    """Forget each ADDRESS (KIND/NAME) in the state of the stack in DIR: its
    objects stay in AWS, no longer managed. The last of several arguments is
    DIR when it does not read as an address.

    The previous state is kept as the backup. While the manifests still
    declare it, the next plan creates it again (or adopt the object with
    `reconciler import`).

    \b
    Example:
      reconciler state rm KmsProvider/legacy stacks/prod"""
    addresses, directory = arguments, None
    if len(arguments) > 1 and not _is_address(arguments[-1]):
        addresses, directory = arguments[:-1], arguments[-1]
    backend = engine.open_stack(_stack_dir(directory, dir_option)).backend
    with backend.lock("state rm", timeout=lock_timeout):
        recorded = backend.read()
        forgotten = []
        for address in addresses:
            recorded, what = state_edits.forget(recorded, address, force=force)
            forgotten.append(what)
        written = backend.write(recorded)
    click.echo(f"Removed from state: {'; '.join(forgotten)}. Nothing was deleted in AWS. "
               f"State serial {written.serial}.")


@state.command("mv")
@click.argument("source", metavar="SRC")
@click.argument("destination", metavar="DST")
@_dir_argument
@click.option("--lock-timeout", default=0.0, type=float, show_default=True, metavar="SECONDS", help=LOCK_TIMEOUT_HELP)
def state_mv(source: str, destination: str, directory: str | None, dir_option: str | None,
             lock_timeout: float) -> None:
    """Record SRC under the address DST in the state of the stack in DIR (same
    kind: a renamed metadata.name).

    Refuses when DST is in state, the kinds differ, or SRC has an operation in
    flight. The previous state is kept as the backup.

    \b
    Example:
      reconciler state mv KmsProvider/main KmsProvider/payments stacks/prod"""
    backend = engine.open_stack(_stack_dir(directory, dir_option)).backend
    with backend.lock("state mv", timeout=lock_timeout):
        written = backend.write(state_edits.rename(backend.read(), source, destination))
    click.echo(f"Moved {source} to {destination}. State serial {written.serial}.")


# -- sandbox ---------------------------------------------------------------------
@main.command()
@click.option("--port", default=4566, show_default=True, type=int, help="The port on 127.0.0.1 (0: any free one).")
@click.option("--background", is_flag=True,
              help="Start in the background and return, printing the environment to eval.")
@click.option("--pid-file", default=".reconciler/sandbox.pid", show_default=True,
              type=click.Path(dir_okay=False), help="Where a background sandbox records its process id.")
@click.option("--stop", is_flag=True, help="Stop a background sandbox started with --pid-file.")
def sandbox(port: int, background: bool, pid_file: str, stop: bool) -> None:
    """Run a local AWS (moto, with reconciler's fidelity fixes) on 127.0.0.1.

    \b
    Example:
      eval "$(reconciler sandbox --background)"
      reconciler sandbox --stop"""
    if importlib.util.find_spec("moto") is None:
        raise errors.ConfigError("the sandbox needs moto: pip install 'reconciler[sandbox]'")
    from reconciler.sandbox import server
    if stop:
        click.echo(server.stop_background(pid_file))
        return
    if background:
        click.echo(server.start_background(port, pid_file))
        return
    server.run_foreground(port, announce=lambda line: click.echo(line))


# -- secret ----------------------------------------------------------------------
@main.group()
def secret() -> None:
    """Envelopes for manifests; reading values (the only commands that print them).

    \b
    Example:
      reconciler secret history app/api-token examples/quickstart"""


_NAME_SCHEMA = json.loads(schema.schema_text("common.schema.json"))["$defs"]["name"]


def _manifest_name(_ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A name a manifest could use (metadata.name), checked by the schema itself."""
    import jsonschema  # here only: most commands never need it

    try:
        jsonschema.validate(value, _NAME_SCHEMA)
    except jsonschema.ValidationError:
        raise click.BadParameter(f"{value!r} is not a name a manifest can use: lowercase letters, digits "
                                 "and '-', starting and ending with a letter or digit, at most 63 "
                                 "characters", param=param) from None
    return value


@secret.command("encrypt")
@click.option("--vault", "vault_name", required=True, callback=_manifest_name,
              help="The vault whose key wraps the value.")
@click.option("--name", "name", required=True, callback=_manifest_name,
              help="The Secret's metadata.name the envelope is bound to.")
@_dir_argument
def secret_encrypt(directory: str | None, dir_option: str | None, vault_name: str, name: str) -> None:
    """Read a value (on a terminal: asked twice, not echoed; else stdin) and
    print a one-line envelope for `encrypted:`, bound to the stack in DIR, the
    vault and the name.

    \b
    Example:
      reconciler secret encrypt --vault app --name db-password examples/quickstart < password.txt"""
    directory = _stack_dir(directory, dir_option)
    if _is_tty(sys.stdin):
        typed = click.prompt(f"Value for {vault_name}/{name}", hide_input=True, confirmation_prompt=True,
                             prompt_suffix=": ", err=True)
        data = typed.encode()
    else:
        data = sys.stdin.buffer.read()
        if data.endswith(b"\n") and not data.endswith(b"\n\n"):
            data = data[:-1]  # `echo value |` adds one newline; keep deliberate trailing blank lines
    click.echo(secret_access.encrypt(directory, vault_name, name, data))


@secret.command("get")
@click.argument("address", metavar="VAULT/NAME")
@_dir_argument
@click.option("--version", "number", type=int, help="A kept version (default: the newest).")
@click.option("--region", help="Decrypt with the multi-Region replica in this region.")
def secret_get(address: str, directory: str | None, dir_option: str | None, number: int | None,
               region: str | None) -> None:
    """Print the value of the secret VAULT/NAME of the stack in DIR.

    \b
    Example:
      reconciler secret get app/api-token examples/quickstart --version 1"""
    value = secret_access.read(_stack_dir(directory, dir_option), address, version=number, region=region)
    sys.stdout.buffer.write(value + (b"\n" if _is_tty(sys.stdout) else b""))
    sys.stdout.buffer.flush()


@secret.command("history")
@click.argument("address", metavar="VAULT/NAME")
@_dir_argument
def secret_history(address: str, directory: str | None, dir_option: str | None) -> None:
    """List the kept versions of the secret VAULT/NAME of the stack in DIR with
    their dates and keys, never their values.

    \b
    Example:
      reconciler secret history app/api-token examples/quickstart"""
    for row in secret_access.history(_stack_dir(directory, dir_option), address):
        click.echo(f"{row.number}\t{row.created_at}\t{row.key_arn}{'  (current)' if row.current else ''}")


if __name__ == "__main__":  # pragma: no cover
    main()
