"""Build instructions as plain data, grouped in phases.

Each config section (apt, node, python, ...) turns itself into a list of these
for a given :class:`Phase`; :mod:`chute.blubber.compiler` assembles them into
stages, and :mod:`chute.blubber.dockerfile` renders them. Nothing here knows
about Dockerfile syntax beyond what the data has to carry.

Every instruction has an ``origin`` naming the config section that produced
it (``apt``, ``python``, ``copies``, ...). Tests use it to compare outputs
section by section, and ``chute lint`` to point at the section responsible.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class Phase(IntEnum):
    """Blubber's build phases, in the order their instructions appear."""

    PRIVILEGED = 0  # as root: packages, users, directories
    PRIVILEGE_DROPPED = 1  # as the lives user: WORKDIR, runtime ENV
    PRE_INSTALL = 2  # dependency installs (node, python, php, builders)
    INSTALL = 3  # the application files (copies)
    POST_INSTALL = 4  # as the runs user: runtime ENV, WORKDIR, ENTRYPOINT


PHASES: tuple[Phase, ...] = tuple(Phase)


@dataclass(slots=True)
class Cmd:
    """One shell command: ``text`` is emitted as written, ``args`` are quoted."""

    text: str
    args: tuple[str, ...] = ()


@dataclass(slots=True)
class BindMount:
    """``RUN --mount=type=bind``: a directory of another stage, image or the context."""

    target: str
    source: str = ""
    from_: str = ""  # "" = the build context
    rw: bool = True


@dataclass(slots=True)
class CacheMount:
    """``RUN --mount=type=cache``: a persistent cache directory."""

    target: str
    id: str  # "" = the engine uses the target
    sharing: str = "shared"  # shared | private | locked
    uid: int = 0
    gid: int = 0


@dataclass(slots=True)
class TmpfsMount:
    """``RUN --mount=type=tmpfs``: an empty scratch directory for one step."""

    target: str


Mount = BindMount | CacheMount | TmpfsMount


@dataclass(slots=True)
class Run:
    """Shell commands joined with ``&&`` in one step, with optional mounts."""

    cmds: tuple[Cmd, ...]
    origin: str = ""
    mounts: tuple[Mount, ...] = ()


@dataclass(slots=True)
class Env:
    """Environment variables for later steps and the image (rendered sorted)."""

    values: tuple[tuple[str, str], ...]
    origin: str = ""


@dataclass(slots=True)
class Label:
    values: tuple[tuple[str, str], ...]
    origin: str = "label"


@dataclass(slots=True)
class Arg:
    """A build argument with its default; also visible to later RUN steps."""

    name: str
    default: str
    origin: str = "arguments"


@dataclass(slots=True)
class User:
    name: str
    origin: str = "user"


@dataclass(slots=True)
class Workdir:
    path: str
    origin: str = ""


@dataclass(slots=True)
class Entrypoint:
    argv: tuple[str, ...]
    origin: str = "entrypoint"


@dataclass(slots=True)
class Copy:
    """Copy ``sources`` to ``dest`` from the context (``from_ == ""``), a stage or an image.

    ``exclude`` holds .dockerignore-style patterns; the compiler rewrites such
    a copy into a filtering stage because podman 4.3 has no ``COPY --exclude``.
    """

    sources: tuple[str, ...]
    dest: str
    from_: str = ""
    chown: tuple[int, int] | None = None
    exclude: tuple[str, ...] = ()
    origin: str = ""


Instruction = Run | Env | Label | Arg | User | Workdir | Entrypoint | Copy


@dataclass(slots=True)
class Stage:
    """One ``FROM`` and its instructions. ``base`` None means ``FROM scratch``."""

    name: str
    base: str | None
    alias: bool  # render "AS <name>"
    instructions: list[Instruction] = field(default_factory=list)
    variant: str = ""  # the variant this stage builds ("" for helper stages)


def home_of(user: str) -> str:
    """The home directory Blubber gives a user."""
    return "/root" if user == "root" else "/home/" + user
