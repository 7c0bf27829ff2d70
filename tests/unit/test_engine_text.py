"""Pure parts of chute.engine: Dockerfile ARG injection, build output, refs, CA and env settings."""

from __future__ import annotations

import os
import stat

import pytest

from chute.engine import CA_ENV_NAMES, EngineUsageError, parse_push_ref
from chute.engine.buildlog import BuildLog, failure_hint
from chute.engine.ca import resolve_ca_bundle, resolve_ca_env_names
from chute.engine.dockerfile import declare_args_in_stages, instruction_spans
from chute.engine.driver import parse_container_info, parse_image_info, write_env_file
from chute.engine.podman import podman_environ
from chute.engine.refs import normalize_id
from chute.engine.registry import auth_files, find_credentials, parse_challenge

# --------------------------------------------------------------------------- Dockerfile


def test_args_are_declared_after_every_from_and_nowhere_else():
    text = (
        "# syntax=docker-registry.wikimedia.org/repos/releng/blubber/buildkit:v0.11.1\n"
        "FROM docker-registry.wikimedia.org/bookworm:latest AS build\n"
        'RUN echo "FROM inside a command"\n'
        "from localhost/busybox:stable as final\n"
        "COPY --from=build /x /x\n"
    )
    out = declare_args_in_stages(text, ["PIP_CERT", "NODE_EXTRA_CA_CERTS"])
    assert out.splitlines() == [
        "# syntax=docker-registry.wikimedia.org/repos/releng/blubber/buildkit:v0.11.1",
        "FROM docker-registry.wikimedia.org/bookworm:latest AS build",
        "ARG PIP_CERT",
        "ARG NODE_EXTRA_CA_CERTS",
        'RUN echo "FROM inside a command"',
        "from localhost/busybox:stable as final",
        "ARG PIP_CERT",
        "ARG NODE_EXTRA_CA_CERTS",
        "COPY --from=build /x /x",
    ]


def test_continued_from_lines_get_the_args_after_their_last_line():
    text = "FROM \\\n  # a comment inside\n  localhost/busybox:stable \\\n  AS base\nRUN true\n"
    out = declare_args_in_stages(text, ["PIP_CERT"]).splitlines()
    assert out[4] == "ARG PIP_CERT" and out[3] == "  AS base"


def test_backtick_escape_directive_is_honoured():
    text = "# escape=`\nFROM localhost/busybox:stable `\n  AS base\nRUN echo `\n  FROM not-an-instruction\n"
    out = declare_args_in_stages(text, ["X"]).splitlines()
    assert out == [
        "# escape=`",
        "FROM localhost/busybox:stable `",
        "  AS base",
        "ARG X",
        "RUN echo `",
        "  FROM not-an-instruction",
    ]


def test_heredoc_bodies_are_not_instructions():
    text = "FROM a\nRUN <<EOF\nFROM b\nEOF\nCOPY <<-'END' /f\n\tFROM c\n\tEND\nFROM d\n"
    spans = instruction_spans(text)
    assert [keyword for _s, _e, keyword in spans] == ["FROM", "RUN", "COPY", "FROM"]
    out = declare_args_in_stages(text, ["X"]).splitlines()
    assert out.count("ARG X") == 2 and out[-1] == "ARG X" and out[1] == "ARG X"


def test_no_names_means_no_change():
    assert declare_args_in_stages("FROM a\n", []) == "FROM a\n"


# --------------------------------------------------------------------------- build output

PODMAN_FAILED = """\
[1/2] STEP 1/3: FROM localhost/busybox:stable AS base
[1/2] STEP 2/3: ARG PIP_CERT
--> Using cache ead57d95286dec5bcb2e0de9623c719b5b3b7ed50a244c980f9df0bc1b207a24
--> ead57d95286
[1/2] STEP 3/3: RUN echo fine
fine
--> 3c376234781
[2/2] STEP 1/2: FROM 3c37623478119e8f AS final
[2/2] STEP 2/2: RUN echo before && echo 'it broke' >&2 && exit 7
before
it broke
Error: building at STEP "RUN echo before && echo 'it broke' >&2 && exit 7": while running runtime: exit status 7
"""

