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
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on the PyYAML build
    _Loader = yaml.SafeLoader

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


class _Converter:
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
            raise self.fail(
                node,
                "the document expands to too many values (aliases nested too deeply?)",
                "expand YAML aliases by hand or simplify the document",
            )
        if depth > _MAX_DEPTH:
            raise self.fail(node, "the document is nested too deeply", "flatten the structure")
        sm = node.start_mark
        kl = key_mark.line + 1 if key_mark is not None else None
        kc = key_mark.column + 1 if key_mark is not None else None
        if isinstance(node, yaml.ScalarNode):
            tag = node.tag[len(_TAG_PREFIX) :] if node.tag.startswith(_TAG_PREFIX) else node.tag
            raw = node.value if not node.style else None  # libyaml says "", PyYAML None
            self.marks[path] = Mark(sm.line + 1, sm.column + 1, raw, tag, kl, kc)
            if tag == "str":
                return node.value
            if tag in ("timestamp", "binary"):
                return node.value  # keep the text; schemas parse dates themselves
            ctor = self.constructor.yaml_constructors.get(node.tag)
            if ctor is None:
                # An application tag such as !Ref: keep the text, it is a string to us.
                return node.value
            try:
                return ctor(self.constructor, node)
            except (ValueError, yaml.YAMLError) as exc:  # e.g. an int that does not parse
                raise self.fail(node, f"cannot read the value {node.value!r}: {exc}", "quote it") from None
        if isinstance(node, yaml.SequenceNode):
            self.marks[path] = Mark(sm.line + 1, sm.column + 1, None, "seq", kl, kc)
            return [self.convert(item, (*path, i), None, depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            self.marks[path] = Mark(sm.line + 1, sm.column + 1, None, "map", kl, kc)
            try:
                self.constructor.flatten_mapping(node)  # resolves "<<" merge keys in place
            except yaml.YAMLError as exc:
                raise self.fail(node, f"bad merge key: {exc}", "merge only mappings with <<") from None
            out: dict[Any, Any] = {}
            for knode, vnode in node.value:
                if not isinstance(knode, yaml.ScalarNode):
                    raise self.fail(knode, "a mapping key must be a plain value", "use a string key")
                key = self.convert(knode, ("\0key",), None, depth + 1)
                if not isinstance(key, str):
                    # go-yaml -> JSON turns keys into strings; so do we (e.g. "1: x").
                    key = knode.value
                out[key] = self.convert(vnode, (*path, key), knode.start_mark, depth + 1)
            self.marks.pop(("\0key",), None)
            return out
        raise self.fail(node, "unsupported YAML node", "use plain mappings, lists and scalars")


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
