"""What each page shows, read from the store: plain data for the templates.

Kept apart from the routes so the live stream renders the same view of a run
as the page does.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, defer, selectinload

from chute.store import Change, Image, LogChunk, Project, Run, StageResult, utcnow

from .. import services
from .graph import Layout, layout, read_graph
from .render import dom_id, duration_between

LOG_CHUNKS_PER_STAGE = 64  # chunks are up to 16 kB: a page shows at most ~1 MB of one stage
TAIL_LINES = 15  # lines of the failing stage's log shown in "why it failed"
ACTIVE = ("queued", "running")
NOT_SHOWN = (defer(Run.result), defer(Run.params))  # lists of runs never show these (often the largest columns)


# ------------------------------------------------------------------ dashboard
@dataclass
class ProjectRow:
    project: Project
    last_runs: list[Run]  # the newest run of each pipeline
    latest_image: Image | None
    active: int


def dashboard(s: Session, visible: set[str] | None = None) -> dict[str, Any]:
    """``visible``: the project names the viewer may read (None: all)."""
    projects = list(s.scalars(select(Project).order_by(Project.name)))
    if visible is not None:
        projects = [p for p in projects if p.name in visible]
    newest = services.newest_run_ids(s, [p.id for p in projects])
    last_runs: dict[int, list[Run]] = {}
    for run in s.scalars(select(Run).where(Run.id.in_(newest)).options(selectinload(Run.change), *NOT_SHOWN)
                         .order_by(Run.pipeline)):
        last_runs.setdefault(run.project_id, []).append(run)
    image_runs = services.newest_image_runs(s, [p.id for p in projects])
    latest: dict[int, Image] = {}
    run_project = {run_id: pid for pid, run_id in image_runs.items()}
    for img in s.scalars(select(Image).where(Image.run_id.in_(list(run_project))).order_by(Image.id)):
        latest[run_project[img.run_id]] = img  # the run's last image
    # The few active runs, found on ix_runs_status and counted and sorted here: SQLite would
    # otherwise walk every run (in project order for a GROUP BY, in id order for ORDER BY ... LIMIT).
    active_ids = dict(s.execute(select(Run.id, Run.project_id).where(Run.status.in_(ACTIVE))).all())
    active = Counter(active_ids.values())
    rows = [ProjectRow(p, last_runs.get(p.id, []), latest.get(p.id), active.get(p.id, 0)) for p in projects]
    shown = select(Run)
    if visible is not None:
        shown_ids = {p.id for p in projects}
        shown = shown.where(Run.project_id.in_(shown_ids))
        active_ids = {run_id: pid for run_id, pid in active_ids.items() if pid in shown_ids}
    recent = list(s.scalars(shown.options(selectinload(Run.change), selectinload(Run.project),
                                          selectinload(Run.images), *NOT_SHOWN)
                            .order_by(Run.id.desc()).limit(20)))
    newest_active = sorted(active_ids, reverse=True)[:50]
    running = list(s.scalars(select(Run).where(Run.id.in_(newest_active))
                             .options(selectinload(Run.change), selectinload(Run.project),
                                      selectinload(Run.images), *NOT_SHOWN)
                             .order_by(Run.id.desc())))
    return {"rows": rows, "recent": recent, "active_runs": running}


# ------------------------------------------------------------------ project
@dataclass
class RunFilter:
    pipeline: str = ""
    branch: str = ""
    status: str = ""
    before: int | None = None  # for paging: runs with a smaller id

    def query_string(self, **override: Any) -> str:
        from urllib.parse import urlencode

        values = {"pipeline": self.pipeline, "branch": self.branch, "status": self.status, "before": self.before}
        values.update(override)
        return urlencode({k: v for k, v in values.items() if v not in ("", None)})


PAGE_SIZE = 50


def project_runs(s: Session, project: Project, f: RunFilter) -> tuple[list[Run], int | None]:
    """One page of the project's runs (newest first) and the id to continue from, if any."""
    q = select(Run).join(Change, Change.id == Run.change_id).where(Run.project_id == project.id)
    if f.pipeline:
        q = q.where(Run.pipeline == f.pipeline)
    if f.branch:
        q = q.where(Change.branch == f.branch)
    if f.status:
        q = q.where(Run.status == f.status)
    if f.before:
        q = q.where(Run.id < f.before)
    runs = list(s.scalars(q.options(selectinload(Run.change), selectinload(Run.images), *NOT_SHOWN)
                          .order_by(Run.id.desc()).limit(PAGE_SIZE + 1)))
    more = runs[PAGE_SIZE - 1].id if len(runs) > PAGE_SIZE else None
    return runs[:PAGE_SIZE], more


