"""``requirements`` of node, python, php and builders: files copied before installing.

Plain strings (all 0.8 knew) are synced the way Blubber 0.8 did: grouped by
directory, directories sorted, one ``mkdir -p`` for the subdirectories, one
``COPY`` per directory. Longhand entries ``{from, source, destination,
exclude}`` ([HEAD]) are grouped by source and destination in input order.
A list may mix both; each run of strings and each run of mappings keeps its
own rule, in order.
"""

from __future__ import annotations

from typing import Any

from ..instructions import Cmd, Copy, Instruction, Run
from .artifacts import Artifact, decode_artifact
from .context import StageContext
from .decode import Ctx, Path, items
from .validation import go_clean, go_dir

Requirements = list[Artifact]


def decode_requirements(ctx: Ctx, path: Path, value: Any) -> Requirements | None:
    entries = items(ctx, path, value, what="file paths or {from, source, destination} mappings")
    if entries is None:
        return None
    out = []
    for p, v in entries:
        art = decode_artifact(ctx, p, v, shorthand_means="source")
        if art is not None:
            out.append(art)
    return out


def dependencies(reqs: Requirements | None) -> list[str]:
    return [a.from_ for a in reqs or () if not a.is_local]


def requirement_copies(reqs: Requirements, st: StageContext, origin: str) -> list[Instruction]:
    """The instructions that put the requirements in place (pre-install phase)."""
    out: list[Instruction] = []
    i = 0
    n = len(reqs)
    while i < n:
        j = i
        if reqs[i].shorthand:
            while j < n and reqs[j].shorthand:
                j += 1
            out.extend(sync_files([a.source for a in reqs[i:j]], origin))
        else:
            while j < n and not reqs[j].shorthand:
                j += 1
            out.extend(_grouped_copies(reqs[i:j], st, origin))
        i = j
    return out


def sync_files(files: list[str], origin: str) -> list[Instruction]:
    """Blubber 0.8's ``SyncFiles(files, ".")``."""
    groups: dict[str, list[str]] = {}
    for f in files:
        groups.setdefault(go_dir(f) + "/", []).append(go_clean(f))
    dirs = sorted(groups)
    dests = [go_clean("./" + d) + "/" for d in dirs]
    out: list[Instruction] = []
    subdirs = tuple(dest for d, dest in zip(dirs, dests, strict=True) if d != "./")
    if subdirs:
        out.append(Run((Cmd("mkdir -p", subdirs),), origin))
    for d, dest in zip(dirs, dests, strict=True):
        out.append(Copy(tuple(groups[d]), dest, origin=origin))
    return out


def _grouped_copies(reqs: list[Artifact], st: StageContext, origin: str) -> list[Instruction]:
    """[HEAD] one COPY per (from, destination), sources in input order."""
    groups: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    for art in reqs:
        from_ = "" if art.is_local else art.from_
        src = art.normalized_source()
        if from_:
            src = st.source_in(from_, src)
        srcs, excl = groups.setdefault((from_, art.normalized_destination()), ([], []))
        srcs.append(src)
        excl.extend(art.exclude)
    return [Copy(tuple(srcs), dest, from_=from_, exclude=tuple(excl), origin=origin)
            for (from_, dest), (srcs, excl) in groups.items()]


def pip_paths(reqs: Requirements) -> list[str]:
    """The requirement files as ``pip install -r`` sees them after the copy."""
    out = []
    for a in reqs:
        if a.shorthand:  # where sync_files put it: ./<dir>/<name>
            dest_dir = go_clean("./" + go_dir(a.source) + "/") + "/"
            name = go_clean(a.source).rsplit("/", 1)[-1]
            out.append(name if dest_dir == "./" else dest_dir + name)
        else:
            out.append(a.effective_destination())
    return out
