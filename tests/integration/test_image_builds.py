"""Images really build: Blubber configs compiled by chute.blubber, built and run with chute.engine.

Each test compiles a variant, builds it with podman (through ``chute.engine``,
so with the CA bundle mounted into RUN steps and never baked in), inspects the
image's config (user, workdir, env, entrypoint, labels), looks at its files
and runs a command in it. The sample app is ``fixtures/polyglot``; real
packages come from Debian (apt), npm (is-number) and PyPI (six, poetry, tox)
through the machine's TLS-intercepting proxy. packagist.org cannot be reached
from these machines, so composer installs from a ``path`` repository in the
app (packagist disabled).

The engine mounts the host's CA bundle into RUN steps and points
``PIP_CERT``/``NODE_EXTRA_CA_CERTS`` at it. ``poetry install`` (requests) needs
``REQUESTS_CA_BUNDLE`` as well, which ``CHUTE_BUILD_CA_ENV`` adds (see
docs/engine.md); every build here uses that setting, so all share one cache.

Build time is dominated by one apt layer (about 470 packages, npm alone is
390) that every Debian variant shares: the ``debian`` variant below is
included by all of them and nothing before it differs, so podman's layer cache
builds it once. Its base is ``localhost/debian:bookworm`` plus an apt setting
that leaves out Recommends (as Wikimedia's base images do), which halves the
layer (1.4 GB with Recommends). Images are removed at the end of the module
with ``keep_cache`` (their layers stay cached for the next run); the small
base image is kept, like the layer cache it roots.

Which Blubber acceptance scenario (spec §8) each test covers is listed in
``docs/compat.md`` (section "Acceptance scenarios in real builds").
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import subprocess
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from functools import partial
from pathlib import Path

import pytest

from chute import __version__
from chute.blubber import compile_variant, parse_config
from chute.engine import CA_ENV_NAMES, ImageInfo, PodmanEngine, detect_engine

pytestmark = [pytest.mark.podman]

FIXTURE = Path(__file__).parent / "fixtures" / "polyglot"
DEBIAN = "localhost/debian:bookworm"
BASE = "localhost/chute-test-debian:bookworm-norecommends"
BASE_DOCKERFILE = f"""FROM {DEBIAN}
RUN printf 'APT::Install-Recommends "false";\\nAPT::Install-Suggests "false";\\n' \\
    > /etc/apt/apt.conf.d/99no-recommends
