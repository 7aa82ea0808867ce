"""The SSM store: one parameter per entry at <path>/<name> holding the
envelope (already ciphertext under the customer's key). SSM numbers its own
parameter versions, so every version reconciler writes carries a label with
our number and date (``rcl-<number>-<date>-<random>``): a history copied here
or re-wrapped keeps its numbers and dates. Reading: labelled versions give
our versions (the last write of a number wins); a parameter never labelled
(written before labels) uses SSM's own numbers; an unlabelled write after the
last labelled one (a run stopped between write and label, or a write from
outside) is the next number. Labels of versions no longer kept are removed,
so SSM can still drop its oldest versions past its limit of 100."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from typing import Any

from reconciler import errors
from reconciler.aws import adapter
from reconciler.stores import base

STANDARD_LIMIT = 4096
SSM_MAX_VERSIONS = 100  # SSM drops its oldest version past this, unless it is labelled
_LABEL = re.compile(r"^rcl-(\d+)-(\d{8}T\d{6}Z)-[0-9a-f]+$")
LABEL_BATCH = 10  # SSM takes at most 10 labels per call


PARAMETERS_PAGE = 50  # DescribeParameters returns at most 50 parameters a page


def _store_id(parameter: Mapping[str, Any]) -> str:
    """An SSM version's id: its number and when it was written (a parameter
    deleted and made again numbers its versions from 1 again)."""
    return f"{parameter['Version']}@{base.stamp(parameter.get('LastModifiedDate'))}"


def label(version: base.Version) -> str:
    return f"rcl-{version.number}-{base.compact(version.created_at)}-{uuid.uuid4().hex[:8]}"


class SsmStore(adapter.Adapter):
    service = "ssm"

    def __init__(self, client: object, region: str, path: str, keep: int = base.DEFAULT_KEEP) -> None:
        super().__init__(client, region)
        self.path, self.keep = path.rstrip("/"), keep

    def describe(self) -> str:
        return f"SSM {self.path}/ in {self.region}"

    def _name(self, name: str) -> str:
        return f"{self.path}/{name}"

    def _history(self, name: str) -> list[dict[str, Any]]:
        try:
            history = self._pages("GetParameterHistory", "Parameters", Name=self._name(name))
        except errors.AwsNotFound:
            return []
        return sorted(history, key=lambda p: int(p["Version"]))

    def _read(self, history: list[dict[str, Any]]) -> list[tuple[dict[str, Any], base.Version]]:
        """Our versions in SSM's write order, each with the SSM version it is."""
        labelled = [i for i, p in enumerate(history) if any(_LABEL.match(x) for x in p.get("Labels", []))]
        found: list[tuple[dict[str, Any], base.Version]] = []
        for index, p in enumerate(history):
            ours = [m for m in (_LABEL.match(x) for x in p.get("Labels", [])) if m]
            if ours:
                number, date = int(ours[0].group(1)), base.expand(ours[0].group(2))
            elif not labelled:
                number, date = int(p["Version"]), base.stamp(p.get("LastModifiedDate"))
            elif index > labelled[-1]:
                number, date = found[-1][1].number + 1, base.stamp(p.get("LastModifiedDate"))
            else:
                continue  # replaced by a later write of its number, or no longer kept
            found.append((p, base.Version(number, date, p["Value"], _store_id(p))))
        return found

    def versions(self, name: str) -> list[base.Version]:
        return base.kept([v for _, v in self._read(self._history(name))], self.keep)

    def latest(self, name: str) -> base.Version | None:
        versions = self.versions(name)
        return versions[-1] if versions else None

    def current_ids(self) -> dict[str, str]:
        """Entry name -> the id of its parameter's current version: DescribeParameters
        one level under the path, one page per 50 parameters (no value is read).
        A version just written has no known id (PutParameter does not say when
        it was written): its entry is read once more by the next refresh."""
        listed = self._pages("DescribeParameters", "Parameters", largest_page=PARAMETERS_PAGE,
                             ParameterFilters=[{"Key": "Path", "Option": "OneLevel",
                                                "Values": [self.path or "/"]}])
        prefix = f"{self.path}/"
        return {str(p["Name"])[len(prefix):]: _store_id(p) for p in listed if str(p["Name"]).startswith(prefix)}

    def put(self, name: str, envelope: str, *, tags: Mapping[str, str] | None = None) -> base.Version:
        history = self._history(name)
        current = base.kept([v for _, v in self._read(history)], self.keep)
        version = base.Version((current[-1].number if current else 0) + 1, base.now(), envelope)
        return self._write(name, version, history, tags)

    def put_version(self, name: str, version: base.Version, *, newest: bool,
                    tags: Mapping[str, str] | None = None) -> base.Version:
        return self._write(name, version, self._history(name), tags)

    def _write(self, name: str, version: base.Version, history: list[dict[str, Any]],
               tags: Mapping[str, str] | None = None) -> base.Version:
        """Write, label with our number and date, then unlabel what is no longer kept.
        A parameter written before labels gets its versions labelled first.
        Returns the version with its SSM id (from the history read to unlabel)."""
        if history and not any(_LABEL.match(x) for p in history for x in p.get("Labels", [])):
            for p, old in self._read(history):
                self._label(name, int(p["Version"]), label(old))
        if len(history) >= SSM_MAX_VERSIONS:  # let SSM drop its oldest version (no longer kept after this write)
            oldest = [x for x in history[0].get("Labels", []) if _LABEL.match(x)]
            if oldest:
                self._call("UnlabelParameterVersion", Name=self._name(name),
                           ParameterVersion=int(history[0]["Version"]), Labels=oldest[:LABEL_BATCH])
        tier = "Standard" if len(version.envelope) <= STANDARD_LIMIT else "Advanced"
        if history:
            out = self._call("PutParameter", Name=self._name(name), Value=version.envelope, Type="String",
                             Overwrite=True, Tier=tier)
        else:  # a new parameter: tagged as it is made (SSM takes Tags only without Overwrite)
            out = self._call("PutParameter", Name=self._name(name), Value=version.envelope, Type="String",
                             Tier=tier, Tags=[{"Key": k, "Value": v} for k, v in sorted((tags or {}).items())])
        self._label(name, int(out["Version"]), label(version))
        written = [p for p, _ in self._unlabel_stale(name) if int(p["Version"]) == int(out["Version"])]
        return base.Version(version.number, version.created_at, version.envelope,
                            _store_id(written[0]) if written else "")

    def _label(self, name: str, ssm_version: int, text: str) -> None:
        self._call("LabelParameterVersion", Name=self._name(name), ParameterVersion=ssm_version, Labels=[text])

    def _unlabel_stale(self, name: str) -> list[tuple[dict[str, Any], base.Version]]:
        """Remove our labels from versions no longer kept; returns what it read."""
        read = self._read(self._history(name))
        kept = {id(v) for v in base.kept([v for _, v in read], self.keep)}
        for p, v in read:
            stale = [x for x in p.get("Labels", []) if _LABEL.match(x)]
            if stale and id(v) not in kept:
                for start in range(0, len(stale), LABEL_BATCH):
                    self._call("UnlabelParameterVersion", Name=self._name(name),
                               ParameterVersion=int(p["Version"]), Labels=stale[start:start + LABEL_BATCH])
        return read

    def delete(self, name: str) -> None:
        try:
            self._call("DeleteParameter", Name=self._name(name))
        except errors.AwsNotFound:
            pass
