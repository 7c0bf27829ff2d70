"""Wake-ups for live pages: handlers publish "run N changed", SSE streams wait for it.

The streams read the database for what changed, so the broadcaster only has to
say *that* something happened (and a stream also re-checks every second, which
keeps it correct when another server process made the change).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any


class Broadcaster:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[int, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    def subscribe(self, key: int) -> asyncio.Event:
        ev = asyncio.Event()
        with self._lock:
            self._waiters.setdefault(key, set()).add((asyncio.get_running_loop(), ev))
        return ev

    def unsubscribe(self, key: int, ev: asyncio.Event) -> None:
        with self._lock:
            waiters = self._waiters.get(key, set())
            for item in [w for w in waiters if w[1] is ev]:
                waiters.discard(item)
            if not waiters:
                self._waiters.pop(key, None)

    def publish(self, key: int, _message: Any = None) -> None:
        """Safe to call from any thread."""
        with self._lock:
            waiters = list(self._waiters.get(key, ()))
        for loop, ev in waiters:
            try:
                loop.call_soon_threadsafe(ev.set)
            except RuntimeError:  # the loop is closed: the stream is gone
                pass
