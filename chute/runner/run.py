"""Run the pipelines of a checkout: stages along the DAG, steps in PipelineLib's order, results as data."""

from __future__ import annotations

import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chute.config import ConfigError
from chute.secrets.masking import NO_MASK, Masker

from . import steps
from .request import Observer, RunRequest, Runtime
from .scheduler import Outcome, schedule
from .steps import PRIVILEGED, StepFailed, refusal


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class _StageLog:
    """Writes a stage's output to its log file and to the observer, line by line, secrets masked."""

    def __init__(self, path: Path, observer: Observer, stage: str, masker: Masker = NO_MASK) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = path.open("a", encoding="utf-8")
        self.observer, self.stage, self.masker = observer, stage, masker
        self.lock = threading.Lock()

    def __call__(self, text: str) -> None:
        text = self.masker.mask(text)
        if not text.endswith("\n"):
            text += "\n"
        with self.lock:
            self.fh.write(text)
            self.fh.flush()
        self.observer.log(self.stage, text)

    def close(self) -> None:
        self.fh.close()


class _MaskingObserver(Observer):
    """Passes progress on with secret values masked (stage errors and exports; log lines are masked earlier)."""

    def __init__(self, inner: Observer, masker: Masker) -> None:
        self.inner, self.masker = inner, masker

    def graph(self, graph: dict[str, Any]) -> None:
        self.inner.graph(graph)

    def stage(self, name: str, status: str, error: str = "", exports: dict[str, Any] | None = None) -> None:
        self.inner.stage(name, status, self.masker.mask(error), self.masker.mask_doc(exports))

    def log(self, stage: str, text: str) -> None:
        self.inner.log(stage, self.masker.mask(text))


def run_pipelines(request: RunRequest, *, observer: Observer | None = None, cancel: threading.Event | None = None,
                  workdir: Path | None = None, engine: Any = None) -> dict[str, Any]:
    """Every selected pipeline, one after the other in file order (as PipelineLib ran them)."""
    from chute.pipeline import load_pipeline_config, make_plan

    cancel = cancel or threading.Event()
    started = time.time()
    masker = Masker(request.secrets.values())
    if request.isolation.error:
        return {"status": "error", "error": request.isolation.error, "pipelines": [], "images": [],
                "duration": 0.0}
    # Every message about a stage leaves the runner masked, whoever observes it.
    observer = _MaskingObserver(observer or Observer(), masker) if masker else (observer or Observer())
    try:
        config = load_pipeline_config(str(request.repo_dir / request.config_path))
        plan = make_plan(config, pipelines=request.pipelines, stage=request.stage, repo_root=str(request.repo_dir))
    except ConfigError as err:
        return {"status": "error", "error": err.format(), "pipelines": [], "images": [],
                "duration": round(time.time() - started, 3)}
    if engine is None:
        from chute.engine import EngineError, detect_engine

        try:
            engine = detect_engine()
        except EngineError as err:
            return {"status": "error", "error": str(err), "pipelines": [], "images": [],
                    "duration": round(time.time() - started, 3)}
    docs = []
    for pp in plan.pipelines:
        if cancel.is_set():
            break
        docs.append(_run_one(request, pp, observer, cancel, workdir, engine))
        if docs[-1]["status"] != "success":
            break
    statuses = [d["status"] for d in docs]
    status = ("cancelled" if cancel.is_set() else
              next((s for s in statuses if s != "success"), "success") if docs else "error")
    docs = masker.mask_doc(docs)
    return {"status": status, "error": next((d["error"] for d in docs if d.get("error")), ""),
            "pipelines": docs, "images": [i for d in docs for i in d["images"]],
            "duration": round(time.time() - started, 3)}


