"""Log text to safe HTML: everything escaped, ANSI colours turned into classes, the rest dropped.

Log text is untrusted (it is whatever a build printed). The only markup this
module emits is ``<span class="...">`` with class names from the fixed tables
below; the text itself always goes through ``markupsafe.escape``. Other escape
sequences (cursor movement, window titles, hyperlinks) and control characters
are removed, and a carriage return keeps only what was drawn last on the line,
so progress bars show their final state.
"""

from __future__ import annotations

import re

from markupsafe import Markup, escape

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ESC \), and two-character escapes.
_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]?|\x9b[0-?]*[ -/]*[@-~]")
_SGR = re.compile(r"\x1b\[([0-9;:]*)m")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]")
# Removed before parsing: every control but ESC and BEL, which end escape sequences.
_CONTROL_EXCEPT_ESC_BEL = re.compile(r"[\x00-\x06\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f]")
_Look = tuple[str | None, str | None, frozenset[str], str]  # fg, bg, styles, and params or classes
_TRANSITIONS: dict[_Look, _Look] = {}

_COLOURS = ("black", "red", "green", "yellow", "blue", "magenta", "cyan", "white")
_STYLES = {1: "bold", 2: "dim", 3: "italic", 4: "underline"}
_STYLE_OFF = {22: ("bold", "dim"), 23: ("italic",), 24: ("underline",)}


class _State:
    def __init__(self) -> None:
        self.fg: str | None = None
        self.bg: str | None = None
        self.styles: set[str] = set()
        self.classes = ""  # the span's class attribute for the current state ("" = no span)

    def _update(self) -> None:
        out = sorted(f"ansi-{s}" for s in self.styles)
        if self.fg:
            out.append(f"ansi-fg-{self.fg}")
        if self.bg:
            out.append(f"ansi-bg-{self.bg}")
        self.classes = " ".join(out)

    def apply(self, params: str) -> None:
        # Logs repeat the same few colour changes thousands of times: remember the outcomes.
        key = (self.fg, self.bg, frozenset(self.styles), params)
        hit = _TRANSITIONS.get(key)
        if hit is None:
            self._apply(params)
            self._update()
            if len(_TRANSITIONS) > 4096:
                _TRANSITIONS.clear()
            _TRANSITIONS[key] = (self.fg, self.bg, frozenset(self.styles), self.classes)
        else:
            self.fg, self.bg, styles, self.classes = hit
            self.styles = set(styles)

    def _apply(self, params: str) -> None:
        codes = [int(p) if p.isdigit() else 0 for p in params.replace(":", ";").split(";")] if params else [0]
        i = 0
        while i < len(codes):
            c = codes[i]
            if c == 0:
                self.fg = self.bg = None
                self.styles = set()
            elif c in _STYLES:
                self.styles.add(_STYLES[c])
            elif c in _STYLE_OFF:
                self.styles.difference_update(_STYLE_OFF[c])
            elif 30 <= c <= 37:
                self.fg = _COLOURS[c - 30]
            elif 90 <= c <= 97:
                self.fg = "bright-" + _COLOURS[c - 90]
            elif c == 39:
                self.fg = None
            elif 40 <= c <= 47:
                self.bg = _COLOURS[c - 40]
            elif 100 <= c <= 107:
                self.bg = "bright-" + _COLOURS[c - 100]
            elif c == 49:
                self.bg = None
            elif c in (38, 48):  # extended colour: 5;n (256 colours) or 2;r;g;b
                colour = None
                if i + 2 < len(codes) and codes[i + 1] == 5:
                    n = codes[i + 2]
                    colour = (_COLOURS[n] if n < 8 else "bright-" + _COLOURS[n - 8]) if n < 16 else None
                    i += 2
                elif i + 1 < len(codes) and codes[i + 1] == 2:
                    i += 4
                if c == 38:
                    self.fg = colour
                else:
                    self.bg = colour
            i += 1


def _overstrike(text: str) -> str:
    """Apply carriage returns: of ``a\\rb`` only ``b`` was left on the terminal."""
    if "\r" not in text:
        return text
    lines = text.replace("\r\n", "\n").split("\n")
    return "\n".join(line.rsplit("\r", 1)[-1] if "\r" in line else line for line in lines)


def ansi_to_html(text: str) -> Markup:
    """Escape ``text`` for HTML, rendering SGR colours as spans and dropping every other control."""
    text = _CONTROL_EXCEPT_ESC_BEL.sub("", _overstrike(text))
    state = _State()
    out: list[str] = []
    pos = 0
    for m in _ESCAPE.finditer(text):
        _emit(out, state, text[pos:m.start()])
        sgr = _SGR.fullmatch(m.group(0))
        if sgr is not None:
            state.apply(sgr.group(1))
        pos = m.end()
    _emit(out, state, text[pos:])
    return Markup("".join(out))


def _emit(out: list[str], state: _State, chunk: str) -> None:
    chunk = chunk.replace("\x07", "")  # a BEL outside a sequence
    if not chunk:
        return
    if state.classes:
        out.append(f'<span class="{state.classes}">{escape(chunk)}</span>')
    else:
        out.append(str(escape(chunk)))


def strip_ansi(text: str) -> str:
    """Plain text: carriage returns applied, escape sequences and control characters removed."""
    return _CONTROL.sub("", _ESCAPE.sub("", _overstrike(text)))
