"""DORA metrics and flakiness on SQLite and PostgreSQL, against answers computed by hand.

The history is ``build_main_history`` in conftest.py (two weeks from Monday T0).
Every expected value below is written as the arithmetic that produces it.
"""

from __future__ import annotations

from statistics import median

import pytest

from chute.metrics import compute_metrics
from chute.store import Database

from .conftest import T0, D, H, History, M, sha

UNTIL = T0 + 14 * D


def p90(values: list[float]) -> float:
    """PERCENTILE_CONT(0.9) by hand: rank 0.9 * (n - 1) between the sorted neighbours."""
    xs = sorted(values)
    pos = 0.9 * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


# Lead times of the delivered patches to production, in seconds, as (from upload, from merge):
LEAD = {
    "101": ((8 - 1) * 3600, (8 - 5) * 3600),  # uploaded T0+1h, merged T0+5h, rev 1 at T0+8h
    "102": ((8 - 3) * 3600, (8 - 6) * 3600),  # uploaded T0+3h, merged T0+6h, rev 1
    "p1": ((8 - 7) * 3600, (8 - 7) * 3600),  # pushed T0+7h: uploaded = merged, rev 1
    "103": (4 * 3600, 2 * 3600),  # uploaded T0+1d, merged +2h, rev 2 at +4h (not again at rev 4)
    "104": (3 * 3600, 2 * 3600),  # the revert: uploaded T0+2d, merged +1h, rev 4 at +3h
    "106": (24 * 3600, 23 * 3600),  # uploaded T0+8d, merged +1h; rev 6 rolled back; rev 8 at T0+9d
    "108": (25 * 3600, 24 * 3600),  # uploaded T0+9d+1h, merged +2h; rev 9 failed; rev 10 at T0+10d+2h
}
UP = [v[0] for v in LEAD.values()]
MG = [v[1] for v in LEAD.values()]
# Time to restore of the failed deployments:
TTR = {
    2: (6 * 3600 + 10 * 60) - (3 * 3600 + 55 * 60),  # manual rollback restored at +6h10, rev 2 started +3h55
    6: (3 * 3600 + 5 * 60) - (2 * 3600 + 50 * 60),  # automatic rollback restored at +3h05, started +2h50
    9: (2 * 3600) - (-10 * 60),  # no rollback: rev 10 healthy at +2h; rev 9 started 10 min before T0+10d
}


def test_main_history_every_metric(db: Database, main_history: History) -> None:
    m = compute_metrics(db, project="shop", since=T0, until=UNTIL)
    # deployments: revisions 1, 2, 4, 5, 6, 8, 9, 10 (3 and 7 are rollbacks, not deployments)
    assert m["deployment_count"] == 8
    assert m["window_days"] == 14
    assert m["deployment_frequency_per_day"] == pytest.approx(8 / 14)
    assert m["deployment_frequency_per_week"] == pytest.approx(8 / 14 * 7)
    # week 1 has deploys on days 0, 1, 2, 4 (4 days), week 2 on days 8, 9, 10 (3 days): median 3.5 >= 3
    assert m["deployment_frequency_bucket"] == "daily"
    # failed: rev 2 (a person rolled it back), rev 6 (rolled back automatically), rev 9 (failed gate)
    assert m["failed_deployment_count"] == 3
    assert m["change_failure_rate"] == pytest.approx(3 / 8)
    assert m["successful_deployment_count"] == 8 - 3
    assert m["rollback_count"] == 2 and m["automatic_rollback_count"] == 1
    assert m["time_to_restore_median_seconds"] == median(TTR.values())
    assert m["time_to_restore_p90_seconds"] == pytest.approx(p90(list(TTR.values())))
    assert m["unrestored_failure_count"] == 0
    assert m["patches_delivered"] == len(LEAD) == 7
    assert m["lead_time_from_upload_median_seconds"] == median(UP)
    assert m["lead_time_from_upload_p90_seconds"] == pytest.approx(p90(UP))
    assert m["lead_time_from_merge_median_seconds"] == median(MG)
    assert m["lead_time_from_merge_p90_seconds"] == pytest.approx(p90(MG))
    assert m["patches_in_flight"] == 1  # change 105; 107 is still in review, not in flight
    assert m["revert_count"] == 1  # change 104
    assert m["project"] == "shop" and m["environment"] == "production"


