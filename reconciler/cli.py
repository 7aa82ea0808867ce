"""The command line: parse arguments, call the engine, render. Thin.

Every expected failure is a ReconcilerError: printed on stderr as one line
per problem, exit 1, never a traceback (set RECONCILER_DEBUG=1 to see one).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import pathlib
import sys
import traceback
from collections.abc import Callable
from typing import Any

import click
import jsonschema

from reconciler import __version__, engine, errors, importer, leases, multistack, planfile, policy, secret_access
from reconciler.manifest import model as manifest
from reconciler.manifest import schema
from reconciler.refresh import PARALLELISM
from reconciler.render import structured, text
from reconciler.state import edits as state_edits
from reconciler.state import model as state_model

FORMATS = click.Choice(["text", "json", "markdown"])
MAX_LISTED = 100  # manifest errors printed; the rest are counted (200,000 bad documents stay readable)
PARALLELISM_HELP = ("At most this many AWS calls side by side (refresh and plan-time checks), and actions apply "
                    "runs side by side in dependency order (1: one at a time, in the plan's order).")
PARALLELISM_RANGE = click.IntRange(1, 64)  # aws.session.MAX_PARALLELISM
FORCE_ROLLBACK_HELP = "Go on with a state whose serial went backwards (restored from an older copy)."
REGENERATE_LOST_HELP = "Generate new values for generated secrets whose KMS key no longer exists."
REQUIRE_REMOTE_STATE = click.option(
    "--require-remote-state", is_flag=True, envvar="RECONCILER_REQUIRE_REMOTE_STATE",
    help="Refuse a stack whose state is local (CI: a runner's disk is gone after the job); "
         "also RECONCILER_REQUIRE_REMOTE_STATE=1.")


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty()) and not os.environ.get("CI")
    except (AttributeError, ValueError):
        return False


def _progress() -> Callable[[str], None]:
    """Progress lines on stderr when it is a terminal; silent in CI and pipes."""
    if not _is_tty(sys.stderr):
        return lambda _message: None
    return lambda message: click.echo(click.style(message, dim=True), err=True)


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


def _many(command: multistack.Command, found: multistack.Layout, fmt: str, workers: int,
          ref: str | None) -> None:
    """Run a command on several stacks: one combined report, the worst exit code."""
    sys.exit(multistack.report(command, found, fmt, lambda chunk: click.echo(chunk, nl=False), workers=workers,
                               progress=_progress(), ref=ref))


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
    """GitOps for customer-managed AWS KMS keys and the secrets they protect."""


# -- validate --------------------------------------------------------------------
@main.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@click.option("--strict", is_flag=True, help="Treat lint warnings (wildcards, open principals) as errors.")
@_stacks_options
def validate(directory: str, strict: bool, changed_since: str | None, stack_parallelism: int) -> None:
    """Check schemas, references and lint; list every problem."""
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
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@click.option("--for", "for_name", metavar="NAME",
              help="The policy an identity the stack declares is granted (an IamRole), not apply's own.")
def policy_command(directory: str, for_name: str | None) -> None:
    """Print the least-privilege IAM policy (JSON) apply needs for this stack."""
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
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@click.option("--out", "out", type=click.Path(dir_okay=False), help="Save the plan for apply.")
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when there are changes.")
@click.option("--target", "targets", multiple=True, metavar="KIND/NAME",
              help="Limit to this resource and what it depends on (repeatable).")
@click.option("--no-refresh", is_flag=True, help="Trust the recorded state; do not read live AWS.")
@click.option("--regenerate-lost", is_flag=True, help=REGENERATE_LOST_HELP)
@click.option("--parallelism", default=PARALLELISM, show_default=True, type=PARALLELISM_RANGE, help=PARALLELISM_HELP)
@click.option("--force", is_flag=True, help=FORCE_ROLLBACK_HELP)
@REQUIRE_REMOTE_STATE
@_stacks_options
def plan(directory: str, out: str | None, fmt: str, detailed_exitcode: bool,
         targets: tuple[str, ...], no_refresh: bool, regenerate_lost: bool, parallelism: int,
         force: bool, require_remote_state: bool, changed_since: str | None, stack_parallelism: int) -> None:
    """Show what apply would change."""
    found = multistack.layout(directory, changed_since)
    if found is not None:
        if out or targets:
            raise errors.ConfigError(f"{'--out' if out else '--target'} is for one stack; give its directory "
                                     "(without --changed-since)")
        _many(multistack.planning(fmt, color=_is_tty(sys.stdout), detailed_exitcode=detailed_exitcode,
                                  refresh_live=not no_refresh, regenerate_lost=regenerate_lost,
                                  parallelism=parallelism, require_remote_state=require_remote_state),
              found, fmt, stack_parallelism, changed_since)
    if out:
        planfile.check_plan_path(out)  # before any AWS call, not after a long refresh
    workspace = engine.open_stack(directory)
    if require_remote_state:
        engine.require_remote_state(workspace)
    _warn(workspace.warnings)
    the_plan = engine.make_plan(workspace, engine.new_context(workspace), refresh_live=not no_refresh,
                                targets=targets, progress=_progress(), regenerate_lost=regenerate_lost,
                                parallelism=parallelism, force=force)
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
@click.option("--target", "targets", multiple=True, metavar="KIND/NAME")
@click.option("--lock-timeout", default=0.0, type=float, show_default=True, metavar="SECONDS",
              help="How long to wait for the state lock.")
@click.option("--regenerate-lost", is_flag=True, help=REGENERATE_LOST_HELP)
@click.option("--parallelism", default=PARALLELISM, show_default=True, type=PARALLELISM_RANGE, help=PARALLELISM_HELP)
@click.option("--force", is_flag=True, help=FORCE_ROLLBACK_HELP)
@click.option("--only-due", is_flag=True,
              help="Perform only timed work (due rotations, expired leases, revoke retries, interrupted runs); "
                   "refuse, changing nothing, if the plan holds anything else.")
@REQUIRE_REMOTE_STATE
def apply_command(target_path: str, auto_approve: bool, allow_destroy: bool, targets: tuple[str, ...],
                  lock_timeout: float, regenerate_lost: bool, parallelism: int, force: bool, only_due: bool,
                  require_remote_state: bool) -> None:
    """Make live AWS match the manifests (or a saved plan)."""
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
    workspace = engine.open_stack(saved.directory if saved else path)
    if require_remote_state:
        engine.require_remote_state(workspace)
    _warn(workspace.warnings)
    aws = engine.new_context(workspace)
    progress = _progress()
    with workspace.backend.lock("apply", timeout=lock_timeout):
        state = workspace.backend.read()
        if saved is not None:
            planfile.check_saved_plan(saved, workspace, state)
            the_plan = saved
        else:
            the_plan = engine.make_plan(workspace, aws, targets=targets, state=state, progress=progress,
                                        regenerate_lost=regenerate_lost, parallelism=parallelism, force=force)
        if only_due:
            the_plan = engine.only_due(the_plan)  # before anything is shown or written
        click.echo(text.render_plan(the_plan, color=_is_tty(sys.stdout)), nl=False)
        if not the_plan.has_changes:
            if only_due:
                click.echo("\nNothing to do: no timed work is due.")
            return
        engine.executor.check_preconditions(the_plan, allow_destroy=allow_destroy)
        if not auto_approve:
            click.confirm("\nApply these changes?", abort=True)
        result = engine.apply(the_plan, workspace, aws, allow_destroy=allow_destroy, progress=progress,
                              parallelism=parallelism)
    counts: dict[str, int] = {}
    for _address, action in result.done:
        counts[action.value] = counts.get(action.value, 0) + 1
    summary = ", ".join(f"{n} {a}" for a, n in sorted(counts.items())) or "nothing"
    click.echo(f"\nApply complete: {summary}. State serial {result.state.serial}.")


# -- destroy ---------------------------------------------------------------------
@main.command("destroy")
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@click.option("--auto-approve", is_flag=True, help="Destroy without asking.")
@click.option("--lock-timeout", default=0.0, type=float, show_default=True, metavar="SECONDS",
              help="How long to wait for the state lock.")
@click.option("--parallelism", default=PARALLELISM, show_default=True, type=PARALLELISM_RANGE, help=PARALLELISM_HELP)
def destroy_command(directory: str, auto_approve: bool, lock_timeout: float, parallelism: int) -> None:
    """Remove everything in state (keys are only scheduled for deletion; protected ones are refused).

    Example: reconciler destroy examples/quickstart --auto-approve
    """
    if not auto_approve and not (_is_tty(sys.stdin) and _is_tty(sys.stdout)):
        raise errors.ConfigError("destroy needs --auto-approve when not run from a terminal")
    workspace = engine.open_stack(directory)
    _warn(workspace.warnings)
    aws = engine.new_context(workspace)
    progress = _progress()
    with workspace.backend.lock("destroy", timeout=lock_timeout):
        the_plan = engine.destroy_plan(workspace, aws, state=workspace.backend.read(), progress=progress,
                                       parallelism=parallelism)
        if not the_plan.has_changes:
            click.echo(f"Nothing to destroy: the state of stack {workspace.config.stack.name} holds no resources.")
            return
        click.echo(text.render_plan(the_plan, color=_is_tty(sys.stdout)), nl=False)
        engine.executor.check_preconditions(the_plan, allow_destroy=True)  # implied for what the plan lists only
        if not auto_approve:
            click.confirm("\nDestroy everything listed above?", abort=True)
        result = engine.apply(the_plan, workspace, aws, allow_destroy=True, progress=progress,
                              parallelism=parallelism)
    click.echo(f"\nDestroy complete: {len(result.done)} destroyed. State serial {result.state.serial}.")


# -- rotate ----------------------------------------------------------------------
@main.command("rotate")
@click.argument("name", metavar="NAME")
@click.option("--dir", "directory", default=".", type=click.Path(file_okay=False))
@click.option("--dry-run", is_flag=True, help="Show what the rotation would do; change nothing.")
@click.option("--lock-timeout", default=0.0, type=float, show_default=True, metavar="SECONDS")
def rotate_command(name: str, directory: str, dry_run: bool, lock_timeout: float) -> None:
    """Rotate an AccessKeyRotation's key now, whatever its schedule."""
    workspace = engine.open_stack(directory)
    _warn(workspace.warnings)
    aws = engine.new_context(workspace)
    progress = _progress()
    with workspace.backend.lock("rotate", timeout=lock_timeout):
        the_plan = engine.rotation_plan(workspace, aws, name, state=workspace.backend.read(), progress=progress)
        click.echo(text.render_plan(the_plan, color=_is_tty(sys.stdout)), nl=False)
        if dry_run or not the_plan.has_changes:
            return
        engine.executor.check_preconditions(the_plan, allow_destroy=False)
        result = engine.apply(the_plan, workspace, aws, allow_destroy=False, progress=progress)
    click.echo(f"\nRotated {name}. State serial {result.state.serial}.")


