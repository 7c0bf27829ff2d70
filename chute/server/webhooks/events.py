"""What every webhook driver produces: normalised change events, and the errors it may raise.

A driver turns one code-review system's payload into :class:`ChangeEvent` values that the
rest of chute handles without knowing where they came from (Zuul's driver model). The event
type tells the caller what to do:

``patchset``
    A new patch set, merge request or pull request revision: run the tests. The code is
    untrusted (it has not been reviewed), so the run gets no secrets and no deploy rights.
``merged``
    A change merged, or a push to a branch: the code is now on a branch that people
    reviewed, so publish/deploy pipelines may run.
``comment``
    Someone commented on a change; :attr:`ChangeEvent.recheck` says whether the comment asks
    to run the tests again.
``tag``
    A tag was pushed (a release).
``ref-updated``
    A branch moved outside of a review (Gerrit ``ref-updated`` on ``refs/heads/*``, which
    Gerrit also sends after every merge, so callers usually act on ``merged`` instead).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

EventType = Literal["patchset", "merged", "comment", "tag", "ref-updated"]
SourceKind = Literal["gerrit", "gitlab", "github", "git"]

EVENT_TYPES: tuple[EventType, ...] = ("patchset", "merged", "comment", "tag", "ref-updated")
SOURCE_KINDS: tuple[SourceKind, ...] = ("gerrit", "gitlab", "github", "git")


def is_null_sha(sha: str) -> bool:
    """git's all-zero id, which stands for "no commit" (a created or deleted ref)."""
    return bool(sha) and set(sha) == {"0"}


class WebhookError(Exception):
    """A request chute cannot act on, with the HTTP status to answer it with.

    ``status`` is 400 for a malformed body (the message says what is wrong and where), 401
    for a bad secret and 202 for a well-formed event that chute does not act on
    (:class:`WebhookIgnored`). Drivers raise nothing else, whatever the input.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def __str__(self) -> str:
        return self.message


class WebhookIgnored(WebhookError):
    """A valid event of a kind chute does not act on; answer ``202`` with the message."""

    def __init__(self, reason: str) -> None:
        super().__init__(202, f"ignored: {reason}")
        self.reason = reason


# A comment asks for a rerun when one of its lines is just "recheck" (any case, optional
# trailing full stop as Wikimedia's Zuul layout allows). A whole line, not a substring, so
# "please don't recheck yet" or a quoted "> recheck" never starts a run, and chute's own
# report ("... or reply 'recheck'") cannot trigger itself.
RECHECK_LINE = re.compile(r"^[ \t]*recheck\.?[ \t]*$", re.IGNORECASE | re.MULTILINE)


def is_recheck(text: str | None) -> bool:
    """Whether a comment asks to run the change's tests again (see :data:`RECHECK_LINE`)."""
    return bool(text) and RECHECK_LINE.search(text.replace("\r\n", "\n")) is not None


@dataclass(frozen=True)
class ChangeEvent:
    """One thing that happened in a code-review system, in chute's words.

    ``project`` is the repository as the review system names it (Gerrit
    ``mediawiki/services/citoid``, GitLab ``group/sub/project``, GitHub ``owner/repo``); the
    caller maps it to a chute project and must check it matches the project named in the
    webhook URL.
    """

    source: SourceKind
    project: str
    type: EventType
    delivery_id: str
    #: Gerrit change number, GitLab merge request IID or GitHub pull request number.
    change_number: int | None = None
    #: Gerrit's ``Change-Id`` (``I…``); None elsewhere.
    change_id: str | None = None
    #: Gerrit patch set number; None elsewhere (MR/PR revisions are named by ``sha``).
    patchset: int | None = None
    #: The commit to build. None only for a GitHub PR comment (the payload does not carry it).
    sha: str | None = None
    #: The full ref to fetch ``sha`` from: ``refs/changes/23/123/2``, ``refs/pull/7/head``,
    #: ``refs/merge-requests/5/head``, ``refs/heads/main``, ``refs/tags/v1.0``.
    ref: str | None = None
    #: Short branch name: the MR/PR source branch, the pushed or merged-into branch, or a
    #: Gerrit change's branch.
    branch: str | None = None
    #: Where a change will land (Gerrit branch, MR target, PR base); None for plain pushes.
    target_branch: str | None = None
    #: Who caused the event (uploader, pusher, commenter, submitter): a user name.
    author: str | None = None
    #: Web page of the change, MR or PR (or of the commit for pushes), when known.
    url: str | None = None
    #: The text of a comment event.
    comment: str | None = None
    recheck: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def tag(self) -> str | None:
        """The tag name of a ``tag`` event."""
        if self.ref and self.ref.startswith("refs/tags/"):
            return self.ref[len("refs/tags/") :]
        return None

    @property
    def trusted(self) -> bool:
        """Whether the code was reviewed and landed (may get secrets and deploy rights)."""
        return self.type in ("merged", "tag", "ref-updated")


def stable_id(source: str, fields: Iterable[Any]) -> str:
    """A delivery id from an event's identifying fields, for systems that send none.

    The same event delivered twice (a webhook retry, or both stream-events and the webhooks
    plugin) hashes to the same id; any field that differs gives a different one.
    """
    canonical = json.dumps(list(fields), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return f"{source}:{hashlib.sha256(canonical.encode()).hexdigest()[:40]}"


def body_id(source: str, body: bytes) -> str:
    """A delivery id from the raw body, when a sender that should send an id did not."""
    return f"{source}:body-{hashlib.sha256(body).hexdigest()[:40]}"


def check_project(events: Iterable[ChangeEvent], expected: str) -> None:
    """Refuse events for another repository than the one whose secret authenticated the request.

    ``expected`` is the repository name, as the review system spells it, that chute's project
    (named in the webhook URL) is configured with. Without this check the secret of project
    A could start runs of project B.
    """
    for event in events:
        if event.project != expected:
            raise WebhookError(
                403,
                f"{event.source} event is for repository {event.project!r}, but this webhook's "
                f"project and secret are for {expected!r}: give each repository its own webhook "
                f"URL (/webhooks/{event.source}?project=<its chute project>)",
            )
