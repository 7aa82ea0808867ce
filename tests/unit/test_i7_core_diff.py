"""Issue 7 item 9: diff with explicit operations. Missing is not null; lists
of documents are diffed element-wise (by Sid, else by position); nested
documents show the path that changed."""

from __future__ import annotations

import json

from reconciler.plan import actions, diff, model
from reconciler.render import text

Op = diff.DiffOperation


def ops(before, after):
    return [(c.path, c.operation, c.before, c.after) for c in diff.diff(before, after)]


def test_missing_is_an_add_or_a_remove_and_null_is_a_value():
    assert ops({}, {"alias": None}) == [("alias", Op.ADD, None, None)]
    assert ops({"alias": None}, {}) == [("alias", Op.REMOVE, None, None)]
    assert ops({"alias": None}, {"alias": "a"}) == [("alias", Op.CHANGE, None, "a")]
    assert ops({"alias": "a"}, {"alias": None}) == [("alias", Op.CHANGE, "a", None)]
    assert ops({"tags": {"a": "1"}}, {"tags": {"b": "2"}}) == [("tags.a", Op.REMOVE, "1", None),
                                                              ("tags.b", Op.ADD, None, "2")]
    assert ops({"x": None}, {"x": None}) == []


def test_policy_statements_are_matched_by_sid_and_show_the_nested_path():
    before = {"policy": {"Statement": [{"Sid": "Admin", "Action": "kms:*"},
                                       {"Sid": "Use", "Action": ["kms:Decrypt"]}]}}
    after = {"policy": {"Statement": [{"Sid": "Use", "Action": ["kms:Decrypt", "kms:Encrypt"]},
                                      {"Sid": "Audit", "Action": "kms:Describe*"}]}}
    assert ops(before, after) == [
        ("policy.Statement[Sid=Admin]", Op.REMOVE, {"Sid": "Admin", "Action": "kms:*"}, None),
        ("policy.Statement[Sid=Use].Action", Op.CHANGE, ["kms:Decrypt"], ["kms:Decrypt", "kms:Encrypt"]),
        ("policy.Statement[Sid=Audit]", Op.ADD, None, {"Sid": "Audit", "Action": "kms:Describe*"})]
    (reordered,) = [c for c in diff.diff(before, after) if c.operation is Op.CHANGE]
    assert reordered.top == "policy"


def test_documents_without_distinct_sids_are_matched_by_position():
    before = {"grants": [{"op": "Decrypt"}, {"op": "Encrypt"}]}
    after = {"grants": [{"op": "Decrypt"}, {"op": "Sign"}, {"op": "Verify"}]}
    assert ops(before, after) == [("grants[1].op", Op.CHANGE, "Encrypt", "Sign"),
                                  ("grants[2]", Op.ADD, None, {"op": "Verify"})]
    same_sid = {"s": [{"Sid": "A", "x": 1}, {"Sid": "A", "x": 2}]}
    assert ops(same_sid, {"s": [{"Sid": "A", "x": 1}, {"Sid": "A", "x": 3}]}) == [("s[1].x", Op.CHANGE, 2, 3)]
    assert ops({"l": [1, 2]}, {"l": [2, 1]}) == [("l", Op.CHANGE, [1, 2], [2, 1])]  # scalars: whole


def test_operations_survive_a_saved_plan_and_older_plans_without_them_still_load():
    change = diff.AttributeChange("alias", None, "a", op=Op.CHANGE)
    assert change.to_json() == {"path": "alias", "op": "change", "before": None, "after": "a"}
    assert diff.AttributeChange.from_json(change.to_json()) == change
    old = diff.AttributeChange.from_json({"path": "tags.x", "before": None, "after": "1"})
    assert old.operation is Op.ADD


def test_text_shows_each_operation_with_its_sign():
    changes = tuple(diff.diff({"alias": None, "tags": {"a": "1"}}, {"alias": "x", "tags": {"b": "2"}}))
    change = model.ResourceChange("K/a", "K", "a", actions.Action.UPDATE, "managed", {}, {}, changes)
    out = text.render_plan(model.Plan("p", "t", "s", "/d", "h", None, 0, True, (), (change,), (), {}))
    assert '      ~ alias  = null -> "x"\n' in out
    assert '      - tags.a = "1"\n' in out and '      + tags.b = "2"\n' in out
    assert json.loads(json.dumps([c.to_json() for c in changes]))[0]["op"] == "change"
