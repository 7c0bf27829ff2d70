"""Where chute keeps its state on this machine."""

from __future__ import annotations

import os
from pathlib import Path


def chute_home() -> Path:
    """``$CHUTE_HOME``, else ``~/.local/share/chute``; created on first use."""
    home = os.environ.get("CHUTE_HOME")
    path = Path(home) if home else Path.home() / ".local" / "share" / "chute"
    path.mkdir(parents=True, exist_ok=True)
    return path
