"""The one change the engine makes to a Dockerfile: declaring build args after each FROM.

RUN steps see a build arg only if their stage declares it with ``ARG``. The
engine passes the CA bundle's path to pip and node as build args (never as
``ENV``, which would be written into the image config), so it declares
``ARG PIP_CERT`` and ``ARG NODE_EXTRA_CA_CERTS`` at the start of every stage.
A declared ARG stays out of ``Config.Env``; engines record its value in the
history line of RUN steps (``|2 NODE_EXTRA_CA_CERTS=/dev/chute-ca-bundle.crt
PIP_CERT=/dev/chute-ca-bundle.crt /bin/sh -c ...``), which is a path, not a
secret.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_DIRECTIVE_RE = re.compile(r"^#\s*([A-Za-z]+)\s*=\s*(\S+)\s*$")
_HEREDOC_RE = re.compile(r"<<(-?)\s*([\"']?)([A-Za-z_][A-Za-z0-9_]*)\2")


def _escape_char(lines: Sequence[str]) -> str:
    """The ``# escape=`` parser directive, read only from the leading directive block."""
    for line in lines:
        m = _DIRECTIVE_RE.match(line.strip())
        if not m:
            break
        if m.group(1).lower() == "escape" and m.group(2) in ("\\", "`"):
            return m.group(2)
    return "\\"


def instruction_spans(text: str) -> list[tuple[int, int, str]]:
    """Split Dockerfile text into instructions: (first line index, last line index, keyword).

    Follows line continuations (with the file's escape character), skips
    comment and blank lines, and skips over heredoc bodies so that a line
    inside one is never mistaken for an instruction.
    """
    lines = text.splitlines()
    escape = _escape_char(lines)
    spans: list[tuple[int, int, str]] = []
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        start = i
        keyword = stripped.split(None, 1)[0].upper()
        logical = [stripped]
        continued = stripped.endswith(escape)
        while continued and i + 1 < len(lines):
            i += 1
            nxt = lines[i].strip()
            if not nxt or nxt.startswith("#"):
                continue  # blank and comment lines inside a continued instruction are skipped
            logical.append(nxt)
            continued = nxt.endswith(escape)
        end = i
        for m in _HEREDOC_RE.finditer(" ".join(logical)):
            word, strip_tabs = m.group(3), m.group(1) == "-"
            while i + 1 < len(lines):
                i += 1
                body = lines[i].lstrip("\t") if strip_tabs else lines[i]
                if body == word:
                    break
            end = i
        spans.append((start, end, keyword))
        i = end + 1
    return spans


def declare_args_in_stages(text: str, names: Sequence[str]) -> str:
    """Insert ``ARG <name>`` lines after every FROM instruction of ``text``."""
    if not names:
        return text
    lines = text.splitlines()
    after_from = {end for _start, end, keyword in instruction_spans(text) if keyword == "FROM"}
    out: list[str] = []
    for index, line in enumerate(lines):
        out.append(line)
        if index in after_from:
            out.extend(f"ARG {name}" for name in names)
    return "\n".join(out) + "\n"
