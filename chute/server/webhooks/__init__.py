"""Incoming code-review events: one driver per system behind one interface (like Zuul's).

Use::

    driver = get_driver("github")          # or DRIVERS[kind]
    if not driver.verify(headers, body, secret, query=query_params):
        ...answer 401...
    try:
        events = driver.parse(headers, body)
    except WebhookError as exc:            # 400 malformed, 202 ignored (WebhookIgnored)
        ...answer exc.status with exc.message...
    check_project(events, review_project_name)   # 403 if the payload names another project
    for event in events:                   # de-duplicate on event.delivery_id, then act
        ...

Nothing here touches the server, the database or the network: these are pure functions of
the request's headers and body.
"""

from . import gerrit, git, github, gitlab
from .base import Driver
from .events import (
    EVENT_TYPES,
    RECHECK_LINE,
    SOURCE_KINDS,
    ChangeEvent,
    EventType,
    SourceKind,
    WebhookError,
    WebhookIgnored,
    check_project,
    is_recheck,
)

DRIVERS: dict[str, Driver] = {
    "gerrit": gerrit.driver,
    "gitlab": gitlab.driver,
    "github": github.driver,
    "git": git.driver,
}


def get_driver(kind: str) -> Driver:
    """The driver for ``/webhooks/<kind>``; a 404 WebhookError for an unknown kind."""
    try:
        return DRIVERS[kind]
    except KeyError:
        raise WebhookError(
            404, f"no webhook driver {kind[:40]!r}; chute has: {', '.join(sorted(DRIVERS))}"
        ) from None


__all__ = [
    "DRIVERS",
    "EVENT_TYPES",
    "RECHECK_LINE",
    "SOURCE_KINDS",
    "ChangeEvent",
    "Driver",
    "EventType",
    "SourceKind",
    "WebhookError",
    "WebhookIgnored",
    "check_project",
    "gerrit",
    "get_driver",
    "git",
    "github",
    "gitlab",
    "is_recheck",
]
