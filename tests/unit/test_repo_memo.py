"""Mirror's memo: blobs and commits by full id only, the origin URL set again when it changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import chute.repo
from chute.repo import mirror_for
from tests.conftest import git, make_repo


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    seen: list[list[str]] = []
    real = chute.repo._git

    def counting(args: list[str], **kw: Any) -> Any:
        seen.append(list(args))
        return real(args, **kw)

    monkeypatch.setattr(chute.repo, "_git", counting)
    return seen


def test_a_file_is_read_once_per_commit_but_a_ref_is_always_asked(tmp_path: Path, calls: list[list[str]]) -> None:
    src = make_repo(tmp_path / "src", files={"c.yaml": "one\n"})
    m = mirror_for(tmp_path / "home", "p", str(src))
    m.sync()
    first = git(src, "rev-parse", "HEAD")
    calls.clear()
    assert m.read_file(first, "c.yaml") == b"one\n"
    assert m.read_file(first, "c.yaml") == b"one\n"
    assert m.read_file(first, "missing.yaml") is None
    assert m.read_file(first, "missing.yaml") is None  # absent answers are not memoised
    assert [c[0] for c in calls] == ["show", "show", "show"]
    (src / "c.yaml").write_text("two\n")
    git(src, "commit", "-qam", "two")
    m.sync()
    # A branch moves: read by its name it is always asked, and its new commit is read afresh.
    assert m.read_file("refs/heads/main", "c.yaml") == b"two\n"
    assert m.read_file(m.resolve("refs/heads/main"), "c.yaml") == b"two\n"
    assert m.read_file(first, "c.yaml") == b"one\n"
    # A full commit id that resolved once is not asked again; a ref always is.
    calls.clear()
    assert m.resolve(first) == first
    assert m.resolve(first) == first
    m.resolve("refs/heads/main")
    m.resolve("refs/heads/main")
    assert [c[0] for c in calls] == ["rev-parse", "rev-parse", "rev-parse"]


def test_commit_meta_is_existence_full_id_and_subject_in_one_call(tmp_path: Path, calls: list[list[str]]) -> None:
    src = make_repo(tmp_path / "src", files={"a": "1\n"})
    m = mirror_for(tmp_path / "home", "p", str(src))
    m.sync()
    sha = git(src, "rev-parse", "HEAD")
    calls.clear()
    info = m.commit_meta(sha[:10])
    assert info is not None and info["commit"] == sha and info["author"] == "Ada Dev <ada@example.org>"
    assert info == {**m.commit_info(sha), "commit": sha}
    assert m.commit_meta("0" * 40) is None and m.commit_meta("--help") is None
    assert m.is_ancestor(sha, "refs/heads/main") and not m.is_ancestor("-x", "refs/heads/main")


def test_the_origin_url_is_set_again_only_when_it_changed(tmp_path: Path, calls: list[list[str]]) -> None:
    a = make_repo(tmp_path / "a", files={"f": "a\n"})
    b = make_repo(tmp_path / "b", files={"f": "b\n"})
    home = tmp_path / "home"
    mirror_for(home, "p", str(a)).sync()  # the clone sets it
    mirror_for(home, "p", str(a)).sync()
    assert [c[:2] for c in calls] == [["clone", "--mirror"], ["fetch", "--prune"]]
    calls.clear()
    m = mirror_for(home, "p", str(b))  # the project's repository moved
    m.sync()
    assert [c[:2] for c in calls] == [["remote", "set-url"], ["fetch", "--prune"]]
    assert m.read_file(m.resolve("refs/heads/main"), "f") == b"b\n"
    calls.clear()
    m.sync()
    assert [c[:2] for c in calls] == [["fetch", "--prune"]]
    # Someone changed the mirror's config behind the server's back: set it again.
    git(m.path, "remote", "set-url", "origin", str(a))
    calls.clear()
    m.sync()
    assert [c[:2] for c in calls] == [["remote", "set-url"], ["fetch", "--prune"]]
    assert git(m.path, "config", "remote.origin.url") == str(b.resolve())
