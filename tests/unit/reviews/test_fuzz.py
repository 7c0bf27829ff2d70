"""Fuzzing the webhook drivers: whatever arrives, they answer with events or a WebhookError.

Random bytes, random JSON and mutations of the real-shaped sample payloads (fields deleted,
replaced by random JSON, given the wrong type, bytes flipped). About 2,800 cases.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chute.server.webhooks import DRIVERS, EVENT_TYPES, ChangeEvent, WebhookError, gerrit

from .conftest import FIXTURES


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


SHA_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")

EVENT_HEADERS: dict[str, dict[str, list[str]]] = {
    "github": {
        "X-GitHub-Event": ["push", "pull_request", "issue_comment", "ping", "release", ""],
        "Content-Type": ["application/json", "application/x-www-form-urlencoded", "text/plain"],
    },
    "gitlab": {
        "X-Gitlab-Event": ["Push Hook", "Tag Push Hook", "Merge Request Hook", "Note Hook", "Job Hook"]
    },
    "gerrit": {},
    "git": {},
}
# Which real-shaped samples each driver gets to chew on, with the header that goes with them.
SAMPLES: dict[str, list[tuple[dict[str, str], dict[str, Any]]]] = {kind: [] for kind in DRIVERS}
for path in sorted(FIXTURES.glob("*/*.json")):
    kind = path.parent.name
    data = json.loads(path.read_text())
    headers: dict[str, str] = {}
    if kind == "github":
        stem = path.stem
        event = next(e for e in ("issue_comment", "pull_request", "push", "ping") if stem.startswith(e))
        headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": "d-1"}
    SAMPLES[kind].append((headers, data))

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(
        ["", "0" * 40, "a" * 64, "refs/heads/main", "refs/tags/v1", "refs/heads/../x", "recheck"]
    )
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=15,
)
header_text = st.text(max_size=40) | st.sampled_from(["sha256=" + "0" * 64, "Bearer x", "\udcff"])


def check_result(kind: str, call) -> None:
    """Run one parse; only events that obey the ChangeEvent contract, or a WebhookError, pass."""
    try:
        events = call()
    except WebhookError as exc:
        assert exc.status in (202, 400), (exc.status, exc.message)
        assert exc.message and isinstance(exc.message, str)
        return
    assert isinstance(events, list) and events
    for event in events:
        assert isinstance(event, ChangeEvent)
        assert event.source == kind
        assert event.type in EVENT_TYPES
        assert isinstance(event.project, str) and event.project
        assert isinstance(event.delivery_id, str) and event.delivery_id.startswith(f"{kind}:")
        assert event.sha is None or SHA_RE.match(event.sha)
        assert event.ref is None or event.ref.startswith("refs/")
        assert isinstance(event.recheck, bool)
        assert event.recheck is False or event.type == "comment"


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(obj, dict):
        for key, value in obj.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            found += _paths(value, (*prefix, index))
    return found


@st.composite
def mutated_sample(draw, kind: str) -> tuple[dict[str, str], bytes]:
    headers, original = draw(st.sampled_from(SAMPLES[kind]))
    doc: Any = copy.deepcopy(original)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        path = draw(st.sampled_from(_paths(doc)))
        op = draw(st.sampled_from(["delete", "replace", "retype"]))
        if not path:
            if op == "replace":
                doc = draw(json_values)
            continue
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        if op == "delete":
            del parent[key]
        elif op == "replace":
            parent[key] = draw(json_values)
        else:
            value = parent[key]
            parent[key] = draw(st.sampled_from([str(value), [value], {"v": value}, None, True, -1, 0, 2**64]))
    body = json.dumps(doc).encode()
    if draw(st.integers(min_value=0, max_value=9)) == 0 and body:
        # now and then, break the bytes themselves
        index = draw(st.integers(min_value=0, max_value=len(body) - 1))
        body = body[:index] + bytes([draw(st.integers(min_value=0, max_value=255))]) + body[index + 1 :]
    return headers, body


@st.composite
def event_headers(draw, kind: str) -> dict[str, str]:
    choices = EVENT_HEADERS[kind]
    return {name: draw(st.sampled_from(values) | st.text(max_size=20)) for name, values in choices.items()}


KINDS = sorted(DRIVERS)


@pytest.mark.parametrize("kind", KINDS)
@given(data=st.data())
@fuzz(150)
def test_random_bytes(kind: str, data: st.DataObject) -> None:
    body = data.draw(st.binary(max_size=300))
    headers = data.draw(event_headers(kind))
    check_result(kind, lambda: DRIVERS[kind].parse(headers, body))


@pytest.mark.parametrize("kind", KINDS)
@given(data=st.data())
@fuzz(150)
def test_random_json(kind: str, data: st.DataObject) -> None:
    doc = data.draw(json_values | st.dictionaries(st.sampled_from(_TOP_KEYS), json_values, max_size=6))
    headers = data.draw(event_headers(kind))
    check_result(kind, lambda: DRIVERS[kind].parse(headers, json.dumps(doc).encode()))


_TOP_KEYS = [
    "type",
    "change",
    "patchSet",
    "refUpdate",
    "comment",
    "object_kind",
    "project",
    "object_attributes",
    "merge_request",
    "ref",
    "after",
    "before",
    "repository",
    "pull_request",
    "issue",
    "action",
    "head_commit",
]


@pytest.mark.parametrize("kind", KINDS)
@given(data=st.data())
@fuzz(300)
def test_mutated_samples(kind: str, data: st.DataObject) -> None:
    headers, body = data.draw(mutated_sample(kind))
    check_result(kind, lambda: DRIVERS[kind].parse(headers, body))


@given(
    kind=st.sampled_from(KINDS),
    headers=st.dictionaries(
        st.sampled_from(
            [
                "X-Hub-Signature-256",
                "X-Gitlab-Token",
                "X-Chute-Token",
                "Authorization",
                "X-Chute-Signature-256",
                "x-hub-signature-256",
            ]
        )
        | st.text(max_size=10),
        header_text,
        max_size=4,
    ),
    body=st.binary(max_size=100),
    secret=st.text(max_size=20),
    token=st.none() | header_text,
)
@fuzz(300)
def test_verify_never_raises(kind: str, headers: dict[str, str], body: bytes, secret: str, token) -> None:
    query = None if token is None else {"token": token}
    assert DRIVERS[kind].verify(headers, body, secret, query=query) in (True, False)


@given(
    lines=st.lists(
        st.binary(max_size=80)
        | st.text(max_size=80)
        | st.sampled_from([json.dumps(d) for _, d in SAMPLES["gerrit"]]),
        max_size=8,
    )
)
@fuzz(100)
def test_gerrit_stream_reader_never_stops(lines: list) -> None:
    errors: list[int] = []
    for event in gerrit.read_stream(lines, on_error=lambda n, e: errors.append(n)):
        assert isinstance(event, ChangeEvent)
    assert all(1 <= n <= len(lines) for n in errors)
