"""The steps of a stage, as PipelineLib defined them, executed with chute's engine.

Each function takes the step's resolved config (interpolated, defaults filled,
by ``chute.pipeline.resolve_step``) and returns the values the step exports.
A step that cannot complete raises :class:`StepFailed` with a message meant
for the person reading the run page.
"""

from __future__ import annotations

import re
import secrets
import shutil
import tarfile
from typing import Any

from chute.config import ConfigError

from .request import Runtime

PRIVILEGED = frozenset({"publish", "promote", "deploy", "trigger"})


class StepFailed(Exception):
    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint

    def __str__(self) -> str:
        return self.message + (f" (hint: {self.hint})" if self.hint else "")


def _rand() -> str:
    return secrets.token_hex(4)


def _after_merge(req: Any) -> str:
    branch = f"to {req.default_branch}" if req.default_branch else "to the default branch"
    return f"after merge {branch}, from that branch's reviewed .pipeline/config.yaml"


def refusal(step: str, req: Any) -> tuple[str, str]:
    """Why an untrusted run does not ``step``, and where it will run: (message, hint)."""
    return (f"{step} is not allowed for an untrusted change (a change under review or an unmerged branch): "
            f"it runs only for reviewed code, {_after_merge(req)}",
            "keep publishing and deploying in a pipeline that runs after merge (e.g. `publish`); a change "
            "under review runs the pipelines that only build and test")


SECRETS_DIR = "/run/secrets"  # where `as: file` credentials appear in the run container
_SECRET_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


# ------------------------------------------------------------------ build
def load_blubber(rt: Runtime, blubberfile: str | dict[str, Any]) -> Any:
    """The Blubber config for a build: a path under ``.pipeline/`` or an inline mapping."""
    from chute.blubber import load_config, parse_config

    pipeline_dir = rt.request.repo_dir / ".pipeline"
    if isinstance(blubberfile, dict):
        import json

        return parse_config(json.dumps(blubberfile), ".pipeline/config.yaml (inline blubberfile)")
    path = (pipeline_dir / blubberfile).resolve()
    if not path.is_relative_to(rt.request.repo_dir.resolve()):
        raise StepFailed(f"blubberfile {blubberfile!r} points outside the repository")
    if not path.is_file():
        raise StepFailed(f"no Blubber config found at .pipeline/{blubberfile}",
                         "create it (chute init writes a starter) or set blubberfile in .pipeline/config.yaml")
    return load_config(str(path))


def build(rt: Runtime, stage: str, cfg: dict[str, Any], blubberfile: str | dict[str, Any], directory: str,
          labels: dict[str, str], log: Any) -> dict[str, Any]:
    from chute.blubber import compile_variant

    try:
        bcfg = load_blubber(rt, blubberfile)
        dockerfile = compile_variant(bcfg, cfg["variant"])
    except ConfigError as err:
        variant = cfg["variant"]
        raise StepFailed(f"the Blubber config cannot be compiled for variant {variant!r}:\n{err.format()}") from None
    context = cfg.get("context") or "."
    if "://" in context:
        raise StepFailed(f"build.context {context!r} is a URL; chute builds from the checkout",
                         "use a directory inside the repository")
    ctx_dir = (rt.request.repo_dir / directory / context).resolve()
    if not ctx_dir.is_relative_to(rt.request.repo_dir.resolve()) or not ctx_dir.is_dir():
        raise StepFailed(f"build context {directory}/{context} is not a directory of the repository")
    # PipelineLib's "always" meant `docker build --pull`. With no reachable registry that would
    # fail for locally made base images, so chute pulls only what is missing (docs/compat.md).
    pull = "never" if cfg.get("imagePullPolicy") == "never" else "missing"
    ignore = cfg.get("excludes")
    if ignore is None and not any((ctx_dir / f).exists() for f in (".dockerignore", ".containerignore")):
        # A local checkout has .git; it must not end up in images (history, and a cache miss on
        # every commit). The agent's checkouts have none. An ignore file of the repo's own wins.
        ignore = [".git"]
    local_name = f"localhost/chute-image-{_rand()}"
    log(f"chute: building variant {cfg['variant']} from {directory}/{context}\n")
    result = rt.engine.build(dockerfile, ctx_dir, tags=[local_name], labels=labels,
                             ignore_patterns=ignore, pull=pull, log=log,
                             timeout=rt.request.build_timeout, cancel=rt.cancel)
    with rt.lock:
        rt.local_images.append(local_name)
    log(f"chute: built {result.image_id[:12]} ({result.cached_steps}/{result.steps} steps from cache, "
        f"{result.duration:.1f}s)\n")
    return {"imageID": result.image_id, "imageLocalName": local_name}


