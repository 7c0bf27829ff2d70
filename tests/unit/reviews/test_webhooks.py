"""Webhook drivers: secrets, parsing of every handled event type, ignored events, errors, ids."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from urllib.parse import urlencode

import pytest

from chute.server.webhooks import (
    DRIVERS,
    ChangeEvent,
    WebhookError,
    WebhookIgnored,
    check_project,
    gerrit,
    get_driver,
    git,
    github,
    gitlab,
)

from .conftest import fixture_bytes, fixture_json

SECRET = "s3cr3t-webhook-token"


def gh_sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def gh_headers(
    event: str, body: bytes, delivery: str = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
) -> dict[str, str]:
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": gh_sign(body),
        "Content-Type": "application/json",
    }


def one(events: list[ChangeEvent]) -> ChangeEvent:
    assert len(events) == 1, events
    return events[0]


# --- verify ------------------------------------------------------------------------------


class TestVerify:
    def test_github_accepts_the_hmac_of_the_exact_body(self) -> None:
        body = fixture_bytes("github/push.json")
        assert github.verify({"X-Hub-Signature-256": gh_sign(body)}, body, SECRET)
        # header names are case-insensitive, as HTTP says
        assert github.verify({"x-hub-signature-256": gh_sign(body)}, body, SECRET)

    def test_github_rejects_a_changed_body_wrong_secret_or_missing_signature(self) -> None:
        body = fixture_bytes("github/push.json")
        signature = gh_sign(body)
        assert not github.verify({"X-Hub-Signature-256": signature}, body + b" ", SECRET)
        assert not github.verify({"X-Hub-Signature-256": gh_sign(body, "other")}, body, SECRET)
        assert not github.verify({"X-Hub-Signature-256": signature.removeprefix("sha256=")}, body, SECRET)
        assert not github.verify({}, body, SECRET)
        # The legacy SHA-1 header alone is not enough.
        sha1 = "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
        assert not github.verify({"X-Hub-Signature": sha1}, body, SECRET)

    def test_an_empty_configured_secret_never_verifies(self) -> None:
        body = b"{}"
        assert not github.verify({"X-Hub-Signature-256": gh_sign(body, "")}, body, "")
        assert not gitlab.verify({"X-Gitlab-Token": ""}, body, "")
        assert not gerrit.verify({"X-Chute-Token": ""}, body, "", query={"token": ""})
        assert not git.verify({"Authorization": "Bearer "}, body, "")

    def test_gitlab_compares_the_token_header(self) -> None:
        body = fixture_bytes("gitlab/push.json")
        assert gitlab.verify({"X-Gitlab-Token": SECRET}, body, SECRET)
        assert not gitlab.verify({"X-Gitlab-Token": SECRET + "x"}, body, SECRET)
        assert not gitlab.verify({"X-Gitlab-Token": SECRET[:-1]}, body, SECRET)
        assert not gitlab.verify({}, body, SECRET)
        # a token in the query string is not GitLab's scheme
        assert not gitlab.verify({}, body, SECRET, query={"token": SECRET})

    @pytest.mark.parametrize(
        ("headers", "query"),
        [
            ({"X-Chute-Token": SECRET}, None),
            ({"Authorization": f"Bearer {SECRET}"}, None),
            ({"authorization": f"bearer {SECRET}"}, None),
            ({}, {"token": SECRET}),
            ({"X-Chute-Token": "wrong"}, {"token": SECRET}),
        ],
    )
    def test_gerrit_accepts_the_secret_as_header_bearer_or_query(self, headers, query) -> None:
        assert gerrit.verify(headers, b"{}", SECRET, query=query)

    @pytest.mark.parametrize(
        ("headers", "query"),
        [
            ({}, None),
            ({"X-Chute-Token": "wrong"}, None),
            ({"Authorization": f"Basic {SECRET}"}, None),
            ({}, {"token": "wrong"}),
            ({}, {"secret": SECRET}),
        ],
    )
    def test_gerrit_rejects_anything_else(self, headers, query) -> None:
        assert not gerrit.verify(headers, b"{}", SECRET, query=query)

    def test_git_accepts_bearer_or_signature(self) -> None:
        body, headers = git.request_for(fixture_json("git/push.json"), SECRET)
        assert git.verify(headers, body, SECRET)
        assert not git.verify(headers, body.replace(b"main", b"evil"), SECRET)
        assert git.verify({"Authorization": f"Bearer {SECRET}"}, body, SECRET)
        assert not git.verify({"Authorization": "Bearer nope"}, body, SECRET)
        assert not git.verify({}, body, SECRET)

    def test_odd_header_values_return_false_instead_of_raising(self) -> None:
        for driver in DRIVERS.values():
            for value in ("\udcff", "ü" * 10, "sha256=" + "zz" * 32, "", " "):
                headers = {
                    "X-Hub-Signature-256": value,
                    "X-Gitlab-Token": value,
                    "X-Chute-Token": value,
                    "Authorization": f"Bearer {value}",
                    "X-Chute-Signature-256": value,
                }
                assert driver.verify(headers, b"{}", SECRET, query={"token": value}) is False

    def test_every_driver_compares_in_constant_time(self, monkeypatch: pytest.MonkeyPatch) -> None:
        calls: list[tuple[bytes, bytes]] = []
        real = hmac.compare_digest

        def spy(a, b):
            calls.append((a, b))
            return real(a, b)

        monkeypatch.setattr("chute.server.webhooks._auth.hmac.compare_digest", spy)
        body = b'{"x": 1}'
        cases = {
            "github": {"X-Hub-Signature-256": gh_sign(body)},
            "gitlab": {"X-Gitlab-Token": SECRET},
            "gerrit": {"X-Chute-Token": SECRET},
            "git": {"Authorization": f"Bearer {SECRET}"},
        }
        for kind, headers in cases.items():
            calls.clear()
            assert DRIVERS[kind].verify(headers, body, SECRET)
            assert calls, f"{kind} did not use hmac.compare_digest"
            assert all(isinstance(a, bytes) and isinstance(b, bytes) for a, b in calls)


# --- Gerrit ------------------------------------------------------------------------------


class TestGerrit:
    def test_patchset_created(self) -> None:
        event = one(gerrit.parse({}, fixture_bytes("gerrit/patchset-created.json")))
        assert event.source == "gerrit"
        assert event.type == "patchset"
        assert event.project == "mediawiki/services/citoid"
        assert event.change_number == 123
        assert event.change_id == "I8473b95934b5732ac55d26311a706c9c2bde9940"
        assert event.patchset == 2
        assert event.sha == "4b9c1d0e3a6f7b8c9d0e1f2a3b4c5d6e7f809a1b"
        assert event.ref == "refs/changes/23/123/2"
        assert event.branch == event.target_branch == "master"
        assert event.author == "alice"
        assert event.url == "https://gerrit.example.org/r/c/mediawiki/services/citoid/+/123"
        assert not event.recheck and not event.trusted
        assert event.raw["type"] == "patchset-created"

    def test_change_merged_uses_the_landed_commit(self) -> None:
        event = one(gerrit.parse({}, fixture_bytes("gerrit/change-merged.json")))
        assert event.type == "merged" and event.trusted
        # newRev, not the patch set's revision: the submit strategy may rebase.
        assert event.sha == "9a8b7c6d5e4f30291817161514131211100f0e0d"
        assert event.ref == "refs/heads/master"
        assert event.patchset == 3
        assert event.author == "bob"

    def test_change_merged_without_newrev_falls_back_to_the_patch_set(self) -> None:
        data = fixture_json("gerrit/change-merged.json")
        del data["newRev"]
        event = one(gerrit.parse({}, json.dumps(data).encode()))
        assert event.sha == "5c0d2e1f4b7a8c9d0e1f2a3b4c5d6e7f8091a2b3"

    def test_comment_added_recheck(self) -> None:
        event = one(gerrit.parse({}, fixture_bytes("gerrit/comment-added.json")))
        assert event.type == "comment"
        assert event.comment == "Patch Set 2:\n\nrecheck"
        assert event.recheck
        assert event.author == "bob"
        assert event.sha == "4b9c1d0e3a6f7b8c9d0e1f2a3b4c5d6e7f809a1b"

    def test_comment_added_without_recheck(self) -> None:
        data = fixture_json("gerrit/comment-added.json")
        data["comment"] = "Patch Set 2: Code-Review+1\n\nLooks good, but please recheck the docs."
        event = one(gerrit.parse({}, json.dumps(data).encode()))
        assert event.type == "comment" and not event.recheck

    def test_ref_updated_tag_and_branch(self) -> None:
        tag = one(gerrit.parse({}, fixture_bytes("gerrit/ref-updated-tag.json")))
        assert (tag.type, tag.tag, tag.ref, tag.branch) == ("tag", "v1.4.0", "refs/tags/v1.4.0", None)
        assert tag.author == "releasebot" and tag.trusted
        branch = one(gerrit.parse({}, fixture_bytes("gerrit/ref-updated-branch.json")))
        assert (branch.type, branch.branch, branch.sha) == (
            "ref-updated",
            "master",
            "9a8b7c6d5e4f30291817161514131211100f0e0d",
        )

    def test_ref_updated_old_format_and_ignored_refs(self) -> None:
        data = fixture_json("gerrit/ref-updated-branch.json")
        data["refUpdate"]["refName"] = "master"  # Gerrit < 2.13
        assert one(gerrit.parse({}, json.dumps(data).encode())).ref == "refs/heads/master"
        for ref in ("refs/changes/23/123/2", "refs/meta/config", "refs/users/01/1001"):
            data["refUpdate"]["refName"] = ref
            with pytest.raises(WebhookIgnored):
                gerrit.parse({}, json.dumps(data).encode())
        data["refUpdate"]["refName"] = "refs/heads/master"
        data["refUpdate"]["newRev"] = "0" * 40
        with pytest.raises(WebhookIgnored, match="deletes refs/heads/master"):
            gerrit.parse({}, json.dumps(data).encode())

    @pytest.mark.parametrize(
        "kind", ["reviewer-added", "change-abandoned", "topic-changed", "dropped-output"]
    )
    def test_other_event_types_are_ignored_with_202(self, kind: str) -> None:
        data = fixture_json("gerrit/patchset-created.json")
        data["type"] = kind
        with pytest.raises(WebhookIgnored) as info:
            gerrit.parse({}, json.dumps(data).encode())
        assert info.value.status == 202
        assert info.value.message.startswith("ignored: ") and kind in info.value.message

    def test_numbers_as_strings_from_old_gerrit(self) -> None:
        data = fixture_json("gerrit/patchset-created.json")
        data["change"]["number"] = "123"
        data["patchSet"]["number"] = "2"
        event = one(gerrit.parse({}, json.dumps(data).encode()))
        assert (event.change_number, event.patchset) == (123, 2)

    def test_missing_ref_is_derived_like_gerrit_names_it(self) -> None:
        data = fixture_json("gerrit/patchset-created.json")
        del data["patchSet"]["ref"]
        data["change"]["number"] = 4507
        assert one(gerrit.parse({}, json.dumps(data).encode())).ref == "refs/changes/07/4507/2"

    @pytest.mark.parametrize(
        ("mutate", "message"),
        [
            (lambda d: d.pop("change"), "field change is missing"),
            (lambda d: d["change"].pop("number"), "field change.number is missing"),
            (lambda d: d["change"].update(number=True), "change.number must be an integer"),
            (lambda d: d["change"].update(number=-4), "change.number must be a positive integer"),
            (lambda d: d["patchSet"].update(revision="HEAD"), "patchSet.revision must be a 40- or 64-digit"),
            (lambda d: d["patchSet"].update(ref="refs/changes/../../x"), "not a valid git ref"),
            (lambda d: d.update(change=[1]), "field change must be an object, got a list"),
            (lambda d: d.pop("type"), "field type is missing"),
        ],
    )
    def test_malformed_events_get_400_naming_the_field(self, mutate, message: str) -> None:
        data = fixture_json("gerrit/patchset-created.json")
        mutate(data)
        with pytest.raises(WebhookError) as info:
            gerrit.parse({}, json.dumps(data).encode())
        assert info.value.status == 400
        assert message in info.value.message

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            (b"", "the request body is empty"),
            (
                b"{not json",
                "not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2",
            ),
            (b"[1, 2]", "the body is a JSON list, expected an object"),
            (b"\xff\xfe\x00", "not"),
            (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
        ],
    )
    def test_bodies_that_are_not_json_objects(self, body: bytes, message: str) -> None:
        with pytest.raises(WebhookError) as info:
            gerrit.parse({}, body)
        assert info.value.status == 400 and message in info.value.message

    def test_delivery_id_is_stable_across_repeats_and_serialisations(self) -> None:
        body = fixture_bytes("gerrit/comment-added.json")
        first = one(gerrit.parse({}, body)).delivery_id
        assert first.startswith("gerrit:")
        assert one(gerrit.parse({}, body)).delivery_id == first
        # The same event re-serialised (key order, spacing, numbers as strings) is the same.
        data = json.loads(body)
        data["change"]["number"] = "123"
        reordered = json.dumps(dict(reversed(list(data.items()))), indent=4).encode()
        assert one(gerrit.parse({}, reordered)).delivery_id == first
        # Extra fields a newer Gerrit adds do not change it either.
        data["change"]["hashtags"] = ["perf"]
        assert one(gerrit.parse({}, json.dumps(data).encode())).delivery_id == first

    def test_delivery_id_differs_for_different_events(self) -> None:
        data = fixture_json("gerrit/comment-added.json")
        base = one(gerrit.parse({}, json.dumps(data).encode())).delivery_id
        ids = {base}
        for change in (
            lambda d: d.update(comment="Patch Set 2:\n\nrecheck again"),
            lambda d: d.update(eventCreatedOn=d["eventCreatedOn"] + 1),
            lambda d: d["author"].update(username="carol"),
            lambda d: d["patchSet"].update(number=3),
        ):
            variant = copy.deepcopy(data)
            change(variant)
            ids.add(one(gerrit.parse({}, json.dumps(variant).encode())).delivery_id)
        assert len(ids) == 5
        # and a different event type on the same patch set differs too
        assert one(gerrit.parse({}, fixture_bytes("gerrit/patchset-created.json"))).delivery_id not in ids

    def test_stream_reader(self) -> None:
        errors: list[tuple[int, WebhookError]] = []
        lines = fixture_bytes("gerrit/stream-events.jsonl").decode().splitlines()
        events = list(gerrit.read_stream(lines, on_error=lambda n, e: errors.append((n, e))))
        assert [(e.type, e.project) for e in events] == [
            ("patchset", "mediawiki/services/citoid"),
            ("comment", "mediawiki/services/citoid"),
            ("patchset", "operations/deployment-charts"),
            ("ref-updated", "operations/deployment-charts"),
        ]
        assert events[1].recheck
        assert (events[2].change_number, events[2].patchset, events[2].author) == (4567, 1, "Dana")
        assert events[3].ref == "refs/heads/master"
        assert [n for n, _ in errors] == [3]
        assert errors[0][1].status == 400

    def test_stream_and_webhook_give_the_same_delivery_id(self) -> None:
        lines = fixture_bytes("gerrit/stream-events.jsonl").splitlines()
        from_stream = next(gerrit.read_stream(lines))
        from_webhook = one(gerrit.parse({}, fixture_bytes("gerrit/patchset-created.json")))
        assert from_stream.delivery_id == from_webhook.delivery_id

    def test_stream_reader_logs_bad_lines_by_default(self, caplog: pytest.LogCaptureFixture) -> None:
        events = list(gerrit.read_stream([b"garbage", fixture_bytes("gerrit/patchset-created.json")]))
        assert len(events) == 1
        assert "line 1 skipped" in caplog.text


# --- GitLab ------------------------------------------------------------------------------


class TestGitLab:
    def parse(self, name: str, **headers: str) -> ChangeEvent:
        return one(
            gitlab.parse(
                {"X-Gitlab-Event-UUID": "13792a34-cac6-4fda-95a8-c58e00a3954e", **headers},
                fixture_bytes(name),
            )
        )

    def test_push_to_a_branch(self) -> None:
        event = self.parse("gitlab/push.json", **{"X-Gitlab-Event": "Push Hook"})
        assert (event.source, event.type, event.project) == (
            "gitlab",
            "merged",
            "repos/mediawiki/services/citoid",
        )
        assert event.sha == "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"
        assert (event.ref, event.branch, event.target_branch) == ("refs/heads/main", "main", None)
        assert event.author == "jsmith"
        assert event.url.endswith("/-/commit/da1560886d4f094c3e6c9ef40349f7d38b5d27d7")

    def test_tag_push_builds_the_commit_not_the_tag_object(self) -> None:
        event = self.parse("gitlab/tag_push.json", **{"X-Gitlab-Event": "Tag Push Hook"})
        assert (event.type, event.tag) == ("tag", "v1.4.0")
        assert event.sha == "da1560886d4f094c3e6c9ef40349f7d38b5d27d7"  # checkout_sha, not "after"

    def test_merge_request_opened_and_updated(self) -> None:
        opened = self.parse("gitlab/merge_request_open.json")
        assert (opened.type, opened.change_number, opened.sha) == (
            "patchset",
            5,
            "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
        )
        assert (opened.ref, opened.branch, opened.target_branch) == (
            "refs/merge-requests/5/head",
            "cache-translators",
            "main",
        )
        assert opened.url == "https://gitlab.example.com/repos/mediawiki/services/citoid/-/merge_requests/5"
        assert opened.author == "root"
        updated = self.parse("gitlab/merge_request_update.json")
        assert (updated.type, updated.sha) == ("patchset", "e7a1c3b5d7f9e1a3c5b7d9f1e3a5c7b9d1f3e5a7")

    def test_merge_request_edit_without_new_commits_is_ignored(self) -> None:
        with pytest.raises(WebhookIgnored, match="without new commits"):
            self.parse("gitlab/merge_request_edit_title.json")

    @pytest.mark.parametrize("action", ["close", "approved", "unapproved", "approval", None])
    def test_other_merge_request_actions_are_ignored(self, action) -> None:
        data = fixture_json("gitlab/merge_request_open.json")
        if action is None:
            del data["object_attributes"]["action"]
        else:
            data["object_attributes"]["action"] = action
        with pytest.raises(WebhookIgnored):
            gitlab.parse({}, json.dumps(data).encode())

    def test_merge_request_merged(self) -> None:
        event = self.parse("gitlab/merge_request_merge.json")
        assert (event.type, event.sha, event.ref, event.branch) == (
            "merged",
            "f00dfacef00dfacef00dfacef00dfacef00dface",
            "refs/heads/main",
            "main",
        )
        assert event.change_number == 5

    def test_note_on_a_merge_request(self) -> None:
        event = self.parse("gitlab/note_merge_request.json", **{"X-Gitlab-Event": "Note Hook"})
        assert (event.type, event.change_number, event.author) == ("comment", 5, "bob")
        assert event.recheck
        assert event.sha == "e7a1c3b5d7f9e1a3c5b7d9f1e3a5c7b9d1f3e5a7"
        assert event.url == "https://gitlab.example.com/repos/mediawiki/services/citoid/-/merge_requests/5"

    @pytest.mark.parametrize(
        ("change", "reason"),
        [
            (lambda a: a.update(noteable_type="Issue"), "not on a merge request"),
            (lambda a: a.update(noteable_type="Commit"), "not on a merge request"),
            (lambda a: a.update(action="update"), "only new notes count"),
            (lambda a: a.update(system=True), "system note"),
        ],
    )
    def test_other_notes_are_ignored(self, change, reason: str) -> None:
        data = fixture_json("gitlab/note_merge_request.json")
        change(data["object_attributes"])
        with pytest.raises(WebhookIgnored, match=reason):
            gitlab.parse({}, json.dumps(data).encode())

    def test_branch_deletion_and_unknown_kinds_are_ignored(self) -> None:
        data = fixture_json("gitlab/push.json")
        data.update(after="0" * 40, checkout_sha=None)
        with pytest.raises(WebhookIgnored, match="deletes refs/heads/main"):
            gitlab.parse({}, json.dumps(data).encode())
        with pytest.raises(WebhookIgnored, match="pipeline"):
            gitlab.parse({}, json.dumps({"object_kind": "pipeline"}).encode())
        with pytest.raises(WebhookIgnored, match="Job Hook"):
            gitlab.parse({"X-Gitlab-Event": "Job Hook"}, b'{"build_id": 1}')

    def test_no_kind_anywhere_is_a_400(self) -> None:
        with pytest.raises(WebhookError) as info:
            gitlab.parse({}, b'{"ref": "refs/heads/main"}')
        assert info.value.status == 400 and "X-Gitlab-Event" in info.value.message

    def test_missing_project_path_is_a_400_naming_it(self) -> None:
        data = fixture_json("gitlab/push.json")
        del data["project"]["path_with_namespace"]
        with pytest.raises(WebhookError, match=r"project\.path_with_namespace is missing") as info:
            gitlab.parse({}, json.dumps(data).encode())
        assert info.value.status == 400

    def test_delivery_id_prefers_idempotency_key(self) -> None:
        body = fixture_bytes("gitlab/push.json")
        both = {"Idempotency-Key": "908a6d9e-45fd-46c8-97e6-c4f350f219dd", "X-Gitlab-Event-UUID": "u-1"}
        assert one(gitlab.parse(both, body)).delivery_id == "gitlab:908a6d9e-45fd-46c8-97e6-c4f350f219dd"
        assert one(gitlab.parse({"X-Gitlab-Event-UUID": "u-1"}, body)).delivery_id == "gitlab:u-1"
        fallback = one(gitlab.parse({}, body)).delivery_id
        assert fallback.startswith("gitlab:body-")
        assert one(gitlab.parse({}, body)).delivery_id == fallback
        assert one(gitlab.parse({}, fixture_bytes("gitlab/tag_push.json"))).delivery_id != fallback


# --- GitHub ------------------------------------------------------------------------------


class TestGitHub:
    def parse(self, event: str, name: str) -> ChangeEvent:
        body = fixture_bytes(name)
        return one(github.parse(gh_headers(event, body), body))

    def test_push_to_a_branch(self) -> None:
        event = self.parse("push", "github/push.json")
        assert (event.source, event.type, event.project, event.branch) == (
            "github",
            "merged",
            "wikimedia/citoid",
            "main",
        )
        assert event.sha == "6dcb09b5b57875f334f61aebed695e2e4193db5e"
        assert event.author == "octocat"
        assert event.delivery_id == "github:72d3162e-cc78-11e3-81ab-4c9367dc0958"
        assert (
            event.url == "https://github.com/wikimedia/citoid/commit/6dcb09b5b57875f334f61aebed695e2e4193db5e"
        )

    def test_annotated_tag_push_builds_the_commit(self) -> None:
        event = self.parse("push", "github/push_tag.json")
        assert (event.type, event.tag) == ("tag", "v1.4.0")
        assert event.sha == "6dcb09b5b57875f334f61aebed695e2e4193db5e"  # head_commit.id, not after

    def test_pull_request_opened_and_synchronized(self) -> None:
        opened = self.parse("pull_request", "github/pull_request_opened.json")
        assert (opened.type, opened.change_number, opened.sha, opened.ref) == (
            "patchset",
            7,
            "6dcb09b5b57875f334f61aebed695e2e4193db5e",
            "refs/pull/7/head",
        )
        assert (opened.branch, opened.target_branch) == ("cache-translators", "main")
        assert opened.url == "https://github.com/wikimedia/citoid/pull/7"
        sync = self.parse("pull_request", "github/pull_request_synchronize.json")
        assert (sync.type, sync.sha) == ("patchset", "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00")

    def test_pull_request_merged(self) -> None:
        event = self.parse("pull_request", "github/pull_request_closed_merged.json")
        assert (event.type, event.sha, event.ref, event.branch) == (
            "merged",
            "e5bd3914e2e596debea16f433f57875b5b90bcd6",
            "refs/heads/main",
            "main",
        )

    @pytest.mark.parametrize("action", ["edited", "labeled", "assigned", "review_requested"])
    def test_other_pull_request_actions_are_ignored(self, action: str) -> None:
        data = fixture_json("github/pull_request_opened.json")
        data["action"] = action
        with pytest.raises(WebhookIgnored):
            github.parse({"X-GitHub-Event": "pull_request"}, json.dumps(data).encode())

    def test_closed_without_merge_is_ignored(self) -> None:
        data = fixture_json("github/pull_request_closed_merged.json")
        data["pull_request"]["merged"] = False
        with pytest.raises(WebhookIgnored, match="without merging"):
            github.parse({"X-GitHub-Event": "pull_request"}, json.dumps(data).encode())

    def test_comment_on_a_pull_request(self) -> None:
        event = self.parse("issue_comment", "github/issue_comment_pull_request.json")
        assert (event.type, event.change_number, event.author) == ("comment", 7, "reviewer")
        assert event.recheck  # "Recheck\r\n"
        assert event.sha is None and event.ref == "refs/pull/7/head"

    def test_comment_on_an_issue_and_edited_comments_are_ignored(self) -> None:
        data = fixture_json("github/issue_comment_pull_request.json")
        del data["issue"]["pull_request"]
        with pytest.raises(WebhookIgnored, match="not on a pull request"):
            github.parse({"X-GitHub-Event": "issue_comment"}, json.dumps(data).encode())
        data = fixture_json("github/issue_comment_pull_request.json")
        data["action"] = "edited"
        with pytest.raises(WebhookIgnored, match="only new comments"):
            github.parse({"X-GitHub-Event": "issue_comment"}, json.dumps(data).encode())

    def test_ping_and_unhandled_events_are_ignored(self) -> None:
        with pytest.raises(WebhookIgnored, match="ping"):
            self.parse("ping", "github/ping.json")
        with pytest.raises(WebhookIgnored, match="'release'"):
            github.parse({"X-GitHub-Event": "release"}, b"{}")

    def test_branch_deletion_is_ignored(self) -> None:
        data = fixture_json("github/push.json")
        data.update(deleted=True, after="0" * 40, head_commit=None)
        with pytest.raises(WebhookIgnored, match="deletes"):
            github.parse({"X-GitHub-Event": "push"}, json.dumps(data).encode())

    def test_missing_event_header_is_a_400(self) -> None:
        with pytest.raises(WebhookError, match="X-GitHub-Event header is missing") as info:
            github.parse({}, fixture_bytes("github/push.json"))
        assert info.value.status == 400

    def test_form_encoded_deliveries(self) -> None:
        body = urlencode({"payload": fixture_bytes("github/push.json").decode()}).encode()
        headers = gh_headers("push", body) | {"Content-Type": "application/x-www-form-urlencoded"}
        assert github.verify(headers, body, SECRET)
        assert one(github.parse(headers, body)).sha == "6dcb09b5b57875f334f61aebed695e2e4193db5e"
        with pytest.raises(WebhookError, match="no 'payload' field"):
            github.parse(headers, b"other=1")

    def test_delivery_id_is_the_delivery_header_or_a_body_hash(self) -> None:
        body = fixture_bytes("github/push.json")
        assert one(github.parse(gh_headers("push", body, "abc"), body)).delivery_id == "github:abc"
        without = {"X-GitHub-Event": "push"}
        assert one(github.parse(without, body)).delivery_id == one(github.parse(without, body)).delivery_id
        assert one(github.parse(without, body)).delivery_id.startswith("github:body-")


# --- plain git ---------------------------------------------------------------------------


class TestGit:
    def test_push_and_tag(self) -> None:
        event = one(git.parse({}, fixture_bytes("git/push.json")))
        assert (event.source, event.type, event.project, event.branch, event.author) == (
            "git",
            "merged",
            "citoid",
            "main",
            "alice",
        )
        tag = one(git.parse({}, fixture_bytes("git/push_tag.json")))
        assert (tag.type, tag.tag, tag.sha) == ("tag", "v1.4.0", "6dcb09b5b57875f334f61aebed695e2e4193db5e")

    def test_post_receive_lines_become_signed_requests_the_driver_accepts(self) -> None:
        stdin = fixture_bytes("git/post-receive.txt").decode()
        payloads = git.post_receive_payloads(stdin, "citoid", pusher="alice")
        assert [p["ref"] for p in payloads] == [
            "refs/heads/main",
            "refs/tags/v1.4.0",
            "refs/heads/old-feature",
        ]
        results = []
        for payload in payloads:
            body, headers = git.request_for(payload, SECRET)
            assert git.verify(headers, body, SECRET)
            try:
                results.append(one(git.parse(headers, body)).type)
            except WebhookIgnored as exc:
                results.append(exc.message)
        assert results == ["merged", "tag", "ignored: git push deletes refs/heads/old-feature"]

    def test_post_receive_peels_annotated_tags(self) -> None:
        tag_object, commit = "7" * 40, "6dcb09b5b57875f334f61aebed695e2e4193db5e"
        stdin = f"{'0' * 40} {tag_object} refs/tags/v2\n{'1' * 40} {commit} refs/heads/main\n"
        peeled = {tag_object: commit, commit: commit}
        payloads = git.post_receive_payloads(stdin, "citoid", peel=peeled.get)
        assert payloads[0]["after"] == tag_object and payloads[0]["commit"] == commit
        assert "commit" not in payloads[1]
        events = [one(git.parse({}, git.request_for(p, SECRET)[0])) for p in payloads]
        assert [e.sha for e in events] == [commit, commit]

    def test_post_receive_rejects_garbage_naming_the_line(self) -> None:
        with pytest.raises(ValueError, match="line 2"):
            git.post_receive_payloads("\n".join(["a" * 40 + " " + "b" * 40 + " refs/heads/x", "junk"]), "p")

    def test_delivery_id_is_stable_for_the_same_push(self) -> None:
        body = fixture_bytes("git/push.json")
        assert one(git.parse({}, body)).delivery_id == one(git.parse({}, body + b"\n")).delivery_id
        assert one(git.parse({"X-Chute-Delivery": "d-9"}, body)).delivery_id == "git:d-9"
        moved = fixture_json("git/push.json") | {"after": "1" * 40}
        assert (
            one(git.parse({}, json.dumps(moved).encode())).delivery_id != one(git.parse({}, body)).delivery_id
        )

    def test_refs_that_git_would_refuse_are_400(self) -> None:
        for ref in ("main", "refs/heads/a..b", "refs/heads/x y", "refs/heads/x.lock", "refs/heads/-\n"):
            data = fixture_json("git/push.json") | {"ref": ref}
            with pytest.raises(WebhookError) as info:
                git.parse({}, json.dumps(data).encode())
            assert info.value.status == 400 and "not a valid git ref" in info.value.message


# --- shared ------------------------------------------------------------------------------


def test_check_project_refuses_events_for_another_project() -> None:
    events = gerrit.parse({}, fixture_bytes("gerrit/patchset-created.json"))
    check_project(events, "mediawiki/services/citoid")
    with pytest.raises(WebhookError) as info:
        check_project(events, "operations/deployment-charts")
    assert info.value.status == 403
    assert "mediawiki/services/citoid" in info.value.message


def test_get_driver() -> None:
    assert get_driver("gitlab") is gitlab.driver
    assert {d.kind for d in DRIVERS.values()} == {"gerrit", "gitlab", "github", "git"}
    with pytest.raises(WebhookError) as info:
        get_driver("bitbucket")
    assert info.value.status == 404 and "gerrit, git, github, gitlab" in info.value.message
