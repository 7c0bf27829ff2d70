"""Live run pages: server-sent events carrying HTML fragments for htmx to swap in.

Each ``update`` event holds out-of-band fragments (``hx-swap-oob``): the run's
head (status, images, actions, why it failed), the stage graph, the stage table
and the status badges of the log sections are replaced when the run's state
changes; new log chunks are appended to their stage's ``<pre>``. The stream
starts from what the page showed (``after`` = last log sequence number, ``v`` =
the state version); if the state moved on in between, or the browser reconnects
with an old URL, the first event replaces every live part, so a reconnect never
duplicates or loses lines. When the run has finished and everything was sent,
an ``end`` event tells the page to close the stream (``sse-close="end"``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse
from markupsafe import Markup

from .. import services
from . import views
from .ansi import ansi_to_html
from .render import HEADERS
from .routes import UIError, _run, _state, _ui, session_of
from .sessions import UISession

_LINES = re.compile(r"\r\n|\r|\n")


@dataclass
class Client:
    """What the browser shows now."""

    version: str
    seq: int
    sections: list[str] | None = None  # log sections on the page; None until the first tick


def sse(event: str, html: str) -> bytes:
    # SSE ends a data line at any line break; the browser joins the lines with "\n" again.
    data = "\n".join(f"data: {line}" for line in _LINES.split(html))
    return f"event: {event}\n{data}\n\n".encode()


def _fragments(ui: Any, sess: UISession, view: views.RunView, *, logs: bool) -> list[str]:
    r = ui.renderer
    ctx = {"view": view, "run": view.run, "sess": sess, "oob": True}
    out = [r.fragment(name, **ctx) for name in ("_run_head.html", "_run_meta.html", "_graph.html", "_stages.html")]
    if logs:
        out.append(r.fragment("_logs.html", **ctx))
    else:
        out.append(r.fragment("_log_badges.html", **ctx))
    return out


def tick(request: Request, run_id: int, client: Client, sess: UISession) -> tuple[list[bytes], bool, bool]:
    """One look at the run: (events to send, finished, more log chunks are waiting)."""
    state, ui = _state(request), _ui(request)
    with state.db.session() as s:
        run = _run(s, run_id)
        view = views.run_view(s, run, with_logs=False)
        seq = views.max_log_seq(s, run_id)
        sections = [n for n, _ in views.log_sections(view.stages, views.log_stage_names(s, run_id))]
        parts: list[str] = []
        more = False
        first = client.sections is None
        if first and view.version == client.version and seq == client.seq:
            client.sections = sections  # the page is current
        elif first or sections != client.sections:
            view.logs, client.seq = views.load_logs(s, run, view.stages)
            parts += _fragments(ui, sess, view, logs=True)
            client.version, client.sections = view.version, sections
        else:
            if view.version != client.version:
                parts += _fragments(ui, sess, view, logs=False)
                client.version = view.version
            if seq > client.seq:
                chunks = views.new_log_chunks(s, run_id, client.seq)
                more = len(chunks) >= 2000
                parts += _appends(chunks)
                client.seq = chunks[-1].seq if chunks else seq
        finished = run.status in services.FINAL and client.seq >= seq and not more
    events = [sse("update", "".join(parts))] if parts else []
    return events, finished, more


def _appends(chunks: list[Any]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(chunks):  # consecutive chunks of one stage go in one fragment
        j = i
        while j + 1 < len(chunks) and chunks[j + 1].stage == chunks[i].stage:
            j += 1
        text = "".join(c.text for c in chunks[i:j + 1])
        target = views.dom_id("log", chunks[i].stage)
        out.append(str(Markup('<div hx-swap-oob="beforeend:#{0}">{1}</div>').format(target, ansi_to_html(text))))
        i = j + 1
    return out


async def run_stream(request: Request, run_id: int, after: int, version: str) -> StreamingResponse:
    state = _state(request)
    sess = await asyncio.to_thread(session_of, request)

    def exists() -> bool:
        with state.db.session() as s:
            return views.load_run(s, run_id) is not None

    if not await asyncio.to_thread(exists):  # never a database call on the event loop (api/agents.py)
        raise UIError(404, "No such run", f"There is no run {run_id}.")
    client = Client(version, after)

    async def stream() -> AsyncIterator[bytes]:
        wake = state.broadcaster.subscribe(run_id)
        try:
            while not state.stop.is_set():
                wake.clear()
                events, finished, more = await asyncio.to_thread(tick, request, run_id, client, sess)
                for ev in events:
                    yield ev
                if finished:
                    yield b"event: end\ndata: finished\n\n"
                    return
                if more:
                    continue
                if await request.is_disconnected():
                    return
                try:
                    await asyncio.wait_for(wake.wait(), timeout=1.0)
                except TimeoutError:
                    yield b": keep-alive\n\n"
        finally:
            state.broadcaster.unsubscribe(run_id, wake)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={**HEADERS, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
