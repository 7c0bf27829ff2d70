"""chute.engine against real podman, a real registry, and (once) the real HTTPS proxy.

Every container these tests start carries ``chute.test=1`` and a per-session
label, and is removed at the end; the last test checks nothing is left.
"""

from __future__ import annotations

import _thread
import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
from engine_support import (
    build_containers_with_label,
    free_port,
    manifest_head,
    podman,
    podman_env,
    start_registry,
    stop_process,
)

from chute.engine import (
    CA_PATH_IN_CONTAINER,
    RUN_CAPABILITIES,
    BuildError,
    CopyError,
    EngineMisconfigured,
    ImageNotFound,
    Limits,
    OperationCancelled,
    OperationTimedOut,
    PodmanEngine,
    PushError,
    RunError,
    detect_engine,
)

pytestmark = pytest.mark.podman

if shutil.which("podman") is None:
    pytest.skip(
        "podman is not installed: run .ci/run (it installs podman, buildah and runc)", allow_module_level=True
    )

SESSION = uuid.uuid4().hex[:10]
LABELS = {"chute.test": "1", "chute.test.engine": SESSION}
BUSYBOX = "localhost/busybox:stable"
DEBIAN = "localhost/debian:bookworm"

# Bit numbers from linux/capability.h, to check the effective set inside a container.
CAP_BITS = {
    "CHOWN": 0,
    "DAC_OVERRIDE": 1,
    "FOWNER": 3,
    "FSETID": 4,
    "KILL": 5,
    "SETGID": 6,
    "SETUID": 7,
    "NET_BIND_SERVICE": 10,
}


class Collector:
    """A log callback that remembers every line (and can act when a line appears)."""

    def __init__(self, when: str | None = None, then: threading.Event | None = None) -> None:
        self.lines: list[str] = []
        self.when, self.then = when, then
        self.on_match = None

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        if self.when and self.when in line:
            if self.then is not None:
                self.then.set()
            if self.on_match is not None:
                self.on_match()

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture(scope="session")
def engine() -> PodmanEngine:
    for image in (BUSYBOX, DEBIAN):
        if podman("image", "exists", image, check=False).returncode != 0:
            pytest.fail(
                f"base image {image} is missing: run "
                "bash -c '. scripts/lib.sh; configure_podman; make_base_images' (or .ci/run)"
            )
    return PodmanEngine()


@pytest.fixture(scope="session")
def created():
    """Names and image IDs to remove at the end of the session."""
    made: dict[str, list[str]] = {"containers": [], "images": []}
    yield made
    engine = PodmanEngine()
    engine.remove_containers(made["containers"])
    engine.remove_images(made["images"])


@pytest.fixture(scope="session")
def registry_url(tmp_path_factory):
    url = os.environ.get("CHUTE_TEST_REGISTRY")
    if url:
        yield url.rstrip("/")
        return
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed: run .ci/run (apt-get install docker-registry)")
    url, proc = start_registry(tmp_path_factory.mktemp("registry"))
    yield url
    stop_process(proc)


@pytest.fixture(scope="session")
def small_image(engine, created, tmp_path_factory) -> str:
    """An image of our own to tag and push (pushing the base image would leave tags on it)."""
    built = engine.build(
        f"FROM {BUSYBOX}\nLABEL chute.test.small={SESSION}\n", tmp_path_factory.mktemp("ctx"), labels=LABELS
    )
    created["images"].append(built.image_id)  # removing it by ID drops every tag pushes added
    return built.image_id


@pytest.fixture()
def context(tmp_path: Path) -> Path:
    ctx = tmp_path / "context"
    ctx.mkdir()
    (ctx / "app.txt").write_text("app\n")
    (ctx / "secret.txt").write_text("do not ship\n")
    return ctx


def run_in(engine: PodmanEngine, created, image: str, script: str, **kwargs):
    log = Collector()
    result = engine.run(image, args=["sh", "-c", script], labels=LABELS, log=log, **kwargs)
    created["containers"].append(result.container_name)
    return result, log


# --------------------------------------------------------------------------- detection


