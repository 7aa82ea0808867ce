"""Several stacks in one directory tree: finding their roots (each directory
holding a ``Stack`` document), keeping those a git change touches
(``--changed-since REF``, Atlantis's autoplan), and running plan, drift or
validate on them side by side into one report.

A tree whose top directory holds its Stack document, or that holds fewer
than two, is one stack, loaded as it always was: ``layout`` returns None for
it (unless ``--changed-since`` asks for a selection) and the command runs
unchanged. Stacks nested in another stack's tree are roots of their own; the
outer stack then fails to load ("a second Stack document"), as it always did.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import json
import os
import pathlib
import re
import subprocess
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from reconciler import engine, errors
from reconciler.manifest import loader
from reconciler.manifest import model as manifest
from reconciler.plan import model as plan_model
from reconciler.render import structured, text

STACK_WORKERS = 4  # stacks side by side (--stack-parallelism); each bounds its own AWS calls (--parallelism)
MAX_LISTED = 100  # errors listed per stack, as the single-stack commands do
# A file is parsed for a Stack document only when its bytes look like they
# hold one (`kind: Stack`, quoted or not, in block or flow style): a tree of
# large manifests is not parsed twice. Files outside any stack are parsed only
# when they mention reconciler, so other YAML (CI, compose files) is ignored.
_STACK_HINT = re.compile(rb"""kind["']?\s*:\s*["']?Stack\b""")
_OURS_HINT = b"reconciler"

Echo = Callable[[str], None]
Progress = Callable[[str], None]


# -- finding the stacks ------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class Root:
    """A stack: the directory to hand to a command, as the user would write it."""

    path: pathlib.Path
    name: str | None
    backend: str | None

    def to_json(self) -> dict[str, Any]:
        return {"root": str(self.path), "name": self.name, "backend": self.backend}


@dataclasses.dataclass(frozen=True, slots=True)
class Stray:
    """Manifests in a directory that belongs to no stack (say, a stack whose
    Stack document does not parse): reported, never silently left out."""

    path: pathlib.Path
    diagnostics: tuple[errors.Diagnostic, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Layout:
    directory: pathlib.Path
    roots: tuple[Root, ...]
    strays: tuple[Stray, ...] = ()
    single: bool = False  # one stack, at ``directory``, loaded as the commands always did


def _stack_root(directory: pathlib.Path, documents: Sequence[loader.Document]) -> Root:
    """The root named by the first Stack document (name and backend as far as
    they can be read: validation is the commands' business)."""
    data = next(d.data for d in documents if d.kind == "Stack")
    metadata, spec = data.get("metadata"), data.get("spec")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    backend = spec.get("backend", {"local": {}}) if isinstance(spec, dict) else {"local": {}}
    kind = next(iter(backend), None) if isinstance(backend, dict) and len(backend) == 1 else None
    return Root(directory, name if isinstance(name, str) else None, kind if isinstance(kind, str) else None)


def _parse(path: pathlib.Path, raw: bytes) -> tuple[list[loader.Document], list[errors.Diagnostic]]:
    decoded, problem = loader.decode(raw, str(path))
    if decoded is None:
        return [], [problem] if problem is not None else []
    return loader.parse_text(decoded, str(path))


def _manifests(directory: pathlib.Path) -> Iterator[tuple[pathlib.Path, list[pathlib.Path]]]:
    """Each directory under ``directory`` (itself first, then depth first, in
    name order) with its manifest files; hidden entries skipped and symlinked
    directories not entered, as a stack's own loader reports those."""
    for current, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        yield pathlib.Path(current), sorted(pathlib.Path(current, f) for f in files
                                            if not f.startswith(".") and f.endswith((".yaml", ".yml")))


def _stack_in(files: Iterable[pathlib.Path]) -> tuple[list[loader.Document], list[pathlib.Path]]:
    """The Stack documents of the first of ``files`` that holds any (those
    named ``stack.y*ml`` looked at first), or none and the files read."""
    others: list[pathlib.Path] = []
    for path in sorted(files, key=lambda f: (not f.name.startswith("stack."), f)):
        raw, _problem = loader.read_manifest(path)
        found = [d for d in _parse(path, raw)[0] if d.kind == "Stack"] \
            if raw is not None and _STACK_HINT.search(raw) else []
        if found:
            return found, []
        others.append(path)
    return [], others


def discover(directory: str | pathlib.Path) -> Layout:
    """The stacks under ``directory``. Raises ConfigError when it is not a directory."""
    top = pathlib.Path(directory)
    if not top.is_dir():
        raise errors.ConfigError(f"{directory}: no such directory")
    walk = _manifests(top)
    _, top_files = next(walk)
    stacks, _ = _stack_in(top_files)
    if stacks:  # the top holds the Stack document: one stack, whatever lies below
        return Layout(top, (_stack_root(top, stacks),), single=True)
    roots: dict[pathlib.Path, Root] = {}
    loose: dict[pathlib.Path, list[pathlib.Path]] = {top: top_files} if top_files else {}
    for current, files in walk:
        stacks, others = _stack_in(files)
        if stacks:
            roots[current] = _stack_root(current, stacks)
        elif others:
            loose[current] = others
    if len(roots) == 1:  # one stack, loaded from the top as it always was
        only = next(iter(roots.values()))
        return Layout(top, (Root(top, only.name, only.backend),), single=True)
    strays = tuple(stray for current, files in loose.items() if not _inside(current, roots)
                   for stray in [_stray(current, files)] if stray is not None)
    # no stack at all: the commands' loader says so, as it always did (`stacks` lists the strays)
    return Layout(top, tuple(roots[path] for path in sorted(roots)), strays, single=not roots)


def _inside(directory: pathlib.Path, roots: dict[pathlib.Path, Root]) -> bool:
    return any(parent in roots for parent in (directory, *directory.parents))


def _stray(directory: pathlib.Path, files: Sequence[pathlib.Path]) -> Stray | None:
    """What is wrong with manifests outside any stack; None for YAML that is not ours."""
    found: list[errors.Diagnostic] = []
    for path in files:
        raw, problem = loader.read_manifest(path)
        if raw is None or _OURS_HINT not in raw:
            continue
        documents, problems = _parse(path, raw)
        found.extend(problems)
        if any(isinstance(d.data, dict) and str(d.data.get("apiVersion", "")).startswith("reconciler/")
               for d in documents):
            found.append(errors.Diagnostic(
                f"not part of any stack: no Stack document in {directory} or a directory above it",
                errors.Position(str(path), 1, 1)))
    return Stray(directory, tuple(found)) if found else None


# -- what changed since a git ref --------------------------------------------------
def _git(args: Sequence[str], cwd: pathlib.Path) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", "-c", "core.quotepath=off", *args], cwd=cwd, capture_output=True,
                              check=False, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise errors.ConfigError("--changed-since needs git, which is not installed (not found on PATH)") from None


def changed_files(directory: pathlib.Path, ref: str) -> set[pathlib.Path]:
    """Every file changed since ``ref`` (``git diff REF...HEAD``: what a pull
    request holds since it branched) or not yet committed (staged, unstaged,
    untracked), as resolved paths; a rename counts at both ends."""
    if not ref or ref.startswith("-"):
        raise errors.ConfigError(f"--changed-since {ref!r}: not a git revision")
    where = _git(["rev-parse", "--show-toplevel"], directory)
    if where.returncode != 0:
        raise errors.ConfigError(f"--changed-since: {directory} is not inside a git repository")
    top = pathlib.Path(os.fsdecode(where.stdout.strip()))
    commit = _git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], top)
    if commit.returncode != 0:
        raise errors.ConfigError(f"--changed-since {ref}: unknown revision in the git repository at {top}")
    sha = os.fsdecode(commit.stdout.strip())
    changed: set[pathlib.Path] = set()
    for args in (["diff", "--name-only", "-z", "--no-renames", f"{sha}...HEAD", "--"],
                 ["diff", "--name-only", "-z", "--no-renames", "HEAD", "--"],
                 ["ls-files", "-z", "--others", "--exclude-standard", "--full-name"]):
        found = _git(args, top)
        if found.returncode != 0:
            problem = loader.one_line(os.fsdecode(found.stderr).strip() or f"git {args[0]} failed")
            raise errors.ConfigError(f"--changed-since {ref}: {problem}")
        changed.update(top / os.fsdecode(name) for name in found.stdout.split(b"\0") if name)
    return changed


