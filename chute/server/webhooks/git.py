"""Plain git: chute's own endpoint, called by a ``post-receive`` hook or ``chute trigger``.

The body is one JSON object per updated ref::

    {"project": "citoid", "ref": "refs/heads/main", "before": "<sha>", "after": "<sha>",
     "commit": "<sha>", "pusher": "alice"}     # commit, pusher and url are optional

``after`` is the ref's new value; ``commit`` is the commit it names when that differs (an
annotated tag points at a tag object), which is what chute builds.

Authentication is either ``Authorization: Bearer <secret>`` or, better because the secret
never leaves the sender, ``X-Chute-Signature-256: sha256=<hex HMAC-SHA256 of the body>`` (the
same scheme as GitHub). :func:`request_for` builds a signed request; :func:`post_receive_payloads`
turns the ``<old> <new> <ref>`` lines git gives a post-receive hook into payloads.

The delivery id is ``X-Chute-Delivery`` when given, else a hash of project, ref, before and
after: the same push reported twice is one delivery.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from ._auth import bearer_token, same_secret, sign, valid_signature
from ._payload import Payload, check_ref, header, load_json, short_branch
from .events import ChangeEvent, EventType, SourceKind, WebhookIgnored, is_null_sha, stable_id

SOURCE = "git"
SIGNATURE_HEADER = "X-Chute-Signature-256"
DELIVERY_HEADER = "X-Chute-Delivery"

_LINE = re.compile(r"^([0-9a-f]{40}|[0-9a-f]{64}) ([0-9a-f]{40}|[0-9a-f]{64}) (refs/\S+)$")


class GitDriver:
    kind: SourceKind = "git"

    def verify(
        self,
        headers: Mapping[str, str],
        body: bytes,
        secret: str,
        query: Mapping[str, str] | None = None,
    ) -> bool:
        signed = valid_signature(header(headers, SIGNATURE_HEADER), body, secret)
        bearer = same_secret(bearer_token(headers), secret)
        return signed or bearer

    def parse(self, headers: Mapping[str, str], body: bytes) -> list[ChangeEvent]:
        p = Payload(SOURCE, load_json(SOURCE, body))
        project = p.req_str("project")
        ref = check_ref(SOURCE, p.req_str("ref"), "ref")
        before = p.req_sha("before")
        after = p.req_sha("after")
        commit = p.sha("commit", required=False)
        if is_null_sha(after):
            raise WebhookIgnored(f"git push deletes {ref[:200]}")
        etype: EventType
        if ref.startswith("refs/tags/"):
            etype, branch = "tag", None
        else:
            branch = short_branch(ref)
            if branch is None:
                raise WebhookIgnored(f"git push to {ref[:200]} is not a branch or tag")
            etype = "merged"
        given = header(headers, DELIVERY_HEADER)
        if given and given.strip() and len(given) <= 200:
            did = f"{SOURCE}:{given.strip()}"
        else:
            did = stable_id(SOURCE, [project, ref, before, after])
        return [
            ChangeEvent(
                source=SOURCE,
                project=project,
                type=etype,
                delivery_id=did,
                sha=commit or after,
                ref=ref,
                branch=branch,
                author=p.string("pusher", required=False),
                url=p.string("url", required=False),
                raw=p.data,
            )
        ]


driver = GitDriver()
verify = driver.verify
parse = driver.parse


def post_receive_payloads(
    stdin: str,
    project: str,
    pusher: str | None = None,
    peel: Callable[[str], str | None] | None = None,
) -> list[dict[str, Any]]:
    """Payloads for the ``<old-sha> <new-sha> <ref>`` lines git writes to a post-receive hook.

    ``peel`` maps a new ref value to the commit it names (``git rev-parse <sha>^{commit}`` in
    the hook's repository), so an annotated tag's payload names its commit. Raises
    ValueError naming the first line that is not in that form.
    """
    payloads: list[dict[str, Any]] = []
    for lineno, line in enumerate(stdin.splitlines(), start=1):
        if not line.strip():
            continue
        match = _LINE.match(line.strip())
        if match is None:
            raise ValueError(
                f"post-receive input line {lineno} is not '<old-sha> <new-sha> <ref>': {line[:200]!r}"
            )
        before, after, ref = match.groups()
        payload: dict[str, Any] = {"project": project, "ref": ref, "before": before, "after": after}
        commit = peel(after) if peel is not None and not is_null_sha(after) else None
        if commit and commit != after:
            payload["commit"] = commit
        if pusher:
            payload["pusher"] = pusher
        payloads.append(payload)
    return payloads


def request_for(payload: Mapping[str, Any], secret: str) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a signed POST to ``/webhooks/git`` for one payload."""
    body = json.dumps(payload, sort_keys=True).encode()
    return body, {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, secret)}
