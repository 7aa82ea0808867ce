"""Issue 7 item 10: a typed Address (Kind/name) that knows its parts and is
still a plain string for JSON keys and messages."""

from __future__ import annotations

import json

from reconciler.plan import model as plan_model
from reconciler.state import model as state_model


def test_an_address_knows_its_kind_and_name_and_stays_a_string():
    address = state_model.Address.of("KmsProvider", "app-data")
    assert (address, address.kind, address.name) == ("KmsProvider/app-data", "KmsProvider", "app-data")
    assert json.dumps({address: 1}) == '{"KmsProvider/app-data": 1}'
    assert state_model.Address("Secret/db-password").name == "db-password"


def test_resources_and_desired_objects_give_typed_addresses():
    entry = state_model.ResourceState("Vault", "app", state_model.Mode.MANAGED, {}, {}, {})
    want = plan_model.Desired("Secret", "pw", state_model.Mode.MANAGED, {}, {})
    assert isinstance(entry.address, state_model.Address) and entry.address.kind == "Vault"
    assert isinstance(want.address, state_model.Address) and want.address.name == "pw"
