"""Plain git as a change source: poll each project's refs and queue runs for what moved."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select

from chute.repo import RepoError
from chute.store import Project

from . import services

log = logging.getLogger("chute.poller")


def changed_refs(old: dict[str, str], new: dict[str, str]) -> list[tuple[str, str]]:
    """(ref, new sha) for every branch or tag that appeared or moved, branches first."""
    moved = [(ref, sha) for ref, sha in new.items() if old.get(ref) != sha]
    return sorted(moved, key=lambda item: (not item[0].startswith("refs/heads/"), item[0]))


def incoming_for(project: Project, ref: str, sha: str) -> services.Incoming:
    if ref.startswith("refs/tags/"):
        return services.Incoming(kind="tag", commit=sha, ref=ref, branch="")
    branch = ref.removeprefix("refs/heads/")
    kind = "push" if branch == project.default_branch else "push-branch"
    return services.Incoming(kind=kind, commit=sha, ref=ref, branch=branch)


def poll_project(state: Any, project_id: int) -> int:
    """Fetch one project's mirror and queue runs for moved refs; returns how many runs."""
    with state.db.session() as s:
        project = s.get(Project, project_id)
        if project is None or project.review_kind != "git" or not project.settings.get("poll", True):
            return 0
        m = services.mirror(state.settings, project)
        try:
            m.sync()
        except RepoError as err:
            log.warning("poll of %s failed: %s", project.name, err)
            return 0
        new = m.refs()
        queued = 0
        for ref, sha in changed_refs(project.polled_refs or {}, new):
            runs = services.ingest(s, state.settings, project, incoming_for(project, ref, sha),
                                   actor="poller", trigger="poll")
            queued += len(runs)
        project.polled_refs = new
    if queued:
        state.wake_agents()
    return queued


def poll_once(state: Any) -> int:
    with state.db.session() as s:
        ids = list(s.scalars(select(Project.id).where(Project.review_kind == "git")))
    return sum(poll_project(state, pid) for pid in ids)
