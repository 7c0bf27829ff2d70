"""``runs``: the runtime user, environment and (HEAD) working directory."""

from __future__ import annotations

from typing import Any

from ..instructions import Env, Instruction, Phase, Record, Run, Workdir
from .decode import Ctx, Keys, Path, mapping, string, string_map, uint
from .flag import flag, merge_flag
from .lives import check_abspath, check_user, create_user
from .validation import ENV_NAME

KEYS = Keys("runs", ("in", "as", "uid", "gid", "environment", "insecurely"))

DEFAULT_AS = "runuser"
DEFAULT_ID = 900


def check_env_names(ctx: Ctx, path: Path, names: dict[str, str], what: str) -> None:
    for name in names:
        if not ENV_NAME.fullmatch(name):
            ctx.error((*path, name), f"{name!r} is not a valid {what} name",
                      "use letters, digits and '_', at least 2 characters, not starting with a digit",
                      at_key=True)


class RunsConfig(Record):
    __slots__ = ("as_", "environment", "gid", "in_", "insecurely", "uid")

    def __init__(
        self,
        in_: str = "",
        as_: str = "",
        uid: int = 0,
        gid: int = 0,
        environment: dict[str, str] | None = None,
        insecurely: bool | None = None,
    ) -> None:
        self.in_ = in_
        self.as_ = as_
        self.uid = uid
        self.gid = gid
        self.environment = environment
        self.insecurely = insecurely

    @classmethod
    def decode(cls, ctx: Ctx, path: Path, value: Any, base: RunsConfig | None = None) -> RunsConfig:
        cfg = RunsConfig(base.in_, base.as_, base.uid, base.gid, base.environment, base.insecurely) \
            if base else cls()
        fields = mapping(ctx, value, path, KEYS)
        if not fields:
            return cfg
        for key, (p, v) in fields.items():
            if v is None:
                continue
            if key == "in":
                cfg.in_ = string(ctx, p, v)
                check_abspath(ctx, p, cfg.in_)
            elif key == "as":
                cfg.as_ = string(ctx, p, v)
                check_user(ctx, p, cfg.as_)
            elif key == "uid":
                cfg.uid = uint(ctx, p, v, what="user id")
            elif key == "gid":
                cfg.gid = uint(ctx, p, v, what="group id")
            elif key == "environment":
                cfg.environment = string_map(ctx, p, v, what="environment variables")
                if cfg.environment:
                    check_env_names(ctx, p, cfg.environment, "environment variable")
            else:
                cfg.insecurely = flag(ctx, p, v)
        return cfg

    def merged(self, other: RunsConfig) -> RunsConfig:
        env = self.environment
        if other.environment:
            env = {**(self.environment or {}), **other.environment}
        return RunsConfig(other.in_ or self.in_, other.as_ or self.as_, other.uid or self.uid,
                          other.gid or self.gid, env, merge_flag(self.insecurely, other.insecurely))

    def instructions(self, phase: Phase) -> list[Instruction]:
        if phase is Phase.PRIVILEGED:
            return [Run(create_user(self.as_, self.uid, self.gid), "runs")]
        if phase is Phase.PRIVILEGE_DROPPED and self.environment:
            return [Env(tuple(self.environment.items()), "runs")]
        if phase is Phase.POST_INSTALL and self.in_:
            return [Workdir(self.in_, "runs")]
        return []
