"""The whole file: ``version``, the top-level fields and ``variants``.

Decoding checks the version first (like Blubber), then decodes and validates
every field of every variant, collecting all problems; references between
variants (``includes``, ``copies.from``, ``requirements[].from``,
``mounts[].from``) are checked once all variant names are known.
"""

from __future__ import annotations

from typing import Any

from chute.config import EXIT_INVALID, EXIT_READ, ConfigError, Document, Problem

from ..instructions import Record
from .artifacts import Artifact, check_from
from .builder import BuilderConfig
from .common import COMMON_KEYS, CommonConfig, decode_common
from .decode import Ctx, Keys, kind, mapping
from .validation import is_variant_name

VERSION = "v4"

_MOVED = {
    "sharedvolume": "sharedvolume was removed from Blubber before config v4; use copies: [local]",
    "artifacts": "artifacts is config v3; in v4 use copies: [{from: <variant>, source: ..., "
                 "destination: ...}]",
}
TOP_KEYS = Keys("the top level", ("version", "variants", *COMMON_KEYS), {
    "includes": "includes is only allowed inside a variant (variants.<name>.includes)",
    "copies": "copies is only allowed inside a variant (variants.<name>.copies)",
    **_MOVED,
})
VARIANT_KEYS = Keys("a variant", ("includes", "copies", *COMMON_KEYS), {
    "version": "version belongs at the top level of the file",
    "variants": "variants cannot be nested; define every variant at the top level under variants",
    **_MOVED,
})


class BlubberConfig(Record):
    """A loaded and validated Blubber config (``version: v4``)."""

    __slots__ = ("doc", "root", "variants", "warnings")

    def __init__(
        self,
        doc: Document,
        root: CommonConfig,
        variants: dict[str, CommonConfig],
        warnings: list[Problem] | None = None,
    ) -> None:
        self.doc = doc
        self.root = root
        self.variants = variants
        self.warnings = [] if warnings is None else warnings

    @property
    def source(self) -> str:
        return self.doc.source

    def variant_names(self) -> list[str]:
        return list(self.variants)


def decode_config(doc: Document) -> BlubberConfig:
    """Validate ``doc`` completely; raise :class:`ConfigError` with every problem."""
    data = doc.data
    ctx = Ctx(doc)
    if data is None:
        raise ConfigError([doc.problem((), "the file is empty: version is required",
                                       "start the file with version: v4")], EXIT_INVALID)
    if not isinstance(data, dict):
        raise ConfigError([doc.problem((), f"a Blubber config must be a mapping, not {kind(data)}",
                                       "start the file with version: v4 and a variants: mapping")], EXIT_READ)
    _check_version(ctx, data)
    fields = mapping(ctx, data, (), TOP_KEYS) or {}
    version_field = fields.pop("version", None)
    variants_field = fields.pop("variants", None)
    root = decode_common(ctx, fields, top=True)
    if version_field is not None:
        root.paths["version"] = version_field[0]
    variants: dict[str, CommonConfig] = {}
    if variants_field is not None:
        vpath, vdata = variants_field
        root.paths["variants"] = vpath
        if vdata is not None and not isinstance(vdata, dict):
            ctx.error(vpath, f"must be a mapping of variant names to variants, not {kind(vdata)}",
                      "write variants: {build: {...}, test: {...}}", decode=True)
        for name, body in (vdata or {}).items() if isinstance(vdata, dict) else ():
            p = (*vpath, name)
            if not is_variant_name(name):
                ctx.error(p, f"{name!r} is a bad variant name",
                          "a variant name starts with a letter, has at least 3 characters of letters, "
                          "digits, '-' or '.', and ends with a letter or digit (no '_')", at_key=True)
            vfields = mapping(ctx, body, p, VARIANT_KEYS) or {}
            variant = decode_common(ctx, vfields, top=False)
            variant.paths.setdefault("", p)
            variants[name] = variant
    _check_references(ctx, root, variants)
    ctx.raise_if_failed()
    return BlubberConfig(doc, root, variants, ctx.warnings)


def _check_version(ctx: Ctx, data: dict[str, Any]) -> None:
    key = next((k for k in data if k.lower() == "version"), None)
    if key is None:
        ctx.error((), "version is required", "add version: v4 at the top of the file")
        return
    value = data[key]
    if value == VERSION:
        return
    if not isinstance(value, str):  # a type error, as in Blubber (exit 2)
        ctx.error((key,), f"must be the string v4, not {kind(value)}", "write version: v4", decode=True)
        ctx.raise_if_failed()
    shown = value
    hint = "set version: v4"
    if value in ("v3", "v2", "v1"):
        hint = ("config versions before v4 are not supported; in v4 write version: v4, replace artifacts "
                "and a string copies with a copies list, and add copies: [local] where files were copied "
                "implicitly")
    ctx.error((key,), f'config version "{shown}" is unsupported', hint)
    ctx.raise_if_failed()  # the rest of the file follows another schema: stop here


def _check_references(ctx: Ctx, root: CommonConfig, variants: dict[str, CommonConfig]) -> None:
    names = frozenset(variants)
    for layer in (root, *variants.values()):
        inc_path = layer.paths.get("includes")
        for i, inc in enumerate(layer.includes or ()):
            if inc not in names:
                import difflib

                close = difflib.get_close_matches(inc, sorted(names), n=1)
                hint = (f"did you mean {close[0]!r}? " if close else "") + \
                    "defined variants: " + (", ".join(sorted(names)) or "(none)")
                ctx.error((*inc_path, i) if inc_path else (), f"references an unknown variant {inc!r}", hint)
        for art in layer.copies or ():
            check_from(ctx, art, names)
        for art in _requirements(layer):
            if not art.shorthand:
                check_from(ctx, art, names)
        for m in _mounts(layer):
            if m.from_ and m.from_ != "local" and m.from_ not in names:
                check_from(ctx, Artifact(m.from_, path=m.path), names)


def _requirements(layer: CommonConfig) -> list[Artifact]:
    reqs: list[Artifact] = []
    for section in (layer.node, layer.php, layer.python, layer.builder):
        reqs += section.requirements or ()
    for e in layer.builders or ():
        reqs += e.config.requirements or ()
    return reqs


def _mounts(layer: CommonConfig) -> list:
    mounts = list(layer.builder.mounts or ())
    for e in layer.builders or ():
        if isinstance(e.config, BuilderConfig):
            mounts += e.config.mounts or ()
    return mounts
