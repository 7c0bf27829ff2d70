"""Shared request dependencies: state, database session, caller identity."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from ..access import Identity, Policy, anonymous
from ..app import State
from ..auth import check_token

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

def policy_of(state: State) -> Policy:
    return Policy(anonymous_read=state.settings.anonymous_read, self_service=state.settings.self_service)


def _from_token(state: State, text: str) -> Identity:
    with state.db.session() as s:
        who = check_token(s, text, policy_of(state))
    if who is None:
        raise HTTPException(401, "the token is not valid (unknown, revoked or expired, or its user is disabled)",
                            headers={"WWW-Authenticate": "Bearer"})
    return who


def identity(
    creds: HTTPAuthorizationCredentials | None = Depends(bearer),
    state: State = Depends(get_state),
) -> Identity:
    """The caller; 401 without a valid token. Required on every mutating route (then ``access.require``)."""
    if creds is None:
        raise HTTPException(401, "this call needs a bearer token (Authorization: Bearer chute_...)",
                            headers={"WWW-Authenticate": "Bearer"})
    return _from_token(state, creds.credentials)


def caller(
    creds: HTTPAuthorizationCredentials | None = Depends(bearer),
    state: State = Depends(get_state),
) -> Identity:
    """The caller of a read: anonymous without a token (reads then depend on CHUTE_ANONYMOUS_READ);
    a token that is sent must be valid."""
    if creds is None:
        return anonymous(policy_of(state))
    return _from_token(state, creds.credentials)
