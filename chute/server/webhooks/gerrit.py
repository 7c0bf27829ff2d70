"""Gerrit: events from the webhooks plugin (one JSON object per POST) or ``gerrit stream-events``.

Both carry the same JSON (Gerrit's ``Documentation/cmd-stream-events.txt`` and ``json.txt``):
``patchset-created``, ``change-merged``, ``comment-added`` and ``ref-updated`` are read, every
other type is ignored. Any field may be missing, old versions send numbers as strings and
branch names without ``refs/heads/``; all of that is accepted.

**Authentication.** The webhooks plugin can neither sign a request nor add a header (its
``webhooks.config`` has only ``url``, ``event``, timeouts and ``sslVerify``), so the secret
travels in the URL: ``https://chute.example.org/webhooks/gerrit?project=NAME&token=SECRET``.
A proxy in front of chute can instead send it as ``X-Chute-Token`` or ``Authorization:
Bearer``; both are accepted too. Because the token is part of the URL, serve the endpoint
over HTTPS only and keep query strings of ``/webhooks/*`` out of access logs.

**Delivery ids.** Gerrit sends no event id, so :func:`delivery_id` hashes the fields that
identify an event (type, project, change, patch set, revisions, ref, who, comment text and
``eventCreatedOn``): the plugin's retries and the same event seen through both the plugin
and stream-events get one id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from ._auth import bearer_token, same_secret
from ._payload import Payload, check_ref, header, load_json, person
from .events import (
    ChangeEvent,
    EventType,
    SourceKind,
    WebhookError,
    WebhookIgnored,
    is_null_sha,
    is_recheck,
    stable_id,
)

log = logging.getLogger(__name__)

SOURCE = "gerrit"
TOKEN_HEADER = "X-Chute-Token"
HANDLED = ("patchset-created", "change-merged", "comment-added", "ref-updated", "draft-published")


class GerritDriver:
    kind: SourceKind = "gerrit"

    def verify(
        self,
        headers: Mapping[str, str],
        body: bytes,
        secret: str,
        query: Mapping[str, str] | None = None,
    ) -> bool:
        candidates = [header(headers, TOKEN_HEADER), bearer_token(headers)]
        if query is not None:
            token = query.get("token")
            candidates.append(token if isinstance(token, str) else None)
        # Check every candidate (no early exit) so timing does not tell which one was tried.
        results = [same_secret(c, secret) for c in candidates if c is not None]
        return any(results)

    def parse(self, headers: Mapping[str, str], body: bytes) -> list[ChangeEvent]:
        return [event_from_json(load_json(SOURCE, body))]


driver = GerritDriver()
verify = driver.verify
parse = driver.parse


def event_from_json(data: Mapping[str, Any]) -> ChangeEvent:
    """One Gerrit event object → a ChangeEvent (or WebhookIgnored / WebhookError)."""
    p = Payload(SOURCE, data)
    kind = p.string("type", required=False)
    if kind is None:
        raise WebhookError(400, "gerrit webhook: field type is missing; this is not a Gerrit event")
    if kind not in HANDLED:
        raise WebhookIgnored(f"gerrit event type {kind[:80]!r} is not one chute acts on")
    if kind == "ref-updated":
        return _ref_updated(p, data)
    return _change_event(kind, p, data)


def _change_event(kind: str, p: Payload, data: Mapping[str, Any]) -> ChangeEvent:
    change = p.req_obj("change")
    # Gerrit 2.x spelled it "patchset" in draft-published; accept both everywhere.
    patchset = p.obj("patchSet", required=False) or p.obj("patchset", required=False)
    if patchset is None:
        raise WebhookError(400, f"gerrit webhook: field patchSet is missing in a {kind} event")
    project = change.req_str("project")
    branch_name = change.req_str("branch")
    number = change.req_int("number", numeric_string=True)
    ps_number = patchset.req_int("number", numeric_string=True)
    revision = patchset.req_sha("revision")
    ps_ref = patchset.string("ref", required=False)
    if ps_ref is None:
        ps_ref = f"refs/changes/{number % 100:02d}/{number}/{ps_number}"
    check_ref(SOURCE, ps_ref, "patchSet.ref")
    branch = _branch_name(branch_name)

    etype: EventType
    comment: str | None = None
    sha = revision
    ref = ps_ref
    if kind in ("patchset-created", "draft-published"):
        etype = "patchset"
        author = person(p.obj("uploader", required=False), "username", "name", "email") or person(
            patchset.obj("uploader", required=False), "username", "name", "email"
        )
    elif kind == "change-merged":
        etype = "merged"
        author = person(p.obj("submitter", required=False), "username", "name", "email")
        # newRev (Gerrit >= 2.13) is the commit that landed, which differs from the patch
        # set's revision when the submit strategy rebases or cherry-picks.
        sha = p.sha("newRev", required=False) or revision
        ref = f"refs/heads/{branch}"
        check_ref(SOURCE, ref, "change.branch")
    else:  # comment-added
        etype = "comment"
        author = person(p.obj("author", required=False), "username", "name", "email")
        comment = p.string("comment", required=False, allow_empty=True) or ""

    return ChangeEvent(
        source=SOURCE,
        project=project,
        type=etype,
        delivery_id=delivery_id(data),
        change_number=number,
        change_id=change.string("id", required=False),
        patchset=ps_number,
        sha=sha,
        ref=ref,
        branch=branch,
        target_branch=branch,
        author=author,
        url=change.string("url", required=False),
        comment=comment,
        recheck=etype == "comment" and is_recheck(comment),
        raw=data,
    )


def _ref_updated(p: Payload, data: Mapping[str, Any]) -> ChangeEvent:
    update = p.req_obj("refUpdate")
    project = update.req_str("project")
    ref_name = update.req_str("refName")
    # Gerrit before 2.13 sent branch names without the refs/heads/ prefix.
    ref = ref_name if ref_name.startswith("refs/") else f"refs/heads/{ref_name}"
    check_ref(SOURCE, ref, "refUpdate.refName")
    new_rev = update.req_sha("newRev")
    update.sha("oldRev", required=False)
    if is_null_sha(new_rev):
        raise WebhookIgnored(f"gerrit ref-updated deletes {ref}")
    etype: EventType
    if ref.startswith("refs/tags/"):
        etype = "tag"
        branch = None
    elif ref.startswith("refs/heads/"):
        etype = "ref-updated"
        branch = ref[len("refs/heads/") :]
    else:
        # refs/changes/*, refs/meta/config, refs/users/*, refs/cache-automerge/* …
        raise WebhookIgnored(f"gerrit ref-updated on {ref[:200]} is not a branch or tag")
    return ChangeEvent(
        source=SOURCE,
        project=project,
        type=etype,
        delivery_id=delivery_id(data),
        sha=new_rev,
        ref=ref,
        branch=branch,
        author=person(p.obj("submitter", required=False), "username", "name", "email"),
        raw=data,
    )


def _branch_name(branch: str) -> str:
    return branch[len("refs/heads/") :] if branch.startswith("refs/heads/") else branch


def delivery_id(data: Mapping[str, Any]) -> str:
    """A stable id for a Gerrit event from its identifying fields (Gerrit sends none)."""

    def pick(obj: Any, *path: str) -> Any:
        for key in path:
            if not isinstance(obj, dict):
                return None
            obj = obj.get(key)
        # Only scalars identify; nested objects would make the id depend on optional extras.
        if isinstance(obj, str | int | float | bool) or obj is None:
            return str(obj) if isinstance(obj, int | float) and not isinstance(obj, bool) else obj
        return None

    patchset_key = "patchSet" if isinstance(data.get("patchSet"), dict) else "patchset"
    fields = [
        pick(data, "type"),
        pick(data, "change", "project") or pick(data, "refUpdate", "project"),
        pick(data, "change", "number"),
        pick(data, patchset_key, "number"),
        pick(data, patchset_key, "revision"),
        pick(data, "newRev"),
        pick(data, "refUpdate", "refName"),
        pick(data, "refUpdate", "oldRev"),
        pick(data, "refUpdate", "newRev"),
        pick(data, "author", "username") or pick(data, "author", "email"),
        pick(data, "comment"),
        pick(data, "eventCreatedOn"),
    ]
    return stable_id(SOURCE, fields)


def read_stream(
    lines: Iterable[str | bytes],
    on_error: Callable[[int, WebhookError], None] | None = None,
) -> Iterator[ChangeEvent]:
    """Events from the output of ``ssh -p 29418 gerrit stream-events`` (one JSON per line).

    Ignored event types are skipped. A malformed line does not stop the stream: it is passed
    to ``on_error(line_number, error)`` (by default logged as a warning) and reading goes on.
    """
    for lineno, line in enumerate(lines, start=1):
        raw = line.encode("utf-8", "surrogatepass") if isinstance(line, str) else line
        if not raw.strip():
            continue
        try:
            yield event_from_json(load_json(SOURCE, raw))
        except WebhookIgnored:
            continue
        except WebhookError as exc:
            if on_error is None:
                log.warning("gerrit stream-events line %d skipped: %s", lineno, exc.message)
            else:
                on_error(lineno, exc)
