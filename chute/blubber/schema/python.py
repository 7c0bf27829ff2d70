"""``python``: a virtualenv with the project's dependencies (current Blubber semantics).

Blubber 0.8 bootstrapped pip with ``easy_install`` and installed wheels into
``/opt/lib/python``; that no longer works with any current Python, so chute
does what current Blubber does (spec §5.7): create a virtualenv, activate it
with ``VIRTUAL_ENV``/``PATH``, upgrade setuptools/wheel/tox/pip (pinned when
asked), then ``pip install -r`` the requirements or run Poetry. Python is
enabled only when ``version`` is set *and* ``requirements`` is given.
"""

from __future__ import annotations

import re
from typing import Any

from ..instructions import Cmd, Env, Instruction, Phase, Record, Run
from .context import StageContext
from .decode import Ctx, Keys, Path, mapping, string
from .flag import flag, merge_flag
from .requirements import Requirements, decode_requirements, pip_paths, requirement_copies
from .validation import PY_BARE_VERSION, PY_SPECIFIER, is_abs_nonroot

DEFAULT_VENV = "/opt/lib/venv"
POETRY_VENVS = "/opt/lib/poetry"
DEFAULT_SETUPTOOLS = "!=60.9.0"  # setuptools 60.9.0 broke installs (Blubber pins it away)

KEYS = Keys("python", ("version", "requirements", "use-system-flag", "use-system-site-packages", "no-deps",
                       "poetry", "tox-version", "pip-version", "setuptools-version", "wheel-version", "venv"))
POETRY_KEYS = Keys("python.poetry", ("version", "devel", "only", "without"))
_PINS = ("tox-version", "pip-version", "setuptools-version", "wheel-version")


class PoetryConfig(Record):
    __slots__ = ("devel", "only", "version", "without")

    def __init__(
        self,
        version: str = "",
        devel: bool | None = None,
        only: str = "",
        without: str = "",
    ) -> None:
        self.version = version
        self.devel = devel
        self.only = only
        self.without = without

    def merged(self, other: PoetryConfig) -> PoetryConfig:
        return PoetryConfig(other.version or self.version, merge_flag(self.devel, other.devel),
                            other.only or self.only, other.without or self.without)

    def major(self) -> int:
        m = re.search(r"\d+", self.version)
        return int(m.group(0)) if m else 0


