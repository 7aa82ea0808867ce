"""References known after apply (`{$ref: Kind/name#attribute}`) are checked by
validate like every other reference: missing targets, malformed text and
cycles are positioned errors, never an internal error at plan time."""

from __future__ import annotations

import shutil
import textwrap

from tests.conftest import run

STACK = "apiVersion: reconciler/v1\nkind: Stack\nmetadata: {name: t}\nspec: {region: us-east-1}\n"


def key(name: str, principal: str, resource: str = '"*"') -> str:
    return textwrap.dedent(f"""\
        apiVersion: reconciler/v1
        kind: KmsProvider
        metadata: {{name: {name}}}
        spec:
          protect: false
          policy:
            Version: "2012-10-17"
            Statement:
              - Effect: Allow
                Principal: {{AWS: "arn:aws:iam::123456789012:root"}}
                Action: "kms:*"
                Resource: "*"
              - Effect: Allow
                Principal: {{AWS: {principal}}}
                Action: kms:Decrypt
                Resource: {resource}
        """)


def errors_of(tmp_path, *docs: str) -> list[str]:
    shutil.rmtree(tmp_path / "s", ignore_errors=True)
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "all.yaml").write_text(STACK + "".join("---\n" + d for d in docs))
    result = run("validate", tmp_path / "s")
    return [line for line in result.output.splitlines() if line.startswith("Error: ")]


def test_a_reference_to_nothing_is_an_error_at_its_position(tmp_path):
    (error,) = errors_of(tmp_path, key("aa", '{$ref: "KmsProvider/zz#arn"}'))
    assert error.endswith("all.yaml:19:26: KmsProvider/aa: AWS refers to KmsProvider/zz, which does not exist; "
                          "known: aa")


def test_a_malformed_reference_is_an_error_at_its_position(tmp_path):
    (error,) = errors_of(tmp_path, key("aa", '"arn:aws:iam::123456789012:root"', '{$ref: "nonsense"}'))
    assert error.endswith("all.yaml:21:19: KmsProvider/aa: malformed reference 'nonsense': expected "
                          "KIND/NAME#ATTRIBUTE, such as KmsProvider/app#arn")


def test_references_in_a_cycle_are_an_error_not_an_internal_one(tmp_path):
    (error,) = errors_of(tmp_path, key("aa", '{$ref: "KmsProvider/ab#arn"}'), key("ab", '{$ref: "KmsProvider/aa#arn"}'))
    assert "KmsProvider/aa: dependency cycle: KmsProvider/aa -> KmsProvider/ab -> KmsProvider/aa" in error


def test_a_reference_to_a_declared_resource_is_valid(tmp_path):
    assert errors_of(tmp_path, key("aa", '"arn:aws:iam::123456789012:root"'),
                     key("ab", '{$ref: "KmsProvider/aa#arn"}')) == []
