"""Policies (``-p``): rules a config must satisfy, e.g. "production uses an approved base".

A policy file (YAML or JSON, a local path or an http(s) URL)::

    enforcements:
      - path: variants.production.base
        rule: omitempty,startswith=docker-registry.example/

``path`` names a field by its dotted config path; ``rule`` uses the
go-playground/validator tag syntax Blubber uses (``,`` is AND, ``|`` is OR,
``omitempty``, ``required``, ``oneof=``, ``eq=``, ``startswith=``, ``max=``,
... plus Blubber's own ``isfalse``, ``istrue``, ``abspath``, ``baseimage``,
...). The whole config is checked, with the requested variant (and the
variants it depends on) expanded and every other variant as written.

Unlike Blubber 0.8, an unknown rule or a path naming no config field is a
load error (exit 5) instead of a crash or a silently skipped rule, and every
violation is reported (exit 6), with booleans printed as ``true``/``false``.
A path whose variant or map key does not exist is skipped, as in Blubber.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chute.config import EXIT_POLICY_LOAD, EXIT_POLICY_VIOLATION, ConfigError, Document, Problem, load_yaml

from .schema.decode import Ctx, Keys, items, mapping, string
from .schema.validation import (
    DEBIAN_PACKAGE,
    DEBIAN_RELEASE,
    ENV_NAME,
    HTTP_URL,
    NODE_ENV,
    USER_NAME,
    is_abs_nonroot,
    is_image_ref,
)

POLICY_KEYS = Keys("a policy", ("enforcements",))
ENFORCEMENT_KEYS = Keys("an enforcement", ("path", "rule"))

# The config as a policy sees it: field -> sub-schema; "*" = any map key; None = a value.
_REQ = None
_ARTIFACTS = None
_BUILDER = {"command": None, "script": None, "requirements": None, "mounts": None, "caches": None}
_PYTHON = {"version": None, "requirements": None, "use-system-flag": None, "use-system-site-packages": None,
           "no-deps": None, "poetry": {"version": None, "devel": None, "only": None, "without": None},
           "tox-version": None, "pip-version": None, "setuptools-version": None, "wheel-version": None,
           "venv": None}
_COMMON: dict[str, Any] = {
    "base": None,
    "apt": {"packages": {"*": None}, "sources": None, "proxies": None},
    "node": {"requirements": None, "env": None, "use-npm-ci": None, "allow-dedupe-failure": None},
    "php": {"requirements": None, "production": None},
    "python": _PYTHON,
    "builder": _BUILDER,
    "builders": None,
    "lives": {"in": None, "as": None, "uid": None, "gid": None},
    "runs": {"in": None, "as": None, "uid": None, "gid": None, "environment": {"*": None},
             "insecurely": None},
    "entrypoint": None,
    "arguments": {"*": None},
}
SCHEMA: dict[str, Any] = {
    "version": None,
    **_COMMON,
    "variants": {"*": {**_COMMON, "includes": None, "copies": None}},
}


class RuleError(ValueError):
    pass


# ---------------------------------------------------------------- rules

def _has_value(v: Any) -> bool:
    if v is None:
        return False
    if isinstance(v, list | dict):
        return True  # a set list is a value even when empty (Go: non-nil)
    return v not in ("", 0, False) or (isinstance(v, float) and v != 0.0)


def _size(v: Any) -> float:
    if isinstance(v, bool):
        raise RuleError("a size rule does not apply to a boolean")
    if isinstance(v, str):
        return len(v)
    if isinstance(v, int | float):
        return v
    if v is None:
        return 0
    return len(v)


def _num(param: str) -> float:
    try:
        return float(param)
    except ValueError:
        raise RuleError(f"{param!r} is not a number") from None


def _eq(v: Any, p: str) -> bool:
    if isinstance(v, bool):
        return v == _parse_bool(p)
    if isinstance(v, str):
        return v == p
    return _size(v) == _num(p)


def _parse_bool(p: str) -> bool:
    if p in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if p in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise RuleError(f"{p!r} is not a boolean")


def _oneof(v: Any, p: str) -> bool:
    options = p.split()
    if isinstance(v, bool) or v is None or isinstance(v, list | dict):
        raise RuleError("oneof applies to strings and numbers")
    if isinstance(v, str):
        return v in options
    return any(v == _num(o) for o in options)


def _text(v: Any) -> str:
    return v if isinstance(v, str) else _render(v)


_NEEDS_PARAM: dict[str, Callable[[Any, str], bool]] = {
    "eq": _eq,
    "ne": lambda v, p: not _eq(v, p),
    "len": lambda v, p: _size(v) == _num(p),
    "min": lambda v, p: _size(v) >= _num(p),
    "max": lambda v, p: _size(v) <= _num(p),
    "gt": lambda v, p: _size(v) > _num(p),
    "gte": lambda v, p: _size(v) >= _num(p),
    "lt": lambda v, p: _size(v) < _num(p),
    "lte": lambda v, p: _size(v) <= _num(p),
    "oneof": _oneof,
    "startswith": lambda v, p: _text(v).startswith(p),
    "endswith": lambda v, p: _text(v).endswith(p),
    "contains": lambda v, p: p in _text(v),
    "containsany": lambda v, p: any(c in _text(v) for c in p),
    "excludes": lambda v, p: p not in _text(v),
    "excludesall": lambda v, p: not any(c in _text(v) for c in p),
}


def _str_rule(check: Callable[[str], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and check(v)


_NO_PARAM: dict[str, Callable[[Any], bool]] = {
    "required": _has_value,
    "isdefault": lambda v: not _has_value(v),
    "istrue": lambda v: v is True,
    "isfalse": lambda v: v is False or v is None,
    "abspath": _str_rule(is_abs_nonroot),
    "baseimage": _str_rule(lambda s: s == "" or is_image_ref(s)),
    "imageref": _str_rule(is_image_ref),
    "debianpackage": _str_rule(lambda s: DEBIAN_PACKAGE.fullmatch(s) is not None),
    "debianrelease": _str_rule(lambda s: DEBIAN_RELEASE.fullmatch(s) is not None),
    "nodeenv": _str_rule(lambda s: NODE_ENV.fullmatch(s) is not None),
    "username": _str_rule(lambda s: USER_NAME.fullmatch(s) is not None and s != "root"),
    "httpurl": _str_rule(lambda s: HTTP_URL.fullmatch(s) is not None),
    "currentversion": lambda v: v == "v4",
    "envvars": lambda v: (isinstance(v, dict) and all(ENV_NAME.fullmatch(k) for k in v)) or v is None,
    "alpha": _str_rule(lambda s: s.isascii() and s.isalpha()),
    "alphanum": _str_rule(lambda s: s.isascii() and s.isalnum()),
    "numeric": _str_rule(lambda s: s.lstrip("+-").replace(".", "", 1).isdigit()),
    "lowercase": _str_rule(lambda s: s == s.lower() and s != ""),
    "uppercase": _str_rule(lambda s: s == s.upper() and s != ""),
    "ascii": _str_rule(str.isascii),
}
KNOWN_RULES = sorted({*_NEEDS_PARAM, *_NO_PARAM, "omitempty", "dive"})


@dataclass(eq=False)
class _Test:
    name: str
    param: str | None

    def __call__(self, v: Any) -> bool:
        if self.param is None:
            return _NO_PARAM[self.name](v)
        return _NEEDS_PARAM[self.name](v, self.param)


def _unescape(s: str) -> str:
    return s.replace("0x2C", ",").replace("0x7C", "|")


def parse_rule(rule: str) -> list[list[_Test] | str]:
    """The tag as a list of AND-ed steps; each step is OR-ed tests, or "omitempty"/"dive"."""
    steps: list[list[_Test] | str] = []
    for tag in rule.split(","):
        tag = tag.strip()
        if tag in ("omitempty", "dive"):
            steps.append(tag)
            continue
        alts: list[_Test] = []
        for alt in tag.split("|"):
            name, eq, param = alt.strip().partition("=")
            if not name:
                raise RuleError(f"an empty rule in {rule!r}")
            if eq:
                if name not in _NEEDS_PARAM:
                    raise RuleError(_unknown(name) if name not in _NO_PARAM else f"{name} takes no parameter")
                alts.append(_Test(name, _unescape(param)))
            else:
                if name not in _NO_PARAM:
                    raise RuleError(_unknown(name) if name not in _NEEDS_PARAM else f"{name} needs =<value>")
                alts.append(_Test(name, None))
        steps.append(alts)
    return steps


def _unknown(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, KNOWN_RULES, n=1)
    return f"unknown rule {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def rule_holds(steps: list[list[_Test] | str], value: Any) -> bool:
    for i, step in enumerate(steps):
        if step == "omitempty":
            if not _has_value(value):
                return True
            continue
        if step == "dive":
            rest = steps[i + 1:]
            values = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
            if values is None:
                raise RuleError("dive applies to lists and maps")
            return all(rule_holds(rest, v) for v in values)
        if not any(t(value) for t in step):  # type: ignore[union-attr]
            return False
    return True


def _render(v: Any) -> str:
    import json

    return json.dumps(v, ensure_ascii=False)


# ---------------------------------------------------------------- the policy


@dataclass(eq=False)
class Enforcement:
    path: str
    rule: str
    steps: tuple
    line: int | None = None
    column: int | None = None


@dataclass(eq=False)
class Policy:
    uri: str
    enforcements: tuple[Enforcement, ...]

    def violations(self, config: Any, variant: str, expanded: dict[str, Any] | None = None) -> list[Problem]:
        """Every enforcement the config breaks (empty when it complies).

        ``expanded`` is the second half of ``stage_order(config, variant)`` if the caller has it.
        """
        view = _LazyView(config, variant, expanded)
        out = []
        for enf in self.enforcements:
            found, value = view.lookup(enf.path)
            if not found:
                continue
            try:
                ok = rule_holds(list(enf.steps), value)
            except RuleError as err:
                ok, why = False, f" ({err})"
            else:
                why = ""
            if not ok:
                parts = tuple(enf.path.split("."))
                out.append(config.doc.problem(
                    parts, f'value {_render(value)} violates policy rule "{enf.rule}"{why}',
                    f"required by the policy {self.uri}" + (f" line {enf.line}" if enf.line else "")
                    + "; change the config to comply"))
        return out

    def check(self, config: Any, variant: str, expanded: dict[str, Any] | None = None) -> None:
        problems = self.violations(config, variant, expanded)
        if problems:
            raise ConfigError(problems, EXIT_POLICY_VIOLATION,
                              f"configuration fails policy check against: {self.uri}")


def _resolve(view: Any, parts: list[str]) -> tuple[bool, Any]:
    cur = view
    for part in parts:
        if not isinstance(cur, dict) or part not in cur:
            return False, None
        cur = cur[part]
    return True, cur


class _LazyView:
    """:func:`config_view` for one check, built only as far as the enforcements look.

    The policy is checked on every Blubberoid request: a path under
    ``variants.<name>`` needs only that variant's view (and the expansion, once),
    a top-level path only the top level's.
    """

    def __init__(self, config: Any, variant: str, expanded: dict[str, Any] | None) -> None:
        self.config = config
        self.variant = variant
        self._expanded = expanded
        self._root: dict[str, Any] | None = None
        self._variants: dict[str, dict[str, Any]] = {}

    def expanded(self) -> dict[str, Any]:
        if self._expanded is None:
            from .resolve import stage_order

            self._expanded = stage_order(self.config, self.variant)[1]
        return self._expanded

    def lookup(self, path: str) -> tuple[bool, Any]:
        parts = path.split(".")
        if parts[0] != "variants":
            if self._root is None:
                self._root = _common_view(self.config.root)
                self._root["version"] = "v4"
            return _resolve(self._root, parts)
        if len(parts) == 1:  # the whole variants mapping
            return True, config_view(self.config, self.expanded())["variants"]
        name = parts[1]
        if name not in self.config.variants:
            return False, None
        view = self._variants.get(name)
        if view is None:
            view = self._variants[name] = _common_view(self.expanded().get(name, self.config.variants[name]),
                                                       variant=True)
        return _resolve(view, parts[2:])


def _check_path(path: str) -> str | None:
    """Why ``path`` cannot name a config field, or None."""
    node: Any = SCHEMA
    for part in path.split("."):
        if not part:
            return "it has an empty segment"
        if node is None:
            return f"{part!r} is below a value that has no fields"
        if part in node:
            node = node[part]
        elif "*" in node:
            node = node["*"]
        else:
            import difflib

            close = difflib.get_close_matches(part, [k for k in node if k != "*"], n=1)
            return f"{part!r} is not a config field" + (f" (did you mean {close[0]!r}?)" if close else "")
    return None


def config_view(config: Any, expanded: dict[str, Any]) -> dict[str, Any]:
    """The config as nested plain data with Blubber's field names."""
    view = _common_view(config.root)
    view["version"] = "v4"
    view["variants"] = {name: _common_view(expanded.get(name, layer), variant=True)
                        for name, layer in config.variants.items()}
    return view


