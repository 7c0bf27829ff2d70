"""Shared request dependencies: state, database session, caller identity."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from ..app import State
from ..auth import Identity, check_token

bearer = HTTPBearer(auto_error=False, description="A chute API token (chute_...)")


def get_state(request: Request) -> State:
    return request.app.state.chute


def get_session(state: State = Depends(get_state)) -> Iterator[Session]:
    with state.db.session() as s:
        yield s


# The request's transaction: ``s: Session = Transaction``. It commits when the route returns,
# *before* the answer is sent. (FastAPI's default scope ends a dependency after the response: a
# client could be told 201 for something a crash then never stored, or not find it in its next
# request.)
Transaction = Depends(get_session, scope="function")


def identity(
    creds: HTTPAuthorizationCredentials | None = Depends(bearer),
    state: State = Depends(get_state),
) -> Identity:
    """The caller; 401 without a valid token. Required on every mutating route."""
    if creds is None:
        raise HTTPException(401, "this call needs a bearer token (Authorization: Bearer chute_...)",
                            headers={"WWW-Authenticate": "Bearer"})
    with state.db.session() as s:
        who = check_token(s, creds.credentials)
    if who is None:
        raise HTTPException(401, "the token is not valid (unknown, revoked or expired)",
                            headers={"WWW-Authenticate": "Bearer"})
    return who