# -- lease -----------------------------------------------------------------------
@main.group()
def lease() -> None:
    """Short-lived IAM users from a DynamicIamTemplate: create, renew, revoke, list."""


LEASE_FORMATS = click.Choice(["env", "dotenv", "json"])


@lease.command("create")
@click.argument("template", metavar="TEMPLATE")
@click.option("--ttl", help="How long the lease lives (default: the template's defaultTtl; at most its maxTtl).")
@click.option("--format", "fmt", type=LEASE_FORMATS, default="env", show_default=True)
@click.option("--dir", "directory", default=".", type=click.Path(file_okay=False))
@click.option("--lock-timeout", default=0.0, type=float, show_default=True, metavar="SECONDS")
def lease_create(template: str, ttl: str | None, fmt: str, directory: str, lock_timeout: float) -> None:
    """Create an IAM user from TEMPLATE and print its credentials (once: they are never stored)."""
    issued = leases.create(directory, template, ttl, lock_timeout=lock_timeout)
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
@click.option("--ttl", help="From now (default: the template's defaultTtl); never past creation + maxTtl.")
@click.option("--dir", "directory", default=".", type=click.Path(file_okay=False))
@click.option("--lock-timeout", default=0.0, type=float, show_default=True, metavar="SECONDS")
def lease_renew(lease_id: str, ttl: str | None, directory: str, lock_timeout: float) -> None:
    """Extend a lease."""
    renewed, note = leases.renew(directory, lease_id, ttl, lock_timeout=lock_timeout)
    click.echo(f"Lease {lease_id} now expires {renewed['expiresAt']}{f' ({note})' if note else ''}.")