class PythonConfig(Record):
    __slots__ = (
        "no_deps", "pins", "poetry", "requirements", "use_system_flag", "use_system_site_packages", "venv",
        "version",
    )

    def __init__(
        self,
        version: str = "",
        requirements: Requirements | None = None,
        use_system_flag: bool | None = None,
        use_system_site_packages: bool | None = None,
        no_deps: bool | None = None,
        poetry: PoetryConfig | None = None,
        pins: dict[str, str] | None = None,
        venv: str = "",
    ) -> None:
        self.version = version
        self.requirements = requirements
        self.use_system_flag = use_system_flag  # 0.8 only; has no effect with a virtualenv
        self.use_system_site_packages = use_system_site_packages
        self.no_deps = no_deps
        self.poetry = PoetryConfig() if poetry is None else poetry
        self.pins = {} if pins is None else pins  # "pip-version" -> "~=26.0"
        self.venv = venv

    @classmethod
    def decode(cls, ctx: Ctx, path: Path, value: Any) -> PythonConfig:
        cfg = cls()
        fields = mapping(ctx, value, path, KEYS)
        if not fields:
            return cfg
        if "version" in fields:
            cfg.version = string(ctx, *fields["version"])
        if "requirements" in fields:
            cfg.requirements = decode_requirements(ctx, *fields["requirements"])
        if "use-system-flag" in fields:
            cfg.use_system_flag = flag(ctx, *fields["use-system-flag"])
            if cfg.use_system_flag:
                ctx.warn(fields["use-system-flag"][0],
                         "use-system-flag has no effect: packages are installed into a virtualenv",
                         "remove it; use use-system-site-packages to see system packages")
        if "use-system-site-packages" in fields:
            cfg.use_system_site_packages = flag(ctx, *fields["use-system-site-packages"])
        if "no-deps" in fields:
            cfg.no_deps = flag(ctx, *fields["no-deps"])
        if "poetry" in fields:
            cfg.poetry = _poetry(ctx, *fields["poetry"])
        for pin in _PINS:
            if pin in fields:
                p, v = fields[pin]
                spec = string(ctx, p, v)
                if spec and not (PY_BARE_VERSION.fullmatch(spec) or PY_SPECIFIER.fullmatch(spec)):
                    ctx.error(p, f"{spec!r} is not a valid version or version specifier",
                              "write a version such as 4.49.1 (means ==4.49.1) or a specifier such as ~=26.0")
                if spec:
                    cfg.pins[pin] = spec
        if "venv" in fields:
            p, v = fields["venv"]
            cfg.venv = string(ctx, p, v)
            if cfg.venv and not is_abs_nonroot(cfg.venv):
                ctx.error(p, f"{cfg.venv!r} is not a valid absolute non-root path", "e.g. /opt/lib/venv")
        return cfg

    def merged(self, other: PythonConfig) -> PythonConfig:
        pins = dict(self.pins)
        pins.update(other.pins)
        return PythonConfig(
            other.version or self.version,
            other.requirements if other.requirements is not None else self.requirements,
            merge_flag(self.use_system_flag, other.use_system_flag),
            merge_flag(self.use_system_site_packages, other.use_system_site_packages),
            merge_flag(self.no_deps, other.no_deps),
            self.poetry.merged(other.poetry),
            pins,
            other.venv or self.venv,
        )

    def is_set(self) -> bool:
        return bool(self.version or self.requirements is not None or self.poetry.version or self.pins
                    or self.venv or self.no_deps is not None or self.use_system_site_packages is not None
                    or self.use_system_flag is not None)

    def enabled(self) -> bool:
        return bool(self.version) and self.requirements is not None

    def _pin(self, name: str, default: str = "") -> str:
        spec = self.pins.get(name, "")
        if not spec:
            return default
        if spec[0].isdigit():
            return "==" + spec
        return spec

    def instructions(self, phase: Phase, st: StageContext) -> list[Instruction]:
        if not self.enabled():
            return []
        py = self.version
        if phase is Phase.PRE_INSTALL:
            venv = self.venv or DEFAULT_VENV
            out = requirement_copies(self.requirements or [], st, "python.requirements")
            venv_args = ("-m", "venv", venv, "--system-site-packages") if self.use_system_site_packages \
                else ("-m", "venv", venv)
            out.append(Run((Cmd(py, venv_args),), "python"))
            out.append(Env((("VIRTUAL_ENV", venv), ("PATH", venv + "/bin:$PATH")), "python"))
            pip_default = "<21" if py.startswith("python2") else ""
            out.append(Run((
                Cmd(py, ("-m", "pip", "install", "-U", "setuptools" + self._pin("setuptools-version",
                                                                                DEFAULT_SETUPTOOLS))),
                Cmd(py, ("-m", "pip", "install", "-U", "wheel" + self._pin("wheel-version"),
                         "tox" + self._pin("tox-version"), "pip" + self._pin("pip-version", pip_default))),
            ), "python"))
            if self.poetry.version:
                out.append(Env((("POETRY_VIRTUALENVS_PATH", POETRY_VENVS),), "python"))
                out.append(Run((Cmd(py, ("-m", "pip", "install", "-U", "poetry" + self._poetry_spec())),),
                               "python"))
                out.append(Run((Cmd("mkdir -p", (POETRY_VENVS,)),), "python"))
                args = ["install", "--no-root"]
                if self.poetry.only:
                    args += ["--only", self.poetry.only]
                if self.poetry.without:
                    args += ["--without", self.poetry.without]
                if self.poetry.major() < 2 and not self.poetry.devel:
                    args.append("--no-dev")
                out.append(Run((Cmd("poetry", tuple(args)),), "python"))
            elif self.requirements:
                install = ["-m", "pip", "install"]
                if self.no_deps:
                    install.append("--no-deps")
                for p in pip_paths(self.requirements):
                    install += ["-r", p]
                out.append(Run((Cmd(py, tuple(install)),), "python"))
            return out
        if phase is Phase.POST_INSTALL and self.no_deps and not self.poetry.version:
            return [Run((Cmd(py, ("-m", "pip", "check")),), "python")]
        return []

    def _poetry_spec(self) -> str:
        v = self.poetry.version
        return "==" + v if v[:1].isdigit() else v


def _poetry(ctx: Ctx, path: Path, value: Any) -> PoetryConfig:
    cfg = PoetryConfig()
    fields = mapping(ctx, value, path, POETRY_KEYS)
    if not fields:
        return cfg
    if "version" in fields:
        p, v = fields["version"]
        cfg.version = string(ctx, p, v)
        v = cfg.version
        if v and not (PY_SPECIFIER.fullmatch(v) or PY_BARE_VERSION.fullmatch(v)):
            ctx.error(p, f"{cfg.version!r} is not a valid version specifier",
                      "write e.g. ==1.8.3 or >=2.0,<3")
    if "devel" in fields:
        cfg.devel = flag(ctx, *fields["devel"])
    if "only" in fields:
        cfg.only = string(ctx, *fields["only"])
    if "without" in fields:
        cfg.without = string(ctx, *fields["without"])
    return cfg