"""
CONF = "/etc/chute/containers.conf"
TEST_LABEL = {"chute.test": "1"}

# Every package any variant needs, in ONE apt layer shared by all of them (see the module docstring).
# composer needs unzip (a Recommends) to unpack packagist's zip archives.
APT_PACKAGES = ["nodejs", "npm", "python3", "python3-venv", "python3-yaml", "php-cli", "composer", "unzip", "gcc",
                "libc6-dev", "busybox-static"]

CONFIG = f"""
version: v4
variants:
  debian:
    base: {BASE}
    apt: {{packages: {json.dumps(APT_PACKAGES)}}}

  node-service:
    includes: [debian]
    node:
      requirements: [package.json, package-lock.json]
      use-npm-ci: true
      env: production
    copies: [local]
    entrypoint: [node, index.js]
  node-builder:
    includes: [debian]
    builders:
      - node: {{requirements: [package.json, package-lock.json]}}
    copies: [local]
    entrypoint: [node, index.js]

  python-venv:
    includes: [debian]
    python: {{version: python3, requirements: [requirements.txt]}}
    copies: [local]
    entrypoint: [python3, hello.py]
  python-system:
    includes: [debian]
    python:
      version: python3
      requirements: [requirements-system.txt]
      use-system-site-packages: true
      # One venv for two scenarios (each venv costs ~30 s cold): version pins of the tools.
      pip-version: "~=26.0"
      setuptools-version: "~=81.0"
      wheel-version: "~=0.46.3"
      tox-version: "4.49.1"
    entrypoint: [python3, -c, "import yaml, sys; print('yaml', yaml.__version__, yaml.__file__, sys.prefix)"]
  poetry1:
    includes: [debian]
    python:
      version: python3
      requirements:
        - {{from: local, source: poetry1/pyproject.toml, destination: pyproject.toml}}
        - {{from: local, source: poetry1/poetry.lock, destination: poetry.lock}}
      poetry: {{version: "==1.5.1"}}
    copies: [{{from: local, source: hello.py, destination: hello.py}}]
    entrypoint: [poetry, run, python3, hello.py]
  poetry2-main:
    includes: [debian]
    python:
      version: python3
      requirements:
        - {{from: local, source: poetry2/pyproject.toml, destination: pyproject.toml}}
        - {{from: local, source: poetry2/poetry.lock, destination: poetry.lock}}
      poetry: {{version: "==2.0.1", only: main}}
    copies: [{{from: local, source: hello.py, destination: hello.py}}]
    entrypoint: [poetry, run, python3, hello.py]
  poetry2-without-dev:
    includes: [debian]
    python:
      version: python3
      requirements:
        - {{from: local, source: poetry2/pyproject.toml, destination: pyproject.toml}}
        - {{from: local, source: poetry2/poetry.lock, destination: poetry.lock}}
      poetry: {{version: "==2.0.1", without: dev}}
    copies: [{{from: local, source: hello.py, destination: hello.py}}]
    entrypoint: [poetry, run, python3, hello.py]

  php-app:
    includes: [debian]
    php: {{requirements: [composer.json, packages/]}}
    copies: [{{from: local, source: hello.php, destination: hello.php}}]
    entrypoint: [php, hello.php]
  php-production:
    includes: [php-app]
    php: {{production: true}}

  c-hello:
    includes: [debian]
    builder: {{requirements: [main.c], command: "gcc -o hello main.c"}}
    entrypoint: [./hello]
  c-exclude:
    includes: [debian]
    builder:
      requirements: [{{from: local, exclude: ["*.md"]}}]
      command: [sh, -c, "gcc -o hello main.c && ls -A > built-from.txt"]
    entrypoint: [./hello]
  builders-order:
    # The python builder first, as python-venv has it, so both share its layers.
    includes: [debian]
    builders:
      - python: {{version: python3, requirements: [requirements.txt]}}
      - custom:
          requirements: [hello.py]
          command: [sh, -c, "python3 hello.py > order.txt"]
      - custom: {{command: "echo last >> order.txt"}}
    entrypoint: [cat, order.txt]

  hello:
    includes: [debian]
    copies: [local]
    entrypoint: [./hello.sh]
  hey:
    includes: [hello]
    runs: {{environment: {{FOO: bar, BAZ: qux}}}}
  custom-owners:
    includes: [debian]
    lives: {{in: /usr/local/app, as: appowner, uid: 1234, gid: 1235}}
    runs: {{as: apprunner, uid: 4321, gid: 4320}}
    copies: [local]
    entrypoint: [/usr/local/app/hello.sh]
  insecure:
    includes: [custom-owners]
    runs: {{insecurely: true, in: /usr/local/app/run}}

  static-tools:
    includes: [debian]
    builder: {{command: "cp /bin/busybox ./busybox && echo made-in-static-tools > stamp.txt"}}
  relay:
    includes: [debian]
    copies:
      - {{from: static-tools, source: /srv/app/busybox, destination: ./busybox}}
      - {{from: static-tools, source: /srv/app/stamp.txt, destination: ./relayed-stamp.txt}}
  tiny:
    copies:
      - {{from: relay, source: /srv/app/busybox, destination: /bin/busybox}}
      - {{from: relay, source: /srv/app/relayed-stamp.txt, destination: /stamp.txt}}
    entrypoint: [/bin/busybox]
  labels-only: {{}}
"""


def _podman_environ() -> dict[str, str]:
    env = dict(os.environ)
    if not env.get("CONTAINERS_CONF") and Path(CONF).is_file():
        env["CONTAINERS_CONF"] = CONF
    return env


def _engine_environ() -> dict[str, str]:
    """podman's environment plus the CA variables for poetry (see the module docstring)."""
    return {**_podman_environ(), "CHUTE_BUILD_CA_ENV": ",".join((*CA_ENV_NAMES, "REQUESTS_CA_BUNDLE"))}


