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

from enum import IntEnum


class Phase(IntEnum):
    """Blubber's build phases, in the order their instructions appear."""

    PRIVILEGED = 0  # as root: packages, users, directories
    PRIVILEGE_DROPPED = 1  # as the lives user: WORKDIR, runtime ENV
    PRE_INSTALL = 2  # dependency installs (node, python, php, builders)
    INSTALL = 3  # the application files (copies)
    POST_INSTALL = 4  # as the runs user: runtime ENV, WORKDIR, ENTRYPOINT


PHASES: tuple[Phase, ...] = tuple(Phase)


class Record:
    """Plain slotted records: cheap to define (``chute blubber`` starts fast) and to create."""

    __slots__ = ()
    __hash__ = None  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
        return f"{type(self).__name__}({fields})"


class Cmd(Record):
    """One shell command: ``text`` is emitted as written, ``args`` are quoted."""

    __slots__ = ("args", "text")

    def __init__(self, text: str, args: tuple[str, ...] = ()) -> None:
        self.text = text
        self.args = args


class BindMount(Record):
    """``RUN --mount=type=bind``: a directory of another stage, image or the context."""

    __slots__ = ("from_", "rw", "source", "target")

    def __init__(self, target: str, source: str = "", from_: str = "", rw: bool = True) -> None:
        self.target = target
        self.source = source
        self.from_ = from_  # "" = the build context
        self.rw = rw


class CacheMount(Record):
    """``RUN --mount=type=cache``: a persistent cache directory."""

    __slots__ = ("gid", "id", "sharing", "target", "uid")

    def __init__(self, target: str, id: str, sharing: str = "shared", uid: int = 0, gid: int = 0) -> None:
        self.target = target
        self.id = id  # "" = the engine uses the target
        self.sharing = sharing  # shared | private | locked
        self.uid = uid
        self.gid = gid


class TmpfsMount(Record):
    """``RUN --mount=type=tmpfs``: an empty scratch directory for one step."""

    __slots__ = ("target",)

    def __init__(self, target: str) -> None:
        self.target = target


Mount = BindMount | CacheMount | TmpfsMount


class Run(Record):
    """Shell commands joined with ``&&`` in one step, with optional mounts."""

    __slots__ = ("cmds", "mounts", "origin")

    def __init__(self, cmds: tuple[Cmd, ...], origin: str = "", mounts: tuple[Mount, ...] = ()) -> None:
        self.cmds = cmds
        self.origin = origin
        self.mounts = mounts


class Env(Record):
    """Environment variables for later steps and the image (rendered sorted)."""

    __slots__ = ("origin", "values")

    def __init__(self, values: tuple[tuple[str, str], ...], origin: str = "") -> None:
        self.values = values
        self.origin = origin


class Label(Record):
    __slots__ = ("origin", "values")

    def __init__(self, values: tuple[tuple[str, str], ...], origin: str = "label") -> None:
        self.values = values
        self.origin = origin


class Arg(Record):
    """A build argument with its default; also visible to later RUN steps."""

    __slots__ = ("default", "name", "origin")

    def __init__(self, name: str, default: str, origin: str = "arguments") -> None:
        self.name = name
        self.default = default
        self.origin = origin


class User(Record):
    __slots__ = ("name", "origin")

    def __init__(self, name: str, origin: str = "user") -> None:
        self.name = name
        self.origin = origin


class Workdir(Record):
    __slots__ = ("origin", "path")

    def __init__(self, path: str, origin: str = "") -> None:
        self.path = path
        self.origin = origin


class Entrypoint(Record):
    __slots__ = ("argv", "origin")

    def __init__(self, argv: tuple[str, ...], origin: str = "entrypoint") -> None:
        self.argv = argv
        self.origin = origin


class Copy(Record):
    """Copy ``sources`` to ``dest`` from the context (``from_ == ""``), a stage or an image.

    ``exclude`` holds .dockerignore-style patterns; the compiler rewrites such
    a copy into a filtering stage because podman 4.3 has no ``COPY --exclude``.
    """

    __slots__ = ("chown", "dest", "exclude", "from_", "origin", "sources")

    def __init__(self, sources: tuple[str, ...], dest: str, from_: str = "",
                 chown: tuple[int, int] | None = None, exclude: tuple[str, ...] = (),
                 origin: str = "") -> None:
        self.sources = sources
        self.dest = dest
        self.from_ = from_
        self.chown = chown
        self.exclude = exclude
        self.origin = origin


Instruction = Run | Env | Label | Arg | User | Workdir | Entrypoint | Copy


class Stage(Record):
    """One ``FROM`` and its instructions. ``base`` None means ``FROM scratch``."""

    __slots__ = ("alias", "base", "instructions", "name", "variant")

    def __init__(self, name: str, base: str | None, alias: bool,
                 instructions: list[Instruction] | None = None, variant: str = "") -> None:
        self.name = name
        self.base = base
        self.alias = alias  # render "AS <name>"
        self.instructions = instructions if instructions is not None else []
        self.variant = variant  # the variant this stage builds ("" for helper stages)


def home_of(user: str) -> str:
    """The home directory Blubber gives a user."""
    return "/root" if user == "root" else "/home/" + user