# ------------------------------------------------------------------ run
def run(rt: Runtime, stage: str, cfg: dict[str, Any], log: Any) -> dict[str, Any]:
    image = cfg["image"].removeprefix("sha256:")
    if not image or any(c not in "0123456789abcdef" for c in image):
        # Like PipelineLib since 2020: only images built by this run, never arbitrary references.
        raise StepFailed(f"run.image {cfg['image']!r} is not a local image ID",
                         "run an image built by this pipeline, e.g. ${.imageID} or ${stage.imageID}")
    req = rt.request
    env = dict(cfg.get("env") or {})
    files: dict[str, str] = {}
    for cred in cfg.get("credentials") or []:
        cid, name = str(cred.get("id")), str(cred.get("name") or cred.get("id"))
        if not req.trusted:
            raise StepFailed(f"credential {cid!r} is not given to an untrusted change (a change under review or an "
                             f"unmerged branch): the step gets it only for reviewed code, {_after_merge(req)}",
                             "run steps that need secrets in a pipeline that runs after merge (e.g. `publish`)")
        if cid not in req.secrets:
            raise StepFailed(f"credential {cid!r} is not defined for project {req.project or '?'}",
                             f"an administrator defines it with `chute secret set {req.project or 'PROJECT'} {cid}`")
        if cred.get("as") == "file":
            if not _SECRET_FILE.match(cid):
                raise StepFailed(f"credential {cid!r} cannot be a file name", "use letters, digits, '_', '.', '-'")
            files[f"{SECRETS_DIR}/{cid}"] = req.secrets[cid]
            env[name] = f"{SECRETS_DIR}/{cid}"
        else:
            env[name] = req.secrets[cid]
    name = f"chute-run-{_rand()}"
    labels = {**req.labels, "chute.run": str(req.run_id or ""), "chute.stage": stage}
    iso = req.isolation
    timeout = iso.step_timeout(req.run_timeout)
    network = iso.network_for(req.trusted)
    with rt.lock:
        rt.containers.append(name)
    log(f"chute: running {image[:12]} {' '.join(cfg.get('arguments') or [])}\n")
    log(f"chute: limits: {iso.describe()}, {f'{timeout:g} s' if timeout else 'no time limit'}; "
        f"network: {network}\n")
    res = rt.engine.run(f"sha256:{image}", args=list(cfg.get("arguments") or []), env=env, name=name,
                        timeout=timeout, log=log, cancel=rt.cancel, labels=labels, keep=True,
                        limits=iso.limits(), network=network, files=files or None)
    if res.cancelled:
        raise StepFailed("cancelled")
    if res.timed_out:
        raise StepFailed(f"the container ran longer than {timeout:g} s and was stopped",
                         "make the step faster, or raise CHUTE_RUN_TIMEOUT on the agent")
    if res.exit_code != 0:
        if res.oom_killed or (res.exit_code == 137 and iso.memory):
            # Not every engine reports the OOM kill (podman on cgroup v1 does not): SIGKILL with a
            # memory limit is said as what it most likely is.
            why = "for using more than" if res.oom_killed else "(SIGKILL, exit status 137), most likely for going over"
            raise StepFailed(f"the container was killed {why} its memory limit of {iso.memory}",
                             "use less memory, or raise CHUTE_RUN_MEMORY on the agent")
        raise StepFailed(f"the command exited with status {res.exit_code}",
                         "the test output is in this stage's log")
    tail = int(cfg.get("tail") or 0)
    output = "".join(line if line.endswith("\n") else line + "\n" for line in res.tail_lines[-tail:]) if tail else ""
    return {"container": name, "output": rt.masker.mask(output)}


# ------------------------------------------------------------------ copy
def copy(rt: Runtime, stage: str, items: list[dict[str, Any]], directory: str, log: Any) -> dict[str, Any]:
    from chute.pipeline import sanitise_copy_destination

    base = (rt.request.repo_dir / directory).resolve()
    urls = []
    for item in items:
        dest = (base / sanitise_copy_destination(item["destination"])).resolve()
        if not dest.is_relative_to(base):
            raise StepFailed(f"copy destination {item['destination']!r} leaves the working directory")
        dest.parent.mkdir(parents=True, exist_ok=True)
        rt.engine.copy_out(item["from"], item["source"], dest)
        log(f"chute: copied {item['from']}:{item['source']} -> {dest.relative_to(base)}\n")
        if item.get("archive"):
            artifacts = rt.workdir / "artifacts"
            artifacts.mkdir(parents=True, exist_ok=True)
            if dest.is_dir():
                target = artifacts / f"{dest.name}.tar.gz"
                with tarfile.open(target, "w:gz") as tar:
                    tar.add(dest, arcname=".")
            else:
                target = artifacts / dest.name
                shutil.copy2(dest, target)
            urls.append(target.as_uri())
    return {"artifactURLs": "\n".join(urls)}


