"""Issue 12, the renderings: the JSON plan in the shape of ``terraform show
-json`` (checked against its documented shape, against our schema, and by a
real Rego policy), the drift report and its schema, and the Markdown plan and
drift for pull-request comments. Golden files: ``tests/golden/mixed-pr-comment/``
holds ``plan.md``, ``drift.json`` and ``drift.md`` beside the ``plan.txt`` and
``plan.json`` that test_golden checks (``RECONCILER_GOLDEN_UPDATE=1`` rewrites them)."""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
from typing import Any

import jsonschema
import pytest
import referencing
import referencing.jsonschema
import regopy

from reconciler.plan import actions, diff, model
from reconciler.render import markdown, structured, terraform
from tests.unit import test_golden

Action = actions.Action
MIXED = test_golden.GOLDEN / "mixed-pr-comment"
SCHEMAS = pathlib.Path(__file__).resolve().parents[2] / "schemas"
CANARY = "CANARY-7f3a"
TERRAFORM_ACTIONS = [["no-op"], ["create"], ["read"], ["update"], ["delete", "create"], ["create", "delete"],
                     ["delete"]]  # Terraform's documented change.actions
CHANGE_KEYS = {"actions", "before", "after", "after_unknown", "before_sensitive", "after_sensitive"}


@functools.cache
def validator(name: str) -> jsonschema.Draft202012Validator:
    schemas = {n: json.loads((SCHEMAS / f"{n}.schema.json").read_text()) for n in ("plan", "drift")}
    registry = referencing.Registry().with_resources(
        (s["$id"], referencing.jsonschema.DRAFT202012.create_resource(s)) for s in schemas.values())
    jsonschema.Draft202012Validator.check_schema(schemas[name])
    return jsonschema.Draft202012Validator(schemas[name], registry=registry)


def schema_errors(name: str, document: Any) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in validator(name).iter_errors(document)]


@functools.cache
def mixed() -> model.Plan:
    return test_golden.golden_plan(MIXED)


def rendered() -> dict[str, str]:
    plan = mixed()
    return {"plan.md": structured.plan_markdown(plan), "drift.json": structured.drift_json(plan.drift, stack="golden"),
            "drift.md": structured.drift_markdown(plan.drift, stack="golden")}


# -- golden files ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["plan.md", "drift.json", "drift.md"])
def test_golden_renderings_of_a_mixed_plan(name: str) -> None:
    content = rendered()[name]
    if test_golden.UPDATE:
        (MIXED / name).write_text(content)
    assert content == (MIXED / name).read_text(), f"{name} differs (RECONCILER_GOLDEN_UPDATE=1 rewrites it)"


def test_the_mixed_plan_holds_every_action_and_every_drift_severity_but_high() -> None:
    plan = mixed()
    assert {c.action for c in plan.changes} == set(Action) - {Action.CREATE_THEN_DELETE}
    assert {d.severity for d in plan.drift} == {"critical", "warning"}
    assert {s for d in plan.drift for s in d.attribute_severities} == {"critical", "warning", "info"}
    assert any(d.gone for d in plan.drift) and any(not d.changes and not d.gone for d in plan.drift)


def test_no_rendering_of_the_mixed_plan_shows_a_secret_token() -> None:
    """The state records value tokens (``generation:N``) and digests: none is shown."""
    outputs = {**rendered(), "plan.json": structured.plan_json(mixed())}
    for name, content in outputs.items():
        assert "generation:" not in content and "d" * 64 not in content, name
        assert ('"sensitive": true' if name == "drift.json" else "(sensitive)") in content, name


# -- the Terraform shape -----------------------------------------------------------------
def every_golden_plan() -> list[pathlib.Path]:
    return [c for c in test_golden.cases() if (c / "plan.json").exists()]


@pytest.mark.parametrize("case", every_golden_plan(), ids=lambda p: p.name)
def test_every_golden_plan_json_matches_the_schema(case: pathlib.Path) -> None:
    assert schema_errors("plan", json.loads((case / "plan.json").read_text())) == []


def test_the_schema_refuses_what_is_not_a_plan() -> None:
    document = json.loads((MIXED / "plan.json").read_text())
    document["resource_changes"][0]["change"]["actions"] = ["replace"]
    del document["resource_drift"]
    assert [e.split(":")[0] for e in schema_errors("plan", document)] == [
        "$", "$.resource_changes[0].change.actions"]


