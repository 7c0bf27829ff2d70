"""One file-copy declaration: ``{from, source, destination, exclude}``.

Used by ``copies`` (application files) and by every ``requirements`` list
(files needed before an install step). ``from`` is ``local`` (the build
context), a variant name or [HEAD] an image reference.
"""

from __future__ import annotations

from typing import Any

from ..instructions import Record
from .decode import Ctx, Keys, Path, mapping, string, string_list
from .validation import go_clean, go_dir, is_relative_local

LOCAL = "local"
LIB_DIR = "/opt/lib"  # Blubber's shared library directory, copied along with the app

KEYS = Keys("a copy", ("from", "source", "destination", "exclude"))


class Artifact(Record):
    __slots__ = ("destination", "exclude", "from_", "path", "shorthand", "source")

    def __init__(
        self,
        from_: str,
        source: str = "",
        destination: str = "",
        exclude: tuple[str, ...] = (),
        shorthand: bool = False,
        path: Path = (),
    ) -> None:
        self.from_ = from_
        self.source = source
        self.destination = destination
        self.exclude = exclude
        self.shorthand = shorthand  # written as a plain string
        self.path = path  # where it is in the config, for problems

    def key(self) -> tuple[str, str, str, tuple[str, ...]]:
        """What makes two entries "the same" for de-duplication (as Blubber compares them)."""
        return (self.from_, self.source, self.destination, self.exclude)

    @property
    def is_local(self) -> bool:
        return self.from_ == LOCAL or self.from_ == ""

    def expand(self, app_dir: str) -> list[Artifact]:
        """Blubber's copies shorthand: ``{from: x}`` alone copies the whole app (and /opt/lib)."""
        if self.from_ and not self.source and not self.destination:
            if self.is_local:
                return [Artifact(self.from_, ".", ".", self.exclude, path=self.path)]
            return [Artifact(self.from_, app_dir, app_dir, self.exclude, path=self.path),
                    Artifact(self.from_, LIB_DIR, LIB_DIR, self.exclude, path=self.path)]
        if not self.destination:
            return [Artifact(self.from_, self.source, self.source, self.exclude, path=self.path)]
        return [self]

    # [HEAD] path normalisation for longhand requirements.
    def normalized_source(self) -> str:
        cleaned = go_clean(self.source)
        if cleaned != "/" and _is_dir(self.source):
            return cleaned + "/"
        return cleaned

    def normalized_destination(self) -> str:
        if not self.destination:
            if self.source and _is_dir(self.source):
                return self.source
            return go_dir(self.normalized_source()) + "/"
        dest = go_clean(self.destination)
        if dest != "/" and (_is_dir(self.destination) or _is_dir(self.source)):
            dest += "/"
        return dest

    def effective_destination(self) -> str:
        """Where a single file ends up, e.g. for ``pip install -r <it>``."""
        dest = self.normalized_destination()
        if not _is_dir(dest) or _is_dir(self.source):
            return dest
        base = _base(self.source)
        return base if dest == "./" else dest + base


def _is_dir(p: str) -> bool:
    return go_clean(p) == "." or p.endswith("/")


def _base(p: str) -> str:
    p = p.rstrip("/")
    if not p:
        return "/"
    return p.rsplit("/", 1)[-1]


def decode_artifact(ctx: Ctx, path: Path, value: Any, *, shorthand_means: str) -> Artifact | None:
    """One entry: a string (``shorthand_means`` says which field it fills) or a mapping."""
    if isinstance(value, str):
        if shorthand_means == "from":
            return Artifact(value, shorthand=True, path=path)
        return Artifact(LOCAL, source=value, shorthand=True, path=path)
    fields = mapping(ctx, value, path, KEYS)
    if fields is None:
        if value is None:
            ctx.error(path, "an empty (null) entry", "remove it, or write a path or a {from: ...} mapping",
                      decode=True)
        return None
    from_ = string(ctx, *fields["from"]) if "from" in fields else ""
    source = string(ctx, *fields["source"]) if "source" in fields else ""
    dest = string(ctx, *fields["destination"]) if "destination" in fields else ""
    exclude: tuple[str, ...] = ()
    if "exclude" in fields:
        exclude = tuple(string_list(ctx, *fields["exclude"], what="glob patterns") or ())
    art = Artifact(from_, source, dest, exclude, path=path)
    if not from_:
        ctx.error(path, "from is required", "write from: local for the build context, or a variant name")
    if dest and not source:
        ctx.error(path, 'source is required if "destination" is also set', "add the source path to copy")
    if from_ == LOCAL and source and not is_relative_local(source):
        ctx.error(fields["source"][0], f'{source!r}: path must be relative when "from" is "local"',
                  "paths in the build context are relative to it and cannot leave it (no leading / or ..)")
    for i, pattern in enumerate(exclude):
        if not pattern.strip():
            ctx.error((*fields["exclude"][0], i), "an empty exclude pattern", "remove it")
    return art


def check_from(ctx: Ctx, art: Artifact, variants: frozenset[str], *, images_ok: bool = True) -> None:
    """``from`` must be ``local``, a defined variant or (HEAD) an image reference."""
    from .validation import is_image_ref

    f = art.from_
    if not f or f == LOCAL or f in variants:
        return
    p = (*art.path, "from") if not art.shorthand else art.path
    if p not in ctx.doc.marks:
        p = art.path
    if images_ok and is_image_ref(f):
        return
    import difflib

    close = difflib.get_close_matches(f, sorted(variants), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    hint += "defined variants: " + (", ".join(sorted(variants)) or "(none)") + "; or use local"
    if images_ok:
        hint += " or an image reference such as registry.example/image:tag"
    ctx.error(p, f"references an unknown variant {f!r}", hint)
