"""Terraform-like text: ``+ ~ +/- -/+ - <= !`` with attribute-level diffs."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from reconciler.plan import actions, diff, model
from reconciler.plan import unmanaged as unmanaged_model
from reconciler.render import values

Action = actions.Action
_COLOURS = {"+": "green", "~": "yellow", "+/-": "magenta", "-/+": "magenta", "-": "red", "<=": "cyan",
            "!": "magenta"}


_ANSI = {"red": 31, "green": 32, "yellow": 33, "magenta": 35, "cyan": 36, "white": 37}


def _styler(color: bool) -> Callable[[str, str], str]:
    """Colour for a terminal (plain ANSI: the pure core imports no CLI library)."""
    if not color:
        return lambda text, _colour: text
    return lambda text, colour: f"\x1b[{_ANSI[colour]}m{text}\x1b[0m"


def summary_line(plan: model.Plan) -> str:
    """Every action counted: the four Terraform users expect always, the rest when present."""
    counts = plan.counts()
    first, second = counts[Action.CREATE_THEN_DELETE.value], counts[Action.DELETE_THEN_CREATE.value]
    orders = [f"{n} {order}" for n, order in ((first, "create before destroy"), (second, "destroy before create"))
              if n]
    replace = f"{first + second} to replace" + (f" ({', '.join(orders)})" if orders else "")
    parts = [f"{counts['create']} to create", f"{counts['update']} to update", replace,
             f"{counts['delete']} to destroy"]
    parts.extend(f"{counts[a.value]} to {a.value}" for a in (Action.READ, Action.ROTATE, Action.REVOKE)
                 if counts[a.value])
    return "Plan: " + ", ".join(parts) + "."


def render_drift(items: Sequence[model.DriftItem], *, color: bool = False) -> list[str]:
    style = _styler(color)
    lines: list[str] = []
    for item in items:
        badge = style(item.severity.upper(), "red" if item.severity == "critical" else "yellow")
        note = f": {item.note}" if item.note else " (recorded -> live)"
        lines.append(f"  # {item.address} [{badge}]{note}")
        width = max((len(c.path) for c in item.changes), default=0)
        indent = " " * (11 + width)
        for change in item.changes:
            before = values.show(change.before, sensitive=change.sensitive, indent=indent)
            after = values.show(change.after, sensitive=change.sensitive, indent=indent)
            lines.append(f"      ~ {change.path.ljust(width)} = {before} -> {after}")
        lines.append("")
    return lines


def change_lines(change: model.ResourceChange, style: Callable[[str, str], str] | None = None) -> list[str]:
    """One change as the text plan shows it: a heading, the address, its attribute lines."""
    style = style or _styler(False)
    symbol = change.action.symbol
    lines = [f"  # {change.address} will be {change.action.verb}",
             f"  {style(symbol, _COLOURS.get(symbol, 'white'))} {change.address}"]
    for note in change.notes:
        lines.append(f"      # ({note})")
    match change.action:
        case Action.CREATE | Action.DELETE | Action.READ if not change.changes:
            shown = change.after if change.action is not Action.DELETE else change.before
            sign = {Action.CREATE: "+", Action.DELETE: "-", Action.READ: " "}[change.action]
            rows = values.flatten(values.masked(dict(shown or {}), change.sensitive))
            width = max((len(p) for p, _ in rows), default=0)
            for path, value in rows:
                indent = " " * (10 + width)
                shown_value = value if value == values.SENSITIVE else values.show(value, indent=indent)
                lines.append(f"      {sign} {path.ljust(width)} = {shown_value}")
        case Action.UPDATE | Action.CREATE_THEN_DELETE | Action.DELETE_THEN_CREATE | Action.READ:
            width = max((len(c.path) for c in change.changes), default=0)
            for c in change.changes:
                lines.append(_attribute_line(c, width, change))
        case Action.ROTATE | Action.REVOKE:
            if change.subject:
                lines.append(f"      ! {change.subject}")
        case Action.NOOP | Action.CREATE | Action.DELETE:
            pass
    if change.requires_allow_destroy:
        lines.append("      # (needs --allow-destroy at apply)")
    lines.append("")
    return lines


def _attribute_line(c: diff.AttributeChange, width: int, change: model.ResourceChange) -> str:
    """One changed attribute. A sensitive one says only that it changes: no
    value, and no version number (stores number their own versions, moves
    copy history, so a guessed ``N -> N+1`` would often be wrong)."""
    indent = " " * (10 + width)
    sensitive = c.sensitive or c.top in change.sensitive
    forces = "   # forces replacement" if c.path in change.replace_paths else ""
    before = values.show(c.before, sensitive=sensitive, indent=indent)
    after = values.show(c.after, sensitive=sensitive, indent=indent)
    match c.operation:
        case diff.DiffOperation.ADD:
            return f"      + {c.path.ljust(width)} = {after}{forces}"
        case diff.DiffOperation.REMOVE:
            return f"      - {c.path.ljust(width)} = {before}{forces}"
        case diff.DiffOperation.CHANGE if sensitive:
            return f"      ~ {c.path.ljust(width)} = {values.SENSITIVE_CHANGE}{forces}"
        case diff.DiffOperation.CHANGE:
            return f"      ~ {c.path.ljust(width)} = {before} -> {after}{forces}"


def render_plan(plan: model.Plan, *, color: bool = False) -> str:
    style = _styler(color)
    lines: list[str] = [plan.refresh_ttl.line, ""] if plan.refresh_ttl is not None else []
    if plan.drift:
        lines.append("Objects have changed outside of reconciler:")
        lines.append("")
        lines.extend(render_drift(plan.drift, color=color))
    if not plan.has_changes:
        skipped = plan.refresh_ttl is not None and plan.refresh_ttl.skipped
        lines.append("No changes. The recorded state matches the manifests." if skipped
                     else "No changes. Live AWS matches the manifests.")
        return "\n".join(lines + _schedule_lines(plan)) + "\n"
    lines.append("reconciler will perform the following actions:")
    lines.append("")
    for change in plan.actionable:
        lines.extend(change_lines(change, style))
    lines.append(summary_line(plan))
    return "\n".join(lines + _schedule_lines(plan)) + "\n"


def _schedule_lines(plan: model.Plan) -> list[str]:
    """Timed work to come (next rotation, a key's grace period), after the plan."""
    if not plan.schedule:
        return []
    return ["", "Schedule:", *(f"  {line}" for line in plan.schedule)]


def render_drift_report(items: Sequence[model.DriftItem], *, color: bool = False,
                        unmanaged: Sequence[unmanaged_model.Unmanaged] | None = None) -> str:
    """The drift report; ``unmanaged`` (drift --unmanaged) adds its own section."""
    if not items:
        lines = ["No drift. Live AWS matches the recorded state."]
    else:
        critical = sum(1 for i in items if i.severity == "critical")
        lines = ["Drift: live AWS differs from the recorded state:", ""]
        lines.extend(render_drift(items, color=color))
        lines.append(f"Drift: {len(items)} resource(s) drifted, {critical} critical.")
    if unmanaged is not None:
        lines.extend(["", *render_unmanaged(unmanaged, color=color)])
    return "\n".join(lines) + "\n"


def unmanaged_summary_line(items: Sequence[unmanaged_model.Unmanaged]) -> str:
    if not items:
        return "Unmanaged: none. Nothing tagged for this stack or under its prefixes is missing from state."
    counts = {s: sum(1 for i in items if i.severity == s) for s in ("warning", "info")}
    shown = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    return f"Unmanaged: {len(items)} object(s) not in state ({shown})."


def render_unmanaged(items: Sequence[unmanaged_model.Unmanaged], *, color: bool = False) -> list[str]:
    """Objects that look like this stack's but are not in state, one block each."""
    style = _styler(color)
    if not items:
        return [unmanaged_summary_line(items)]
    lines = ["Unmanaged: objects that look like this stack's, not in state:", ""]
    for item in items:
        badge = style(item.severity.upper(), "yellow" if item.severity == "warning" else "cyan")
        lines.append(f"  # {item.kind} {item.type} {item.id} ({item.region}) [{badge}]")
        lines.append(f"      {item.reason}")
        if item.hint:
            lines.append(f"      hint: {item.hint}")
        lines.append("")
    lines.append(unmanaged_summary_line(items))
    return lines
