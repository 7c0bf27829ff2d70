"""Decoding plain YAML data into config objects, collecting every problem.

Blubber decodes with Go's ``encoding/json`` after converting YAML to JSON:
keys match case-insensitively, unknown keys are fatal, ``null`` leaves a
field unset. chute does the same but keeps going after a problem so that a
user sees all of them at once, each at ``file:line:column`` with its full
field path.

Two kinds of error are told apart because Blubber gives them different exit
codes: *decode* errors (wrong type, unknown key: exit 2) and *validation*
errors (a value of the right type that breaks a rule: exit 4).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from chute.config import EXIT_INVALID, EXIT_READ, ConfigError, Document, Problem

Path = tuple[str | int, ...]


class Ctx:
    """The document being decoded and the problems found so far."""

    __slots__ = ("decode_failed", "doc", "problems", "warnings")

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.decode_failed = False

    def error(self, path: Path, message: str, hint: str | None = None, *,
              at_key: bool = False, decode: bool = False) -> None:
        if decode:
            self.decode_failed = True
        self.problems.append(self.doc.problem(path, message, hint, at_key=at_key))

    def warn(self, path: Path, message: str, hint: str | None = None) -> None:
        self.warnings.append(self.doc.problem(path, message, hint, severity="warning"))

    def raise_if_failed(self) -> None:
        if self.problems:
            code = EXIT_READ if self.decode_failed else EXIT_INVALID
            ordered = sorted(self.problems, key=lambda p: (p.line or 0, p.column or 0))
            raise ConfigError(ordered, code)


def kind(value: Any) -> str:
    """How a YAML value reads to a user: "a list", "a mapping", "the number 1"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


class Keys:
    """The keys a section accepts, matched the way Go's encoding/json does."""

    __slots__ = ("hints", "lower", "names", "section")

    def __init__(self, section: str, names: Iterable[str], hints: dict[str, str] | None = None) -> None:
        self.section = section
        self.names = tuple(names)
        self.lower = {n.lower(): n for n in self.names}
        self.hints = {k.lower(): v for k, v in (hints or {}).items()}

    def canonical(self, key: str) -> str | None:
        if key in self.lower:  # names are lower case, so an exact match is here too
            return key
        return self.lower.get(key.lower())

    def unknown_hint(self, key: str) -> str:
        special = self.hints.get(key.lower())
        if special:
            return special
        import difflib  # only paid for when there is a typo

        close = difflib.get_close_matches(key.lower(), self.names, n=1, cutoff=0.6)
        known = ", ".join(self.names)
        if close:
            return f"did you mean {close[0]!r}? {self.section} accepts: {known}"
        return f"{self.section} accepts: {known}"


def mapping(ctx: Ctx, value: Any, path: Path, keys: Keys) -> dict[str, tuple[Path, Any]] | None:
    """Match the keys of a mapping; None (or an error) if it is not one.

    Returns canonical key -> (path of the value as written, value). A key that
    appears twice in different case (``base`` and ``Base``) ends up once; the
    later one wins, as in Go.
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        ctx.error(path, f"must be a mapping of {keys.section} settings, not {kind(value)}",
                  f"write it as key: value pairs ({', '.join(keys.names[:4])}, ...)", decode=True)
        return None
    out: dict[str, tuple[Path, Any]] = {}
    for key, item in value.items():
        canon = keys.canonical(key)
        if canon is None:
            ctx.error((*path, key), f"unknown field {key!r}", keys.unknown_hint(key), at_key=True,
                      decode=True)
            continue
        out[canon] = ((*path, key), item)
    return out


def _loose_text(ctx: Ctx, path: Path, value: Any, expected: str) -> str | None:
    """The scalar text as written, for a YAML bool/number where a string is expected."""
    m = ctx.doc.marks.get(path)
    if m is not None and m.raw is not None:
        ctx.warn(path, f"{m.raw!r} is read as the string {m.raw!r}, although YAML reads it as {kind(value)}",
                 f"quote it to make that explicit: {m.raw!r} -> \"{m.raw}\"")
        return m.raw
    ctx.error(path, f"must be {expected}, not {kind(value)}", "quote the value", decode=True)
    return None


def string(ctx: Ctx, path: Path, value: Any, *, expected: str = "a string") -> str:
    """A string field. ``null`` is empty; a plain ``on``/``1`` is read as written."""
    if type(value) is str:
        return value
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        text = _loose_text(ctx, path, value, expected)
        return "" if text is None else text
    ctx.error(path, f"must be {expected}, not {kind(value)}",
              "write a single value" + (" (a list is not allowed here)" if isinstance(value, list) else ""),
              decode=True)
    return ""


def string_list(ctx: Ctx, path: Path, value: Any, *, what: str = "strings") -> list[str] | None:
    """A list of strings; None stays None (Go's nil, which merges differently from [])."""
    if value is None:
        return None
    if not isinstance(value, list):
        hint = f"write it as a list: [{value}]" if isinstance(value, str) else f"write a list of {what}"
        ctx.error(path, f"must be a list of {what}, not {kind(value)}", hint, decode=True)
        return None
    out = []
    for i, item in enumerate(value):
        if item is None:
            ctx.warn((*path, i), "an empty (null) entry is read as an empty string", "remove the entry")
            out.append("")
        else:
            out.append(string(ctx, (*path, i), item))
    return out


def string_map(ctx: Ctx, path: Path, value: Any, *, what: str) -> dict[str, str] | None:
    """A mapping of names to string values (env vars, build arguments)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        ctx.error(path, f"must be a mapping of {what}, not {kind(value)}", "write NAME: value pairs",
                  decode=True)
        return None
    out: dict[str, str] = {}
    for key, item in value.items():
        p = (*path, key)
        if item is None:
            ctx.warn(p, "a null value is read as the empty string", f'write {key}: "" to make that explicit')
            out[key] = ""
        else:
            out[key] = string(ctx, p, item)
    return out


def uint(ctx: Ctx, path: Path, value: Any, *, what: str) -> int:
    """A non-negative integer (uid/gid); 0 when absent."""
    if value is None:
        return 0
    if type(value) is int and 0 <= value < 2**64:
        return value
    if type(value) is int:
        ctx.error(path, f"{value} is not a valid {what}", f"a {what} is a number from 0 up", decode=True)
    else:
        hint = "write the number without quotes" if isinstance(value, str) and value.isdigit() else \
            f"a {what} is a whole number such as 1000"
        ctx.error(path, f"must be a {what} (a whole number), not {kind(value)}", hint, decode=True)
    return 0


def items(ctx: Ctx, path: Path, value: Any, *, what: str) -> list[tuple[Path, Any]] | None:
    """The entries of a list with their paths; None (and an error) if not a list."""
    if value is None:
        return None
    if not isinstance(value, list):
        ctx.error(path, f"must be a list of {what}, not {kind(value)}",
                  f"write it as a list: [{value}]" if isinstance(value, str) else f"write a list of {what}",
                  decode=True)
        return None
    return [((*path, i), v) for i, v in enumerate(value)]