def filter_choices(s: Session, project: Project) -> dict[str, list[str]]:
    return {"pipelines": list(services.pipeline_heads(s, project.id)), "branches": services.branches(s, project.id)}


def webhook_url(base_url: str, project: Project) -> str:
    return f"{base_url}/webhooks/{project.review_kind}?project={project.name}"


# ------------------------------------------------------------------ run
@dataclass
class StageRow:
    name: str
    status: str
    duration: str
    error: str
    reused_from: int | None
    anchor: str
    log_id: str


@dataclass
class StageLog:
    name: str  # "" for lines not tied to a stage (checkout, set-up)
    title: str
    text: str  # raw text (escaped at render)
    truncated: bool
    log_id: str
    anchor: str
    status: str


@dataclass
class RunView:
    run: Run
    graph: Layout
    stages: list[StageRow]
    failing: list[tuple[StageRow, str]]  # (stage, last lines of its log)
    reruns: list[Run]
    version: str  # changes whenever anything the live parts show changes
    logs: list[StageLog] = field(default_factory=list)
    log_seq: int = -1

    @property
    def active(self) -> bool:
        return self.run.status in ACTIVE

    @property
    def can_rerun_failed(self) -> bool:
        statuses = {st.status for st in self.stages}
        return (self.run.status in services.FINAL and bool(statuses & {"success", "reused"})
                and bool(statuses - {"success", "reused"}))


def load_run(s: Session, run_id: int) -> Run | None:
    return s.scalars(select(Run).where(Run.id == run_id)
                     .options(selectinload(Run.stages), selectinload(Run.images), selectinload(Run.change),
                              selectinload(Run.project))).first()


def run_view(s: Session, run: Run, *, with_logs: bool = True) -> RunView:
    now = utcnow()
    results = {st.name: st for st in run.stages}
    names, edges = read_graph(run.graph or {}, [st.name for st in run.stages])
    lay = layout(names, edges)
    rows: list[StageRow] = []
    for name in names:
        st: StageResult | None = results.get(name)
        status = st.status if st is not None else "pending"
        # A reused or skipped stage did not run here: no duration to show.
        ran = st is not None and status not in ("reused", "skipped")
        dur = duration_between(st.started_at, st.finished_at, now) if ran else ""
        rows.append(StageRow(name, status, dur, st.error if st is not None else "",
                             st.reused_from if st is not None else None, dom_id("stage", name),
                             dom_id("log", name)))
    by_name = {r.name: r for r in rows}
    for node in lay.nodes:
        row = by_name[node.name]
        node.status, node.duration, node.anchor = row.status, row.duration, row.anchor
    for edge in lay.edges:
        edge.status = by_name[edge.src].status
    reruns = list(s.scalars(select(Run).where(Run.rerun_of == run.id).order_by(Run.id)))
    failing_rows = [r for r in rows if r.status in ("failure", "error")]
    failing = [(r, log_tail(s, run.id, r.name)) for r in failing_rows]
    view = RunView(run, lay, rows, failing, reruns, version="")
    if with_logs:
        view.logs, view.log_seq = load_logs(s, run, rows)
    view.version = live_version(run, rows, reruns)
    return view


