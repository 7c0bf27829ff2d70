"""Gerrit ``stream-events`` as a change source: the server reads the event stream itself.

Set ``CHUTE_GERRIT_STREAM`` to the command that prints it, e.g.
``ssh -p 29418 chute-bot@gerrit.example.org gerrit stream-events``; the server runs it
(no shell: the words are split like a shell would), restarts it with back-off
when it ends, maps each event's repository to the project whose review name it is,
and hands it to the same path as the webhooks (de-duplicated by delivery id, so
running the webhooks plugin too is harmless).
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from typing import Any

from sqlalchemy import select

from chute.store import Project

from .webhooks import ChangeEvent
from .webhooks.gerrit import read_stream

log = logging.getLogger("chute.gerrit")


def project_for(state: Any, event: ChangeEvent) -> str | None:
    with state.db.session() as s:
        p = s.scalars(select(Project).where(Project.review_kind == "gerrit",
                                            Project.review_project == event.project)).first()
        return p.name if p is not None else None


def consume(state: Any, lines: Any) -> int:
    """Process every event in ``lines``; returns how many runs were queued."""
    from .webhook_routes import process_events

    queued = 0
    for event in read_stream(lines):
        name = project_for(state, event)
        if name is None:
            continue  # a repository chute does not build
        resp = process_events(state, name, "gerrit", [event])
        queued += len(resp.get("runs", []))
    return queued


def run_stream(state: Any) -> None:
    """The background loop: (re)start the stream command until the server stops."""
    command = os.environ.get("CHUTE_GERRIT_STREAM")
    if not command:
        return
    delay = 1.0
    while not state.stop.is_set():
        try:
            proc = subprocess.Popen(shlex.split(command), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                    text=True, bufsize=1)
        except OSError as err:
            log.warning("cannot start gerrit stream-events (%s): %s", command, err)
        else:
            assert proc.stdout is not None
            try:
                consume(state, iter(proc.stdout.readline, ""))
                delay = 1.0
            finally:
                proc.kill()
                proc.wait()
        state.stop.wait(delay)
        delay = min(delay * 2, 60.0)
