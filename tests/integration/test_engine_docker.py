"""The docker driver, for real: the docker CLI against ``podman system service``.

No docker daemon runs on these machines; podman's Docker-compatible API
(machine.md §4) is the server. The service gets its own socket and a
registries.conf that marks the test registry as plain HTTP (what a docker
daemon's ``insecure-registries`` does).
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from pathlib import Path

import pytest
from engine_support import (
    build_containers_with_label,
    manifest_head,
    podman,
    start_podman_service,
    start_registry,
    stop_process,
)

from chute.engine import BuildError, DockerEngine, ImageNotFound

pytestmark = pytest.mark.podman

if shutil.which("podman") is None:
    pytest.skip(
        "podman is not installed (it serves the Docker API here): run .ci/run", allow_module_level=True
    )
if shutil.which("docker") is None:
    pytest.skip(
        "the docker CLI is not installed (/usr/local/bin/docker on these machines)", allow_module_level=True
    )

SESSION = uuid.uuid4().hex[:10]
LABELS = {"chute.test": "1", "chute.test.docker": SESSION}
BUSYBOX = "localhost/busybox:stable"


@pytest.fixture(scope="module")
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


@pytest.fixture(scope="module")
def docker(tmp_path_factory, registry_url):
    if podman("image", "exists", BUSYBOX, check=False).returncode != 0:
        pytest.fail(f"base image {BUSYBOX} is missing: run .ci/run (or scripts/lib.sh make_base_images)")
    host = registry_url.split("://", 1)[1]
    # A short path: unix socket paths are limited to 108 bytes.
    state = Path(tmp_path_factory.mktemp("svc"))
    socket_url, proc = start_podman_service(state, [host])
    engine = DockerEngine(host=socket_url)
    yield engine
    left = podman("ps", "-a", "-q", "--filter", f"label=chute.test.docker={SESSION}").stdout.split()
    if left:
        podman("rm", "-f", *left, check=False)
    stop_process(proc)


class Collector:
    def __init__(self, when: str | None = None, then: threading.Event | None = None) -> None:
        self.lines: list[str] = []
        self.when, self.then = when, then

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        if self.when and self.then is not None and self.when in line:
            self.then.set()

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def test_docker_cli_reaches_the_server(docker):
    assert docker.version().startswith("4.")  # podman answers as the server


def test_docker_build_run_copy_inspect_push(docker, tmp_path, registry_url):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "app.txt").write_text("app\n")
    (ctx / "secret.txt").write_text("no\n")
    (ctx / ".dockerignore").write_text("# the project's own\n")
    dockerfile = (
        f"FROM {BUSYBOX} AS base\nRUN mkdir -p /out/sub && echo a > /out/a && echo b > /out/sub/b\n"
        "FROM base AS app\nCOPY . /ctx/\nENV MODE=test\nUSER 65534\nWORKDIR /srv\n"
        'ENTRYPOINT ["/bin/sh", "-c"]\n'
        "FROM app AS later\nRUN false\n"
    )
    log = Collector()
    built = docker.build(
        dockerfile, ctx, target="app", labels={**LABELS, "k": "v w"}, ignore_patterns=["secret.txt"], log=log
    )
    try:
        assert (ctx / ".dockerignore").read_text() == "# the project's own\n"  # put back after the build
        info = docker.inspect_image(built.image_id)
        assert info.id == built.image_id and info.labels["k"] == "v w"
        assert info.env["MODE"] == "test" and info.user == "65534" and info.workdir == "/srv"
        assert info.entrypoint == ("/bin/sh", "-c")

        out = Collector()
        script = (
            'echo "[$TRICKY]"; id -u; ls -A /ctx; grep -E "^(CapEff|NoNewPrivs)" /proc/self/status; exit 4'
        )
        result = docker.run(
            built.image_id,
            args=[script],
            env={"TRICKY": "$HOME ; `x` 'q' "},
            labels=LABELS,
            log=out,
        )
        assert result.exit_code == 4
        assert out.lines[0] == "[$HOME ; `x` 'q' ]" and out.lines[1] == "65534"
        assert sorted(out.lines[2:4]) == [".dockerignore", "app.txt"]
        assert "NoNewPrivs:\t1" in out.lines and "CapEff:\t0000000000000000" in out.lines  # non-root: none
        assert docker.inspect_container(result.container_name).exit_code == 4

        copied = docker.copy_out(result.container_name, "/out/", tmp_path / "out")
        assert sorted(p.relative_to(copied).as_posix() for p in copied.rglob("*")) == ["a", "sub", "sub/b"]
        single = docker.copy_out(result.container_name, "/out/a", tmp_path / "single" / "a.txt")
        assert single.read_text() == "a\n"
        docker.remove_containers([result.container_name, f"chute-no-such-{SESSION}"])
        assert podman("container", "exists", result.container_name, check=False).returncode == 1

        repo = f"chute-test/docker-{SESSION}"
        pushed = docker.push(built.image_id, [f"{registry_url}/{repo}:1"], log=log)
        response = manifest_head(f"{registry_url}/v2/{repo}/manifests/1")
        assert response.status_code == 200
        assert pushed[0].digest == response.headers["Docker-Content-Digest"]
    finally:
        docker.remove_images([built.image_id])
    assert not docker.image_exists(built.image_id)


def test_docker_build_error_names_the_step(docker, tmp_path):
    unique = uuid.uuid4().hex
    base = docker.build(f"FROM {BUSYBOX}\nLABEL chute.test.base={unique}\n", tmp_path, labels=LABELS)
    try:
        with pytest.raises(BuildError) as info:
            docker.build(
                f"FROM {base.image_id}\nRUN echo visible-output && exit 5\n", tmp_path, labels=LABELS
            )
        text = str(info.value)
        assert "RUN echo visible-output" in text and "visible-output" in info.value.output
    finally:
        # podman's compat API keeps a failed build's working container: remove it.
        leftovers = build_containers_with_label("chute.test.base", unique)
        if leftovers:
            podman("rm", "-f", *leftovers, check=False)
        docker.remove_images([base.image_id])


def test_docker_run_cancel_removes_the_container(docker):
    marker = uuid.uuid4().hex
    cancel = threading.Event()
    log = Collector(when=f"up-{marker}", then=cancel)
    result = docker.run(
        BUSYBOX,
        args=["sh", "-c", f"echo up-{marker}; sleep 60"],
        labels={**LABELS, "chute.test.cancel": marker},
        cancel=cancel,
        log=log,
    )
    assert result.cancelled and result.removed
    assert podman("ps", "-a", "-q", "--filter", f"label=chute.test.cancel={marker}").stdout.strip() == ""


def test_docker_missing_image(docker):
    with pytest.raises(ImageNotFound):
        docker.inspect_image(f"localhost/chute-no-such-image:{SESSION}")
    assert docker.image_exists(f"localhost/chute-no-such-image:{SESSION}") is False
