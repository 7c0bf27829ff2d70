"""Blubberoid over HTTP: requests/s and p50/p99 latency of ``POST /v1/production``.

    .venv/bin/python bench/blubberoid_http.py [--duration 15] [--workers 1 2] [--connections 1 16]
                                              [--media yaml|json] [--no-policy]
    .venv/bin/python bench/blubberoid_http.py --in-process

Starts the real service (``chute serve --blubberoid-only --workers N``, with a
policy file loaded at start unless ``--no-policy``) and drives it with ``wrk``
(Debian: ``apt-get install -y wrk``), one wrk thread, for every combination of
workers and connections. Each request carries a distinct body: a run id and a
counter in the value of an env variable (``REQUEST_ID``), so every request,
in every run, is a different config with a different Dockerfile and no cache
of any kind can answer it.
Before the runs, one request is checked for the right Dockerfile; after each
run, wrk's count of non-2xx answers must be zero.

Besides wrk's figures it prints the CPU time the server's processes used per
request (from /proc, all workers together) and how much CPU wrk itself took:
on a shared machine requests/s follows whatever CPU is left over, while CPU
per request is what the code costs (2 cores / CPU per request = the ceiling).
``--in-process`` measures only the app (handler, loader, compiler), called
directly with ASGI messages: the part of that cost which is chute's.

The config is a typical four-variant service (build, test, prep, production;
production copies from prep, prep and test include build), like mathoid's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]

CONFIG = """\
version: v4
base: docker-registry.example/nodejs-slim
apt: { packages: [librsvg2-2] }
lives:
  in: /srv/service
runs:
  environment: { APP_BASE_PATH: /srv/service, REQUEST_ID: "@ID@" }

variants:
  build:
    base: docker-registry.example/nodejs-devel
    copies: [local]
    apt: { packages: [librsvg2-dev, git, pkg-config, build-essential] }
    node: { requirements: [package.json, package-lock.json] }
    runs: { environment: { LINK: g++ } }
  test:
    includes: [build]
    entrypoint: [npm, test]
  prep:
    includes: [build]
    node: { env: production }
  production:
    copies: [prep]
    node: { env: production }
    entrypoint: [node, server.js]
"""

POLICY = """\
enforcements:
  - path: base
    rule: startswith=docker-registry.example/
  - path: variants.production.runs.insecurely
    rule: isfalse
"""

# wrk's Lua: every request gets "<run>-<thread>-<counter>" in REQUEST_ID; done() prints one JSON line.
LUA = r"""
local template = [==[@TEMPLATE@]==]
local counter = 0
local run = ""
tid = 0  -- a global: setup() sets it in each thread's own Lua state
local nthreads = 0
function setup(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
end
function init(args)
  run = args[1] or ""
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "@CTYPE@"
end
function request()
  counter = counter + 1
  local body = template:gsub("@ID@", run .. "-" .. tid .. "-" .. counter)
  return wrk.format(nil, "/v1/production", nil, body)
end
function done(summary, latency, requests)
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d, ' ..
    '"p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def body_template(media: str) -> str:
    if media == "json":
        import yaml

        return json.dumps(yaml.safe_load(CONFIG), indent=1)
    return CONFIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(workers: int, policy: Path | None) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [str(REPO / ".venv" / "bin" / "chute"), "serve", "--blubberoid-only", "--host", "127.0.0.1",
           "--port", str(port), "--workers", str(workers)]
    if policy is not None:
        cmd += ["-p", str(policy)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            httpx.get(url + "/openapi.json", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.2)
    return proc, url


def check(url: str, media: str) -> None:
    ctype = "application/json" if media == "json" else "application/yaml"
    body = body_template(media).replace("@ID@", "check-1")
    r = httpx.post(url + "/v1/production", content=body, headers={"Content-Type": ctype}, timeout=10)
    if r.status_code != 200 or 'REQUEST_ID="check-1"' not in r.text or "AS prep" not in r.text:
        sys.exit(f"unexpected answer {r.status_code}: {r.text[:500]}")


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and all its descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def run_wrk(url: str, lua: Path, connections: int, duration: int, server_pid: int) -> dict[str, float]:
    cpu0 = tree_cpu(server_pid)
    wrk_cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s",
                          "-s", str(lua), url, "--", f"{os.getpid()}.{time.time_ns()}"],
                         capture_output=True, text=True, check=True).stdout
    wrk_cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = tree_cpu(server_pid) - cpu0
    line = next(ln for ln in out.splitlines() if ln.startswith("{"))
    res = json.loads(line)
    if res["non2xx"] or res["socket_errors"]:
        sys.exit(f"wrk saw {res['non2xx']} non-2xx answers and {res['socket_errors']} socket errors:\n{out}")
    res["rps"] = res["requests"] / (res["duration_us"] / 1e6)
    res["server_cpu_us"] = server_cpu / res["requests"] * 1e6
    res["wrk_cpu_share"] = ((wrk_cpu1.ru_utime - wrk_cpu0.ru_utime + wrk_cpu1.ru_stime - wrk_cpu0.ru_stime)
                            / (res["duration_us"] / 1e6))
    return res


