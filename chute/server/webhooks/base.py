"""The one interface every code-review driver implements."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from .events import ChangeEvent, SourceKind


class Driver(Protocol):
    """Checks and reads the webhooks of one code-review system.

    ``verify`` and ``parse`` are independent: the server checks the secret first (and refuses
    the request with 401 when it fails) and only then parses the body.
    """

    kind: SourceKind

    def verify(
        self,
        headers: Mapping[str, str],
        body: bytes,
        secret: str,
        query: Mapping[str, str] | None = None,
    ) -> bool:
        """Whether the request carries the project's secret (or a valid signature made with it).

        ``query`` holds the URL's query parameters, for senders that can put a token nowhere
        else (the Gerrit webhooks plugin). An empty ``secret`` never verifies.
        """
        ...

    def parse(self, headers: Mapping[str, str], body: bytes) -> list[ChangeEvent]:
        """The events in a request body.

        Raises :class:`~chute.server.webhooks.events.WebhookError` (400) for a malformed body
        and :class:`~chute.server.webhooks.events.WebhookIgnored` (202) for an event chute
        does not act on; never any other exception.
        """
        ...
