"""Issue 12, the renderings through the real CLI against the sandbox: a key
disabled out of band is critical drift, and its secret (which names no
attribute, only a note) is still in every format; the JSON plan and report
match their schemas and a Rego policy reads the plan."""

from __future__ import annotations

import json

import boto3

from tests.conftest import run, state_of
from tests.unit import test_i12_render as render

STACK = """\
apiVersion: reconciler/v1
kind: KmsProvider
metadata: {name: key}
spec:
  alias: test/render
  protect: false
  deletionWindowDays: 7
---
apiVersion: reconciler/v1
kind: Vault
metadata: {name: main}
spec:
  provider: key
  default: true
  store: {local: {path: .reconciler/vault}}
---
apiVersion: reconciler/v1
kind: Secret
metadata: {name: token}
spec:
  generate: {length: 24}
"""


def test_drift_and_plan_of_a_disabled_key_in_every_format(aws, stack):
    directory = stack({"main.yaml": STACK})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    boto3.client("kms", region_name="us-east-1").disable_key(
        KeyId=state_of(directory)["resources"]["KmsProvider/key"]["ids"]["keyId"])

    report = run("drift", directory, "--format", "json")
    assert report.exit_code == 2, report.output
    document = json.loads(report.stdout)
    assert render.schema_errors("drift", document) == []
    assert (document["stack"], document["totals"]["critical"]) == ("test", 2)
    items = {i["address"]: i for i in document["items"]}
    assert items["Secret/token"]["attributes"] == [] and "no longer decrypts" in items["Secret/token"]["note"]
    assert items["KmsProvider/key"]["attributes"][0]["severity"] == "critical"

    shown = run("drift", directory, "--format", "markdown")
    assert shown.exit_code == 2
    lines = shown.stdout.splitlines()
    assert lines[0] == "<!-- reconciler-drift: test -->"
    assert any(line.startswith("| **critical** | `Secret/token` |") for line in lines)
    assert lines[-1].startswith("**Drift: 2 item(s) (2 critical)")

    plan = run("plan", directory, "--format", "json")
    assert plan.exit_code == 0, plan.output
    document = json.loads(plan.stdout)
    assert render.schema_errors("plan", document) == []
    assert render.rego(render.NO_KMS_DELETE, document, "data.main.deny") == []
    assert [d["address"] for d in document["resource_drift"]] == ["KmsProvider/key", "Secret/token"]
    markdown = run("plan", directory, "--format", "markdown").stdout
    assert markdown.startswith("<!-- reconciler-plan: test -->\n")
    assert "> [!WARNING]" in markdown and "critical drift: `Secret/token`" in markdown