class Images:
    """Builds variants on demand (each once per module) and runs commands in them."""

    def __init__(self) -> None:
        self.engine = detect_engine("podman", environ=_engine_environ())
        self.built: dict[tuple, str] = {}
        self.logs: dict[str, list[str]] = {}

    def build(self, variant: str, *, config: str = CONFIG, context: Path = FIXTURE,
              build_args: Mapping[str, str] | None = None, engine: PodmanEngine | None = None) -> str:
        """The image ID of ``variant``; the build log is kept in ``self.logs[variant]``."""
        key = (variant, config, str(context), tuple(sorted((build_args or {}).items())))
        if key in self.built:
            return self.built[key]
        dockerfile = compile_variant(parse_config(textwrap.dedent(config), "blubber.yaml"), variant)
        lines: list[str] = []
        tag = f"localhost/chute-test-images:{variant}-{uuid.uuid4().hex[:8]}"
        try:
            result = (engine or self.engine).build(dockerfile, context, tags=[tag], labels=TEST_LABEL,
                                                   build_args=build_args, log=lines.append, timeout=900)
        except Exception as err:
            raise AssertionError(f"building {variant} failed: {err}\n--- Dockerfile\n{dockerfile}") from err
        self.logs[variant] = lines
        self.built[key] = result.image_id
        return result.image_id

    def inspect(self, image: str) -> ImageInfo:
        return self.engine.inspect_image(image)

    def run(self, image: str, *args: str, env: Mapping[str, str] | None = None) -> str:
        """Run the image's entrypoint with ``args`` through ``engine.run``; its output (must exit 0)."""
        out: list[str] = []
        result = self.engine.run(image, args=list(args), env=env, labels=TEST_LABEL, keep=False, timeout=180,
                                 log=out.append)
        text = "\n".join(out)
        assert result.exit_code == 0, f"exit {result.exit_code}:\n{text}"
        return text

    def sh(self, image: str, script: str, shell: tuple[str, ...] = ("/bin/sh",)) -> str:
        """Run a shell script in the image as its own user (entrypoint replaced): its stdout."""
        proc = subprocess.run(
            ["podman", "run", "--rm", "--label", "chute.test=1", "--entrypoint", json.dumps(list(shell)), image,
             "-c", script],
            capture_output=True, text=True, env=_podman_environ(), timeout=180)
        assert proc.returncode == 0, f"{script!r} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def remove_all(self) -> None:
        self.engine.remove_images(list(self.built.values()), keep_cache=True)


@pytest.fixture(scope="module")
def images(podman: None) -> Iterator[Images]:
    found = Images()
    found.engine.build(BASE_DOCKERFILE, FIXTURE, tags=[BASE], labels=TEST_LABEL, timeout=300)
    yield found
    found.remove_all()


def assert_blubber_labels(info: ImageInfo, variant: str) -> None:
    assert info.labels["blubber.variant"] == variant
    assert info.labels["blubber.version"] == __version__


def assert_ca_not_baked_in(images: Images, image: str, info: ImageInfo) -> None:
    assert not set(images.engine.ca_env) & set(info.env), info.env
    assert images.sh(image, "test ! -e /dev/chute-ca-bundle.crt && echo absent").strip() == "absent"


# ------------------------------------------------------------------ node


@pytest.mark.slow
def test_node_service_with_npm_ci_and_a_real_npm_dependency(images: Images) -> None:
    image = images.build("node-service")
    info = images.inspect(image)
    assert info.user == "runuser" and info.workdir == "/srv/app"
    assert info.entrypoint == ("node", "index.js") and not info.cmd
    assert info.env["NODE_ENV"] == "production"
    assert_blubber_labels(info, "node-service")
    assert_ca_not_baked_in(images, image, info)
    assert any("npm ci" in line for line in images.logs["node-service"])
    # The entrypoint uses is-number@7.0.0, installed by `npm ci` from the lock file.
    assert images.run(image, "3.5") == "is-number(3.5) = true NODE_ENV=production"
    assert images.run(image, "three") == "is-number(three) = false NODE_ENV=production"
    files = images.sh(image, "node -e \"console.log(require('is-number/package.json').version, "
                             "require('is-number')(7))\"; id -u; stat -c '%u:%g' node_modules/is-number; "
                             "test -e node_modules/isarray && echo dev-dependency-installed || true")
    # env production: `--only=production` leaves the devDependency out.
    assert files.split("\n")[:3] == ["7.0.0 true", "900", "65533:65533"]
    assert "dev-dependency-installed" not in files


