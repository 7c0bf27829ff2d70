"""GitLab: project (or group, or system) webhooks for pushes, tags, merge requests and notes.

Payload shapes follow GitLab's "Webhook events" documentation. GitLab sends the secret token
as configured in the ``X-Gitlab-Token`` header (there is no signature), names the event in
``X-Gitlab-Event`` (``Push Hook``, ``Tag Push Hook``, ``Merge Request Hook``, ``Note Hook``,
or ``System Hook`` for instance-wide hooks) and the body's ``object_kind`` says the same.

**Delivery ids.** ``Idempotency-Key`` (GitLab 17.4+) stays the same when GitLab retries or
someone presses "Resend request", so it is preferred; then ``X-Gitlab-Event-UUID``; failing
both, a hash of the body (retries resend the same body).
"""

from __future__ import annotations

from collections.abc import Mapping

from ._auth import same_secret
from ._payload import Payload, check_ref, header, load_json, person, short_branch
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

SOURCE = "gitlab"

_KIND_BY_HEADER = {
    "Push Hook": "push",
    "Tag Push Hook": "tag_push",
    "Merge Request Hook": "merge_request",
    "Note Hook": "note",
}


class GitLabDriver:
    kind: SourceKind = "gitlab"

    def verify(
        self,
        headers: Mapping[str, str],
        body: bytes,
        secret: str,
        query: Mapping[str, str] | None = None,
    ) -> bool:
        return same_secret(header(headers, "X-Gitlab-Token"), secret)

    def parse(self, headers: Mapping[str, str], body: bytes) -> list[ChangeEvent]:
        data = load_json(SOURCE, body)
        p = Payload(SOURCE, data)
        event_header = header(headers, "X-Gitlab-Event")
        kind = p.string("object_kind", required=False)
        if kind is None:
            if event_header is None:
                raise WebhookError(
                    400,
                    "gitlab webhook: no X-Gitlab-Event header and no object_kind in the body; "
                    "is this really a GitLab webhook?",
                )
            kind = _KIND_BY_HEADER.get(event_header)
            if kind is None:
                raise WebhookIgnored(f"gitlab event {event_header[:80]!r} is not one chute acts on")
        did = delivery_id(headers, body)
        if kind == "push":
            return [_push(p, did, tag=False)]
        if kind == "tag_push":
            return [_push(p, did, tag=True)]
        if kind == "merge_request":
            return [_merge_request(p, did)]
        if kind == "note":
            return [_note(p, did)]
        raise WebhookIgnored(f"gitlab event kind {kind[:80]!r} is not one chute acts on")


driver = GitLabDriver()
verify = driver.verify
parse = driver.parse


def delivery_id(headers: Mapping[str, str], body: bytes) -> str:
    for name in ("Idempotency-Key", "X-Gitlab-Event-UUID"):
        value = header(headers, name)
        if value and value.strip() and len(value) <= 200:
            return f"{SOURCE}:{value.strip()}"
    return body_id(SOURCE, body)


def _project(p: Payload) -> tuple[str, str | None]:
    project = p.req_obj("project")
    return project.req_str("path_with_namespace"), project.string("web_url", required=False)


def _push(p: Payload, did: str, tag: bool) -> ChangeEvent:
    name, web_url = _project(p)
    ref = check_ref(SOURCE, p.req_str("ref"), "ref")
    after = p.req_sha("after")
    p.sha("before", required=False)
    if is_null_sha(after):
        raise WebhookIgnored(f"gitlab push deletes {ref[:200]}")
    # For an annotated tag "after" is the tag object; checkout_sha is the commit.
    sha = p.sha("checkout_sha", required=False) or after
    etype: EventType
    if tag:
        if not ref.startswith("refs/tags/"):
            raise WebhookError(400, f"gitlab webhook: a tag push for {ref[:200]!r}, expected refs/tags/*")
        etype, branch = "tag", None
    else:
        branch = short_branch(ref)
        if branch is None:
            raise WebhookIgnored(f"gitlab push to {ref[:200]} is not a branch")
        etype = "merged"
    return ChangeEvent(
        source=SOURCE,
        project=name,
        type=etype,
        delivery_id=did,
        sha=sha,
        ref=ref,
        branch=branch,
        author=p.string("user_username", required=False) or p.string("user_name", required=False),
        url=f"{web_url}/-/commit/{sha}" if web_url else None,
        raw=p.data,
    )


