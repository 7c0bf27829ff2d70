"""Times, periods and percentiles shared by the metrics, traces and the CLI.

All times are timezone-aware UTC. Days and weeks are UTC calendar days and ISO
weeks (Monday to Sunday), so a period's buckets do not depend on where the
server runs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_SPAN_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class TimeError(ValueError):
    """A time the user wrote that cannot be read; the message says what is accepted."""


def parse_time(text: str, *, now: datetime | None = None, what: str = "time") -> datetime:
    """Read ``2026-01-31``, an ISO 8601 time (``Z`` or an offset; none means UTC) or a span
    back from now (``30d``, ``12h``, ``4w``)."""
    raw = text.strip()
    m = _SPAN.match(raw)
    if m:
        now = now or datetime.now(UTC)
        return now - timedelta(seconds=float(m.group(1)) * _SPAN_SECONDS[m.group(2)])
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise TimeError(f"{what}: cannot read {text!r} as a time; write a date (2026-01-31), "
                        "an ISO 8601 time (2026-01-31T12:00:00Z) or a span back from now (30d, 12h, 4w)") from None
    return as_utc(value)


def as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso(value: datetime | None) -> str | None:
    """``2026-01-31T12:00:00Z`` (the ledger export's format)."""
    return as_utc(value).isoformat().replace("+00:00", "Z") if value is not None else None


def day_start(value: datetime) -> datetime:
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def week_start(d: date) -> date:
    """The Monday of ``d``'s ISO week."""
    return d - timedelta(days=d.weekday())


def days_between(start: datetime, end: datetime) -> list[date]:
    """Every UTC calendar day that has an instant in [start, end)."""
    if end <= start:
        return []
    last = (end - timedelta(microseconds=1)).date()
    d, out = start.date(), []
    while d <= last:
        out.append(d)
        d += timedelta(days=1)
    return out


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile by linear interpolation between closest ranks (SQL ``PERCENTILE_CONT``,
    numpy's default): rank ``q * (n - 1)`` in the sorted values. None for no values."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float | None:
    return percentile(values, 0.5)


def p90(values: Sequence[float]) -> float | None:
    return percentile(values, 0.9)


def seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return (later - earlier).total_seconds()


def human_duration(secs: float | None) -> str:
    """``2 h 05 min``, ``3 d 4 h``, ``45 s``; an em dash for none."""
    if secs is None:
        return "—"
    neg, secs = secs < 0, abs(secs)
    if secs < 60:
        text = f"{secs:.0f} s"
    elif secs < 3600:
        text = f"{secs // 60:.0f} min {secs % 60:02.0f} s"
    elif secs < 86400:
        text = f"{secs // 3600:.0f} h {(secs % 3600) // 60:02.0f} min"
    else:
        text = f"{secs // 86400:.0f} d {(secs % 86400) // 3600:.0f} h"
    return ("-" if neg else "") + text
