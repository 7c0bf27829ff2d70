"""The recheck rule: a comment line that is only 'recheck' (any case, optional full stop)."""

from __future__ import annotations

import json

import pytest

from chute.server.webhooks import gerrit, github, gitlab, is_recheck

from .conftest import fixture_json


@pytest.mark.parametrize(
    "text",
    [
        "recheck",
        "RECHECK",
        "Recheck.",
        "  recheck  ",
        "recheck\n",
        "Patch Set 2:\n\nrecheck",  # Gerrit prefixes comments with the patch set line
        "Patch Set 3: Code-Review+1\n\nrecheck",
        "The translator test is flaky (T123456).\r\n\r\nrecheck\r\n",
        "recheck\nthe flaky test again, see T1",
    ],
)
def test_recheck(text: str) -> None:
    assert is_recheck(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        None,
        "please recheck the docs",
        "recheck please",
        "rechecked",
        "> recheck",  # a quote of someone else's recheck
        "`recheck`",
        "re-check",
        "recheck!",
        "recheck..",
        "Patch Set 2: Verified-1\n\nBuild failed. To run the tests again, reply 'recheck'.",
    ],
)
def test_not_recheck(text: str | None) -> None:
    assert not is_recheck(text)


@pytest.mark.parametrize("text", ["recheck", "Looks good\n\nrecheck", "I will recheck tomorrow"])
def test_every_system_applies_the_same_rule(text: str) -> None:
    expected = is_recheck(text)
    g = fixture_json("gerrit/comment-added.json")
    g["comment"] = f"Patch Set 2:\n\n{text}"
    gl = fixture_json("gitlab/note_merge_request.json")
    gl["object_attributes"]["note"] = text
    gh = fixture_json("github/issue_comment_pull_request.json")
    gh["comment"]["body"] = text
    results = [
        gerrit.parse({}, json.dumps(g).encode())[0].recheck,
        gitlab.parse({}, json.dumps(gl).encode())[0].recheck,
        github.parse({"X-GitHub-Event": "issue_comment"}, json.dumps(gh).encode())[0].recheck,
    ]
    assert results == [expected] * 3