def test_detect_engine_picks_working_podman():
    engine = detect_engine()
    assert engine.name == "podman"
    assert engine.environ["CONTAINERS_CONF"]  # the known-good file, from the env or /etc/chute
    assert engine.version().startswith("4.")


# --------------------------------------------------------------------------- build


DOCKERFILE = f"""\
# syntax=docker/dockerfile:1
FROM {BUSYBOX} AS base
RUN echo base > /base.txt

FROM base AS app
USER 65534:65534
WORKDIR /srv
ENV GREETING=hello SPACED="two words"
COPY app.txt /srv/app.txt
EXPOSE 8080/tcp 9090
HEALTHCHECK --interval=5s --timeout=2s --retries=3 CMD wget -q -O /dev/null http://127.0.0.1:8080/ || exit 1
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /srv/app.txt"]

FROM app AS later
LABEL stage=later
RUN echo later > /srv/later.txt
"""


def test_build_target_stage_with_labels_and_inspect(engine, created, context):
    log = Collector()
    tag = f"localhost/chute-test-engine:{SESSION}"
    result = engine.build(
        DOCKERFILE, context, target="app", tags=[tag], labels={**LABELS, "org.example.v": "1 2"}, log=log
    )
    created["images"].append(result.image_id)
    assert len(result.image_id) == 64 and result.steps > 5
    assert "STEP" in log.text and "RUN echo later" not in log.text  # the later stage was not built

    info = engine.inspect_image(tag)
    assert info.id == result.image_id
    assert info.labels["org.example.v"] == "1 2" and info.labels["chute.test"] == "1"
    assert "stage" not in info.labels
    assert info.user == "65534:65534" and info.workdir == "/srv"
    assert info.env["GREETING"] == "hello" and info.env["SPACED"] == "two words"
    assert info.entrypoint == ("/bin/sh", "-c") and info.cmd == ("cat /srv/app.txt",)
    assert info.exposed_ports == ("8080/tcp", "9090/tcp")
    # --format docker keeps HEALTHCHECK (OCI image configs have no place for it).
    assert info.healthcheck is not None
    assert info.healthcheck.test[0] == "CMD-SHELL" and "wget" in info.healthcheck.test[1]
    assert (info.healthcheck.interval, info.healthcheck.timeout, info.healthcheck.retries) == (5.0, 2.0, 3)
    assert tag in info.repo_tags
    # The CA bundle paths reached RUN steps as build args: never as image ENV.
    assert not set(info.env) & {"PIP_CERT", "NODE_EXTRA_CA_CERTS"}
    assert engine.image_exists(tag) and engine.image_exists(result.image_id)

    # args follow the image's ENTRYPOINT (sh -c), as with docker run
    out = Collector()
    script = "id -u; pwd; cat /srv/app.txt /base.txt; ls /srv; grep CapEff /proc/self/status"
    run = engine.run(result.image_id, args=[script], labels=LABELS, log=out)
    created["containers"].append(run.container_name)
    assert run.exit_code == 0
    assert out.lines[:4] == ["65534", "/srv", "app", "base"]
    assert "later.txt" not in out.text
    assert "CapEff:\t0000000000000000" in out.lines  # the image's non-root user has no capabilities


def test_second_build_uses_the_layer_cache(engine, created, context):
    dockerfile = f"FROM {BUSYBOX}\nRUN echo {uuid.uuid4().hex} > /id && sleep 1\nCOPY app.txt /app.txt\n"
    first = engine.build(dockerfile, context, labels=LABELS)
    log = Collector()
    second = engine.build(dockerfile, context, labels=LABELS, log=log)
    created["images"].append(first.image_id)
    assert second.image_id == first.image_id
    assert "Using cache" in log.text
    assert second.cached_steps >= 2 and first.cached_steps < second.cached_steps


