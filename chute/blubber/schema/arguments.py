"""``arguments`` [HEAD]: build arguments with defaults.

Each becomes ``ARG NAME="default"`` at the start of the stage, so it can be
overridden at build time (``--build-arg``) and is in the environment of every
later ``RUN``, where the shell expands ``$NAME`` in builder commands and
scripts, and the build expands it in mount and cache paths.
"""

from __future__ import annotations

from typing import Any

from ..instructions import Arg, Instruction, Phase
from .decode import Ctx, Path, string_map
from .runs import check_env_names

Arguments = dict[str, str]


def decode_arguments(ctx: Ctx, path: Path, value: Any) -> Arguments | None:
    args = string_map(ctx, path, value, what="build arguments")
    if args:
        check_env_names(ctx, path, args, "build argument")
    return args


def merge_arguments(old: Arguments | None, new: Arguments | None) -> Arguments | None:
    if not new:
        return old
    return {**(old or {}), **new}


def argument_instructions(args: Arguments | None, phase: Phase) -> list[Instruction]:
    if phase is not Phase.PRIVILEGED or not args:
        return []
    return [Arg(name, args[name]) for name in sorted(args)]
