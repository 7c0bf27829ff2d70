"""Request and response bodies of the REST API (pydantic models, shown in the OpenAPI)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class ProjectIn(BaseModel):
    repo: str = Field(description="A local path to a git repository, or a git URL")
    name: str | None = Field(None, description="Project name; default: the repository's base name")
    review_kind: str = Field("git", pattern="^(git|gerrit|gitlab|github)$")
    review_project: str | None = Field(None, description="The name the code-review system uses")


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
    ref: str | None = Field(None, description="Branch, tag or ref; default: the default branch")
    commit: str | None = None
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


class AgentIn(BaseModel):
    agent: str


class HeartbeatOut(BaseModel):
    status: str = Field(description="ok | cancel (stop the run) | lost (the job is no longer yours)")


class LogsIn(BaseModel):
    agent: str
    chunks: list[dict[str, Any]] = Field(description="[{seq, stage, text}]")


class StageIn(BaseModel):
    agent: str
    stage: str
    status: str = Field(pattern="^(pending|running|success|failure|skipped|cancelled|reused|error)$")
    error: str = ""
    exports: dict[str, Any] | None = None


class GraphIn(BaseModel):
    agent: str
    graph: dict[str, Any]


class CompleteIn(BaseModel):
    agent: str
    result: dict[str, Any]
