"""Secrets: set (value write-only), list (names, never values), delete; and a trusted job's credentials.

Managing secrets needs the ``admin`` scope. Values go in and never come out through
this API, except to an agent holding the lease of a *trusted* job, and then only the
secrets that job's reviewed config asks for (``payload.credentials``). Every change is
a ledger event (``secret.set`` / ``secret.deleted``) with the name and scope only.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from chute.store import Job, Project, Run

from .. import access, services
from ..access import Identity
from .deps import Transaction, get_state, identity
from .schemas import AUTH, AgentIn, Id, errors

log = logging.getLogger("chute.secrets")

router = APIRouter(prefix="/api/v1", tags=["secrets"], responses=errors(400, 401, 403, 404, 409, 422, 503))


class SecretIn(BaseModel):
    # Plain str, checked in the handler: a validation error of the body would echo the value back.
    value: Any = Field(description="The secret value (8 to 65536 characters); never shown again")
    environment: str = Field("", description="An environment name for an environment-scoped secret; "
                                             "empty for the whole project")


class SecretOut(BaseModel):
    project: str
    name: str
    scope: str = Field(description="project | environment")
    environment: str | None
    created_at: datetime
    updated_at: datetime
    updated_by: str


class SecretSet(SecretOut):
    created: bool = Field(description="True when the secret is new, False when its value was replaced")


class JobSecretsOut(BaseModel):
    secrets: dict[str, str] = Field(description="name -> value, for the credentials the job's config asks for")
    missing: list[str] = Field(description="credentials the config asks for that are not defined")


def store(state: Any) -> Any:
    """The server's secret store (one per app; the keyring is loaded on first use)."""
    found = getattr(state, "secret_store", None)
    if found is None:
        from chute.secrets import SecretStore

        found = state.secret_store = SecretStore(state.settings.home)
    return found


def _admin(who: Identity, project: str, s: Session | None = None) -> None:
    access.require(who, access.PROJECT_ADMIN, project, session=s)


def _project(s: Session, name: str) -> Project:
    return services.get_project(s, name)


def _service_errors(fn: Any) -> Any:
    from chute.secrets import SecretInputError, SecretKeyError

    try:
        return fn()
    except SecretInputError as err:
        raise services.ServiceError(err.message, 400, err.hint or None) from None
    except SecretKeyError as err:
        log.error("secret keys: %s", err)
        raise services.ServiceError(f"the server's secret keys are not usable: {err}", 503,
                                    "an administrator must fix CHUTE_SECRET_KEY or the key file "
                                    "(docs/security.md, Secrets)") from None


@router.get("/projects/{name}/secrets", response_model=list[SecretOut])
def list_secrets(name: str, environment: str | None = Query(None, description="Only this scope ('' = project)"),
                 who: Identity = Depends(identity), s: Session = Transaction,
                 state=Depends(get_state)) -> list[SecretOut]:  # type: ignore[no-untyped-def]
    """The project's secrets: names, scopes and when they changed. Values are never returned."""
    _admin(who, name, s)
    p = _project(s, name)
    return [SecretOut(**i.to_dict()) for i in store(state).list(s, p, environment)]


@router.put("/projects/{name}/secrets/{secret}", response_model=SecretSet, responses=AUTH)
def set_secret(name: str, secret: str, body: SecretIn, who: Identity = Depends(identity),
               state=Depends(get_state)) -> SecretSet:  # type: ignore[no-untyped-def]
    """Create or replace a secret. The value is encrypted at rest and given only to trusted runs."""
    with state.db.session() as s:
        _admin(who, name, s)
        p = _project(s, name)
        info, created = _service_errors(lambda: store(state).set(s, p, secret, body.value,
                                                                 environment=body.environment, actor=who.user))
        out = SecretSet(**info.to_dict(), created=created)
    return out


@router.delete("/projects/{name}/secrets/{secret}", status_code=204, responses=AUTH)
def delete_secret(name: str, secret: str, environment: str = Query("", description="The scope ('' = project)"),
                  who: Identity = Depends(identity), state=Depends(get_state)) -> Response:  # type: ignore[no-untyped-def]
    with state.db.session() as s:
        _admin(who, name, s)
        p = _project(s, name)
        if not store(state).delete(s, p, secret, environment=environment, actor=who.user):
            scope = f"environment {environment}" if environment else "the project"
            raise services.ServiceError(f"project {name} has no secret {secret!r} for {scope}", 404,
                                        f"list them with GET /api/v1/projects/{name}/secrets")
    return Response(status_code=204)


@router.post("/jobs/{job_id}/secrets", response_model=JobSecretsOut, responses=AUTH)
def job_secrets(job_id: Id, body: AgentIn, who: Identity = Depends(identity),
                state=Depends(get_state)) -> JobSecretsOut:  # type: ignore[no-untyped-def]
    """The credentials of a trusted job, for the agent that holds it; an untrusted job gets none (403)."""
    access.require(who, access.AGENT)
    with state.db.session() as s:
        job = s.get(Job, job_id)
        if job is None or job.status != "claimed" or job.agent != body.agent:
            raise services.ServiceError(f"job {job_id} is not held by agent {body.agent}", 409,
                                        "the lease expired and the job went back to the queue; drop this work")
        run = s.get(Run, job.run_id)
        assert run is not None
        if not run.trusted or not (job.payload or {}).get("trusted"):
            log.warning("agent %s asked for the secrets of untrusted job %s (run %s): refused",
                        body.agent, job_id, run.id)
            raise services.ServiceError(f"run {run.id} is untrusted (not reviewed code): it gets no secrets", 403,
                                        "secrets are given only to runs of the default branch and of tags")
        wanted = [str(x) for x in (job.payload or {}).get("credentials") or []]
        values = _service_errors(lambda: store(state).values(s, run.project, wanted))
        missing = sorted(set(wanted) - set(values))
        log.info("job %s (run %s): %d secret(s) given to agent %s", job_id, run.id, len(values), body.agent)
    return JobSecretsOut(secrets=values, missing=missing)
