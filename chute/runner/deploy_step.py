"""PipelineLib's ``deploy`` step: a throwaway release of the stage's image, its test, its removal.

PipelineLib installed the chart into a CI namespace (``helm install --wait``), ran
``helm test`` and uninstalled it (spec/pipelinelib.md §5.9). chute runs the same
cycle on the podman target with :func:`chute.deploy.run_test_release`:

* the image is the one this pipeline published as ``deploy.image``/``deploy.tag``
  (defaults ``${.imageName}``/``${.imageTag}``), deployed by digest; a full reference
  (with a registry or ``localhost/``) is taken as written;
* with a chart in the repository (``deploy.chart.name`` names a directory holding
  ``Chart.yaml``, at the top or under ``.pipeline/`` or ``charts/``) and ``helm`` on the
  PATH, the chart is rendered; otherwise chute's own manifests are used, with
  ``deploy.overrides`` as their ``values`` (port, env, replicas, resources);
* "installed" means healthy within ``deploy.timeout`` seconds (default 120): the
  container runs and, with ``test: true`` (the default), ``GET /healthz`` answers 200;
* the release is always removed. The step exports ``releaseName``.

Only trusted runs (merged code) get here: the runner refuses privileged steps for a
patch under review, and this step checks again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chute.config import ConfigError

from .request import Runtime
from .steps import StepFailed, refusal


def deploy(rt: Runtime, stage: str, cfg: dict[str, Any], log: Any) -> dict[str, Any]:
    from chute.deploy import PodmanTarget, run_test_release

    if not rt.request.trusted:
        raise StepFailed(*refusal("deploy", rt.request))
    image = _image(rt, stage, cfg)
    chart = _chart(rt, cfg, log)
    test = bool(cfg.get("test", True))
    timeout = float(cfg.get("timeout") or 120)
    labels = {"chute.run": str(rt.request.run_id or ""), "chute.stage": stage}
    target = PodmanTarget(rt.workdir / "deploy-step", extra_labels=labels, stop_timeout=2)
    project = rt.request.project or rt.request.repo_dir.name
    log(f"chute: installing a test release of {image} (healthy within {timeout:g}s"
        f"{', then GET /healthz' if test else ''})\n")
    try:
        result = run_test_release(project, image, target=target, chart=chart, test=test, timeout=timeout,
                                  overrides=cfg.get("overrides") or None, health_path="/healthz" if test else None,
                                  workdir=str(rt.request.repo_dir))
    except ConfigError as err:
        raise StepFailed(f"deploy.overrides cannot be used as values for chute's manifests:\n{err.format()}",
                         "overrides take port, env, replicas and resources (or add a chart to the repository)") \
            from None
    finally:
        target.wait_idle()
    log(f"chute: test release {result.release}: {result.reason} ({result.seconds:.1f}s); removed\n")
    if result.test_output:
        log(result.test_output)
    if not result.ok:
        raise StepFailed(f"the test release {result.release} of {image} failed: {result.reason}",
                         "the release's output is in this stage's log")
    return {"releaseName": result.release}


def _image(rt: Runtime, stage: str, cfg: dict[str, Any]) -> str:
    """The reference to deploy: an image this run published (by digest), or a full reference."""
    name = str(cfg.get("image") or "").strip()
    tag = str(cfg.get("tag") or "").strip()
    if not name:
        raise StepFailed("deploy.image is empty", "publish an image in this stage or name one in deploy.image")
    with rt.lock:
        published = list(rt.images)
    for img in reversed(published):
        full = str(img["name"])
        if (full == name or full.endswith("/" + name)) and (not tag or tag in (img.get("tags") or [])):
            if img.get("local"):
                return f"{full}:{tag or img['tags'][0]}"
            return f"{full}@{img['digest']}"
    last = name.rsplit("/", 1)[-1]
    if "/" in name and (name.startswith("localhost/") or "." in name.split("/", 1)[0] or ":" in name.split("/", 1)[0]):
        if "@" in name or ":" in last or not tag:
            return name
        return f"{name}:{tag}"
    raise StepFailed(f"deploy: this pipeline published no image {name}{':' + tag if tag else ''}",
                     "publish it in this stage or an earlier one (publish: {image: true}), or give a full "
                     "reference such as registry.example.org/app:tag in deploy.image")


def _chart(rt: Runtime, cfg: dict[str, Any], log: Any) -> Any:
    """A chart directory of the repository named by deploy.chart.name, when helm can render it."""
    from chute.deploy import ChartRef, find_helm

    name = str((cfg.get("chart") or {}).get("name") or "")
    repo = Path(rt.request.repo_dir)
    for base in ("", ".pipeline", "charts"):
        candidate = repo / base / name if name else None
        if candidate is not None and (candidate / "Chart.yaml").is_file() and candidate.resolve().is_relative_to(
                repo.resolve()):
            if find_helm() is None:
                log(f"chute: chart {candidate.relative_to(repo)} found but no helm binary; "
                    "using chute's own manifests\n")
                return None
            return ChartRef(path=str(candidate.relative_to(repo)))
    return None
