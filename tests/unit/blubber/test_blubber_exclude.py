"""``exclude`` patterns: the generated filter command, run with the real sh/find/awk/cp of this machine.

The expected result comes from an independent Python model of Docker's
patternmatcher (.dockerignore) rules: a path is excluded if the last pattern
matching it or one of its parent directories is not a ``!`` pattern.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from chute.blubber.exclude import PatternError, filter_command, pattern_regex

TREE = ["README.md", "a.txt", "src/main.c", "src/x.md", "src/sub/deep.md", "docs/a.md", ".git/HEAD",
        ".git/refs/heads/main", ".git/objects/ab/cd", "weird name.txt", "q'uote.txt", "b[1].txt",
        "dollar$x.md"]


def _segment_match(name: str, pat: str) -> bool:
    return fnmatch.fnmatchcase(name, pat)


def _match(parts: list[str], pats: list[str]) -> bool:
    """Docker glob over path segments: * and ? within a segment; ``**/`` is any number of
    directories, a trailing ``**`` at least one segment (``src/**`` does not match ``src``)."""
    if not pats:
        return not parts
    if pats[0] == "**":
        first = 1 if len(pats) == 1 else 0
        return any(_match(parts[i:], pats[1:]) for i in range(first, len(parts) + 1))
    return bool(parts) and _segment_match(parts[0], pats[0]) and _match(parts[1:], pats[1:])


def excluded(path: str, patterns: list[str]) -> bool:
    result = False
    parts = path.split("/")
    for raw in patterns:
        neg = raw.startswith("!")
        pat = raw[1:] if neg else raw
        pat_parts = [p for p in pat.strip("/").split("/") if p]
        if any(_match(parts[:j], pat_parts) for j in range(1, len(parts) + 1)):
            result = not neg
    return result


def expected(patterns: list[str]) -> list[str]:
    every = {"/".join(f.split("/")[:j]) for f in TREE for j in range(1, f.count("/") + 2)}
    kept = {p for p in every if not excluded(p, patterns)}
    for p in list(kept):
        parts = p.split("/")
        kept.update("/".join(parts[:j]) for j in range(1, len(parts)))
    return sorted(kept)


CASES = [["*.md"], ["**/*.md"], [".git"], ["!HEAD", "!refs/**/*"], ["*", "!src"], ["*", "!src", "src/*.md"],
         [".git", "!.git/HEAD"], ["src/**"], ["?.txt"], ["b[0-9].txt"], ["b[!0-9].txt"],
         ["*.md", "!docs/*.md"],
         ["weird name.txt", "q'uote.txt"], ["dollar$x.md"], ["/README.md"], ["src/sub"], ["**"]]


SHELLS = ["sh", "busybox"] if shutil.which("busybox") else ["sh"]


@pytest.fixture(scope="module")
def busybox_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PATH where awk, find, cp, rm and mkdir are busybox's, as in a busybox base image."""
    d = tmp_path_factory.mktemp("busybox-applets")
    busybox = shutil.which("busybox")
    if busybox:
        for applet in ("awk", "find", "cp", "rm", "mkdir"):
            (d / applet).symlink_to(busybox)
    return f"{d}:{os.environ['PATH']}"


@pytest.mark.parametrize("patterns", CASES, ids=[",".join(c) for c in CASES])
@pytest.mark.parametrize("shell", SHELLS)
def test_filter_command_matches_dockerignore_rules(tmp_path: Path, busybox_path: str, patterns: list[str],
                                                   shell: str) -> None:
    src = tmp_path / "src"
    for f in TREE:
        (src / f).parent.mkdir(parents=True, exist_ok=True)
        (src / f).write_text(f)
    out = tmp_path / "work" / "out"
    cmd = filter_command(str(src), str(tmp_path / "work"), str(out), tuple(patterns))
    if shell == "busybox":
        argv, env = ["busybox", "sh", "-c", cmd], {**os.environ, "PATH": busybox_path}
    else:
        argv, env = ["sh", "-c", cmd], dict(os.environ)
    subprocess.run(argv, check=True, env=env, timeout=30)
    got = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert got == expected(patterns)
    for f in got:
        if (out / f).is_file():
            assert (out / f).read_text() == f  # contents preserved


def test_a_single_file_source_is_copied_as_is(tmp_path: Path) -> None:
    (tmp_path / "main.c").write_text("int main;")
    out = tmp_path / "w" / "main.c"
    subprocess.run(["sh", "-c", filter_command(str(tmp_path / "main.c"), str(tmp_path / "w"), str(out),
                                               ("*.md",))], check=True)
    assert out.read_text() == "int main;"


@pytest.mark.parametrize(("pattern", "regex", "negated"), [
    ("*.md", "^[^/]*[.]md$", False),
    ("!docs/**/*.md", "^docs/(.*/)?[^/]*[.]md$", True),
    ("/build/", "^build$", False),
    ("a?c[!x]", "^a[^/]c[^x]$", False),
    ("src/**", "^src/.*$", False),
    ("x\\*y", "^x[*]y$", False),
])
def test_pattern_translation(pattern: str, regex: str, negated: bool) -> None:
    assert pattern_regex(pattern) == (regex, negated)


@pytest.mark.parametrize("pattern", ["", "!", "a^b", "[abc", "x\\"])
def test_untranslatable_patterns(pattern: str) -> None:
    with pytest.raises(PatternError):
        pattern_regex(pattern)
