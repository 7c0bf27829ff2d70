"""Assemble the stages of a variant from its expanded config (spec §5.1, §5.2).

For each phase, the common sections add their instructions in a fixed order,
the entrypoint and copies follow, then the phase's ``USER``/``HOME`` switch is
put in front and every ``COPY`` gets the phase owner's ``--chown`` (unless
that uid is 0, as in Blubber). Variants without a base image (scratch) get
only their copies and entrypoint. The final stage gets the labels.
"""

from __future__ import annotations

from chute.config import EXIT_INVALID, ConfigError

from .exclude import PatternError, filter_stage
from .instructions import (
    PHASES,
    Copy,
    Entrypoint,
    Env,
    Instruction,
    Label,
    Phase,
    Stage,
    User,
    home_of,
)
from .resolve import stage_order
from .schema.arguments import argument_instructions
from .schema.builders import builders_instructions
from .schema.common import CommonConfig
from .schema.config import BlubberConfig
from .schema.context import StageContext
from .schema.copies import copy_instructions


def workdir_of(cfg: CommonConfig) -> str:
    """The working directory a stage ends with (where relative copy sources are read)."""
    if cfg.is_scratch:
        return "/"
    return cfg.runs.in_ or cfg.lives.in_


def build_stages(config: BlubberConfig, name: str, version_label: str,
                 ordered: tuple[list[str], dict[str, CommonConfig]] | None = None) -> list[Stage]:
    """The stages of ``name``; ``ordered`` is ``stage_order(config, name)`` if the caller has it already."""
    order, expanded = ordered if ordered is not None else stage_order(config, name)
    workdirs = {n: workdir_of(expanded[n]) for n in order}
    names = frozenset(config.variants)
    stages: list[Stage] = []
    helpers = [0]
    multi = len(order) > 1
    for n in order:
        stages.extend(compile_stage(config, n, expanded[n], workdirs, names, alias=multi, helpers=helpers))
    final = stages[-1]
    if not final.alias and len(stages) > 1:
        final.alias = True  # helper stages were added: name the final one too
    final.instructions.append(Label((("blubber.variant", name), ("blubber.version", version_label))))
    return stages


def compile_stage(config: BlubberConfig, name: str, cfg: CommonConfig, workdirs: dict[str, str],
                  names: frozenset[str], *, alias: bool, helpers: list[int]) -> list[Stage]:
    lives, runs = cfg.lives, cfg.runs
    st = StageContext(
        variant=name, app_dir=lives.in_, lives_as=lives.as_, lives_uid=lives.uid, lives_gid=lives.gid,
        env={"LIVES_AS": lives.as_, "LIVES_UID": str(lives.uid), "LIVES_GID": str(lives.gid),
             "RUNS_AS": runs.as_, "RUNS_UID": str(runs.uid), "RUNS_GID": str(runs.gid)},
        workdirs=workdirs, variants=names,
    )
    scratch = cfg.is_scratch
    # Only ask the sections that have something to say (most variants use two or three).
    apt_on = not scratch and not cfg.apt.is_empty()
    builders_on = not scratch and bool(cfg.builders)
    node_on = not scratch and cfg.node.is_set()
    php_on = not scratch and cfg.php.is_set()
    python_on = not scratch and cfg.python.enabled()
    builder_on = not scratch and cfg.builder.is_set()
    out: list[Instruction] = []
    for phase in PHASES:
        ins: list[Instruction] = []
        if not scratch:
            if phase is Phase.PRIVILEGED:
                if cfg.arguments:
                    ins += argument_instructions(cfg.arguments, phase)
                if apt_on:
                    ins += cfg.apt.instructions(phase)
            if builders_on:
                ins += builders_instructions(cfg.builders, phase, st)
            if node_on:
                ins += cfg.node.instructions(phase, st)
            if php_on:
                ins += cfg.php.instructions(phase, st)
            if python_on:
                ins += cfg.python.instructions(phase, st)
            if builder_on:
                ins += cfg.builder.instructions(phase, st)
            ins += lives.instructions(phase)
            ins += runs.instructions(phase)
        if phase is Phase.POST_INSTALL and cfg.entrypoint:
            ins.append(Entrypoint(tuple(cfg.entrypoint)))
        if phase is Phase.INSTALL and cfg.copies:
            ins += copy_instructions(cfg.copies, st)
        if not scratch:
            user, uid, gid = _owner(cfg, phase)
            if user:
                ins[:0] = [User(user), Env((("HOME", home_of(user)),), "user")]
            if uid:
                ins = [_chown(i, uid, gid) if isinstance(i, Copy) else i for i in ins]
        out += ins
    if st.problems:
        raise ConfigError([config.doc.problem(p, m, h) for p, m, h in st.problems], EXIT_INVALID)
    stage = Stage(name, None if scratch else cfg.base, alias, out, variant=name)
    return [*_exclude_helpers(config, name, cfg, stage, helpers), stage]


def _owner(cfg: CommonConfig, phase: Phase) -> tuple[str, int, int]:
    """Blubber 0.8's ``userForPhase``: (user to switch to or "", uid, gid owning copies)."""
    lives, runs = cfg.lives, cfg.runs
    if phase is Phase.PRIVILEGED:
        return "root", 0, 0
    if phase is Phase.PRIVILEGE_DROPPED:
        return lives.as_, lives.uid, lives.gid
    if phase is Phase.POST_INSTALL and not runs.insecurely:
        return runs.as_, runs.uid, runs.gid
    return "", lives.uid, lives.gid


def _chown(c: Copy, uid: int, gid: int) -> Copy:
    return Copy(c.sources, c.dest, c.from_, (uid, gid), c.exclude, c.origin)


def _exclude_helpers(config: BlubberConfig, name: str, cfg: CommonConfig, stage: Stage,
                     helpers: list[int]) -> list[Stage]:
    """Replace copies with ``exclude`` by copies from filtering stages (see :mod:`.exclude`)."""
    extra: list[Stage] = []
    for idx, ins in enumerate(stage.instructions):
        if not isinstance(ins, Copy) or not ins.exclude:
            continue
        base = cfg.base if not cfg.is_scratch else ins.from_
        path = cfg.paths.get("copies") or cfg.paths.get("", ())
        if not base:
            raise ConfigError([config.doc.problem(
                path, f"variant {name!r} has no base image, so its files cannot be filtered with exclude",
                "give the variant a base image, or copy from a variant that has the files already filtered")],
                EXIT_INVALID)
        helpers[0] += 1
        try:
            helper, replaced = filter_stage(f"{name.lower()}_exclude_{helpers[0]}", base, ins)
        except PatternError as err:
            raise ConfigError([config.doc.problem(path, f"cannot use exclude here: {err}",
                                                  "simplify the pattern (plain names, *, ?, ** and [...] "
                                                  "classes work)")], EXIT_INVALID) from None
        stage.instructions[idx] = replaced
        extra.append(helper)
    return extra
