"""botocore errors become reconciler errors here, and only here."""

from __future__ import annotations

import functools

from reconciler import errors


@functools.cache
def boto_errors() -> tuple[type[Exception], ...]:
    """Everything botocore raises for a failed call; translate() handles each.
    A function, so that botocore is imported only by a command that calls AWS
    (``except boto_errors()`` is evaluated only when something was raised)."""
    import botocore.exceptions
    import botocore.parsers
    return (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError,
            botocore.parsers.ResponseParserError)

ACCESS_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
                 "NotAuthorizedException", "UnrecognizedClientException", "InvalidClientTokenId",
                 "ExpiredToken", "ExpiredTokenException", "SignatureDoesNotMatch", "403"}
NOT_FOUND = {"NotFoundException", "NoSuchEntity", "ResourceNotFoundException", "NoSuchKey",
             "NoSuchBucket", "ParameterNotFound"}
THROTTLED = {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded",
             "SlowDown", "ProvisionedThroughputExceededException"}
# A quota (how many keys, aliases, grants, access keys...), not a request rate: waiting does not help.
QUOTA = {"LimitExceededException", "LimitExceeded", "ServiceQuotaExceededException"}
# What frees capacity under each service's quotas, for the quota message.
QUOTA_HINTS = {
    "kms": "schedule deletion of unused keys, delete unused aliases or retire unused grants",
    "iam": "delete unused access keys, users, roles or policies",
    "secretsmanager": "delete unused secrets",
    "ssm": "delete unused parameters",
}


def translate(exc: Exception, service: str, operation: str) -> errors.ReconcilerError:
    """A one-line domain error for a botocore failure of ``service:operation``."""
    import botocore.exceptions
    import botocore.parsers

    action = f"{service}:{operation}"
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))
        message = (error.get("Message") or "").strip().splitlines()
        detail = f": {message[0]}" if message else ""
        if code in ACCESS_DENIED:
            return errors.AwsAccessDenied(f"AWS denied {action} ({code}){detail}", code)
        if code in NOT_FOUND:
            return errors.AwsNotFound(f"{action} failed: not found ({code}){detail}", code)
        if code in QUOTA:
            return errors.AwsError(_quota_message(service, action, code, detail), code)
        if code in THROTTLED:
            return errors.AwsThrottled(_throttled_message(exc.response.get("ResponseMetadata", {}),
                                                          service, action, code), code)
        return errors.AwsError(f"{action} failed ({code}){detail}", code)
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return errors.AwsError("no AWS credentials found (set AWS_PROFILE or AWS_ACCESS_KEY_ID/"
                               "AWS_SECRET_ACCESS_KEY, or give the resource an auth block)")
    if isinstance(exc, botocore.exceptions.NoRegionError):
        return errors.AwsError("no AWS region: set spec.region on the Stack or the resource")
    if isinstance(exc, (botocore.exceptions.EndpointConnectionError,
                        botocore.exceptions.ConnectTimeoutError)):
        return errors.AwsError(f"{action}: cannot reach the AWS endpoint ({exc}); is the network "
                               "up, or the sandbox running (AWS_ENDPOINT_URL)?")
    if isinstance(exc, botocore.exceptions.ReadTimeoutError):
        return errors.AwsError(f"{action}: AWS did not answer in time; retry later")
    if isinstance(exc, botocore.parsers.ResponseParserError):
        return errors.AwsError(f"{action}: AWS returned a response that could not be read "
                               "(the endpoint may not implement this operation)")
    if isinstance(exc, botocore.exceptions.ParamValidationError):
        return errors.AwsError(f"{action}: invalid request: {str(exc).splitlines()[-1].strip()}")
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return errors.AwsError(f"{action} failed: {str(exc).splitlines()[0]}")
    return errors.AwsError(f"{action} failed: {type(exc).__name__}")


def _throttled_message(metadata: dict[str, object], service: str, action: str, code: str) -> str:
    """Throttled after every attempt botocore makes, or after fewer once this
    run's retry budget for the service and region (aws/session.py) is spent."""
    retries = metadata.get("RetryAttempts", 0)
    attempts = (retries if isinstance(retries, int) else 0) + 1
    tried = f"{attempts} attempt{'s' if attempts != 1 else ''}"
    if metadata.get("RetryQuotaReached"):
        return (f"{action} was throttled by AWS ({code}) and still failed after {tried}: so many {service} "
                "calls were throttled in this run that its retry budget for the service and region is spent; "
                "retry later or lower the request rate (plan, apply and drift take --parallelism)")
    return (f"{action} was throttled by AWS ({code}) and still failed after {tried}; "
            "retry later or lower the request rate (plan, apply and drift take --parallelism)")


def _quota_message(service: str, action: str, code: str, detail: str) -> str:
    """A quota error says which quota and how to get room: retrying later would fail again."""
    free = QUOTA_HINTS.get(service, "free unused resources")
    return (f"{action} failed: an AWS service quota is exhausted ({code}){detail}. This is a quota, "
            f"not throttling, so retrying will not help: {free}, or request a higher quota in Service "
            f"Quotas (aws service-quotas list-service-quotas --service-code {service}, then "
            "request-service-quota-increase)")