def _owner(path: pathlib.Path, top: pathlib.Path, owners: Sequence[pathlib.Path]) -> pathlib.Path | None:
    """The deepest of ``owners`` (resolved directories) whose manifests include
    ``path``: a ``*.yaml``/``*.yml`` file, no hidden part below ``top``."""
    try:
        parts = path.relative_to(top).parts
    except ValueError:
        return None
    if not parts or any(p.startswith(".") for p in parts) or not path.name.endswith((".yaml", ".yml")):
        return None
    inside = [o for o in owners if o == path.parent or o in path.parents]
    return max(inside, key=lambda o: len(o.parts), default=None)


def since(layout: Layout, ref: str) -> Layout:
    """The layout narrowed to the stacks (and strays) whose manifests changed since ``ref``."""
    changed = changed_files(layout.directory, ref)
    top = layout.directory.resolve()
    owners = {r.path.resolve(): r.path for r in layout.roots}
    owners.update({s.path.resolve(): s.path for s in layout.strays})
    touched = {owners[o] for path in changed for o in [_owner(path, top, list(owners))] if o is not None}
    return dataclasses.replace(layout, roots=tuple(r for r in layout.roots if r.path in touched),
                               strays=tuple(s for s in layout.strays if s.path in touched))


def layout(directory: str, changed_since: str | None) -> Layout | None:
    """The stacks a command runs on, or None when ``directory`` is one stack
    and no selection is asked for: the command then runs as it always did.
    Without ``--changed-since`` nothing here may raise (the stack's own loader
    reports a missing or unreadable directory in its usual words)."""
    if changed_since is None:
        try:
            found = discover(directory)
        except (errors.ConfigError, OSError):
            return None
        return None if found.single else found
    return listing(directory, changed_since)


