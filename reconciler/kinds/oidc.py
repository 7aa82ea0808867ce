"""OidcProvider: an IAM OpenID Connect identity provider (the issuer a
web-identity IamRole trusts, such as ``https://api.pulumi.com/oidc``).

Attributes (what plan compares):
  url          immutable (the provider's ARN is made of it): a change replaces it
  audiences    client ids, a set (kept sorted)
  thumbprints  only when the manifest gives them: AWS no longer needs them for
               well-known issuers, so a provider declared without is created
               without, and whatever AWS keeps there is never a diff
  tags         ours (``reconciler:*``) are never drift
Ids: ``arn`` and ``url``. Created journaled and tagged like KMS keys (SPEC 3),
so an interrupted create is found by its operation tag, never made twice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from reconciler import clock, errors
from reconciler.aws import factory
from reconciler.aws import iam as iam_adapter
from reconciler.kinds import base, kms, recovery
from reconciler.kinds import unmanaged as listing
from reconciler.manifest import model as manifest
from reconciler.plan import model as plan_model
from reconciler.plan import planner
from reconciler.plan import rules as plan_rules
from reconciler.plan import unmanaged as unmanaged_model
from reconciler.state import model as state_model

KIND = "OidcProvider"
REPLACE_ON = frozenset({"url"})


def normal_url(url: str) -> str:
    """``https://host/path`` as AWS identifies a provider: scheme added if
    missing, no trailing slash (IAM stores ``host/path``)."""
    bare = url.split("://", 1)[1] if "://" in url else url
    return f"https://{bare.rstrip('/')}"


def host_path(url: str) -> str:
    """``host/path``: how IAM names the provider in its ARN and in condition keys (``host/path:aud``)."""
    return normal_url(url).removeprefix("https://")


def iam(aws: base.AwsContext, connection: Mapping[str, Any]) -> iam_adapter.IamAdapter:
    """The IAM adapter for a resource's connection (IAM is global)."""
    return iam_adapter.IamAdapter(aws.client("iam", connection, factory.GLOBAL_REGION), factory.GLOBAL_REGION)


def _live(found: Mapping[str, Any], *, thumbprints: bool) -> dict[str, Any]:
    attrs: dict[str, Any] = {"url": normal_url(str(found["url"])), "audiences": sorted(set(found["audiences"])),
                             "tags": kms._user_tags(found["tags"])}
    if thumbprints:
        attrs["thumbprints"] = sorted({t.lower() for t in found["thumbprints"]})
    return attrs


def _owned(found: Mapping[str, Any] | None, aws: base.AwsContext, address: str) -> bool:
    """Whether a provider's tags say this stack made it for ``address``."""
    tags = (found or {}).get("tags") or {}
    return aws.ours(tags.get(kms.STACK_TAG, "")) and tags.get(kms.ADDRESS_TAG) == address


def _find(client: iam_adapter.IamAdapter, url: str) -> str | None:
    """The ARN of the provider for ``url`` in this account, or None."""
    wanted = host_path(url)
    for arn in client.oidc_provider_arns():
        if arn.split(":oidc-provider/", 1)[-1] == wanted:
            return arn
    return None


