"""``php`` [later-DF]: composer dependencies."""

from __future__ import annotations

from typing import Any

from ..instructions import Cmd, Instruction, Phase, Record, Run
from .context import StageContext
from .decode import Ctx, Keys, Path, mapping
from .flag import flag, merge_flag
from .requirements import Requirements, decode_requirements, requirement_copies

KEYS = Keys("php", ("requirements", "production"))


class PhpConfig(Record):
    __slots__ = ("production", "requirements")

    def __init__(self, requirements: Requirements | None = None, production: bool | None = None) -> None:
        self.requirements = requirements
        self.production = production

    @classmethod
    def decode(cls, ctx: Ctx, path: Path, value: Any) -> PhpConfig:
        cfg = cls()
        fields = mapping(ctx, value, path, KEYS)
        if not fields:
            return cfg
        if "requirements" in fields:
            cfg.requirements = decode_requirements(ctx, *fields["requirements"])
        if "production" in fields:
            cfg.production = flag(ctx, *fields["production"])
        return cfg

    def merged(self, other: PhpConfig) -> PhpConfig:
        return PhpConfig(
            other.requirements if other.requirements is not None else self.requirements,
            merge_flag(self.production, other.production),
        )

    def is_set(self) -> bool:
        return bool(self.requirements or self.production is not None)

    def instructions(self, phase: Phase, st: StageContext) -> list[Instruction]:
        if phase is not Phase.PRE_INSTALL or not self.requirements:
            return []
        out = requirement_copies(self.requirements, st, "php.requirements")
        args = ("--no-scripts", "--no-dev") if self.production else ("--no-scripts",)
        out.append(Run((Cmd("composer install", args),), "php"))
        return out
