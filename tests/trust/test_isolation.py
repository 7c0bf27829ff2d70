"""Run containers for real (podman): no privileges, mounts or engine socket; limits; no way to this machine's ports."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from chute.engine import Limits, PodmanEngine
from chute.engine.base import ALL_CAPABILITIES, RUN_CAPABILITIES
from chute.engine.isolation import NETWORK, TABLE

pytestmark = [pytest.mark.podman]

DEBIAN = "localhost/debian:bookworm"
BUSYBOX = "localhost/busybox:stable"
LABELS = {"chute.test": "1", "chute.test.trust": "isolation"}


@pytest.fixture(scope="module")
def engine() -> Iterator[PodmanEngine]:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (.ci/run installs it)")
    os.environ.setdefault("CONTAINERS_CONF", "/etc/chute/containers.conf")
    for image in (DEBIAN, BUSYBOX):
        if subprocess.run(["podman", "image", "exists", image]).returncode != 0:
            pytest.fail(f"base image {image} is missing: run bash -c '. scripts/lib.sh; configure_podman; "
                        "make_base_images' (or .ci/run)")
    yield PodmanEngine()
    left = subprocess.run(["podman", "ps", "-aq", "--filter", "label=chute.test.trust=isolation"],
                          capture_output=True, text=True).stdout.split()
    if left:
        subprocess.run(["podman", "rm", "-f", *left], capture_output=True)


def run(engine: PodmanEngine, script: str, image: str = DEBIAN, **kw) -> tuple[object, str]:
    lines: list[str] = []
    kw.setdefault("timeout", 60)
    res = engine.run(image, args=["sh", "-c", script], labels=LABELS, keep=False, log=lines.append, **kw)
    return res, "\n".join(lines)


def _cap_mask(names: tuple[str, ...]) -> int:
    numbers = {"CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "FSETID": 4, "KILL": 5, "SETGID": 6, "SETUID": 7,
               "NET_BIND_SERVICE": 10}
    return sum(1 << numbers[n] for n in names)


def test_a_run_container_has_no_privileges_no_host_mounts_and_no_engine_socket(engine, tmp_path: Path) -> None:
    script = r"""
grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status
mount -t tmpfs none /mnt 2>/dev/null && echo MOUNT=yes || echo MOUNT=no
for s in /run/podman/podman.sock /var/run/docker.sock /run/docker.sock /var/run/podman/podman.sock; do
  [ -e "$s" ] && echo "SOCKET=$s"