@lease.command("revoke")
@click.argument("lease_id", metavar="[ID]", required=False)
@click.option("--template", help="Revoke every lease of this template.")
@click.option("--expired", is_flag=True, help="Revoke every expired lease (and retry failed revokes).")
@click.option("--force", is_flag=True, help="Forget a lease whose user is confirmed gone.")
@click.option("--parallelism", default=8, show_default=True, type=click.IntRange(1, 64))
@click.option("--dir", "directory", default=".", type=click.Path(file_okay=False))
@click.option("--lock-timeout", default=0.0, type=float, show_default=True, metavar="SECONDS")
def lease_revoke(lease_id: str | None, template: str | None, expired: bool, force: bool, parallelism: int,
                 directory: str, lock_timeout: float) -> None:
    """Delete leases' users with everything attached to them."""
    if sum(bool(x) for x in (lease_id, template, expired)) != 1:
        raise errors.ConfigError("lease revoke takes one of: ID, --template T, --expired")
    outcomes = leases.revoke(directory, lease_id=lease_id, template=template, expired=expired, force=force,
                             workers=parallelism, lock_timeout=lock_timeout)
    for revoked, removed, _error in outcomes:
        extra = f" (also removed: {', '.join(r for r in removed if not r.startswith('access key'))})" \
            if removed and any(not r.startswith("access key") for r in removed) else ""
        click.echo(f"Revoked lease {revoked}{extra}.")
    if not outcomes:
        click.echo("No lease to revoke.")