def test_build_error_names_the_failing_step_and_its_output(engine, context):
    dockerfile = (
        f"FROM {BUSYBOX}\nRUN echo fine\n"
        "RUN echo before-the-failure && echo 'it broke' >&2 && exit 7\n"
        "RUN echo never\n"
    )
    with pytest.raises(BuildError) as info:
        engine.build(dockerfile, context, labels=LABELS)
    err = info.value
    assert "RUN echo before-the-failure" in (err.step or "")
    assert "before-the-failure" in err.output and "it broke" in err.output
    text = str(err)
    assert "failing step:" in text and "it broke" in text
    assert "exited with status 7" in text  # the hint
    assert "never" not in err.output


def test_build_error_for_a_missing_copy_source(engine, context):
    with pytest.raises(BuildError) as info:
        engine.build(f"FROM {BUSYBOX}\nCOPY nope.txt /nope.txt\n", context, labels=LABELS)
    assert "COPY nope.txt" in (info.value.step or "") or "COPY nope.txt" in str(info.value)
    assert "build context" in str(info.value)


def test_ignore_patterns_and_dockerfile_outside_the_context(engine, created, context):
    (context / ".dockerignore").write_text("app.txt\n")  # replaced by ignore_patterns
    result = engine.build(
        f"FROM {BUSYBOX}\nCOPY . /ctx/\nRUN ls -a /ctx\n",
        context,
        labels=LABELS,
        ignore_patterns=["secret.txt"],
    )
    created["images"].append(result.image_id)
    _run, out = run_in(engine, created, result.image_id, "ls -A /ctx")
    assert sorted(out.lines) == [".dockerignore", "app.txt"]  # no secret.txt, no Dockerfile


def test_bad_pull_policy_and_missing_context_are_usage_errors(engine, tmp_path):
    from chute.engine import EngineUsageError

    with pytest.raises(EngineUsageError, match="pull policy"):
        engine.build(f"FROM {BUSYBOX}\n", tmp_path, pull="sometimes")
    with pytest.raises(EngineUsageError, match="not a directory"):
        engine.build(f"FROM {BUSYBOX}\n", tmp_path / "missing")


@pytest.mark.parametrize("how", ["cancel", "timeout", "ctrl-c"])
def test_stopped_build_leaves_no_container_or_process(engine, created, context, how):
    unique = uuid.uuid4().hex
    # A base image of our own, so leftovers can be told apart from other builds on the machine.
    base = engine.build(f"FROM {BUSYBOX}\nLABEL chute.test.cancel={unique}\n", context, labels=LABELS)
    created["images"].append(base.image_id)
    seconds = f"{40 + int(unique[:4], 16) % 1000 / 1000:.3f}"  # a sleep no one else runs
    dockerfile = f"FROM {base.image_id}\nRUN echo started-{unique} && sleep {seconds}\n"
    cancel = threading.Event()
    log = Collector(when=f"started-{unique}", then=cancel if how == "cancel" else None)
    expected = {"cancel": OperationCancelled, "timeout": OperationTimedOut, "ctrl-c": KeyboardInterrupt}[how]
    if how == "ctrl-c":
        log.on_match = _thread.interrupt_main
    start = time.monotonic()
    with pytest.raises(expected):
        engine.build(dockerfile, context, log=log, cancel=cancel, timeout=4 if how == "timeout" else None)
    assert time.monotonic() - start < 30
    assert f"started-{unique}" in log.text
    ps = subprocess.run(["pgrep", "-f", f"sleep {seconds}"], capture_output=True, text=True)
    assert ps.stdout.strip() == "", "the RUN step's process survived"
    assert build_containers_with_label("chute.test.cancel", unique) == []


# --------------------------------------------------------------------------- run


