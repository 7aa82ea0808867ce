"""Issue 11 item 3: a value written into a store outside reconciler is drift
(critical for a generated secret), and apply writes back the value reconciler
last wrote, as a new version with a new number: never a new random value,
never a reused version number."""

from __future__ import annotations

import boto3
import pytest

from tests.aws.test_vaults import STORES, docs, get, key_doc, secret_doc, vault_doc
from tests.conftest import run, state_of


def write_by_hand(store: str) -> None:
    if store == "secretsmanager":
        boto3.client("secretsmanager", region_name="us-east-1").put_secret_value(
            SecretId="rcl/team/made", SecretString="typed-in-the-console")
    else:
        boto3.client("ssm", region_name="us-east-1").put_parameter(
            Name="/rcl/team/made", Value="typed-in-the-console", Type="SecureString", Overwrite=True)


# SSM numbers the hand-made write itself (2: it is a version of the parameter), so ours is 3
@pytest.mark.parametrize(("store", "restored"), [("secretsmanager", 2), ("ssm", 3)])
def test_an_out_of_band_write_is_critical_drift_and_apply_restores_our_value(aws, stack, store, restored):
    directory = stack({"main.yaml": docs(key_doc(), vault_doc(STORES[store]),
                                          secret_doc("made", "generate: {length: 24}"))})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    ours = get(directory, "main/made")
    write_by_hand(store)

    drift = run("drift", directory)
    assert drift.exit_code == 2
    assert "# Secret/made [CRITICAL]: the stored value was changed outside reconciler; apply writes back the " \
           "value reconciler generated (as a new version), never a new one" in drift.output
    assert run("apply", directory, "--auto-approve").exit_code == 0
    assert get(directory, "main/made") == ours  # the value reconciler made, not a new one
    history = run("secret", "history", "main/made", "--dir", directory)
    numbers = [int(line.split("\t")[0]) for line in history.output.splitlines()]
    assert numbers == [restored, 1]  # a new number on top, none reused
    assert state_of(directory)["resources"]["Secret/made"]["ids"]["version"] == restored
    assert run("plan", directory, "--detailed-exitcode").exit_code == 0
    assert run("drift", directory).exit_code == 0


def test_a_secrets_manager_value_written_by_hand_as_text_is_drift_not_an_internal_error(aws, stack):
    directory = stack({"main.yaml": docs(key_doc(), vault_doc(STORES["secretsmanager"]),
                                          secret_doc("made", "generate: {length: 12}"))})
    assert run("apply", directory, "--auto-approve").exit_code == 0
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    [listed] = sm.list_secrets()["SecretList"]
    sm.put_secret_value(SecretId=listed["ARN"], SecretString="typed in the console")
    drift = run("drift", directory)
    assert drift.exit_code == 2 and "Secret/made [CRITICAL]" in drift.output
    assert "internal error" not in drift.output and "Traceback" not in drift.output
    assert run("apply", directory, "--auto-approve").exit_code == 0  # ours written back
    assert run("drift", directory).exit_code == 0