def listing(directory: str, changed_since: str | None) -> Layout:
    """``reconciler stacks``: every stack (or those changed since a ref); a tree without any is an error."""
    found = discover(directory)
    if not found.roots and not found.strays:
        raise errors.ConfigError(f"{directory}: no Stack document in this directory tree")
    return since(found, changed_since) if changed_since is not None else found


def check_listing(found: Layout) -> None:
    """Manifests outside any stack fail the listing (after it is printed): a
    stack whose Stack document is broken must not drop out of a CI matrix."""
    problems = [d for stray in found.strays for d in stray.diagnostics]
    if problems:
        raise errors.ManifestError(problems)


# -- running them side by side -----------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """One stack's part of the report."""

    root: Root
    status: str  # one of the command's Statuses, or "error"
    exit_code: int  # 0 / 1 error / 2 changes or drift (as the single-stack command would exit)
    report: str = ""  # as the single-stack command renders it, in the report's format
    data: Any = None  # the same for --format json
    warnings: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    footer: str = ""  # after the errors: how many there are ("3 errors found.")


@dataclasses.dataclass(frozen=True, slots=True)
class Command:
    """What a command does with one stack, and how the report counts the outcomes."""

    name: str  # plan | drift | validate: the JSON key of each stack's result
    one: Callable[[Root, Progress], Outcome]
    statuses: dict[str, str]  # status -> how the summary line says it ("with changes")


