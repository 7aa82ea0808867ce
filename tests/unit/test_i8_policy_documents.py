"""Issue 8: policy documents compared by meaning. Every way AWS (or a person)
respells one document is no change; every real change is caught and shown
statement by statement."""

from __future__ import annotations

import copy
import json

import pytest

from reconciler.plan import diff, policydoc

Op = diff.DiffOperation
ROLE = "arn:aws:iam::111122223333:role/app"
BASE = {
    "Version": "2012-10-17",
    "Statement": [
        {"Sid": "Admin", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": [ROLE, "arn:aws:iam::444455556666:root"]},
         "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*",
         "Condition": {"StringEquals": {"kms:CallerAccount": "111122223333", "kms:ViaService": "s3.amazonaws.com"},
                       "Bool": {"aws:SecureTransport": "true"}}},
    ],
}


def respelled() -> dict:
    """BASE as AWS might hand it back: every equivalence at once."""
    return {
        "Statement": [
            {"Condition": {"Bool": {"aws:securetransport": True},
                           "StringEquals": {"kms:ViaService": ["s3.amazonaws.com"], "kms:CallerAccount": "111122223333"}},
             "Resource": ["*"], "Action": ["kms:Decrypt", "kms:Encrypt", "kms:Decrypt"],
             "Principal": {"AWS": ["444455556666", ROLE]}, "Effect": "Allow", "Sid": ""},
            {"Resource": "*", "Action": ["kms:*"], "Principal": {"AWS": "111122223333"}, "Effect": "Allow",
             "Sid": "Admin"},
        ],
        "Version": "2012-10-17",
    }


def mutate(change) -> dict:
    doc = copy.deepcopy(BASE)
    change(doc)
    return doc


@pytest.mark.parametrize("other", [
    pytest.param(lambda: dict(reversed(list(BASE.items()))), id="key order"),
    pytest.param(lambda: mutate(lambda d: d["Statement"].reverse()), id="statement order"),
    pytest.param(lambda: mutate(lambda d: d["Statement"][0].update(Action=["kms:*"], Resource=["*"])),
                 id="single value vs one-element list"),
    pytest.param(lambda: mutate(lambda d: d["Statement"][1].update(Sid="")), id="empty Sid vs none"),
    pytest.param(lambda: json.dumps(BASE), id="JSON string vs object"),
    pytest.param(lambda: json.dumps(BASE, indent=4, sort_keys=True), id="reformatted JSON string"),
    pytest.param(lambda: mutate(lambda d: d["Statement"][0]["Principal"].update(AWS="111122223333")),
                 id="account id vs its root ARN"),
    pytest.param(lambda: mutate(lambda d: d["Statement"][1]["Principal"]["AWS"].reverse()), id="principal order"),
    pytest.param(lambda: mutate(lambda d: d["Statement"][1].update(
        Condition=dict(reversed(list(d["Statement"][1]["Condition"].items()))))), id="condition operator order"),
    pytest.param(lambda: mutate(lambda d: d["Statement"][1]["Condition"].update(
        StringEquals={"kms:ViaService": "s3.amazonaws.com", "kms:CallerAccount": "111122223333"})),
        id="condition key order"),
    pytest.param(lambda: mutate(lambda d: d["Statement"][1]["Condition"].update(
        Bool={"aws:SecureTransport": True})), id="boolean vs string condition value"),
    pytest.param(lambda: mutate(lambda d: d["Statement"].append(copy.deepcopy(d["Statement"][1]))),
                 id="a statement written twice"),
    pytest.param(respelled, id="everything at once"),
])
def test_equal_documents_normalise_equal_and_diff_empty(other):
    assert policydoc.equal(BASE, other())
    assert policydoc.normalize(BASE) == policydoc.normalize(other())
    assert diff.diff({"policy": BASE}, {"policy": other()}) == []


def test_missing_version_is_the_2008_version():
    legacy = {k: v for k, v in BASE.items() if k != "Version"}
    assert policydoc.equal(legacy, {**BASE, "Version": "2008-10-17"})
    assert not policydoc.equal(legacy, BASE)


