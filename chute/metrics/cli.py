"""Bodies of ``chute metrics``, ``chute trace`` and ``chute events export``.

They talk to a chute server's HTTP API (``chute.client.Client``), so they work
against a remote server as well as the local one. Each returns the exit code:
0 on success, 1 when something went wrong (with one line on stderr saying what
and what to do), 2 when an Elasticsearch export left documents behind.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from typing import Any, TextIO
from urllib.parse import quote

import httpx

from .export import DEFAULT_INDEX, ExportError, bulk_index, safe_url
from .periods import TimeError, human_duration, iso, parse_time

EXIT_OK, EXIT_ERROR, EXIT_PARTIAL = 0, 1, 2
_DEPLOYMENT = re.compile(r"^(?P<env>[^@\s]+)@(?P<rev>\S+)$")
_CHANGE = re.compile(r"^[#!]?(?P<num>\d+)$")
_COMMIT = re.compile(r"^[0-9a-fA-F]{7,64}$")


def _client(server: str | None, token: str | None) -> Any:
    from chute.client import Client

    return Client(server, token)


def _errors() -> tuple[type[Exception], ...]:
    from chute.client import ClientError

    return (ClientError,)


def _time_param(value: str | None, what: str) -> str | None:
    """Read the user's time here (so ``30d`` means 30 days before now on this machine)."""
    return iso(parse_time(value, what=what)) if value else None


def _fail(err: TextIO, message: str, code: int = EXIT_ERROR) -> int:
    err.write(f"error: {message}\n")
    return code


def _console(out: TextIO) -> Any:
    from rich.console import Console

    return Console(file=out, highlight=False, soft_wrap=False, width=110)


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.1f} %"


# ------------------------------------------------------------------ chute metrics
def metrics_command(project: str | None, since: str | None, as_json: bool, *, until: str | None = None,
                    environment: str = "production", server: str | None = None, token: str | None = None,
                    out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``chute metrics [--project P] [--since DATE] [--until DATE] [--environment E] [--json]``."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        params = {"project": project, "since": _time_param(since, "--since"),
                  "until": _time_param(until, "--until"), "environment": environment}
    except TimeError as exc:
        return _fail(err, str(exc))
    try:
        m = _client(server, token).get("/api/v1/metrics", params={k: v for k, v in params.items() if v})
    except _errors() as exc:
        return _fail(err, str(exc))
    if as_json:
        out.write(json.dumps(m, indent=2) + "\n")
        return EXIT_OK
    _print_metrics(m, out)
    return EXIT_OK


def _print_metrics(m: dict[str, Any], out: TextIO) -> None:
    from rich.table import Table

    con = _console(out)
    scope = f"project {m['project']}" if m["project"] else "all projects"
    period = f"{(m['since'] or 'the first deployment')[:16]} → {m['until'][:16]}".replace("T", " ")
    con.print(f"[bold]Delivery metrics[/bold] — {scope}, environment {m['environment']}, {period} UTC")
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    freq = m["deployment_frequency_per_day"]
    t.add_row("Deployment frequency",
              ("—" if freq is None else f"{freq:.2f} per day ({m['deployment_frequency_per_week']:.1f} per week)")
              + (f", {m['deployment_frequency_bucket']}" if m["deployment_frequency_bucket"] else "")
              + f" · {m['deployment_count']} deployments")
    t.add_row("Lead time from upload", f"median {human_duration(m['lead_time_from_upload_median_seconds'])}, "
              f"p90 {human_duration(m['lead_time_from_upload_p90_seconds'])} · {m['patches_delivered']} patches "
              f"delivered, {m['patches_in_flight']} in flight")
    t.add_row("Lead time from merge", f"median {human_duration(m['lead_time_from_merge_median_seconds'])}, "
              f"p90 {human_duration(m['lead_time_from_merge_p90_seconds'])}")
    t.add_row("Change failure rate", f"{_pct(m['change_failure_rate'])} · {m['failed_deployment_count']} failed, "
              f"{m['automatic_rollback_count']} automatic rollbacks")
    t.add_row("Time to restore", f"median {human_duration(m['time_to_restore_median_seconds'])}, "
              f"p90 {human_duration(m['time_to_restore_p90_seconds'])}"
              + (f" · {m['unrestored_failure_count']} not restored" if m["unrestored_failure_count"] else ""))
    con.print(t)
    if m["flakiness"]:
        f = Table(title="Flakiness per pipeline", title_justify="left")
        for col in ("project", "pipeline", "runs", "failed", "reruns", "rechecks", "passed on retry"):
            f.add_column(col, justify="left" if col in ("project", "pipeline") else "right")
        for r in sorted(m["flakiness"], key=lambda r: (-r["rerun_passed"], r["project"], r["pipeline"])):
            f.add_row(r["project"], r["pipeline"], str(r["runs"]), str(r["failed_runs"]), str(r["reruns"]),
                      str(r["rechecks"]), str(r["rerun_passed"]))
        con.print(f)


