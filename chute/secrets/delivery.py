"""Which secrets a run needs: the ``run.credentials`` of its pipeline, read from trusted config.

The server calls :func:`credentials_of` when it queues a *trusted* run, on the
``.pipeline/config.yaml`` of the run's own commit (a commit of the default
branch or a tag: reviewed code). The ids go into the job's payload (names only);
the agent fetches exactly those values when it starts the job, and nothing else.
Credential ids are never interpolated (PipelineLib did not, spec §3.5), so this
list is known before anything runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Credential:
    """One ``run.credentials`` entry: secret ``id`` given to the step as ``name`` (env value or file path)."""

    id: str
    name: str
    as_: str = "env"  # env | file (chute extension)
    stage: str = ""


def credentials_of(config: Any, pipelines: Iterable[str] | None = None) -> list[Credential]:
    """Every credential the stages of ``pipelines`` (default: all) ask for, in file order."""
    wanted = None if pipelines is None else set(pipelines)
    out: list[Credential] = []
    for pname, pipe in config.pipelines.items():
        if wanted is not None and pname not in wanted:
            continue
        for stage in pipe.stages.values():
            run = stage.run if isinstance(stage.run, dict) else None
            for cred in (run or {}).get("credentials") or []:
                if isinstance(cred, dict) and isinstance(cred.get("id"), str):
                    out.append(Credential(cred["id"], str(cred.get("name") or cred["id"]),
                                          cred.get("as") or "env", stage.name))
    return out


def credential_ids(config: Any, pipelines: Iterable[str] | None = None) -> list[str]:
    """The distinct secret names a run of ``pipelines`` needs, sorted."""
    return sorted({c.id for c in credentials_of(config, pipelines)})