# ------------------------------------------------------------------ publish
def split_registry(registry: str | None) -> tuple[str, str, str]:
    """``http://host:port/ns`` -> (scheme prefix, host:port, namespace)."""
    if not registry:
        return "", "", ""
    scheme = ""
    for prefix in ("http://", "https://"):
        if registry.startswith(prefix):
            scheme, registry = prefix, registry[len(prefix):]
    host, _, ns = registry.strip("/").partition("/")
    return scheme, host, ns


def publish(rt: Runtime, stage: str, cfg: dict[str, Any], log: Any) -> dict[str, Any]:
    from chute.pipeline import check_image_name, publish_exports, publish_tags

    img = cfg["image"]
    req = rt.request
    name = check_image_name(img["name"], req.project, stage)
    tags = publish_tags(img["tag"], list(img.get("tags") or []))
    if req.commit and req.commit not in tags:
        tags.append(req.commit)  # an immutable tag naming exactly what was built
    scheme, host, ns = split_registry(req.registry)
    image_id = img["id"].removeprefix("sha256:")
    if not host:
        # No registry: the image stays in local storage; publish records the local tags.
        refs = [f"localhost/{name}:{t}" for t in tags]
        for ref in refs:
            rt.engine.tag(image_id, ref)
        with rt.lock:
            rt.images.append({"stage": stage, "name": f"localhost/{name}", "tags": tags,
                              "digest": f"sha256:{image_id}", "local": True})
        log(f"chute: no registry configured; tagged {', '.join(refs)}\n")
        return publish_exports(name, tags, "localhost")
    repo = "/".join(p for p in (host, ns, name) if p)
    refs = [f"{scheme}{repo}:{t}" for t in tags]
    log(f"chute: publishing {repo} with tags {', '.join(tags)}\n")
    pushed = rt.engine.push(image_id, refs, log=log, cancel=rt.cancel)
    digests = {p.digest for p in pushed}
    if len(pushed) != len(refs) or len(digests) != 1:
        raise StepFailed(f"the registry confirmed {len(pushed)} of {len(refs)} tags", "nothing was reported as "
                         "published; rerun the stage")
    digest = digests.pop()
    with rt.lock:
        rt.images.append({"stage": stage, "name": repo, "tags": tags, "digest": digest})
        # Pushing left a local tag per ref; the registry has the image now, and a tag per run
        # (the timestamp tag) would otherwise keep every published image in local storage forever.
        rt.local_images.extend(f"{repo}:{t}" for t in tags)
    log(f"chute: published {repo}:{tags[0]}@{digest}\n")
    return publish_exports(name, tags, host, ns)


# ------------------------------------------------------------------ promote, trigger, notify
def promote(rt: Runtime, stage: str, items: list[dict[str, Any]], exports: dict[str, Any], log: Any) -> None:
    """Ask for the stage's published image to be deployed to environments (the server does it)."""
    image = next((i for i in reversed(rt.images) if i["stage"] == stage), None)
    if image is None:
        raise StepFailed("promote needs an image published in the same stage", "add publish: {image: true}")
    for item in items:
        envs = item.get("environments") or []
        rt.promotions.append({"stage": stage, "environments": envs, "chart": item.get("chart"),
                              "version": item.get("version"), "image": f"{image['name']}@{image['digest']}",
                              "digest": image["digest"]})
        log(f"chute: promotion of {image['name']}@{image['digest'][:19]} requested to "
            f"{', '.join(envs) or 'every environment'}\n")


def trigger(rt: Runtime, stage: str, cfg: dict[str, Any], log: Any) -> None:
    rt.triggers.append({"stage": stage, "pipeline": cfg["name"], "parameters": cfg.get("parameters") or {}})
    log(f"chute: trigger of pipeline {cfg['name']} requested\n")


def notify(rt: Runtime, stage: str, cfg: dict[str, Any], error: str, log: Any) -> None:
    email = (cfg or {}).get("email") or {}
    to = email.get("to") or []
    if not to:
        return
    rt.notifications.append({"stage": stage, "to": to, "subject": email.get("subject", ""),
                             "body": email.get("body", ""), "error": error})
    log(f"chute: failure notification for {', '.join(to)} recorded\n")
