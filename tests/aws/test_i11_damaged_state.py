"""Issue 11 item 2: damaged state of the shapes the rotation and lease kinds
add is one clear error naming the problem and the backup to restore, never an
internal error."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run

REPAIR = "restore the previous version (state.json.backup, or the S3 key's .backup)"
ROTATION = {"kind": "AccessKeyRotation", "name": "a", "ids": {"current": 5}, "attributes": {"userName": "u"}}


@pytest.mark.parametrize(("damage", "expected"), [
    ({"leases": {"l1": 5}}, "leases.l1: malformed lease (expected an object, got a number)"),
    ({"leases": {"l1": {"id": "l1"}}}, "leases.l1: malformed lease (template: expected a string, got null)"),
    ({"leases": {"l1": {"id": "l1", "template": "t", "userName": "u", "createdAt": "x", "expiresAt": "y",
                        "maxExpiresAt": "z", "revokeAttempts": -1}}},
     "leases.l1: malformed lease (revokeAttempts: expected a whole number >= 0, got a number)"),
    ({"leases": []}, "leases: expected an object, got a list"),
    ({"resources": {"AccessKeyRotation/a": ROTATION}}, "AccessKeyRotation/a: its state entry is malformed"),
])
def test_damaged_lease_and_rotation_state_is_one_clear_error(aws, stack, damage, expected):
    directory = stack({})
    (directory / ".reconciler").mkdir()
    (directory / ".reconciler" / "state.json").write_text(json.dumps({"version": 1, "lineage": "x", "serial": 1,
                                                                     **damage}))
    result = run("plan", directory)
    assert result.exit_code == 1
    [line] = result.output.strip().splitlines()
    assert expected in line and REPAIR in line and "internal error" not in line