@pytest.mark.slow
def test_node_builders_entry_installs_dev_dependencies_too(images: Images) -> None:
    image = images.build("node-builder")
    info = images.inspect(image)
    assert info.env.get("NODE_ENV", "") == ""
    assert_blubber_labels(info, "node-builder")
    assert images.run(image, "12") == "is-number(12) = true NODE_ENV="
    assert images.sh(image, "node -p \"require('isarray')([1])\"").strip() == "true"


# ------------------------------------------------------------------ python


@pytest.mark.slow
def test_python_virtualenv_with_a_pypi_requirement(images: Images) -> None:
    image = images.build("python-venv")
    info = images.inspect(image)
    assert info.user == "runuser" and info.workdir == "/srv/app"
    assert info.env["VIRTUAL_ENV"] == "/opt/lib/venv"
    assert info.env["PATH"].startswith("/opt/lib/venv/bin:")
    assert info.entrypoint == ("python3", "hello.py")
    assert_blubber_labels(info, "python-venv")
    assert_ca_not_baked_in(images, image, info)
    # As the runtime user, python3 is the venv's and six comes from PyPI into the venv.
    out = images.run(image)
    assert out.splitlines() == ["six 1.16.0 from /opt/lib/venv/lib/python3.11/site-packages/six.py",
                                "python /opt/lib/venv"]
    check = images.sh(image, "id -un; stat -c '%U %n' /opt/lib/venv; command -v pip; "
                             "python3 -c 'import yaml' 2>&1 | tail -1")
    lines = check.splitlines()
    assert lines[:3] == ["runuser", "somebody /opt/lib/venv", "/opt/lib/venv/bin/pip"]
    # Without use-system-site-packages, Debian's python3-yaml is not visible in the venv.
    assert "ModuleNotFoundError" in lines[3]


@pytest.mark.slow
def test_python_system_site_packages_and_tool_version_pins(images: Images) -> None:
    image = images.build("python-system")
    info = images.inspect(image)
    assert info.env["VIRTUAL_ENV"] == "/opt/lib/venv"
    assert_blubber_labels(info, "python-system")
    # Debian's python3-yaml, seen from the venv as the runtime user.
    out = images.run(image)
    assert out.startswith("yaml 6.0") and "/usr/lib/python3/dist-packages/yaml/__init__.py /opt/lib/venv" in out
    assert "include-system-site-packages = true" in images.sh(image, "cat /opt/lib/venv/pyvenv.cfg")
    listing = json.loads(images.sh(image, "pip list --local --format json --disable-pip-version-check"))
    versions = {p["name"].lower(): p["version"] for p in listing}
    assert versions["pip"].startswith("26.") and versions["setuptools"].startswith("81.")
    assert versions["wheel"].startswith("0.46.") and versions["tox"] == "4.49.1"
    assert "4.49.1 from /opt/lib/venv/" in images.sh(image, "tox --version")


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["poetry1", "poetry2-main", "poetry2-without-dev"])
def test_poetry_installs_main_dependencies_only(images: Images, variant: str) -> None:
    image = images.build(variant)
    info = images.inspect(image)
    assert info.entrypoint == ("poetry", "run", "python3", "hello.py")
    assert_blubber_labels(info, variant)
    assert info.env["POETRY_VIRTUALENVS_PATH"] == "/opt/lib/poetry"
    out = images.run(image)
    assert "six 1.16.0 from /opt/lib/venv/" in out, out
    wanted = "1.5.1" if variant == "poetry1" else "2.0.1"
    check = images.sh(image, "poetry --version; python3 -c 'import toml' 2>&1 | tail -1")
    assert wanted in check.splitlines()[0]
    assert "ModuleNotFoundError" in check  # the dev group (toml) is left out


