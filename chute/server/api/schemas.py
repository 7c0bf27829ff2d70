"""Request and response bodies of the REST API (pydantic models, shown in the OpenAPI)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# The smallest integer column (PostgreSQL ``integer``): ids and counts beyond it cannot exist,
# so they are refused as invalid input (422) instead of reaching the database.
DB_INT_MAX = 2**31 - 1
SEQ_MAX = 2**53  # log sequence numbers (BIGINT): the largest integer every JSON parser keeps exact


class ProjectIn(BaseModel):
    repo: str = Field(min_length=1, max_length=4000, description="A local path to a git repository, or a git URL")
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$",
                             description="Project name; default: the repository's base name")
    review_kind: str = Field("git", pattern="^(git|gerrit|gitlab|github)$")
    review_project: str | None = Field(None, min_length=1, max_length=300,
                                       description="The name the code-review system uses")


class ProjectOut(BaseModel):
    name: str
    repo_url: str
    review_kind: str
    default_branch: str
    has_pipeline: bool
    config_error: str | None
    created_at: datetime
    last_status: dict[str, str] = Field(default_factory=dict, description="pipeline -> status of its last run")


class ProjectCreated(ProjectOut):
    webhook_url: str
    webhook_secret: str
    pipelines: list[dict[str, Any]]
    instructions: str


class TriggerIn(BaseModel):
    ref: str | None = Field(None, min_length=1, max_length=300,
                            description="Branch, tag or ref; default: the default branch")
    commit: str | None = Field(None, pattern="^[0-9a-fA-F]{4,64}$",
                               description="A commit id (or a unique prefix); default: the ref's head")
    pipelines: list[str] | None = Field(None, description="Which pipelines; default: per the event rules")
    params: dict[str, str] = Field(default_factory=dict)


class ImageOut(BaseModel):
    stage: str
    name: str
    tags: list[str]
    digest: str
    references: list[str]


class StageOut(BaseModel):
    name: str
    status: str
    error: str
    started_at: datetime | None
    finished_at: datetime | None
    duration: float | None
    exports: dict[str, Any]
    reused_from: int | None


class ChangeOut(BaseModel):
    id: int
    kind: str
    number: str
    patchset: int
    commit: str
    ref: str
    branch: str
    author: str
    title: str
    url: str


class RunOut(BaseModel):
    id: int
    project: str
    pipeline: str
    status: str
    reason: str
    trigger: str
    actor: str
    trusted: bool
    rerun_of: int | None
    reuse_from: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration: float | None
    change: ChangeOut
    stages: list[StageOut]
    images: list[ImageOut]
    graph: dict[str, Any]
    url: str


class RerunIn(BaseModel):
    failed_only: bool = Field(False, description="Reuse the images and exports of the stages that passed")


class LogChunkOut(BaseModel):
    seq: int
    stage: str
    text: str
    at: datetime


class ClaimIn(BaseModel):
    agent: str = Field(min_length=1, max_length=200)
    wait: float = Field(20.0, ge=0, le=60, description="Long-poll up to this many seconds")


class ClaimOut(BaseModel):
    job_id: int
    run_id: int
    attempt: int
    lease_seconds: float
    payload: dict[str, Any]


def _printable(text: str) -> str:
    # Process output may hold NUL bytes, which PostgreSQL text cannot store: keep the rest.
    return text.replace("\x00", "\ufffd")


# Text an agent reports from the processes it ran (log lines, error messages).
ProcessText = Annotated[str, AfterValidator(_printable)]
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_printable)]  # agents, stages


class AgentIn(BaseModel):
    agent: Name


class HeartbeatOut(BaseModel):
    status: str = Field(description="ok | cancel (stop the run) | lost (the job is no longer yours)")


class LogChunkIn(BaseModel):
    seq: int = Field(ge=0, le=SEQ_MAX, description="Unique per run; a chunk whose seq is stored already is ignored")
    stage: Annotated[str, Field(max_length=200), AfterValidator(_printable)] = Field("", description="'' = set-up")
    text: ProcessText


class LogsIn(BaseModel):
    agent: Name
    chunks: list[LogChunkIn] = Field(max_length=10_000)


STAGE_STATUS = "^(pending|running|success|failure|skipped|cancelled|reused|error)$"


class StageIn(BaseModel):
    agent: Name
    stage: Name
    status: str = Field(pattern=STAGE_STATUS)
    error: ProcessText = ""
    exports: dict[str, Any] | None = None


class GraphDoc(BaseModel):
    """The stage graph the agent runs (other keys, e.g. ``pipeline``, are kept)."""

    model_config = ConfigDict(extra="allow")
    stages: list[Name] = Field(default_factory=list, max_length=1000)
    edges: list[tuple[Name, Name]] = Field(default_factory=list, max_length=100_000)


class GraphIn(BaseModel):
    agent: Name
    graph: GraphDoc


class StageResultIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: Name
    status: str = Field("error", pattern=STAGE_STATUS)
    error: ProcessText | None = ""
    exports: dict[str, Any] | None = None
    reused_from: int | None = Field(None, ge=1, le=DB_INT_MAX)


class ImageIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    stage: Annotated[str, Field(max_length=200)] = ""
    name: Annotated[str, Field(min_length=1, max_length=2000)]
    tags: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list, max_length=1000)
    digest: Annotated[str, Field(min_length=1, max_length=100)]


class ResultIn(BaseModel):
    """The runner's result document (other keys are kept as they are)."""

    model_config = ConfigDict(extra="allow")
    status: str = Field("error", description="success | failure | error | cancelled (anything else counts as error)")
    error: ProcessText | None = ""
    duration: float | None = None
    stages: list[StageResultIn] = Field(default_factory=list, max_length=1000)
    images: list[ImageIn] = Field(default_factory=list, max_length=1000)


class CompleteIn(BaseModel):
    agent: Name
    result: ResultIn


# ------------------------------------------------------------------ errors


class ErrorOut(BaseModel):
    """Every API error: what was wrong and, when there is something to do about it, what."""

    detail: str | list[dict[str, Any]] = Field(
        description="A sentence saying what was wrong; for 422 also FastAPI's list of the invalid fields")
    hint: str | None = Field(None, description="What to do about it")


_ERRORS = {
    400: "The request is well formed but cannot be done as asked (the detail says why)",
    401: "No bearer token, or one that is unknown, revoked or expired",
    403: "The caller's token scopes or project roles do not allow this call (the detail names what is missing)",
    404: "No such project, run, change, environment or request",
    409: "The request conflicts with the current state (e.g. the run already finished, the job is not "
         "held by this agent any more)",
    422: "A parameter or body field is invalid (or names a commit the repository does not have)",
    429: "Too many failed logins from this address or for this user: wait and try again",
    502: "The project's git repository could not be fetched",
    503: "The server cannot do this now (e.g. its secret keys are not usable)",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the error statuses a route can answer with."""
    return {code: {"model": ErrorOut, "description": _ERRORS[code]} for code in codes}


AUTH = errors(401)  # every mutating call needs a bearer token

Id = Annotated[int, Path(ge=1, le=DB_INT_MAX, description="A row id")]  # run, job, change, request ids