@lease.command("list")
@click.option("--template", help="Only this template's leases.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--dir", "directory", default=".", type=click.Path(file_okay=False))
def lease_list(template: str | None, fmt: str, directory: str) -> None:
    """Every lease: id, template, user, created, expires, state, revoke attempts, last error."""
    rows = leases.listing(directory, template)
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
@click.option("--dir", "directory", default=".", type=click.Path(file_okay=False))
@click.option("--lock-timeout", default=0.0, type=float, show_default=True, metavar="SECONDS")
def import_command(address: str, aws_id: str, directory: str, lock_timeout: float) -> None:
    """Adopt an existing key (id, ARN or alias) as a declared KmsProvider."""
    importer.check_import_address(address)
    workspace = engine.open_stack(directory)
    aws = engine.new_context(workspace)
    with workspace.backend.lock("import", timeout=lock_timeout):
        entry = importer.import_resource(workspace, aws, address, aws_id)
    click.echo(f"Imported {entry.ids.get('arn')} as {address}; run plan to see what would change.")


# -- drift -----------------------------------------------------------------------
@main.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
@click.option("--parallelism", default=PARALLELISM, show_default=True, type=PARALLELISM_RANGE, help=PARALLELISM_HELP)
@click.option("--force", is_flag=True, help=FORCE_ROLLBACK_HELP)
@REQUIRE_REMOTE_STATE
@_stacks_options
def drift(directory: str, fmt: str, parallelism: int, force: bool, require_remote_state: bool,
          changed_since: str | None, stack_parallelism: int) -> None:
    """Report every difference between the recorded state and live AWS (exit 2 on drift)."""
    found = multistack.layout(directory, changed_since)
    if found is not None:
        _many(multistack.drifting(fmt, color=_is_tty(sys.stdout), parallelism=parallelism,
                                  require_remote_state=require_remote_state), found, fmt,
              stack_parallelism, changed_since)
    workspace = engine.open_stack(directory)
    if require_remote_state:
        engine.require_remote_state(workspace)
    items = engine.drift(workspace, engine.new_context(workspace), progress=_progress(), parallelism=parallelism,
                         force=force)
    match fmt:
        case "json":
            click.echo(structured.drift_json(items, stack=workspace.config.stack.name), nl=False)
        case "markdown":
            click.echo(structured.drift_markdown(items, stack=workspace.config.stack.name), nl=False)
        case _:
            click.echo(text.render_drift_report(items, color=_is_tty(sys.stdout)), nl=False)
    if any(item.severity != "info" for item in items):
        sys.exit(2)  # info items (say, grants AWS services made for themselves) are shown, never page


