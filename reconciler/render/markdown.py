"""Markdown views for pull-request comments and drift issues (GitHub-flavoured).

A plan comment opens with a hidden marker line naming the stack
(``<!-- reconciler-plan: STACK -->``) so a workflow finds its one comment
and updates it in place; then a warning block for anything destructive or
critical, Terraform's summary line, one table per kind, each changed
resource's attribute diff folded in ``<details>``, and drift. Secret values
are masked as everywhere else. A comment longer than GitHub's limit keeps
its head and tables and loses attribute diffs from the end (then table rows),
with a note saying how many were cut and how to see the whole plan. Pure."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence

from reconciler.plan import actions, model
from reconciler.plan import rules as plan_rules
from reconciler.plan import unmanaged as unmanaged_model
from reconciler.render import text, values

Action = actions.Action
GITHUB_COMMENT_LIMIT = 65_536  # characters in one issue or pull-request comment
COMMENT_BUDGET = GITHUB_COMMENT_LIMIT - 1_024  # what a rendering fills: room for a workflow's own marker line
PLAN_MARKER = "<!-- reconciler-plan: {stack} -->"
DRIFT_MARKER = "<!-- reconciler-drift: {stack} -->"
WARNINGS_SHOWN = 30  # warning bullets before "and N more"
SEVERITY_ORDER = tuple(s.value for s in sorted(plan_rules.Severity, key=lambda s: -s.rank))
FULL_PLAN_HINT = ("see the full plan in the job log, or run `reconciler plan` "
                  "(`--format json` holds every change)")
_BACKTICKS = re.compile(r"`+")


def marker(template: str, stack: str) -> str:
    """The hidden line a workflow searches for (``--`` cannot end the comment early)."""
    return template.format(stack=stack.replace("--", "- -").replace(">", ""))


def cell(value: str) -> str:
    """Text safe inside one table cell."""
    return value.replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def code(value: str) -> str:
    """Inline code that holds any text (a longer fence than the text's own backticks)."""
    longest = max((len(m) for m in _BACKTICKS.findall(value)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if value.startswith("`") or value.endswith("`") else ""
    return f"{fence}{pad}{value}{pad}{fence}"


def _fence(body: str) -> str:
    longest = max((len(m) for m in _BACKTICKS.findall(body)), default=0)
    return "`" * max(3, longest + 1)


def summary_line(plan: model.Plan) -> str:
    """Terraform's ``N to add, N to change, N to destroy`` (a replacement is
    one add and one destroy), then what Terraform has no word for."""
    counts = plan.counts()
    replaced = counts[Action.CREATE_THEN_DELETE.value] + counts[Action.DELETE_THEN_CREATE.value]
    parts = [f"{counts[Action.CREATE.value] + replaced} to add", f"{counts[Action.UPDATE.value]} to change",
             f"{counts[Action.DELETE.value] + replaced} to destroy"]
    parts.extend(f"{counts[a.value]} to {a.value}" for a in (Action.READ, Action.ROTATE, Action.REVOKE)
                 if counts[a.value])
    line = "Plan: " + ", ".join(parts)
    if replaced:
        line += f" ({replaced} replaced: counted in add and destroy)"
    return line + "."


def severity_totals(items: Sequence[model.DriftItem]) -> dict[str, int]:
    totals = {s: 0 for s in SEVERITY_ORDER}
    for item in items:
        totals[item.severity] = totals.get(item.severity, 0) + 1
    return totals


def drift_summary_line(items: Sequence[model.DriftItem]) -> str:
    if not items:
        return "No drift. Live AWS matches the recorded state."
    totals = severity_totals(items)
    shown = ", ".join(f"{n} {s}" for s, n in totals.items() if n)
    attributes = sum(len(i.changes) for i in items)
    return f"Drift: {len(items)} item(s) ({shown}), {attributes} attribute(s) changed outside reconciler."


def _what_changes(change: model.ResourceChange) -> str:
    """The table's last column: changed attributes, or why a timed action is due."""
    match change.action:
        case Action.ROTATE | Action.REVOKE:
            return "; ".join(change.notes) or "—"
        case Action.UPDATE | Action.CREATE_THEN_DELETE | Action.DELETE_THEN_CREATE | Action.READ | Action.CREATE \
                | Action.DELETE | Action.NOOP:
            return ", ".join(code(c.path) for c in change.changes) or "—"


def _destructive(change: model.ResourceChange) -> bool:
    match change.action:
        case Action.DELETE | Action.CREATE_THEN_DELETE | Action.DELETE_THEN_CREATE:
            return True
        case Action.NOOP | Action.CREATE | Action.READ | Action.UPDATE | Action.ROTATE | Action.REVOKE:
            return False


def _warnings(plan: model.Plan) -> list[str]:
    bullets = [f"`{c.action.symbol}` {code(c.address)} will be {c.action.verb}"
               + (" (needs `--allow-destroy` at apply)" if c.requires_allow_destroy else "")
               for c in plan.actionable if _destructive(c)]
    bullets += [f"critical drift: {code(d.address)}" + (f": {d.note}" if d.note else "")
                for d in plan.drift if d.severity == plan_rules.Severity.CRITICAL.value]
    destroys = any(_destructive(c) for c in plan.actionable)
    critical = any(d.severity == plan_rules.Severity.CRITICAL.value for d in plan.drift)
    what = " and ".join([*(["destroys or replaces objects"] if destroys else []),
                         *(["found critical drift"] if critical else [])])
    return _alert("WARNING", f"This plan {what}. Review before merging.", bullets)


def _alert(kind: str, title: str, bullets: Sequence[str]) -> list[str]:
    if not bullets:
        return []
    lines = [f"> [!{kind}]", f"> {title}"]
    lines += [f"> - {cell(b)}" for b in bullets[:WARNINGS_SHOWN]]
    if len(bullets) > WARNINGS_SHOWN:
        lines.append(f"> - … and {len(bullets) - WARNINGS_SHOWN} more")
    return [*lines, ""]


def _by_kind(changes: Sequence[model.ResourceChange]) -> dict[str, list[model.ResourceChange]]:
    grouped: dict[str, list[model.ResourceChange]] = {}
    for change in changes:
        grouped.setdefault(change.kind, []).append(change)
    return grouped


def _tables(changes: Sequence[model.ResourceChange], shown: int) -> list[str]:
    """One table per kind, for the first ``shown`` changes (in plan order)."""
    lines: list[str] = []
    for kind, group in _by_kind(changes[:shown]).items():
        lines += [f"#### {kind} ({len(group)})", "", "| action | resource | changed attributes |", "|---|---|---|"]
        lines += [f"| `{c.action.symbol}` {c.action.value} | {code(c.address)} | {cell(_what_changes(c))} |"
                  for c in group]
        lines.append("")
    return lines


def _diff_lines(change: model.ResourceChange) -> list[str]:
    """A change's attribute lines as the text plan has them, moved to the left
    edge so GitHub colours them (``~`` becomes ``!``, which it colours too)."""
    out: list[str] = []
    for line in text.change_lines(change)[2:]:  # the heading and the address are in the summary
        for physical in line.split("\n"):
            physical = physical[6:] if physical.startswith(" " * 6) else physical.strip()
            if physical.startswith("~ "):
                physical = "! " + physical[2:]
            out.append(physical)
    while out and not out[-1]:
        out.pop()
    return out


def _details(change: model.ResourceChange) -> list[str]:
    body = _diff_lines(change)
    count = len(change.changes)
    what = f"{count} attribute(s)" if count else change.action.verb
    fence = _fence("\n".join(body))
    summary = f"<code>{html.escape(change.action.symbol)} {html.escape(change.address)}</code>: {html.escape(what)}"
    return [f"<details><summary>{summary}</summary>", "", f"{fence}diff", *body, fence, "", "</details>", ""]


def _drift_rows(items: Sequence[model.DriftItem]) -> list[str]:
    """Every item at least one row: an item that names no attribute shows its note."""
    lines = ["| severity | resource | attribute | recorded | live | note |", "|---|---|---|---|---|---|"]
    for item in items:
        note = cell(item.note) if item.note else ""
        resource = code(item.address)
        if item.gone:
            lines.append(f"| **{item.severity}** | {resource} | — | exists | gone | {note} |")
        elif not item.changes:
            lines.append(f"| **{item.severity}** | {resource} | — | — | — | {note or '—'} |")
        for change, severity in zip(item.changes, item.attribute_severities, strict=True):
            before = values.show(change.before, sensitive=change.sensitive)
            after = values.show(change.after, sensitive=change.sensitive)
            lines.append(f"| **{severity}** | {resource} | {code(change.path)} | {code(cell(before))} | "
                         f"{code(cell(after))} | {note} |")
            note = ""  # once per item
    return lines


def _longest(fits: Callable[[int], bool], most: int) -> int:
    """The largest ``n`` in ``0..most`` for which ``fits(n)`` (``fits`` shrinks as ``n`` grows)."""
    low, high = 0, most
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


def _fit(render: Callable[[int, int], str], rows: int, diffs: int, limit: int) -> str:
    """The longest rendering under ``limit`` (``render(rows, diffs)``): every
    table row and as many attribute diffs as fit, else as many rows as fit."""
    if len(render(rows, 0)) <= limit:
        return render(rows, _longest(lambda n: len(render(rows, n)) <= limit, diffs))
    return render(_longest(lambda n: len(render(n, 0)) <= limit, rows), 0)


def plan_markdown(plan: model.Plan, *, limit: int = COMMENT_BUDGET) -> str:
    head = [marker(PLAN_MARKER, plan.stack), f"### reconciler plan for stack {code(plan.stack)}", ""]
    head += _warnings(plan)
    if plan.refresh_ttl is not None and plan.refresh_ttl.skipped:
        head += ["> [!NOTE]", f"> {cell(plan.refresh_ttl.line)}", ""]
    if plan.targets:
        head += _alert("NOTE", "This plan is partial: only the targets and what they depend on.",
                       [code(t) for t in plan.targets])
    full_tail, short_tail = _plan_tail(plan)
    if not plan.has_changes:
        matches = "The recorded state matches the manifests." if plan.refresh_ttl is not None \
            and plan.refresh_ttl.skipped else "Live AWS matches the manifests."
        shown = "\n".join([*head, f"**No changes.** {matches}", "", *full_tail]).rstrip() + "\n"
        return shown if len(shown) <= limit else "\n".join([*head, "**No changes.**", "", *short_tail]) + "\n"
    changes = plan.actionable
    with_diffs = [c for c in changes if _diff_lines(c)]

    def render(rows: int, diffs: int, tail: Sequence[str]) -> str:
        lines = [*head, f"**{summary_line(plan)}**", ""]
        cut_rows, cut_diffs = len(changes) - rows, len(with_diffs) - diffs
        if cut_rows or cut_diffs:
            lines += _alert("NOTE", f"This comment was cut to fit GitHub's {limit:,}-character limit.", [
                *([f"{cut_rows} of {len(changes)} changes are not listed"] if cut_rows else []),
                *([f"{cut_diffs} of {len(with_diffs)} attribute diffs are not shown"] if cut_diffs else []),
                FULL_PLAN_HINT])
        lines += _tables(changes, rows)
        for change in with_diffs[:diffs]:
            lines += _details(change)
        return "\n".join([*lines, *tail]).rstrip() + "\n"

    tail = full_tail if len(render(0, 0, full_tail)) <= limit else short_tail
    return _fit(lambda rows, diffs: render(rows, diffs, tail), len(changes), len(with_diffs), limit)


def _plan_tail(plan: model.Plan) -> tuple[list[str], list[str]]:
    """What follows the changes: drift and schedule in full, and in one line
    each for a plan too long to hold them."""
    full: list[str] = []
    short: list[str] = []
    if plan.drift:
        critical = sum(1 for d in plan.drift if d.severity == plan_rules.Severity.CRITICAL.value)
        title = (f"Drift: {len(plan.drift)} item(s) changed outside reconciler"
                 f"{f', {critical} critical' if critical else ''}")
        full += [f"<details><summary>{title}</summary>", "", *_drift_rows(plan.drift), "", "</details>", ""]
        short += [f"**{title}** (the table is left out to fit: run `reconciler drift`)", ""]
    if plan.schedule:
        full += ["<details><summary>Schedule</summary>", "", *(f"- {cell(s)}" for s in plan.schedule), "",
                 "</details>", ""]
    return full, short


def _unmanaged_rows(items: Sequence[unmanaged_model.Unmanaged]) -> list[str]:
    lines = ["| severity | kind | type | object | region | why | what to do |", "|---|---|---|---|---|---|---|"]
    for item in items:
        lines.append(f"| **{item.severity}** | {item.kind} | {code(item.type)} | {code(cell(item.id))} | "
                     f"{item.region} | {cell(item.reason)} | {cell(item.hint) or '—'} |")
    return lines


def drift_markdown(items: Sequence[model.DriftItem], *, stack: str = "",
                   limit: int = COMMENT_BUDGET,
                   unmanaged: Sequence[unmanaged_model.Unmanaged] | None = None) -> str:
    """Every item (a note-only one too), severity per attribute, and a summary
    line last; ``unmanaged`` (drift --unmanaged): a table of its own after the
    drift table, and its own summary line. A report too long for ``limit``
    loses rows from the end (unmanaged ones first), with a note saying so."""
    lines = [marker(DRIFT_MARKER, stack)] if stack else []
    lines += [f"### reconciler drift{f' for stack {code(stack)}' if stack else ''}", ""]
    summary = [f"**{drift_summary_line(items)}**"]
    if unmanaged is not None:
        summary.append(f"**{text.unmanaged_summary_line(unmanaged)}**")
    if not items and not unmanaged:
        return "\n".join([*lines, *(s.strip("*") for s in summary)]) + "\n"
    critical = [i for i in items if i.severity == plan_rules.Severity.CRITICAL.value]
    lines += _alert("CAUTION", "Critical drift: something no longer works as recorded.",
                    [f"{code(i.address)}" + (f": {i.note}" if i.note else "") for i in critical])
    rows = _drift_rows(items)[2:] if items else []
    extra = _unmanaged_rows(unmanaged)[2:] if unmanaged else []
    everything = [(True, r) for r in rows] + [(False, r) for r in extra]

    def render(shown: int, _diffs: int) -> str:
        kept = everything[:shown]
        drift_rows = [r for is_drift, r in kept if is_drift]
        unmanaged_rows = [r for is_drift, r in kept if not is_drift]
        body = list(lines)
        if items:
            body += _drift_rows(())[:2] + drift_rows
        if unmanaged_rows:
            body += ["", "#### Unmanaged: objects that look like this stack's, not in state", "",
                     *_unmanaged_rows(())[:2], *unmanaged_rows]
        if shown < len(everything):
            body += ["", *_alert("NOTE", f"This report was cut to fit the {limit:,}-character limit.",
                                 [f"{len(everything) - shown} of {len(everything)} rows are not shown",
                                  "run `reconciler drift --format json` for every item"])]
        return "\n".join([*body, "", *summary]) + "\n"

    return _fit(render, len(everything), 0, limit)
