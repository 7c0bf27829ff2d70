"""Real podman builds of the Dockerfile constructs chute invents for podman 4.3 / buildah 1.28.

exclude (a filtering stage), inline builder scripts (tmpfs + printf), mounts
from another variant, caches, build arguments, apt sources/keys/proxies
files, scratch images and the default users. Each test compiles a config,
builds it with podman and looks inside the image. Images and containers are
labelled ``chute.test=1`` and removed afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from chute.blubber import compile_variant, parse_config

pytestmark = pytest.mark.podman

DEBIAN = "localhost/debian:bookworm"
BUSYBOX = "localhost/busybox:stable"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    if "CONTAINERS_CONF" not in env and Path("/etc/chute/containers.conf").is_file():
        env["CONTAINERS_CONF"] = "/etc/chute/containers.conf"
    return env


def podman(*args: str, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, env=_env(), check=check,
                          timeout=timeout)


@pytest.fixture(scope="module", autouse=True)
def needs_podman() -> None:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed: run .ci/run (it installs podman and makes the base images)")
    for image in (DEBIAN, BUSYBOX):
        if podman("image", "exists", image, check=False).returncode != 0:
            pytest.skip(f"the base image {image} is missing: run .ci/run (make_base_images)")


class Builder:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.images: list[str] = []

    def build(self, config: str, variant: str, files: dict[str, str], *build_args: str) -> str:
        ctx = self.root / uuid.uuid4().hex[:8]
        ctx.mkdir()
        for name, content in files.items():
            (ctx / name).parent.mkdir(parents=True, exist_ok=True)
            (ctx / name).write_text(content)
        dockerfile = compile_variant(parse_config(textwrap.dedent(config), "blubber.yaml"), variant)
        (self.root / f"{ctx.name}.Dockerfile").write_text(dockerfile)
        tag = f"localhost/chute-test-blubber:{variant.lower()}-{ctx.name}"
        proc = podman("build", "--layers=false", "--label", "chute.test=1", "-f",
                      str(self.root / f"{ctx.name}.Dockerfile"), "-t", tag, *build_args, str(ctx),
                      check=False)
        assert proc.returncode == 0, \
            f"build failed:\n{dockerfile}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        self.images.append(tag)
        return tag

    def run(self, image: str, *cmd: str) -> str:
        proc = podman("run", "--rm", "--label", "chute.test=1", "--entrypoint", cmd[0], image, *cmd[1:])
        return proc.stdout

    def files(self, image: str, path: str) -> dict[str, str]:
        """path -> content of regular files under ``path``, read without running the image."""
        ctr = podman("create", "--label", "chute.test=1", image, "none").stdout.strip()
        try:
            dest = self.root / f"cp-{uuid.uuid4().hex[:8]}"
            podman("cp", f"{ctr}:{path}", str(dest))
            if dest.is_file():
                return {path: dest.read_text()}
            return {str(p.relative_to(dest)): p.read_text() for p in dest.rglob("*") if p.is_file()}
        finally:
            podman("rm", "-f", ctr, check=False)


@pytest.fixture
def builder(tmp_path: Path) -> Iterator[Builder]:
    b = Builder(tmp_path)
    yield b
    for image in b.images:
        podman("rmi", "-f", image, check=False)


def test_exclude_in_copies_and_requirements(builder: Builder) -> None:
    files = {"hello.sh": "#!/bin/sh\necho hello\n", "README.md": "# readme\n", "docs/guide.md": "guide\n",
             "docs/keep.txt": "keep\n", "secret.md": "s\n", "main.c": "int main(void) { return 0; }\n"}
    image = builder.build(f"""
        version: v4
        base: {DEBIAN}
        variants:
          hello:
            builder:
              requirements: [{{from: local, source: main.c, destination: src/main.c}}]
              command: [test, -f, src/main.c]
            copies:
              - {{from: local, exclude: ["*.md", "!secret.md", "docs/*.md"]}}
            entrypoint: [./hello.sh]
    """, "hello", files)
    listing = builder.run(image, "sh", "-c",
                          "cd /srv/app && find . -type f | sort && stat -c '%u:%g %n' hello.sh")
    assert listing.split() == ["./docs/keep.txt", "./hello.sh", "./main.c", "./secret.md", "./src/main.c",
                               "65533:65533", "hello.sh"]


def test_exclude_from_another_variant_into_scratch(builder: Builder) -> None:
    image = builder.build(f"""
        version: v4
        variants:
          build:
            base: {DEBIAN}
            builder:
              command: >-
                mkdir -p out/sub && echo bin > out/app && echo x > out/notes.md && echo y > out/sub/z.md
          app:
            copies: [{{from: build, source: /srv/app/out/, destination: /app/, exclude: ["**/*.md"]}}]
    """, "app", {})
    assert builder.files(image, "/app") == {"app": "bin\n"}
    config = json.loads(podman("image", "inspect", image).stdout)[0]["Config"]
    assert config["Labels"]["blubber.variant"] == "app"


def test_inline_script_mounts_caches_and_arguments(builder: Builder) -> None:
    image = builder.build(f"""
        version: v4
        base: {DEBIAN}
        runs: {{environment: {{GREETING: "hi there", CACHE_DIR: /var/cache/chute}}}}
        arguments: {{TARGET: default-target}}
        variants:
          assets:
            lives: {{in: /src}}
            builder: {{command: "mkdir -p dist && echo asset > dist/a.txt"}}
          build:
            builders:
              - custom:
                  command: "echo cached > $CACHE_DIR/stamp"
                  caches: ["${{CACHE_DIR}}", {{destination: /var/cache/other, access: locked}}]
              - custom:
                  mounts: [{{from: assets, source: /src/dist, destination: ./dist}},
                           {{from: local, destination: /mnt/context}}]
                  caches: ["${{CACHE_DIR}}"]
                  script: |
                    #!/bin/bash
                    set -euo pipefail
                    [[ "$GREETING" == "hi there" ]]
                    cat "$CACHE_DIR/stamp" > from-cache.txt
                    cat dist/a.txt > from-mount.txt
                    echo "$TARGET" > target.txt
                    printf '%s\\n' "it's 100% done" > quoted.txt
                    cat /mnt/context/hello.txt > from-local.txt
    """, "build", {"hello.txt": "from the context\n"}, "--build-arg", "TARGET=override")
    out = builder.run(image, "sh", "-c", "cd /srv/app && head -v -n 5 *.txt; ls -a /tmp")
    assert "==> from-cache.txt <==\ncached" in out
    assert "==> from-mount.txt <==\nasset" in out
    assert "==> target.txt <==\noverride" in out
    assert "==> quoted.txt <==\nit's 100% done" in out
    assert "==> from-local.txt <==\nfrom the context" in out
    assert "blubber-script" not in out  # the script is not left in the image
    assert "dist" not in builder.run(image, "ls", "/srv/app")  # mounts leave nothing behind


def test_apt_files_users_and_runtime(builder: Builder) -> None:
    key = "-----BEGIN PGP PUBLIC KEY BLOCK-----\nabc\n-----END PGP PUBLIC KEY BLOCK-----\n"
    image = builder.build(f"""
        version: v4
        base: {DEBIAN}
        apt:
          sources:
            - url: https://deb.example.org/debian
              distribution: bookworm
              components: [main, contrib]
              signed-by: {json.dumps(key)}
          proxies: [{{url: "http://proxy.example:3128", source: "http://deb.example.org/"}}]
        runs: {{in: /srv/app/run}}
        variants:
          app:
            lives: {{as: appowner, uid: 1234, gid: 1235}}
            runs: {{as: apprunner, uid: 4321, gid: 4320}}
            copies: [local]
            entrypoint: [id]
    """, "app", {"data.txt": "d\n"})
    keyring = next(iter(builder.files(image, "/etc/apt/keyrings").values()))
    assert keyring == key
    sources = builder.files(image, "/etc/apt/sources.list.d/99blubber.list")
    line = next(iter(sources.values()))
    assert line.startswith("deb [signed-by=/etc/apt/keyrings/")
    assert line.endswith("] https://deb.example.org/debian bookworm main contrib\n")
    probe = podman("create", "--label", "chute.test=1", image)
    ctr = probe.stdout.strip()
    try:
        missing = podman("cp", f"{ctr}:/etc/apt/apt.conf.d/99blubber-proxies", "/dev/null", check=False)
        assert missing.returncode != 0  # the proxies file is removed after installing
    finally:
        podman("rm", "-f", ctr, check=False)
    config = json.loads(podman("image", "inspect", image).stdout)[0]["Config"]
    assert config["User"] == "apprunner" and config["WorkingDir"] == "/srv/app/run"
    assert config["Entrypoint"] == ["id"] and not config.get("Cmd")  # the base image's CMD is cleared
    assert builder.run(image, "stat", "-c", "%u:%g", "/srv/app/data.txt").strip() == "1234:1235"
    assert builder.run(image, "id").startswith("uid=4321(apprunner) gid=4320(apprunner)")
