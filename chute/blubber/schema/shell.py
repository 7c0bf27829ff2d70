"""Putting user text into a one-line shell command safely.

A Dockerfile ``RUN`` is one line, so text with newlines (a PGP key, an inline
builder script) cannot appear in it literally, and podman 4.3 has no
heredocs. The text is passed to ``printf '%b'`` instead: newlines and control
characters become ``\\n``/``\\0ooo`` escapes, and the whole argument is
single-quoted, so the shell expands nothing in it.
"""

from __future__ import annotations

from ..instructions import Cmd

_ESC = {"\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def shell_quote(s: str) -> str:
    """Single-quote for POSIX sh (``'`` becomes ``'\\''``)."""
    return "'" + s.replace("'", "'\\''") + "'"


def printf_b_escape(text: str) -> str:
    """Escape ``text`` so that ``printf '%b'`` prints it back exactly."""
    out = []
    for ch in text:
        esc = _ESC.get(ch)
        if esc is not None:
            out.append(esc)
        elif ch < " " or ch == "\x7f":
            out.append(f"\\0{ord(ch):03o}")
        else:
            out.append(ch)
    return "".join(out)


def printf_text(text: str) -> str:
    """A shell expression printing ``text`` exactly: ``printf '%b' '...'``."""
    return "printf '%b' " + shell_quote(printf_b_escape(text))


def write_file_cmd(path: str, content: str) -> Cmd:
    """Write ``content`` to ``path`` (a path chute chose, not user text)."""
    return Cmd(f"{printf_text(content)} > {shell_quote(path)}")