def _merge_request(p: Payload, did: str) -> ChangeEvent:
    name, _ = _project(p)
    attrs = p.req_obj("object_attributes")
    action = attrs.string("action", required=False)
    iid = attrs.req_int("iid")
    source_branch = attrs.req_str("source_branch")
    target_branch = attrs.req_str("target_branch")
    author = person(p.obj("user", required=False), "username", "name")
    url = attrs.string("url", required=False)
    etype: EventType
    if action in ("open", "reopen") or (action == "update" and attrs.has("oldrev")):
        # "update" without oldrev is an edit of title, labels, assignees…: nothing to test.
        etype = "patchset"
        sha = attrs.req_obj("last_commit").req_sha("id")
        ref = f"refs/merge-requests/{iid}/head"
        branch = source_branch
    elif action == "merge":
        etype = "merged"
        last = attrs.obj("last_commit", required=False)
        sha = attrs.sha("merge_commit_sha", required=False) or (last.req_sha("id") if last else None)
        if sha is None:
            raise WebhookError(
                400,
                "gitlab webhook: a merged merge request has neither "
                "object_attributes.merge_commit_sha nor object_attributes.last_commit.id",
            )
        ref = f"refs/heads/{target_branch}"
        branch = target_branch
    else:
        if action == "update":
            raise WebhookIgnored("gitlab merge request updated without new commits (no oldrev)")
        what = f"action {action[:40]!r}" if action else "no action"
        raise WebhookIgnored(f"gitlab merge request event with {what}")
    where = "object_attributes.target_branch" if etype == "merged" else "object_attributes.iid"
    check_ref(SOURCE, ref, where)
    return ChangeEvent(
        source=SOURCE,
        project=name,
        type=etype,
        delivery_id=did,
        change_number=iid,
        sha=sha,
        ref=ref,
        branch=branch,
        target_branch=target_branch,
        author=author,
        url=url,
        raw=p.data,
    )


def _note(p: Payload, did: str) -> ChangeEvent:
    name, _ = _project(p)
    attrs = p.req_obj("object_attributes")
    noteable = attrs.string("noteable_type", required=False)
    if noteable != "MergeRequest":
        raise WebhookIgnored(f"gitlab note on {(noteable or 'something')[:40]}, not on a merge request")
    action = attrs.string("action", required=False)
    if action not in (None, "create"):
        raise WebhookIgnored(f"gitlab note {action[:40]!r}; only new notes count")
    if attrs.boolean("system"):
        raise WebhookIgnored("gitlab system note")
    text = attrs.string("note", required=False, allow_empty=True) or ""
    mr = p.req_obj("merge_request")
    iid = mr.req_int("iid")
    last = mr.obj("last_commit", required=False)
    sha = last.sha("id", required=False) if last else None
    return ChangeEvent(
        source=SOURCE,
        project=name,
        type="comment",
        delivery_id=did,
        change_number=iid,
        sha=sha,
        ref=check_ref(SOURCE, f"refs/merge-requests/{iid}/head", "merge_request.iid"),
        branch=mr.string("source_branch", required=False),
        target_branch=mr.string("target_branch", required=False),
        author=person(p.obj("user", required=False), "username", "name"),
        url=mr.string("url", required=False) or attrs.string("url", required=False),
        comment=text,
        recheck=is_recheck(text),
        raw=p.data,
    )