CLASSIC_FAILED = """\
Sending build context to Docker daemon  2.048kB
Step 1/3 : FROM busybox
 ---> 3f57d9401f8d
Step 2/3 : RUN echo ok
 ---> Using cache
 ---> 1a2b3c4d5e6f
Step 3/3 : RUN echo broken-output && exit 3
 ---> Running in 9f8e7d6c5b4a
broken-output
The command '/bin/sh -c echo broken-output && exit 3' returned a non-zero code: 3
"""

BUILDKIT_FAILED = """\
#1 [internal] load build definition from Dockerfile
#1 transferring dockerfile: 98B done
#1 DONE 0.0s
#4 [1/3] FROM docker.io/library/busybox
#4 CACHED
#5 [2/3] RUN echo ok
#5 CACHED
#6 [3/3] RUN echo broken-output && exit 3
#6 0.215 broken-output
#6 ERROR: process "/bin/sh -c echo broken-output && exit 3" did not complete successfully: exit code: 3
------
 > [3/3] RUN echo broken-output && exit 3:
0.215 broken-output
------
ERROR: failed to solve: process "/bin/sh -c echo broken-output && exit 3" did not complete successfully: exit code: 3
"""


def _feed(text: str) -> BuildLog:
    log = BuildLog()
    for line in text.splitlines():
        log.feed(line)
    return log


def test_podman_failure_names_step_output_and_status():
    log = _feed(PODMAN_FAILED)
    failure = log.failure()
    assert failure.step == "[2/2] STEP 2/2: RUN echo before && echo 'it broke' >&2 && exit 7"
    assert failure.output == ("before", "it broke")
    assert failure.exit_code == 7
    assert "exited with status 7" in (failure_hint(failure) or "")
    assert (log.steps, log.cached) == (5, 1)


def test_docker_classic_failure():
    log = _feed(CLASSIC_FAILED)
    failure = log.failure()
    assert failure.step == "Step 3/3 : RUN echo broken-output && exit 3"
    assert failure.output == ("broken-output",)
    assert failure.exit_code == 3
    assert log.cached == 1


def test_buildkit_failure():
    log = _feed(BUILDKIT_FAILED)
    failure = log.failure()
    assert failure.step == "[3/3] RUN echo broken-output && exit 3"
    assert failure.output == ("broken-output",)
    assert failure.exit_code == 3 and "failed to solve" in failure.reason
    assert log.cached == 2


def test_copy_and_base_image_hints():
    copy = _feed(
        'STEP 2/2: COPY nope.txt /x\nError: building at STEP "COPY nope.txt /x": checking on sources under '
        '"/ctx": copier: stat: "/nope.txt": no such file or directory\n'
    ).failure()
    assert "build context" in (failure_hint(copy) or "")
    base = _feed(
        "STEP 1/2: FROM localhost/nope:1\n"
        "Error: creating build container: localhost/nope:1: image not known\n"
    ).failure()
    assert "base image" in (failure_hint(base) or "")


# --------------------------------------------------------------------------- refs


@pytest.mark.parametrize(
    ("ref", "registry", "repository", "tag", "insecure", "engine_ref"),
    [
        (
            "http://127.0.0.1:15000/demo/app:1",
            "127.0.0.1:15000",
            "demo/app",
            "1",
            True,
            "127.0.0.1:15000/demo/app:1",
        ),
        ("https://reg.example.org/wikimedia/x", "reg.example.org", "wikimedia/x", "latest", False, None),
        ("localhost:5000/a/b/c:v1.2-3", "localhost:5000", "a/b/c", "v1.2-3", False, None),
        ("localhost/app:2", "localhost", "app", "2", False, None),
        (
            "busybox:stable",
            "docker.io",
            "library/busybox",
            "stable",
            False,
            "docker.io/library/busybox:stable",
        ),
        ("wikimedia/blubber", "docker.io", "wikimedia/blubber", "latest", False, None),
    ],
)
def test_push_refs(ref, registry, repository, tag, insecure, engine_ref):
    parsed = parse_push_ref(ref)
    assert (parsed.registry, parsed.repository, parsed.tag, parsed.insecure) == (
        registry,
        repository,
        tag,
        insecure,
    )
    if engine_ref:
        assert parsed.engine_ref == engine_ref
    assert parsed.original == ref


