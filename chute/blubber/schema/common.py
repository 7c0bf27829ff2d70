"""The fields shared by the top level and every variant, and how layers merge.

One :class:`CommonConfig` holds one layer as written: the top level (over
Blubber's built-in defaults) or one variant (which also has ``includes`` and
``copies``). Expanding a variant merges layers with :meth:`CommonConfig.merged`.
The field order of :data:`SECTIONS` is the order in which sections add
instructions to a phase ([HEAD]: arguments, apt, builders, node, php,
python, builder, lives, runs).
"""

from __future__ import annotations

from typing import Any

from ..instructions import Record
from .apt import AptConfig
from .arguments import Arguments, decode_arguments, merge_arguments
from .artifacts import Artifact
from .builder import BuilderConfig
from .builders import BuilderEntry, decode_builders, merge_builders
from .copies import decode_copies, merge_copies
from .decode import Ctx, Path, string, string_list
from .lives import DEFAULT_AS as LIVES_AS
from .lives import DEFAULT_ID as LIVES_ID
from .lives import DEFAULT_IN, LivesConfig
from .node import NodeConfig
from .php import PhpConfig
from .python import PythonConfig
from .runs import DEFAULT_AS as RUNS_AS
from .runs import DEFAULT_ID as RUNS_ID
from .runs import RunsConfig
from .validation import is_image_ref

COMMON_KEYS = ("base", "apt", "builders", "node", "php", "python", "builder", "lives", "runs", "entrypoint",
               "arguments")
SCRATCH = "scratch"

DEFAULT_LIVES = LivesConfig(DEFAULT_IN, LIVES_AS, LIVES_ID, LIVES_ID)
DEFAULT_RUNS = RunsConfig("", RUNS_AS, RUNS_ID, RUNS_ID)
# Shared "not given" sections (never modified): merging a layer that leaves a section out is free.
_APT, _NODE, _PHP, _PYTHON = AptConfig(), NodeConfig(), PhpConfig(), PythonConfig()
_BUILDER, _LIVES, _RUNS = BuilderConfig(), LivesConfig(), RunsConfig()


class CommonConfig(Record):
    """One layer as written: the top level (over the defaults) or one variant."""

    __slots__ = (
        "apt", "arguments", "base", "builder", "builders", "copies", "entrypoint", "includes", "lives",
        "node", "paths", "php", "python", "runs",
    )

    def __init__(
        self,
        base: str = "",
        apt: AptConfig = _APT,
        builders: list[BuilderEntry] | None = None,
        node: NodeConfig = _NODE,
        php: PhpConfig = _PHP,
        python: PythonConfig = _PYTHON,
        builder: BuilderConfig = _BUILDER,
        lives: LivesConfig = _LIVES,
        runs: RunsConfig = _RUNS,
        entrypoint: list[str] | None = None,
        arguments: Arguments | None = None,
        includes: list[str] | None = None,
        copies: list[Artifact] | None = None,
        paths: dict[str, Path] | None = None,
    ) -> None:
        self.base = base
        self.apt = apt
        self.builders = builders
        self.node = node
        self.php = php
        self.python = python
        self.builder = builder
        self.lives = lives
        self.runs = runs
        self.entrypoint = entrypoint
        self.arguments = arguments
        # variants only
        self.includes = includes
        self.copies = copies
        # where each field was written (canonical name -> path; "" = the variant), for later problems
        self.paths = {} if paths is None else paths

    @property
    def is_scratch(self) -> bool:
        return not self.base or self.base == SCRATCH

    def merged(self, other: CommonConfig) -> CommonConfig:
        """``self`` with ``other`` layered on top (Blubber's Merge rules, spec §4.2)."""
        return CommonConfig(
            base=other.base or self.base,
            apt=self.apt if other.apt is _APT else self.apt.merged(other.apt),
            builders=merge_builders(self.builders, other.builders),
            node=self.node if other.node is _NODE else self.node.merged(other.node),
            php=self.php if other.php is _PHP else self.php.merged(other.php),
            python=self.python if other.python is _PYTHON else self.python.merged(other.python),
            builder=self.builder if other.builder is _BUILDER else self.builder.merged(other.builder),
            lives=self.lives if other.lives is _LIVES else self.lives.merged(other.lives),
            runs=self.runs if other.runs is _RUNS else self.runs.merged(other.runs),
            entrypoint=other.entrypoint if other.entrypoint is not None else self.entrypoint,
            arguments=merge_arguments(self.arguments, other.arguments),
            includes=other.includes,
            copies=merge_copies(self.copies, other.copies),
            paths={**self.paths, **other.paths},
        )


def decode_common(ctx: Ctx, fields: dict[str, tuple[Path, Any]], *, top: bool) -> CommonConfig:
    cfg = CommonConfig(lives=DEFAULT_LIVES, runs=DEFAULT_RUNS) if top else CommonConfig()
    for key, (p, v) in fields.items():
        cfg.paths[key] = p
        if key == "base":
            cfg.base = string(ctx, p, v)
            if cfg.base and cfg.base != SCRATCH and not is_image_ref(cfg.base):
                ctx.error(p, f"{cfg.base!r} is not a valid base image reference",
                          "write an image reference such as docker-registry.example/debian:bookworm "
                          "(lower-case repository path); leave base empty or null for scratch")
        elif key == "apt":
            cfg.apt = AptConfig.decode(ctx, p, v)
        elif key == "builders":
            cfg.builders = decode_builders(ctx, p, v)
        elif key == "node":
            cfg.node = NodeConfig.decode(ctx, p, v)
        elif key == "php":
            cfg.php = PhpConfig.decode(ctx, p, v)
        elif key == "python":
            cfg.python = PythonConfig.decode(ctx, p, v)
        elif key == "builder":
            cfg.builder = BuilderConfig.decode(ctx, p, v)
        elif key == "lives":
            cfg.lives = LivesConfig.decode(ctx, p, v, cfg.lives if top else None)
        elif key == "runs":
            cfg.runs = RunsConfig.decode(ctx, p, v, cfg.runs if top else None)
        elif key == "entrypoint":
            cfg.entrypoint = string_list(ctx, p, v, what="command arguments")
        elif key == "arguments":
            cfg.arguments = decode_arguments(ctx, p, v)
        elif key == "includes":
            cfg.includes = string_list(ctx, p, v, what="variant names")
        elif key == "copies":
            cfg.copies = decode_copies(ctx, p, v)
    return cfg
