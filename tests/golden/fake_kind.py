"""A small fake kind for the golden plans only: its rules exercise what no
real kind needs yet (destroy-before-create replaces, timed rotate and revoke,
per-attribute severity). Registered by tests/unit/test_golden.py, never by
the product."""

from __future__ import annotations

import datetime
from typing import Any

from reconciler.plan import actions, model
from reconciler.plan import rules as plan_rules
from reconciler.state import model as state_model

KIND = "Widget"


class WidgetRules(plan_rules.Rules):
    """A widget's name is unique in its account: the old one goes before the new one comes."""

    noun = "widget"
    replace_order = actions.Action.DELETE_THEN_CREATE

    def severity(self, path: str, before: Any, after: Any) -> plan_rules.Severity:
        if path == "status" and after != "ok":
            return plan_rules.Severity.CRITICAL
        if path.startswith("labels."):
            return plan_rules.Severity.INFO
        return plan_rules.Severity.WARNING

    def timed(self, desired: model.Desired, entry: state_model.ResourceState,
              now: datetime.datetime, live: model.Refreshed | None = None,
              prior: state_model.State | None = None) -> tuple[plan_rules.Timed, ...]:
        """Rotation every ``rotateEveryDays`` since ``ids.rotatedAt``; each lease in
        ``ids.leases`` (id -> expiry) revoked once expired."""
        due: list[plan_rules.Timed] = []
        every = desired.attributes.get("rotateEveryDays")
        rotated = entry.ids.get("rotatedAt")
        if every and rotated:
            when = datetime.datetime.fromisoformat(rotated) + datetime.timedelta(days=int(every))
            if now >= when:
                due.append(plan_rules.Timed(actions.Action.ROTATE,
                                            f"rotation due since {when.isoformat(timespec='seconds')}"))
        for lease, expires in sorted((entry.ids.get("leases") or {}).items()):
            if now >= datetime.datetime.fromisoformat(expires):
                due.append(plan_rules.Timed(actions.Action.REVOKE, f"lease expired at {expires}", lease))
        return tuple(due)


RULES = WidgetRules()