def run_pipeline(request: RunRequest, *, observer: Observer | None = None, cancel: threading.Event | None = None,
                 workdir: Path | None = None, engine: Any = None) -> dict[str, Any]:
    """One pipeline (``request.pipelines`` names exactly one): the result document an agent reports."""
    doc = run_pipelines(request, observer=observer, cancel=cancel, workdir=workdir, engine=engine)
    if len(doc["pipelines"]) == 1:
        return doc["pipelines"][0]
    return {"status": doc["status"], "error": doc["error"], "stages": [], "images": doc["images"],
            "duration": doc["duration"]}


def _run_one(request: RunRequest, pp: Any, observer: Observer, cancel: threading.Event, workdir: Path | None,
             engine: Any) -> dict[str, Any]:
    from chute.pipeline import Context, resolve_step, setup_bindings

    work = workdir or Path(tempfile.mkdtemp(prefix="chute-run-"))
    rt = Runtime(request=request, engine=engine, observer=observer, cancel=cancel, workdir=work,
                 masker=Masker(request.secrets.values()))
    pipeline = pp.pipeline
    name = pp.name
    directory = pp.directory
    setup = setup_bindings(request.project or request.repo_dir.name, request.commit, request.branch, request.tag,
                           request.timestamp, name, change=request.change, patchset=request.patchset,
                           params=request.params, remote=request.remote)
    ctx = Context(pp.graph, setup)
    stage_names = [st.name for st in pp.stages]
    edges = [[a, b] for a in stage_names for b in pp.graph.successors(a) if b in stage_names]
    observer.graph({"pipeline": name, "stages": stage_names, "edges": edges})
    records: dict[str, dict[str, Any]] = {s: {"name": s, "status": "pending", "error": "", "exports": {}, "steps": []}
                                          for s in stage_names}
    labels = {str(k): str(v) for k, v in (setup.get("imageLabels") or {}).items()}
    started = time.time()

    def run_stage(sname: str) -> Outcome:
        rec = records[sname]
        rec["started_at"] = _now()
        t0 = time.time()
        stage = pipeline.stages[sname]
        log = _StageLog(work / "logs" / name / f"{sname}.log", observer, sname, rt.masker)
        rec["log"] = str(log.fh.name)
        try:
            ctx.bind(sname, "stage", sname)
            reused = _reuse(rt, sname, stage, ctx, log)
            if reused is not None:
                rec["exports"], rec["reused_from"] = reused
                observer.stage(sname, "reused", exports=rec["exports"])
                return _finish(rec, t0, Outcome("reused"))
            observer.stage(sname, "running")
            for step in stage.steps():
                if cancel.is_set():
                    raise StepFailed("cancelled")
                if step in PRIVILEGED and not request.trusted:
                    raise StepFailed(*refusal(step, request))
                s0 = time.time()
                cfg = resolve_step(stage, step, ctx)
                out = _do_step(rt, pp, sname, step, cfg, directory, labels, ctx, log)
                for key, value in (out or {}).items():
                    ctx.bind(sname, key, value)
                rec["steps"].append({"step": step, "status": "success", "duration": round(time.time() - s0, 3)})
            rec["exports"] = _plain(ctx.values(sname))
            observer.stage(sname, "success", exports=rec["exports"])
            return _finish(rec, t0, Outcome("success"))
        except (StepFailed, ConfigError, _engine_errors()) as err:
            status = "cancelled" if cancel.is_set() else "failure"
            message = err.format() if isinstance(err, ConfigError) else str(err)
            log(f"chute: stage {sname} {'cancelled' if status == 'cancelled' else 'failed'}: {message}")
            if status == "failure" and stage.notify is not None:
                try:
                    steps.notify(rt, sname, resolve_step(stage, "notify", ctx), message, log)
                except ConfigError:
                    pass
            rec["steps"].append({"step": "error", "status": status, "error": message})
            observer.stage(sname, status, error=message)
            return _finish(rec, t0, Outcome(status, message))
        finally:
            log.close()

    def skipped(sname: str, status: str) -> None:
        observer.stage(sname, status)

    outcomes = schedule(stage_names, {s: [p for p in pp.graph.predecessors(s) if p in stage_names]
                                      for s in stage_names},
                        run_stage, cancel=cancel, max_parallel=request.max_parallel, on_skip=skipped)
    for sname, oc in outcomes.items():
        rec = records[sname]
        if rec["status"] == "pending":
            rec["status"], rec["error"] = oc.status, oc.error
    _teardown(rt)
    failed = [records[s] for s in stage_names if records[s]["status"] in ("failure", "cancelled")]
    status = "cancelled" if cancel.is_set() else ("failure" if failed else "success")
    error = f"stage {failed[0]['name']} failed: {failed[0]['error']}" if failed and status == "failure" else ""
    return {"pipeline": name, "status": status, "error": error, "duration": round(time.time() - started, 3),
            "stages": [records[s] for s in stage_names], "images": rt.images, "promotions": rt.promotions,
            "triggers": rt.triggers, "notifications": rt.notifications, "graph": {"stages": stage_names,
                                                                                  "edges": edges}}


