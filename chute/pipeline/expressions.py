"""The ``${…}`` expression language: lexer, binding store, interpolation, ``$each``/``$merge``.

This follows PipelineLib's semantics (spec/pipelinelib.md §3):

* ``${name}`` and ``${name|default}``; the expression ends at the first ``}``; a name is
  ``[A-Za-z0-9._-]+``. A ``$`` not followed by ``{`` is a literal. There is no escape syntax.
* A name is split at its first dot into ``namespace.key``. ``${.key}`` reads the current stage,
  ``${stage.key}`` an ancestor stage (``setup`` is the ancestor of every stage), and a dot-less
  ``${NAME}`` reads the current stage's ``NAME`` if bound, else it is kept verbatim (so shell
  variables such as ``${ZUUL_BRANCH}`` pass through).
* A default applies when the value is unbound or falsy (Groovy truth: ``""``, ``0``, ``false``,
  null, empty list or map). A falsy value without a default becomes ``""``.
* Every interpolated string gives a string. Lists and maps are rendered the way Groovy prints
  them (``[a, b]``, ``[k:v]``). Interpolation recurses into lists and maps (keys too).
* ``{$each: v, $in: s, $delimiter: d, $yield: y}`` is a list comprehension; ``$delimiter`` is a
  set of characters and empty items are dropped; ``$each: [a, b]`` destructures each item split
  on single spaces. ``{$merge: a, $with: b}`` concatenates lists or strings and merges maps
  (shallow, right side wins).

Values are written once per stage namespace (:meth:`Context.bind`) and readable only by
descendants in the execution graph.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chute.config import EXIT_INVALID, ConfigError, Problem

if TYPE_CHECKING:
    from .graph import Graph

SETUP = "setup"
TEARDOWN = "teardown"

VAR_START = "${"
VAR_END = "}"
VAR_DEFAULT = "|"
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")

EACH_KEYS = ("$each", "$in", "$delimiter", "$yield")
MERGE_KEYS = ("$merge", "$with")


# --------------------------------------------------------------------------------------------
# Lexer


@dataclass(frozen=True, slots=True)
class Literal:
    """Plain text between expressions."""

    text: str
    offset: int  # where it starts in the source string


@dataclass(frozen=True, slots=True)
class Variable:
    """One ``${name}`` or ``${name|default}``."""

    name: str
    default: str | None  # None: no default given ("${a|}" has the default "")
    source: str  # the expression as written, "${a.b|x}"
    offset: int

    @property
    def namespace(self) -> str | None:
        """The part before the first dot ("" for ``.key``), None for a dot-less name."""
        return self.name.split(".", 1)[0] if "." in self.name else None

    @property
    def key(self) -> str:
        return self.name.split(".", 1)[1] if "." in self.name else self.name


Token = Literal | Variable


class ExpressionSyntaxError(ValueError):
    """A ``${…}`` that does not match the grammar (PipelineLib's InvalidVariableException)."""

    def __init__(self, reason: str, fragment: str, offset: int) -> None:
        self.reason = reason
        self.fragment = fragment
        self.offset = offset
        super().__init__(f"invalid variable expression ({reason}): {fragment}")

    @property
    def hint(self) -> str:
        if self.reason.startswith("missing the end"):
            return "close the expression with '}'; there is no escape for a literal '${'"
        if self.reason == "name is missing":
            return "write ${stage.key} or ${.key}; names use letters, digits, '.', '_' and '-'"
        return ("only '|default' may follow the name; shell forms such as ${VAR:-x} are not allowed "
                "in interpolated fields")


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into literals and variables; raises :class:`ExpressionSyntaxError`."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        start = text.find(VAR_START, pos)
        if start < 0:
            break
        if start > pos:
            tokens.append(Literal(text[pos:start], pos))
        end = text.find(VAR_END, start + len(VAR_START))
        if end < 0:
            raise ExpressionSyntaxError("missing the end delimiter }", text[start:], start)
        source = text[start : end + 1]
        body = text[start + len(VAR_START) : end]
        n = 0
        while n < len(body) and body[n] in NAME_CHARS:
            n += 1
        if n == 0:
            raise ExpressionSyntaxError("name is missing", source, start)
        rest = body[n:]
        if rest and rest[0] != VAR_DEFAULT:
            raise ExpressionSyntaxError("invalid character following name", source, start)
        tokens.append(Variable(body[:n], rest[1:] if rest else None, source, start))
        pos = end + 1
    if pos < len(text):
        tokens.append(Literal(text[pos:], pos))
    return tokens


def variables(text: str) -> list[Variable]:
    """The variables in ``text`` (raises :class:`ExpressionSyntaxError` like :func:`tokenize`)."""
    return [t for t in tokenize(text) if isinstance(t, Variable)]


def is_expression(value: Any) -> bool:
    """True for a ``$each`` or ``$merge`` mapping."""
    return isinstance(value, dict) and ("$each" in value or "$merge" in value)


def has_dynamic_parts(value: Any) -> bool:
    """True if interpolating ``value`` could change it (a ``${`` or a ``$each``/``$merge``)."""
    if isinstance(value, str):
        return VAR_START in value
    if isinstance(value, dict):
        return is_expression(value) or any(has_dynamic_parts(k) or has_dynamic_parts(v)
                                           for k, v in value.items())
    if isinstance(value, list):
        return any(has_dynamic_parts(v) for v in value)
    return False


# --------------------------------------------------------------------------------------------
# Groovy truth and string forms


def is_falsy(value: Any) -> bool:
    """Groovy truth, which PipelineLib's ``?:`` and ``${x|default}`` use."""
    if value is None or value is False:
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return value == 0
    if isinstance(value, str | list | tuple | dict):
        return len(value) == 0
    return False


def to_text(value: Any) -> str:
    """How a bound value reads inside a string (Groovy's ``toString``)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(to_text(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "[:]"
        return "[" + ", ".join(f"{to_text(k)}:{to_text(v)}" for k, v in value.items()) + "]"
    return str(value)


# --------------------------------------------------------------------------------------------
# Errors


class PipelineRuntimeError(ConfigError):
    """A value could not be resolved while running a stage.

    It names the stage, the field (``run.env.FOO``) and, for unbound names, the variables that
    were available. It is a :class:`chute.config.ConfigError` (exit code 4), so the CLI and the
    runner can print it like any other config problem.
    """

    def __init__(
        self,
        message: str,
        *,
        stage: str = "",
        field: str = "",
        available: Iterable[str] = (),
        hint: str | None = None,
        source: str | None = None,
    ) -> None:
        self.stage = stage
        self.field = field
        self.available = sorted(set(available))
        self.message = message
        if self.available and hint is None:
            hint = "available variables: " + ", ".join(self.available)
        super().__init__([Problem(message, path=field, source=source, hint=hint)], EXIT_INVALID)
        self.hint = hint

    def format(self) -> str:
        where = f"{self.problems[0].source}: " if self.problems[0].source else ""
        head = f"{where}error: stage '{self.stage}'" if self.stage else f"{where}error:"
        if self.field:
            head += f", {self.field}"
        text = f"{head}: {self.message}"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text


# --------------------------------------------------------------------------------------------
# Binding store


class Context:
    """The values stages bind, with PipelineLib's visibility rules.

    * Each stage has its own namespace; :meth:`bind` writes a name once (a second write is an
      error). ``setup`` is the namespace of the implicit first stage.
    * A stage reads its own values as ``${.key}`` and an ancestor's as ``${stage.key}``.
      Ancestry comes from the pipeline's :class:`~chute.pipeline.graph.Graph`; ``setup`` is an
      ancestor of every stage. Stages in parallel branches cannot read each other.

    Stages running in parallel threads may bind and read concurrently: writes and the
    listings take a lock (each stage writes only its own namespace).
    """

    def __init__(self, graph: Graph, setup: Mapping[str, Any] | None = None) -> None:
        self.graph = graph
        self._values: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        if setup is not None:
            for key, value in setup.items():
                self.bind(SETUP, key, value)

    # -- writing

    def bind(self, stage: str, key: str, value: Any) -> None:
        """Bind ``${stage.key}``; raises :class:`PipelineRuntimeError` if already bound."""
        with self._lock:
            ns = self._values.setdefault(stage, {})
            if key in ns:
                raise PipelineRuntimeError(
                    f"'{stage}' already has a value assigned to '{key}'",
                    stage=stage, field=key,
                    hint="values are written once per stage; export it under another name",
                )
            ns[key] = value

    # -- reading

    def is_ancestor(self, namespace: str, stage: str) -> bool:
        """May ``stage`` read ``${namespace.*}``?"""
        if namespace == SETUP:
            return stage != SETUP
        if stage == SETUP or namespace not in self.graph or stage not in self.graph:
            return False
        return namespace in self.graph.ancestors(stage)

    def has(self, stage: str, key: str) -> bool:
        return key in self._values.get(stage, {})

    def values(self, stage: str) -> dict[str, Any]:
        """A copy of what ``stage`` has bound so far."""
        with self._lock:
            return dict(self._values.get(stage, {}))

    def _snapshot(self) -> list[tuple[str, dict[str, Any]]]:
        with self._lock:
            return [(ns, dict(vals)) for ns, vals in self._values.items()]

    def all_values(self, key: str) -> dict[str, Any]:
        """``{stage: value}`` for every stage that bound ``key`` (teardown uses this)."""
        return {ns: vals[key] for ns, vals in self._snapshot() if key in vals}

    def available(self, stage: str) -> list[str]:
        """Every variable name ``stage`` may read, in the form it would be written."""
        names: list[str] = []
        for ns, vals in self._snapshot():
            if ns == stage:
                names.extend(f".{k}" for k in vals)
            elif self.is_ancestor(ns, stage):
                names.extend(f"{ns}.{k}" for k in vals)
        return sorted(names)

    def resolve(self, name: str, current_stage: str) -> Any:
        """The value of ``name`` (``.key``, ``stage.key`` or a dot-less ``KEY``) as seen by
        ``current_stage``; raises :class:`PipelineRuntimeError` when it is not visible."""
        found, value = _Scope(self, current_stage, {}).lookup(name, "")
        if not found:
            raise _unbound(self, current_stage, {}, name, "")
        return value


class _Scope:
    """Where a lookup happens: a stage, plus the variables of enclosing ``$each`` items."""

    def __init__(self, ctx: Context, stage: str, local: dict[str, Any], in_each: bool = False,
                 fallback: Mapping[str, Any] | None = None) -> None:
        self.ctx = ctx
        self.stage = stage
        self.local = local
        # Where a dot-less ${NAME} that is not a stage value may still be found (run parameters)
        self.fallback = fallback
        # Inside a $each item PipelineLib uses an anonymous child context, whose ancestors
        # include the stage itself, so ${stage.key} works there (and only there).
        self.in_each = in_each

    def lookup(self, name: str, field: str) -> tuple[bool, Any]:
        ctx, stage = self.ctx, self.stage
        if "." not in name:
            if name in self.local:
                return True, self.local[name]
            if ctx.has(stage, name):
                return True, ctx._values[stage][name]
            if self.fallback is not None and name in self.fallback:
                return True, self.fallback[name]
            return False, None
        ns, key = name.split(".", 1)
        if ns == "":
            if key in self.local:
                return True, self.local[key]
            if ctx.has(stage, key):
                return True, ctx._values[stage][key]
            return False, None
        if ns == stage and not self.in_each:
            raise PipelineRuntimeError(
                f"'{stage}' cannot refer to its own values by name ('${{{name}}}')",
                stage=stage, field=field, hint=f"write '${{.{key}}}' for this stage's own values",
            )
        if ns != stage and not ctx.is_ancestor(ns, stage):
            known = ns in ctx.graph or ns == SETUP
            reason = ("does not follow it in the execution graph" if known
                      else "is not a stage of this pipeline")
            raise PipelineRuntimeError(
                f"cannot access '{ns}.*' values since '{stage}' {reason} ('${{{name}}}')",
                stage=stage, field=field, available=ctx.available(stage),
            )
        if ctx.has(ns, key):
            return True, ctx._values[ns][key]
        return False, None


def _unbound(ctx: Context, stage: str, local: Mapping[str, Any], name: str,
             field: str) -> PipelineRuntimeError:
    ns, _, key = name.partition(".")
    full = f"{ns or stage}.{key}"
    available = ctx.available(stage) + [f".{k}" for k in local]
    return PipelineRuntimeError(f"no value bound for '{full}'", stage=stage, field=field, available=available)


# --------------------------------------------------------------------------------------------
# Interpolation


def interpolate(
    value: Any,
    context: Context,
    stage: str,
    *,
    field: str = "",
    local: Mapping[str, Any] | None = None,
    fallback: Mapping[str, Any] | None = None,
) -> Any:
    """Interpolate ``value`` (a string, or lists/maps of them) as stage ``stage`` sees it.

    Strings give strings; maps are interpolated in keys and values; ``$each``/``$merge``
    mappings are evaluated. Other scalars are returned unchanged. ``field`` names the config
    field for error messages; ``local`` binds extra ``${.name}`` values (as a ``$each`` item
    does); ``fallback`` supplies dot-less ``${NAME}`` values that are not bound in the stage
    (they stay verbatim otherwise). Raises :class:`PipelineRuntimeError`.
    """
    scope = _Scope(context, stage, dict(local or {}), in_each=bool(local), fallback=fallback)
    return _interp(value, scope, field)


def _join(field: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{field}[{part}]"
    return f"{field}.{part}" if field else str(part)


def _interp(value: Any, scope: _Scope, field: str) -> Any:
    if isinstance(value, str):
        return _interp_str(value, scope, field)
    if isinstance(value, list):
        return [_interp(v, scope, _join(field, i)) for i, v in enumerate(value)]
    if isinstance(value, dict):
        if "$each" in value:
            return _each(value, scope, field)
        if "$merge" in value:
            return _merge(value, scope, field)
        out: dict[Any, Any] = {}
        for k, v in value.items():
            key = _interp_str(k, scope, field) if isinstance(k, str) else k
            out[key] = _interp(v, scope, _join(field, str(k)))
        return out
    return value


def _interp_str(text: str, scope: _Scope, field: str) -> str:
    if VAR_START not in text:
        return text
    try:
        tokens = tokenize(text)
    except ExpressionSyntaxError as exc:
        raise PipelineRuntimeError(str(exc), stage=scope.stage, field=field, hint=exc.hint) from None
    parts: list[str] = []
    for tok in tokens:
        if isinstance(tok, Literal):
            parts.append(tok.text)
            continue
        found, val = scope.lookup(tok.name, field)
        if not found:
            if tok.namespace is None:
                parts.append(tok.source)  # ${NAME}: not ours, keep it for the shell
            elif tok.default is not None:
                parts.append(tok.default)
            else:
                raise _unbound(scope.ctx, scope.stage, scope.local, tok.name, field)
        elif is_falsy(val):
            parts.append(tok.default if tok.default is not None else "")
        else:
            parts.append(to_text(val))
    return "".join(parts)


def split_items(text: str, delimiter: str) -> list[str]:
    """Groovy ``tokenize``: split on any character of ``delimiter``; drop empty items."""
    if delimiter == "":
        return [text] if text else []
    out: list[str] = []
    cur: list[str] = []
    chars = set(delimiter)
    for ch in text:
        if ch in chars:
            if cur:
                out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if cur:
        out.append("".join(cur))
    return out


def _destructure(item: Any, names: list[str], scope: _Scope, field: str) -> dict[str, Any]:
    values = str(item).split(" ")
    while values and values[-1] == "":  # Java's split drops trailing empty strings
        values.pop()
    if len(values) < len(names):
        raise PipelineRuntimeError(
            f"insufficient number of values given for [{', '.join(names)}]: {to_text(item)!r}",
            stage=scope.stage, field=field,
            hint="each item is split on single spaces and needs one value per name in $each",
        )
    return dict(zip(names, values, strict=False))


def _each(expr: dict[str, Any], scope: _Scope, field: str) -> list[Any]:
    names = expr["$each"]
    source = _interp(expr.get("$in", ""), scope, _join(field, "$in"))
    delimiter = expr.get("$delimiter", "\n")
    if not isinstance(delimiter, str):
        raise PipelineRuntimeError("$delimiter must be a string", stage=scope.stage, field=field)
    if isinstance(source, str):
        items: list[Any] = split_items(source, delimiter)
    elif isinstance(source, list):
        items = source
    elif source is None:
        items = []
    else:
        raise PipelineRuntimeError(
            f"$in must give a string or a list, not {type(source).__name__}",
            stage=scope.stage, field=_join(field, "$in"),
        )
    if isinstance(names, str):
        template: Any = expr.get("$yield", "${." + names + "}")
    else:
        template = expr.get("$yield")
    out: list[Any] = []
    for item in items:
        bound = {names: item} if isinstance(names, str) else _destructure(item, list(names), scope, field)
        if template is None:  # destructuring without $yield gives the items unchanged
            out.append(item)
            continue
        child = _Scope(scope.ctx, scope.stage, {**scope.local, **bound}, in_each=True,
                       fallback=scope.fallback)
        out.append(_interp(template, child, _join(field, "$yield")))
    return out


def merge_values(left: Any, right: Any) -> Any:
    """``$merge``/``$with``: lists and strings concatenate, maps merge shallowly (right wins).

    Raises :class:`TypeError` for any other combination.
    """
    if isinstance(left, list) and isinstance(right, list):
        return left + right
    if isinstance(left, dict) and isinstance(right, dict):
        return {**left, **right}
    if isinstance(left, str) and isinstance(right, str):
        return left + right
    raise TypeError(f"cannot merge {_kind(left)} with {_kind(right)}")


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"


def _merge(expr: dict[str, Any], scope: _Scope, field: str) -> Any:
    left = _interp(expr.get("$merge"), scope, _join(field, "$merge"))
    right = _interp(expr.get("$with"), scope, _join(field, "$with"))
    try:
        return merge_values(left, right)
    except TypeError as exc:
        raise PipelineRuntimeError(
            str(exc), stage=scope.stage, field=field,
            hint="$merge and $with must both give lists, both mappings or both strings",
        ) from None
