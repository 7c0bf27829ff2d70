"""Config problems that point at the exact place in the user's file.

Every user-facing config error in chute is a :class:`ConfigError` holding one or
more :class:`Problem` values. A problem knows the file, the 1-based line and
column, the dotted field path, what is wrong and a hint on what to do. The CLI
prints them and exits with ``exit_code``; the HTTP services turn them into JSON.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

# Exit codes follow Blubber's CLI (spec/blubber.md §1.1); chute's other
# commands reuse them for the same kinds of failure.
EXIT_USAGE = 1
EXIT_READ = 2
EXIT_EXPAND = 3
EXIT_INVALID = 4
EXIT_POLICY_LOAD = 5
EXIT_POLICY_VIOLATION = 6


def format_path(path: Sequence[str | int]) -> str:
    """Render ``("variants", "test", "copies", 0, "from")`` as ``variants.test.copies[0].from``."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        else:
            out.append(f".{part}" if out else str(part))
    return "".join(out)


class Problem:
    """One thing wrong with a config, and where.

    A plain class rather than a dataclass: ``chute blubber`` imports this on
    every run, and ``dataclasses`` (through ``inspect``) costs more start-up
    time than the whole compiler.
    """

    __slots__ = ("column", "hint", "line", "message", "path", "severity", "source")

    def __init__(self, message: str, path: str = "", source: str | None = None, line: int | None = None,
                 column: int | None = None, hint: str | None = None, severity: str = "error") -> None:
        self.message = message
        self.path = path
        self.source = source
        self.line = line
        self.column = column
        self.hint = hint
        self.severity = severity  # "error" or "warning"

    def _key(self) -> tuple[object, ...]:
        return (self.message, self.path, self.source, self.line, self.column, self.hint, self.severity)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Problem) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (f"Problem({self.message!r}, path={self.path!r}, source={self.source!r}, line={self.line}, "
                f"column={self.column}, hint={self.hint!r}, severity={self.severity!r})")

    def location(self) -> str:
        parts = [self.source or "<input>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)

    def __str__(self) -> str:
        head = f"{self.location()}: {self.severity}: "
        if self.path:
            head += f"{self.path}: "
        text = head + self.message
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text

    def to_dict(self) -> dict[str, object]:
        return {
            "severity": self.severity,
            "file": self.source,
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "message": self.message,
            "hint": self.hint,
        }


class ConfigError(Exception):
    """One or more problems that stop a config from being used."""

    def __init__(self, problems: list[Problem], exit_code: int = EXIT_INVALID, summary: str = "") -> None:
        self.problems = problems
        self.exit_code = exit_code
        self.summary = summary
        super().__init__(summary or (str(problems[0]) if problems else "invalid config"))

    def __str__(self) -> str:
        return self.format()

    def format(self) -> str:
        lines = [self.summary] if self.summary else []
        lines.extend(str(p) for p in self.problems)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        return {
            "error": self.summary or "invalid config",
            "exit_code": self.exit_code,
            "problems": [p.to_dict() for p in self.problems],
        }

    @classmethod
    def single(
        cls,
        message: str,
        *,
        exit_code: int = EXIT_INVALID,
        path: str = "",
        source: str | None = None,
        line: int | None = None,
        column: int | None = None,
        hint: str | None = None,
    ) -> ConfigError:
        return cls([Problem(message, path, source, line, column, hint)], exit_code)


def errors_only(problems: Iterable[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]
