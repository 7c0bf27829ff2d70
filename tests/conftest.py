"""Shared fixtures: databases (SQLite and PostgreSQL), git repositories from the examples."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _pg_admin_url() -> str | None:
    return os.environ.get("CHUTE_TEST_POSTGRES_URL")


@pytest.fixture(autouse=True)
def default_ctrl_c() -> Iterator[None]:
    """Every test starts with Python's own Ctrl-C handler: a library that installs its own and
    never puts the old one back (an event loop's signal handling) made later Ctrl-C tests see
    no KeyboardInterrupt."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a new PostgreSQL database per test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'chute.db'}"
        return
    admin = _pg_admin_url()
    if not admin:
        if os.environ.get("CI"):
            pytest.fail("CHUTE_TEST_POSTGRES_URL is not set in CI: .ci/run must start PostgreSQL")
        pytest.skip("PostgreSQL not configured (CHUTE_TEST_POSTGRES_URL); .ci/run starts it")
    import sqlalchemy as sa

    name = f"chute_t_{uuid.uuid4().hex[:12]}"
    eng = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    base, _, _ = admin.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with eng.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        eng.dispose()


def git(cwd: Path, *args: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="Ada Dev", GIT_AUTHOR_EMAIL="ada@example.org",
               GIT_COMMITTER_NAME="Ada Dev", GIT_COMMITTER_EMAIL="ada@example.org")
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env).stdout.strip()


def make_repo(dest: Path, source: Path | None = None, files: dict[str, str] | None = None) -> Path:
    """A git repository (branch main) holding ``source``'s files and/or ``files``; one commit."""
    dest.mkdir(parents=True, exist_ok=True)
    if source is not None:
        shutil.copytree(source, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    for rel, text in (files or {}).items():
        p = dest / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "initial commit")
    return dest


@pytest.fixture
def greeter_repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "greeter", EXAMPLES / "greeter")
