"""Which runs are trusted, and what a change under review would change once merged.

The rule (docs/security.md, "Trust"): a run is **trusted** only when its commit is
reviewed code, that is

* a commit of the project's default branch: a merge or a push there (webhook or
  poller), or a manual run on it whose commit the branch really contains (checked
  here with ``git merge-base --is-ancestor``, so an API caller cannot pass off a
  patch's commit as the branch's);
* a tag, when the tag exists in the repository and names that commit (making a tag
  needs push rights in the review system, like merging).

Everything else (patch sets, merge and pull requests, pushes to other branches,
manual runs of other refs, and rechecks and reruns of any of these) is untrusted:
the patch's own ``.pipeline/config.yaml`` and Blubber file drive its build and run
stages, but it gets no secrets and its publish, promote, deploy and trigger steps are
refused with a message saying they run after merge. Environments are always read
from the default branch (``deploys.refresh_environments``).

So a trusted run's config *is* the reviewed config: chute never runs a change that is
still under review as trusted (it has no pre-merge "gate" pipeline), which is the case
where Zuul must take privileged jobs from the target branch instead of the change.

:func:`review_notes` tells the people reviewing a patch what of that kind it changes
(new or changed privileged steps, credentials, environments), as the first lines of
its runs' logs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from chute.repo import Mirror, RepoError
from chute.store import LogChunk, Project, Run

log = logging.getLogger("chute.trust")

PRIVILEGED = ("publish", "promote", "deploy", "trigger")
NOTE_PREFIX = "chute: trust: "


@dataclass(frozen=True)
class Verdict:
    trusted: bool
    why: str  # one sentence, for notes and logs


def contains(m: Mirror, ref: str, commit: str) -> bool:
    """Whether ``commit`` is ``ref`` or one of its ancestors."""
    return m.is_ancestor(commit, ref)


def decide(m: Mirror, project: Project, kind: str, commit: str, ref: str, branch: str) -> Verdict:
    """Trusted or not, for a change of ``kind`` (patchset, push-branch, merged, push, tag, manual)."""
    default = project.default_branch
    if kind in ("patchset", "comment"):
        return Verdict(False, "a change under review is untrusted")
    if kind == "tag":
        tag = ref if ref.startswith("refs/tags/") else f"refs/tags/{ref}"
        try:
            points_at = m.resolve(tag)
        except RepoError:
            return Verdict(False, f"tag {tag.removeprefix('refs/tags/')} does not exist in the repository")
        if points_at != commit:
            return Verdict(False, f"tag {tag.removeprefix('refs/tags/')} does not name commit {commit[:12]}")
        return Verdict(True, f"tag {tag.removeprefix('refs/tags/')}")
    if kind in ("merged", "push", "manual") and branch == default:
        if contains(m, f"refs/heads/{default}", commit):
            return Verdict(True, f"commit {commit[:12]} is on the default branch {default}")
        return Verdict(False, f"commit {commit[:12]} is not on the default branch {default}")
    return Verdict(False, f"branch {branch or ref or '?'} is not the default branch {default}")


# ------------------------------------------------------------------ what a patch changes
def _config_at(m: Mirror, rev: str) -> Any:
    from chute.config import ConfigError
    from chute.pipeline import parse_pipeline_config

    from .services import CONFIG_PATH

    try:
        raw = m.read_file(m.resolve(rev), CONFIG_PATH)
    except RepoError:
        return None
    if raw is None:
        return None
    try:
        return parse_pipeline_config(raw, CONFIG_PATH)
    except ConfigError:
        return None


def _stage_steps(cfg: Any) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for pname, pipe in cfg.pipelines.items():
        for sname, st in pipe.stages.items():
            out[(pname, sname)] = {step: st.step(step) for step in PRIVILEGED if st.step(step) is not None}
            run = st.run if isinstance(st.run, dict) else {}
            out[(pname, sname)]["credentials"] = sorted(
                (str(c.get("id")), str(c.get("name")), str(c.get("as") or "env"))
                for c in run.get("credentials") or [] if isinstance(c, dict))
    return out


def review_notes(m: Mirror, project: Project, commit: str, pipelines: list[str]) -> list[str]:
    """What an untrusted run of ``pipelines`` at ``commit`` cannot do, and what the change would change."""
    patch = _config_at(m, commit)
    if patch is None:
        return []
    default = project.default_branch
    target = _config_at(m, f"refs/heads/{default}")
    after = f"after merge to {default}, from its reviewed .pipeline/config.yaml"
    mine = _stage_steps(patch)
    theirs = _stage_steps(target) if target is not None else {}
    notes: list[str] = []
    for (pname, sname), steps in mine.items():
        base = theirs.get((pname, sname), {})
        where = f"stage {sname} of pipeline {pname}"
        for step in PRIVILEGED:
            if step not in steps:
                continue
            if step not in base:
                notes.append(f"this change adds `{step}` to {where}; it runs only {after}")
            elif steps[step] != base[step]:
                notes.append(f"this change modifies `{step}` in {where}; the change takes effect only {after}")
            elif pname in pipelines:
                notes.append(f"`{step}` in {where} is refused for a change under review; it runs {after}")
        creds = steps.get("credentials") or []
        if creds and creds != base.get("credentials", []):
            ids = ", ".join(sorted({c[0] for c in creds} - {c[0] for c in base.get("credentials", [])})) or \
                ", ".join(sorted({c[0] for c in creds}))
            notes.append(f"this change asks for credentials in {where} ({ids}); secrets are given only {after}")
        elif creds and pname in pipelines:
            notes.append(f"{where} asks for credentials ({', '.join(c[0] for c in creds)}); a change under "
                         f"review gets no secrets, so that step is refused; it runs {after}")
    mine_envs = patch.environments_raw or {}
    theirs_envs = (target.environments_raw if target is not None else None) or {}
    if mine_envs != theirs_envs:
        changed = sorted(k for k in set(mine_envs) | set(theirs_envs) if mine_envs.get(k) != theirs_envs.get(k))
        notes.append(f"this change modifies `environments` ({', '.join(map(str, changed))}); environments are "
                     f"read only from {default}, so this takes effect after merge")
    return notes


def review_pipelines(m: Mirror, project: Project, names: list[str]) -> list[str]:
    """For a change under review whose own config runs no pipeline: the ones the default branch runs for changes.

    Without this, a patch that adds ``publish`` to the only test pipeline would run nothing
    at all; with it, the patch is built and tested, and its ``publish`` is refused with a message.
    """
    target = _config_at(m, f"refs/heads/{project.default_branch}")
    if target is None:
        return []
    quiet = [n for n, p in target.pipelines.items()
             if not any(st.step(s) is not None for st in p.stages.values() for s in PRIVILEGED)]
    return [n for n in names if n in quiet]


def record_notes(s: Session, run: Run, notes: list[str]) -> None:
    """The notes as the first lines of the run's log (the set-up section; agents number theirs from 1e9)."""
    for i, note in enumerate(notes):
        s.add(LogChunk(run_id=run.id, seq=i, stage="", text=f"{NOTE_PREFIX}{note}\n"))


def credential_ids_at(m: Mirror, commit: str, pipeline: str) -> list[str]:
    """The secrets a trusted run of ``pipeline`` at ``commit`` asks for (its reviewed config)."""
    from chute.secrets.delivery import credential_ids

    cfg = _config_at(m, commit)
    return credential_ids(cfg, [pipeline]) if cfg is not None else []
