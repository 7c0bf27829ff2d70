"""Blubber's Flag: a boolean that is either unset or set, and overrides when set.

Merging keeps the earlier value unless the later config *sets* the flag, so a
variant can turn ``runs.insecurely: true`` back off with ``false``. chute
represents it as ``bool | None``.
"""

from __future__ import annotations

from typing import Any

from .decode import Ctx, Path, kind

# Go's strconv.ParseBool tokens, plus what YAML 1.1 (go-yaml v2) reads as booleans.
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True",
                   "y", "Y", "yes", "Yes", "YES", "on", "On", "ON"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False",
                    "n", "N", "no", "No", "NO", "off", "Off", "OFF"})


def flag(ctx: Ctx, path: Path, value: Any) -> bool | None:
    """A Blubber Flag: None when absent, otherwise a boolean that can override."""
    if value is None:
        return None
    if type(value) is bool:
        return value
    m = ctx.doc.marks.get(path)
    text = m.raw if m is not None and m.raw is not None else (value if isinstance(value, str) else None)
    if text is not None and (text in _TRUE or text in _FALSE):
        ctx.warn(path, f"{text!r} is read as {'true' if text in _TRUE else 'false'}", "write true or false")
        return text in _TRUE
    ctx.error(path, f"must be true or false, not {kind(value)}", "write true or false", decode=True)
    return None


def merge_flag(old: bool | None, new: bool | None) -> bool | None:
    return old if new is None else new
