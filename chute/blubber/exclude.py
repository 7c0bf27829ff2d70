"""``exclude`` patterns on copies and requirements, for engines without ``COPY --exclude``.

podman 4.3 / buildah 1.28 have no ``COPY --exclude``. A copy with excludes is
therefore done in two steps that keep ``COPY`` semantics exactly (ownership,
``--chown``, file-versus-directory destinations, scratch targets):

1. a helper stage copies the source (bind-mounted read-only from the build
   context, a variant stage or an image) into ``/blubber-exclude/<i>/<name>``
   and deletes what the patterns exclude;
2. the variant's ``COPY`` takes the filtered tree ``--from`` that stage.

Patterns follow ``.dockerignore`` rules (Docker's patternmatcher): ``*`` and
``?`` stay within a path segment, ``**`` spans segments, ``[...]`` is a
class, ``!`` re-includes, the last matching pattern wins, and a pattern that
matches a directory matches everything below it. Matching runs in ``awk``
(POSIX ERE); the helper stage needs ``sh``, ``find``, ``awk``, ``cp`` and
``rm``, which Debian and busybox images have.
"""

from __future__ import annotations

from .instructions import BindMount, Cmd, Copy, Run, Stage, User
from .schema.shell import shell_quote
from .schema.validation import go_clean

WORK = "/blubber-exclude"
MOUNT = "/run/blubber-exclude-src"
_SAFE_LITERAL = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_-,:@%~=#&;<> !'`")
_BRACKETED = frozenset(".()+{}|$*?")


class PatternError(ValueError):
    """An exclude pattern chute cannot translate."""


def pattern_regex(pattern: str) -> tuple[str, bool]:
    """``(ERE source anchored with ^$, is_negation)`` for one .dockerignore pattern."""
    p = pattern.strip()
    negate = p.startswith("!")
    if negate:
        p = p[1:].strip()
    if not p:
        raise PatternError("an empty pattern")
    p = go_clean(p)
    if p.startswith("/"):
        p = p[1:] or "."
    out = ["^"]
    i, n = 0, len(p)
    while i < n:
        c = p[i]
        if c == "*":
            if i + 1 < n and p[i + 1] == "*":
                i += 2
                if i < n and p[i] == "/":
                    i += 1
                out.append(".*" if i >= n else "(.*/)?")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\":
            if i + 1 >= n:
                raise PatternError("a trailing backslash")
            i += 1
            out.append(_literal(p[i]))
        elif c == "[":
            j = p.find("]", i + 2 if i + 1 < n and p[i + 1] in "!^" else i + 1)
            if j < 0:
                raise PatternError("an unclosed [")
            body = p[i + 1 : j]
            if body[:1] == "!":
                body = "^" + body[1:]
            if "\\" in body or '"' in body or "[" in body:
                raise PatternError("a character class with \\, \" or [")
            out.append("[" + body + "]")
            i = j
        else:
            out.append(_literal(c))
        i += 1
    out.append("$")
    return "".join(out), negate


def _literal(c: str) -> str:
    if c in _SAFE_LITERAL or ord(c) > 127:
        return c
    if c in _BRACKETED:
        return "[" + c + "]"
    if c == '"':
        return '\\"'
    raise PatternError(f"the character {c!r}")


# One line: a Dockerfile RUN cannot contain a newline.
_AWK = (
    "function ex(f,  m, k, j, np, pt, pre) { m = 0; np = split(f, pt, \"/\"); "
    "for (k = 1; k <= n; k++) { if (x[k] != m) continue; if (f ~ r[k]) { m = !x[k]; continue }; pre = \"\"; "
    "for (j = 1; j < np; j++) { pre = (j == 1) ? pt[1] : pre \"/\" pt[j]; "
    "if (pre ~ r[k]) { m = !x[k]; break } } }; "
    "return m } "
    "{ sub(\"^[.]/\", \"\"); p[NR] = $0 } "
    "END { for (i = 1; i <= NR; i++) { e[i] = ex(p[i]); if (!e[i]) { s = p[i]; "
    "while (match(s, \"/[^/]*$\")) { s = substr(s, 1, RSTART - 1); keep[s] = 1 } } }; "
    "for (i = 1; i <= NR; i++) if (e[i] && !(p[i] in keep)) print p[i] }"
)


def awk_program(patterns: tuple[str, ...]) -> str:
    begin = [f"n = {len(patterns)}"]
    for k, pat in enumerate(patterns, 1):
        rx, neg = pattern_regex(pat)
        begin.append(f'r[{k}] = "{rx}"; x[{k}] = {int(neg)}')
    return "BEGIN { " + "; ".join(begin) + " } " + _AWK


def item_name(source: str) -> str:
    base = go_clean(source).rsplit("/", 1)[-1]
    return base if base not in ("", ".", "..") else "root"


def filter_command(mount: str, work: str, out: str, patterns: tuple[str, ...]) -> str:
    """Shell command: copy ``mount`` (file or directory) to ``out``, minus what ``patterns`` exclude."""
    awk = shell_quote(awk_program(patterns))
    o = shell_quote(out)
    return (
        f"mkdir -p {shell_quote(work)} && if [ -d {mount} ]; then "
        f"mkdir -p {o} && cp -a {mount}/. {o}/ && cd {o} && find . -mindepth 1 | awk {awk} | "
        'while IFS= read -r p; do rm -rf "./$p"; done; '
        f"else cp -a {mount} {o}; fi"
    )


def filter_stage(name: str, base: str, copy: Copy) -> tuple[Stage, Copy]:
    """The helper stage for ``copy`` and the copy that replaces it."""
    runs: list[Run] = []
    sources = []
    for i, src in enumerate(copy.sources):
        if any(ch in src for ch in "*?["):
            raise PatternError(f"the wildcard source {src!r} (exclude needs a plain path)")
        out = f"{WORK}/{i}/{item_name(src)}"
        sources.append(out)
        cmd = filter_command(MOUNT, f"{WORK}/{i}", out, copy.exclude)
        mount = BindMount(MOUNT, src if src not in ("", ".") else ".", copy.from_, rw=False)
        runs.append(Run((Cmd(cmd),), "copies", (mount,)))
    stage = Stage(name, base, True, [User("root"), *runs])
    replaced = Copy(tuple(sources), copy.dest, from_=name, chown=copy.chown, origin=copy.origin)
    return stage, replaced