class OidcProviderHandler:
    kind = KIND

    def desired(self, resource: manifest.Resource, config: manifest.Config, *,
                resolve_values: bool = True) -> plan_model.Desired:
        spec = resource.spec
        attrs: dict[str, Any] = {"url": normal_url(spec["url"]), "audiences": sorted(set(spec["audiences"])),
                                 "tags": dict(spec.get("tags") or {})}
        if "thumbprints" in spec:
            attrs["thumbprints"] = sorted({t.lower() for t in spec["thumbprints"]})
        connection = {"region": config.region_of(resource) or factory.GLOBAL_REGION,
                      "auth": dict(config.auth_of(resource))}
        return plan_model.Desired(KIND, resource.name, state_model.Mode.MANAGED, attrs, connection, replace_on=REPLACE_ON,
                                  lookup={"url": attrs["url"]})

    def refresh(self, aws: base.AwsContext, entry: state_model.ResourceState,
                desired: plan_model.Desired | None) -> planner.Refreshed:
        connection = dict(desired.connection if desired is not None else entry.connection)
        found = iam(aws, connection).oidc_provider(str(entry.ids["arn"]))
        if found is None:
            return planner.Refreshed(None)
        with_thumbprints = "thumbprints" in entry.attributes or (
            desired is not None and "thumbprints" in desired.attributes)
        return planner.Refreshed(_live(found, thumbprints=with_thumbprints), dict(entry.ids))

    def check(self, aws: base.AwsContext, desired: plan_model.Desired,
              entry: state_model.ResourceState | None) -> list[str]:
        """A provider for the URL that this stack does not record refuses the plan
        (CreateOpenIDConnectProvider would fail half way): import it instead."""
        if entry is not None:
            return []
        client = iam(aws, desired.connection)
        arn = _find(client, desired.attributes["url"])
        if arn is None or any(e.ids.get("arn") == arn for e in aws.state.resources.values()):
            return []
        if _owned(client.oidc_provider(arn), aws, desired.address):
            return []  # the provider this stack made for this address: the plan reads it in
        return [f"{desired.address}: an OIDC provider for {desired.attributes['url']} already exists ({arn}); "
                f"adopt it with `reconciler import {desired.address} {desired.attributes['url']}`"]

    def find_owned(self, aws: base.AwsContext, desired: plan_model.Desired) -> planner.Refreshed | None:
        """The provider for the manifest's URL, when its tags say this stack made
        it for this address (state lost it)."""
        client = iam(aws, desired.connection)
        arn = _find(client, desired.attributes["url"])
        found = client.oidc_provider(arn) if arn is not None else None
        if arn is None or found is None or not _owned(found, aws, desired.address):
            return None
        attrs = _live(found, thumbprints="thumbprints" in desired.attributes)
        return planner.Refreshed(attrs, {"arn": arn, "url": attrs["url"]},
                                 found_by=f"found provider {arn} by its tags ({kms.STACK_TAG}={aws.stack}, "
                                          f"{kms.ADDRESS_TAG}={desired.address}): read into state, not created again")

    # -- adopting (import) ------------------------------------------------------------
    def lookup(self, aws: base.AwsContext, desired: plan_model.Desired) -> planner.Refreshed:
        client = iam(aws, desired.connection)
        url = str(desired.lookup["url"])
        arn = _find(client, url)
        found = client.oidc_provider(arn) if arn is not None else None
        if arn is None or found is None:
            raise errors.AwsNotFound(f"no OIDC provider for {normal_url(url)} in this account "
                                     "(iam:ListOpenIDConnectProviders)", "NoSuchEntity")
        attrs = _live(found, thumbprints="thumbprints" in desired.attributes)
        return planner.Refreshed(attrs, {"arn": arn, "url": attrs["url"]})

    def read(self, aws: base.AwsContext, desired: plan_model.Desired) -> state_model.ResourceState:
        found = self.lookup(aws, desired)
        return state_model.ResourceState(KIND, desired.name, desired.mode, dict(found.ids),
                                         dict(found.attributes or {}), desired.connection, desired.dependencies)

    # -- writing ----------------------------------------------------------------------
    def create(self, aws: base.AwsContext, desired: plan_model.Desired,
               checkpoint: base.Checkpoint) -> state_model.ResourceState:
        """Journaled: intent, then CreateOpenIDConnectProvider tagged with the
        operation id, then the record and the entry's close in one write."""
        want = desired.attributes
        journal = aws.begin(desired.address, state_model.Operation.CREATE, "create-oidc-provider",
                            {"connection": dict(desired.connection), "attributes": dict(want),
                             "dependencies": list(desired.dependencies)})
        client = iam(aws, desired.connection)
        try:
            arn = client.create_oidc_provider(
                want["url"], list(want["audiences"]), want.get("thumbprints"),
                {**want["tags"], **kms.ownership(aws.stack, desired.address, journal.operation_id)})
        except errors.AwsError:
            _settle_failed(self, aws, journal)
            raise
        entry = state_model.ResourceState(KIND, desired.name, state_model.Mode.MANAGED,
                                          {"arn": arn, "url": want["url"], "created": clock.stamp()},
                                          dict(want), desired.connection, desired.dependencies)
        aws.settle(journal, entry)
        return entry

    def recover(self, aws: base.AwsContext, journal: state_model.JournalEntry) -> recovery.Recovery:
        """An interrupted create: the provider for the URL, if its operation tag is this entry's."""
        left_open = recovery.unless_create(journal, "provider")
        if left_open is not None:
            return left_open
        what = recovery.what(journal)
        data = journal.data
        client = iam(aws, data["connection"])
        arn = _find(client, data["attributes"]["url"])
        found = client.oidc_provider(arn) if arn is not None else None
        if arn is None or found is None or found["tags"].get(kms.OPERATION_TAG) != journal.operation_id:
            return recovery.Recovery.rolled_back(journal, f"rolled back {what}: no provider was created")
        kind, name = journal.address.split("/", 1)
        entry = state_model.ResourceState(kind, name, state_model.Mode.MANAGED,
                                          {"arn": arn, "url": data["attributes"]["url"], "created": journal.started_at},
                                          dict(data["attributes"]), data["connection"],
                                          tuple(data.get("dependencies", ())))
        return recovery.Recovery.resumed(journal, entry, f"resuming {what}: found provider {arn}")

    def update(self, aws: base.AwsContext, desired: plan_model.Desired, entry: state_model.ResourceState,
               change: plan_model.ResourceChange, checkpoint: base.Checkpoint) -> state_model.ResourceState:
        want, have = desired.attributes, dict(change.before or entry.attributes)
        client = iam(aws, desired.connection)
        arn = str(entry.ids["arn"])
        for audience in sorted(set(want["audiences"]) - set(have.get("audiences") or [])):
            client.add_audience(arn, audience)  # added first: never a moment with no audience
        for audience in sorted(set(have.get("audiences") or []) - set(want["audiences"])):
            client.remove_audience(arn, audience)
        if "thumbprints" in want and want["thumbprints"] != have.get("thumbprints"):
            client.set_thumbprints(arn, list(want["thumbprints"]))
        tags, old = want["tags"], have.get("tags") or {}
        client.untag_oidc_provider(arn, sorted(k for k in old if k not in tags))
        client.tag_oidc_provider(arn, {k: v for k, v in tags.items() if old.get(k) != v})
        return dataclasses.replace(entry, attributes=dict(want), connection=desired.connection,
                                   dependencies=desired.dependencies)

    def replace(self, aws: base.AwsContext, desired: plan_model.Desired, entry: state_model.ResourceState,
                checkpoint: base.Checkpoint) -> state_model.ResourceState:
        """Another URL is another provider: the new one exists before the old one goes."""
        return self.create(aws, desired, checkpoint)

    def delete(self, aws: base.AwsContext, entry: state_model.ResourceState) -> None:
        iam(aws, entry.connection).delete_oidc_provider(str(entry.ids["arn"]))

    # -- drift --unmanaged --------------------------------------------------------
    def unmanaged(self, aws: base.AwsContext, desired: Mapping[str, plan_model.Desired],
                  prior: state_model.State) -> list[unmanaged_model.Unmanaged]:
        """OIDC providers tagged for this stack that state does not record."""
        names = listing.recorded(prior)
        entries = listing.entries_of(KIND, desired, prior)
        found: list[unmanaged_model.Unmanaged] = []
        for connection in listing.connections(aws, [(c, factory.GLOBAL_REGION) for _, c in entries],
                                              region=factory.GLOBAL_REGION):
            client = iam(aws, connection)
            for arn in client.oidc_provider_arns():
                if arn in names:
                    continue
                provider = client.oidc_provider(arn)
                tags = (provider or {}).get("tags") or {}
                if tags.get(kms.STACK_TAG) == aws.stack:
                    found.append(listing.tagged_item(KIND, "iam:oidc-provider", arn, "global", tags, prior,
                                                     aws.stack, "provider"))
        return found


