"""Issue 8: how an OIDC issuer URL is named (pure), and which AWS refusals
count as a principal not yet propagated."""

from __future__ import annotations

import pytest

from reconciler import errors
from reconciler.aws import iam
from reconciler.kinds import oidc


@pytest.mark.parametrize("given", ["https://api.pulumi.com/oidc", "https://api.pulumi.com/oidc/",
                                   "api.pulumi.com/oidc"])
def test_one_issuer_in_every_spelling(given):
    assert oidc.normal_url(given) == "https://api.pulumi.com/oidc"
    assert oidc.host_path(given) == "api.pulumi.com/oidc"


@pytest.mark.parametrize("error, retried", [
    (errors.AwsError('iam:CreateRole failed (MalformedPolicyDocument): Invalid principal in policy: "AWS":"x"',
                     "MalformedPolicyDocument"), True),
    (errors.AwsError("kms:PutKeyPolicy failed (MalformedPolicyDocumentException): Policy contains a statement "
                     "with one or more invalid principals.", "MalformedPolicyDocumentException"), True),
    (errors.AwsError("iam:CreateRole failed (MalformedPolicyDocument): Syntax errors in policy.",
                     "MalformedPolicyDocument"), False),
    (errors.AwsError("iam:CreateRole failed (EntityAlreadyExists): invalid principal", "EntityAlreadyExists"), False),
])
def test_only_an_invalid_principal_counts(error, retried):
    assert iam.invalid_principal(error) is retried