def test_percentile_values_written_out(db: Database, main_history: History) -> None:
    """The same answers as literal numbers, so that a wrong helper in the test cannot hide a bug."""
    m = compute_metrics(db, project="shop", since=T0, until=UNTIL)
    # sorted upload lead times: 3600 10800 14400 18000 25200 86400 90000
    assert m["lead_time_from_upload_median_seconds"] == 18000
    assert m["lead_time_from_upload_p90_seconds"] == pytest.approx(86400 + 0.4 * (90000 - 86400))
    # sorted restore times: 900 7800 8100 -> p90 at rank 1.8
    assert m["time_to_restore_median_seconds"] == 7800
    assert m["time_to_restore_p90_seconds"] == pytest.approx(7800 + 0.8 * (8100 - 7800))


def test_weekly_series(db: Database, main_history: History) -> None:
    m = compute_metrics(db, project="shop", since=T0, until=UNTIL)
    w1, w2 = m["series"]["weekly"]
    assert (w1["week"], w2["week"]) == ("2026-03-02", "2026-03-09")
    assert (w1["deployments"], w1["failed_deployments"]) == (4, 1)  # revs 1 2 4 5; rev 2 failed
    assert (w2["deployments"], w2["failed_deployments"]) == (4, 2)  # revs 6 8 9 10; 6 and 9 failed
    assert w1["change_failure_rate"] == 1 / 4 and w2["change_failure_rate"] == 2 / 4
    week1 = ["101", "102", "p1", "103", "104"]
    week2 = ["106", "108"]
    assert w1["patches_delivered"] == 5 and w2["patches_delivered"] == 2
    assert w1["lead_time_from_upload_median_seconds"] == median([LEAD[c][0] for c in week1])
    assert w1["lead_time_from_merge_median_seconds"] == median([LEAD[c][1] for c in week1])
    assert w2["lead_time_from_upload_median_seconds"] == median([LEAD[c][0] for c in week2])
    assert w1["time_to_restore_median_seconds"] == TTR[2]
    assert w2["time_to_restore_median_seconds"] == median([TTR[6], TTR[9]])
    daily = m["series"]["daily"]
    assert len(daily) == 14 and daily[0] == {"date": "2026-03-02", "deployments": 1}
    assert [d["deployments"] for d in daily] == [1, 1, 1, 0, 1, 0, 0, 0, 1, 1, 2, 0, 0, 0]


def test_flakiness_per_pipeline(db: Database, main_history: History) -> None:
    m = compute_metrics(db, project="shop", since=T0, until=UNTIL)
    rows = {r["pipeline"]: r for r in m["flakiness"]}
    # test: runs 1-9; failed 1, 4, 5 and 8 (error); reruns 2 and 7; rechecks 5, 6 and 9.
    # Passed after a failure on the same commit: 2 (of 1) and 6 (of 5). Not 7 (its run 3 passed),
    # not 9 (run 8 failed on another commit).
    assert rows["test"] == {"project": "shop", "pipeline": "test", "runs": 9, "failed_runs": 4, "reruns": 2,
                            "rechecks": 3, "rerun_passed": 2, "rerun_pass_rate": 2 / (2 + 3)}
    # publish: runs 10, 11 (failed) and 12 (a rerun of 11 that passed)
    assert rows["publish"] == {"project": "shop", "pipeline": "publish", "runs": 3, "failed_runs": 1,
                               "reruns": 1, "rechecks": 0, "rerun_passed": 1, "rerun_pass_rate": 1.0}


def test_period_filter_counts_patches_at_their_first_delivery(db: Database, main_history: History) -> None:
    since = T0 + 7 * D
    m = compute_metrics(db, project="shop", since=since, until=UNTIL)
    assert m["deployment_count"] == 4  # revs 6, 8, 9, 10
    assert m["failed_deployment_count"] == 2 and m["change_failure_rate"] == 2 / 4
    # 103 was first delivered before the period (rev 2), so only 106 and 108 count here
    assert m["patches_delivered"] == 2
    assert m["lead_time_from_upload_median_seconds"] == median([LEAD["106"][0], LEAD["108"][0]])
    assert m["time_to_restore_median_seconds"] == median([TTR[6], TTR[9]])
    assert m["patches_in_flight"] == 0  # 105 merged before the period
    # runs all finished in week 1
    assert m["flakiness"] == []


