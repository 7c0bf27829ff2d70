"""``chute init``: write a commented starter ``.pipeline/`` for a repository, by detecting its stack.

The files are meant to be read and edited: every line says what it does. They
use only fields both chute and Wikimedia's tools understand, so a team can move
between them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BASE = "docker-registry.wikimedia.org/bookworm:latest"


@dataclass
class Stack:
    name: str  # python | node | php | go | static
    evidence: str  # the file that gave it away


def detect(repo: Path) -> Stack:
    """Guess the stack from well-known files; ``static`` when nothing else matches."""
    checks = [
        ("python", ["pyproject.toml", "setup.py", "requirements.txt", "setup.cfg"]),
        ("node", ["package.json"]),
        ("php", ["composer.json"]),
        ("go", ["go.mod"]),
        ("static", ["index.html", "public/index.html", "site/index.html"]),
    ]
    for name, files in checks:
        for f in files:
            if (repo / f).is_file():
                return Stack(name, f)
    return Stack("static", "(nothing recognised)")


def _python(repo: Path, base: str) -> str:
    reqs = [f for f in ("requirements.txt", "requirements-test.txt", "test-requirements.txt") if (repo / f).is_file()]
    has_tests = (repo / "tests").is_dir() or any(repo.glob("test_*.py"))
    uses_pytest = any("pytest" in (repo / f).read_text(errors="replace") for f in [*reqs, "pyproject.toml"]
                      if (repo / f).is_file())
    test_cmd = "[python3, -m, pytest]" if uses_pytest else "[python3, -m, unittest, discover, -v]"
    req_list = ", ".join(reqs) if reqs else ""
    entry = "app.py"
    for candidate in ("app.py", "main.py", "server.py", "wsgi.py"):
        if (repo / candidate).is_file():
            entry = candidate
            break
    return f"""# How this repository's images are built (Blubber config, version v4).
# Try it: chute blubber .pipeline/blubber.yaml test
version: v4
# The image every variant starts from (a Debian bookworm image).
base: {base}
# Debian packages installed as root before anything else.
apt:
  packages: [python3, python3-venv]
# Where the application lives in the image, and the user who owns the files.
lives:
  in: /srv/app
# Environment of the running container; PORT is the port the service listens on.
runs:
  environment:
    PORT: "8080"
variants:
  # `build` installs the Python dependencies into a virtualenv and copies the code in.
  build:
    python:
      version: python3{f'''
      requirements: [{req_list}]''' if req_list else '''
      requirements: []'''}
    copies: [local]
  # `test` is what the test pipeline runs: the unit tests.{'' if has_tests else ' (no tests/ found yet: add some!)'}
  test:
    includes: [build]
    entrypoint: {test_cmd}
  # `production` is the image that gets published and deployed.
  production:
    includes: [build]
    entrypoint: [python3, {entry}]
"""


def _node(repo: Path, base: str) -> str:
    reqs = ["package.json"] + (["package-lock.json"] if (repo / "package-lock.json").is_file() else [])
    main = "server.js"
    try:
        pkg = json.loads((repo / "package.json").read_text())
        main = pkg.get("main") or main
    except (OSError, ValueError):
        pass
    ci = "\n      use-npm-ci: true          # package-lock.json exists: install exactly what it pins" \
        if len(reqs) == 2 else ""
    return f"""# How this repository's images are built (Blubber config, version v4).
# Try it: chute blubber .pipeline/blubber.yaml test
version: v4
# The image every variant starts from (a Debian bookworm image).
base: {base}
# Debian packages installed as root: Node.js and npm.
apt:
  packages: [nodejs, npm]
# Where the application lives in the image.
lives:
  in: /srv/app
runs:
  environment:
    PORT: "8080"
variants:
  # `build` installs the npm dependencies (package files first, so the layer is cached) and the code.
  build:
    node:
      requirements: [{', '.join(reqs)}]{ci}
    copies: [local]
  # `test` is what the test pipeline runs.
  test:
    includes: [build]
    entrypoint: [npm, test]
  # `production` installs production dependencies only, and runs the service.
  production:
    includes: [build]
    node:
      env: production
    entrypoint: [node, {main}]
