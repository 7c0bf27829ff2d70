"""GitHub: repository (or organisation, or App) webhooks for pushes, pull requests and comments.

GitHub signs the exact body bytes with HMAC-SHA256 under the webhook secret and sends
``X-Hub-Signature-256: sha256=<hex>``; :func:`verify` recomputes it and compares in constant
time. The event name is in ``X-GitHub-Event`` and a GUID in ``X-GitHub-Delivery``, which
stays the same when a delivery is redelivered, so it is the delivery id. Both content types
GitHub offers work: ``application/json`` and ``application/x-www-form-urlencoded``
(``payload=<json>``); the signature covers the body as sent either way.
"""

from __future__ import annotations

from collections.abc import Mapping

from ._auth import valid_signature
from ._payload import Payload, check_ref, header, load_form_payload, load_json, person, short_branch
from .events import (
    ChangeEvent,
    EventType,
    SourceKind,
    WebhookError,
    WebhookIgnored,
    body_id,
    is_null_sha,
    is_recheck,
)

SOURCE = "github"
SIGNATURE_HEADER = "X-Hub-Signature-256"


class GitHubDriver:
    kind: SourceKind = "github"

    def verify(
        self,
        headers: Mapping[str, str],
        body: bytes,
        secret: str,
        query: Mapping[str, str] | None = None,
    ) -> bool:
        return valid_signature(header(headers, SIGNATURE_HEADER), body, secret)

    def parse(self, headers: Mapping[str, str], body: bytes) -> list[ChangeEvent]:
        event = header(headers, "X-GitHub-Event")
        if not event:
            raise WebhookError(400, "github webhook: the X-GitHub-Event header is missing")
        content_type = (header(headers, "Content-Type") or "").split(";")[0].strip().lower()
        if content_type == "application/x-www-form-urlencoded":
            data = load_form_payload(SOURCE, body)
        else:
            data = load_json(SOURCE, body)
        p = Payload(SOURCE, data)
        did = delivery_id(headers, body)
        if event == "ping":
            raise WebhookIgnored("github ping: the webhook is set up")
        if event == "push":
            return [_push(p, did)]
        if event == "pull_request":
            return [_pull_request(p, did)]
        if event == "issue_comment":
            return [_issue_comment(p, did)]
        raise WebhookIgnored(f"github event {event[:80]!r} is not one chute acts on")


driver = GitHubDriver()
verify = driver.verify
parse = driver.parse


def delivery_id(headers: Mapping[str, str], body: bytes) -> str:
    value = header(headers, "X-GitHub-Delivery")
    if value and value.strip() and len(value) <= 200:
        return f"{SOURCE}:{value.strip()}"
    return body_id(SOURCE, body)


def _repo(p: Payload) -> tuple[str, str | None]:
    repo = p.req_obj("repository")
    return repo.req_str("full_name"), repo.string("html_url", required=False)


def _push(p: Payload, did: str) -> ChangeEvent:
    name, html_url = _repo(p)
    ref = check_ref(SOURCE, p.req_str("ref"), "ref")
    after = p.req_sha("after")
    p.sha("before", required=False)
    if p.boolean("deleted") or is_null_sha(after):
        raise WebhookIgnored(f"github push deletes {ref[:200]}")
    head = p.obj("head_commit", required=False)
    # For an annotated tag "after" is the tag object; head_commit.id is the commit.
    sha = (head.sha("id", required=False) if head else None) or after
    etype: EventType
    if ref.startswith("refs/tags/"):
        etype, branch = "tag", None
    else:
        branch = short_branch(ref)
        if branch is None:
            raise WebhookIgnored(f"github push to {ref[:200]} is not a branch or tag")
        etype = "merged"
    return ChangeEvent(
        source=SOURCE,
        project=name,
        type=etype,
        delivery_id=did,
        sha=sha,
        ref=ref,
        branch=branch,
        author=person(p.obj("pusher", required=False), "name")
        or person(p.obj("sender", required=False), "login"),
        url=(head.string("url", required=False) if head else None)
        or (f"{html_url}/commit/{sha}" if html_url else None),
        raw=p.data,
    )


def _pull_request(p: Payload, did: str) -> ChangeEvent:
    name, _ = _repo(p)
    action = p.string("action", required=False) or ""
    pr = p.req_obj("pull_request")
    number = pr.integer("number", required=False) or p.req_int("number")
    head = pr.req_obj("head")
    base = pr.req_obj("base")
    base_ref = base.req_str("ref")
    author = person(p.obj("sender", required=False), "login")
    url = pr.string("html_url", required=False)
    etype: EventType
    if action in ("opened", "reopened", "synchronize"):
        etype = "patchset"
        sha = head.req_sha("sha")
        ref = f"refs/pull/{number}/head"
        branch = head.string("ref", required=False)
    elif action == "closed" and pr.boolean("merged"):
        etype = "merged"
        sha = pr.sha("merge_commit_sha", required=False)
        if sha is None:
            raise WebhookError(
                400, "github webhook: a merged pull request has no pull_request.merge_commit_sha"
            )
        ref = check_ref(SOURCE, f"refs/heads/{base_ref}", "pull_request.base.ref")
        branch = base_ref
    elif action == "closed":
        raise WebhookIgnored("github pull request closed without merging")
    else:
        raise WebhookIgnored(f"github pull_request action {action[:40]!r} is not one chute acts on")
    return ChangeEvent(
        source=SOURCE,
        project=name,
        type=etype,
        delivery_id=did,
        change_number=number,
        sha=sha,
        ref=ref,
        branch=branch,
        target_branch=base_ref,
        author=author,
        url=url,
        raw=p.data,
    )


def _issue_comment(p: Payload, did: str) -> ChangeEvent:
    name, _ = _repo(p)
    action = p.string("action", required=False)
    if action != "created":
        what = repr(action[:40]) if action else "without action"
        raise WebhookIgnored(f"github issue_comment {what}; only new comments count")
    issue = p.req_obj("issue")
    pull = issue.obj("pull_request", required=False)
    if pull is None:
        raise WebhookIgnored("github comment on an issue, not on a pull request")
    number = issue.req_int("number")
    comment = p.req_obj("comment")
    text = comment.string("body", required=False, allow_empty=True) or ""
    return ChangeEvent(
        source=SOURCE,
        project=name,
        type="comment",
        delivery_id=did,
        change_number=number,
        # The payload does not carry the PR's head commit: the caller looks it up (or fetches
        # ``ref``) before starting a run.
        sha=None,
        ref=f"refs/pull/{number}/head",
        author=person(comment.obj("user", required=False), "login")
        or person(p.obj("sender", required=False), "login"),
        url=pull.string("html_url", required=False) or issue.string("html_url", required=False),
        comment=text,
        recheck=is_recheck(text),
        raw=p.data,
    )
