"""JSON (for machines) and Markdown (for pull-request comments) views."""

from __future__ import annotations

import json
from collections.abc import Sequence

from reconciler.plan import actions, model
from reconciler.render import text, values


def plan_json(plan: model.Plan) -> str:
    data = plan.to_json()
    data.pop("desired")
    for change, shown in zip(plan.changes, data["changes"], strict=True):
        shown["before"] = values.masked(shown["before"], change.sensitive)
        shown["after"] = values.masked(shown["after"], change.sensitive)
    data["summary"] = plan.counts()
    data["hasChanges"] = plan.has_changes
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def drift_json(items: Sequence[model.DriftItem]) -> str:
    return json.dumps({"drift": [i.to_json() for i in items],
                       "critical": sum(1 for i in items if i.severity == "critical")},
                      indent=2, sort_keys=True) + "\n"


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def _what_changes(change: model.ResourceChange) -> str:
    """The table's last column: changed attributes, or why a timed action is due."""
    match change.action:
        case actions.Action.ROTATE | actions.Action.REVOKE:
            return "; ".join(change.notes) or "—"
        case actions.Action.UPDATE | actions.Action.CREATE_THEN_DELETE | actions.Action.DELETE_THEN_CREATE \
                | actions.Action.READ | actions.Action.CREATE | actions.Action.DELETE | actions.Action.NOOP:
            return ", ".join(f"`{c.path}`" for c in change.changes) or "—"


def plan_markdown(plan: model.Plan) -> str:
    lines = [f"### reconciler plan for stack `{plan.stack}`", ""]
    if plan.drift:
        critical = sum(1 for d in plan.drift if d.severity == "critical")
        lines.append(f"**Drift:** {len(plan.drift)} resource(s) changed outside reconciler"
                     f"{f', {critical} critical' if critical else ''}.")
        lines.append("")
    if not plan.has_changes:
        lines.append("No changes. Live AWS matches the manifests.")
        return "\n".join(lines) + "\n"
    lines.append(text.summary_line(plan))
    lines.append("")
    lines.append("| action | resource | changed attributes |")
    lines.append("|---|---|---|")
    for change in plan.actionable:
        attrs = _what_changes(change)
        lines.append(f"| `{change.action.symbol}` {change.action.value} | `{change.address}` | {_cell(attrs)} |")
    lines.append("")
    lines.append("<details><summary>Details</summary>")
    lines.append("")
    lines.append("```diff")
    lines.append(text.render_plan(plan, color=False).rstrip())
    lines.append("```")
    lines.append("</details>")
    return "\n".join(lines) + "\n"


def drift_markdown(items: Sequence[model.DriftItem]) -> str:
    if not items:
        return "No drift. Live AWS matches the recorded state.\n"
    lines = ["### reconciler drift", "", "| severity | resource | attribute | recorded | live |",
             "|---|---|---|---|---|"]
    for item in items:
        if item.gone:
            lines.append(f"| **{item.severity}** | `{item.address}` | — | exists | {_cell(item.note)} |")
        for c in item.changes:
            lines.append(f"| **{item.severity}** | `{item.address}` | `{c.path}` | "
                         f"{_cell(values.show(c.before, sensitive=c.sensitive))} | "
                         f"{_cell(values.show(c.after, sensitive=c.sensitive))} |")
    return "\n".join(lines) + "\n"