"""


def _php(repo: Path, base: str) -> str:
    return f"""# How this repository's images are built (Blubber config, version v4).
# Try it: chute blubber .pipeline/blubber.yaml test
version: v4
# The image every variant starts from (a Debian bookworm image).
base: {base}
# Debian's PHP and Composer.
apt:
  packages: [php-cli, composer, unzip]
lives:
  in: /srv/app
runs:
  environment:
    PORT: "8080"
variants:
  # `build` runs composer install from composer.json (and composer.lock when present), then copies the code.
  build:
    php:
      requirements: [composer.json{', composer.lock' if (repo / 'composer.lock').is_file() else ''}]
    copies: [local]
  # `test` is what the test pipeline runs.
  test:
    includes: [build]
    entrypoint: [composer, test]
  # `production` leaves out the development dependencies.
  production:
    includes: [build]
    php:
      production: true
    entrypoint: [php, -S, "0.0.0.0:8080", -t, public]
"""


def _go(repo: Path, base: str) -> str:
    return f"""# How this repository's images are built (Blubber config, version v4).
# Try it: chute blubber .pipeline/blubber.yaml test
version: v4
# The image the build variants start from (a Debian bookworm image).
base: {base}
apt:
  packages: [golang, ca-certificates]
lives:
  in: /srv/app
variants:
  # `build` downloads the modules (go.mod/go.sum first, so the layer is cached) and compiles.
  build:
    builder:
      requirements: [go.mod{', go.sum' if (repo / 'go.sum').is_file() else ''}]
      command: [go, mod, download]
    copies: [local]
  # `test` runs the Go tests.
  test:
    includes: [build]
    entrypoint: [go, test, ./...]
  # `compile` builds the binary.
  compile:
    includes: [build]
    builder:
      command: [go, build, -o, app, .]
  # `production` copies only the binary into the image.
  production:
    copies:
      - from: compile
        source: /srv/app/app
        destination: /srv/app/app
    entrypoint: [/srv/app/app]
"""


def _static(repo: Path, base: str) -> str:
    return f"""# How this repository's images are built (Blubber config, version v4).
# Try it: chute blubber .pipeline/blubber.yaml production
version: v4
# The image every variant starts from (a Debian bookworm image).
base: {base}
# busybox brings a small web server (httpd).
apt:
  packages: [busybox]
lives:
  in: /srv/app
runs:
  environment:
    PORT: "8080"
variants:
  # `test` checks that the site has an index page.
  test:
    copies: [local]
    entrypoint: [test, -f, index.html]
  # `production` serves the files on port 8080.
  production:
    copies: [local]
    entrypoint: [busybox, httpd, -f, -v, -p, "8080", -h, /srv/app]
"""


CONFIG = """# What chute builds, tests and publishes for this repository (PipelineLib v0 format).
# Check it: chute lint        Run it locally: chute run test
pipelines:
  # Runs on every patch: build the `test` variant and run it.
  test:
    blubberfile: blubber.yaml        # relative to .pipeline/
    stages:
      - name: test                   # "name only" = build the variant of that name and run it
  # Runs after merge: test again, then build `production` and publish it to the registry.
  publish:
    blubberfile: blubber.yaml
    stages:
      - name: test
      - name: production
        build: production            # the Blubber variant to build
        publish:
          image:                     # tags: <timestamp>-production, the commit, and these:
            tags: [latest]
"""

_RENDER = {"python": _python, "node": _node, "php": _php, "go": _go, "static": _static}


def write_starter(repo: Path, *, base: str = DEFAULT_BASE, force: bool = False) -> tuple[Stack, list[Path]]:
    """Write ``.pipeline/blubber.yaml`` and ``.pipeline/config.yaml``; refuse to overwrite unless ``force``."""
    stack = detect(repo)
    out = repo / ".pipeline"
    files = {out / "blubber.yaml": _RENDER[stack.name](repo, base), out / "config.yaml": CONFIG}
    existing = [p for p in files if p.exists()]
    if existing and not force:
        raise FileExistsError(", ".join(str(p) for p in existing))
    out.mkdir(exist_ok=True)
    for path, text in files.items():
        path.write_text(text)
    return stack, list(files)