def _finish(rec: dict[str, Any], t0: float, oc: Outcome) -> Outcome:
    rec["status"], rec["error"] = oc.status, oc.error
    rec["finished_at"] = _now()
    rec["duration"] = round(time.time() - t0, 3)
    return oc


def _engine_errors() -> type[Exception]:
    from chute.engine import EngineError

    return EngineError


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if isinstance(v, (str, int, float, bool, list, dict, type(None)))}


def _reuse(rt: Runtime, sname: str, stage: Any, ctx: Any, log: _StageLog) -> tuple[dict[str, Any], Any] | None:
    """Bind a passed stage's exports from an earlier run instead of running it again.

    Used by "rerun failed stages": only when the images it built still exist on this machine
    (an agent elsewhere rebuilds; the layer cache makes that cheap).
    """
    prior = rt.request.reuse.get(sname)
    if not prior:
        return None
    exports = dict(prior.get("exports") or {})
    image = exports.get("imageID")
    if image and not rt.engine.image_exists(f"sha256:{str(image).removeprefix('sha256:')}"):
        log(f"chute: image {str(image)[:12]} of the earlier run is not on this machine; running the stage again")
        return None
    if "container" in exports:
        log("chute: the earlier run's containers are gone; running the stage again")
        return None
    for key, value in exports.items():
        if key != "stage":
            ctx.bind(sname, key, value)
    log(f"chute: reusing the results of stage {sname} from run {prior.get('run')}")
    return exports | {"stage": sname}, prior.get("run")


def _do_step(rt: Runtime, pp: Any, sname: str, step: str, cfg: Any, directory: str, labels: dict[str, str],
             ctx: Any, log: _StageLog) -> dict[str, Any] | None:
    from chute.pipeline import interpolate

    if step == "build":
        blubberfile = interpolate(pp.blubberfile_for(sname), ctx, sname, field="blubberfile")
        return steps.build(rt, sname, cfg, blubberfile, directory, labels | {"chute.stage": sname}, log)
    if step == "run":
        return steps.run(rt, sname, cfg, log) if cfg else None
    if step == "copy":
        return steps.copy(rt, sname, cfg, directory, log)
    if step == "publish":
        return steps.publish(rt, sname, cfg, log) if cfg and cfg.get("image") else None
    if step == "promote":
        steps.promote(rt, sname, cfg, ctx.values(sname), log)
        return None
    if step == "deploy":
        from chute.runner.deploy_step import deploy

        return deploy(rt, sname, cfg, log)
    if step == "exports":
        return dict(cfg)
    if step == "trigger":
        steps.trigger(rt, sname, cfg, log)
        return None
    raise StepFailed(f"unknown step {step!r}")


def _teardown(rt: Runtime) -> None:
    """Remove the containers this run made and the temporary tags of its images."""
    try:
        if rt.containers:
            rt.engine.remove_containers(rt.containers)
        if rt.local_images and not rt.request.keep_images:
            rt.engine.remove_images(rt.local_images, keep_cache=True)
    except Exception as err:  # cleanup never turns a result into an error
        rt.observer.log("", f"chute: cleanup problem: {err}\n")