# -- stacks ----------------------------------------------------------------------
@main.command("stacks")
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@click.option("--changed-since", metavar="REF",
              help="Only the stacks whose manifests changed since this git ref (REF...HEAD, plus uncommitted "
                   "changes).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="json: [{root, name, backend}], for a CI matrix.")
def stacks_command(directory: str, changed_since: str | None, fmt: str) -> None:
    """List the stack roots under DIR (each directory holding a Stack document).

    Example: reconciler stacks stacks/ --changed-since origin/main --format json
    """
    found = multistack.listing(directory, changed_since)
    if fmt == "json":
        click.echo(json.dumps([root.to_json() for root in found.roots], indent=2))
    else:
        for root in found.roots:
            click.echo(f"{root.path}\t{root.name or '-'}\t{root.backend or '-'}")
    multistack.check_listing(found)


# -- state -----------------------------------------------------------------------
LOCK_TIMEOUT_HELP = "How long to wait for the state lock."


@main.group()
def state() -> None:
    """Inspect, copy out and in, and edit the recorded state; break a stale lock.

    Nothing here creates, changes or deletes anything in AWS."""


@state.command("list")
@click.argument("directory", default=".", type=click.Path(file_okay=False))
def state_list(directory: str) -> None:
    """One line per resource in state."""
    recorded = engine.open_stack(directory).backend.read()
    for address, entry in sorted(recorded.resources.items()):
        ident = entry.ids.get("arn") or entry.ids.get("keyId") or entry.ids.get("userArn") or ""
        click.echo(f"{address}\t{entry.mode}\t{ident}")
    for address, deposed in sorted(recorded.deposed.items()):
        for old in deposed:  # replaced, deletion still to do (plan shows it)
            ident = old.resource.ids.get("arn") or old.resource.ids.get("keyId") or ""
            click.echo(f"{address} (deposed {old.id})\tdeposed\t{ident}")


@state.command("show")
@click.argument("address", required=False)
@click.option("--dir", "directory", default=".", type=click.Path(file_okay=False))
def state_show(address: str | None, directory: str) -> None:
    """The whole state, or one resource's entry, as JSON."""
    recorded = engine.open_stack(directory).backend.read()
    if address is None:
        click.echo(json.dumps(recorded.to_json(), indent=2, sort_keys=True))
        return
    if address not in recorded.resources:
        raise errors.StateError(f"{address}: not in state")
    click.echo(json.dumps(recorded.resources[address].to_json(), indent=2, sort_keys=True))


@state.command("unlock")
@click.argument("lock_id")
@click.option("--dir", "directory", default=".", type=click.Path(file_okay=False))
def state_unlock(lock_id: str, directory: str) -> None:
    """Break a lock left behind by a process that is gone (the lock ID is in the
    "locked by" message).

    Example: reconciler state unlock 6f1c0d2e-... --dir stacks/prod"""
    click.echo(engine.open_stack(directory).backend.unlock(lock_id))


@state.command("pull")
@click.argument("directory", default=".", type=click.Path(file_okay=False))
def state_pull(directory: str) -> None:
    """Print the state as JSON on stdout (decrypted, when encryptWith is set).

    Example: reconciler state pull stacks/prod > prod.state.json"""
    recorded = engine.open_stack(directory).backend.read()
    if recorded.lineage is None:
        click.echo("No state recorded yet.", err=True)
        return
    click.echo(state_edits.pulled(recorded), nl=False)


@state.command("push")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--dir", "directory", default=".", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True,
              help="Push even a state of another lineage, or not newer than the recorded one.")
