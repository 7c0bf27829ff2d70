"""Bodies of ``chute deploy``, ``chute rollback``, ``chute history`` and ``chute environments``.

They talk to a chute server through :class:`chute.client.Client` (the same API the UI
uses; every mutating call needs the bearer token and lands in the ledger with who and
why), so ``chute/cli.py`` only parses options and calls these. Each returns the exit
code: 0 when the deployment is healthy (or the listing worked), 1 otherwise.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from datetime import datetime
from typing import Any, TextIO
from urllib.parse import quote

FINAL = ("done", "blocked", "superseded")


def _env_path(project: str, environment: str) -> str:
    return f"/api/v1/projects/{quote(project, safe='')}/environments/{quote(environment, safe='')}"


def _headers(argv: list[str] | None) -> dict[str, str]:
    return {"X-Chute-Command": "chute " + shlex.join(argv)} if argv else {}


def deploy_command(client: Any, project: str, environment: str, *, image: str | None = None,
                   run: int | None = None, reason: str = "", override_freeze: bool = False, wait: bool = True,
                   timeout: float = 1800.0, argv: list[str] | None = None, out: TextIO | None = None) -> int:
    """Queue a deployment of ``image`` (or run ``run``'s image) and, with ``wait``, follow it to the end."""
    out = out or sys.stdout
    if bool(image) == bool(run):
        sys.stderr.write("error: give exactly one of --image REF and --run RUN\n")
        return 1
    body = {"image": image, "run": run, "reason": reason, "override_freeze": override_freeze}
    req = client.post(_env_path(project, environment) + "/deploy", body, headers=_headers(argv))
    what = image or f"the image of run {run}"
    out.write(f"deploy request #{req['id']}: {what} to {environment} ({req['status']})\n")
    return _follow(client, req, wait, timeout, out)


def rollback_command(client: Any, project: str, environment: str, *, to_revision: int | None = None,
                     reason: str = "", override_freeze: bool = False, wait: bool = True, timeout: float = 1800.0,
                     argv: list[str] | None = None, out: TextIO | None = None) -> int:
    """Queue a rollback (to ``to_revision``, default the last healthy revision with another image)."""
    out = out or sys.stdout
    body = {"to_revision": to_revision, "reason": reason, "override_freeze": override_freeze}
    req = client.post(_env_path(project, environment) + "/rollback", body, headers=_headers(argv))
    target = f"revision {to_revision}" if to_revision else "the last healthy revision"
    out.write(f"rollback request #{req['id']}: {environment} back to {target} ({req['status']})\n")
    return _follow(client, req, wait, timeout, out)


def _follow(client: Any, req: dict[str, Any], wait: bool, timeout: float, out: TextIO) -> int:
    if not wait:
        return 0
    deadline = time.monotonic() + timeout
    seen = req["status"]
    while req["status"] not in FINAL:
        if time.monotonic() > deadline:
            out.write(f"still {req['status']} after {timeout:g}s; follow it with "
                      f"GET /api/v1/deploy-requests/{req['id']}\n")
            return 1
        time.sleep(0.5)
        req = client.get(f"/api/v1/deploy-requests/{req['id']}")
        if req["status"] != seen:
            seen = req["status"]
            if seen == "held":
                out.write(f"held: {req.get('hold_reason')}; it deploys when that ends ({req.get('not_before')})\n")
            elif seen == "running":
                out.write("deploying ...\n")
    dep = req.get("deployment")
    if req["status"] != "done" or dep is None:
        out.write(f"not deployed ({req['status']}): {req.get('error') or 'no reason given'}\n")
        return 1
    line = f"revision {dep['revision']} of {req['environment']}: {dep['status']}  {dep['image']}"
    if dep.get("restored_revision"):
        line += f"  (revision {dep['restored_revision']} serves again"
        line += f", after {dep['time_to_restore']:.1f}s)" if dep.get("time_to_restore") is not None else ")"
    out.write(line + "\n")
    if dep.get("error"):
        out.write(f"  {dep['error']}\n")
    for verdict in dep.get("health") or []:
        out.write(f"  health ({verdict.get('phase')}): {'healthy' if verdict.get('healthy') else 'unhealthy'}"
                  f" - {verdict.get('reason', '')}\n")
    return 0 if dep["status"] == "healthy" else 1


def history_command(client: Any, project: str, environment: str, *, as_json: bool = False, limit: int = 20,
                    out: TextIO | None = None) -> int:
    """The deployments of an environment, newest first."""
    out = out or sys.stdout
    rows = client.get(_env_path(project, environment) + "/history", params={"limit": limit})
    if as_json:
        out.write(json.dumps(rows, indent=2) + "\n")
        return 0
    if not rows:
        out.write(f"{environment} has no deployments yet\n")
        return 0
    out.write(f"{'REV':>4}  {'KIND':8}  {'STATUS':11}  {'WHEN':16}  {'WHO':12}  IMAGE / WHY\n")
    for d in rows:
        when = _short_time(d.get("finished_at") or d.get("started_at") or d.get("created_at"))
        out.write(f"{d['revision']:>4}  {d['kind']:8}  {d['status']:11}  {when:16}  {d['actor'][:12]:12}  "
                  f"{d['image']}\n")
        notes = [d["reason"]] if d.get("reason") else []
        if d.get("error"):
            notes.append(f"error: {d['error']}")
        if d.get("time_to_restore") is not None:
            notes.append(f"time to restore {d['time_to_restore']:.1f}s")
        if d.get("freeze_override"):
            fo = d["freeze_override"]
            notes.append(f"freeze overridden by {fo.get('actor')}: {fo.get('reason')}")
        for note in notes:
            out.write(f"{'':>4}  {note}\n")
    return 0


def environments_command(client: Any, project: str, *, as_json: bool = False, out: TextIO | None = None) -> int:
    """Every environment of a project: what serves, what waits, and whether it is frozen."""
    out = out or sys.stdout
    data = client.get(f"/api/v1/projects/{quote(project, safe='')}/environments")
    if as_json:
        out.write(json.dumps(data, indent=2) + "\n")
        return 0
    if data.get("config_error"):
        out.write(f"the default branch's environments have errors (the last good ones apply):\n"
                  f"{data['config_error']}\n")
    if not data["environments"]:
        out.write(f"project {project} has no environments (add `environments` to .pipeline/config.yaml)\n")
    for env in data["environments"]:
        cur = env.get("current")
        serving = f"revision {cur['revision']} {cur['image']}" if cur else "nothing deployed"
        out.write(f"{env['name']}: {serving}\n")
        if env.get("closed"):
            out.write(f"  closed: {env['closed']['reason']} (opens {env['closed'].get('until') or 'unknown'})\n")
        for req in env.get("waiting") or []:
            out.write(f"  request #{req['id']} {req['status']}: {req['image'] or req['kind']}"
                      + (f" - {req['hold_reason']}" if req.get("hold_reason") else "") + "\n")
    for held in data.get("held_runs") or []:
        out.write(f"run {held['run']} ({held['pipeline']}) held until {held['until']}: {held['reason']}\n")
    return 0


def _short_time(value: str | None) -> str:
    if not value:
        return ""
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return value[:16]


__all__ = ["deploy_command", "environments_command", "history_command", "rollback_command"]
