"""What a config section needs to know about the stage it is compiled into."""

from __future__ import annotations

import re

from ..instructions import Record

_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


class StageContext(Record):
    """Per-stage facts: the app directory and owners, the known environment, other stages."""

    __slots__ = (
        "app_dir", "env", "lives_as", "lives_gid", "lives_uid", "problems", "variant", "variants",
        "workdirs",
    )

    def __init__(
        self,
        variant: str,
        app_dir: str,
        lives_as: str,
        lives_uid: int,
        lives_gid: int,
        env: dict[str, str] | None = None,
        workdirs: dict[str, str] | None = None,
        variants: frozenset[str] = frozenset(),
        problems: list[tuple[tuple[str | int, ...], str, str]] | None = None,
    ) -> None:
        self.variant = variant
        self.app_dir = app_dir  # lives.in
        self.lives_as = lives_as
        self.lives_uid = lives_uid
        self.lives_gid = lives_gid
        self.env = {} if env is None else env  # values chute substitutes itself
        self.workdirs = {} if workdirs is None else workdirs  # stage name -> its final working directory
        self.variants = variants
        self.problems = [] if problems is None else problems

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