def test_run_passes_args_and_env_verbatim_and_streams_output(engine, created):
    env = {
        "PLAIN": "value",
        "TRICKY": "$HOME `id` \"q\" 'q' ; rm -rf / # trailing  ",
        "EMPTY": "",
        "MULTI": "line one\nline two",
        "UNICODE": "héllo ☃",
    }
    script = (
        'printf "[%s]\\n" "$PLAIN" "$TRICKY" "$EMPTY" "$MULTI" "$UNICODE" "$1" "$2"; '
        "echo to-stderr >&2; exit 3"
    )
    log = Collector()
    result = engine.run(
        BUSYBOX,
        args=["sh", "-c", script, "sh", "arg with spaces", "$(not expanded)"],
        env=env,
        labels=LABELS,
        log=log,
    )
    created["containers"].append(result.container_name)
    assert result.exit_code == 3 and not result.ok
    assert log.lines[:8] == [
        "[value]",
        "[$HOME `id` \"q\" 'q' ; rm -rf / # trailing  ]",
        "[]",
        "[line one",
        "line two]",
        "[héllo ☃]",
        "[arg with spaces]",
        "[$(not expanded)]",
    ]
    assert "to-stderr" in log.lines
    assert result.tail_lines[-1] == "to-stderr"
    info = engine.inspect_container(result.container_name)
    assert info.status == "exited" and info.exit_code == 3
    assert info.labels["chute.test.engine"] == SESSION and info.labels["chute.managed"] == "1"


def test_run_exit_zero_and_keep_false_removes_the_container(engine):
    result = engine.run(BUSYBOX, args=["true"], labels=LABELS, keep=False)
    assert result.exit_code == 0 and result.ok and result.removed
    assert podman("container", "exists", result.container_name, check=False).returncode == 1


def test_run_timeout_stops_but_keeps_the_container(engine, created):
    log = Collector()
    result = engine.run(BUSYBOX, args=["sh", "-c", "echo up; sleep 60"], labels=LABELS, timeout=2, log=log)
    created["containers"].append(result.container_name)
    assert result.timed_out and not result.cancelled and not result.ok
    assert result.exit_code in (137, 143)
    info = engine.inspect_container(result.container_name)
    assert info.status == "exited" and not info.running
    assert "up" in log.lines


def test_run_cancel_removes_the_container(engine):
    marker = uuid.uuid4().hex
    cancel = threading.Event()
    log = Collector(when=f"running-{marker}", then=cancel)
    result = engine.run(
        BUSYBOX,
        args=["sh", "-c", f"echo running-{marker}; sleep 60"],
        labels={**LABELS, "chute.test.cancel": marker},
        cancel=cancel,
        log=log,
        keep=True,
    )
    assert result.cancelled and result.removed and result.exit_code is None
    left = podman("ps", "-a", "-q", "--filter", f"label=chute.test.cancel={marker}").stdout.strip()
    assert left == ""


def test_ctrl_c_during_run_removes_the_container(engine):
    marker = uuid.uuid4().hex

    def interrupt_when_running(line: str) -> None:
        if f"running-{marker}" in line:
            _thread.interrupt_main()

    with pytest.raises(KeyboardInterrupt):
        engine.run(
            BUSYBOX,
            args=["sh", "-c", f"echo running-{marker}; sleep 60"],
            labels={**LABELS, "chute.test.cancel": marker},
            log=interrupt_when_running,
        )
    left = podman("ps", "-a", "-q", "--filter", f"label=chute.test.cancel={marker}").stdout.strip()
    assert left == ""