# ------------------------------------------------------------------ php


@pytest.mark.slow
def test_php_with_debian_composer_and_production_without_dev(images: Images) -> None:
    image = images.build("php-app")
    info = images.inspect(image)
    assert info.user == "runuser" and info.entrypoint == ("php", "hello.php")
    assert_blubber_labels(info, "php-app")
    assert images.run(image).splitlines() == ["hello, php", "dev-tools installed"]
    assert images.sh(image, "ls vendor/chute; test -f composer.lock && echo locked").split() == [
        "dev-tools", "greeting", "locked"]

    production = images.build("php-production")
    assert any('composer install "--no-scripts" "--no-dev"' in line for line in images.logs["php-production"])
    assert images.run(production).splitlines() == ["hello, php", "dev-tools not installed"]
    assert images.sh(production, "ls vendor/chute").split() == ["greeting"]


# ------------------------------------------------------------------ builders


@pytest.mark.slow
def test_builder_string_command_compiles_c_with_apt_gcc(images: Images) -> None:
    image = images.build("c-hello")
    info = images.inspect(image)
    assert info.entrypoint == ("./hello",) and info.workdir == "/srv/app"
    assert_blubber_labels(info, "c-hello")
    assert images.run(image, "a", "b") == "hello from C with 2 argument(s)"
    assert images.sh(image, "command -v gcc; ls").split() == ["/usr/bin/gcc", "hello", "main.c"]


@pytest.mark.slow
def test_builder_list_command_with_excluded_requirements(images: Images) -> None:
    image = images.build("c-exclude")
    assert images.run(image) == "hello from C with 0 argument(s)"
    built_from = images.sh(image, "cat built-from.txt").split()
    # The whole context minus *.md (NOTES.md) and minus .dockerignore's /README.md.
    assert "main.c" in built_from and "hello.sh" in built_from and "poetry1" in built_from
    assert "NOTES.md" not in built_from and "README.md" not in built_from


@pytest.mark.slow
def test_builders_run_in_order_python_then_two_custom(images: Images) -> None:
    image = images.build("builders-order")
    info = images.inspect(image)
    assert info.env["VIRTUAL_ENV"] == "/opt/lib/venv"
    assert_blubber_labels(info, "builders-order")
    # The custom builders run after the python builder (they use its venv), in their list order.
    assert images.run(image).splitlines() == [
        "six 1.16.0 from /opt/lib/venv/lib/python3.11/site-packages/six.py", "python /opt/lib/venv", "last"]


# ------------------------------------------------------------------ copies, users, environment


@pytest.mark.slow
def test_copy_local_with_dockerignore_includes_and_default_users(images: Images) -> None:
    hello = images.build("hello")
    info = images.inspect(hello)
    assert info.user == "runuser" and info.workdir == "/srv/app"
    assert info.entrypoint == ("./hello.sh",) and not info.cmd  # the base image's CMD is cleared
    assert_blubber_labels(info, "hello")
    assert images.run(hello) == "hello from hello.sh as runuser in /srv/app FOO= BAZ="
    listing = images.sh(hello, "ls -A; stat -c '%u:%g %a' hello.sh; getent passwd somebody runuser | "
                               "cut -d: -f1,3,4; getent group somebody runuser | cut -d: -f1,3").split()
    assert "hello.sh" in listing and "NOTES.md" in listing
    assert "README.md" not in listing  # .dockerignore: /README.md
    assert listing[-6:] == ["65533:65533", "755", "somebody:65533:65533", "runuser:900:900", "somebody:65533",
                            "runuser:900"]

    hey = images.build("hey")  # includes: [hello]
    info = images.inspect(hey)
    assert info.entrypoint == ("./hello.sh",)
    assert info.env["FOO"] == "bar" and info.env["BAZ"] == "qux"
    assert_blubber_labels(info, "hey")
    assert images.run(hey) == "hello from hello.sh as runuser in /srv/app FOO=bar BAZ=qux"


