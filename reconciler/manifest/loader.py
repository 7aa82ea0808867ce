"""Read every ``*.yaml`` / ``*.yml`` file under a directory into documents that
remember where each node came from, so that every later error can point at
``file:line:col``.

Pure apart from reading the files handed to it: no AWS, no click.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import pathlib
import re
import stat
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

    ``positions[path]`` is where the value at ``path`` starts (line, column;
    1-based); ``key_positions[path]`` is where the mapping key naming
    ``path`` starts (used to point at unknown fields). Kept as pairs, made
    Positions when asked for: a large stack has hundreds of thousands. A
    file that parsed without a problem has its positions found only when one
    is first asked for (``_FilePositions``: most runs of a valid stack never
    point at anything).
    """

    file: str
    index: int
    data: Any
    _positions: dict[Path, tuple[int, int]] | None = dataclasses.field(default=None, compare=False, repr=False)
    _key_positions: dict[Path, tuple[int, int]] | None = dataclasses.field(default=None, compare=False,
                                                                             repr=False)
    _lazy: _FilePositions | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def positions(self) -> dict[Path, tuple[int, int]]:
        if self._positions is None:
            self._fill()
        assert self._positions is not None
        return self._positions

    @property
    def key_positions(self) -> dict[Path, tuple[int, int]]:
        if self._key_positions is None:
            self._fill()
        assert self._key_positions is not None
        return self._key_positions

    def _fill(self) -> None:
        positions, key_positions = self._lazy.of(self.index) if self._lazy is not None else ({}, {})
        object.__setattr__(self, "_positions", positions)
        object.__setattr__(self, "_key_positions", key_positions)

    def position(self, path: Path, *, key: bool = False) -> errors.Position:
        """The position of ``path`` or of its nearest ancestor that has one."""
        positions = self.positions
        table = self.key_positions if key else positions
        probe = tuple(path)
        while probe:
            if probe in table:
                return errors.Position(self.file, *table[probe])
            if key and probe in positions:
                return errors.Position(self.file, *positions[probe])
            probe = probe[:-1]
        return errors.Position(self.file, *positions.get((), (1, 1)))

    @property
    def kind(self) -> str | None:
        kind = self.data.get("kind") if isinstance(self.data, dict) else None
        return kind if isinstance(kind, str) and len(kind) <= MAX_QUOTED else None

    @property
    def name(self) -> str | None:
        """metadata.name, when it is a string short enough to name the document
        in messages (a longer one is refused by the schema all the same)."""
        if isinstance(self.data, dict) and isinstance(self.data.get("metadata"), dict):
            name = self.data["metadata"].get("name")
            return name if isinstance(name, str) and len(name) <= MAX_QUOTED else None
        return None

    @property
    def address(self) -> str | None:
        if self.kind and self.name:
            return f"{self.kind}/{self.name}"
        return None


def _mark(file: str, node: yaml.Node) -> errors.Position:
    return errors.Position(file, node.start_mark.line + 1, node.start_mark.column + 1)


def _spot(node: Any) -> tuple[int, int]:
    """Where a node or an event starts: (line, column), 1-based."""
    mark = node.start_mark
    return mark.line + 1, mark.column + 1


# Limits that keep a hostile or broken file cheap to refuse (YAML alias bombs,
# recursive aliases, absurd nesting, huge files, mappings or document streams),
# far above anything a manifest needs. Each is one positioned error, found
# before the work it would cost (bench/hostile_input.py has the figures).
MAX_DEPTH = 64  # nested mappings and lists, aliases expanded
MAX_ALIASES = 100  # alias uses per document, those inside expanded aliases included
MAX_ALIAS_DEPTH = 8  # aliases within what an alias expands to
MAX_EXPANDED_NODES = 10_000  # nodes copied by expanding aliases, per document
MAX_FILE_BYTES = 5 * 1024 * 1024  # one manifest file: 5 MB
MAX_DOCUMENTS = 1_000  # YAML documents in one file
MAX_NODES = 25_000  # YAML nodes (scalars, mappings, lists) in one file, as written (~1,000 documents)
MAX_ENTRIES = 5_000  # keys of one mapping, items of one list
MAX_WALK = 20_000  # files and directories looked at under the stack directory
MAX_QUOTED = 200  # characters of a value quoted in a message

