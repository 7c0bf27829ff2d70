"""The value rules Blubber validates against (spec §2 and §3), as functions.

The regular expressions are Blubber's, rewritten where needed so that Python's
backtracking engine cannot take exponential time on them (Go's RE2 cannot;
e.g. Docker's ``[-]*`` separator becomes ``-+``, which matches the same
names).
"""

from __future__ import annotations

import functools
import re


class LazyPattern:
    """A regular expression compiled on first use (most runs need only a few of them)."""

    __slots__ = ("_compiled", "_flags", "_source")

    def __init__(self, source: str, flags: int = 0) -> None:
        self._source, self._flags, self._compiled = source, flags, None

    def fullmatch(self, s: str) -> re.Match[str] | None:
        if self._compiled is None:
            self._compiled = re.compile(self._source, self._flags)
        return self._compiled.fullmatch(s)


# Variant names and user names share Blubber's RFC-952-like pattern: >= 3 characters.
VARIANT_NAME = LazyPattern(r"[a-zA-Z][a-zA-Z0-9\-.]+[a-zA-Z0-9]")
USER_NAME = VARIANT_NAME
ENV_NAME = LazyPattern(r"[a-zA-Z_][a-zA-Z0-9_]+")
NODE_ENV = LazyPattern(r"[a-zA-Z0-9]+")
_DEB_VERSION = r"(?:[0-9]+:)?[0-9]+[a-zA-Z0-9.+\-~]*"
_DEB_RELEASE = r"[a-zA-Z](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
DEBIAN_PACKAGE = LazyPattern(rf"[a-z0-9][a-z0-9+.\-]+(?:={_DEB_VERSION}|/{_DEB_RELEASE})?")
DEBIAN_RELEASE = LazyPattern(_DEB_RELEASE)
DEBIAN_COMPONENT = LazyPattern(r"[a-zA-Z0-9][a-zA-Z0-9/._+\-]*")
HTTP_URL = LazyPattern(r"https?://[^\s/?#@]+(?:[/?#][^\s]*)?", re.IGNORECASE)

# Docker distribution reference grammar (reference/regexp.go), anchored by fullmatch.
_ALNUM = r"[a-z0-9]+"
_NAME_COMPONENT = rf"{_ALNUM}(?:(?:[._]|__|-+){_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*"
IMAGE_REF = LazyPattern(rf"{_NAME}(?::{_TAG})?(?:@{_DIGEST})?", re.ASCII)

# PEP 440 specifiers as Blubber's pypkgver accepts them: "==1.5.1", ">=1.2,<2".
_PY_OP = r"(?:===|==|~=|!=|<=|>=|<|>)"
_PY_VER = r"[0-9][0-9A-Za-z.*+!_\-]*"
PY_SPECIFIER = LazyPattern(rf"{_PY_OP}\s*{_PY_VER}(?:\s*,\s*{_PY_OP}\s*{_PY_VER})*")
PY_BARE_VERSION = LazyPattern(_PY_VER)


@functools.lru_cache(maxsize=1024)
def go_clean(p: str) -> str:
    """Go's ``path.Clean``: lexical, '/'-separated, no special case for '//'."""
    if not p:
        return "."
    rooted = p[0] == "/"
    parts: list[str] = []
    for seg in p.split("/"):
        if seg == "" or seg == ".":
            continue
        if seg == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(seg)
    out = "/".join(parts)
    if rooted:
        return "/" + out
    return out or "."


def go_dir(p: str) -> str:
    """Go's ``path.Dir``."""
    i = p.rfind("/")
    return go_clean(p[: i + 1])


def is_abs_nonroot(p: str) -> bool:
    return p.startswith("/") and go_clean(p) != "/"


def is_relative_local(p: str) -> bool:
    """Blubber's ``relativelocal``: not absolute and not leaving the context.

    Like Blubber this is a prefix test, so ``..foo`` is refused too.
    """
    return not p.startswith("/") and not go_clean(p).startswith("..")


def is_image_ref(s: str) -> bool:
    return len(s) <= 512 and IMAGE_REF.fullmatch(s) is not None


def is_variant_name(s: str) -> bool:
    return VARIANT_NAME.fullmatch(s) is not None
