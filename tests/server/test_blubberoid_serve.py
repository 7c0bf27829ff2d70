"""``chute serve --blubberoid-only`` as a real process on a real port (uvicorn, httptools, uvloop).

Also what only a real HTTP server shows: the variant in the path is
percent-decoded once (Starlette's TestClient decodes twice), raw malformed
requests, and a clean stop on SIGTERM/SIGINT.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chute.blubber import compile_variant, parse_config

CHUTE = Path(sys.executable).with_name("chute")
CONFIG = """\
version: v4
base: registry.example/debian:bookworm
variants:
  build: {copies: [local]}
  test: {includes: [build], entrypoint: [make, test]}
"""
POLICY = "enforcements:\n  - {path: base, rule: startswith=registry.example/}\n"
YAML = {"Content-Type": "application/yaml"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url

    def post(self, path: str, body: str | bytes = CONFIG, **kw: object) -> httpx.Response:
        return httpx.post(self.url + path, content=body, headers=kw.pop("headers", YAML), timeout=30, **kw)

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        self.proc.send_signal(sig)
        try:
            _, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
            pytest.fail(f"chute serve did not stop within 20 s of signal {sig}: {err}")
        return self.proc.returncode, err


def start(*args: str, workers: int = 1) -> Service:
    port = free_port()
    cmd = [str(CHUTE)] if CHUTE.exists() else [sys.executable, "-m", "chute"]
    proc = subprocess.Popen([*cmd, "serve", "--blubberoid-only", "--host", "127.0.0.1", "--port", str(port),
                             "--workers", str(workers), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={k: v for k, v in os.environ.items() if k != "CHUTE_BLUBBER_POLICY"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"chute serve exited with {proc.returncode}: {out}{err}")
        try:
            httpx.get(url + "/openapi.json", timeout=2)
            return Service(proc, url)
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"chute serve did not answer on {url} within 60 s")
            time.sleep(0.2)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    policy = tmp_path_factory.mktemp("policy") / "policy.yaml"
    policy.write_text(POLICY)
    svc = start("-p", str(policy))
    yield svc
    code, err = svc.stop(signal.SIGINT)
    assert code == 0, err
    assert "Traceback" not in err, err


def test_serve_blubberoid_only_answers_and_stops_cleanly() -> None:
    svc = start()
    try:
        r = svc.post("/v1/test")
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/plain; charset=utf-8"
        assert r.text == compile_variant(parse_config(CONFIG, "request body"), "test")
        assert svc.post("/v1/nope").status_code == 422
        assert "/v1/{variant}" in httpx.get(svc.url + "/openapi.json").json()["paths"]
    finally:
        code, err = svc.stop()
    # uvicorn shuts down gracefully, then re-raises SIGTERM so that the exit status says what ended it.
    assert code in (0, -signal.SIGTERM), err
    assert "Traceback" not in err, err
    with socket.socket() as s:  # the port is free again
        s.bind(("127.0.0.1", int(svc.url.rpartition(":")[2])))


def test_serve_with_two_workers_and_a_policy(service: Service, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    svc = start("-p", str(policy), workers=2)
    try:
        assert all(svc.post("/v1/test").status_code == 200 for _ in range(10))
        r = svc.post("/v1/test", CONFIG.replace("registry.example/", "docker.io/"))
        assert r.status_code == 422 and "fails policy check" in r.text
    finally:
        code, err = svc.stop()
    assert code in (0, -signal.SIGTERM), err
    assert "Traceback" not in err, err


def test_serve_refuses_a_policy_it_cannot_load(tmp_path: Path) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text("enforcements:\n  - {path: variants.x.runs.insecurly, rule: isfalse}\n")
    cmd = [str(CHUTE)] if CHUTE.exists() else [sys.executable, "-m", "chute"]
    for workers in ("1", "2"):  # with 2, a failing worker would otherwise be restarted forever
        proc = subprocess.run([*cmd, "serve", "--blubberoid-only", "--port", str(free_port()), "--workers", workers,
                               "-p", str(bad)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 5, proc.stderr
        assert "did you mean 'insecurely'" in proc.stderr and "Traceback" not in proc.stderr


def test_blubberoid_variant_is_decoded_once(service: Service) -> None:
    """Go's Blubberoid percent-decoded the variant a second time; chute decodes the path once."""
    r = service.post("/v1/%74est")  # the one decoding every HTTP server does
    assert r.status_code == 200 and 'blubber.variant="test"' in r.text
    r = service.post("/v1/te%2573t")  # Go: variant "test"
    assert r.status_code == 422 and "variant 'te%73t' does not exist" in r.text
    r = service.post("/v1/te%25zz")  # Go: 500 with an empty body
    assert r.status_code == 422 and "variant 'te%zz' does not exist" in r.text
    assert service.post("/v1/te%2Fst").status_code == 404  # an encoded slash is a second path segment


def test_raw_malformed_requests_get_4xx(service: Service) -> None:
    host, port = service.url.removeprefix("http://").split(":")
    requests = [
        b"POST /v1/\xff\xfe HTTP/1.1\r\nHost: x\r\nContent-Type: application/yaml\r\nContent-Length: 2\r\n\r\n{}",
        b"POST /v1/test HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        b"POST /v1/test HTTP/1.1\r\nHost: x\r\nContent-Type: application/yaml\r\nContent-Length: 5\r\n\r\n"
        b"\x00\x01\x02\x03\x04",
        b"POST /v1/test HTTP/1.1\r\nHost: x\r\nContent-Type: \xff\xfe\r\nContent-Length: 2\r\n\r\n{}",
        b"GARBAGE\r\n\r\n",
    ]
    for raw in requests:
        with socket.create_connection((host, int(port)), timeout=30) as s:
            s.sendall(raw)
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = s.recv(65536)
                if not chunk:
                    break
                answer += chunk
        status = int(answer.split(b" ", 2)[1])
        assert 400 <= status < 500, (raw, answer)
    assert service.post("/v1/test").status_code == 200  # and the service still works