# What YAML lets a file hold (YAML 1.1, 5.1: printable characters; libyaml's
# reader): anything else is refused up front, with its own position.
_UNPRINTABLE = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# Control characters a value may not hold even when written as an escape
# ("\e", "\x07"): no manifest field needs one, and none must reach a terminal.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_NON_PRINTING = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def character(char: str) -> str:
    """A character as a message shows it: escaped, never raw (U+001B '\\x1b')."""
    return f"U+{ord(char):04X} ({ascii(char)})"


def clip(text: str, limit: int = MAX_QUOTED) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[:limit] + "…"


def quote(value: Any, limit: int = MAX_QUOTED) -> str:
    """A value for a message: JSON-quoted, control characters escaped, at most
    ``limit`` characters (and an ellipsis). Long strings are cut before they
    are encoded, so quoting a 5 MB value costs no more than a short one."""
    if isinstance(value, str) and len(value) > limit:
        return clip(quote(value[:limit + 1], limit + 2), limit)
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        text = repr(type(value))
    text = _NON_PRINTING.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return clip(text, limit)


def _line_column(text: str, offset: int) -> tuple[int, int]:
    line_start = text.rfind("\n", 0, offset) + 1
    return text.count("\n", 0, offset) + 1, offset - line_start + 1


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
    """PyYAML's composer, keeping aliases as ``_Alias`` and refusing, while
    composing, nesting deeper than MAX_DEPTH (it recurses once per level), a
    mapping or list of more than MAX_ENTRIES and more than MAX_NODES nodes in
    one file: the refusal comes before the nodes are built, not after."""

    _depth = 0
    _nodes = 0

    def _refuse(self, problem: str) -> None:
        raise yaml.composer.ComposerError(None, None, problem, self.peek_event().start_mark)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        self._nodes += 1
        if self._nodes > MAX_NODES:
            self._refuse(f"more than {MAX_NODES:,} YAML nodes in one file; split it into several files")
        if isinstance(parent, yaml.SequenceNode) and isinstance(index, int) and index >= MAX_ENTRIES:
            self._refuse(f"a list of more than {MAX_ENTRIES:,} items")
        if isinstance(parent, yaml.MappingNode) and index is None and len(parent.value) >= MAX_ENTRIES:
            self._refuse(f"a mapping of more than {MAX_ENTRIES:,} keys")
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = super().compose_node(parent, index)
            return _Alias(target, event.anchor, event.start_mark, event.end_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                self._refuse(f"nested more than {MAX_DEPTH} levels deep")
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

    def __init__(self, file: str, loader: yaml.constructor.SafeConstructor) -> None:
        self.file = file
        self.loader = loader
        self.positions: dict[Path, tuple[int, int]] = {}
        self.key_positions: dict[Path, tuple[int, int]] = {}
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
            self.positions[path] = _spot(node)
            return value
        self.positions[path] = _spot(node)
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
        return self._scalar(node)

    def _scalar(self, node: yaml.Node) -> Any:
        """A scalar's value (``_construct_scalar``), or a stop."""
        value = _construct_scalar(self.loader, node)
        if isinstance(value, _Problem):
            return self._stop(value.message, node)
        return value

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if self.stopped:  # a value refused the document: nothing after it is looked at
                return result
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
            constructed = self._scalar(key_node)
            if self.stopped:
                return result
            key = str(constructed)
            if key in result:
                self.diagnostics.append(errors.Diagnostic(
                    f"duplicate key {clip(key)!r} (first at line "
                    f"{self.key_positions[path + (key,)][0]})",
                    _mark(self.file, key_node)))
                continue
            self.key_positions[path + (key,)] = _spot(key_node)
            result[key] = self.walk(value_node, path + (key,))
        return result

    def _expand(self, alias: _Alias, path: Path) -> Any:
        """The value an alias stands for, within the limits."""
        if id(alias.target) in self._open:
            return self._stop(f"YAML alias *{clip(alias.anchor)} refers to a node that contains it "
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


def _unprintable(text: str, file: str) -> errors.Diagnostic | None:
    """The first character YAML does not allow in a file, with its position."""
    found = _UNPRINTABLE.search(text)
    if found is None:
        return None
    char = found.group()
    kind = "control character" if ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F else "character"
    return errors.Diagnostic(f"invalid YAML: {kind} {character(char)} is not allowed in YAML",
                             errors.Position(file, *_line_column(text, found.start())))


_STR = "tag:yaml.org,2002:str"
_RESOLVER = yaml.resolver.Resolver()
_MERGE = "tag:yaml.org,2002:merge"


# The first characters of a plain scalar an implicit resolver may claim (a
# number, a bool, null, a timestamp, a merge key, ``=``); any other is a string.
_IMPLICIT_FIRST = frozenset(k for k in yaml.resolver.Resolver.yaml_implicit_resolvers if k)
assert None not in yaml.resolver.Resolver.yaml_implicit_resolvers  # no resolver for every first character


def _tag(event: Any) -> str:
    """A scalar event's tag, as the composer resolves it."""
    tag = event.tag
    if tag is None or tag == "!":
        value = event.value
        if not event.implicit[0] or (value and value[0] not in _IMPLICIT_FIRST):
            return _STR  # quoted or block, or plain and no resolver's: what Resolver.resolve says, faster
        tag = _RESOLVER.resolve(yaml.ScalarNode, value, event.implicit)
    return str(tag)


class _Fallback(Exception):
    """The file holds an anchor or an alias: compose it the careful way."""


class _Builder:
    """One document straight from libyaml's events to plain data and
    positions, in one pass: what ``_Composer`` and ``_Walker`` do together
    (the same limits, diagnostics and positions), without building a node
    tree first, about 3x faster on a large stack. Anchors and aliases are
    rare in manifests and need the tree (expansion limits, recursion, where
    each alias was written), so a file holding one is handed back
    (``_Fallback``) and parsed again by ``parse_composed``.

    As with the composer, a limit (nodes, entries, depth) refuses the whole
    file at the event past it, and a document's own diagnostics count only
    once all of it is read: the composer reads a document whole before the
    walker looks at any value."""

    def __init__(self, file: str, parser: Any, constructor: yaml.constructor.SafeConstructor,
                 keep_positions: bool = True) -> None:
        self.file = file
        self.parser = parser
        self.constructor = constructor
        self.keep = keep_positions  # else only the data: a problem found makes the caller parse again with them
        self.nodes = 0  # nodes in the file so far (MAX_NODES is per file)
        self._event = parser.get_event

    def _refuse(self, problem: str, event: Any) -> None:
        raise yaml.composer.ComposerError(None, None, problem, event.start_mark)

    def document(self) -> tuple[Any, dict[Path, tuple[int, int]], dict[Path, tuple[int, int]],
                                list[errors.Diagnostic], bool]:
        """(data, positions, key positions, diagnostics, stopped) of the next document."""
        self.positions: dict[Path, tuple[int, int]] = {}
        self.key_positions: dict[Path, tuple[int, int]] = {}
        self.diagnostics: list[errors.Diagnostic] = []
        self.stopped = False
        self.fatal: yaml.constructor.ConstructorError | None = None
        self._event()  # DocumentStartEvent
        data = self._node(self._event(), (), 1, True)
        self._event()  # DocumentEndEvent
        if self.fatal is not None:  # raised once the document is read, as the walker would
            raise self.fatal
        return data, self.positions, self.key_positions, self.diagnostics, self.stopped

    def _count(self, event: Any, depth: int, crowded: str | None) -> None:
        """Count a node, with the composer's checks (``_check``) when one may apply."""
        self.nodes += 1
        if self.nodes > MAX_NODES or crowded is not None or depth > MAX_DEPTH or event.anchor is not None:
            self._check(event, depth, crowded)

    def _check(self, event: Any, depth: int, crowded: str | None) -> None:
        """The composer's checks of a node, in its order: the file's nodes,
        the entries of the list or mapping it is in (``crowded``), then, as a
        node with an anchor or an alias needs the composer, its depth."""
        if self.nodes > MAX_NODES:
            self._refuse(f"more than {MAX_NODES:,} YAML nodes in one file; split it into several files", event)
        if crowded is not None:
            self._refuse(crowded, event)
        if event.anchor is not None:  # an alias (*name) or an anchored node (&name)
            raise _Fallback()
        if depth > MAX_DEPTH:
            self._refuse(f"nested more than {MAX_DEPTH} levels deep", event)

    def _mark(self, event: Any) -> errors.Position:
        mark = event.start_mark
        return errors.Position(self.file, mark.line + 1, mark.column + 1)

    def _node(self, event: Any, path: Path, depth: int, record: bool, crowded: str | None = None) -> Any:
        """The value starting at ``event``; with ``record`` false (a value the
        walker would not look at: under a duplicate or invalid key, or after
        the document was stopped) only read, counted and limited."""
        self._count(event, depth, crowded)
        record = record and not self.stopped
        if record and self.keep:
            mark = event.start_mark
            self.positions[path] = (mark.line + 1, mark.column + 1)
        kind = type(event)
        if kind is yaml.ScalarEvent:
            return self._scalar(event) if record else None
        if kind is yaml.SequenceStartEvent:
            items: list[Any] = []
            index = 0
            next_event = self._event
            while True:
                item = next_event()
                if type(item) is yaml.SequenceEndEvent:
                    return items if record else None
                crowded = f"a list of more than {MAX_ENTRIES:,} items" if index >= MAX_ENTRIES else None
                value = self._node(item, path + (index,), depth + 1, record, crowded)
                if record:
                    items.append(value)
                index += 1
        return self._mapping(event, path, depth, record)

    def _mapping(self, start: Any, path: Path, depth: int, record: bool) -> Any:
        result: dict[str, Any] = {}
        pairs = 0
        inner = depth + 1
        next_event = self._event
        key_positions = self.key_positions
        while True:
            event = next_event()
            kind = type(event)
            if kind is yaml.MappingEndEvent:
                return result if record else None
            crowded = f"a mapping of more than {MAX_ENTRIES:,} keys" if pairs >= MAX_ENTRIES else None
            pairs += 1
            record = record and not self.stopped
            if kind is not yaml.ScalarEvent:  # a mapping or a list as a key
                if record:
                    self.diagnostics.append(errors.Diagnostic("mapping keys must be plain strings",
                                                              self._mark(event)))
                self._node(event, path, inner, False, crowded)
                self._node(next_event(), path, inner, False)
                continue
            self._count(event, inner, crowded)
            key: str | None = None
            if record:
                tag = _tag(event)
                if tag == _MERGE or event.value == "<<":
                    self.diagnostics.append(errors.Diagnostic(
                        "YAML merge keys (<<) are not supported; write the fields out", self._mark(event)))
                else:
                    constructed = self._scalar(event, tag)
                    if not self.stopped:
                        key = str(constructed)
                        at = path + (key,)
                        if key in result:
                            first = key_positions.get(at, (0, 0))[0]
                            self.diagnostics.append(errors.Diagnostic(
                                f"duplicate key {clip(key)!r} (first at line {first})", self._mark(event)))
                            key = None
                        elif self.keep:
                            mark = event.start_mark
                            key_positions[at] = (mark.line + 1, mark.column + 1)
            if key is None:
                self._node(next_event(), path, inner, False)
            else:
                result[key] = self._node(next_event(), at, inner, True)

    def _scalar(self, event: Any, tag: str | None = None) -> Any:
        """As ``_Walker._scalar``: a string needs no constructor."""
        tag = tag or _tag(event)
        if tag == _STR:
            value: Any = event.value
            control = _CONTROL.search(value)
            if control:
                return self._stop(f"control character {character(control.group())} in a value; "
                                  "manifests hold no control characters", event)
            return value
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
        try:
            value = _construct_scalar(self.constructor, node)
        except yaml.constructor.ConstructorError as exc:  # a tag no constructor knows: the file's error
            self.fatal = exc
            self.stopped = True
            return None
        if isinstance(value, _Problem):
            return self._stop(value.message, event)
        return value

    def _stop(self, message: str, event: Any) -> None:
        self.diagnostics.append(errors.Diagnostic(message, self._mark(event)))
        self.stopped = True


@dataclasses.dataclass(frozen=True, slots=True)
class _Problem:
    message: str


_DIGITS = re.compile(r"^[-+]?[0-9_]+$")


def _construct_scalar(constructor: yaml.constructor.SafeConstructor, node: yaml.ScalarNode) -> Any:
    """A scalar's value: str, int, float, bool or None, or the problem that
    stops its document. Dates and timestamps stay strings (manifests are
    JSON-shaped), and so does a plain scalar that only looks like one
    (``2024-13-45``). A tag no constructor knows raises ConstructorError."""
    try:
        value = constructor.construct_object(node)
    except yaml.constructor.ConstructorError:
        raise
    except (KeyError, AttributeError, ValueError, OverflowError, TypeError) as exc:
        # KeyError, AttributeError: an explicit tag on text it cannot read (`!!bool maybe`, `!!timestamp x`)
        if node.tag == "tag:yaml.org,2002:int" and _DIGITS.match(node.value):  # past Python's int-from-text limit
            return _Problem(f"integer {quote(node.value, 40)} is too large")
        if node.tag == "tag:yaml.org,2002:int":
            return _Problem(f"invalid int value {quote(node.value, 40)}")
        if node.tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:float"):
            detail = f": {clip(str(exc))}" if isinstance(exc, (ValueError, OverflowError, TypeError)) else ""
            return _Problem(f"invalid {node.tag.rsplit(':', 1)[-1]} value {quote(node.value, 40)}{detail}")
        value = node.value
    if not isinstance(value, (str, int, float, bool, type(None))):
        value = node.value
    if isinstance(value, str):
        control = _CONTROL.search(value)
        if control:
            return _Problem(f"control character {character(control.group())} in a value; "
                            "manifests hold no control characters")
    return value


class _FilePositions:
    """The positions of a file's documents, found when one is first asked for
    (by parsing the file again, with them)."""

    def __init__(self, text: str, file: str) -> None:
        self.text, self.file = text, file
        self._found: dict[int, tuple[dict[Path, tuple[int, int]], dict[Path, tuple[int, int]]]] | None = None

    def of(self, index: int) -> tuple[dict[Path, tuple[int, int]], dict[Path, tuple[int, int]]]:
        if self._found is None:
            documents, _ = _parse_events(self.text, self.file, keep_positions=True)
            self._found = {d.index: (d.positions, d.key_positions) for d in documents}
        return self._found.get(index, ({}, {}))


def parse_text(text: str, file: str) -> tuple[list[Document], list[errors.Diagnostic]]:
    """Parse one file's text into documents (empty documents are skipped).
    First without positions; a file with a problem (whose diagnostics need
    them) is parsed again with them, and a clean one finds them when asked."""
    if not yaml.__with_libyaml__:  # pragma: no cover - PyYAML built without libyaml
        return parse_composed(text, file)
    documents, diagnostics = _parse_events(text, file, keep_positions=False)
    if diagnostics:
        return _parse_events(text, file, keep_positions=True)
    return documents, diagnostics


def _parse_events(text: str, file: str, *, keep_positions: bool) -> tuple[list[Document], list[errors.Diagnostic]]:
    """``parse_text`` by ``_Builder``, with or without positions (then each
    document finds them when first asked, by ``_FilePositions``)."""
    lazy = None if keep_positions else _FilePositions(text, file)
    unprintable = _unprintable(text, file)
    if unprintable is not None:
        return [], [unprintable]
    documents: list[Document] = []
    diagnostics: list[errors.Diagnostic] = []
    parser = yaml.cyaml.CParser(text)
    builder = _Builder(file, parser, yaml.constructor.SafeConstructor(), keep_positions)
    index = 0
    try:
        parser.get_event()  # StreamStartEvent
        while not parser.check_event(yaml.StreamEndEvent):
            if index >= MAX_DOCUMENTS:
                diagnostics.append(_too_many_documents(parser.peek_event(), file))
                break
            index += 1
            data, positions, key_positions, problems, stopped = builder.document()
            builder.constructor.constructed_objects.clear()
            diagnostics.extend(problems)
            if data is not None and not stopped:
                documents.append(Document(file, index - 1, data, positions if keep_positions else None,
                                          key_positions if keep_positions else None, lazy))
    except _Fallback:
        return parse_composed(text, file)  # (the parser is disposed of below)
    except yaml.YAMLError as exc:
        diagnostics.append(_invalid(exc, text, file))
    finally:
        parser.dispose()
    return documents, diagnostics


def _too_many_documents(event: Any, file: str) -> errors.Diagnostic:
    mark = event.start_mark
    return errors.Diagnostic(f"more than {MAX_DOCUMENTS:,} YAML documents in one file; split it into several files",
                             errors.Position(file, mark.line + 1, mark.column + 1))


def _invalid(exc: yaml.YAMLError, text: str, file: str) -> errors.Diagnostic:
    """A parser's or composer's failure as one positioned diagnostic."""
    if isinstance(exc, yaml.MarkedYAMLError):
        return _marked(exc, file)
    if isinstance(exc, yaml.reader.ReaderError):  # found by _unprintable first; kept for safety
        position = errors.Position(file, *_line_column(text, min(exc.position, len(text))))
        return errors.Diagnostic(f"invalid YAML: {one_line(exc.reason)}", position)
    return errors.Diagnostic(f"invalid YAML: {one_line(str(exc))}", errors.Position(file, 1, 1))


def _marked(exc: yaml.MarkedYAMLError, file: str) -> errors.Diagnostic:
    mark = exc.problem_mark or exc.context_mark
    position = (errors.Position(file, mark.line + 1, mark.column + 1)
                if mark is not None else errors.Position(file, 1, 1))
    problem = exc.problem or exc.context or "invalid YAML"
    if exc.context and exc.problem:
        problem = f"{exc.problem} ({exc.context})"
    return errors.Diagnostic(f"invalid YAML: {one_line(problem)}", position)


def parse_composed(text: str, file: str) -> tuple[list[Document], list[errors.Diagnostic]]:
    """``parse_text`` the careful way: every document composed into a node
    tree by ``_Loader``, then walked (what ``parse_text`` does for a document
    with anchors or aliases; the tests compare the two on generated input)."""
    unprintable = _unprintable(text, file)
    if unprintable is not None:
        return [], [unprintable]
    documents: list[Document] = []
    diagnostics: list[errors.Diagnostic] = []
    loader = _Loader(text)
    index = 0
    try:
        while loader.check_node():
            if index >= MAX_DOCUMENTS:
                diagnostics.append(_too_many_documents(loader.peek_event(), file))
                break
            node = loader.get_node()
            index += 1
            if node is None:
                continue
            walker = _Walker(file, loader)
            data = walker.walk(node, ())
            diagnostics.extend(walker.diagnostics)
            if data is not None and not walker.stopped:
                documents.append(Document(file, index - 1, data, walker.positions,
                                          walker.key_positions))
            loader.constructed_objects.clear()
    except yaml.YAMLError as exc:
        diagnostics.append(_invalid(exc, text, file))
    finally:
        loader.dispose()
    return documents, diagnostics


def one_line(text: str) -> str:
    """A parser's message as one short line, with nothing unprintable in it."""
    first = " ".join(str(text).split())
    return clip(_NON_PRINTING.sub(lambda m: ascii(m.group())[1:-1], first))


def _is_manifest(name: str) -> bool:
    return name.endswith((".yaml", ".yml"))


_FILE_TYPES = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISSOCK, "a socket"))


