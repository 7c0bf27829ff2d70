"""Render stages of instructions as Dockerfile text.

The format follows Blubber 0.8's Dockerfile compiler byte for byte (spec
§5.3): strings are quoted the way Go's ``strconv.Quote`` does, ``ENV`` and
``LABEL`` keys are sorted, ``COPY`` uses the JSON-array form with
``--chown`` before ``--from``. ``RUN --mount`` flags (for builder mounts,
caches and inline scripts) are the forms podman 4.3 / buildah 1.28 accept.
"""

from __future__ import annotations

import re

from .instructions import (
    Arg,
    BindMount,
    CacheMount,
    Copy,
    Entrypoint,
    Env,
    Instruction,
    Label,
    Mount,
    Run,
    Stage,
    TmpfsMount,
    User,
    Workdir,
)

_PLAIN = re.compile(r'[ !#-\[\]-~]*')  # printable ASCII without '"' and '\'
_ESCAPES = {"\a": r"\a", "\b": r"\b", "\f": r"\f", "\n": r"\n", "\r": r"\r", "\t": r"\t", "\v": r"\v",
            '"': r"\"", "\\": r"\\"}


_QUOTED: dict[str, str] = {}  # the same few strings (users, paths, ids) recur in every stage


def go_quote(s: str) -> str:
    """Quote like Go's ``strconv.Quote`` (what Blubber uses in every instruction)."""
    q = _QUOTED.get(s)
    if q is not None:
        return q
    q = _go_quote(s)
    if len(_QUOTED) < 4096:
        _QUOTED[s] = q
    return q


def _go_quote(s: str) -> str:
    if _PLAIN.fullmatch(s):
        return '"' + s + '"'
    out = ['"']
    for ch in s:
        esc = _ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif ch.isprintable():
            out.append(ch)
        else:
            cp = ord(ch)
            if cp < 0x80:
                out.append(f"\\x{cp:02x}")
            elif cp < 0x10000:
                out.append(f"\\u{cp:04x}")
            else:
                out.append(f"\\U{cp:08x}")
    out.append('"')
    return "".join(out)


def _pairs(values: tuple[tuple[str, str], ...]) -> str:
    # Blubber emits the keys sorted bytewise; a later duplicate key wins.
    if len(values) == 1:
        return values[0][0] + "=" + go_quote(values[0][1])
    merged = dict(values)
    return " ".join([k + "=" + go_quote(merged[k]) for k in sorted(merged)])


def _mount(m: Mount) -> str:
    if isinstance(m, BindMount):
        opts = ["type=bind"]
        if m.from_:
            opts.append("from=" + m.from_)
        if m.source:
            opts.append("source=" + m.source)
        opts.append("target=" + m.target)
        if m.rw:
            opts.append("rw")
    elif isinstance(m, CacheMount):
        opts = ["type=cache"]
        if m.id:
            opts.append("id=" + m.id)
        opts += ["target=" + m.target, "sharing=" + m.sharing]
        if m.uid or m.gid:
            opts.append(f"uid={m.uid},gid={m.gid}")
    else:
        assert isinstance(m, TmpfsMount)
        opts = ["type=tmpfs", "target=" + m.target]
    return "--mount=" + ",".join(opts)


def _run(ins: Run) -> str:
    parts = []
    for c in ins.cmds:
        if c.args:
            parts.append(c.text + " " + " ".join([go_quote(a) for a in c.args]))
        else:
            parts.append(c.text)
    line = " && ".join(parts)
    if ins.mounts:
        line = " ".join([_mount(m) for m in ins.mounts]) + " " + line
    # A raw newline would end the instruction; Blubber writes it as "\n".
    return "RUN " + line.replace("\n", "\\n")


def _copy(ins: Copy) -> str:
    head = "COPY "
    if ins.chown is not None:
        head += f"--chown={ins.chown[0]}:{ins.chown[1]} "
    if ins.from_:
        head += f"--from={ins.from_} "
    dest = ins.dest
    if len(ins.sources) > 1 and not dest.endswith("/"):
        dest += "/"
    return head + "[" + ", ".join([go_quote(s) for s in ins.sources] + [go_quote(dest)]) + "]"


_RENDER = {
    Run: _run,
    Copy: _copy,
    Env: lambda ins: "ENV " + _pairs(ins.values),
    User: lambda ins: "USER " + go_quote(ins.name),
    Workdir: lambda ins: "WORKDIR " + go_quote(ins.path),
    Entrypoint: lambda ins: "ENTRYPOINT [" + ", ".join([go_quote(a) for a in ins.argv]) + "]",
    Label: lambda ins: "LABEL " + _pairs(ins.values),
    Arg: lambda ins: f"ARG {ins.name}={go_quote(ins.default)}",
}


def render_instruction(ins: Instruction) -> str:
    """One Dockerfile line (without the trailing newline)."""
    render = _RENDER.get(type(ins))
    if render is None:
        raise TypeError(f"not an instruction: {ins!r}")
    return render(ins)


def render_stage(stage: Stage) -> str:
    head = "FROM " + (stage.base if stage.base is not None else "scratch")
    if stage.alias:
        head += " AS " + stage.name
    lines = [head]
    lines += [_RENDER[type(i)](i) for i in stage.instructions]
    return "\n".join(lines) + "\n"


def render(stages: list[Stage]) -> str:
    """The whole Dockerfile: stages in order, no blank lines between them (as 0.8)."""
    return "".join(render_stage(s) for s in stages)
