"""JSON (for machines) and Markdown (for pull-request comments) views.

``plan --format json`` is one object holding both Terraform's keys
(``format_version``, ``resource_changes``, ``resource_drift``…: see
``terraform``) and ours (``changes``, ``drift``, ``summary``, ``hasChanges``…),
documented by ``schemas/plan.schema.json``. ``drift --format json`` is the
report ``schemas/drift.schema.json`` documents, stable for alerting pipelines."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from reconciler.plan import model
from reconciler.plan import unmanaged as unmanaged_model
from reconciler.render import markdown, terraform, values

DRIFT_FORMAT = "reconciler-drift/v1"


def _dump(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def plan_document(plan: model.Plan) -> dict[str, Any]:
    """The JSON plan as a value (sensitive values masked everywhere)."""
    data = plan.to_json()
    data.pop("desired")
    data.pop("confirmed", None)  # for apply (what to record as read), as ``desired`` is
    data.pop("learned", None)  # for apply (ids to record), likewise
    for change, shown in zip(plan.changes, data["changes"], strict=True):
        shown["before"] = values.masked(shown["before"], change.sensitive)
        shown["after"] = values.masked(shown["after"], change.sensitive)
    data["summary"] = plan.counts()
    data["hasChanges"] = plan.has_changes
    return {**data, **terraform.plan_document(plan)}


def plan_json(plan: model.Plan) -> str:
    return _dump(plan_document(plan))


def _drift_entry(item: model.DriftItem) -> dict[str, Any]:
    resource = terraform.resource_drift(item)
    return {"address": item.address, "type": resource["type"], "name": resource["name"],
            "severity": item.severity, "gone": item.gone, "note": item.note,
            "attributes": terraform.drifted_attributes(item)}


def drift_document(items: Sequence[model.DriftItem], *, stack: str = "",
                   unmanaged: Sequence[unmanaged_model.Unmanaged] | None = None) -> dict[str, Any]:
    """The drift report as a value: every item with a severity per attribute,
    totals per severity; ``drift`` and ``critical`` as earlier versions had them;
    ``unmanaged`` (drift --unmanaged) under its own key, and in ``drifted``."""
    totals = markdown.severity_totals(items)
    attribute_totals = {s: 0 for s in totals}
    for item in items:
        for severity in item.attribute_severities:
            attribute_totals[severity] = attribute_totals.get(severity, 0) + 1
    report: dict[str, Any] = {
        "format": DRIFT_FORMAT,
        "drifted": any(i.severity != "info" for i in items),  # what `drift` exits 2 for
        "count": len(items),
        "totals": totals,
        "attribute_totals": attribute_totals,
        "items": [_drift_entry(i) for i in items],
        "drift": [i.to_json() for i in items],
        "critical": totals.get("critical", 0),
    }
    if stack:
        report["stack"] = stack
    if unmanaged is not None:
        report["unmanaged"] = {"count": len(unmanaged),
                               "totals": {s: sum(1 for u in unmanaged if u.severity == s) for s in totals},
                               "items": [u.to_json() for u in unmanaged]}
        # tagged objects not in state are drift (exit 2); a prefix match alone (info) is shown, never pages
        report["drifted"] = report["drifted"] or any(u.severity != "info" for u in unmanaged)
    return report


def drift_json(items: Sequence[model.DriftItem], *, stack: str = "",
               unmanaged: Sequence[unmanaged_model.Unmanaged] | None = None) -> str:
    return _dump(drift_document(items, stack=stack, unmanaged=unmanaged))


def plan_markdown(plan: model.Plan, *, limit: int = markdown.COMMENT_BUDGET) -> str:
    return markdown.plan_markdown(plan, limit=limit)


def drift_markdown(items: Sequence[model.DriftItem], *, stack: str = "",
                   limit: int = markdown.COMMENT_BUDGET,
                   unmanaged: Sequence[unmanaged_model.Unmanaged] | None = None) -> str:
    return markdown.drift_markdown(items, stack=stack, limit=limit, unmanaged=unmanaged)
