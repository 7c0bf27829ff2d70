"""``copies`` (variants only): application files from the context, another variant or an image.

Shorthand strings name the source (``[local]``, ``[build]``); mappings give
``from``/``source``/``destination``/``exclude``. Merging appends and drops
earlier entries equal to a later one. The copies are expanded against the
*target* variant's ``lives.in`` when the variant is compiled, and land in the
install phase.
"""

from __future__ import annotations

from typing import Any

from ..instructions import Copy, Instruction
from .artifacts import Artifact, decode_artifact
from .context import StageContext
from .decode import Ctx, Path, items

Copies = list[Artifact]


def decode_copies(ctx: Ctx, path: Path, value: Any) -> Copies | None:
    if isinstance(value, str):
        ctx.error(path, f"must be a list, not a string ({value!r} is the v3 form)",
                  f"write copies: [{value}]", decode=True)
        return None
    entries = items(ctx, path, value, what="variant names or {from, source, destination} mappings")
    if entries is None:
        return None
    out: Copies = []
    seen: dict[tuple, Path] = {}
    for p, v in entries:
        art = decode_artifact(ctx, p, v, shorthand_means="from")
        if art is None:
            continue
        key = art.key()
        if key in seen:
            ctx.error(p, "cannot contain duplicates",
                      f"the same copy is already at {_fmt(seen[key])}; remove one")
        seen.setdefault(key, p)
        out.append(art)
    return out


def _fmt(path: Path) -> str:
    from chute.config import format_path

    return format_path(path)


def merge_copies(old: Copies | None, new: Copies | None) -> Copies | None:
    """Additive, later wins: earlier entries equal to a new one are dropped."""
    if new is None:
        return old
    if not old:
        return list(new)
    new_keys = {a.key() for a in new}
    return [a for a in old if a.key() not in new_keys] + list(new)


def dependencies(copies: Copies | None) -> list[str]:
    return [a.from_ for a in copies or () if not a.is_local]


def copy_instructions(copies: Copies, st: StageContext) -> list[Instruction]:
    out: list[Instruction] = []
    for art in copies:
        for exp in art.expand(st.app_dir):
            from_ = "" if exp.is_local else exp.from_
            source = st.source_in(from_, exp.source) if from_ else exp.source
            out.append(Copy((source,), exp.destination, from_=from_, exclude=exp.exclude, origin="copies"))
    return out
