"""The Dockerfile renderer: Go quoting and the exact form of each instruction."""

from __future__ import annotations

import subprocess

import pytest

from chute.blubber.dockerfile import go_quote, render, render_instruction
from chute.blubber.instructions import (
    Arg,
    BindMount,
    CacheMount,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Run,
    Stage,
    TmpfsMount,
    User,
    Workdir,
)
from chute.blubber.schema.shell import printf_text


@pytest.mark.parametrize(("value", "quoted"), [
    ("plain", '"plain"'),
    ('a"b$c d', r'"a\"b$c d"'),
    ("back\\slash", r'"back\\slash"'),
    ("tab\tnew\nline\r", r'"tab\tnew\nline\r"'),
    ("\x01\x7f", r'"\x01\x7f"'),
    ("é😀", '"é😀"'),
    ("\u200b\u00a0\u0085", r'"\u200b\u00a0\u0085"'),  # format, no-break space, NEL: not printable in Go
    ("\U000e0001", r'"\U000e0001"'),
])
def test_go_quote(value: str, quoted: str) -> None:
    assert go_quote(value) == quoted


def test_instructions() -> None:
    assert render_instruction(Env((("Z", "1"), ("A", "x y")))) == 'ENV A="x y" Z="1"'
    assert render_instruction(User("somebody")) == 'USER "somebody"'
    assert render_instruction(Workdir("/srv/app")) == 'WORKDIR "/srv/app"'
    assert render_instruction(Entrypoint(("npm", "start"))) == 'ENTRYPOINT ["npm", "start"]'
    assert render_instruction(Arg("TARGET", "a b")) == 'ARG TARGET="a b"'
    assert render_instruction(Copy(("a", "b"), "dest", "build", (1, 2))) == \
        'COPY --chown=1:2 --from=build ["a", "b", "dest/"]'
    assert render_instruction(Run((Cmd("apt-get install -y", ("curl", "git")), Cmd("rm -rf x")))) == \
        'RUN apt-get install -y "curl" "git" && rm -rf x'
    mounts = (TmpfsMount("/tmp/s"), BindMount("/w", "/src", "assets"), BindMount("/c", ".", "", rw=False),
              CacheMount("/cache", "", "locked", 5, 6), CacheMount("/c2", "id2"))
    assert render_instruction(Run((Cmd("make"),), mounts=mounts)) == (
        "RUN --mount=type=tmpfs,target=/tmp/s --mount=type=bind,from=assets,source=/src,target=/w,rw "
        "--mount=type=bind,source=.,target=/c --mount=type=cache,target=/cache,sharing=locked,uid=5,gid=6 "
        "--mount=type=cache,id=id2,target=/c2,sharing=shared make")
    # A raw newline can never end up in the file (Blubber writes it as \n).
    assert render_instruction(Run((Cmd("echo a\nb"),))) == "RUN echo a\\nb"


def test_stages() -> None:
    text = render([Stage("build", "debian:12", True, [User("root")]), Stage("app", None, True, [])])
    assert text == 'FROM debian:12 AS build\nUSER "root"\nFROM scratch AS app\n'


@pytest.mark.parametrize("text", ["a\nb\\c %s 'q' \"d\" $HOME `x` \\c\n", "-----BEGIN\n\tx\x01y\r\n",
                                  "ü€\n\n"])
def test_printf_text_prints_exactly_with_the_real_shell(text: str) -> None:
    out = subprocess.run(["sh", "-c", printf_text(text)], capture_output=True, check=True).stdout
    assert out == text.encode()
