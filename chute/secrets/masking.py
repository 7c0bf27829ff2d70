"""Hide secret values in text and in result documents before they leave the agent.

A run that gets secrets prints its output through a :class:`Masker`: every
occurrence of a value, and of the encodings a test step is likely to print it
in, becomes ``***``. Values are matched as plain substrings (no regular
expressions built from secret text), longest first, so a value that contains
another is hidden whole.

What counts as an occurrence (docs/security.md, "Secrets"):

* the value itself, and each line of a multi-line value (a PEM key printed by
  a tool that re-wraps it still shows its lines);
* URL-encoded (``quote`` and ``quote_plus``) and JSON-escaped;
* base64 (standard and URL-safe, with and without padding) of the value, and
  of the value followed by a newline (``echo "$S" | base64``).

Other transformations (hex, a substring, base64 of a longer text that merely
contains the value) are not recognised: masking is a safety net for honest
mistakes, not a barrier against a step that means to leak what it was given.
That is why secrets reach only trusted (reviewed) code.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
MIN_LENGTH = 8
"""Shorter values are refused when set: masking them would hide ordinary text (as GitLab does)."""

MIN_LINE = 6  # lines of a multi-line value shorter than this are not masked on their own


def variants(value: str) -> set[str]:
    """The forms of ``value`` that are masked (each at least as long as the value's shortest line)."""
    out: set[str] = set()
    if not value:
        return out
    forms = {value}
    lines = [ln.strip() for ln in value.splitlines()]
    if len(lines) > 1:
        forms.update(ln for ln in lines if len(ln) >= MIN_LINE)
    for form in list(forms):
        out.add(form)
        out.add(quote(form, safe=""))
        out.add(quote_plus(form))
        out.add(json.dumps(form)[1:-1])
    raw = value.encode()
    for data in (raw, raw + b"\n"):
        for enc in (base64.b64encode(data).decode(), base64.urlsafe_b64encode(data).decode()):
            out.add(enc)
            out.add(enc.rstrip("="))
    # Only forms longer than the mask: each replacement then shortens the text (masking always ends).
    return {v for v in out if len(v) > len(MASK)}


class Masker:
    """Replaces every known form of the given secret values with ``***``."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        forms: set[str] = set()
        for value in values:
            if value:
                forms |= variants(str(value))
        # Longest first: a form that contains another is replaced whole.
        self.forms: tuple[str, ...] = tuple(sorted(forms, key=lambda f: (-len(f), f)))

    def __bool__(self) -> bool:
        return bool(self.forms)

    def mask(self, text: str) -> str:
        if not self.forms or not text:
            return text
        changed = True
        while changed:  # a value that contains "***" could re-form around a mask: repeat until none is left
            changed = False
            for form in self.forms:
                if form in text:
                    text = text.replace(form, MASK)
                    changed = True
        return text

    def mask_doc(self, doc: Any) -> Any:
        """A copy of a JSON-like document with every string (keys too) masked."""
        if not self.forms:
            return doc
        if isinstance(doc, str):
            return self.mask(doc)
        if isinstance(doc, dict):
            return {self.mask(k) if isinstance(k, str) else k: self.mask_doc(v) for k, v in doc.items()}
        if isinstance(doc, (list, tuple)):
            return [self.mask_doc(v) for v in doc]
        return doc


NO_MASK = Masker()