@pytest.mark.parametrize(("change", "expected"), [
    pytest.param(lambda d: d["Statement"][0].update(Action="kms:Decrypt"),
                 [("policy.Statement[Sid=Admin].Action", Op.CHANGE, "kms:*", "kms:Decrypt")], id="action"),
    pytest.param(lambda d: d["Statement"][0].update(Effect="Deny"),
                 [("policy.Statement[Sid=Admin].Effect", Op.CHANGE, "Allow", "Deny")], id="effect"),
    pytest.param(lambda d: d["Statement"][0].update(Principal={"AWS": "arn:aws:iam::999999999999:root"}),
                 [("policy.Statement[Sid=Admin].Principal.AWS", Op.CHANGE,
                   "arn:aws:iam::111122223333:root", "arn:aws:iam::999999999999:root")],
                 id="principal"),
    pytest.param(lambda d: d["Statement"][0].update(Resource="arn:aws:kms:us-east-1:111122223333:key/k"),
                 [("policy.Statement[Sid=Admin].Resource", Op.CHANGE, "*",
                   "arn:aws:kms:us-east-1:111122223333:key/k")], id="resource"),
    pytest.param(lambda d: d["Statement"][0].update(Condition={"Bool": {"aws:SecureTransport": "true"}}),
                 [("policy.Statement[Sid=Admin].Condition", Op.ADD, None, {"Bool": {"aws:SecureTransport": "true"}})],
                 id="condition added"),
    pytest.param(lambda d: d.update(Version="2008-10-17"),
                 [("policy.Version", Op.CHANGE, "2012-10-17", "2008-10-17")], id="version"),
    pytest.param(lambda d: d["Statement"][0].update(Sid="Root"),
                 [("policy.Statement[Sid=Admin]", Op.REMOVE, BASE["Statement"][0], None),
                  ("policy.Statement[Sid=Root]", Op.ADD, None, {**BASE["Statement"][0], "Sid": "Root"})],
                 id="renamed sid"),
])
def test_each_real_change_is_one_structured_change(change, expected):
    after = mutate(change)
    assert not policydoc.equal(BASE, after)
    got = [(c.path, c.operation, c.before, c.after) for c in diff.diff({"policy": BASE}, {"policy": after})]
    assert got == expected


def test_a_sidless_statement_edited_in_place_shows_the_key_that_changed():
    after = mutate(lambda d: d["Statement"][1]["Condition"]["StringEquals"].update({"kms:CallerAccount": "999"}))
    got = [(c.path, c.operation, c.before, c.after) for c in diff.diff({"policy": BASE}, {"policy": after})]
    assert got == [("policy.Statement[1].Condition.StringEquals.kms:CallerAccount", Op.CHANGE, "111122223333", "999")]


def test_sidless_statements_both_changed_are_removed_and_added_by_position():
    def both(d):
        d["Statement"][1]["Condition"]["StringEquals"].update({"kms:CallerAccount": "999"})
        d["Statement"].append({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"},
                               "Action": "kms:DescribeKey", "Resource": "*"})
    got = [(c.path, c.operation) for c in diff.diff({"policy": BASE}, {"policy": mutate(both)})]
    assert got == [("policy.Statement[1]", Op.REMOVE), ("policy.Statement[1]", Op.ADD),
                   ("policy.Statement[2]", Op.ADD)]


def test_added_and_removed_statements_are_named_and_reordering_does_not_count():
    extra = {"Sid": "Audit", "Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "kms:DescribeKey",
             "Resource": "*"}
    after = {"Version": "2012-10-17", "Statement": [extra, BASE["Statement"][1]]}  # Admin dropped, order changed
    got = [(c.path, c.operation, c.before, c.after) for c in diff.diff({"policy": BASE}, {"policy": after})]
    assert got == [("policy.Statement[Sid=Admin]", Op.REMOVE, BASE["Statement"][0], None),
                   ("policy.Statement[Sid=Audit]", Op.ADD, None, extra)]


def test_a_statement_given_as_an_object_is_a_list_of_one():
    single = {"Version": "2012-10-17", "Statement": BASE["Statement"][0]}
    assert policydoc.equal(single, {"Version": "2012-10-17", "Statement": [BASE["Statement"][0]]})
    assert not policydoc.equal(single, BASE)


def test_a_not_principal_account_id_is_not_rewritten_for_another_principal_type():
    service = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "111122223333"}, "Action": "x"}]}
    as_root = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "arn:aws:iam::111122223333:root"},
                              "Action": "x"}]}
    assert not policydoc.equal(service, as_root)