def test_resource_changes_have_terraforms_documented_shape() -> None:
    """Terraform's JSON output format: every resource_change names address, mode,
    type and name; change holds actions, before, after, after_unknown and both
    *_sensitive; actions are Terraform's closed set (plus rotate / revoke)."""
    document = structured.plan_document(mixed())
    assert document["format_version"].startswith("1.")
    seen = []
    for entry in document["resource_changes"]:
        assert {"address", "mode", "type", "name", "change"} <= set(entry)
        assert entry["mode"] in ("managed", "data")
        assert CHANGE_KEYS <= set(entry["change"])
        assert entry["change"]["actions"] in [*TERRAFORM_ACTIONS, ["rotate"], ["revoke"]]
        seen.append(entry["change"]["actions"])
        assert entry["change"]["actions"] == terraform.terraform_actions(Action(entry["reconciler"]["action"]))
    assert sorted(set(map(tuple, seen))) == sorted(
        {tuple(a) for a in TERRAFORM_ACTIONS if a != ["create", "delete"]} | {("rotate",), ("revoke",)})
    assert len(seen) == len(mixed().changes)
    for entry in document["resource_drift"]:
        assert {"address", "mode", "type", "name", "change"} <= set(entry) and CHANGE_KEYS <= set(entry["change"])


def test_each_action_maps_to_terraforms_actions() -> None:
    assert {a: terraform.terraform_actions(a) for a in Action} == {
        Action.NOOP: ["no-op"], Action.CREATE: ["create"], Action.READ: ["read"], Action.UPDATE: ["update"],
        Action.DELETE_THEN_CREATE: ["delete", "create"], Action.CREATE_THEN_DELETE: ["create", "delete"],
        Action.DELETE: ["delete"], Action.ROTATE: ["rotate"], Action.REVOKE: ["revoke"]}


def by_address(document: dict[str, Any], key: str = "resource_changes") -> dict[str, dict[str, Any]]:
    return {e["address"] + (f" deposed {e['deposed']}" if "deposed" in e else ""): e for e in document[key]}


BY_ADDRESS = """
package main

import rego.v1

changes := {rc.address: rc.change.actions | some rc in input.resource_changes; not rc.deposed}
"""


def test_no_two_resource_changes_share_an_address_as_terraform_never_does() -> None:
    """The policy idiom {rc.address: ... | some rc in input.resource_changes} fails in Rego on a repeated
    address: a rotate or revoke beside the same resource's update is addressed on its own."""
    document = structured.plan_document(mixed())
    keys = [(e["address"], e.get("deposed")) for e in document["resource_changes"]]
    assert len(keys) == len(set(keys))
    changes = rego(BY_ADDRESS, document, "data.main.changes")
    assert changes["Widget/due"] == ["update"] and changes["Widget/due (rotate)"] == ["rotate"]


def test_a_read_only_adopted_key_is_a_data_resource_read() -> None:
    entry = by_address(structured.plan_document(mixed()))["KmsProvider/shared"]
    assert (entry["mode"], entry["type"], entry["name"], entry["change"]["actions"]) == (
        "data", "KmsProvider", "shared", ["read"])


def test_sensitive_values_are_masked_and_marked_as_terraform_marks_them() -> None:
    change = model.ResourceChange("Secret/db", "Secret", "db", Action.UPDATE, "managed",
                                  {"value": CANARY + "-old", "tags": {"a": "b"}, "vault": "main"},
                                  {"value": CANARY + "-new", "tags": {"a": "b"}, "vault": "main"},
                                  (diff.AttributeChange("value", CANARY + "-old", CANARY + "-new", sensitive=True),),
                                  sensitive=("value",))
    entry = terraform.resource_change(change)
    assert CANARY not in json.dumps(entry)
    assert entry["change"]["before"] == {"value": "(sensitive)", "tags": {"a": "b"}, "vault": "main"}
    assert entry["change"]["before_sensitive"] == entry["change"]["after_sensitive"] == {"value": True, "tags": {}}
    created = terraform.resource_change(model.ResourceChange("Secret/db", "Secret", "db", Action.CREATE, "managed",
                                                             None, {"value": CANARY}, sensitive=("value",)))
    assert (created["change"]["before"], created["change"]["before_sensitive"]) == (None, False)
    assert created["change"]["after"] == {"value": "(sensitive)"}


