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
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

_SHA = re.compile(r"^[0-9a-f]{7,64}$")
_FULL_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")


class _Immutable:
    """A bounded, thread-safe memo of answers that can never change once git gave them.

    Keyed by a mirror and a *full* commit id (never a ref or an abbreviation): the files at a
    commit, and whether a full id names a commit, are fixed by the id itself. Only positive
    answers are kept (a commit missing now may be fetched later). Least recently used first out.
    """

    def __init__(self, max_entries: int) -> None:
        self._max = max_entries
        self._data: OrderedDict[tuple[str, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...]) -> bytes | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: tuple[str, ...], value: bytes) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._max:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


# A webhook reads .pipeline/config.yaml at its commit up to four times (the pipelines, the
# trust notes, the credentials, the environments): one `git show` is enough. 128 blobs of at
# most 64 KiB bound the memory to 8 MiB.
_BLOBS = _Immutable(128)
_BLOB_MAX = 64 * 1024
_COMMITS = _Immutable(1024)  # full ids known to be commits of a mirror
# The origin URL each mirror was last set to by this process, with its config file's stat then:
# `remote set-url` runs again only when the URL or the file changed.
_ORIGIN: dict[str, tuple[str, int, int, int]] = {}
_ORIGIN_LOCK = threading.Lock()


def clear_caches() -> None:
    """Forget the memoised blobs, commits and origin URLs (tests)."""
    _BLOBS.clear()
    _COMMITS.clear()
    with _ORIGIN_LOCK:
        _ORIGIN.clear()


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
            self._origin_set()
            return
        if not self._origin_is_set():
            _git(["remote", "set-url", "origin", self.url], cwd=self.path)
            self._origin_set()
        _git(["fetch", "--prune", "--quiet", "origin", "+refs/*:refs/*"], cwd=self.path)

    def _config_stat(self) -> tuple[int, int, int] | None:
        try:
            st = (self.path / "config").stat()
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size  # git rewrites it by rename: a new inode

    def _origin_is_set(self) -> bool:
        """Whether this process set origin to ``self.url`` and the mirror's config is unchanged since."""
        with _ORIGIN_LOCK:
            known = _ORIGIN.get(str(self.path))
        stat = self._config_stat()
        return known is not None and stat is not None and known == (self.url, *stat)

    def _origin_set(self) -> None:
        stat = self._config_stat()
        with _ORIGIN_LOCK:
            if stat is None:
                _ORIGIN.pop(str(self.path), None)
            else:
                _ORIGIN[str(self.path)] = (self.url, *stat)

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
        if _FULL_SHA.match(rev) and _COMMITS.get((str(self.path), rev)) is not None:
            return rev  # a full commit id names itself for good (refs are always asked)
        proc = _git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=self.path, check=False)
        if proc.returncode != 0:
            raise RepoError(f"no commit {rev!r} in {self.url}")
        sha = proc.stdout.decode().strip()
        self._known_commit(sha)
        return sha

    def _known_commit(self, sha: str) -> None:
        if _FULL_SHA.match(sha):
            _COMMITS.put((str(self.path), sha), b"1")

    def has_commit(self, sha: str) -> bool:
        return _git(["cat-file", "-e", f"{sha}^{{commit}}"], cwd=self.path, check=False).returncode == 0

    def commit_meta(self, rev: str) -> dict[str, str] | None:
        """:meth:`commit_info` of the commit ``rev`` names, or None when the mirror has no such commit.

        One git call answers what ``has_commit``, ``resolve`` and ``commit_info`` would in three:
        ``commit`` is the full id (an abbreviation or a tag peeled to its commit).
        """
        if not rev or rev.startswith("-"):
            return None
        proc = _git(["show", "-s", "--format=%H%n%an <%ae>%n%cI%n%s", f"{rev}^{{commit}}", "--"],
                    cwd=self.path, check=False)
        if proc.returncode != 0:
            return None
        sha, author, date, subject = [*proc.stdout.decode().splitlines(), "", "", "", ""][:4]
        if not sha:
            return None
        self._known_commit(sha)
        return {"commit": sha, "author": author, "date": date, "subject": subject}

    def read_file(self, commit: str, path: str) -> bytes | None:
        """The file's bytes at ``commit``, or None when it does not exist there.

        Memoised when ``commit`` is a full id: the same (commit, path) is read once.
        """
        if not _SHA.match(commit) and commit.startswith("-"):
            raise RepoError(f"bad revision {commit!r}")
        key = (str(self.path), commit, path)
        if _FULL_SHA.match(commit):
            cached = _BLOBS.get(key)
            if cached is not None:
                return cached
        proc = _git(["show", f"{commit}:{path}"], cwd=self.path, check=False)
        if proc.returncode != 0:
            return None
        if _FULL_SHA.match(commit) and len(proc.stdout) <= _BLOB_MAX:
            _BLOBS.put(key, proc.stdout)
        return proc.stdout

    def is_ancestor(self, commit: str, ref: str) -> bool:
        """Whether ``commit`` is ``ref`` or one of its ancestors (``git merge-base --is-ancestor``)."""
        if not commit or commit.startswith("-") or ref.startswith("-"):
            return False
        return _git(["merge-base", "--is-ancestor", commit, ref], cwd=self.path, check=False).returncode == 0

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
