"""``builders`` [HEAD]: an ordered list of builders, each ``{node|python|php|custom: ...}``.

node, python and php may appear once each; ``custom`` (same fields as
``builder``) any number of times. On merge, a typed builder present in both
lists is merged field by field and takes the later list's position; builders
only in the earlier list (all custom ones included) come first.
"""

from __future__ import annotations

from typing import Any

from ..instructions import Instruction, Phase, Record
from .builder import KEYS as BUILDER_KEYS
from .builder import BuilderConfig
from .context import StageContext
from .decode import Ctx, Keys, Path, items, kind
from .node import NodeConfig
from .php import PhpConfig
from .python import PythonConfig
from .requirements import dependencies as requirement_deps

KINDS = ("node", "python", "php", "custom")
ENTRY_KEYS = Keys("a builders entry", KINDS)
CUSTOM_KEYS = Keys("builders[].custom", BUILDER_KEYS.names)

Builder = NodeConfig | PythonConfig | PhpConfig | BuilderConfig


class BuilderEntry(Record):
    __slots__ = ("config", "kind", "path")

    def __init__(self, kind: str, config: Builder, path: Path = ()) -> None:
        self.kind = kind
        self.config = config
        self.path = path



def decode_builders(ctx: Ctx, path: Path, value: Any) -> list[BuilderEntry] | None:
    entries = items(ctx, path, value, what="builders")
    if entries is None:
        return None
    out: list[BuilderEntry] = []
    seen: dict[str, Path] = {}
    for p, v in entries:
        if not isinstance(v, dict) or len(v) != 1:
            got = kind(v) if not isinstance(v, dict) else f"a mapping with {len(v)} keys"
            ctx.error(p, f"each builder must be a mapping with exactly one of node, python, php or custom, "
                      f"not {got}", "write - custom: {command: ...} (one builder per list entry)",
                      decode=True)
            continue
        (key, body), = v.items()
        name = ENTRY_KEYS.canonical(key)
        kp = (*p, key)
        if name is None:
            ctx.error(kp, f"unknown builder {key!r}", ENTRY_KEYS.unknown_hint(key), at_key=True, decode=True)
            continue
        if name != "custom":
            if name in seen:
                ctx.error(kp, f"contains disallowed repetitions of entries: {name} appears more than once",
                          "node, python and php may each appear once; merge the two entries", at_key=True)
            seen.setdefault(name, kp)
        cfg: Builder
        if name == "node":
            cfg = NodeConfig.decode(ctx, kp, body)
        elif name == "python":
            cfg = PythonConfig.decode(ctx, kp, body)
        elif name == "php":
            cfg = PhpConfig.decode(ctx, kp, body)
        else:
            cfg = BuilderConfig.decode(ctx, kp, body, section=CUSTOM_KEYS)
        out.append(BuilderEntry(name, cfg, kp))
    return out


def merge_builders(old: list[BuilderEntry] | None,
                   new: list[BuilderEntry] | None) -> list[BuilderEntry] | None:
    if new is None:
        return old
    if not old:
        return list(new)
    new = list(new)
    pos = {e.kind: i for i, e in enumerate(new) if e.kind != "custom"}
    leading = []
    for e in old:
        i = pos.get(e.kind) if e.kind != "custom" else None
        if i is None:
            leading.append(e)
        else:
            later = new[i]
            new[i] = BuilderEntry(e.kind, e.config.merged(later.config), later.path)  # type: ignore[arg-type]
    return leading + new


def builders_dependencies(builders: list[BuilderEntry] | None) -> list[str]:
    deps: list[str] = []
    for e in builders or ():
        if isinstance(e.config, BuilderConfig):
            deps += e.config.dependencies()
        else:
            deps += requirement_deps(e.config.requirements)
    return deps


def builders_instructions(builders: list[BuilderEntry] | None, phase: Phase,
                          st: StageContext) -> list[Instruction]:
    out: list[Instruction] = []
    for e in builders or ():
        if isinstance(e.config, BuilderConfig):
            out += e.config.instructions(phase, st, "builder")
        else:
            out += e.config.instructions(phase, st)
    return out