def test_values_known_after_apply_are_left_out_of_after_and_marked_unknown() -> None:
    document = json.loads((test_golden.GOLDEN / "known-after-apply" / "plan.json").read_text())
    change = by_address(document)["Widget/uses-new-key"]["change"]
    assert "keyArn" not in change["after"] and change["after"]["policy"] == {"Statement": [{"Sid": "Use"}]}
    assert change["after_unknown"] == {"keyArn": True, "policy": {"Statement": [{"Resource": True}]}}


def test_replaces_carry_replace_paths_and_deposed_objects_their_id() -> None:
    named = by_address(structured.plan_document(mixed()))["Widget/named"]
    assert named["change"]["replace_paths"] == [["displayName"]]
    assert named["action_reason"] == "replace_because_cannot_update"
    deposed = json.loads((test_golden.GOLDEN / "deposed-key" / "plan.json").read_text())
    entry = by_address(deposed)["KmsProvider/app-data deposed 1a2b3c4d"]
    assert entry["change"]["actions"] == ["delete"] and entry["change"]["after"] is None
    assert terraform.path_steps("policy.Statement[0].Action") == ["policy", "Statement", 0, "Action"]
    assert terraform.path_steps("policy.Statement[Sid=Admin]") == ["policy", "Statement", "Sid=Admin"]


def test_resource_drift_is_recorded_against_live_with_severity_per_attribute() -> None:
    drift = by_address(structured.plan_document(mixed()), "resource_drift")
    assert drift["Widget/vanished"]["change"]["actions"] == ["delete"]
    assert drift["Widget/vanished"]["change"]["after"] is None
    due = drift["Widget/due"]
    assert (due["change"]["before"], due["change"]["after"]) == ({"color": "blue", "labels.team": "a"},
                                                                 {"color": "red", "labels.team": "b"})
    assert [(a["path"], a["severity"]) for a in due["reconciler"]["attributes"]] == [
        ("color", "warning"), ("labels.team", "info")]
    secret = drift["Secret/db-password"]["change"]
    assert (secret["before"], secret["before_sensitive"]) == ({"value": "(sensitive)"}, {"value": True})


# -- policies written for Terraform plans ------------------------------------------------------
NO_KMS_DELETE = """
package main

import rego.v1

deny contains msg if {
    some rc in input.resource_changes
    rc.type == "KmsProvider"
    rc.mode == "managed"
    "delete" in rc.change.actions
    msg := sprintf("%s: deleting a KMS key is not allowed", [rc.address])
}
"""

TERRAFORM_STYLE = """
package terraform.analysis

# The classic shape of a Terraform plan policy (count the changes by action).
changes_of(action) := {rc.address | rc := input.resource_changes[_]; rc.change.actions[_] == action}

replaced contains rc.address if {
    rc := input.resource_changes[_]
    count(rc.change.actions) == 2
}

sensitive_shown contains rc.address if {
    rc := input.resource_changes[_]
    some attribute
    rc.change.after_sensitive[attribute] == true
    rc.change.after[attribute] != "(sensitive)"
}
"""


def rego(policy: str, document: dict[str, Any], query: str) -> Any:
    """A Rego query evaluated by a real Rego interpreter (rego-cpp, through regopy)."""
    interpreter = regopy.Interpreter()
    interpreter.add_module("policy.rego", policy)
    interpreter.set_input(document)
    output = interpreter.query(query)
    assert output.ok(), str(output)
    (value,) = json.loads(str(output))["expressions"]
    return value


def test_a_conftest_policy_refuses_deleting_a_kms_key() -> None:
    document = structured.plan_document(mixed())
    assert (rego(NO_KMS_DELETE, document, "data.main.deny")) == [
        "KmsProvider/old: deleting a KMS key is not allowed"]
    clean = json.loads((test_golden.GOLDEN / "update-in-place" / "plan.json").read_text())
    assert (rego(NO_KMS_DELETE, clean, "data.main.deny")) == []


def test_a_terraform_style_policy_counts_changes_and_finds_no_shown_secret() -> None:
    document = structured.plan_document(mixed())
    assert sorted((rego(TERRAFORM_STYLE, document, 'data.terraform.analysis.changes_of("create")'))) == [
        "Secret/new-token", "Widget/named", "Widget/vanished"]
    assert (rego(TERRAFORM_STYLE, document, "data.terraform.analysis.replaced")) == ["Widget/named"]
    assert (rego(TERRAFORM_STYLE, document, "data.terraform.analysis.sensitive_shown")) == []