def _file_type(mode: int) -> str:
    return next((name for test, name in _FILE_TYPES if test(mode)), "not a regular file")


def _at(path: pathlib.Path) -> errors.Position:
    return errors.Position(str(path), 1, 1)


class _Walk:
    """Every manifest file under a directory, sorted (depth first, names in
    order: the order of ``sorted(rglob)``), skipping hidden entries.

    Nothing is skipped silently: a ``*.yaml`` / ``*.yml`` entry that is not a
    regular file (a dangling or looping symlink, a device, a FIFO, a
    directory) is reported; a symlinked directory is followed, and reported
    when it loops back to a directory above it or is a second way to one
    already loaded. A tree larger than MAX_WALK entries is refused (a
    symlink to ``/``, say) instead of read to the end."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.files: list[pathlib.Path] = []
        self.diagnostics: list[errors.Diagnostic] = []
        self.seen = 0
        self.loaded: dict[tuple[int, int], pathlib.Path] = {}  # (device, inode) -> path it was loaded at

    def run(self) -> None:
        try:
            info = self.root.stat()
        except OSError as exc:
            raise errors.ConfigError(f"{self.root}: cannot read: {exc.strerror or exc}") from None
        self.loaded[(info.st_dev, info.st_ino)] = self.root
        self._directory(self.root, [(info.st_dev, info.st_ino)])

    def _report(self, path: pathlib.Path, message: str) -> None:
        self.diagnostics.append(errors.Diagnostic(message, _at(path)))

    def _directory(self, directory: pathlib.Path, above: list[tuple[int, int]]) -> None:
        try:
            with os.scandir(directory) as scan:
                entries = sorted((entry for entry in scan if not entry.name.startswith(".")),
                                 key=lambda entry: entry.name)
        except OSError as exc:
            self._report(directory, f"cannot list this directory: {exc.strerror or exc}")
            return
        for entry in entries:
            self.seen += 1
            if self.seen > MAX_WALK:
                if self.seen == MAX_WALK + 1:
                    self.diagnostics.append(errors.Diagnostic(
                        f"{self.root}: more than {MAX_WALK:,} files and directories under the stack "
                        "directory (does a symlink point at a large tree?); not read further"))
                return
            try:
                link = entry.is_symlink()
                if not link and not _is_manifest(entry.name) and not entry.is_dir(follow_symlinks=False):
                    continue  # an ordinary file that is no manifest: not even a stat
            except OSError:
                link = False
            self._entry(directory / entry.name, above, link)

    def _entry(self, path: pathlib.Path, above: list[tuple[int, int]], link: bool) -> None:
        target = ""
        try:
            if link:
                target = clip(os.readlink(path))
                info = path.stat()
            else:
                info = path.lstat()
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self._report(path, f"symlink loop ({path.name} -> {target} leads back to itself)")
            elif link and exc.errno in (errno.ENOENT, errno.ENOTDIR):
                if _is_manifest(path.name):
                    self._report(path, f"dangling symlink: {target} does not exist")
                else:
                    self._report(path, f"dangling symlink to {target}: it does not exist "
                                 "(a manifest directory, or nothing?); remove it or fix it")
            elif link and target:
                self._report(path, f"cannot follow symlink to {target}: {exc.strerror or exc}")
            else:
                self._report(path, f"cannot read: {exc.strerror or exc}")
            return
        if stat.S_ISDIR(info.st_mode):
            if _is_manifest(path.name):
                what = "a symlink to a directory" if link else "a directory"
                self._report(path, f"{what} named like a manifest file; rename it, or remove it")
                return
            identity = (info.st_dev, info.st_ino)
            if identity in above or (link and self._contains_root(path)):
                self._report(path, f"symlink loop: {path.name} -> {target} is a directory that contains it; "
                             "remove it")
                return
            if link and identity in self.loaded:
                first = self.loaded[identity]
                if first != path and self._holds_manifests(first):
                    self._report(path, f"symlink to {target}, whose manifests are already loaded as {first}; "
                                 "remove one of the two")
                return
            self.loaded.setdefault(identity, path)
            self._directory(path, above + [identity])
            return
        if not _is_manifest(path.name):
            return
        if not stat.S_ISREG(info.st_mode):
            via = f"a symlink to {target}, " if link else ""
            self._report(path, f"cannot read: {via}{_file_type(info.st_mode)}, not a regular file")
            return
        self.files.append(path)

    def _contains_root(self, path: pathlib.Path) -> bool:
        """Whether a symlinked directory is the stack directory or one above it (``/``, say)."""
        real, root = os.path.realpath(path), os.path.realpath(self.root)
        return root == real or root.startswith(real.rstrip(os.sep) + os.sep)

    @property
    def overflowed(self) -> bool:
        return self.seen > MAX_WALK

    def _holds_manifests(self, directory: pathlib.Path) -> bool:
        prefix = str(directory) + os.sep
        return any(str(f).startswith(prefix) for f in self.files)


def manifest_files(directory: pathlib.Path) -> list[pathlib.Path]:
    """Every YAML file under ``directory``, sorted, skipping hidden entries
    (problems with entries are left out here: ``load_directory`` reports them)."""
    walk = _Walk(pathlib.Path(directory))
    walk.run()
    return walk.files


def read_manifest(path: pathlib.Path) -> tuple[bytes | None, errors.Diagnostic | None]:
    """A manifest file's bytes, or why they cannot be read. Opened without
    blocking (a FIFO swapped in since the walk is refused, not waited on),
    checked to be a regular file, and never read past MAX_FILE_BYTES."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        return None, errors.Diagnostic(f"cannot read: {exc.strerror or exc}", _at(path))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None, errors.Diagnostic(f"cannot read: {_file_type(info.st_mode)}, not a regular file",
                                           _at(path))
        if info.st_size > MAX_FILE_BYTES:
            return None, _too_large(path, info.st_size)
        chunks, size = [], 0
        while size <= MAX_FILE_BYTES:
            chunk = os.read(fd, MAX_FILE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_FILE_BYTES:
            return None, _too_large(path, size)
        return b"".join(chunks), None
    except OSError as exc:
        return None, errors.Diagnostic(f"cannot read: {exc.strerror or exc}", _at(path))
    finally:
        os.close(fd)


def _too_large(path: pathlib.Path, size: int) -> errors.Diagnostic:
    return errors.Diagnostic(
        f"file is {size:,} bytes, over the limit of {MAX_FILE_BYTES:,} bytes (5 MB) for one manifest "
        "file; split it into several files", _at(path))


def decode(raw: bytes, file: str) -> tuple[str | None, errors.Diagnostic | None]:
    """UTF-8 text (a BOM allowed), or where it is not UTF-8."""
    try:
        return raw.decode("utf-8-sig" if raw.startswith(b"\xef\xbb\xbf") else "utf-8"), None
    except UnicodeDecodeError as exc:
        before = raw[:exc.start].decode("utf-8", errors="replace")
        line, column = _line_column(before, len(before))
        bad = raw[exc.start:exc.end]
        return None, errors.Diagnostic(
            f"not UTF-8 text: byte {' '.join(f'0x{b:02x}' for b in bad[:4])} ({exc.reason}); save the file "
            "as UTF-8", errors.Position(file, line, column))


@dataclasses.dataclass(frozen=True, slots=True)
class Source:
    directory: pathlib.Path
    documents: tuple[Document, ...]
    content_hash: str  # sha256 over every file's relative path and parsed documents (see documents_hash)


def documents_hash(files: list[tuple[str, list[Document]]]) -> str:
    """sha256 over each file's path (relative to the stack) and what its
    documents hold, not the bytes: comments, blank lines, key order, quoting
    and flow vs block style are no change (a saved plan stays good), any
    value, key, document or file of documents added, removed, renamed or
    changed is one."""
    digest = hashlib.sha256()
    for relative, docs in files:
        if not docs:
            continue  # a file of comments only holds nothing
        digest.update(relative.encode(errors="surrogateescape") + b"\0")
        for doc in docs:
            canonical = json.dumps(doc.data, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
            digest.update(hashlib.sha256(canonical.encode()).digest())
        digest.update(b"\0")
    return digest.hexdigest()


def load_directory(directory: pathlib.Path | str) -> tuple[Source, list[errors.Diagnostic]]:
    directory = pathlib.Path(directory)
    if not directory.exists():
        if directory.is_symlink():
            raise errors.ConfigError(f"{directory}: dangling symlink (no such directory)")
        raise errors.ConfigError(f"{directory}: no such directory")
    if not directory.is_dir():
        what = "a file" if directory.is_file() else "not a directory"
        raise errors.ConfigError(f"{directory}: expected a directory of manifests, found {what}")
    documents: list[Document] = []
    walk = _Walk(directory)
    walk.run()
    diagnostics: list[errors.Diagnostic] = list(walk.diagnostics)
    parsed: list[tuple[str, list[Document]]] = []
    for path in [] if walk.overflowed else walk.files:  # past the limit the tree is refused, not half read
        shown = str(path)
        raw, problem = read_manifest(path)
        if problem is not None or raw is None:
            diagnostics.append(problem or errors.Diagnostic("cannot read", _at(path)))
            continue
        text, problem = decode(raw, shown)
        if problem is not None or text is None:
            diagnostics.append(problem or errors.Diagnostic("not UTF-8 text", _at(path)))
            continue
        docs, problems = parse_text(text, shown)
        parsed.append((str(path.relative_to(directory)), docs))
        documents.extend(docs)
        diagnostics.extend(problems)
    if not documents and not diagnostics:
        found = "no *.yaml or *.yml manifests found" if not walk.files else \
            "the *.yaml / *.yml files hold no YAML documents"
        diagnostics.append(errors.Diagnostic(f"{directory}: {found}"))
    diagnostics.sort(key=lambda d: (d.position.file, d.position.line, d.position.column)
                     if d.position else ("", 0, 0))
    return Source(directory, tuple(documents), documents_hash(parsed)), diagnostics
