"""``lives``: where the application lives and which user owns its files."""

from __future__ import annotations

import functools
from typing import Any

from ..instructions import Cmd, Instruction, Phase, Record, Run, Workdir, home_of
from .artifacts import LIB_DIR
from .decode import Ctx, Keys, Path, mapping, string, uint
from .validation import USER_NAME, is_abs_nonroot

KEYS = Keys("lives", ("in", "as", "uid", "gid"))

DEFAULT_IN = "/srv/app"
DEFAULT_AS = "somebody"
DEFAULT_ID = 65533


def check_user(ctx: Ctx, path: Path, name: str) -> None:
    if not name:
        return
    if name == "root":
        ctx.error(path, '"root" is not allowed here', "use an unprivileged user name such as somebody")
    elif not USER_NAME.fullmatch(name):
        ctx.error(path, f"{name!r} is not a valid user name",
                  "a user name starts with a letter, has at least 3 characters of letters, digits, '-' "
                  "or '.', and ends with a letter or digit (no '_')")


def check_abspath(ctx: Ctx, path: Path, value: str) -> None:
    if value and not is_abs_nonroot(value):
        ctx.error(path, f"{value!r} is not a valid absolute non-root path",
                  "write an absolute path such as /srv/app")


class LivesConfig(Record):
    __slots__ = ("as_", "gid", "in_", "uid")

    def __init__(self, in_: str = "", as_: str = "", uid: int = 0, gid: int = 0) -> None:
        self.in_ = in_
        self.as_ = as_
        self.uid = uid
        self.gid = gid

    @classmethod
    def decode(cls, ctx: Ctx, path: Path, value: Any, base: LivesConfig | None = None) -> LivesConfig:
        """Decode over ``base`` (the built-in defaults at the top level)."""
        cfg = LivesConfig(base.in_, base.as_, base.uid, base.gid) if base else cls()
        fields = mapping(ctx, value, path, KEYS)
        if not fields:
            return cfg
        for key, (p, v) in fields.items():
            if v is None:
                continue  # null leaves the field as it was (Go)
            if key == "in":
                cfg.in_ = string(ctx, p, v)
                check_abspath(ctx, p, cfg.in_)
            elif key == "as":
                cfg.as_ = string(ctx, p, v)
                check_user(ctx, p, cfg.as_)
            elif key == "uid":
                cfg.uid = uint(ctx, p, v, what="user id")
            else:
                cfg.gid = uint(ctx, p, v, what="group id")
        return cfg

    def merged(self, other: LivesConfig) -> LivesConfig:
        # Zero/empty means "not set", so a variant cannot set a uid back to 0 (as in Blubber).
        return LivesConfig(other.in_ or self.in_, other.as_ or self.as_, other.uid or self.uid,
                           other.gid or self.gid)

    def instructions(self, phase: Phase) -> list[Instruction]:
        if phase is Phase.PRIVILEGED:
            return [_setup(self.as_, self.uid, self.gid, self.in_)]
        if phase is Phase.PRIVILEGE_DROPPED:
            return [Workdir(self.in_, "lives")]
        return []


# The same few users recur in every stage of every variant: build their commands once.
@functools.lru_cache(maxsize=256)
def _setup(name: str, uid: int, gid: int, app_dir: str) -> Run:
    chown = f'chown "{uid}":"{gid}"'
    return Run((*create_user(name, uid, gid), Cmd("mkdir -p", (app_dir,)), Cmd(chown, (app_dir,)),
                Cmd("mkdir -p", (LIB_DIR,)), Cmd(chown, (LIB_DIR,))), "lives")


@functools.lru_cache(maxsize=256)
def create_user(name: str, uid: int, gid: int) -> tuple[Cmd, Cmd]:
    """Blubber 0.8's user creation (by name; ``-o`` tolerates an existing id)."""
    from ..dockerfile import go_quote

    q = go_quote(name)
    return (Cmd(f'groupadd -o -g "{gid}" -r {q}'),
            Cmd(f"useradd -l -o -m -d {go_quote(home_of(name))} -r -g {q} -u \"{uid}\" {q}"))