def _settle_failed(handler: OidcProviderHandler, aws: base.AwsContext, journal: state_model.JournalEntry) -> None:
    """After a failed create, record what was made (a retried call may have
    made it) or roll the entry back; left open when even the look-up fails."""
    try:
        outcome = handler.recover(aws, journal)
    except errors.ReconcilerError:
        return
    aws.persist_outcome(outcome.applied(aws.state))


# -- plan rules (pure) ---------------------------------------------------------------------
ACTIONS = ("iam:CreateOpenIDConnectProvider", "iam:GetOpenIDConnectProvider", "iam:DeleteOpenIDConnectProvider",
           "iam:AddClientIDToOpenIDConnectProvider", "iam:RemoveClientIDFromOpenIDConnectProvider",
           "iam:UpdateOpenIDConnectProviderThumbprint", "iam:TagOpenIDConnectProvider",
           "iam:UntagOpenIDConnectProvider", "iam:ListOpenIDConnectProviderTags")


def provider_arn(url: str, prior: state_model.State, address: str) -> str:
    """The provider's ARN: recorded, else made of its URL in any account."""
    entry = prior.resources.get(address)
    if entry is not None and entry.ids.get("arn"):
        return str(entry.ids["arn"])
    return f"arn:aws:iam::*:oidc-provider/{host_path(url)}"


class OidcRules(plan_rules.Rules):
    """A provider is deleted only with --allow-destroy (every delete needs it);
    another URL is another provider, made before the old one is deleted."""

    def recreate(self, entry: state_model.ResourceState, desired: plan_model.Desired) -> tuple[str, bool]:
        """Nothing is lost with a provider gone: it is made again from the manifest
        (and the drift report says it was gone)."""
        return "the provider recorded in state no longer exists in AWS; it will be created again", False

    noun = "OIDC provider"

    def drift_note(self, entry: state_model.ResourceState) -> str:
        return "the provider was changed outside reconciler; apply sets it back"

    def permissions(self, desired: plan_model.Desired, stack: Mapping[str, plan_model.Desired],
                    prior: state_model.State) -> tuple[plan_rules.Permission, ...]:
        arn = provider_arn(str(desired.attributes["url"]), prior, desired.address)
        return (plan_rules.Permission(ACTIONS, (arn,)),
                # finding a provider by URL (plan's check, import, recovery) lists them: no resource-level scope
                plan_rules.Permission(("iam:ListOpenIDConnectProviders",), ("*",)))


RULES = OidcRules()
