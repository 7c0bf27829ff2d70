"""``builder.mounts`` and ``builder.caches`` [HEAD]: filesystems attached to one build step.

A mount shows another variant, an image or the build context at a path
(read-write; changes are discarded). A cache is a directory kept between
builds. Both become ``RUN --mount=...`` flags; their paths may use ``$VAR``
from the config's environment and build arguments.
"""

from __future__ import annotations

import re
from typing import Any

from ..instructions import BindMount, CacheMount, Record
from .artifacts import LOCAL
from .context import StageContext
from .decode import Ctx, Keys, Path, items, mapping, string
from .validation import go_clean, is_variant_name

MOUNT_KEYS = Keys("a mount", ("from", "destination", "source"))
CACHE_KEYS = Keys("a cache", ("destination", "id", "access"))
ACCESS = ("shared", "private", "locked")
# Characters that would break the comma/space separated --mount flag.
_UNSAFE = re.compile(r"[\s,\"'=]")


class MountConfig(Record):
    __slots__ = ("destination", "from_", "path", "source")

    def __init__(self, from_: str, destination: str = "", source: str = "", path: Path = ()) -> None:
        self.from_ = from_
        self.destination = destination
        self.source = source
        self.path = path

    def dependency(self) -> str | None:
        # Like Blubber: only names shaped like a variant name can be variants.
        if self.from_ != LOCAL and is_variant_name(self.from_):
            return self.from_
        return None


class CacheConfig(Record):
    __slots__ = ("access", "destination", "id", "path")

    def __init__(self, destination: str, id: str = "", access: str = "", path: Path = ()) -> None:
        self.destination = destination
        self.id = id
        self.access = access
        self.path = path



def decode_mounts(ctx: Ctx, path: Path, value: Any) -> list[MountConfig] | None:
    entries = items(ctx, path, value, what="mounts")
    if entries is None:
        return None
    out = []
    for p, v in entries:
        if isinstance(v, str):
            out.append(MountConfig(v, path=p))
            continue
        fields = mapping(ctx, v, p, MOUNT_KEYS)
        if fields is None:
            if v is None:
                ctx.error(p, "an empty (null) mount", "write a variant name, local, or {from: ...}",
                          decode=True)
            continue
        m = MountConfig(string(ctx, *fields["from"]) if "from" in fields else "",
                        string(ctx, *fields["destination"]) if "destination" in fields else "",
                        string(ctx, *fields["source"]) if "source" in fields else "", p)
        if not m.from_:
            ctx.error(p, "from is required for a mount", "write from: local, a variant name or an image")
        out.append(m)
    return out


def decode_caches(ctx: Ctx, path: Path, value: Any) -> list[CacheConfig] | None:
    entries = items(ctx, path, value, what="cache directories")
    if entries is None:
        return None
    out = []
    for p, v in entries:
        if isinstance(v, str):
            if not v:
                ctx.error(p, "an empty cache destination", "write the directory to cache")
            out.append(CacheConfig(v, path=p))
            continue
        fields = mapping(ctx, v, p, CACHE_KEYS)
        if fields is None:
            if v is None:
                ctx.error(p, "an empty (null) cache", "write a directory or {destination: ...}", decode=True)
            continue
        c = CacheConfig(string(ctx, *fields["destination"]) if "destination" in fields else "",
                        string(ctx, *fields["id"]) if "id" in fields else "",
                        string(ctx, *fields["access"]) if "access" in fields else "", p)
        if not c.destination:
            ctx.error(p, "destination is required for a cache", "write the directory to cache")
        if c.access and c.access not in ACCESS:
            ctx.error(fields["access"][0], f"{c.access!r} is not a cache access mode",
                      "use shared (the default), private or locked")
        out.append(c)
    return out


def _abs(st: StageContext, p: str) -> str:
    p = st.expand(p)
    if not p.startswith("/") and not p.startswith("$"):
        p = go_clean(st.app_dir + "/" + p)
    return p


def _check(st: StageContext, path: Path, what: str, value: str) -> None:
    if _UNSAFE.search(value):
        st.problems.append((path, f"{what} {value!r} cannot be used in a mount",
                         "remove spaces, commas, quotes and '=' from the path"))


def mount_flags(mounts: list[MountConfig], st: StageContext) -> list[BindMount]:
    out = []
    for m in mounts:
        target = _abs(st, m.destination or ".")
        source = st.expand(m.source) if m.source else ""
        from_ = "" if m.from_ == LOCAL else m.from_
        for what, val in (("destination", target), ("source", source), ("from", from_)):
            _check(st, m.path, what, val)
        out.append(BindMount(target, source, from_, rw=True))
    return out


def cache_flags(caches: list[CacheConfig], st: StageContext) -> list[CacheMount]:
    out = []
    for c in caches:
        target = _abs(st, c.destination)
        cid = st.expand(c.id)  # empty: the engine uses the target, as Blubber does
        for what, val in (("destination", target), ("id", cid)):
            _check(st, c.path, what, val)
        out.append(CacheMount(target, cid, c.access or "shared", st.lives_uid, st.lives_gid))
    return out