def live_version(run: Run, rows: list[StageRow], reruns: list[Run]) -> str:
    state = {
        "status": run.status, "reason": run.reason,
        "stages": [(r.name, r.status, r.error, r.reused_from) for r in rows],
        "images": [(i.name, list(i.tags), i.digest) for i in run.images],
        "reruns": [r.id for r in reruns],
    }
    return hashlib.sha1(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()[:16]


def log_tail(s: Session, run_id: int, stage: str, lines: int = TAIL_LINES) -> str:
    chunks = list(s.scalars(select(LogChunk.text).where(LogChunk.run_id == run_id, LogChunk.stage == stage)
                            .order_by(LogChunk.seq.desc()).limit(4)))
    text = "".join(reversed(chunks)).replace("\r\n", "\n")
    return "\n".join(text.rstrip("\n").split("\n")[-lines:])  # raw: colours are rendered like the log


def log_stage_names(s: Session, run_id: int) -> list[str]:
    return list(s.scalars(select(LogChunk.stage).where(LogChunk.run_id == run_id).distinct()))


def max_log_seq(s: Session, run_id: int) -> int:
    return s.scalar(select(func.max(LogChunk.seq)).where(LogChunk.run_id == run_id)) or -1


def log_sections(rows: list[StageRow], logged: list[str]) -> list[tuple[str, str]]:
    """(stage, status) of each log section in page order: set-up lines, then stages as in the graph."""
    known = {r.name for r in rows}
    out: list[tuple[str, str]] = []
    if "" in logged:
        out.append(("", ""))
    out += [(r.name, r.status) for r in rows]
    out += [(n, "") for n in sorted(logged) if n and n not in known]
    return out


def load_logs(s: Session, run: Run, rows: list[StageRow]) -> tuple[list[StageLog], int]:
    seq = max_log_seq(s, run.id)
    logged = log_stage_names(s, run.id)
    anchors = {r.name: r.anchor for r in rows}
    out: list[StageLog] = []
    for name, status in log_sections(rows, logged):
        chunks = list(s.scalars(select(LogChunk).where(LogChunk.run_id == run.id, LogChunk.stage == name,
                                                       LogChunk.seq <= seq)
                                .order_by(LogChunk.seq.desc()).limit(LOG_CHUNKS_PER_STAGE + 1)))
        truncated = len(chunks) > LOG_CHUNKS_PER_STAGE
        text = "".join(c.text for c in reversed(chunks[:LOG_CHUNKS_PER_STAGE]))
        out.append(StageLog(name, name or "set-up (checkout, before the first stage)", text, truncated,
                            dom_id("log", name), anchors.get(name, dom_id("stage", name)), status))
    return out, seq


def new_log_chunks(s: Session, run_id: int, after: int, limit: int = 2000) -> list[LogChunk]:
    return list(s.scalars(select(LogChunk).where(LogChunk.run_id == run_id, LogChunk.seq > after)
                          .order_by(LogChunk.seq).limit(limit)))


# ------------------------------------------------------------------ change
def change_runs(s: Session, project: Project, key: str) -> tuple[list[Change], dict[int, list[Run]]]:
    """Every change (patchset or commit) matching ``key`` (a change number or a commit prefix), with its runs."""
    cond = Change.number == key
    if len(key) >= 7 and all(c in "0123456789abcdef" for c in key.lower()):
        # A range, not LIKE 'key%': SQLite uses ix_changes_project_commit only for a range.
        cond = cond | ((Change.commit >= key.lower()) & (Change.commit < key.lower() + "g"))
    changes = list(s.scalars(select(Change).where(Change.project_id == project.id, cond)
                             .order_by(Change.patchset.desc(), Change.id.desc())))
    runs: dict[int, list[Run]] = {c.id: [] for c in changes}
    if changes:
        for r in s.scalars(select(Run).where(Run.change_id.in_(list(runs)))
                           .options(selectinload(Run.images)).order_by(Run.id.desc())):
            runs[r.change_id].append(r)
    return changes, runs


def change_key(change: Change) -> str:
    """The URL key of a change's page: its number under review, else its commit."""
    return change.number or change.commit
