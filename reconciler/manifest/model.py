"""The stack model: documents become resources, references are checked and
semantic lint runs. Pure: ``build(source)`` returns values and diagnostics."""

from __future__ import annotations

import dataclasses
import os
import posixpath
import re
from collections.abc import Iterator, Mapping
from typing import Any

from reconciler import errors, graph
from reconciler.manifest import loader, policylint, schema

RSA_SPECS = ("RSA_2048", "RSA_3072", "RSA_4096")
_DURATION = re.compile(r"^([0-9]+)(s|m|h|d)$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """Seconds in a duration such as ``90s``, ``15m``, ``12h`` or ``30d``."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    return int(match.group(1)) * _UNIT[match.group(2)]


@dataclasses.dataclass(frozen=True, slots=True)
class Resource:
    kind: str
    name: str
    spec: Mapping[str, Any]
    labels: Mapping[str, str]
    document: loader.Document
    _value_references: tuple[tuple[tuple[str | int, ...], str], ...] | None = dataclasses.field(
        default=None, init=False, compare=False, repr=False)  # a cache: never copied by dataclasses.replace

    @property
    def address(self) -> str:
        return f"{self.kind}/{self.name}"

    def value_references(self) -> tuple[tuple[tuple[str | int, ...], str], ...]:
        """``value_references(spec)``, found once: a spec is read-only, and
        graphs, checks and plans each ask for every resource's."""
        if self._value_references is None:
            object.__setattr__(self, "_value_references", tuple(value_references(self.spec)))
        assert self._value_references is not None
        return self._value_references

    def position(self, *path: str | int, key: bool = False) -> errors.Position:
        return self.document.position(("spec",) + path if path else (), key=key)


@dataclasses.dataclass(frozen=True, slots=True)
class StackConfig:
    name: str
    region: str | None
    auth: Mapping[str, Any] | None
    backend: Mapping[str, Any]
    document: loader.Document | None
    former_names: tuple[str, ...] = ()  # spec.formerNames: what it was called before a rename


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    stack: StackConfig
    resources: Mapping[str, Resource]  # address -> resource, in document order
    source: loader.Source
    default_vault: str | None = None  # the one Vault marked default (computed once, not per Secret)
    _by_kind: dict[str, list[Resource]] | None = dataclasses.field(default=None, init=False, compare=False,
                                                                    repr=False)  # a cache, as above

    def of_kind(self, kind: str) -> list[Resource]:
        """The resources of one kind, in document order (indexed once: a kind's
        rules asking per resource about every other must not be quadratic)."""
        if self._by_kind is None:
            index: dict[str, list[Resource]] = {}
            for resource in self.resources.values():
                index.setdefault(resource.kind, []).append(resource)
            object.__setattr__(self, "_by_kind", index)
        assert self._by_kind is not None
        return self._by_kind.get(kind, [])

    def region_of(self, resource: Resource) -> str | None:
        return resource.spec.get("region") or self.stack.region

    def auth_of(self, resource: Resource) -> Mapping[str, Any]:
        return resource.spec.get("auth") or self.stack.auth or {"defaultChain": {}}

    def dependency_graph(self) -> graph.Graph:
        g = graph.Graph()
        for address in self.resources:
            g.add_node(address)
        for resource in self.resources.values():
            for ref in references(resource, self):
                if ref.target in self.resources:
                    g.add_edge(resource.address, ref.target)
        return g


@dataclasses.dataclass(frozen=True, slots=True)
class Reference:
    path: tuple[str | int, ...]  # inside spec
    target: str  # "Kind/name"


def default_vaults(resources: Mapping[str, Resource]) -> list[Resource]:
    """Every Vault marked default, in document order (more than one is an error)."""
    return [r for r in resources.values() if r.kind == "Vault" and r.spec.get("default")]


def default_vault(resources: Mapping[str, Resource]) -> str | None:
    """The default vault's name, or None when none or several are marked default.
    One pass over every resource: call it once per stack (``Config.default_vault``)."""
    defaults = default_vaults(resources)
    return defaults[0].name if len(defaults) == 1 else None


def references(resource: Resource, config: Config | None = None, *,
               default: str | None = None) -> Iterator[Reference]:
    """Every reference a resource makes to another, by the rules of its kind
    (``default``: the default vault, when no config is given)."""
    spec = resource.spec
    if config is not None:
        default = config.default_vault
    match resource.kind:
        case "Vault":
            if "provider" in spec:
                yield Reference(("provider",), f"KmsProvider/{spec['provider']}")
        case "Secret":
            vault = spec.get("vault") or default
            if vault:
                yield Reference(("vault",), f"Vault/{vault}")
        case "IamRole":
            for i, grant in enumerate(spec.get("grants") or []):
                yield Reference(("grants", i, "provider"), f"KmsProvider/{grant['provider']}")
            oidc = (spec.get("trust") or {}).get("oidc")
            if oidc:
                yield Reference(("trust", "oidc", "provider"), f"OidcProvider/{oidc['provider']}")
        case "AccessKeyRotation":
            outputs = spec.get("outputs") or {}
            for output in ("accessKeyId", "secretAccessKey"):
                target = outputs.get(output) or {}
                vault = target.get("vault") or outputs.get("vault") or default
                field = ("outputs", output, "vault") if target.get("vault") else \
                    ("outputs", "vault") if outputs.get("vault") else ("outputs", output)
                if vault:
                    yield Reference(field, f"Vault/{vault}")
        case _:
            pass
    for path, text in resource.value_references():  # `{$ref: Kind/name#attribute}` anywhere in a spec
        address, hash_, attribute = text.partition("#")
        if hash_ and attribute and address.count("/") == 1 and all(address.split("/")):
            yield Reference(path, address)


REF = "$ref"  # a value known after apply: {"$ref": "Kind/name#attribute"} (plan/refs.py resolves it)


def value_references(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every ``{$ref: ...}`` in a spec, with where it is."""
    if type(value) is str:  # most of a spec: nothing inside
        return
    if isinstance(value, Mapping):
        if set(value) == {REF}:
            yield path, str(value[REF])
            return
        for key, item in value.items():
            yield from value_references(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from value_references(item, (*path, index))


def _malformed_references(resources: Mapping[str, Resource]) -> Iterator[errors.Diagnostic]:
    for resource in resources.values():
        for path, text in resource.value_references():
            address, hash_, attribute = text.partition("#")
            if not (hash_ and attribute and address.count("/") == 1 and all(address.split("/"))):
                yield errors.Diagnostic(f"malformed reference {loader.clip(text)!r}: expected KIND/NAME#ATTRIBUTE, "
                                        "such as "
                                        "KmsProvider/app#arn", resource.position(*path), resource.address)


CREATED_ONLY = ("spec", "usage", "multiRegion", "replicaRegions", "deletionWindowDays")
READ_ONLY_FIELDS = frozenset({"keyId", "manage", "region", "auth"})


def _adopted_fields(resource: Resource) -> Iterator[errors.Diagnostic]:
    """An adopted key (keyId) takes no field it would silently ignore: those of
    key creation never, and without ``manage: true`` only how to reach it."""
    spec = resource.spec
    for field in spec:
        if field in CREATED_ONLY:
            message = (f"{field} cannot be set on an adopted key (keyId); reconciler only creates "
                       "keys it owns")
        elif field == "protect":
            message = ("protect has no effect on an adopted key (keyId): reconciler never deletes a key "
                       "it adopted, it only forgets it; remove protect")
        elif field not in READ_ONLY_FIELDS and not spec.get("manage"):
            message = (f"{field} would be ignored: this adopted key (keyId) is read-only; add "
                       f"manage: true to reconcile {field}, or remove it")
        else:
            continue
        yield errors.Diagnostic(message, resource.position(field), resource.address)


def _findings(resource: Resource, found: Iterator[policylint.Finding]) -> Iterator[errors.Diagnostic]:
    """Policy lint findings, at the position of the field each is about."""
    for finding in found:
        yield errors.Diagnostic(finding.message, resource.position(*finding.path), resource.address,
                                finding.severity)


def _lint(resource: Resource, resources: Mapping[str, Resource]) -> Iterator[errors.Diagnostic]:
    spec = resource.spec
    address = resource.address

    def problem(message: str, *path: str | int, severity: str = "error") -> errors.Diagnostic:
        return errors.Diagnostic(message, resource.position(*path), address, severity)

    match resource.kind:
        case "KmsProvider":
            if "keyId" in spec:
                yield from _adopted_fields(resource)
            elif "manage" in spec:
                yield problem("manage only applies to an adopted key (keyId)", "manage")
            key_spec = spec.get("spec", "SYMMETRIC_DEFAULT")
            rotation = spec.get("rotation") or {}
            if key_spec in RSA_SPECS and rotation.get("enabled"):
                yield problem(f"automatic rotation is for symmetric keys only; {key_spec} keys cannot "
                              "rotate (remove rotation or use spec: SYMMETRIC_DEFAULT)", "rotation")
            if "periodDays" in rotation and not rotation.get("enabled"):
                yield problem("rotation.periodDays is set but rotation is not enabled",
                              "rotation", "periodDays")
            replicas = spec.get("replicaRegions") or []
            if replicas and not spec.get("multiRegion"):
                yield problem("replicaRegions needs multiRegion: true", "replicaRegions")
            if spec.get("policy") and spec.get("grants"):
                yield problem("give either policy or grants, not both", "grants")
            yield from _findings(resource, policylint.key_policy_findings(spec))
            yield from _findings(resource, policylint.key_grant_findings(spec))
        case "IamRole":
            keys = {r.name: r.spec for r in resources.values() if r.kind == "KmsProvider"}
            yield from _findings(resource, policylint.role_grant_findings(spec, keys))
            yield from _findings(resource, policylint.trust_findings(spec))
        case "Vault":
            pass
        case "DynamicIamTemplate":
            if "inlinePolicy" in spec:
                yield from _findings(resource, policylint.policy_findings(spec["inlinePolicy"], "inlinePolicy",
                                                                          key_policy=False))
            try:
                default_ttl = parse_duration(spec["defaultTtl"])
                max_ttl = parse_duration(spec["maxTtl"])
            except (KeyError, ValueError):
                return
            if default_ttl <= 0:
                yield problem("defaultTtl must be longer than 0", "defaultTtl")
            elif max_ttl < default_ttl:
                yield problem(f"maxTtl ({spec['maxTtl']}) is shorter than defaultTtl "
                              f"({spec['defaultTtl']})", "maxTtl")
        case "AccessKeyRotation":
            try:
                interval = parse_duration(spec["interval"])
                grace = parse_duration(spec.get("gracePeriod", ROTATION_GRACE_DEFAULT))
            except (KeyError, ValueError):
                return
            if interval <= 0:
                yield problem("interval must be longer than 0", "interval")
            elif grace <= 0:
                yield problem("gracePeriod must be longer than 0: the previous key must outlive the cut-over "
                              "long enough for every consumer to read the new one", "gracePeriod")
            elif grace >= interval:
                yield problem(f"gracePeriod ({spec.get('gracePeriod', ROTATION_GRACE_DEFAULT)}) must be shorter "
                              f"than interval ({spec['interval']})",
                              "gracePeriod" if "gracePeriod" in spec else "interval")
        case _:
            return


ROTATION_GRACE_DEFAULT = "1h"
ROTATION_OUTPUTS = ("accessKeyId", "secretAccessKey")


def _rotation_outputs(config: Config) -> Iterator[errors.Diagnostic]:
    """The secrets an AccessKeyRotation writes are its own: no Secret document
    may declare one, nor another output (reported at both positions)."""
    claims: dict[tuple[str, str], list[tuple[Resource, tuple[str, ...]]]] = {}
    for resource in config.resources.values():
        if resource.kind == "Secret":
            vault = resource.spec.get("vault") or config.default_vault or ""
            claims.setdefault((vault, resource.name), []).append((resource, ()))
        elif resource.kind == "AccessKeyRotation":
            outputs = resource.spec.get("outputs") or {}
            for output in ROTATION_OUTPUTS:
                target = outputs.get(output) or {}
                vault = target.get("vault") or outputs.get("vault") or config.default_vault or ""
                if target.get("secret"):
                    claims.setdefault((vault, target["secret"]), []).append((resource, ("outputs", output, "secret")))
    def where(resource: Resource, path: tuple[str, ...]) -> errors.Position:
        return resource.position(*path) if path else resource.document.position(("metadata", "name"))

    for (vault, name), holders in claims.items():
        if len(holders) < 2 or all(r.kind == "Secret" for r, _ in holders):
            continue  # two Secrets of one name are duplicate resources, reported as such
        for resource, path in holders:
            others = [f"{r.address}{' (' + '.'.join(p[1:]) + ')' if p else ''} at {where(r, p)}"
                      for r, p in holders if (r, p) != (resource, path)]
            yield errors.Diagnostic(
                f"secret {vault}/{name} is also declared by {'; '.join(others)}; the secrets an AccessKeyRotation "
                "writes are its own (no Secret document, no other output may name one)",
                where(resource, path), resource.address)


def _check_envelopes(config: Config) -> Iterator[errors.Diagnostic]:
    """An ``encrypted:`` envelope must be well formed and bound to this very
    stack, vault and secret name (so it cannot be pasted elsewhere)."""
    from reconciler.crypto import envelope  # pure format code; no KMS

    for resource in config.resources.values():
        if resource.kind != "Secret" or "encrypted" not in resource.spec:
            continue
        vault = resource.spec.get("vault") or config.default_vault
        try:
            sealed = envelope.Envelope.parse(resource.spec["encrypted"].strip())
            former = {envelope.Binding(n, vault, resource.name) for n in config.stack.former_names} if vault else set()
            if vault and sealed.binding not in former:  # bound to a former name: re-bound when stored
                sealed.check_binding(envelope.Binding(config.stack.name, vault, resource.name))
        except envelope.EnvelopeError as exc:
            yield errors.Diagnostic(f"encrypted: {exc}", resource.position("encrypted"), resource.address)


def alias_name(name: str) -> str:
    """A KMS alias as AWS names it (manifests may leave out ``alias/``)."""
    return name if name.startswith("alias/") else f"alias/{name}"


def _alias_claims(config: Config) -> Iterator[tuple[tuple[str, str], Resource, str | None]]:
    """(region, alias) for every region a KmsProvider's alias will exist in:
    its own and, for a multi-Region key, each replica region."""
    for resource in config.resources.values():
        spec = resource.spec
        if resource.kind != "KmsProvider" or "alias" not in spec:
            continue
        if "keyId" in spec and not spec.get("manage"):
            continue  # a read-only key sets no alias (and is refused for naming one)
        region = config.region_of(resource)
        if region is None:
            continue  # reported as "no region"
        replicas = (spec.get("replicaRegions") or []) if spec.get("multiRegion") and "keyId" not in spec else []
        for where in dict.fromkeys([region, *replicas]):
            yield (where, alias_name(spec["alias"])), resource, where if where != region else None


def _shared_aliases(config: Config) -> Iterator[errors.Diagnostic]:
    """Two keys may not declare one alias in one region: each apply would move
    it to the other key. Reported at every declaration."""
    claims: dict[tuple[str, str], list[tuple[Resource, str | None]]] = {}
    for place, resource, replica in _alias_claims(config):
        claims.setdefault(place, []).append((resource, replica))
    clashes: dict[str, dict[str, list[str]]] = {}  # address -> other address -> where
    for (region, _alias), holders in claims.items():
        for resource, replica in holders:
            for other, _ in holders:
                if other.address != resource.address:
                    where = f"{region} (a replica region of this key)" if replica else region
                    clashes.setdefault(resource.address, {}).setdefault(other.address, []).append(where)
    for address, others in clashes.items():
        resource = config.resources[address]
        named = "; and by ".join(
            f"{other} (at {config.resources[other].position('alias')}) in {', '.join(regions)}"
            for other, regions in others.items())
        yield errors.Diagnostic(
            f"alias {alias_name(resource.spec['alias'])} is also declared by {named}; two keys cannot "
            "share an alias in a region (each apply would move it to the other): pick another alias",
            resource.position("alias"), address)


@dataclasses.dataclass(frozen=True, slots=True)
class StoreLocation:
    """Where a vault keeps its entries. One location contains another when
    their ``scope`` is the same and its ``parts`` are a prefix of the other's
    (path components for local and SSM stores, characters for the name
    prefixes of S3 and Secrets Manager)."""

    scope: tuple[str, ...]
    parts: tuple[str, ...] | str
    shown: str  # as the manifest gives it
    field: tuple[str, ...]  # inside spec, for the error position


def store_location(resource: Resource, config: Config) -> StoreLocation | None:
    """The location of a Vault's store, normalised (local paths against the
    stack directory); region counts only where it makes a different place."""
    store = resource.spec.get("store") or {}
    match dict(store):
        case {"local": {"path": str(path)}}:
            # realpath: a symlink to another vault's directory is that directory
            full = os.path.realpath(posixpath.join(str(config.source.directory.absolute()), path))
            return StoreLocation(("local",), tuple(full.split("/")), f"local path {path}",
                                 ("store", "local", "path"))
        case {"s3": {"bucket": str(bucket), **rest}}:  # bucket names are global
            prefix = str(rest.get("prefix", ""))
            return StoreLocation(("s3", bucket), prefix, f"s3://{bucket}/{prefix}",
                                 ("store", "s3", "prefix" if "prefix" in rest else "bucket"))
        case {"secretsmanager": {"prefix": str(prefix), **rest}}:
            region = str(rest.get("region") or config.stack.region or "(no region)")
            return StoreLocation(("secretsmanager", region), prefix,
                                 f"Secrets Manager prefix {prefix!r} in {region}",
                                 ("store", "secretsmanager", "prefix"))
        case {"ssm": {"path": str(path), **rest}}:
            region = str(rest.get("region") or config.stack.region or "(no region)")
            return StoreLocation(("ssm", region), tuple(path.rstrip("/").split("/")),
                                 f"SSM path {path} in {region}", ("store", "ssm", "path"))
        case _:
            return None


def _shared_stores(config: Config) -> Iterator[errors.Diagnostic]:
    """Two vaults may not share a store location (the same, or one inside the
    other): moving a secret between them would write an entry and then delete
    it. Reported at both vaults. Linear: each location looks up its prefixes."""
    located = [(r, loc) for r in config.resources.values() if r.kind == "Vault"
               for loc in [store_location(r, config)] if loc is not None]
    index: dict[tuple[tuple[str, ...], tuple[str, ...] | str], list[Resource]] = {}
    for resource, location in located:
        index.setdefault((location.scope, location.parts), []).append(resource)
    where = {r.address: loc for r, loc in located}
    overlaps: dict[str, dict[str, None]] = {}  # address -> addresses, in order found
    for resource, location in located:
        for end in range(len(location.parts) + 1):
            for outer in index.get((location.scope, location.parts[:end]), []):
                if outer.address != resource.address:
                    overlaps.setdefault(resource.address, {})[outer.address] = None
                    overlaps.setdefault(outer.address, {})[resource.address] = None
    for resource, location in located:
        for address in overlaps.get(resource.address, {}):
            theirs = where[address]
            yield errors.Diagnostic(
                f"store {location.shown} overlaps the store of {address} ({theirs.shown}, at "
                f"{config.resources[address].position(*theirs.field)}); two vaults cannot share a store "
                "location: moving a secret between them would overwrite and then delete its entry",
                resource.position(*location.field), resource.address)


def _resources(source: loader.Source, valid: set[tuple[str, int]],
               diagnostics: list[errors.Diagnostic]) -> dict[str, Resource]:
    """The declared resources by address (schema-valid ones only); duplicates reported."""
    resources: dict[str, Resource] = {}
    seen: dict[str, loader.Document] = {}
    for document in source.documents:
        address = document.address
        if address is None or document.kind == "Stack":
            continue
        if address in seen:
            first = seen[address].position(("metadata", "name"))
            diagnostics.append(errors.Diagnostic(
                f"duplicate resource {address} (first declared at {first})",
                document.position(("metadata", "name")), address))
            continue
        seen[address] = document
        if (document.file, document.index) in valid:
            data = document.data
            resources[address] = Resource(data["kind"], data["metadata"]["name"], data.get("spec") or {},
                                          data["metadata"].get("labels") or {}, document)
    return resources


def _stack_documents(source: loader.Source) -> Iterator[errors.Diagnostic]:
    all_stacks = [d for d in source.documents if d.kind == "Stack"]
    if not all_stacks and source.documents:
        yield errors.Diagnostic(
            f"{source.directory}: no Stack document; add one (kind: Stack) naming the stack "
            "and its state backend")
    for extra in all_stacks[1:]:
        yield errors.Diagnostic(
            f"a second Stack document (the first is at {all_stacks[0].position(())}); "
            "one stack per directory tree", extra.position(("kind",)), extra.address)


def _vault_defaults(resources: Mapping[str, Resource]) -> Iterator[errors.Diagnostic]:
    """At most one default vault; a Secret without ``vault:`` needs exactly one
    (with several, the extra defaults are the one error: not also every Secret)."""
    defaults = default_vaults(resources)
    for second in defaults[1:]:
        yield errors.Diagnostic(
            f"a second default vault (Vault/{defaults[0].name} is already default); "
            "mark at most one Vault default: true", second.position("default"), second.address)
    if defaults:
        return
    for resource in resources.values():
        if resource.kind == "Secret" and "vault" not in resource.spec:
            yield errors.Diagnostic("no vault given and no Vault is marked default: true",
                                    resource.position(), resource.address)


def _dangling(resources: Mapping[str, Resource], declared: Mapping[str, Any],
              default: str | None) -> Iterator[errors.Diagnostic]:
    """References to resources that are not declared, with the names that are."""
    yield from _malformed_references(resources)
    names: dict[str, list[str]] | None = None
    for resource in resources.values():
        for ref in references(resource, default=default):
            if ref.target in resources or ref.target in declared:
                continue
            if names is None:  # built once, only when something is missing
                names = {}
                for other in resources.values():
                    names.setdefault(other.kind, []).append(other.name)
            kind, _name = ref.target.split("/", 1)
            known = sorted(names.get(kind, []))
            hint = f"; known: {', '.join(known)}" if known else f"; no {kind} is declared"
            yield errors.Diagnostic(
                f"{loader.clip(str(ref.path[-1])) if ref.path else 'reference'} refers to "
                f"{loader.clip(ref.target)}, which does "
                f"not exist{hint}", resource.position(*ref.path), resource.address)


def _regions(config: Config) -> Iterator[errors.Diagnostic]:
    for resource in config.resources.values():
        region = config.region_of(resource)
        for i, replica in enumerate(resource.spec.get("replicaRegions") or []):
            if resource.kind == "KmsProvider" and replica == region:
                yield errors.Diagnostic(
                    f"replica region {replica} is the key's own region", resource.position("replicaRegions", i),
                    resource.address)
        if region is None and resource.kind in ("KmsProvider", "AccessKeyRotation", "DynamicIamTemplate"):
            yield errors.Diagnostic("no region: set spec.region here or spec.region on the Stack",
                                    resource.position(), resource.address)


def _stack_config(documents: list[loader.Document]) -> StackConfig | None:
    if not documents:
        return None
    document = documents[0]
    spec = document.data.get("spec") or {}
    backend = spec.get("backend") or {"local": {}}
    return StackConfig(document.data["metadata"]["name"], spec.get("region"), spec.get("auth"),
                       backend, document, tuple(spec.get("formerNames") or ()))


def build(source: loader.Source) -> tuple[Config | None, list[errors.Diagnostic]]:
    """Validate every document and assemble the stack; collect every problem.
    Linear in the number of documents: every cross-resource check indexes once."""
    diagnostics: list[errors.Diagnostic] = []
    valid: set[tuple[str, int]] = set()
    for document in source.documents:
        problems = schema.validate_document(document)
        diagnostics.extend(problems)
        if not any(p.severity == "error" for p in problems):
            valid.add((document.file, document.index))

    resources = _resources(source, valid, diagnostics)
    declared = {d.address: d for d in source.documents if d.address}
    diagnostics.extend(_stack_documents(source))
    diagnostics.extend(_vault_defaults(resources))
    default = default_vault(resources)
    for resource in resources.values():
        diagnostics.extend(_lint(resource, resources))
    diagnostics.extend(_dangling(resources, declared, default))

    stack = _stack_config([d for d in source.documents if d.kind == "Stack"
                           and (d.file, d.index) in valid])
    config = Config(stack, resources, source, default) if stack is not None else None
    if config is not None:
        diagnostics.extend(_check_envelopes(config))
        cycle = config.dependency_graph().find_cycle()
        if cycle:
            looped = resources[cycle[0]]
            diagnostics.append(errors.Diagnostic(
                "dependency cycle: " + " -> ".join(cycle + [cycle[0]]), looped.position(), looped.address))
        diagnostics.extend(_regions(config))
        diagnostics.extend(_shared_aliases(config))
        diagnostics.extend(_shared_stores(config))
        diagnostics.extend(_rotation_outputs(config))
    diagnostics.sort(key=lambda d: (d.position.file, d.position.line, d.position.column)
                     if d.position else ("", 0, 0))
    return config, diagnostics


def load(directory: str) -> tuple[Config | None, list[errors.Diagnostic]]:
    source, diagnostics = loader.load_directory(directory)
    config, more = build(source)
    return config, diagnostics + more


def load_or_raise(directory: str) -> tuple[Config, list[errors.Diagnostic]]:
    """The config, or ManifestError with every error; warnings are returned."""
    config, diagnostics = load(directory)
    failures = [d for d in diagnostics if d.severity == "error"]
    if failures or config is None:
        raise errors.ManifestError(failures or diagnostics)
    return config, diagnostics
