"""The ``chute`` console script.

``chute blubber CONFIG VARIANT`` is run as a fresh process by scripts, editors
and the pipeline, so it is dispatched here without importing Typer, rich or
pydantic (those alone cost more than the 100 ms budget). Every other command,
and ``--help``, goes to the Typer app in :mod:`chute.cli`.
"""

from __future__ import annotations

import os
import sys


def blubber_main(config: str, variant: str, policy: str | None) -> int:
    """Print the Dockerfile for ``variant``; return the exit code (Blubber's codes)."""
    from chute.blubber import compile_variant, load_config, load_policy
    from chute.config import ConfigError

    try:
        cfg = load_config(config)
        pol = load_policy(policy) if policy else None
        text = compile_variant(cfg, variant, policy=pol)
    except ConfigError as err:
        sys.stderr.write(err.format() + "\n")
        return err.exit_code
    sys.stdout.write(text)
    return 0


def _fast_blubber(args: list[str]) -> int | None:
    """Handle ``blubber [-p POLICY] CONFIG VARIANT``; None means "let Typer do it"."""
    policy = None
    positional: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-p", "--policy") and i + 1 < len(args):
            policy = args[i + 1]
            i += 2
            continue
        if a.startswith("--policy="):
            policy = a.split("=", 1)[1]
        elif a.startswith("-") and a != "-":
            return None  # --help and friends
        else:
            positional.append(a)
        i += 1
    if len(positional) != 2:
        return None
    return blubber_main(positional[0], positional[1], policy)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "blubber" and not os.environ.get("CHUTE_NO_FAST_PATH"):
        code = _fast_blubber(args[1:])
        if code is not None:
            sys.stdout.flush()
            raise SystemExit(code)
    from chute.cli import main as typer_main

    typer_main(args)


if __name__ == "__main__":  # pragma: no cover
    main()
