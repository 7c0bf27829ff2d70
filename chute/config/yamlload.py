"""YAML to plain Python data, remembering where every value came from.

The YAML is composed (PyYAML, libyaml when available) into a node tree and
converted by hand, so that every mapping key and value gets a :class:`Mark`
(line, column, and the raw scalar text). Schemas use the marks to point errors
at ``file:line:column`` and to accept loosely typed scalars such as an env
value ``1`` by reading back exactly what the user wrote.

Semantics follow go-yaml v2 as used by Blubber and PipelineLib: YAML 1.1
scalars (``on``/``yes`` are booleans), the last duplicate key wins, merge keys
(``<<``) are honoured. Aliases are followed with a budget so that a "billion
laughs" document is an error rather than a hang.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import yaml

from .errors import EXIT_READ, ConfigError, Problem, format_path

try:  # libyaml is several times faster; fall back to pure Python if missing.
    _BaseLoader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on the PyYAML build
    _BaseLoader = yaml.SafeLoader

# YAML 1.1 tag of a plain scalar by its text (it depends on nothing else: the safe
# loader has no path resolvers). Memoised because the composer asks for every
# scalar and the answer costs a few regex matches; bounded, short values only.
_plain_tags: dict[str, str] = {}


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.ScalarNode and implicit[0]:
            tag = _plain_tags.get(value)
            if tag is None:
                tag = super().resolve(kind, value, implicit)
                if len(value) <= 64 and len(_plain_tags) < 4096:
                    _plain_tags[value] = tag
            return tag
        return super().resolve(kind, value, implicit)

    # Path resolvers are never registered, so these (called for every node) have nothing to do.
    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        pass

    def ascend_resolver(self) -> None:
        pass

_MAX_NODES = 200_000  # values produced, counting alias expansions
_MAX_DEPTH = 200

Path = tuple[str | int, ...]


class Mark(NamedTuple):
    """Where a value sits in the source; ``raw`` is the scalar text as written."""

    line: int  # 1-based
    column: int  # 1-based
    raw: str | None = None  # plain (unquoted) scalar text, None otherwise
    tag: str = ""  # resolved YAML tag suffix: str, int, float, bool, null, map, seq, ...
    key_line: int | None = None  # for mapping values: where the key is
    key_column: int | None = None


class Document:
    """Loaded data plus the marks of every value, keyed by field path."""

    __slots__ = ("data", "marks", "source")

    def __init__(self, data: Any, source: str, marks: dict[Path, Mark]) -> None:
        self.data = data
        self.source = source
        self.marks = marks

    def mark(self, path: Sequence[str | int]) -> Mark | None:
        """The mark of ``path``, or of its nearest ancestor that has one."""
        p = tuple(path)
        while True:
            m = self.marks.get(p)
            if m is not None or not p:
                return m
            p = p[:-1]

    def problem(
        self,
        path: Sequence[str | int],
        message: str,
        hint: str | None = None,
        *,
        at_key: bool = False,
        severity: str = "error",
        display_path: str | None = None,
    ) -> Problem:
        """Build a :class:`Problem` located at ``path`` (the key itself when ``at_key``)."""
        m = self.mark(path)
        line = col = None
        if m is not None:
            line, col = m.line, m.column
            if at_key and m.key_line is not None and tuple(path) in self.marks:
                line, col = m.key_line, m.key_column
        return Problem(
            message=message,
            path=display_path if display_path is not None else format_path(path),
            source=self.source,
            line=line,
            column=col,
            hint=hint,
            severity=severity,
        )


_TAG_PREFIX = "tag:yaml.org,2002:"
_STR_TAG = _TAG_PREFIX + "str"
_FLATTEN_KEY_TAGS = frozenset({_TAG_PREFIX + "merge", _TAG_PREFIX + "value"})  # what flatten_mapping acts on
_TOO_MANY = ("the document expands to too many values (aliases nested too deeply?)",
             "expand YAML aliases by hand or simplify the document")
_TOO_DEEP = ("the document is nested too deeply", "flatten the structure")
_short_tags: dict[str, str] = {}  # full tag -> Mark.tag, memoised (bounded: tags can be anything)
# Mark is a NamedTuple; tuple.__new__ builds one without its Python-level __new__ (a few % of a load).
_new_mark = tuple.__new__


def _short_tag(tag: str) -> str:
    short = _short_tags.get(tag)
    if short is None:
        short = tag[len(_TAG_PREFIX) :] if tag.startswith(_TAG_PREFIX) else tag
        if len(_short_tags) < 256:
            _short_tags[tag] = short
    return short


class _Converter:
    """Node tree -> plain data plus marks.

    Written for speed (the Blubberoid service loads a config per request): scalar
    children are converted inline rather than through :meth:`convert`, and string
    keys are taken as they are, with the same budget and depth accounting as any
    other value.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.marks: dict[Path, Mark] = {}
        self.budget = _MAX_NODES
        self.constructor = yaml.constructor.SafeConstructor()

    def fail(self, node: yaml.Node, message: str, hint: str) -> ConfigError:
        return ConfigError(
            [
                Problem(
                    message,
                    source=self.source,
                    line=node.start_mark.line + 1,
                    column=node.start_mark.column + 1,
                    hint=hint,
                )
            ],
            EXIT_READ,
        )

    def convert(self, node: yaml.Node, path: Path, key_mark: yaml.Mark | None, depth: int) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise self.fail(node, *_TOO_MANY)
        if depth > _MAX_DEPTH:
            raise self.fail(node, *_TOO_DEEP)
        sm = node.start_mark
        kl = key_mark.line + 1 if key_mark is not None else None
        kc = key_mark.column + 1 if key_mark is not None else None
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path, kl, kc)
        if isinstance(node, yaml.SequenceNode):
            self.marks[path] = _new_mark(Mark, (sm.line + 1, sm.column + 1, None, "seq", kl, kc))
            items: list[Any] = []
            inner = depth + 1
            for i, item in enumerate(node.value):
                if type(item) is yaml.ScalarNode and self.budget > 0 and inner <= _MAX_DEPTH:
                    self.budget -= 1
                    items.append(self.scalar(item, (*path, i), None, None))
                else:
                    items.append(self.convert(item, (*path, i), None, inner))
            return items
        if isinstance(node, yaml.MappingNode):
            self.marks[path] = _new_mark(Mark, (sm.line + 1, sm.column + 1, None, "map", kl, kc))
            for knode, _ in node.value:
                if knode.tag in _FLATTEN_KEY_TAGS:
                    try:
                        self.constructor.flatten_mapping(node)  # resolves "<<" merge keys in place
                    except yaml.YAMLError as exc:
                        raise self.fail(node, f"bad merge key: {exc}", "merge only mappings with <<") from None
                    break
            out: dict[Any, Any] = {}
            inner = depth + 1
            for knode, vnode in node.value:
                if not isinstance(knode, yaml.ScalarNode):
                    raise self.fail(knode, "a mapping key must be a plain value", "use a string key")
                if knode.tag == _STR_TAG and self.budget > 0 and inner <= _MAX_DEPTH:
                    self.budget -= 1  # a key counts as a value
                    key = knode.value
                else:
                    key = self.convert(knode, ("\0key",), None, inner)
                    if not isinstance(key, str):
                        # go-yaml -> JSON turns keys into strings; so do we (e.g. "1: x").
                        key = knode.value
                if type(vnode) is yaml.ScalarNode and self.budget > 0 and inner <= _MAX_DEPTH:
                    self.budget -= 1
                    km = knode.start_mark
                    out[key] = self.scalar(vnode, (*path, key), km.line + 1, km.column + 1)
                else:
                    out[key] = self.convert(vnode, (*path, key), knode.start_mark, inner)
            self.marks.pop(("\0key",), None)
            return out
        raise self.fail(node, "unsupported YAML node", "use plain mappings, lists and scalars")

    def scalar(self, node: yaml.ScalarNode, path: Path, kl: int | None, kc: int | None) -> Any:
        """One scalar's value and mark (the budget and depth are the caller's)."""
        sm = node.start_mark
        full_tag = node.tag
        tag = _short_tag(full_tag)
        raw = node.value if not node.style else None  # libyaml says "", PyYAML None
        self.marks[path] = _new_mark(Mark, (sm.line + 1, sm.column + 1, raw, tag, kl, kc))
        if tag == "str" or tag == "timestamp" or tag == "binary":
            return node.value  # timestamps and binary keep their text; schemas parse dates themselves
        ctor = self.constructor.yaml_constructors.get(full_tag)
        if ctor is None:
            # An application tag such as !Ref: keep the text, it is a string to us.
            return node.value
        try:
            return ctor(self.constructor, node)
        except (ValueError, yaml.YAMLError) as exc:  # e.g. an int that does not parse
            raise self.fail(node, f"cannot read the value {node.value!r}: {exc}", "quote it") from None


