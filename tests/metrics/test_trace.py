"""Traces of patches and deployments on the main history (conftest.build_main_history)."""

from __future__ import annotations

import pytest

from chute.metrics import (
    TraceError,
    environment_history,
    environments,
    trace,
    trace_change,
    trace_commit,
    trace_deployment,
)
from chute.store import Database

from .conftest import T0, D, H, History, M, sha


def test_change_journey_with_time_between_steps(db: Database, main_history: History) -> None:
    t = trace_change(db, "shop", "101")
    assert t.change == "101" and t.commit == sha("m101") and t.title == "Add cart"
    assert t.state == "deployed to production"
    steps = [(s.key, s.label, s.at) for s in t.steps]
    assert steps == [
        ("uploaded", "uploaded (patchset 1)", T0 + 1 * H),
        # the first success of the patchset that merged (patchset 2, run 3), not the rerun on patchset 1
        ("tests_passed", "tests passed (test, run 3)", T0 + 2 * H + 20 * M),
        ("merged", "merged", T0 + 5 * H),
        ("image_built", "image built (sha256:111111111111)", T0 + 5 * H + 30 * M),
        ("deployed", "deployed to staging (revision 1)", T0 + 7 * H + 30 * M),
        ("deployed", "deployed to production (revision 1)", T0 + 8 * H),
    ]
    gaps = [s.seconds_since_previous for s in t.steps]
    assert gaps == [None, 80 * 60, 160 * 60, 30 * 60, 120 * 60, 30 * 60]
    assert t.steps[-1].seconds_since_start == 7 * 3600
    assert t.lead_time_from_upload_seconds == 7 * 3600 and t.lead_time_from_merge_seconds == 3 * 3600
    assert [(p.patchset, p.commit, [r.run for r in p.runs]) for p in t.patchsets] == [
        (1, sha("c101a"), [1, 2]), (2, sha("c101b"), [3, 7])]
    assert [(r.run, r.pipeline, r.outcome) for r in t.runs] == [(10, "publish", "success")]
    assert [(d.environment, d.revision, d.first_delivery) for d in t.deployments] == [
        ("staging", 1, True), ("production", 1, True)]
    kinds = [e["kind"] for e in t.events]
    assert kinds[0] == "change.uploaded" and "image.published" in kinds and "change.merged" in kinds
    doc = t.to_json()
    assert doc["type"] == "patch" and doc["steps"][0]["at"] == "2026-03-02T01:00:00Z"


def test_commit_of_a_patchset_or_the_merge_traces_the_change(db: Database, main_history: History) -> None:
    by_merge = trace_commit(db, "shop", sha("m101")[:9])
    by_patchset = trace_commit(db, "shop", sha("c101a"))
    assert by_merge.change == by_patchset.change == "101"
    assert by_merge.to_json() == by_patchset.to_json()


def test_patch_shipped_twice_and_by_a_failed_deploy(db: Database, main_history: History) -> None:
    t = trace_change(db, "shop", "103")
    assert [(d.revision, d.outcome, d.first_delivery) for d in t.deployments] == [
        (2, "healthy", True), (4, "healthy", False)]
    assert t.lead_time_from_upload_seconds == 4 * 3600  # to rev 2, its first healthy deploy
    t = trace_change(db, "shop", "106")
    assert [(d.revision, d.outcome, d.first_delivery) for d in t.deployments] == [
        (6, "rolled-back", False), (8, "healthy", True)]
    assert t.steps[-1].label == "deployed to production (revision 8)"


def test_never_deployed_and_in_review(db: Database, main_history: History) -> None:
    t = trace_change(db, "shop", "105")
    assert t.state == "merged, not deployed yet"
    assert t.steps[-1].key == "deployed" and t.steps[-1].at is None  # the step still to come
    assert t.lead_time_from_merge_seconds is None
    t = trace_change(db, "shop", "#107")
    assert t.state == "in review" and [s.key for s in t.steps] == ["uploaded"] and t.deployments == []


def test_pushed_commit(db: Database, main_history: History) -> None:
    t = trace_commit(db, "shop", sha("p1"))
    assert t.change is None and t.commit == sha("p1") and t.title == "Bump dependency"
    assert [(s.key, s.seconds_since_previous) for s in t.steps] == [
        ("pushed", None), ("deployed", 30 * 60), ("deployed", 30 * 60)]
    assert t.lead_time_from_upload_seconds == t.lead_time_from_merge_seconds == 3600