def test_the_same_policy_in_python_agrees() -> None:
    document = json.loads(structured.plan_json(mixed()))
    denied = [rc["address"] for rc in document["resource_changes"]
              if rc["type"] == "KmsProvider" and "delete" in rc["change"]["actions"]]
    assert denied == ["KmsProvider/old"]


# -- the drift report ----------------------------------------------------------------------
@pytest.mark.parametrize("case", [c for c in test_golden.cases() if not (c / "error.txt").exists()],
                         ids=lambda p: p.name)
def test_every_golden_drift_report_matches_the_schema(case: pathlib.Path) -> None:
    plan = test_golden.golden_plan(case)
    assert schema_errors("drift", structured.drift_document(plan.drift, stack="golden")) == []


def test_the_drift_report_counts_items_and_attributes_per_severity() -> None:
    report = json.loads(rendered()["drift.json"])
    assert (report["count"], report["drifted"], report["critical"]) == (5, True, 4)
    assert report["totals"] == {"critical": 4, "high": 0, "warning": 1, "info": 0}
    assert report["attribute_totals"] == {"critical": 2, "high": 0, "warning": 1, "info": 1}
    items = {i["address"]: i for i in report["items"]}
    assert items["Secret/old-token"]["attributes"] == [] and items["Secret/old-token"]["note"].startswith(
        "its envelope no longer decrypts")
    assert items["Secret/db-password"]["attributes"] == [
        {"path": "value", "op": "change", "severity": "critical", "sensitive": True}]


def test_the_drift_schema_refuses_an_undocumented_field() -> None:
    report = json.loads(rendered()["drift.json"])
    report["items"][0]["colour"] = "red"
    report["items"][1]["attributes"][0]["before"] = "x"  # a sensitive attribute never has values
    assert len(schema_errors("drift", report)) == 2


def test_an_empty_drift_report() -> None:
    report = structured.drift_document([])
    assert schema_errors("drift", report) == []
    assert (report["drifted"], report["count"], report["items"]) == (False, 0, [])
    assert structured.drift_markdown([], stack="s").splitlines()[-1] == "No drift. Live AWS matches the recorded state."


def test_info_only_drift_is_reported_but_not_drifted() -> None:
    item = model.DriftItem("KmsProvider/k", "info", (diff.AttributeChange("grants.x", None, {"a": 1}),),
                           note="grants this stack did not create")
    assert structured.drift_document([item])["drifted"] is False


# -- Markdown ---------------------------------------------------------------------------------
def test_markdown_drift_never_drops_an_item_and_ends_with_a_summary() -> None:
    plan = mixed()
    shown = structured.drift_markdown(plan.drift, stack="golden")
    rows = [line for line in shown.splitlines() if line.startswith("| **")]
    assert {r.split(" | ")[1].strip("`") for r in rows} == {d.address for d in plan.drift}
    assert len(rows) == sum(max(1, len(d.changes)) for d in plan.drift)
    assert shown.splitlines()[-1] == (
        "**Drift: 5 item(s) (4 critical, 1 warning), 4 attribute(s) changed outside reconciler.**")


def test_markdown_plan_has_marker_summary_tables_and_warnings() -> None:
    shown = rendered()["plan.md"]
    lines = shown.splitlines()
    assert lines[0] == "<!-- reconciler-plan: golden -->"
    assert "**Plan: 3 to add, 4 to change, 2 to destroy, 1 to read, 1 to rotate, 1 to revoke" in shown
    assert [line for line in lines if line.startswith("#### ")] == ["#### KmsProvider (3)", "#### Secret (3)",
                                                                   "#### Widget (5)"]
    warning = lines[lines.index("> [!WARNING]"):]
    warning = warning[:warning.index("")]
    assert any("`KmsProvider/old` will be destroyed" in w for w in warning)
    assert any("`Widget/named` will be replaced" in w for w in warning)
    assert any("critical drift: `Secret/old-token`" in w for w in warning)
    assert shown.count("<details>") == shown.count("</details>") == 12


def test_markdown_summary_counts_a_replace_as_an_add_and_a_destroy() -> None:
    plan = test_golden.golden_plan(test_golden.GOLDEN / "replace-destroy-first")
    assert markdown.summary_line(plan) == (
        "Plan: 1 to add, 0 to change, 1 to destroy (1 replaced: counted in add and destroy).")
    assert "> [!WARNING]" not in structured.plan_markdown(test_golden.golden_plan(
        test_golden.GOLDEN / "update-in-place"))


