"""Issue 8: the bounded retry of a call AWS refuses for a principal it has
not propagated yet (pure: the sleep is injected, nothing waits)."""

from __future__ import annotations

import pytest

from reconciler import errors
from reconciler.aws import propagation

REFUSED = errors.AwsError('iam:CreateRole failed (MalformedPolicyDocument): Invalid principal in policy: '
                          '"Federated":"arn:aws:iam::1:oidc-provider/x"', "MalformedPolicyDocument")


class Flaky:
    def __init__(self, failures: int, error: errors.AwsError = REFUSED) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "made"


def test_delays_double_up_to_the_cap_and_stay_within_the_budget():
    delays = propagation.Backoff(budget=60, first=0.5, cap=8).delays()
    assert delays[:6] == [0.5, 1, 2, 4, 8, 8]
    assert sum(delays) <= 60 and sum(delays) + 8 > 60


def test_a_fresh_principal_is_retried_until_accepted():
    slept: list[float] = []
    call = Flaky(3)
    found = propagation.retry_new_principals(call, ["arn:new"], "the trust policy",
                                             propagation.Backoff(sleep=slept.append))
    assert found == "made" and call.calls == 4 and slept == [0.5, 1, 2]


def test_the_budget_runs_out_with_one_clear_line():
    slept: list[float] = []
    call = Flaky(1000)
    with pytest.raises(errors.AwsError) as info:
        propagation.retry_new_principals(call, ["arn:new"], "the trust policy",
                                         propagation.Backoff(budget=10, sleep=slept.append))
    assert slept == [0.5, 1, 2, 4] and call.calls == 5
    message = info.value.message
    assert "\n" not in message and info.value.code == "MalformedPolicyDocument"
    assert "names arn:new, created moments ago" in message and "after 5 attempts over 8s" in message


def test_nothing_fresh_fails_at_once():
    slept: list[float] = []
    call = Flaky(1)
    with pytest.raises(errors.AwsError) as info:
        propagation.retry_new_principals(call, [], "the trust policy", propagation.Backoff(sleep=slept.append))
    assert info.value is REFUSED and call.calls == 1 and slept == []


def test_other_errors_are_never_retried():
    slept: list[float] = []
    other = errors.AwsError("iam:CreateRole failed (MalformedPolicyDocument): Syntax error", "MalformedPolicyDocument")
    call = Flaky(1, other)
    with pytest.raises(errors.AwsError) as info:
        propagation.retry_new_principals(call, ["arn:new"], "the trust policy", propagation.Backoff(sleep=slept.append))
    assert info.value is other and slept == []