@click.option("--lock-timeout", default=0.0, type=float, show_default=True, metavar="SECONDS", help=LOCK_TIMEOUT_HELP)
def state_push(file: str, directory: str, force: bool, lock_timeout: float) -> None:
    """Replace the recorded state with FILE (JSON, as `state pull` prints it; - for stdin).

    Refuses a state of another lineage, or one whose serial is not newer than
    the recorded one, unless --force. The replaced state is kept as the backup.

    Example: reconciler state push prod.state.json --dir stacks/prod"""
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
@click.argument("addresses", nargs=-1, required=True, metavar="ADDRESS...")
@click.option("--dir", "directory", default=".", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True,
              help="Forget even an address with an operation in flight (its journal entries go too).")
@click.option("--lock-timeout", default=0.0, type=float, show_default=True, metavar="SECONDS", help=LOCK_TIMEOUT_HELP)
def state_rm(addresses: tuple[str, ...], directory: str, force: bool, lock_timeout: float) -> None:
    """Forget ADDRESS (KIND/NAME): its objects stay in AWS, no longer managed.

    The previous state is kept as the backup. While the manifests still
    declare it, the next plan creates it again (or adopt the object with
    `reconciler import`).

    Example: reconciler state rm KmsProvider/legacy --dir stacks/prod"""
    backend = engine.open_stack(directory).backend
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
@click.option("--dir", "directory", default=".", type=click.Path(file_okay=False))
@click.option("--lock-timeout", default=0.0, type=float, show_default=True, metavar="SECONDS", help=LOCK_TIMEOUT_HELP)
def state_mv(source: str, destination: str, directory: str, lock_timeout: float) -> None:
    """Record SRC under the address DST (same kind: a renamed metadata.name).

    Refuses when DST is in state, the kinds differ, or SRC has an operation in
    flight. The previous state is kept as the backup.

    Example: reconciler state mv KmsProvider/main KmsProvider/payments --dir stacks/prod"""
    backend = engine.open_stack(directory).backend
    with backend.lock("state mv", timeout=lock_timeout):
        written = backend.write(state_edits.rename(backend.read(), source, destination))
    click.echo(f"Moved {source} to {destination}. State serial {written.serial}.")


# -- sandbox ---------------------------------------------------------------------
@main.command()
@click.option("--port", default=4566, show_default=True, type=int)
@click.option("--background", is_flag=True, help="Start in the background and return.")
@click.option("--pid-file", default=".reconciler/sandbox.pid", show_default=True,
              type=click.Path(dir_okay=False))
@click.option("--stop", is_flag=True, help="Stop a background sandbox started with --pid-file.")
def sandbox(port: int, background: bool, pid_file: str, stop: bool) -> None:
    """Run a local AWS (moto, with reconciler's fidelity fixes) on 127.0.0.1."""
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
    """Envelopes for manifests; reading values (the only commands that print them)."""


_NAME_SCHEMA = json.loads(schema.schema_text("common.schema.json"))["$defs"]["name"]


def _manifest_name(_ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A name a manifest could use (metadata.name), checked by the schema itself."""
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
@click.option("--dir", "directory", default=".", type=click.Path(file_okay=False))
def secret_encrypt(vault_name: str, name: str, directory: str) -> None:
    """Read a value (on a terminal: asked twice, not echoed; else stdin) and
    print a one-line envelope for `encrypted:`."""
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
@click.option("--version", "number", type=int, help="A kept version (default: the newest).")
@click.option("--region", help="Decrypt with the multi-Region replica in this region.")
@click.option("--dir", "directory", default=".", type=click.Path(file_okay=False))
def secret_get(address: str, number: int | None, region: str | None, directory: str) -> None:
    """Print a secret's value."""
    value = secret_access.read(directory, address, version=number, region=region)
    sys.stdout.buffer.write(value + (b"\n" if _is_tty(sys.stdout) else b""))
    sys.stdout.buffer.flush()


@secret.command("history")
@click.argument("address", metavar="VAULT/NAME")
@click.option("--dir", "directory", default=".", type=click.Path(file_okay=False))
def secret_history(address: str, directory: str) -> None:
    """List kept versions with their dates and keys, never their values."""
    for row in secret_access.history(directory, address):
        click.echo(f"{row.number}\t{row.created_at}\t{row.key_arn}{'  (current)' if row.current else ''}")


if __name__ == "__main__":  # pragma: no cover
    main()