def test_no_deployments_gives_zero_counts_and_null_rates(db: Database) -> None:
    h = History(db)
    h.upload("1", 1, sha("a"), T0, "Something")
    h.merge("1", sha("b"), T0 + H, "Something")
    for since in (None, T0):
        m = compute_metrics(db, project="shop", since=since, until=UNTIL)
        assert m["deployment_count"] == 0 and m["failed_deployment_count"] == 0
        assert m["patches_delivered"] == 0 and m["rollback_count"] == 0
        for key in ("change_failure_rate", "deployment_frequency_bucket", "lead_time_from_upload_median_seconds",
                    "lead_time_from_upload_p90_seconds", "lead_time_from_merge_median_seconds",
                    "lead_time_from_merge_p90_seconds", "time_to_restore_median_seconds",
                    "time_to_restore_p90_seconds"):
            assert m[key] is None, key
        # a project that never deploys here has nothing "in flight" to this environment
        assert m["patches_in_flight"] == 0
    # no period given and nothing deployed: no window, so no frequency
    assert compute_metrics(db, until=UNTIL)["deployment_frequency_per_day"] is None
    # a period given: zero deployments over 14 days is a frequency of 0
    assert compute_metrics(db, since=T0, until=UNTIL)["deployment_frequency_per_day"] == 0.0
    assert compute_metrics(db, since=T0, until=UNTIL)["series"]["weekly"][0]["deployments"] == 0


def test_empty_ledger(db: Database) -> None:
    m = compute_metrics(db)
    assert m["deployment_count"] == 0 and m["flakiness"] == [] and m["series"] == {"daily": [], "weekly": []}


def test_rollback_counts_as_failure_without_an_incident(db: Database) -> None:
    h = History(db)
    h.push(sha("a"), T0, "A")
    h.deploy("production", 1, T0 + H, commits=[sha("a")])
    h.push(sha("b"), T0 + 2 * H, "B")
    h.deploy("production", 2, T0 + 3 * H, "rolled-back", commits=[sha("b")], started=T0 + 3 * H - 10 * M)
    h.rollback("production", 2, 1, T0 + 3 * H, T0 + 3 * H + 4 * M, automatic=True, time_to_restore=14 * 60.0)
    h.deploy("production", 3, T0 + 3 * H + 4 * M, kind="auto-rollback")
    m = compute_metrics(db, until=T0 + D)
    assert m["deployment_count"] == 2  # the auto-rollback (rev 3) is not a deployment
    assert m["failed_deployment_count"] == 1 and m["change_failure_rate"] == 1 / 2
    assert m["time_to_restore_median_seconds"] == 14 * 60  # from rollback.finished.time_to_restore
    assert m["automatic_rollback_count"] == 1
    # b never reached production healthy: in flight, not in lead time
    assert m["patches_delivered"] == 1 and m["patches_in_flight"] == 1
    assert m["lead_time_from_merge_median_seconds"] == 3600  # only a: pushed T0, rev 1 at T0+1h


def test_rollback_without_time_to_restore_uses_its_finish_time(db: Database) -> None:
    h = History(db)
    h.deploy("production", 1, T0 + H, commits=[])
    h.deploy("production", 2, T0 + 2 * H, "rolled-back", started=T0 + 2 * H - 5 * M)
    h.rollback("production", 2, 1, T0 + 2 * H, T0 + 2 * H + 7 * M, automatic=True, time_to_restore=None)
    m = compute_metrics(db, until=T0 + D)
    assert m["time_to_restore_median_seconds"] == (7 + 5) * 60  # restored at +7 min, started 5 min before


def test_failure_not_restored_yet(db: Database) -> None:
    h = History(db)
    h.deploy("production", 1, T0 + H, "failed")
    m = compute_metrics(db, until=T0 + D)
    assert m["failed_deployment_count"] == 1 and m["change_failure_rate"] == 1.0
    assert m["unrestored_failure_count"] == 1 and m["time_to_restore_median_seconds"] is None


def test_patch_shipped_by_two_healthy_deploys_counts_once_at_the_first(db: Database) -> None:
    h = History(db)
    h.upload("7", 1, sha("c7"), T0, "Seven")
    h.merge("7", sha("m7"), T0 + H, "Seven")
    h.deploy("production", 1, T0 + 2 * H, commits=[sha("m7")])
    h.rollback("production", 1, 0, T0 + 3 * H, T0 + 3 * H + M, automatic=False, time_to_restore=60.0)
    h.deploy("production", 2, T0 + 5 * H, commits=[sha("m7")])  # shipped again after the rollback
    m = compute_metrics(db, until=T0 + D)
    assert m["patches_delivered"] == 1
    assert m["lead_time_from_upload_median_seconds"] == 2 * 3600  # to rev 1, not 5 h to rev 2
    assert m["lead_time_from_merge_median_seconds"] == 1 * 3600


