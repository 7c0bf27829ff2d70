"""Jinja2 environment (autoescape on for every template) and the small formatting filters pages use."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape
from starlette.responses import HTMLResponse

from chute.store import utcnow

from .ansi import ansi_to_html

TEMPLATES = Path(__file__).parent / "templates"

# Status → (symbol, short text). The symbol repeats the colour's meaning for those who cannot see it.
STATUS = {
    "success": ("✓", "passed"),
    "failure": ("✗", "failed"),
    "error": ("!", "error"),
    "running": ("▶", "running"),
    "queued": ("◷", "queued"),
    "pending": ("○", "pending"),
    "skipped": ("–", "skipped"),
    "cancelled": ("⊘", "cancelled"),
    "reused": ("↺", "reused"),
}
RUN_STATUSES = ("queued", "running", "success", "failure", "error", "cancelled")

# Security headers for every UI page: no inline script or style, no framing, same-origin only.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = round(seconds)
    if seconds < 10:
        return f"{seconds:.1f}s"
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def duration_between(start: datetime | None, end: datetime | None, now: datetime | None = None) -> str:
    if start is None:
        return ""
    return fmt_duration(((end or now or utcnow()) - start).total_seconds())


def fmt_abs(dt: datetime | None) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S UTC") if dt is not None else ""


def fmt_rel(dt: datetime | None, now: datetime | None = None) -> str:
    if dt is None:
        return ""
    secs = ((now or utcnow()) - dt).total_seconds()
    future = secs < 0
    secs = abs(secs)
    if secs < 10:
        return "just now"
    if secs < 60:
        text = f"{int(secs)} s"
    elif secs < 3600:
        text = f"{int(secs // 60)} min"
    elif secs < 86400:
        text = f"{int(secs // 3600)} h"
    else:
        days = int(secs // 86400)
        text = f"{days} day{'s' if days != 1 else ''}"
    return f"in {text}" if future else f"{text} ago"


def time_tag(dt: datetime | None) -> Markup:
    """Relative and absolute time: "5 min ago" with the UTC time beside it."""
    if dt is None:
        return Markup("")
    iso = dt.isoformat().replace("+00:00", "Z")
    return Markup('<time datetime="{0}" title="{1}">{2}</time> <span class="abs">{1}</span>').format(
        iso, fmt_abs(dt), fmt_rel(dt))


def status_badge(status: str) -> Markup:
    symbol, text = STATUS.get(status, ("?", status))
    return Markup('<span class="badge st-{0}"><span aria-hidden="true">{1}</span> {2}</span>').format(
        status if status in STATUS else "unknown", symbol, text)


def short_sha(sha: str) -> str:
    return sha[:12]


def dom_id(prefix: str, name: str) -> str:
    """A stable element id for an arbitrary stage name (names may hold any character)."""
    return f"{prefix}-{hashlib.sha1(name.encode()).hexdigest()[:10]}"


def path_segment(value: object) -> str:
    """Quote a value for one path segment of a URL (a "/" in a name must not start a new segment)."""
    return quote(str(value), safe="")


def safe_url(value: object) -> str:
    """Links from outside (a change's review URL) only when they are http(s): never ``javascript:``."""
    text = str(value or "")
    return text if text.lower().startswith(("https://", "http://")) else ""


def make_env() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(duration=fmt_duration, abs_time=fmt_abs, rel_time=fmt_rel, time=time_tag,
                       badge=status_badge, short=short_sha, ansi=ansi_to_html, seg=path_segment,
                       safe_url=safe_url)
    env.globals.update(STATUS=STATUS, RUN_STATUSES=RUN_STATUSES, dom_id=dom_id, escape=escape)
    return env


class Renderer:
    def __init__(self) -> None:
        self.env = make_env()

    def fragment(self, template: str, **ctx: Any) -> str:
        return self.env.get_template(template).render(**ctx)

    def page(self, template: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
        return HTMLResponse(self.fragment(template, **ctx), status_code=status_code,
                            headers={**HEADERS, "Cache-Control": "no-store"})