def _arts(arts: Any) -> list | None:
    if arts is None:
        return None
    return [{"from": a.from_, "source": a.source, "destination": a.destination, "exclude": list(a.exclude)}
            for a in arts]


def _common_view(c: Any, variant: bool = False) -> dict[str, Any]:
    pkgs = c.apt.packages
    py = c.python
    view: dict[str, Any] = {
        "base": c.base,
        "apt": {"packages": (pkgs.get("default") if pkgs and list(pkgs) == ["default"] else pkgs),
                "sources": None if c.apt.sources is None else [s.url for s in c.apt.sources],
                "proxies": None if c.apt.proxies is None else [p.url for p in c.apt.proxies]},
        "node": {"requirements": _arts(c.node.requirements), "env": c.node.env,
                 "use-npm-ci": bool(c.node.use_npm_ci),
                 "allow-dedupe-failure": bool(c.node.allow_dedupe_failure)},
        "php": {"requirements": _arts(c.php.requirements), "production": bool(c.php.production)},
        "python": {"version": py.version, "requirements": _arts(py.requirements),
                   "use-system-flag": bool(py.use_system_flag),
                   "use-system-site-packages": bool(py.use_system_site_packages), "no-deps": bool(py.no_deps),
                   "poetry": {"version": py.poetry.version, "devel": bool(py.poetry.devel),
                              "only": py.poetry.only, "without": py.poetry.without},
                   "tox-version": py.pins.get("tox-version", ""),
                   "pip-version": py.pins.get("pip-version", ""),
                   "setuptools-version": py.pins.get("setuptools-version", ""),
                   "wheel-version": py.pins.get("wheel-version", ""), "venv": py.venv},
        "builder": {"command": c.builder.command, "script": c.builder.script,
                    "requirements": _arts(c.builder.requirements),
                    "mounts": None if c.builder.mounts is None else [m.from_ for m in c.builder.mounts],
                    "caches": None if c.builder.caches is None
                    else [x.destination for x in c.builder.caches]},
        "builders": None if c.builders is None else [e.kind for e in c.builders],
        "lives": {"in": c.lives.in_, "as": c.lives.as_, "uid": c.lives.uid, "gid": c.lives.gid},
        "runs": {"in": c.runs.in_, "as": c.runs.as_, "uid": c.runs.uid, "gid": c.runs.gid,
                 "environment": c.runs.environment, "insecurely": bool(c.runs.insecurely)},
        "entrypoint": c.entrypoint,
        "arguments": c.arguments,
    }
    if variant:
        view["includes"] = c.includes
        view["copies"] = _arts(c.copies)
    return view