def test_commit_only_seen_inside_a_deploy(db: Database) -> None:
    h = History(db)
    h.deploy("production", 1, T0, commits=[sha("inner"), sha("head")])
    h.push(sha("head"), T0 - H, "Head")
    t = trace_commit(db, "shop", sha("inner")[:10])
    assert t.commit == sha("inner") and t.state == "deployed to production"
    assert [(d.revision, d.first_delivery) for d in t.deployments] == [(1, True)]
    assert [s.key for s in t.steps] == ["deployed"]  # no upload or merge is known for it
    assert t.lead_time_from_upload_seconds is None and t.lead_time_from_merge_seconds is None


def test_commit_errors(db: Database, main_history: History) -> None:
    with pytest.raises(TraceError) as err:
        trace_commit(db, "shop", "abc")
    assert err.value.status == 400 and "at least 7" in err.value.message
    with pytest.raises(TraceError) as err:
        trace_commit(db, "shop", "0000000")
    assert err.value.status == 404
    h = History(db)
    h.push("abcdef1" + "0" * 33, T0, "one")
    h.push("abcdef1" + "1" * 33, T0, "two")
    with pytest.raises(TraceError) as err:
        trace_commit(db, "shop", "abcdef1")
    assert err.value.status == 400 and "ambiguous" in err.value.message
    with pytest.raises(TraceError) as err:
        trace_change(db, "shop", "999")
    assert err.value.status == 404


def test_deployment_lists_every_change_it_shipped(db: Database, main_history: History) -> None:
    t = trace_deployment(db, "shop", "production", 1)
    assert t.outcome == "healthy" and t.kind == "deploy" and t.image_digest == "sha256:" + "1" * 64
    assert [(c.commit, c.change, c.title) for c in t.changes] == [
        (sha("p1"), None, "Bump dependency"), (sha("m102"), "102", "Fix totals"), (sha("m101"), "101", "Add cart")]
    assert [(c.lead_time_from_upload_seconds, c.lead_time_from_merge_seconds) for c in t.changes] == [
        (1 * 3600, 1 * 3600), (5 * 3600, 2 * 3600), (7 * 3600, 3 * 3600)]
    assert all(c.first_delivery for c in t.changes)
    assert t.duration_seconds == 5 * 60 and t.older_revision is None and t.newer_revision == 2
    assert [h["outcome"] for h in t.health] == ["healthy"]
    assert t.to_json()["type"] == "deployment"


def test_deployment_reshipping_and_rollbacks(db: Database, main_history: History) -> None:
    t = trace_deployment(db, "shop", "production", 4)
    assert [(c.change, c.first_delivery, c.shipped_before_by) for c in t.changes] == [
        ("104", True, None), ("103", False, 2)]
    t = trace_deployment(db, "shop", "production", 6)
    assert t.outcome == "rolled-back" and t.rollback is not None
    assert t.rollback["automatic"] is True and t.rollback["to_revision"] == 5
    assert t.rollback["time_to_restore_seconds"] == 900 and t.rollback["outcome"] == "restored"
    assert [(c.change, c.first_delivery, c.lead_time_from_upload_seconds) for c in t.changes] == [
        ("106", None, None)]  # not healthy: it delivered nothing
    assert [h["outcome"] for h in t.health] == ["unhealthy"]
    t = trace_deployment(db, "shop", "production", 2)
    assert t.rollback is not None and t.rollback["automatic"] is False
    t = trace_deployment(db, "shop", "production", 5)
    assert t.changes == [] and t.outcome == "healthy"  # an older image: ships nothing new


def test_deployment_not_found_names_recent_revisions(db: Database, main_history: History) -> None:
    with pytest.raises(TraceError) as err:
        trace_deployment(db, "shop", "production", 99)
    assert err.value.status == 404 and "10, 9, 8, 7, 6" in (err.value.hint or "")


def test_dispatcher_and_environment_lists(db: Database, main_history: History) -> None:
    assert trace(db, "shop", change="102").change == "102"
    assert trace(db, "shop", environment="staging", revision=1).environment == "staging"
    with pytest.raises(TraceError) as err:
        trace(db, "shop")
    assert err.value.status == 400
    with pytest.raises(TraceError):
        trace(db, "shop", change="1", commit="abcdef12")
    with pytest.raises(TraceError) as err:
        trace(db, "shop", revision=3)
    assert "environment" in err.value.message
    assert environments(db, "shop") == ["production", "staging"]
    hist = environment_history(db, "shop", "production", limit=3)
    assert [(d["revision"], d["kind"], d["commits"]) for d in hist] == [
        (10, "deploy", 1), (9, "deploy", 1), (8, "deploy", 1)]
    assert trace_change(db, "shop", "108", environment="staging").lead_time_from_upload_seconds is None
    assert trace_change(db, "shop", "108").lead_time_from_upload_seconds == 25 * 3600
    assert trace_change(db, "shop", "108").steps[-1].at == T0 + 10 * D + 2 * H
