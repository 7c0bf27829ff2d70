"""``builder`` (and each ``builders[].custom``): an arbitrary build step.

``command`` is a list (0.8: the first element is shell text, the rest are
quoted arguments) or [HEAD] a string (one shell command). ``script`` [HEAD]
is an inline script; it is written to a temporary in-memory directory for the
step only, so it never lands in the image. ``requirements`` are copied
first; ``mounts`` and ``caches`` are attached to the step.

Unlike Blubber 0.8, ``%`` in the command is plain text (0.8 used the first
element as a Go format string, which swallowed arguments or panicked).
"""

from __future__ import annotations

from typing import Any

from ..instructions import Cmd, Instruction, Phase, Record, Run, TmpfsMount
from .context import StageContext
from .decode import Ctx, Keys, Path, kind, mapping, string, string_list
from .mounts import CacheConfig, MountConfig, cache_flags, decode_caches, decode_mounts, mount_flags
from .requirements import Requirements, decode_requirements, requirement_copies
from .shell import printf_b_escape, printf_text, shell_quote

KEYS = Keys("builder", ("command", "script", "requirements", "mounts", "caches"))
SCRIPT_DIR = "/tmp/blubber-script-"


class BuilderConfig(Record):
    __slots__ = ("caches", "command", "command_is_text", "mounts", "requirements", "script")

    def __init__(
        self,
        command: list[str] | None = None,
        command_is_text: bool = False,
        script: str = "",
        requirements: Requirements | None = None,
        mounts: list[MountConfig] | None = None,
        caches: list[CacheConfig] | None = None,
    ) -> None:
        self.command = command
        self.command_is_text = command_is_text  # given as one string: the whole thing is shell text
        self.script = script
        self.requirements = requirements
        self.mounts = mounts
        self.caches = caches

    @classmethod
    def decode(cls, ctx: Ctx, path: Path, value: Any, *, section: Keys = KEYS) -> BuilderConfig:
        cfg = cls()
        fields = mapping(ctx, value, path, section)
        if not fields:
            return cfg
        if "command" in fields:
            p, v = fields["command"]
            if isinstance(v, str):
                if v:
                    cfg.command, cfg.command_is_text = [v], True
            elif v is None or isinstance(v, list):
                cfg.command = string_list(ctx, p, v, what="command arguments")
            else:
                ctx.error(p, f"must be a command string or a list, not {kind(v)}",
                          'write command: "make build" or command: [make, build]', decode=True)
        if "script" in fields:
            p, v = fields["script"]
            cfg.script = string(ctx, p, v)
            if cfg.script and cfg.command:
                ctx.error(p, "script cannot be combined with command", "use either command or script")
        if "requirements" in fields:
            cfg.requirements = decode_requirements(ctx, *fields["requirements"])
        if "mounts" in fields:
            cfg.mounts = decode_mounts(ctx, *fields["mounts"])
        if "caches" in fields:
            cfg.caches = decode_caches(ctx, *fields["caches"])
        return cfg

    def merged(self, other: BuilderConfig) -> BuilderConfig:
        out = BuilderConfig(self.command, self.command_is_text, self.script, self.requirements,
                            self.mounts, self.caches)
        # A later command or script replaces the earlier one, whichever kind it was.
        if other.command is not None:
            out.command, out.command_is_text, out.script = other.command, other.command_is_text, ""
        if other.script:
            out.script, out.command, out.command_is_text = other.script, None, False
        if other.requirements is not None:
            out.requirements = other.requirements
        if other.mounts is not None:
            out.mounts = other.mounts
        if other.caches is not None:
            out.caches = other.caches
        return out

    def is_set(self) -> bool:
        return bool(self.command or self.script or self.requirements or self.mounts or self.caches)

    def dependencies(self) -> list[str]:
        deps = [a.from_ for a in self.requirements or () if not a.is_local]
        deps += [d for d in (m.dependency() for m in self.mounts or ()) if d]
        return deps

    def instructions(self, phase: Phase, st: StageContext, origin: str = "builder") -> list[Instruction]:
        if phase is not Phase.PRE_INSTALL:
            return []
        out = requirement_copies(self.requirements or [], st, origin + ".requirements")
        mounts = (*mount_flags(self.mounts or [], st), *cache_flags(self.caches or [], st))
        if self.script:
            out.append(_script_run(self.script, mounts, origin))
        elif self.command:
            if self.command_is_text:
                cmd = Cmd(_shell_text(self.command[0]))
            else:
                cmd = Cmd(_shell_text(self.command[0]), tuple(self.command[1:]))
            out.append(Run((cmd,), origin, mounts))
        return out


def _shell_text(text: str) -> str:
    """Shell text for one RUN line; several lines are run with ``eval`` as one script."""
    if "\n" not in text:
        return text
    return f'eval "$({printf_text(text)})"'


def _script_run(script: str, mounts: tuple, origin: str) -> Run:
    import hashlib

    if not script.startswith("#!"):
        script = "#!/bin/sh\n" + script
    d = SCRIPT_DIR + hashlib.sha256(script.encode()).hexdigest()[:16]
    path = shell_quote(d + "/script")
    return Run((
        Cmd(f"printf '%b' {shell_quote(printf_b_escape(script))} > {path}"),
        Cmd(f"chmod 0555 {path}"),
        Cmd(path),
    ), origin, (TmpfsMount(d), *mounts))