def in_process(media: str, policy: Path | None, rounds: int = 7, n: int = 1000) -> tuple[float, float]:
    """CPU µs per request of the ASGI app called directly (no network, no uvicorn): best and median round."""
    import asyncio
    import resource as res

    from chute.server.blubberoid import create_app

    app = create_app(str(policy) if policy else None)
    ctype = b"application/json" if media == "json" else b"application/yaml"
    template = body_template(media)
    bodies = [template.replace("@ID@", f"0-{i}").encode() for i in range(n)]

    async def drive() -> None:
        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)

        for body in bodies:
            scope = {"type": "http", "method": "POST", "path": "/v1/production", "root_path": "",
                     "query_string": b"", "headers": [(b"host", b"bench"), (b"content-type", ctype),
                                                      (b"content-length", str(len(body)).encode())]}
            messages = [{"type": "http.request", "body": body, "more_body": False}]

            async def receive(messages: list = messages) -> dict:
                return messages.pop()

            await app(scope, receive, send)
        assert all(m["status"] == 200 for m in sent if m["type"] == "http.response.start"), sent[:2]

    async def lifespan_and_drive() -> tuple[float, float]:
        async with app.docs.router.lifespan_context(app.docs):  # the service's GC settings
            per_round = []
            for _ in range(rounds):
                t0 = res.getrusage(res.RUSAGE_SELF)
                await drive()
                t1 = res.getrusage(res.RUSAGE_SELF)
                per_round.append((t1.ru_utime - t0.ru_utime + t1.ru_stime - t0.ru_stime) / n * 1e6)
            return min(per_round), statistics.median(per_round)

    return asyncio.run(lifespan_and_drive())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds per run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of load before each server's runs")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--media", choices=["yaml", "json"], default="yaml")
    parser.add_argument("--no-policy", action="store_true", help="start the service without a policy")
    parser.add_argument("--in-process", action="store_true",
                        help="only measure the CPU per request of the app itself, called without a server")
    args = parser.parse_args()
    if args.in_process:
        with tempfile.TemporaryDirectory() as tmp:
            policy = None if args.no_policy else Path(tmp) / "policy.yaml"
            if policy:
                policy.write_text(POLICY)
            print(f"# load average {os.getloadavg()[0]:.1f}; policy {'yes' if policy else 'no'}")
            for media in ("yaml", "json"):
                best, median = in_process(media, policy)
                print(f"{media}: {best:.0f} µs CPU per request (best of 7 rounds of 1,000), median {median:.0f} µs")
        return
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (Debian: apt-get install -y wrk)")

    ctype = "application/json" if args.media == "json" else "application/yaml"
    with tempfile.TemporaryDirectory() as tmp:
        lua = Path(tmp) / "distinct.lua"
        lua.write_text(LUA.replace("@TEMPLATE@", body_template(args.media)).replace("@CTYPE@", ctype))
        policy = None
        if not args.no_policy:
            policy = Path(tmp) / "policy.yaml"
            policy.write_text(POLICY)
        print(f"# {platform.node()} {os.cpu_count()} cpus, Python {platform.python_version()}, "
              f"load average {os.getloadavg()[0]:.1f}; body {args.media}, "
              f"{len(body_template(args.media))} bytes; policy {'yes' if policy else 'no'}; "
              f"{args.duration} s per run")
        print("| workers | connections | requests/s | p50 ms | p99 ms | max ms | requests "
              "| server CPU µs/request | wrk CPU (cores) |")
        print("|---|---|---|---|---|---|---|---|---|")
        for workers in args.workers:
            proc, url = start_server(workers, policy)
            try:
                check(url, args.media)
                if args.warmup:
                    run_wrk(url, lua, 16, args.warmup, proc.pid)
                for conns in args.connections:
                    r = run_wrk(url, lua, conns, args.duration, proc.pid)
                    print(f"| {workers} | {conns} | {r['rps']:,.0f} | {r['p50_us'] / 1000:.2f} | "
                          f"{r['p99_us'] / 1000:.2f} | {r['max_us'] / 1000:.1f} | {r['requests']:,} | "
                          f"{r['server_cpu_us']:.0f} | {r['wrk_cpu_share']:.2f} |", flush=True)
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        print(f"# load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