# ------------------------------------------------------------------ chute trace
def parse_target(target: str) -> dict[str, Any]:
    """``production@12`` -> a deployment; ``1234`` / ``#12`` / ``!12`` -> a change; hex -> a commit."""
    t = target.strip()
    m = _DEPLOYMENT.match(t)
    if m:
        if not m.group("rev").isdigit():
            raise ValueError(f"{target!r}: the revision after @ must be a number, as in production@12")
        return {"environment": m.group("env"), "revision": int(m.group("rev"))}
    m = _CHANGE.match(t)
    if m:
        return {"change": m.group("num")}
    if _COMMIT.match(t):
        return {"commit": t.lower()}
    raise ValueError(f"cannot tell what {target!r} is: give a change number (1234), a commit sha "
                     "(7 or more hex characters) or a deployment as ENVIRONMENT@REVISION (production@12)")


def trace_command(target: str, project: str, as_json: bool, *, environment: str = "production",
                  server: str | None = None, token: str | None = None, out: TextIO | None = None,
                  err: TextIO | None = None) -> int:
    """``chute trace CHANGE|COMMIT|ENV@REVISION --project P [--environment E] [--json]``."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        params = parse_target(target)
    except ValueError as exc:
        return _fail(err, str(exc))
    if "revision" not in params:
        params["environment"] = environment
    client = _client(server, token)
    path = f"/api/v1/projects/{quote(project, safe='')}/trace"
    try:
        t = client.get(path, params=params)
    except _errors() as exc:
        # A number may also be the start of a commit sha: try that before giving up.
        if "change" in params and len(params["change"]) >= 7 and "(404)" in str(exc):
            try:
                t = client.get(path, params={"commit": params["change"], "environment": environment})
            except _errors():
                return _fail(err, str(exc))
        else:
            return _fail(err, str(exc))
    if as_json:
        out.write(json.dumps(t, indent=2) + "\n")
        return EXIT_OK
    (_print_deployment if t.get("type") == "deployment" else _print_patch)(t, out)
    return EXIT_OK


def _print_patch(t: dict[str, Any], out: TextIO) -> None:
    from rich.table import Table

    con = _console(out)
    head = f"change {t['change']}" if t["change"] else f"commit {(t['commit'] or '')[:12]}"
    con.print(f"[bold]{t['project']} {head}[/bold]" + (f" — {t['title']}" if t["title"] else ""))
    con.print(f"state: {t['state']}" + (f" · merged as {t['commit'][:12]}" if t["change"] and t["commit"] else ""))
    steps = Table(box=None, pad_edge=False)
    for col in ("step", "at (UTC)", "since previous", "total"):
        steps.add_column(col, justify="right" if col in ("since previous", "total") else "left")
    for st in t["steps"]:
        steps.add_row(st["label"], (st["at"] or "not yet").replace("T", " ").replace("Z", "")[:19],
                      human_duration(st["seconds_since_previous"]) if st["seconds_since_previous"] is not None else "",
                      human_duration(st["seconds_since_start"]) if st["seconds_since_start"] else "")
    con.print(steps)
    con.print(f"lead time to {t['environment']}: {human_duration(t['lead_time_from_upload_seconds'])} from first "
              f"upload, {human_duration(t['lead_time_from_merge_seconds'])} from merge")
    for d in t["deployments"]:
        con.print(f"  {d['environment']}@{d['revision']} {d['outcome']} {d['at'][:19].replace('T', ' ')}"
                  + (" (first delivery)" if d["first_delivery"] else ""))


def _print_deployment(t: dict[str, Any], out: TextIO) -> None:
    from rich.table import Table

    con = _console(out)
    con.print(f"[bold]{t['project']} {t['environment']}@{t['revision']}[/bold] {t['kind']} — {t['outcome']}"
              + (f" ({t['reason']})" if t["reason"] else ""))
    con.print(f"image {t['image_digest'] or '—'} · commit {(t['commit'] or '—')[:12]} · "
              f"finished {(t['finished_at'] or '—')[:19].replace('T', ' ')} · "
              f"took {human_duration(t['duration_seconds'])}")
    if t["rollback"]:
        rb = t["rollback"]
        con.print(f"{'automatically ' if rb.get('automatic') else ''}rolled back to revision {rb.get('to_revision')}"
                  f" ({rb.get('outcome', 'in progress')}), time to restore "
                  f"{human_duration(rb.get('time_to_restore_seconds'))}")
    if not t["changes"]:
        con.print("shipped no new commits (an image the environment already had)")
        return
    tab = Table(box=None, pad_edge=False)
    for col in ("change", "commit", "title", "from upload", "from merge", ""):
        tab.add_column(col, justify="right" if col.startswith("from") else "left")
    for c in t["changes"]:
        note = "first delivery" if c["first_delivery"] else (
            f"already shipped by {c['shipped_before_by']}" if c["shipped_before_by"] is not None else "")
        tab.add_row(c["change"] or "push", c["commit"][:12], (c["title"] or "")[:50],
                    human_duration(c["lead_time_from_upload_seconds"]),
                    human_duration(c["lead_time_from_merge_seconds"]), note)
    con.print(tab)


# ------------------------------------------------------------------ chute events export
def events_export_command(project: str | None, since: str | None, es_url: str | None, *, until: str | None = None,
                          index: str = DEFAULT_INDEX, server: str | None = None, token: str | None = None,
                          out: TextIO | None = None, err: TextIO | None = None, batch_size: int = 500) -> int:
    """``chute events export [--project P] [--since DATE] [--es URL] [--index NAME]``.

    Without ``--es`` (or ``$CHUTE_ES_URL``) the events go to stdout as JSON lines; with it
    they are bulk-indexed into Elasticsearch/OpenSearch and a summary is printed.
    """
    out, err = out or sys.stdout, err or sys.stderr
    es_url = es_url or os.environ.get("CHUTE_ES_URL") or None
    try:
        params = {k: v for k, v in {"project": project, "since": _time_param(since, "--since"),
                                    "until": _time_param(until, "--until"), "format": "jsonl"}.items() if v}
    except TimeError as exc:
        return _fail(err, str(exc))
    client = _client(server, token)
    lines = _stream_lines(client, params)
    try:
        if es_url is None:
            n = 0
            for line in lines:
                out.write(line + "\n")
                n += 1
            err.write(f"exported {n} events\n")
            return EXIT_OK
        report = bulk_index((json.loads(line) for line in lines), es_url, index=index, batch_size=batch_size)
    except _errors() as exc:
        return _fail(err, str(exc))
    except ExportError as exc:
        return _fail(err, str(exc))
    out.write(f"exported {report.indexed} of {report.sent} events to {safe_url(es_url)} index {index} "
              f"in {report.requests} bulk requests\n")
    if not report.ok:
        for e in report.errors[:10]:
            err.write(f"  event {e['id']}: {e['status']} {e['type']}: {e['reason']}\n")
        return _fail(err, f"{report.failed} events were rejected by Elasticsearch (first reasons above); "
                          "fix the index mapping and export again (documents are keyed by event id, so "
                          "re-exporting does not duplicate)", EXIT_PARTIAL)
    return EXIT_OK


def _stream_lines(client: Any, params: dict[str, Any]) -> Iterator[str]:
    from chute.client import ClientError

    try:
        with client.http.stream("GET", "/api/v1/events", params=params) as r:
            if r.status_code >= 400:
                r.read()
                from chute.client import _detail

                raise ClientError(f"GET /api/v1/events failed ({r.status_code}): {_detail(r)}")
            for line in r.iter_lines():
                if line:
                    yield line
    except httpx.TransportError as exc:
        raise ClientError(f"cannot reach the chute server at {client.server} ({exc}); start it with "
                          "`chute serve` or pass --server / set CHUTE_SERVER") from None