def test_push_ref_urls():
    ref = parse_push_ref("http://127.0.0.1:15000/demo/app:1")
    assert ref.manifest_url() == "http://127.0.0.1:15000/v2/demo/app/manifests/1"
    assert parse_push_ref("busybox").api_base == "https://registry-1.docker.io"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("ftp://host/x:1", "scheme"),
        ("http://app:1", "registry host"),
        ("reg.example.org/App:1", "repository"),
        ("reg.example.org/app:-bad", "tag"),
        ("reg.example.org/app@sha256:" + "a" * 64, "digest"),
        ("--help", "not valid"),
        ("", "not valid"),
    ],
)
def test_bad_push_refs_say_what_is_wrong(ref, message):
    with pytest.raises(EngineUsageError, match=message):
        parse_push_ref(ref)


def test_normalize_id():
    assert normalize_id("sha256:" + "ab" * 32 + "\n") == "ab" * 32


# --------------------------------------------------------------------------- CA, env, podman env


def test_ca_bundle_resolution(tmp_path):
    host = tmp_path / "host.crt"
    assert resolve_ca_bundle({}, host_bundle=host) is None  # no host bundle
    host.write_text("pem")
    assert resolve_ca_bundle({}, host_bundle=host) == host
    assert resolve_ca_bundle({"CHUTE_BUILD_CA_BUNDLE": ""}, host_bundle=host) is None
    other = tmp_path / "other.pem"
    other.write_text("pem")
    assert resolve_ca_bundle({"CHUTE_BUILD_CA_BUNDLE": str(other)}, host_bundle=host) == other.resolve()
    with pytest.raises(EngineUsageError, match="CHUTE_BUILD_CA_BUNDLE"):
        resolve_ca_bundle({"CHUTE_BUILD_CA_BUNDLE": str(tmp_path / "missing.pem")}, host_bundle=host)


def test_ca_env_names():
    assert resolve_ca_env_names({}) == CA_ENV_NAMES == ("PIP_CERT", "NODE_EXTRA_CA_CERTS")
    assert resolve_ca_env_names({"CHUTE_BUILD_CA_ENV": " PIP_CERT, CURL_CA_BUNDLE ,"}) == (
        "PIP_CERT",
        "CURL_CA_BUNDLE",
    )
    assert resolve_ca_env_names({"CHUTE_BUILD_CA_ENV": ""}) == ()
    with pytest.raises(EngineUsageError, match="invalid variable names: BAD-NAME"):
        resolve_ca_env_names({"CHUTE_BUILD_CA_ENV": "PIP_CERT,BAD-NAME"})


def test_env_values_go_to_a_private_file_verbatim(tmp_path):
    path, inline = write_env_file(
        tmp_path, {"A": "x $HOME `id` 'q' ; y  ", "EMPTY": "", "N": 5, "MULTI": "one\ntwo", "CR": "a\rb"}
    )
    assert path is not None
    assert path.read_text() == "A=x $HOME `id` 'q' ; y  \nEMPTY=\nN=5\n"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert inline == {"MULTI": "one\ntwo", "CR": "a\rb"}
    assert write_env_file(tmp_path / "unused", {}) == (None, {})


@pytest.mark.parametrize("name", ["", "1ABC", "A B", "A=B", "#A", "-e"])
def test_bad_env_names_are_refused(tmp_path, name):
    with pytest.raises(EngineUsageError, match="environment variable name"):
        write_env_file(tmp_path, {name: "x"})


def test_nul_in_env_value_is_refused(tmp_path):
    with pytest.raises(EngineUsageError, match="NUL"):
        write_env_file(tmp_path, {"A": "x\0y"})