def test_run_is_isolated(engine, created):
    script = (
        "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; "
        "tr '\\0' ' ' < /proc/1/cmdline; echo; "
        "if mount -t tmpfs none /mnt 2>/dev/null; then echo MOUNT-ALLOWED; else echo mount-denied; fi; "
        "for s in /run/podman/podman.sock /var/run/docker.sock /run/docker.sock; do "
        "[ -e $s ] && echo SOCKET $s; done; "
        "cat /proc/self/mountinfo; ls /sys/class/net"
    )
    result, log = run_in(engine, created, BUSYBOX, script, network="none")
    assert result.exit_code == 0, log.text
    status = dict(
        line.split(":\t", 1) for line in log.lines if line.startswith(("CapEff", "NoNewPrivs", "Seccomp"))
    )
    expected = sum(1 << CAP_BITS[cap] for cap in RUN_CAPABILITIES)
    assert int(status["CapEff"], 16) == expected  # root in the container, yet only these capabilities
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"  # the engine's seccomp filter is on
    pid1 = next(line for line in log.lines if "-- sh -c" in line)
    assert pid1.startswith("/run/podman-init -- ")  # --init: PID 1 is catatonit, not the command
    assert "mount-denied" in log.lines and "MOUNT-ALLOWED" not in log.lines
    assert not [line for line in log.lines if line.startswith("SOCKET ")]
    mounts = [line for line in log.lines if " - " in line]
    # No host directory is bind-mounted: mounts are the overlay root, proc/sys/dev/tmpfs, and
    # the files podman itself provides (/etc/hosts, /etc/resolv.conf, /etc/hostname, /run/.containerenv)
    # and the init binary (read-only).
    allowed_targets = {
        "/etc/hosts",
        "/etc/resolv.conf",
        "/etc/hostname",
        "/run/.containerenv",
        "/run/podman-init",
    }
    for line in mounts:
        fields = line.split()
        target = fields[4]
        fstype = line.split(" - ", 1)[1].split()[0]
        if fstype in ("overlay", "proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "shm"):
            continue
        assert target in allowed_targets, f"unexpected mount {line}"
    assert CA_PATH_IN_CONTAINER not in "\n".join(mounts)
    assert [n for n in log.lines if n == "lo"] == ["lo"] and "eth0" not in log.lines
    assert engine.inspect_container(result.container_name).privileged is False


def test_run_with_ca_bundle_mounts_it_read_only(engine, created):
    if engine.ca_bundle is None:
        pytest.skip("no CA bundle on this machine (CHUTE_BUILD_CA_BUNDLE empty or no host bundle)")
    script = (
        "echo PIP_CERT=$PIP_CERT NODE_EXTRA_CA_CERTS=$NODE_EXTRA_CA_CERTS; "
        f"grep ' {CA_PATH_IN_CONTAINER} ' /proc/self/mountinfo; "
        f"wc -c < {CA_PATH_IN_CONTAINER}; "
        f"(echo x >> {CA_PATH_IN_CONTAINER}) 2>/dev/null || echo read-only"
    )
    _result, log = run_in(engine, created, BUSYBOX, script, ca_bundle=True)
    assert f"PIP_CERT={CA_PATH_IN_CONTAINER} NODE_EXTRA_CA_CERTS={CA_PATH_IN_CONTAINER}" in log.lines
    assert str(engine.ca_bundle.stat().st_size) in log.lines
    assert "read-only" in log.lines
    assert any(" ro," in line or " ro " in line for line in log.lines if CA_PATH_IN_CONTAINER in line)


def test_run_limits_reach_the_container(engine, created):
    result, log = run_in(
        engine,
        created,
        BUSYBOX,
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; "
        "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max",
        limits=Limits(cpus=0.5, memory="64m", pids=50),
    )
    assert result.exit_code == 0
    assert log.lines[:2] == [str(64 * 1024 * 1024), "50"]
    host = json.loads(podman("container", "inspect", result.container_name).stdout)[0]["HostConfig"]
    assert host["Memory"] == 64 * 1024 * 1024 and host["PidsLimit"] == 50
    assert host["NanoCpus"] == 500_000_000 or host["CpuQuota"] == 50_000


def test_run_with_a_name_in_use_leaves_the_other_container_alone(engine, created):
    name = f"chute-test-dup-{SESSION}"
    first = engine.run(BUSYBOX, args=["sh", "-c", "exit 9"], name=name, labels=LABELS)
    created["containers"].append(name)
    with pytest.raises(RunError, match="already exists"):
        engine.run(BUSYBOX, args=["true"], name=name, labels=LABELS)
    info = engine.inspect_container(name)
    assert first.exit_code == 9 and info.exit_code == 9


def test_run_workdir_and_missing_image(engine, created):
    _result, log = run_in(engine, created, BUSYBOX, "pwd", workdir="/tmp")
    assert log.lines == ["/tmp"]
    with pytest.raises(ImageNotFound):
        engine.run(f"localhost/chute-no-such-image:{SESSION}", args=["true"], labels=LABELS, pull="never")


def test_misconfigured_podman_gets_a_clear_error(engine, tmp_path):
    empty = tmp_path / "containers.conf"
    empty.write_text("")  # no runc, no ulimits: the known failure on these machines
    broken = PodmanEngine(environ={**os.environ, "CONTAINERS_CONF": str(empty)})
    name = f"chute-test-misconf-{SESSION}"
    try:
        broken.run(BUSYBOX, args=["true"], name=name, labels=LABELS)
    except EngineMisconfigured as err:
        text = str(err)
        assert "rlimit" in text and "CONTAINERS_CONF" in text
        assert 'runtime = "runc"' in text and "default_ulimits" in text
    else:
        pytest.skip("podman works here even without the known-good containers.conf")
    assert podman("container", "exists", name, check=False).returncode == 1


# --------------------------------------------------------------------------- copy


def test_copy_out_file_and_directory_contents(engine, created, tmp_path):
    result, _ = run_in(
        engine,
        created,
        BUSYBOX,
        "mkdir -p /out/sub && echo a > /out/a.txt && echo b > /out/sub/b.txt && echo top > /report.xml",
    )
    contents = engine.copy_out(result.container_name, "/out/", tmp_path / "artifacts" / "out")
    assert sorted(p.relative_to(contents).as_posix() for p in contents.rglob("*")) == [
        "a.txt",
        "sub",
        "sub/b.txt",
    ]
    assert (contents / "sub" / "b.txt").read_text() == "b\n"

    # Into an existing directory, contents still land directly in it.
    existing = tmp_path / "existing"
    existing.mkdir()
    engine.copy_out(result.container_name, "/out/", existing)
    assert (existing / "a.txt").is_file() and not (existing / "out").exists()

    single = engine.copy_out(result.container_name, "/report.xml", tmp_path / "deep" / "report.xml")
    assert single.read_text() == "top\n"

    with pytest.raises(CopyError) as info:
        engine.copy_out(result.container_name, "/does/not/exist", tmp_path / "x")
    assert "/does/not/exist" in str(info.value) and "hint:" in str(info.value)
    with pytest.raises(CopyError):
        engine.copy_out(f"chute-no-such-container-{SESSION}", "/out/", tmp_path / "y")


# --------------------------------------------------------------------------- push


@pytest.mark.registry
def test_push_records_the_digest_the_registry_serves(engine, created, context, registry_url):
    built = engine.build(
        f"FROM {BUSYBOX}\nLABEL chute.test.push={SESSION}\nHEALTHCHECK CMD true\n", context, labels=LABELS
    )
    created["images"].append(built.image_id)
    repo = f"chute-test/engine-{SESSION}"
    refs = [f"{registry_url}/{repo}:v1", f"{registry_url}/{repo}:latest"]
    log = Collector()
    pushed = engine.push(built.image_id, refs, log=log)
    assert [p.ref for p in pushed] == refs
    for item in pushed:
        response = manifest_head(f"{registry_url}/v2/{repo}/manifests/{item.tag}")
        assert response.status_code == 200
        assert item.digest == response.headers["Docker-Content-Digest"]
        # Pushed in the format it was built in: docker v2 schema 2 (keeps HEALTHCHECK).
        assert response.headers["Content-Type"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert pushed[0].digest == pushed[1].digest
    host = registry_url.split("://", 1)[1]
    assert pushed[0].registry == host and pushed[0].repository == repo
    assert pushed[0].pinned == f"{host}/{repo}@{pushed[0].digest}"


@pytest.mark.registry
def test_push_to_a_dead_registry_fails_after_bounded_retries(engine, small_image):
    port = free_port()  # nothing listens here
    log = Collector()
    with pytest.raises(PushError) as info:
        engine.push(
            small_image, [f"http://127.0.0.1:{port}/chute-test/dead:1"], retries=2, backoff=0.05, log=log
        )
    err = info.value
    assert err.attempts == 3 and err.pushed == []
    assert err.registry == f"127.0.0.1:{port}"
    text = str(err)
    assert f"127.0.0.1:{port}" in text and "3 attempts" in text and "connection refused" in text
    assert "hint:" in text and "registry" in text
    assert len([line for line in log.lines if "retrying in" in line]) == 2


@pytest.mark.registry
def test_push_to_plain_http_registry_without_scheme_says_how_to_fix(engine, registry_url, small_image):
    if not registry_url.startswith("http://"):
        pytest.skip("the test registry is not a plain-HTTP one")
    host = registry_url.split("://", 1)[1]
    with pytest.raises(PushError) as info:
        engine.push(small_image, [f"{host}/chute-test/scheme:1"], retries=3, backoff=0.05)
    assert info.value.attempts == 1  # not worth retrying
    assert f"http://{host}/chute-test/scheme:1" in str(info.value)


@pytest.mark.registry
def test_push_to_a_registry_that_needs_a_login(engine, created, context, tmp_path):
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed: run .ci/run (apt-get install docker-registry)")
    url, proc = start_registry(tmp_path / "authreg", users={"chute": "s3cret pass"})
    host = url.split("://", 1)[1]
    auth_file = tmp_path / "auth.json"
    auth_file.write_text('{"auths": {}}')
    try:
        built = engine.build(f"FROM {BUSYBOX}\nLABEL chute.test.auth={SESSION}\n", context, labels=LABELS)
        created["images"].append(built.image_id)
        ref = f"{url}/chute-test/private:1"
        logged_out = PodmanEngine(environ={**os.environ, "REGISTRY_AUTH_FILE": str(auth_file)})
        with pytest.raises(PushError) as info:
            logged_out.push(built.image_id, [ref], retries=3, backoff=0.05)
        assert info.value.attempts == 1  # a missing login is not retried
        assert f"podman login {host}" in str(info.value)

        login = subprocess.run(
            [
                "podman",
                "login",
                "--tls-verify=false",
                f"--authfile={auth_file}",
                "-u",
                "chute",
                "--password-stdin",
                host,
            ],
            input="s3cret pass",
            capture_output=True,
            text=True,
            env=podman_env(),
        )
        assert login.returncode == 0, login.stderr
        pushed = logged_out.push(built.image_id, [ref])  # the verification reads the same login
        response = manifest_head(f"{url}/v2/chute-test/private/manifests/1", auth=("chute", "s3cret pass"))
        assert pushed[0].digest == response.headers["Docker-Content-Digest"]
    finally:
        stop_process(proc)


def test_push_of_a_missing_image(engine):
    with pytest.raises(ImageNotFound):
        engine.push(f"localhost/chute-no-such-image:{SESSION}", ["http://127.0.0.1:1/x/y:1"])


@pytest.mark.registry
def test_run_and_push_make_no_podman_call_they_do_not_need(created, registry_url, small_image, tmp_path):
    """Each podman call costs 0.3 to 1 s on a busy machine (bench/run_bench.py): a successful run
    needs no inspect, a push no existence check before its tag."""
    calls = tmp_path / "calls"
    wrapper = tmp_path / "podman"
    wrapper.write_text(f'#!/bin/sh\necho "$1" >> {calls}\nexec {shutil.which("podman")} "$@"\n')
    wrapper.chmod(0o755)
    counted = PodmanEngine(str(wrapper))

    def commands() -> list[str]:
        found = calls.read_text().split()
        calls.unlink()
        return found

    ok = counted.run(BUSYBOX, args=["true"], labels=LABELS, keep=False)
    assert ok.exit_code == 0 and commands() == ["run", "rm"]
    failed = counted.run(BUSYBOX, args=["sh", "-c", "exit 3"], labels=LABELS, keep=False)
    assert failed.exit_code == 3 and commands() == ["run", "container", "rm"]  # the inspect tells 3 from 125
    pushed = counted.push(small_image, [f"{registry_url}/chute-test/calls-{SESSION}:1"])
    assert len(pushed) == 1 and commands() == ["tag", "push"]


# --------------------------------------------------------------------------- CA bundle


@pytest.mark.slow
def test_pip_in_a_build_goes_through_the_proxy_without_baking_the_ca(engine, created, context):
    """The one test that needs the internet: apt (plain HTTP) and PyPI through the proxy."""
    bundle = engine.ca_bundle
    if bundle is None:
        pytest.skip("no CA bundle configured on this machine (CHUTE_BUILD_CA_BUNDLE is empty)")
    pip_download = "/venv/bin/pip download --no-deps --retries 0 --timeout 20 -d /tmp/wheels six==1.16.0"
    # ca-certificates is installed while the bundle is mounted: that must not conflict.
    dockerfile = f"""\
FROM {DEBIAN}
RUN apt-get update -q && apt-get install -y -q --no-install-recommends ca-certificates python3-venv \\
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /venv
RUN echo "PIP_CERT=$PIP_CERT NODE_EXTRA_CA_CERTS=$NODE_EXTRA_CA_CERTS" && {pip_download} && ls /tmp/wheels \
    && echo {uuid.uuid4().hex}
"""  # the last line makes the step new every time: a cached step would not show pip's output
    log = Collector()
    built = engine.build(dockerfile, context, labels=LABELS, log=log, timeout=900)
    created["images"].append(built.image_id)
    assert "six-1.16.0-py2.py3-none-any.whl" in log.lines, log.text[-3000:]
    assert f"PIP_CERT={CA_PATH_IN_CONTAINER} NODE_EXTRA_CA_CERTS={CA_PATH_IN_CONTAINER}" in log.lines

    # Nothing of the CA is in the image: not in its config, not as a file.
    info = engine.inspect_image(built.image_id)
    assert not set(info.env) & {"PIP_CERT", "NODE_EXTRA_CA_CERTS"}
    root = Path(podman("image", "mount", built.image_id).stdout.strip())
    try:
        assert not (root / CA_PATH_IN_CONTAINER.lstrip("/")).exists()
        image_bundle = (root / "etc/ssl/certs/ca-certificates.crt").read_bytes()
        assert image_bundle and image_bundle != bundle.read_bytes()  # Debian's own, made by ca-certificates
        proxy_ca = Path("/usr/local/share/ca-certificates/sandboxing-egress-ca.crt")
        if proxy_ca.is_file():
            assert proxy_ca.read_text().splitlines()[1].encode() not in image_bundle
    finally:
        podman("image", "unmount", built.image_id, check=False)

    # So the image alone cannot reach PyPI through the proxy; with the bundle mounted at run time it can.
    _result, out = run_in(engine, created, built.image_id, f"{pip_download}; echo pip=$?")
    assert "pip=0" not in out.lines and "CERTIFICATE_VERIFY_FAILED" in out.text
    _result, out = run_in(engine, created, built.image_id, f"{pip_download}; echo pip=$?", ca_bundle=True)
    assert "pip=0" in out.lines, out.text[-2000:]


# --------------------------------------------------------------------------- remove


def test_remove_ignores_missing_and_removes_running(engine, context):
    built = engine.build(f"FROM {BUSYBOX}\nLABEL chute.test.remove={SESSION}\n", context, labels=LABELS)
    name = f"chute-test-rm-{SESSION}"
    cancel = threading.Event()
    thread = threading.Thread(
        target=engine.run,
        args=(built.image_id,),
        kwargs={"args": ["sleep", "60"], "name": name, "labels": LABELS, "cancel": cancel},
        daemon=True,
    )
    thread.start()
    for _ in range(100):
        if podman("container", "exists", name, check=False).returncode == 0:
            break
        time.sleep(0.1)
    engine.stop(name, timeout=1)
    assert engine.inspect_container(name).running is False
    engine.remove_containers([name, f"chute-no-such-container-{SESSION}"])
    engine.remove_images([built.image_id, "0" * 64])
    thread.join(timeout=30)
    assert podman("container", "exists", name, check=False).returncode == 1
    assert not engine.image_exists(built.image_id)


def test_zz_no_test_container_is_left(created):
    # Runs last in this module: everything labelled with this session is gone once removed.
    PodmanEngine().remove_containers(created["containers"])
    created["containers"].clear()
    left = podman("ps", "-a", "-q", "--filter", f"label=chute.test.engine={SESSION}").stdout.split()
    assert left == []
    assert podman_env()["CONTAINERS_CONF"]
