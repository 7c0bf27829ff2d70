"""The CLI command bodies against a real chute server (uvicorn on 127.0.0.1) and a fake Elasticsearch."""

from __future__ import annotations

import io
import json

from chute.metrics.cli import events_export_command, metrics_command, parse_target, trace_command

from .conftest import LiveServer, build_main_history, free_port, sha
from .test_export import FakeElasticsearch


def run(fn, *args, **kw) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    out, err = io.StringIO(), io.StringIO()
    code = fn(*args, out=out, err=err, token="none", **kw)
    return code, out.getvalue(), err.getvalue()


def test_parse_target() -> None:
    assert parse_target("production@12") == {"environment": "production", "revision": 12}
    assert parse_target("#1234") == {"change": "1234"} and parse_target("!7") == {"change": "7"}
    assert parse_target("3F2A9C1D") == {"commit": "3f2a9c1d"}
    for bad in ("production@latest", "hello world", "abc"):
        try:
            parse_target(bad)
        except ValueError as err:
            assert "ENVIRONMENT@REVISION" in str(err) or "must be a number" in str(err)
        else:
            raise AssertionError(bad)


def test_metrics_command(live_server: LiveServer) -> None:
    build_main_history(live_server.app.state.chute.db)
    code, out, err = run(metrics_command, "shop", "2026-03-02", True, until="2026-03-16",
                         server=live_server.url)
    assert code == 0 and err == ""
    m = json.loads(out)
    assert m["deployment_count"] == 8 and m["change_failure_rate"] == 3 / 8
    code, out, _ = run(metrics_command, "shop", "2026-03-02", False, until="2026-03-16", server=live_server.url)
    assert code == 0
    assert "0.57 per day" in out and "daily" in out  # 8 deployments / 14 days
    assert "median 5 h 00 min" in out  # lead time from upload: 18000 s
    assert "37.5 %" in out and "3 failed" in out
    assert "Flakiness per pipeline" in out and "publish" in out
    code, _, err = run(metrics_command, "shop", "someday", False, server=live_server.url)
    assert code == 1 and "--since" in err and "30d" in err
    code, _, err = run(metrics_command, "ghost", None, False, server=live_server.url)
    assert code == 1 and "no project named 'ghost'" in err


def test_trace_command(live_server: LiveServer) -> None:
    build_main_history(live_server.app.state.chute.db)
    code, out, _ = run(trace_command, "101", "shop", False, server=live_server.url)
    assert code == 0 and "shop change 101" in out and "deployed to production (revision 1)" in out
    assert "lead time to production: 7 h 00 min from first upload, 3 h 00 min from merge" in out
    code, out, _ = run(trace_command, sha("m103")[:10], "shop", True, server=live_server.url)
    assert code == 0 and json.loads(out)["change"] == "103"
    code, out, _ = run(trace_command, "production@4", "shop", False, server=live_server.url)
    assert code == 0 and "already shipped by 2" in out and "first delivery" in out
    code, out, _ = run(trace_command, "production@5", "shop", False, server=live_server.url)
    assert code == 0 and "shipped no new commits" in out
    # an all-digit commit prefix is tried as a change first, then as a commit
    digits = next(c for c in (sha(f"d{i}") for i in range(2000)) if c[:8].isdigit())
    from .conftest import T0, History

    History(live_server.app.state.chute.db).push(digits, T0, "all digits")
    code, out, _ = run(trace_command, digits[:8], "shop", True, server=live_server.url)
    assert code == 0 and json.loads(out)["commit"] == digits
    code, _, err = run(trace_command, "production@99", "shop", False, server=live_server.url)
    assert code == 1 and "no deployment revision 99" in err and "hint" in err
    code, _, err = run(trace_command, "what?", "shop", False, server=live_server.url)
    assert code == 1 and "cannot tell what" in err


def test_server_unreachable() -> None:
    code, _, err = run(metrics_command, None, None, False, server=f"http://127.0.0.1:{free_port()}")
    assert code == 1 and "cannot reach the chute server" in err
    code, _, err = run(events_export_command, None, None, None, server=f"http://127.0.0.1:{free_port()}")
    assert code == 1 and "cannot reach the chute server" in err


def test_events_export_to_stdout_and_elasticsearch(live_server: LiveServer) -> None:
    h = build_main_history(live_server.app.state.chute.db)
    code, out, err = run(events_export_command, "shop", None, None, server=live_server.url)
    assert code == 0 and err == f"exported {len(h.written)} events\n"
    assert [json.loads(x)["id"] for x in out.splitlines()] == sorted(h.written)
    es = FakeElasticsearch()
    try:
        code, out, err = run(events_export_command, "shop", "2026-03-10", es.url, server=live_server.url,
                             batch_size=7)
        later = [json.loads(x) for x in
                 run(events_export_command, "shop", "2026-03-10", None, server=live_server.url)[1].splitlines()]
        assert code == 0 and es.problems == []
        assert f"exported {len(later)} of {len(later)} events" in out
        assert set(es.docs) == {str(d["id"]) for d in later}
    finally:
        es.close()
    bad = FakeElasticsearch(reject_kind="deploy.finished")
    try:
        code, out, err = run(events_export_command, "shop", None, bad.url, server=live_server.url)
        assert code == 2 and "mapper_parsing_exception" in err and "rejected" in err
    finally:
        bad.close()
