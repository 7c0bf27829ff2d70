"""Loading config files with positions, and the errors that point into them."""

from .errors import (
    EXIT_EXPAND,
    EXIT_INVALID,
    EXIT_POLICY_LOAD,
    EXIT_POLICY_VIOLATION,
    EXIT_READ,
    EXIT_USAGE,
    ConfigError,
    Problem,
    format_path,
)
from .yamlload import Document, Mark, load_file, load_yaml

__all__ = [
    "EXIT_EXPAND",
    "EXIT_INVALID",
    "EXIT_POLICY_LOAD",
    "EXIT_POLICY_VIOLATION",
    "EXIT_READ",
    "EXIT_USAGE",
    "ConfigError",
    "Document",
    "Mark",
    "Problem",
    "format_path",
    "load_file",
    "load_yaml",
]
