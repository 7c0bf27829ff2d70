"""Small portable SQL pieces for the metrics queries.

``epoch(col)`` is a time column as seconds since 1970 (a float), computed by the
database: the metrics then do arithmetic on floats instead of building a Python
datetime for every row. It is exact to the microsecond on both databases
(SQLite 3.40 has no ``unixepoch(..., 'subsec')``, so the fraction is read from
the stored text, which SQLAlchemy always writes as ``YYYY-MM-DD HH:MM:SS.ffffff``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Float
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAY = date(1970, 1, 1).toordinal()


class epoch(FunctionElement[float]):  # lower case: it reads like the SQL function it stands for
    """Seconds since 1970-01-01 UTC of a timestamp column, as a float."""

    type = Float(asdecimal=False)
    inherit_cache = True
    name = "epoch"


@compiles(epoch, "sqlite")
def _epoch_sqlite(element: epoch, compiler: Any, **kw: Any) -> str:
    col = compiler.process(element.clauses, **kw)
    return f"(CAST(strftime('%s', {col}) AS INTEGER) + CAST(substr({col}, 20) AS REAL))"


@compiles(epoch, "postgresql")
def _epoch_postgresql(element: epoch, compiler: Any, **kw: Any) -> str:
    col = compiler.process(element.clauses, **kw)
    return f"CAST(EXTRACT(EPOCH FROM {col}) AS DOUBLE PRECISION)"


def to_epoch(t: datetime) -> float:
    return (t - _EPOCH).total_seconds() if t.tzinfo else (t.replace(tzinfo=UTC) - _EPOCH).total_seconds()


def from_epoch(s: float) -> datetime:
    return _EPOCH + timedelta(seconds=s)


def epoch_date(s: float) -> date:
    """The UTC calendar day of an epoch time."""
    return date.fromordinal(_EPOCH_DAY + int(s // 86400))