done
awk '{print "MP=" $5}' /proc/self/mountinfo
"""
    res, out = run(engine, script)
    assert res.exit_code == 0, out
    fields = dict(line.split(":\t") for line in out.splitlines() if ":\t" in line)
    # root in the container keeps only the listed capabilities, and nothing can be gained.
    assert int(fields["CapEff"], 16) == _cap_mask(RUN_CAPABILITIES)
    assert int(fields["CapBnd"], 16) == _cap_mask(RUN_CAPABILITIES)
    assert fields["NoNewPrivs"] == "1" and fields["Seccomp"] == "2"
    assert "MOUNT=no" in out and "SOCKET=" not in out
    mounts = {line[3:] for line in out.splitlines() if line.startswith("MP=")}
    outside = {m for m in mounts if not m.startswith(("/proc", "/sys", "/dev"))}
    # Only the container's own root and the files podman writes for it (hosts, resolver, hostname).
    # (/run/podman-init is the read-only init binary of --init.)
    assert outside <= {"/", "/etc/hosts", "/etc/resolv.conf", "/etc/hostname", "/run/.containerenv",
                       "/run/podman-init"}, outside
    assert len(ALL_CAPABILITIES) > len(RUN_CAPABILITIES)

    # An image that runs as its own unprivileged user (as Blubber's do) has no capabilities at all.
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    built = engine.build(f"FROM {BUSYBOX}\nUSER 65534:65534\n", ctx, labels=LABELS)
    try:
        res, out = run(engine, "grep -E '^CapEff:' /proc/self/status; id -u", image=built.image_id)
        assert "CapEff:\t0000000000000000" in out and out.strip().endswith("65534")
    finally:
        engine.remove_images([built.image_id])


def test_memory_processes_and_time_are_limited_per_step(engine) -> None:
    # tail holds an unfinished line in memory: 20 MB fits in 48m, 400 MB does not and gets killed (SIGKILL).
    hog = "bash -c 'head -c {n} /dev/zero | tail >/dev/null; echo status=${{PIPESTATUS[1]}}'"
    _, out = run(engine, hog.format(n=20_000_000), limits=Limits(memory="48m"))
    assert "status=0" in out, out
    _, out = run(engine, hog.format(n=400_000_000), limits=Limits(memory="48m"))
    assert "status=137" in out, out

    # Each background job says it started; with 24 processes at most, the shell cannot fork a 60th.
    fork = "i=0; while [ $i -lt 60 ]; do (echo started $i; sleep 3) & i=$((i+1)); done; wait"
    _, out = run(engine, fork, image=BUSYBOX, limits=Limits(pids=24), timeout=30)
    started = [line for line in out.splitlines() if line.startswith("started ")]
    assert 5 <= len(started) < 24 and "can't fork" in out, out
    _, out = run(engine, fork.replace("sleep 10", "sleep 1"), image=BUSYBOX, timeout=30)  # no limit: all 60
    assert len([line for line in out.splitlines() if line.startswith("started ")]) == 60, out

    res, out = run(engine, "sleep 60", image=BUSYBOX, timeout=2)
    assert res.timed_out and res.duration < 20


@pytest.fixture
def listener() -> Iterator[int]:
    yield from _listen()


@pytest.fixture
def second_listener() -> Iterator[int]:
    yield from _listen()


def _listen() -> Iterator[int]:
    """A TCP server on 0.0.0.0 (as a chute server may listen) that answers "hello"."""
    srv = socket.create_server(("0.0.0.0", 0))
    srv.settimeout(0.5)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"hello\n")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join(5)
    srv.close()


def _host_ip() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.123", 9))  # UDP connect sends nothing; it picks the outgoing address
        return s.getsockname()[0]


def _gateway() -> str:
    out = subprocess.run(["podman", "network", "inspect", NETWORK], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[0]["subnets"][0]["gateway"]


PROBE = "for a in {addrs}; do timeout 5 bash -c \"exec 3<>/dev/tcp/$a/{port} && head -1 <&3\" " \
        ">/dev/null 2>&1 && echo \"OPEN $a\" || echo \"SHUT $a\"; done"


def test_the_isolated_network_blocks_this_machines_ports_unless_allowed(engine, listener: int,
                                                                       second_listener: int) -> None:
    if os.geteuid() != 0 or not shutil.which("nft"):
        pytest.skip("the isolated network needs root and nftables (.ci/run runs as root with nft installed)")
    host = _host_ip()
    res, out = run(engine, "true", network="isolated")
    assert res.exit_code == 0, out
    gateway = _gateway()
    rules = subprocess.run(["nft", "list", "table", "inet", TABLE], capture_output=True, text=True).stdout
    assert "reject with icmpx admin-prohibited" in rules
    probe = PROBE.format(addrs=f"{host} {gateway}", port=listener)

    # The engine's default bridge reaches the host: this is what isolation takes away.
    _, out = run(engine, PROBE.format(addrs=host, port=listener), network="default")
    assert f"OPEN {host}" in out, out
    _, out = run(engine, probe, network="isolated")
    assert f"SHUT {host}" in out and f"SHUT {gateway}" in out, out
    # Configured: one port of the host is reachable, still nothing else.
    allowed = PodmanEngine(environ={**os.environ, "CHUTE_RUN_ALLOW_HOST_PORTS": f"1,{listener}"})
    _, out = run(allowed, probe + f"; {PROBE.format(addrs=host, port=second_listener)}", network="isolated")
    assert f"OPEN {host}" in out and f"OPEN {gateway}" in out and out.count("OPEN") == 2, out
    # Rules back to no exceptions for the next runs.
    run(engine, "true", network="isolated")
    _, out = run(engine, probe, network="isolated")
    assert "OPEN" not in out, out


def test_the_isolated_network_keeps_outbound_traffic_and_none_has_no_network(engine) -> None:
    if os.geteuid() != 0 or not shutil.which("nft"):
        pytest.skip("the isolated network needs root and nftables (.ci/run runs as root with nft installed)")
    try:
        socket.create_connection(("deb.debian.org", 80), timeout=5).close()
    except OSError:
        pytest.skip("this machine cannot reach deb.debian.org:80 itself")
    probe = PROBE.format(addrs="deb.debian.org", port=80).replace("head -1 <&3", "true")
    _, out = run(engine, probe, network="isolated")
    assert "OPEN deb.debian.org" in out, out
    _, out = run(engine, probe + "; ls /sys/class/net", network="none")
    assert "SHUT deb.debian.org" in out and out.split()[-1] == "lo", out


def test_without_firewall_rights_a_step_gets_no_network_rather_than_an_open_one(engine, monkeypatch) -> None:
    import chute.engine.isolation as isolation

    def refuse(*_a, **_k):
        raise isolation.IsolationUnavailable("the isolated network needs root (nftables rules); this process is "
                                             "not root")

    monkeypatch.setattr(isolation, "ensure_isolated", refuse)
    res, out = run(engine, "ls /sys/class/net", image=BUSYBOX, network="isolated")
    assert res.exit_code == 0
    assert "running with no network at all" in out and out.strip().splitlines()[-1] == "lo", out


def test_a_multi_line_env_value_never_appears_on_this_machines_command_lines(engine) -> None:
    """A PEM key given `as: env` cannot go in the env file (no line breaks there): not on argv either,
    where every user of the machine reads it in /proc/*/cmdline while the step runs."""
    import hashlib

    value = "-----BEGIN TEST KEY-----\nbXVsdGktbGluZS1zZWNyZXQ\n-----END TEST KEY-----"
    needle = b"bXVsdGktbGluZS1zZWNyZXQ"
    seen: list[str] = []
    done = threading.Event()

    def scan() -> None:
        while not done.is_set():
            for proc in Path("/proc").iterdir():
                try:
                    if proc.name.isdigit() and needle in (proc / "cmdline").read_bytes():
                        seen.append(proc.name)
                except OSError:
                    pass

    watcher = threading.Thread(target=scan, daemon=True)
    watcher.start()
    try:
        res, out = run(engine, 'printf %s "$PEM_KEY" | sha256sum; sleep 2', env={"PEM_KEY": value, "ONE": "line"})
    finally:
        done.set()
        watcher.join(10)
    assert res.exit_code == 0, out
    assert hashlib.sha256(value.encode()).hexdigest() in out  # the step got the value, line breaks included
    assert seen == []