def _yaml_problem(exc: yaml.YAMLError, source: str, text: str) -> Problem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    message = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
    line = col = None
    if mark is not None:
        line, col = mark.line + 1, mark.column + 1
    hint = "check the indentation and quoting around this position"
    if mark is not None and _char_at(text, mark.line, mark.column) == "\t":
        hint = "YAML does not allow tabs for indentation; use spaces"
    elif "mapping values are not allowed" in str(problem):
        hint = "a ':' inside a value needs quotes, or a key is indented wrongly"
    return Problem(message, source=source, line=line, column=col, hint=hint)


def _char_at(text: str, line: int, column: int) -> str:
    lines = text.split("\n")
    if 0 <= line < len(lines) and 0 <= column < len(lines[line]):
        return lines[line][column]
    return ""


def load_yaml(text: str | bytes, source: str = "<input>") -> Document:
    """Parse one YAML (or JSON) document. Raises :class:`ConfigError` (exit 2)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(
                [Problem(f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})", source=source,
                         hint="save the file as UTF-8")],
                EXIT_READ,
            ) from None
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise ConfigError([_yaml_problem(exc, source, text)], EXIT_READ) from None
    except (ValueError, RecursionError) as exc:  # e.g. NUL bytes rejected by the reader
        raise ConfigError([Problem(f"cannot read YAML: {exc}", source=source,
                                   hint="remove control characters from the file")], EXIT_READ) from None
    if node is None:
        return Document(None, source, {})
    conv = _Converter(source)
    try:
        data = conv.convert(node, (), None, 0)
    except RecursionError:
        raise ConfigError([Problem("the document is nested too deeply", source=source,
                                   hint="flatten the structure")], EXIT_READ) from None
    return Document(data, source, conv.marks)


def load_file(path: str, display_name: str | None = None) -> Document:
    """Read and parse a file; unreadable files are a :class:`ConfigError` (exit 2)."""
    name = display_name or path
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise ConfigError(
            [Problem(f"cannot read the file: {exc.strerror or exc}", source=name,
                     hint="check the path; it is relative to the current directory")],
            EXIT_READ,
        ) from None
    return load_yaml(raw, name)
