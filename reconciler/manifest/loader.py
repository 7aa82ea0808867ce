"""Read every ``*.yaml`` / ``*.yml`` file under a directory into documents that
remember where each node came from, so that every later error can point at
``file:line:col``.

Pure apart from reading the files handed to it: no AWS, no click.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
from typing import Any

import yaml
import yaml.composer
import yaml.constructor
import yaml.resolver

from reconciler import errors

Path = tuple[str | int, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Document:
    """One YAML document: its plain data and a position for every node.

    ``positions[path]`` is where the value at ``path`` starts;
    ``key_positions[path]`` is where the mapping key naming ``path`` starts
    (used to point at unknown fields).
    """

    file: str
    index: int
    data: Any
    positions: dict[Path, errors.Position]
    key_positions: dict[Path, errors.Position]

    def position(self, path: Path, *, key: bool = False) -> errors.Position:
        """The position of ``path`` or of its nearest ancestor that has one."""
        table = self.key_positions if key else self.positions
        probe = tuple(path)
        while probe:
            if probe in table:
                return table[probe]
            if key and probe in self.positions:
                return self.positions[probe]
            probe = probe[:-1]
        return self.positions.get((), errors.Position(self.file, 1, 1))

    @property
    def kind(self) -> str | None:
        return self.data.get("kind") if isinstance(self.data, dict) else None

    @property
    def name(self) -> str | None:
        if isinstance(self.data, dict) and isinstance(self.data.get("metadata"), dict):
            name = self.data["metadata"].get("name")
            return name if isinstance(name, str) else None
        return None

    @property
    def address(self) -> str | None:
        if self.kind and self.name:
            return f"{self.kind}/{self.name}"
        return None


def _mark(file: str, node: yaml.Node) -> errors.Position:
    return errors.Position(file, node.start_mark.line + 1, node.start_mark.column + 1)


# Limits that keep a hostile or broken file cheap to refuse (YAML alias bombs,
# recursive aliases, absurd nesting), far above anything a manifest needs.
MAX_DEPTH = 64  # nested mappings and lists, aliases expanded
MAX_ALIASES = 100  # alias uses per document, those inside expanded aliases included
MAX_ALIAS_DEPTH = 8  # aliases within what an alias expands to
MAX_EXPANDED_NODES = 10_000  # nodes copied by expanding aliases, per document


class _Alias(yaml.Node):
    """An alias where it is written (``*name``), pointing at its anchored node:
    the composer would hand back the anchored node itself, losing where the
    alias was and turning a recursive alias into a cycle."""

    id = "alias"

    def __init__(self, target: yaml.Node, anchor: str, start_mark: Any, end_mark: Any) -> None:
        super().__init__(None, target, start_mark, end_mark)
        self.target = target
        self.anchor = anchor


class _Composer(yaml.composer.Composer):
    """PyYAML's composer, keeping aliases as ``_Alias`` and refusing nesting
    deeper than MAX_DEPTH while composing (it recurses once per level)."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = super().compose_node(parent, index)
            return _Alias(target, event.anchor, event.start_mark, event.end_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_DEPTH} levels deep", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