# ---------------------------------------------------------------- loading


def load_policy(uri: str) -> Policy:
    """Read a policy from a file path or an http(s) URL; ConfigError exit 5 if it cannot be used."""
    if uri.startswith(("http://", "https://")):
        text = _fetch(uri)
    else:
        try:
            with open(uri, "rb") as fh:
                text = fh.read()
        except OSError as exc:
            raise ConfigError([Problem(f"cannot read the policy: {exc.strerror or exc}", source=uri,
                                       hint="give a policy file path or an http(s):// URL")],
                              EXIT_POLICY_LOAD) from None
    return parse_policy(text, uri)


def _fetch(uri: str) -> bytes:
    import httpx  # only policies served over HTTP pay for it

    try:
        resp = httpx.get(uri, timeout=10.0, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise ConfigError([Problem(f"cannot fetch the policy: {exc}", source=uri,
                                   hint="check the URL and that the server is reachable")],
                          EXIT_POLICY_LOAD) from None
    if resp.status_code != 200:
        raise ConfigError([Problem(f"cannot fetch the policy: HTTP {resp.status_code}", source=uri,
                                   hint="check the URL")], EXIT_POLICY_LOAD)
    return resp.content


def parse_policy(text: str | bytes, uri: str) -> Policy:
    try:
        doc = load_yaml(text, uri)
    except ConfigError as err:
        raise ConfigError(err.problems, EXIT_POLICY_LOAD) from None
    ctx = Ctx(doc)
    enforcements = _decode(ctx, doc)
    if ctx.problems:
        raise ConfigError(ctx.problems, EXIT_POLICY_LOAD, f"cannot load the policy {uri}")
    return Policy(uri, tuple(enforcements))


def _decode(ctx: Ctx, doc: Document) -> list[Enforcement]:
    if doc.data is None:
        ctx.error((), "the policy is empty", "write enforcements: [{path: ..., rule: ...}]")
        return []
    fields = mapping(ctx, doc.data, (), POLICY_KEYS)
    if not fields or "enforcements" not in fields:
        if fields is not None:
            ctx.error((), "enforcements is required", "write enforcements: [{path: ..., rule: ...}]")
        return []
    out = []
    for p, v in items(ctx, *fields["enforcements"], what="enforcements") or ():
        f = mapping(ctx, v, p, ENFORCEMENT_KEYS)
        if f is None:
            if v is None:
                ctx.error(p, "an empty enforcement", "write {path: ..., rule: ...}")
            continue
        path = string(ctx, *f["path"]) if "path" in f else ""
        rule = string(ctx, *f["rule"]) if "rule" in f else ""
        if not path:
            ctx.error(p, "path is required", "e.g. path: variants.production.base")
        elif (why := _check_path(path)) is not None:
            ctx.error(f["path"][0], f"the path {path!r} does not name a config field: {why}",
                      "use dotted Blubber field names, e.g. variants.production.runs.insecurely")
        if not rule:
            ctx.error(p, "rule is required", "e.g. rule: isfalse")
            continue
        try:
            steps = parse_rule(rule)
        except RuleError as err:
            ctx.error(f["rule"][0], f"bad rule {rule!r}: {err}", "known rules: " + ", ".join(KNOWN_RULES))
            continue
        m = doc.marks.get(p)
        out.append(Enforcement(path, rule, tuple(steps), m.line if m else None, m.column if m else None))
    return out