def _failed(root: Root, exc: errors.ReconcilerError) -> Outcome:
    """A stack's failure as the single-stack command prints it (the first
    MAX_LISTED manifest errors, then how many there are)."""
    if not isinstance(exc, errors.ManifestError):
        return Outcome(root, "error", 1, errors=tuple(str(exc).splitlines() or [type(exc).__name__]))
    count = len(exc.diagnostics)
    rest = count - MAX_LISTED
    more = f"... and {rest:,} more error{'s' if rest != 1 else ''} (only the first {MAX_LISTED} are listed)\n" \
        if rest > 0 else ""
    return Outcome(root, "error", 1, errors=tuple(str(d) for d in exc.diagnostics[:MAX_LISTED]),
                   footer=f"{more}{count} error{'s' if count != 1 else ''} found.")


def _guarded(command: Command, root: Root, progress: Progress) -> Outcome:
    """One stack's outcome: its errors are its own, never the others'."""
    try:
        return command.one(root, lambda message: progress(f"{root.path}: {message}"))
    except errors.ReconcilerError as exc:
        return _failed(root, exc)
    except Exception as exc:  # noqa: BLE001 - one stack's bug must not hide the other stacks' results
        if os.environ.get("RECONCILER_DEBUG"):
            traceback.print_exc()
        return Outcome(root, "error", 1, errors=(
            f"internal error: {type(exc).__name__}: {exc} (set RECONCILER_DEBUG=1 for a traceback, and "
            "please report it)",))


