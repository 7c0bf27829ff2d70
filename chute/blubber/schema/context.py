"""What a config section needs to know about the stage it is compiled into."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


@dataclass(eq=False)
class StageContext:
    """Per-stage facts: the app directory and owners, the known environment, other stages."""

    variant: str
    app_dir: str  # lives.in
    lives_as: str
    lives_uid: int
    lives_gid: int
    env: dict[str, str] = field(default_factory=dict)  # values chute substitutes itself
    workdirs: dict[str, str] = field(default_factory=dict)  # stage name -> its final working directory
    variants: frozenset[str] = frozenset()
    # (path, message, hint) found while compiling, e.g. a mount path that cannot be written
    problems: list[tuple[tuple[str | int, ...], str, str]] = field(default_factory=list)

    def expand(self, s: str) -> str:
        """Substitute the build arguments Blubber (HEAD) defines but the Dockerfile does not.

        ``$LIVES_UID`` and friends are build arguments in current Blubber; chute
        keeps 0.8's fixed values, so it writes them in. Every other ``$VAR``
        (runs.environment, arguments, the base image's ENV) is left for the
        build, which expands it in ``RUN --mount`` options just as Blubber does.
        """
        if "$" not in s:
            return s

        def sub(m: re.Match[str]) -> str:
            value = self.env.get(m.group(1) or m.group(2))
            return m.group(0) if value is None else value

        return _VAR.sub(sub, s)

    def source_in(self, from_: str, source: str) -> str:
        """A source path in another variant's filesystem, made absolute.

        Blubber (HEAD) copies relative paths from a variant relative to that
        variant's working directory; a Dockerfile ``COPY --from`` would read
        them relative to ``/``.
        """
        workdir = self.workdirs.get(from_)
        if workdir is None or source.startswith("/"):
            return source
        from .validation import go_clean

        joined = go_clean(workdir + "/" + source)
        if source.endswith("/") or go_clean(source) == ".":
            joined = joined.rstrip("/") + "/"
        return joined