def big_plan(count: int) -> model.Plan:
    changes = tuple(model.ResourceChange(
        f"Widget/w{i:05}", "Widget", f"w{i:05}", Action.CREATE, "managed", None,
        {"displayName": f"w{i:05}", "description": "x" * 120, "value": CANARY}, sensitive=("value",))
        for i in range(count))
    return model.Plan("p", "now", "big", "/d", "h", None, 0, True, (), changes, (), {})


def test_a_big_plan_fits_githubs_comment_limit_and_says_what_was_cut() -> None:
    shown = structured.plan_markdown(big_plan(600))
    assert len(shown) <= markdown.COMMENT_BUDGET and CANARY not in shown  # room left for a workflow marker
    assert shown.count("| `+` create |") == 600  # every change listed
    diffs = shown.count("<details>")
    assert 0 < diffs < 600
    assert f"> - {600 - diffs} of 600 attribute diffs are not shown" in shown
    assert "reconciler plan" in shown.split("[!NOTE]")[1]


def test_a_huge_plan_cuts_table_rows_too() -> None:
    shown = structured.plan_markdown(big_plan(2000))
    assert len(shown) <= markdown.GITHUB_COMMENT_LIMIT
    rows = shown.count("| `+` create |")
    assert 0 < rows < 2000 and "<details>" not in shown
    assert f"> - {2000 - rows} of 2000 changes are not listed" in shown
    assert "**Plan: 2000 to add, 0 to change, 0 to destroy.**" in shown


def test_a_small_plan_is_never_cut() -> None:
    shown = structured.plan_markdown(big_plan(3), limit=100_000)
    assert "[!NOTE]" not in shown and shown.count("<details>") == 3


def test_markdown_escapes_what_would_break_a_table_or_a_fence() -> None:
    change = model.ResourceChange("Widget/w", "Widget", "w", Action.UPDATE, "managed", {"note": "a"},
                                  {"note": "x | y ``` z"}, (diff.AttributeChange("note", "a", "x | y ``` z"),))
    shown = structured.plan_markdown(model.Plan("p", "now", "s", "/d", "h", None, 0, True, (), (change,), (), {}))
    assert "````diff" in shown  # a fence longer than any run of backticks inside
    assert markdown.code("a`b") == "``a`b``" and markdown.cell("a|b\nc") == "a\\|b c"


def test_a_plan_with_huge_drift_keeps_its_changes_and_counts_the_drift() -> None:
    drift = tuple(model.DriftItem(f"Widget/w{i:05}", "warning", (diff.AttributeChange("description", "a" * 80, "b"),))
                  for i in range(1500))
    shown = structured.plan_markdown(dataclasses.replace(big_plan(5), drift=drift))
    assert len(shown) <= markdown.GITHUB_COMMENT_LIMIT
    assert shown.count("| `+` create |") == 5 and shown.count("<details>") == 5
    assert "**Drift: 1500 item(s) changed outside reconciler** (the table is left out to fit" in shown


def test_markdown_drift_is_cut_with_a_note_and_keeps_its_summary() -> None:
    items = [model.DriftItem(f"Widget/w{i:05}", "warning", (diff.AttributeChange("description", "a" * 80, "b"),))
             for i in range(1500)]
    shown = structured.drift_markdown(items, stack="s")
    rows = shown.count("| **warning** |")
    assert len(shown) <= markdown.GITHUB_COMMENT_LIMIT and 0 < rows < 1500
    assert f"> - {1500 - rows} of 1500 rows are not shown" in shown
    assert shown.splitlines()[-1] == (
        "**Drift: 1500 item(s) (1500 warning), 1500 attribute(s) changed outside reconciler.**")


def test_a_change_without_attribute_lines_is_in_the_table_and_no_cut_is_reported() -> None:
    rotate = model.ResourceChange("Widget/w", "Widget", "w", Action.ROTATE, "managed", {}, {})
    shown = structured.plan_markdown(model.Plan("p", "now", "s", "/d", "h", None, 0, True, (), (rotate,), (), {}))
    assert "| `!` rotate | `Widget/w` | — |" in shown
    assert "<details>" not in shown and "[!NOTE]" not in shown