if yaml.__with_libyaml__:
    class _Loader(_Composer, yaml.cyaml.CParser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
        """Events from libyaml (about 9x faster than PyYAML's Python scanner and
        parser: most of the time of loading a large stack), composed in Python."""

        def __init__(self, stream: str) -> None:
            yaml.cyaml.CParser.__init__(self, stream)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            _Composer.__init__(self)
else:  # pragma: no cover - PyYAML built without libyaml
    class _Loader(_Composer, yaml.SafeLoader):  # type: ignore[no-redef]
        """PyYAML's pure-Python safe loader with the bounded composer."""


class _Walker:
    """Turns a composed node tree into plain data, recording positions.

    Aliases are expanded within the MAX_* limits; past one, the document is
    refused with one positioned error (``stopped``) instead of growing
    without bound or recursing forever."""

    def __init__(self, file: str, loader: _Loader) -> None:
        self.file = file
        self.loader = loader
        self.positions: dict[Path, errors.Position] = {}
        self.key_positions: dict[Path, errors.Position] = {}
        self.diagnostics: list[errors.Diagnostic] = []
        self.stopped = False
        self._open: set[int] = set()  # collections being walked: an alias to one is recursive
        self._expanding: list[_Alias] = []  # aliases being expanded, outermost first
        self._aliases = 0
        self._expanded = 0

    def walk(self, node: yaml.Node, path: Path) -> Any:
        if self.stopped:
            return None
        if isinstance(node, _Alias):
            value = self._expand(node, path)
            self.positions[path] = _mark(self.file, node)
            return value
        self.positions[path] = _mark(self.file, node)
        if self._expanding:
            self._expanded += 1
            if self._expanded > MAX_EXPANDED_NODES:
                return self._stop(f"YAML aliases expand to more than {MAX_EXPANDED_NODES} nodes",
                                  self._expanding[0])
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            if len(path) >= MAX_DEPTH:
                return self._stop(f"nested more than {MAX_DEPTH} levels deep (YAML aliases expanded)", node)
            self._open.add(id(node))
            try:
                return self._mapping(node, path) if isinstance(node, yaml.MappingNode) else \
                    [self.walk(item, path + (i,)) for i, item in enumerate(node.value)]
            finally:
                self._open.discard(id(node))
        value = self.loader.construct_object(node)
        # Dates and timestamps become strings: manifests are JSON-shaped.
        if not isinstance(value, (str, int, float, bool, type(None))):
            value = node.value
        return value

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, _Alias):
                key_node = key_node.target
            if not isinstance(key_node, yaml.ScalarNode):
                self.diagnostics.append(errors.Diagnostic(
                    "mapping keys must be plain strings", _mark(self.file, key_node)))
                continue
            if key_node.tag == "tag:yaml.org,2002:merge" or key_node.value == "<<":
                self.diagnostics.append(errors.Diagnostic(
                    "YAML merge keys (<<) are not supported; write the fields out",
                    _mark(self.file, key_node)))
                continue
            key = str(self.loader.construct_object(key_node))
            if key in result:
                self.diagnostics.append(errors.Diagnostic(
                    f"duplicate key {key!r} (first at line "
                    f"{self.key_positions[path + (key,)].line})",
                    _mark(self.file, key_node)))
                continue
            self.key_positions[path + (key,)] = _mark(self.file, key_node)
            result[key] = self.walk(value_node, path + (key,))
        return result

    def _expand(self, alias: _Alias, path: Path) -> Any:
        """The value an alias stands for, within the limits."""
        if id(alias.target) in self._open:
            return self._stop(f"YAML alias *{alias.anchor} refers to a node that contains it "
                              "(a recursive alias)", alias)
        self._aliases += 1
        if self._aliases > MAX_ALIASES:
            return self._stop(f"more than {MAX_ALIASES} YAML alias expansions in one document",
                              self._expanding[0] if self._expanding else alias)
        if len(self._expanding) >= MAX_ALIAS_DEPTH:
            return self._stop(f"YAML aliases nested more than {MAX_ALIAS_DEPTH} deep", self._expanding[0])
        self._expanding.append(alias)
        try:
            return self.walk(alias.target, path)
        finally:
            self._expanding.pop()

    def _stop(self, message: str, node: yaml.Node) -> None:
        """Refuse the document: one error, and no further expansion."""
        self.diagnostics.append(errors.Diagnostic(message, _mark(self.file, node)))
        self.stopped = True


def parse_text(text: str, file: str) -> tuple[list[Document], list[errors.Diagnostic]]:
    """Parse one file's text into documents (empty documents are skipped)."""
    documents: list[Document] = []
    diagnostics: list[errors.Diagnostic] = []
    loader = _Loader(text)
    index = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            walker = _Walker(file, loader)
            data = walker.walk(node, ())
            diagnostics.extend(walker.diagnostics)
            if data is not None and not walker.stopped:
                documents.append(Document(file, index, data, walker.positions,
                                          walker.key_positions))
            index += 1
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        position = (errors.Position(file, mark.line + 1, mark.column + 1)
                    if mark is not None else errors.Position(file, 1, 1))
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            problem = f"{exc.problem} ({exc.context})"
        diagnostics.append(errors.Diagnostic(f"invalid YAML: {problem}", position))
    except yaml.YAMLError as exc:  # reader errors: bad encoding, control chars
        diagnostics.append(errors.Diagnostic(
            f"invalid YAML: {exc}".splitlines()[0], errors.Position(file, 1, 1)))
    finally:
        loader.dispose()
    return documents, diagnostics


def manifest_files(directory: pathlib.Path) -> list[pathlib.Path]:
    """Every YAML file under ``directory``, sorted, skipping hidden folders."""
    found = []
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.is_file() and path.suffix in (".yaml", ".yml"):
            found.append(path)
    return found


@dataclasses.dataclass(frozen=True, slots=True)
class Source:
    directory: pathlib.Path
    documents: tuple[Document, ...]
    content_hash: str  # sha256 over every file's relative path and bytes


def load_directory(directory: pathlib.Path | str) -> tuple[Source, list[errors.Diagnostic]]:
    directory = pathlib.Path(directory)
    if not directory.exists():
        raise errors.ConfigError(f"{directory}: no such directory")
    if directory.is_file():
        raise errors.ConfigError(f"{directory}: expected a directory of manifests")
    documents: list[Document] = []
    diagnostics: list[errors.Diagnostic] = []
    digest = hashlib.sha256()
    for path in manifest_files(directory):
        raw = path.read_bytes()
        shown = str(path)
        digest.update(str(path.relative_to(directory)).encode() + b"\0")
        digest.update(hashlib.sha256(raw).digest())
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            diagnostics.append(errors.Diagnostic(
                f"not UTF-8 text (byte {exc.start})", errors.Position(shown, 1, 1)))
            continue
        docs, problems = parse_text(text, shown)
        documents.extend(docs)
        diagnostics.extend(problems)
    if not documents and not diagnostics:
        found = "no *.yaml or *.yml manifests found" if not manifest_files(directory) else \
            "the *.yaml / *.yml files hold no YAML documents"
        diagnostics.append(errors.Diagnostic(f"{directory}: {found}"))
    return Source(directory, tuple(documents), digest.hexdigest()), diagnostics
