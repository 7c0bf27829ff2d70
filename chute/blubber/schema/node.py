"""``node``: npm dependencies and ``NODE_ENV``."""

from __future__ import annotations

from typing import Any

from ..instructions import Cmd, Env, Instruction, Phase, Record, Run
from .context import StageContext
from .decode import Ctx, Keys, Path, mapping, string
from .flag import flag, merge_flag
from .requirements import Requirements, decode_requirements, requirement_copies
from .validation import NODE_ENV

KEYS = Keys("node", ("requirements", "env", "use-npm-ci", "allow-dedupe-failure"))

DEDUPE_WARNING = "WARNING: npm dedupe failed, continuing anyways"


class NodeConfig(Record):
    __slots__ = ("allow_dedupe_failure", "env", "requirements", "use_npm_ci")

    def __init__(
        self,
        requirements: Requirements | None = None,
        env: str = "",
        use_npm_ci: bool | None = None,
        allow_dedupe_failure: bool | None = None,
    ) -> None:
        self.requirements = requirements
        self.env = env
        self.use_npm_ci = use_npm_ci
        self.allow_dedupe_failure = allow_dedupe_failure

    @classmethod
    def decode(cls, ctx: Ctx, path: Path, value: Any) -> NodeConfig:
        cfg = cls()
        fields = mapping(ctx, value, path, KEYS)
        if not fields:
            return cfg
        if "requirements" in fields:
            cfg.requirements = decode_requirements(ctx, *fields["requirements"])
        if "env" in fields:
            p, v = fields["env"]
            cfg.env = string(ctx, p, v)
            if cfg.env and not NODE_ENV.fullmatch(cfg.env):
                ctx.error(p, f"{cfg.env!r} is not a valid Node environment name",
                          "use letters and digits only, e.g. production or development")
        if "use-npm-ci" in fields:
            cfg.use_npm_ci = flag(ctx, *fields["use-npm-ci"])
        if "allow-dedupe-failure" in fields:
            cfg.allow_dedupe_failure = flag(ctx, *fields["allow-dedupe-failure"])
        return cfg

    def merged(self, other: NodeConfig) -> NodeConfig:
        return NodeConfig(
            other.requirements if other.requirements is not None else self.requirements,
            other.env or self.env,
            merge_flag(self.use_npm_ci, other.use_npm_ci),
            merge_flag(self.allow_dedupe_failure, other.allow_dedupe_failure),
        )

    def is_set(self) -> bool:
        return bool(self.requirements or self.env or self.use_npm_ci is not None
                    or self.allow_dedupe_failure is not None)

    def instructions(self, phase: Phase, st: StageContext) -> list[Instruction]:
        if phase is Phase.PRE_INSTALL:
            if not self.requirements:
                return []
            out = requirement_copies(self.requirements, st, "node.requirements")
            install = Cmd("npm ci") if self.use_npm_ci else Cmd("npm install")
            if self.env == "production":
                install = Cmd(install.text, ("--only=production",))
                # npm >= 7's dedupe re-resolves the whole tree: without the flag it installs the
                # devDependencies the install left out (current Blubber passes --omit=dev to both).
                if self.allow_dedupe_failure:
                    dedupe = Cmd(f'{{ npm dedupe "--only=production" || echo "{DEDUPE_WARNING}"; }}')
                else:
                    dedupe = Cmd("npm dedupe", ("--only=production",))
                out.append(Run((install, dedupe), "node"))
            else:
                out.append(Run((install,), "node"))
            return out
        if phase is Phase.POST_INSTALL and (self.env or self.requirements):
            return [Env((("NODE_ENV", self.env),), "node")]
        return []