@pytest.mark.slow
def test_custom_owners_and_insecure_runtime_user(images: Images) -> None:
    owners = images.build("custom-owners")
    info = images.inspect(owners)
    assert info.user == "apprunner" and info.workdir == "/usr/local/app"
    assert images.run(owners) == "hello from hello.sh as apprunner in /usr/local/app FOO= BAZ="
    ids = images.sh(owners, "id; stat -c '%u:%g' /usr/local/app/hello.sh /usr/local/app; "
                            "getent passwd appowner | cut -d: -f3,4").splitlines()
    assert ids[0].startswith("uid=4321(apprunner) gid=4320(apprunner)")
    assert ids[1:] == ["1234:1235", "1234:1235", "1234:1235"]

    insecure = images.build("insecure")
    info = images.inspect(insecure)
    # runs.insecurely: the image runs as the lives user; runs.in is the working directory.
    assert info.user == "appowner" and info.workdir == "/usr/local/app/run"
    assert_blubber_labels(info, "insecure")
    assert images.run(insecure) == "hello from hello.sh as appowner in /usr/local/app/run FOO= BAZ="
    assert images.sh(insecure, "id -u; getent passwd apprunner | cut -d: -f3").split() == ["1234", "4321"]


@pytest.mark.slow
def test_scratch_image_with_a_static_binary_copied_transitively(images: Images) -> None:
    image = images.build("tiny")
    info = images.inspect(image)
    assert info.user == "" and info.entrypoint == ("/bin/busybox",)
    assert_blubber_labels(info, "tiny")
    # tiny copies from relay only; relay copies from static-tools (a stage tiny never names).
    assert images.run(image, "cat", "/stamp.txt") == "made-in-static-tools"
    busybox_sh = ("/bin/busybox", "sh")
    root = images.sh(image, "ls -A /; id -u", shell=busybox_sh).split()
    assert [e for e in root if e not in ("dev", "etc", "proc", "sys", "run")] == ["bin", "stamp.txt", "0"]
    assert images.sh(image, "ls /bin", shell=busybox_sh).split() == ["busybox"]


def test_labels_on_an_image_with_nothing_but_labels(images: Images) -> None:
    info = images.inspect(images.build("labels-only"))
    assert_blubber_labels(info, "labels-only")
    assert info.entrypoint is None and info.user == ""


# ------------------------------------------------------------------ arguments

ARGUMENTS = f"""
version: v4
base: {DEBIAN}
arguments: {{MAKE_TARGET: foo, GREETING: "hello world"}}
variants:
  make:
    builder: {{command: 'touch "${{MAKE_TARGET}}" && echo "$GREETING" > greeting.txt'}}
    entrypoint: [ls]
"""


def test_arguments_have_defaults_and_can_be_overridden(images: Images) -> None:
    default = images.build("make", config=ARGUMENTS)
    info = images.inspect(default)
    assert "MAKE_TARGET" not in info.env and "GREETING" not in info.env  # ARG, not ENV
    assert_blubber_labels(info, "make")
    assert images.run(default).split() == ["foo", "greeting.txt"]
    overridden = images.build("make", config=ARGUMENTS, build_args={"MAKE_TARGET": "bar"})
    assert overridden != default
    assert images.run(overridden).split() == ["bar", "greeting.txt"]
    assert images.sh(overridden, "cat greeting.txt").strip() == "hello world"