def test_older_image_deploy_is_a_deployment_without_lead_times(db: Database) -> None:
    h = History(db)
    h.deploy("production", 1, T0 + H, commits=[])
    m = compute_metrics(db, until=T0 + D)
    assert m["deployment_count"] == 1 and m["successful_deployment_count"] == 1
    assert m["patches_delivered"] == 0 and m["lead_time_from_merge_median_seconds"] is None
    assert m["change_failure_rate"] == 0.0


def test_other_environment_and_project(db: Database, main_history: History) -> None:
    other = History(db, project="billing")
    other.push(sha("bill1"), T0, "Invoice")
    other.deploy("production", 1, T0 + 30 * M, commits=[sha("bill1")])
    staging = compute_metrics(db, project="shop", since=T0, until=UNTIL, environment="staging")
    assert staging["deployment_count"] == 1
    # staging rev 1 at T0+7h30 shipped 101 (upload T0+1h), 102 (T0+3h) and p1 (T0+7h)
    assert staging["lead_time_from_upload_median_seconds"] == median([6.5 * 3600, 4.5 * 3600, 0.5 * 3600])
    both = compute_metrics(db, since=T0, until=UNTIL)
    assert both["deployment_count"] == 8 + 1
    assert both["lead_time_from_merge_median_seconds"] == median([*MG, 30 * 60])
    billing = compute_metrics(db, project="billing", since=T0, until=UNTIL)
    assert billing["deployment_count"] == 1 and billing["flakiness"] == []


def test_commits_unknown_to_the_ledger_are_ignored_and_patchset_commits_count(db: Database) -> None:
    h = History(db)
    h.upload("9", 1, sha("c9"), T0, "Nine")  # merged without a change.merged event (e.g. webhook lost)
    h.deploy("production", 1, T0 + 4 * H, commits=[sha("never-seen"), sha("c9")])
    m = compute_metrics(db, until=T0 + D)
    assert m["patches_delivered"] == 1
    assert m["lead_time_from_upload_median_seconds"] == 4 * 3600
    assert m["lead_time_from_merge_median_seconds"] is None  # no merge time known


@pytest.mark.parametrize("pattern, expected", [
    # 13 full weeks back from Monday 2026-03-30: Mon/Wed/Fri every week -> 3 days per week
    ([(w, d) for w in range(13) for d in (0, 2, 4)], "daily"),
    # Mon/Wed every week: 2 days per week (not daily), at least one deploy in every week
    ([(w, d) for w in range(13) for d in (0, 2)], "weekly"),
    # once in each of the months Jan, Feb, Mar (weeks 1, 6, 11) and in the partial December
    # week (Mon 29th): most weeks have none, every month has one
    ([(0, 0), (1, 3), (6, 0), (11, 0)], "monthly"),
    # one deploy in three months
    ([(5, 2)], "yearly"),
])
def test_deployment_frequency_bucket(db: Database, pattern: list[tuple[int, int]], expected: str) -> None:
    from datetime import UTC, datetime, timedelta

    until = datetime(2026, 3, 30, tzinfo=UTC)  # a Monday
    start = until - timedelta(weeks=13)  # Monday 2025-12-29
    h = History(db)
    for i, (week, day) in enumerate(pattern):
        h.deploy("production", i + 1, start + timedelta(weeks=week, days=day, hours=12))
    assert compute_metrics(db, until=until)["deployment_frequency_bucket"] == expected


def test_bucket_looks_at_the_last_13_weeks_only(db: Database) -> None:
    from datetime import UTC, datetime, timedelta

    until = datetime(2026, 3, 30, tzinfo=UTC)
    h = History(db)
    # daily a year ago, then nothing for the last 13 weeks except one deploy
    for i in range(60):
        h.deploy("production", i + 1, until - timedelta(days=300 - i))
    h.deploy("production", 99, until - timedelta(days=3))
    m = compute_metrics(db, until=until)
    assert m["deployment_count"] == 61 and m["deployment_frequency_bucket"] == "yearly"


def test_clock_skew_negative_lead_time_is_dropped(db: Database) -> None:
    h = History(db)
    h.upload("5", 1, sha("c5"), T0 + 2 * H, "Five")
    h.merge("5", sha("m5"), T0 + 3 * H, "Five")
    h.deploy("production", 1, T0 + H, commits=[sha("m5")])  # recorded as finished before the merge
    m = compute_metrics(db, until=T0 + D)
    assert m["patches_delivered"] == 1 and m["lead_time_from_merge_median_seconds"] is None
