"""Sessions and clients: auth modes, retries, API call counting.

Every client is created by ``ClientFactory.client`` from a botocore session
with botocore's ``standard`` retry mode (see ``ClientFactory._share_budget``);
the endpoint comes from the standard ``AWS_ENDPOINT_URL`` variables, so the
tool talks to real AWS unless told.

Throttling costs what it must, no more (issue 11 item 5). Not ``adaptive``
mode: its client-side rate limiter, once a client has been throttled, paces
every later call of that client, and with its 1 s throttling backoff base a
30% throttled apply took 17-30x the unthrottled time. Instead:

- botocore's standard retries (exponential backoff with full jitter, at most
  ``MAX_ATTEMPTS`` attempts a call, ``x-amz-retry-after`` honoured), with a
  throttling backoff base of ``THROTTLE_BASE_DELAY`` (botocore's own base for
  other retryable errors) instead of 1 s, capped at ``MAX_BACKOFF``;
- one retry budget per service and region (botocore's ``RetryQuota``: a
  throttled retry costs 5 of its ``RETRY_BUDGET``, any other retry 14, a call
  that succeeds gives back what its retries took, or 1), shared by every client
  of that service and region whatever its auth. A storm of throttles (AWS
  throttling everything) spends it, and from then on a throttled call fails at
  its first attempt: a run that cannot get through fails quickly, with the
  AwsThrottled error, instead of sleeping through every call's backoff.
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from reconciler import __version__, errors
from reconciler.aws import errors as aws_errors
from reconciler.aws import quotas

if TYPE_CHECKING:
    import boto3
    import botocore.config
    import botocore.credentials
    import botocore.exceptions
    import botocore.retries.quota
    import botocore.retries.standard
    import botocore.session
    import botocore.utils


def _boto() -> None:
    """Import boto3 and botocore, when the first session or client is made:
    commands that make none (validate, plan --no-refresh, state list) start
    ~0.15 s sooner."""
    global boto3, botocore
    import boto3
    import botocore.config
    import botocore.credentials
    import botocore.exceptions
    import botocore.retries.quota
    import botocore.retries.standard
    import botocore.session
    import botocore.utils


MAX_ATTEMPTS = 8  # total attempts per call; AWS_MAX_ATTEMPTS overrides it, as for the AWS CLI
THROTTLE_BASE_DELAY = 0.05  # seconds: a throttled retry waits rand(0, 1) * min(this * 2**i, MAX_BACKOFF)
MAX_BACKOFF = 20.0  # seconds, botocore's cap
RETRY_BUDGET = 250  # per service and region: 50 throttled retries (botocore: 500). A storm spends it in at most
# about 7 calls of backoff (7 retries, <= 6.35 s each call): a throttled-out run fails within ~45 s, never 90
MAX_PARALLELISM = 64  # the most calls side by side (--parallelism): connections kept per client

CallListener = Callable[[str, str, str | None], None]  # service, operation, region
_listeners: list[CallListener] = []
_hooks: list[tuple[str, Callable[..., Any]]] = []


def register_hook(event: str, handler: Callable[..., Any]) -> None:
    """Register a botocore event handler on every client created from now on
    (bench/ counts calls with it; tests inject faults with ``before-send``)."""
    _hooks.append((event, handler))


def unregister_hook(event: str, handler: Callable[..., Any]) -> None:
    if (event, handler) in _hooks:
        _hooks.remove((event, handler))


def max_attempts() -> int:
    try:
        return max(1, int(os.environ.get("AWS_MAX_ATTEMPTS", MAX_ATTEMPTS)))
    except ValueError:
        raise errors.ConfigError("AWS_MAX_ATTEMPTS must be a whole number") from None


def _instrument(client: Any) -> Any:
    client.meta.events.register("before-call", _notify)
    for event, handler in _hooks:
        client.meta.events.register(event, handler)
    return client


def add_call_listener(listener: CallListener) -> None:
    """Be told of every AWS API call made (once per call, not per retry)."""
    _listeners.append(listener)


def remove_call_listener(listener: CallListener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def _notify(model: Any, context: Any = None, **_kwargs: Any) -> None:
    service = model.service_model.service_name
    region = context.get("client_region") if isinstance(context, dict) else None
    for listener in list(_listeners):
        listener(service, model.name, region)


class AuthError(errors.ConfigError):
    """An auth block that cannot be used; ``field`` is the path inside the
    block of the field that names the problem, so that the caller can point
    at its file:line:col."""

    def __init__(self, message: str, field: tuple[str, ...]) -> None:
        super().__init__(message)
        self.field = field


def _env(ref: Mapping[str, str], *field: str) -> str:
    name = ref["env"]
    value = os.environ.get(name)
    if not value:
        raise AuthError(f"auth.{'.'.join(field)}: environment variable {name} is not set", (*field, "env"))
    return value


def anchored(auth: Mapping[str, Any] | None, directory: str | os.PathLike[str]) -> Mapping[str, Any] | None:
    """``auth`` with a relative ``webIdentity.tokenFile`` resolved against
    ``directory`` (the stack's, as store paths are), not the current one."""
    if auth is None:
        return None
    match auth:
        case {"webIdentity": {"tokenFile": str(token)} as spec} if not os.path.isabs(token):
            return {**auth, "webIdentity": {**spec, "tokenFile": os.path.join(directory, token)}}
        case _:
            return auth


@functools.cache
def _backoff() -> type:
    """botocore's exponential backoff with full jitter, its throttling base
    scale (1 s) replaced by ``throttling_base`` (a class made once botocore is imported)."""
    base = botocore.retries.standard.ExponentialBackoff

    class _Backoff(base):  # type: ignore[valid-type,misc]
        def __init__(self, *, throttling_base: float, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            # read by ExponentialBackoff._get_base_scale (tests/aws/test_i11_throttling.py checks it is)
            scales: dict[str, float] = dict(base._DEFAULT_BACKOFF_CONFIG)
            self._DEFAULT_BACKOFF_CONFIG = {**scales, "throttling_base_scale": throttling_base}
    return _Backoff


class ClientFactory:
    """Creates and caches sessions (one per auth + region) and clients, and
    the retry budgets they share (one per service + region)."""

    def __init__(self, *, attempts: int | None = None) -> None:
        self._lock = threading.RLock()  # boto3 sessions are not thread-safe; clients are
        self._sessions: dict[str, boto3.Session] = {}
        self._clients: dict[tuple[str, str, str], Any] = {}
        self._budgets: dict[tuple[str, str | None], botocore.retries.quota.RetryQuota] = {}
        self._keyed: botocore.session.Session | None = None
        self._throttling_base, self._max_backoff = THROTTLE_BASE_DELAY, MAX_BACKOFF
        self.quotas = quotas.Limiter()  # AWS's request quotas, kept by every client of this run (aws/quotas.py)
        self._attempts = attempts or max_attempts()
        self._made_config: botocore.config.Config | None = None

    @property
    def _config(self) -> botocore.config.Config:
        """The clients' config (made with the first client: botocore is imported then)."""
        if self._made_config is None:
            _boto()
            self._made_config = botocore.config.Config(
                retries={"mode": "standard", "total_max_attempts": self._attempts},
                user_agent_extra=f"reconciler/{__version__}",
                connect_timeout=10, read_timeout=60, max_pool_connections=MAX_PARALLELISM)
        return self._made_config

    def budget(self, service: str, region: str | None) -> botocore.retries.quota.RetryQuota:
        """The retry budget every client of ``service`` in ``region`` spends."""
        with self._lock:
            return self._budget_locked(service, region)

    def _budget_locked(self, service: str, region: str | None) -> botocore.retries.quota.RetryQuota:
        _boto()
        key = (service, region)
        if key not in self._budgets:
            self._budgets[key] = botocore.retries.quota.RetryQuota(RETRY_BUDGET)
        return self._budgets[key]

    def _share_budget(self, client: Any) -> Any:
        """Replace the retry handler botocore's standard mode registered on
        ``client`` by the same one (botocore.retries.standard's pieces, as
        ``register_retry_handler`` puts them together) with two changes: the
        retry budget is the one of the client's service and region, not the
        client's own, and throttled retries back off from THROTTLE_BASE_DELAY.
        Called with the lock held."""
        standard = botocore.retries.standard
        events = client.meta.events
        service = client.meta.service_model.service_id.hyphenize()
        attempts = client.meta.config.retries["total_max_attempts"]
        budget = self._budget_locked(client.meta.service_model.service_name, client.meta.region_name)
        adapter = standard.RetryEventAdapter()
        throttling = standard.ThrottlingErrorDetector(adapter)
        checker = standard.RetryQuotaChecker(budget, throttling)
        handler = standard.RetryHandler(
            retry_policy=standard.RetryPolicy(
                retry_checker=standard.StandardRetryConditions(max_attempts=attempts),
                retry_backoff=_backoff()(throttling_base=self._throttling_base, max_backoff=self._max_backoff,
                                       service_name=service, throttling_detector=throttling)),
            retry_event_adapter=adapter, retry_quota=checker, service_name=service)
        unique_id = f"retry-config-{service}"  # the id botocore registered its own handler under
        events.unregister(f"needs-retry.{service}", unique_id=unique_id)
        events.register(f"needs-retry.{service}", handler.needs_retry, unique_id=unique_id)
        events.register(f"after-call.{service}", checker.release_retry_quota)
        return client

    def client(self, service: str, region: str, auth: Mapping[str, Any] | None) -> Any:
        auth = auth or {"defaultChain": {}}
        key = json.dumps(auth, sort_keys=True)
        cache_key = (key, service, region)
        with self._lock:
            if cache_key not in self._clients:
                session = self._session_locked(key, auth, region)
                client = session.client(service, region_name=region, config=self._config)  # type: ignore[call-overload]
                self.quotas.attach(client)
                self._clients[cache_key] = _instrument(self._share_budget(client))
            return self._clients[cache_key]

    def client_with_key(self, service: str, region: str, key_id: str, secret: str) -> Any:
        """A client signing with one access key given in memory (a key just
        issued, to verify it works): never cached, never written anywhere.
        Few attempts: a key AWS refuses is retried by the caller's own backoff."""
        _boto()
        config = self._config.merge(botocore.config.Config(retries={"mode": "standard", "total_max_attempts": 2}))
        with self._lock:  # one botocore session for every such client: its service models are loaded once
            if self._keyed is None:
                self._keyed = botocore.session.Session()
            client = self._share_budget(self._keyed.create_client(
                service, region_name=region, aws_access_key_id=key_id, aws_secret_access_key=secret,
                config=config))
        return _instrument(client)

    def session(self, auth: Mapping[str, Any] | None, region: str | None) -> boto3.Session:
        """The session for ``auth``, made now: env refs, token files and source
        credentials are resolved here (AuthError / ConfigError), not at first call."""
        auth = auth or {"defaultChain": {}}
        with self._lock:
            return self._session_locked(json.dumps(auth, sort_keys=True), auth, region)

    def _session_locked(self, key: str, auth: Mapping[str, Any], region: str | None) -> boto3.Session:
        session = self._sessions.get(key)
        if session is None:
            session = self._sessions[key] = self._session(auth, region)
        return session

    def _session(self, auth: Mapping[str, Any], region: str | None) -> boto3.Session:
        _boto()
        match auth:
            case {"accessKey": ref}:
                return boto3.Session(aws_access_key_id=_env(ref["accessKeyId"], "accessKey", "accessKeyId"),
                                     aws_secret_access_key=_env(ref["secretAccessKey"],
                                                                "accessKey", "secretAccessKey"),
                                     aws_session_token=(_env(ref["sessionToken"], "accessKey", "sessionToken")
                                                        if "sessionToken" in ref else None),
                                     region_name=region)
            case {"assumeRole": spec}:
                source = self._default_session(None, region)
                credentials = source.get_credentials()
                if credentials is None:
                    raise aws_errors.translate(botocore.exceptions.NoCredentialsError(), "sts", "AssumeRole")
                extra: dict[str, Any] = {"RoleSessionName": spec.get("sessionName", "reconciler")}
                if "externalId" in spec:
                    extra["ExternalId"] = spec["externalId"]
                if "durationSeconds" in spec:
                    extra["DurationSeconds"] = spec["durationSeconds"]
                fetcher: Any = botocore.credentials.AssumeRoleCredentialFetcher(
                    client_creator=self._creator(source), source_credentials=credentials,
                    role_arn=spec["roleArn"], extra_args=extra)
                return self._with_credentials(fetcher, "assume-role", region)
            case {"webIdentity": spec}:
                if not os.path.isfile(spec["tokenFile"]):
                    raise AuthError(f"auth.webIdentity.tokenFile: {spec['tokenFile']} does not exist",
                                    ("webIdentity", "tokenFile"))
                fetcher = botocore.credentials.AssumeRoleWithWebIdentityCredentialFetcher(
                    client_creator=self._creator(self._default_session(None, region)),
                    web_identity_token_loader=botocore.utils.FileWebIdentityTokenLoader(spec["tokenFile"]),
                    role_arn=spec["roleArn"],
                    extra_args={"RoleSessionName": spec.get("sessionName", "reconciler")})
                return self._with_credentials(fetcher, "assume-role-with-web-identity", region)
            case {"defaultChain": spec}:
                return self._default_session(spec.get("profile"), region)
            case _:
                raise errors.ConfigError(f"auth: unsupported mode {sorted(auth)}")

    def _creator(self, source: boto3.Session) -> Callable[..., Any]:
        def create(service: str, **kwargs: Any) -> Any:
            config = self._config.merge(kwargs.pop("config")) if "config" in kwargs else self._config
            client = source._session.create_client(service, config=config, **kwargs)
            with self._lock:  # called by botocore when credentials are refreshed (reentrant: maybe under it)
                return _instrument(self._share_budget(client))
        return create

    @staticmethod
    def _default_session(profile: str | None, region: str | None) -> boto3.Session:
        try:
            return boto3.Session(profile_name=profile, region_name=region)
        except botocore.exceptions.ProfileNotFound as exc:
            raise AuthError(f"auth.defaultChain.profile: profile {profile!r} not found",
                            ("defaultChain", "profile")) from exc

    @staticmethod
    def _with_credentials(fetcher: Any, method: str, region: str | None) -> boto3.Session:
        credentials = botocore.credentials.DeferredRefreshableCredentials(
            refresh_using=fetcher.fetch_credentials, method=method)
        core = botocore.session.Session()
        core._credentials = credentials  # type: ignore[attr-defined]  # botocore's own refreshable credentials
        return boto3.Session(botocore_session=core, region_name=region)