# ------------------------------------------------------------------ apt sources (a real signed repository)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def _gpg(home: Path, *args: str, stdin: str | None = None) -> str:
    proc = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback",
                           "--passphrase", "", *args], capture_output=True, text=True, input=stdin, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _make_signed_apt_repo(root: Path, gpg_home: Path) -> str:
    """A one-package apt repository (suite chute-test, component main) signed by a fresh key.

    Returns the ASCII-armored public key. The package, ``chute-hello``, installs
    ``/usr/bin/chute-hello`` and its doc file.
    """
    pkg = root / "build" / "chute-hello"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "DEBIAN" / "control").write_text(
        "Package: chute-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: chute <chute@example.invalid>\n"
        "Description: test package from chute's local apt repository\n")
    (pkg / "usr" / "bin").mkdir(parents=True)
    (pkg / "usr" / "bin" / "chute-hello").write_text("#!/bin/sh\necho \"hello from a signed apt repository\"\n")
    (pkg / "usr" / "bin" / "chute-hello").chmod(0o755)
    (pkg / "usr" / "share" / "doc" / "chute-hello").mkdir(parents=True)
    (pkg / "usr" / "share" / "doc" / "chute-hello" / "README").write_text("chute-hello\n")
    repo = root / "repo"
    pool = repo / "pool" / "main"
    pool.mkdir(parents=True)
    deb = pool / "chute-hello_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(pkg), str(deb)], check=True,
                   capture_output=True)
    control = subprocess.run(["dpkg-deb", "--field", str(deb)], check=True, capture_output=True,
                             text=True).stdout
    data = deb.read_bytes()
    packages = (control.rstrip("\n") + f"\nFilename: pool/main/{deb.name}\nSize: {len(data)}\n"
                f"SHA256: {hashlib.sha256(data).hexdigest()}\n\n")
    index = repo / "dists" / "chute-test" / "main" / "binary-amd64" / "Packages"
    index.parent.mkdir(parents=True)
    index.write_text(packages)
    body = packages.encode()
    release = repo / "dists" / "chute-test" / "Release"
    release.write_text(
        "Origin: chute\nLabel: chute\nSuite: chute-test\nCodename: chute-test\nArchitectures: amd64 all\n"
        f"Components: main\nDate: {time.strftime('%a, %d %b %Y %H:%M:%S UTC', time.gmtime())}\n"
        f"SHA256:\n {hashlib.sha256(body).hexdigest()} {len(body)} main/binary-amd64/Packages\n")
    gpg_home.mkdir(mode=0o700)
    _gpg(gpg_home, "--quick-generate-key", "chute test repository <apt@example.invalid>", "ed25519", "sign", "never")
    _gpg(gpg_home, "--clearsign", "--output", str(release.parent / "InRelease"), str(release))
    return _gpg(gpg_home, "--armor", "--export", "apt@example.invalid")


@pytest.mark.slow
def test_apt_sources_install_from_a_signed_third_party_repository(images: Images, tmp_path: Path) -> None:
    if shutil.which("gpg") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("gpg and dpkg-deb are needed to make the test repository (apt-get install gnupg dpkg)")
    gpg_home = tmp_path / "gnupg"
    try:
        key = _make_signed_apt_repo(tmp_path, gpg_home)
    finally:
        subprocess.run(["gpgconf", "--homedir", str(gpg_home), "--kill", "all"], capture_output=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             partial(_QuietHandler, directory=str(tmp_path / "repo")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # Blubber wants an http(s) URL; a build container reaches the host's loopback only with the host
    # network, so this one engine builds with a containers.conf that says netns = "host".
    conf = tmp_path / "containers.conf"
    base_conf = Path(_podman_environ().get("CONTAINERS_CONF", CONF))
    text = base_conf.read_text() if base_conf.is_file() else ""
    conf.write_text(text.replace("[containers]", '[containers]\nnetns = "host"', 1) if "[containers]" in text
                    else '[containers]\nnetns = "host"\n' + text)
    engine = PodmanEngine(environ={**_podman_environ(), "CONTAINERS_CONF": str(conf)})
    config = f"""
        version: v4
        base: {DEBIAN}
        apt:
          sources:
            - url: http://127.0.0.1:{server.server_address[1]}/
              distribution: chute-test
              components: [main]
              signed-by: {json.dumps(key)}
          packages:
            chute-test: [chute-hello]
        variants:
          third-party:
            entrypoint: [chute-hello]
    """
    try:
        image = images.build("third-party", config=config, engine=engine)
    finally:
        server.shutdown()
        server.server_close()
    info = images.inspect(image)
    assert info.entrypoint == ("chute-hello",)
    assert_blubber_labels(info, "third-party")
    assert images.run(image) == "hello from a signed apt repository"
    listing = images.sh(image, "ls /usr/share/doc/chute-hello; ls /etc/apt/keyrings; "
                               "cat /etc/apt/sources.list.d/99blubber.list")
    assert listing.split("\n")[0] == "README"
    assert "[signed-by=/etc/apt/keyrings/" in listing and " chute-test main" in listing