def run(command: Command, found: Layout, *, workers: int = STACK_WORKERS,
        progress: Progress = lambda _m: None) -> Iterator[Outcome]:
    """Every stack's outcome, in root order, each as soon as it and those
    before it are done; at most ``workers`` stacks side by side. A stray
    directory takes its place in that order, as an error."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="stack")
    try:
        pending: list[tuple[pathlib.Path, concurrent.futures.Future[Outcome] | Outcome]] = [
            (root.path, pool.submit(_guarded, command, root, progress)) for root in found.roots]
        pending += [(stray.path, _failed(Root(stray.path, None, None), errors.ManifestError(list(stray.diagnostics))))
                    for stray in found.strays]
        for _path, item in sorted(pending, key=lambda pair: pair[0]):
            yield item if isinstance(item, Outcome) else item.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # interrupted: start no other stack


def exit_code(outcomes: Iterable[Outcome]) -> int:
    """The worst across stacks: 1 if any failed, else 2 if any has changes or drift, else 0."""
    codes = {o.exit_code for o in outcomes}
    return 1 if 1 in codes else max(codes, default=0)


def summary(command: Command, outcomes: Sequence[Outcome]) -> str:
    counts = {status: sum(1 for o in outcomes if o.status == status) for status in command.statuses}
    parts = [f"{n} {command.statuses[status]}" for status, n in counts.items() if n]
    total = len(outcomes)
    return f"{total} stack{'s' if total != 1 else ''}: {', '.join(parts) or 'nothing to do'}."


def _section(outcome: Outcome, fmt: str) -> str:
    body = [*outcome.warnings, *(f"Error: {line}" for line in outcome.errors), *outcome.footer.splitlines()]
    if fmt == "markdown":
        lines = [f"## `{outcome.root.path}`", ""]
        if body:
            lines += ["```", *body, "```", ""]
        return "\n".join(lines) + outcome.report + "\n"
    return "\n".join([f"==> {outcome.root.path} <==", *body]) + "\n" + outcome.report + "\n"


def report(command: Command, found: Layout, fmt: str, echo: Echo, *, workers: int = STACK_WORKERS,
           progress: Progress = lambda _m: None, ref: str | None = None) -> int:
    """Run ``command`` on every stack of ``found``, echo one combined report
    (text and markdown: a section per stack headed by its root, as each is
    done; json: a list keyed by root), and return the worst exit code."""
    outcomes: list[Outcome] = []
    for outcome in run(command, found, workers=workers, progress=progress):
        outcomes.append(outcome)
        if fmt != "json":
            echo(_section(outcome, fmt))
    if fmt == "json":
        echo(json.dumps([{**o.root.to_json(), "status": o.status, command.name: o.data,
                          "warnings": list(o.warnings), "errors": [*o.errors, *o.footer.splitlines()[:-1]]}
                         for o in outcomes],
                        indent=2) + "\n")
    elif not outcomes and ref is not None:
        echo(f"No stack under {found.directory} has changed since {ref}.\n")
    else:
        echo(summary(command, outcomes) + "\n")
    return exit_code(outcomes)


# -- the commands -------------------------------------------------------------------
PLAN_STATUSES = {"changes": "with changes", "no-changes": "without changes", "error": "failed"}
DRIFT_STATUSES = {"drift": "drifted", "clean": "without drift", "error": "failed"}
VALIDATE_STATUSES = {"valid": "valid", "error": "invalid"}


def planning(fmt: str, *, color: bool, detailed_exitcode: bool, refresh_live: bool, regenerate_lost: bool,
             parallelism: int, require_remote_state: bool = False, force: bool = False,
             refresh_ttl: datetime.timedelta | None = None) -> Command:
    def one(root: Root, progress: Progress) -> Outcome:
        workspace = engine.open_stack(root.path)
        if require_remote_state:
            engine.require_remote_state(workspace)
        plan = engine.make_plan(workspace, engine.new_context(workspace), refresh_live=refresh_live,
                                progress=progress, regenerate_lost=regenerate_lost, parallelism=parallelism,
                                force=force, refresh_ttl=refresh_ttl)
        match fmt:
            case "json":
                shown, data = "", json.loads(structured.plan_json(plan))
            case "markdown":
                shown, data = structured.plan_markdown(plan), None
            case _:
                shown, data = text.render_plan(plan, color=color), None
        return Outcome(_named(root, workspace.config), "changes" if plan.has_changes else "no-changes",
                       2 if detailed_exitcode and plan.has_changes else 0, shown, data,
                       warnings=tuple(str(d) for d in workspace.warnings))

    return Command("plan", one, PLAN_STATUSES)


def drifting(fmt: str, *, color: bool, parallelism: int, require_remote_state: bool = False,
             force: bool = False) -> Command:
    def one(root: Root, progress: Progress) -> Outcome:
        workspace = engine.open_stack(root.path)
        if require_remote_state:
            engine.require_remote_state(workspace)
        items = engine.drift(workspace, engine.new_context(workspace), progress=progress, parallelism=parallelism,
                             force=force)
        found = drifted(items)
        match fmt:
            case "json":
                shown, data = "", json.loads(structured.drift_json(items))
            case "markdown":
                shown, data = structured.drift_markdown(items), None
            case _:
                shown, data = text.render_drift_report(items, color=color), None
        return Outcome(_named(root, workspace.config), "drift" if found else "clean", 2 if found else 0,
                       shown, data, warnings=tuple(str(d) for d in workspace.warnings))

    return Command("drift", one, DRIFT_STATUSES)


def validating(*, strict: bool) -> Command:
    def one(root: Root, _progress: Progress) -> Outcome:
        config, diagnostics = manifest.load(str(root.path))
        if strict:
            diagnostics = [dataclasses.replace(d, severity="error") for d in diagnostics]
        failures = [d for d in diagnostics if d.severity == "error"]
        if failures or config is None:
            raise errors.ManifestError(failures or diagnostics)
        shown = f"Valid: stack {config.stack.name}, {len(config.resources)} resource(s).\n"
        return Outcome(_named(root, config), "valid", 0, shown, {"resources": len(config.resources)},
                       warnings=tuple(str(d) for d in diagnostics))

    return Command("validate", one, VALIDATE_STATUSES)


def _named(root: Root, config: manifest.Config) -> Root:
    return dataclasses.replace(root, name=config.stack.name)


def drifted(items: Sequence[plan_model.DriftItem]) -> bool:
    """Drift worth an exit 2: info items (grants AWS services made for themselves) are shown, never page."""
    return any(item.severity != "info" for item in items)
