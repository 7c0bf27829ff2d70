"""Health gates against real HTTP servers and a real Prometheus."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from chute.deploy import HealthGate, HealthPolicy, PrometheusCheck
from chute.deploy.health import FATAL, PASS, WAIT, Check


class Scripted:
    """An HTTP server whose /healthz answers the next status from a list (the last one repeats)."""

    def __init__(self, statuses: list[int], port: int | None = None) -> None:
        self.statuses = list(statuses)
        self.hits = 0
        self.value = 0.0  # for /metrics
        outer = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if self.path == "/metrics":
                    body = f"# TYPE app_errors gauge\napp_errors {outer.value}\n".encode()
                    code = 200
                else:
                    outer.hits += 1
                    code = outer.statuses.pop(0) if len(outer.statuses) > 1 else outer.statuses[0]
                    body = b"x"
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", port or 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def policy(**kw) -> HealthPolicy:
    base = {"within": 5.0, "stable_for": 1.0, "interval": 0.05, "timeout": 1.0, "failure_threshold": 3}
    base.update(kw)
    return HealthPolicy(**base)


def test_waits_through_refused_connections_then_passes():
    port = free_port()
    late: list[Scripted] = []
    with HealthGate(policy(success_threshold=2), http_url=f"http://127.0.0.1:{port}/healthz") as gate:
        threading.Timer(0.4, lambda: late.append(Scripted([200], port))).start()
        verdict = gate.until_healthy()
    late[0].close()
    assert verdict.healthy, verdict
    assert verdict.elapsed >= 0.35 and verdict.ticks >= 5  # refused connections did not count as failures
    assert late[0].hits == 2  # success_threshold passes in a row


def test_bad_status_fails_early_not_at_the_deadline():
    srv = Scripted([500])
    with HealthGate(policy(within=30.0), http_url=f"http://127.0.0.1:{srv.port}/healthz") as gate:
        verdict = gate.until_healthy()
    srv.close()
    assert not verdict.healthy and verdict.elapsed < 2
    assert srv.hits == 3 and "500, expected 200" in verdict.reason


def test_expect_and_a_pass_resets_the_failure_run():
    srv = Scripted([503, 503, 204, 503, 503, 204])
    with HealthGate(
        policy(expect=(204,), success_threshold=2), http_url=f"http://127.0.0.1:{srv.port}/"
    ) as g:
        verdict = g.until_healthy()
    srv.close()
    assert verdict.healthy and srv.hits == 7  # 204 then 204 again (the last one repeats)


def test_deadline_when_nothing_answers():
    port = free_port()
    with HealthGate(policy(within=0.6), http_url=f"http://127.0.0.1:{port}/healthz") as gate:
        verdict = gate.until_healthy()
    assert not verdict.healthy and "not healthy within 0.6s" in verdict.reason
    assert "ConnectError" in verdict.reason


def test_container_stopping_ends_the_gate_at_once():
    calls = []

    def container() -> Check:
        calls.append(1)
        return Check(WAIT, "starting") if len(calls) < 3 else Check(FATAL, "container exited (exit code 3)")

    with HealthGate(policy(within=30.0), http_url=None, container=container) as gate:
        verdict = gate.until_healthy()
    assert not verdict.healthy and "exit code 3" in verdict.reason and len(calls) == 3


def test_stable_phase_tolerates_a_blip_but_not_a_run_of_failures():
    srv = Scripted([200, 500, 200, 200])  # one failure, then fine
    with HealthGate(
        policy(stable_for=0.5),
        http_url=f"http://127.0.0.1:{srv.port}/healthz",
        container=lambda: Check(PASS, "running"),
    ) as gate:
        ok = gate.stays_healthy()
    srv.statuses = [500]
    with HealthGate(policy(stable_for=5.0), http_url=f"http://127.0.0.1:{srv.port}/healthz") as gate:
        bad = gate.stays_healthy()
    srv.close()
    assert ok.healthy and ok.elapsed >= 0.5
    assert not bad.healthy and bad.phase == "stable" and bad.elapsed < 2


def test_refused_connection_is_a_failure_once_serving():
    port = free_port()
    with HealthGate(policy(stable_for=5.0), http_url=f"http://127.0.0.1:{port}/healthz") as gate:
        verdict = gate.stays_healthy()
    assert not verdict.healthy and verdict.elapsed < 2


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus is not installed: run .ci/run")
def test_prometheus_query_against_a_threshold(tmp_path):
    app = Scripted([200])
    prom_port = free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs:\n  - job_name: app\n    static_configs: [{{targets: ['127.0.0.1:{app.port}']}}]\n"
    )
    with open(tmp_path / "prom.log", "wb") as log:
        proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=log,
            stderr=log,
        )
    url = f"http://127.0.0.1:{prom_port}"
    try:
        check = PrometheusCheck(url=url, query='max(app_errors{job="app"})', max=0.5)
        gate = HealthGate(policy(within=25.0, interval=0.5, prometheus=check), http_url=None)
        # The first sample takes about 6 s (notes/machine.md §8): no data means "wait", not "fail".
        first = gate.until_healthy()
        assert first.healthy, first
        assert first.elapsed > 1.0, "the gate passed before Prometheus had any sample"
        app.value = 3.0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # wait until Prometheus has scraped the new value
            r = httpx.get(f"{url}/api/v1/query", params={"query": "max(app_errors)"}).json()
            if r["data"]["result"] and float(r["data"]["result"][0]["value"][1]) == 3.0:
                break
            time.sleep(0.3)
        second = gate.stays_healthy(5.0)
        gate.close()
        assert not second.healthy and "= 3 > max 0.5" in second.reason
    finally:
        proc.terminate()
        proc.wait(10)
        app.close()