def test_podman_gets_the_known_good_containers_conf(tmp_path):
    conf = tmp_path / "containers.conf"
    assert "CONTAINERS_CONF" not in podman_environ({"PATH": "/bin"}, default_conf=conf)
    conf.write_text("[engine]\n")
    assert podman_environ({"PATH": "/bin"}, default_conf=conf)["CONTAINERS_CONF"] == str(conf)
    explicit = podman_environ({"CONTAINERS_CONF": "/mine.conf"}, default_conf=conf)
    assert explicit["CONTAINERS_CONF"] == "/mine.conf"


# --------------------------------------------------------------------------- registry auth


def test_parse_challenge():
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.example.org/token",service="registry.example.org",scope="repository:a/b:pull"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://auth.example.org/token",
        "service": "registry.example.org",
        "scope": "repository:a/b:pull",
    }
    assert parse_challenge('Basic realm="chute-test"') == ("basic", {"realm": "chute-test"})


def test_credentials_come_from_podman_then_docker_auth_files(tmp_path):
    import base64
    import json

    podman_auth = tmp_path / "auth.json"
    podman_auth.write_text(
        json.dumps(
            {"auths": {"reg.example.org": {"auth": base64.b64encode(b"alice:pw:with:colons").decode()}}}
        )
    )
    docker_dir = tmp_path / "docker"
    docker_dir.mkdir()
    (docker_dir / "config.json").write_text(
        json.dumps(
            {"auths": {"https://index.docker.io/v1/": {"auth": base64.b64encode(b"bob:hub").decode()}}}
        )
    )
    env = {"REGISTRY_AUTH_FILE": str(podman_auth), "DOCKER_CONFIG": str(docker_dir), "HOME": str(tmp_path)}
    assert auth_files("podman", env)[0] == podman_auth
    assert auth_files("docker", env) == [docker_dir / "config.json"]
    assert find_credentials("reg.example.org", "podman", env) == ("alice", "pw:with:colons")
    assert find_credentials("reg.example.org", "docker", env) is None
    assert find_credentials("docker.io", "docker", env) == ("bob", "hub")
    assert find_credentials("other.example.org", "podman", env) is None


# --------------------------------------------------------------------------- inspect parsing


def test_docker_shaped_inspect_output_is_understood():
    image = parse_image_info(
        {
            "Id": "sha256:" + "c" * 64,
            "RepoTags": ["x:1"],
            "Created": "2026-01-01T00:00:00Z",
            "Config": {
                "User": "somebody",
                "Env": ["PATH=/bin", "EQ=a=b"],
                "Entrypoint": None,
                "Cmd": ["npm", "test"],
                "Labels": None,
                "ExposedPorts": {"9090/tcp": {}, "8080/tcp": {}},
                "Healthcheck": {"Test": ["CMD", "true"], "Interval": 30_000_000_000, "Retries": 0},
            },
        }
    )
    assert image.id == "c" * 64 and image.env == {"PATH": "/bin", "EQ": "a=b"}
    assert image.entrypoint is None and image.cmd == ("npm", "test") and image.labels == {}
    assert image.exposed_ports == ("8080/tcp", "9090/tcp")
    assert (
        image.healthcheck is not None
        and image.healthcheck.interval == 30.0
        and image.healthcheck.retries is None
    )

    container = parse_container_info(
        {
            "Id": "d" * 64,
            "Name": "/plib-run-1",
            "Image": "sha256:" + "c" * 64,
            "Config": {"Image": "x:1", "Labels": {"a": "b"}},
            "State": {"Status": "exited", "Running": False, "ExitCode": 2},
            "HostConfig": {"Privileged": False},
        }
    )
    assert container.name == "plib-run-1" and container.image_id == "c" * 64 and container.image == "x:1"
    assert container.exit_code == 2 and not container.running
    running = parse_container_info({"Id": "e", "Name": "r", "State": {"Status": "running", "Running": True}})
    assert running.exit_code is None and running.running
