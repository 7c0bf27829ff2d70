"""Git repositories as chute sees them: a local mirror, files at a commit, refs, checkouts.

The server keeps a bare mirror per project (``$CHUTE_HOME/repos/<name>.git``)
to read ``.pipeline/config.yaml`` at any commit and to poll refs; agents keep
their own mirror and check out the commit a job names. Every git call passes
arguments as a list (no shell), so a branch or path never becomes a command.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_SHA = re.compile(r"^[0-9a-f]{7,64}$")


class RepoError(Exception):
    """A git operation failed; the message says which and why."""


def _git(args: list[str], *, cwd: Path | None = None, timeout: float = 300, check: bool = True,
         input_bytes: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=timeout, env=env,
                              input=input_bytes)
    except FileNotFoundError:
        raise RepoError("git is not installed: apt-get install git") from None
    except subprocess.TimeoutExpired:
        raise RepoError(f"git {args[0]} took longer than {timeout:.0f} s") from None
    if check and proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise RepoError(f"git {' '.join(args[:2])} failed: {msg[-1] if msg else 'exit ' + str(proc.returncode)}")
    return proc


@dataclass
class Mirror:
    """A bare mirror of ``url`` at ``path``."""

    url: str
    path: Path

    def sync(self) -> None:
        """Create the mirror or fetch every ref (branches, tags, review refs)."""
        if not (self.path / "HEAD").exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            _git(["clone", "--mirror", "--quiet", "--", self.url, str(tmp)])
            tmp.rename(self.path)
            return
        _git(["remote", "set-url", "origin", self.url], cwd=self.path)
        _git(["fetch", "--prune", "--quiet", "origin", "+refs/*:refs/*"], cwd=self.path)

    def fetch_ref(self, ref: str) -> str:
        """Fetch one ref (e.g. a Gerrit ``refs/changes/..`` or GitHub ``refs/pull/..``); return its sha."""
        if ref.startswith("-"):
            raise RepoError(f"bad ref {ref!r}")
        _git(["fetch", "--quiet", "origin", f"+{ref}:{ref}"], cwd=self.path)
        return self.resolve(ref)

    def refs(self) -> dict[str, str]:
        out = _git(["for-each-ref", "--format=%(refname) %(objectname)", "refs/heads", "refs/tags"],
                   cwd=self.path).stdout.decode()
        refs: dict[str, str] = {}
        for line in out.splitlines():
            name, _, sha = line.partition(" ")
            refs[name] = sha
        return refs

    def resolve(self, rev: str) -> str:
        if rev.startswith("-"):
            raise RepoError(f"bad revision {rev!r}")
        proc = _git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=self.path, check=False)
        if proc.returncode != 0:
            raise RepoError(f"no commit {rev!r} in {self.url}")
        return proc.stdout.decode().strip()

    def has_commit(self, sha: str) -> bool:
        return _git(["cat-file", "-e", f"{sha}^{{commit}}"], cwd=self.path, check=False).returncode == 0

    def read_file(self, commit: str, path: str) -> bytes | None:
        """The file's bytes at ``commit``, or None when it does not exist there."""
        if not _SHA.match(commit) and commit.startswith("-"):
            raise RepoError(f"bad revision {commit!r}")
        proc = _git(["show", f"{commit}:{path}"], cwd=self.path, check=False)
        return proc.stdout if proc.returncode == 0 else None

    def list_files(self, commit: str) -> list[str]:
        out = _git(["ls-tree", "-r", "--name-only", commit], cwd=self.path).stdout.decode()
        return out.splitlines()

    def commit_info(self, commit: str) -> dict[str, str]:
        out = _git(["show", "-s", "--format=%H%n%an <%ae>%n%cI%n%s", commit], cwd=self.path).stdout.decode()
        sha, author, date, subject = [*out.splitlines(), "", "", "", ""][:4]
        return {"commit": sha, "author": author, "date": date, "subject": subject}

    def commits_between(self, old: str | None, new: str, limit: int = 500) -> list[str]:
        """Commits reachable from ``new`` but not ``old`` (newest first)."""
        args = ["rev-list", f"--max-count={limit}", new]
        if old:
            args.append(f"^{old}")
        return _git(args, cwd=self.path).stdout.decode().split()

    def checkout(self, commit: str, dest: Path) -> Path:
        """Write the tree of ``commit`` to ``dest`` (a fresh directory, no .git inside)."""
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        archive = _git(["archive", "--format=tar", commit], cwd=self.path).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        return dest


def is_local_path(url: str) -> bool:
    return "://" not in url and not re.match(r"^[\w.-]+@[\w.-]+:", url)


def mirror_for(home: Path, name: str, url: str) -> Mirror:
    if is_local_path(url):
        url = str(Path(url).expanduser().resolve())
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return Mirror(url, home / "repos" / f"{safe}.git")
