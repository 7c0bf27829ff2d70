"""The ``chute`` command line (Typer).

Each command imports what it needs inside its body, so that a command only
pays for its own dependencies. ``chute blubber`` does not even come here in the
common case: see :mod:`chute.entry`.
"""

from __future__ import annotations

import json
import sys

import typer

from chute import __version__

app = typer.Typer(
    name="chute",
    help="A self-service deployment pipeline: build, test, publish and deploy from .pipeline/ files.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(err: BaseException) -> typer.Exit:
    """Print a ConfigError to stderr and turn it into its exit code."""
    from chute.config import ConfigError

    if isinstance(err, ConfigError):
        sys.stderr.write(err.format() + "\n")
        return typer.Exit(err.exit_code)
    raise err


@app.command()
def blubber(
    config: str = typer.Argument(..., help="Path to a Blubber config (.pipeline/blubber.yaml)."),
    variant: str = typer.Argument(..., help="The variant to compile."),
    policy: str | None = typer.Option(None, "--policy", "-p", help="Policy file path or http(s) URL."),
) -> None:
    """Print the Dockerfile for VARIANT of a Blubber config."""
    from chute.entry import blubber_main

    code = blubber_main(config, variant, policy)
    if code:
        raise typer.Exit(code)


@app.command()
def run(
    pipelines: list[str] = typer.Argument(None, help="Pipelines to run (default: all, in file order)."),
    stage: str | None = typer.Option(None, "--stage", help="Run only this stage (and the stages it needs)."),
    registry: str | None = typer.Option(None, "--registry", envvar="CHUTE_REGISTRY",
                                        help="Registry to publish to; http://host:port for plain HTTP."),
    json_out: bool = typer.Option(False, "--json", help="Print the result document as JSON."),
    directory: str = typer.Option(".", "--dir", "-C", help="The repository (default: the current directory)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Print every log line (non-terminal output)."),
) -> None:
    """Run the pipelines of .pipeline/config.yaml here, with the same code as the server's agents."""
    import json
    import signal
    import threading
    from pathlib import Path

    from chute.runner import run_pipelines
    from chute.runner.live import LiveObserver, request_for

    repo = Path(directory)
    if not (repo / ".pipeline" / "config.yaml").is_file():
        sys.stderr.write(f"error: {repo.resolve()}/.pipeline/config.yaml not found; run `chute init` to write one\n")
        raise typer.Exit(2)
    request = request_for(repo, pipelines, stage, registry)
    cancel = threading.Event()
    observer = LiveObserver(plain=json_out or None, verbose=verbose)

    def on_sigint(signum: int, frame: object) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        sys.stderr.write("\ncancelling: stopping containers (Ctrl-C again to abort cleanup)\n")
        cancel.set()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        result = observer.run_live(lambda: run_pipelines(request, observer=observer, cancel=cancel))
    finally:
        signal.signal(signal.SIGINT, previous)
    if json_out:
        typer.echo(json.dumps(result, indent=2, default=str))
    else:
        _print_summary(result)
    if cancel.is_set():
        raise typer.Exit(130)
    raise typer.Exit(0 if result["status"] == "success" else 1)


def _print_summary(result: dict) -> None:  # type: ignore[type-arg]
    out = sys.stdout
    for doc in result.get("pipelines", []):
        out.write(f"pipeline {doc['pipeline']}: {doc['status']} in {doc['duration']:.1f}s\n")
        for st in doc["stages"]:
            d = f"{st['duration']:.1f}s" if st.get("duration") is not None else ""
            out.write(f"  {st['name']:24} {st['status']:10} {d}\n")
            if st["status"] == "failure":
                for line in st["error"].splitlines()[:10]:
                    out.write(f"      {line}\n")
                if st.get("log"):
                    out.write(f"      log: {st['log']}\n")
    if result.get("error") and not result.get("pipelines"):
        out.write(f"error: {result['error']}\n")
    images = result.get("images", [])
    if images:
        out.write("published images:\n")
        for img in images:
            for tag in img["tags"]:
                ref = f"{img['name']}:{tag}" + ("" if img.get("local") else f"@{img['digest']}")
                out.write(f"  {ref}\n")
    out.write(f"result: {result['status']}\n")


@app.command()
def lint(
    config: str | None = typer.Argument(None, help="Pipeline config (default .pipeline/config.yaml)."),
    no_blubber: bool = typer.Option(False, "--no-blubber", help="Check the pipeline file alone."),
    expand: bool = typer.Option(False, "--expand", help="Print the config with every default filled in."),
) -> None:
    """Check .pipeline/config.yaml and every Blubber file it uses (each variant), before anything runs."""
    from chute.pipeline import lint_command

    code = lint_command(config, no_blubber=no_blubber, expand=expand)
    if code:
        raise typer.Exit(code)


def _client(server: str | None, token: str | None):  # type: ignore[no-untyped-def]
    from chute.client import Client

    return Client(server, token)


def _call(fn):  # type: ignore[no-untyped-def]
    """Run a client call; turn ClientError into a one-line message and exit 1."""
    from chute.client import ClientError

    try:
        return fn()
    except ClientError as err:
        sys.stderr.write(f"error: {err}\n")
        raise typer.Exit(1) from None


ServerOpt = typer.Option(None, "--server", envvar="CHUTE_SERVER", help="chute server URL (default http://127.0.0.1:8080)")
TokenOpt = typer.Option(None, "--token", envvar="CHUTE_TOKEN", help="API token (default: the local admin token)")


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8080, help="Port to listen on."),
    no_agent: bool = typer.Option(False, "--no-agent", help="Do not run the embedded agent."),
    blubberoid_only: bool = typer.Option(False, "--blubberoid-only", help="Serve only the Blubberoid API."),
    workers: int = typer.Option(1, help="Worker processes (--blubberoid-only)."),
    policy: str | None = typer.Option(None, "--policy", "-p", help="Blubber policy for the Blubberoid API."),
    base_url: str | None = typer.Option(None, envvar="CHUTE_BASE_URL", help="Public URL used in links."),
) -> None:
    """Run the chute server: API, web UI, webhooks, Blubberoid, and an embedded agent."""
    import os

    import uvicorn

    if policy:
        from chute.blubber import load_policy
        from chute.config import ConfigError

        try:  # once here: a policy that cannot be loaded must not reach (and crash-loop) the workers
            load_policy(policy)
        except ConfigError as err:
            typer.echo(err.format(), err=True)
            raise typer.Exit(err.exit_code) from None
        os.environ["CHUTE_BLUBBER_POLICY"] = policy
    if blubberoid_only:
        uvicorn.run("chute.server.blubberoid:create_app", factory=True, host=host, port=port,
                    workers=workers, log_level="warning", access_log=False)
        return
    from chute.server.app import create_app
    from chute.server.settings import Settings

    settings = Settings(host=host, port=port, embedded_agent=not no_agent, base_url=base_url or "")
    typer.echo(f"chute server on {settings.base_url} (state in {settings.home}; "
               f"admin token in {settings.home / 'admin-token'})", err=True)
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info", timeout_graceful_shutdown=5)


@app.command()
def agent(
    server: str = typer.Option(..., "--server", envvar="CHUTE_SERVER", help="chute server URL."),
    token: str = typer.Option(..., "--token", envvar="CHUTE_TOKEN", help="API token."),
    name: str | None = typer.Option(None, help="Agent name (default host-pid)."),
) -> None:
    """Run an agent that claims jobs from a chute server and runs them here."""
    from chute.agent import AgentClient, Worker
    from chute.agent.worker import agent_name
    from chute.paths import chute_home

    client = AgentClient(server, token, name or agent_name())
    worker = Worker(client, chute_home() / "agent")
    typer.echo(f"agent {client.name} polling {server}", err=True)
    try:
        worker.serve_forever()
    except KeyboardInterrupt:
        if worker.current_cancel is not None:
            worker.current_cancel.set()
    finally:
        client.close()


project_app = typer.Typer(help="Register and list projects (repositories).", no_args_is_help=True)
app.add_typer(project_app, name="project")


@project_app.command("add")
def project_add(
    repo: str = typer.Argument(..., help="Path to a git repository or a git URL."),
    name: str | None = typer.Option(None, "--name", help="Project name (default: the repository name)."),
    review: str = typer.Option("git", "--review", help="Code review system: git, gerrit, gitlab or github."),
    server: str | None = ServerOpt,
    token: str | None = TokenOpt,
) -> None:
    """Register a repository; prints the webhook URL and secret to paste into the review system."""
    import os

    if "://" not in repo and "@" not in repo:
        repo = os.path.abspath(repo)
    c = _client(server, token)
    out = _call(lambda: c.post("/api/v1/projects", {"repo": repo, "name": name, "review_kind": review}))
    typer.echo(f"project {out['name']} added ({out['repo_url']}, default branch {out['default_branch']})")
    if out["pipelines"]:
        typer.echo("pipelines: " + ", ".join(p["name"] for p in out["pipelines"]))
    elif not out["has_pipeline"]:
        typer.echo("no .pipeline/config.yaml yet: run `chute init` in the repository to write a starter one")
    if out.get("config_error"):
        typer.echo("config problems:\n" + out["config_error"])
    typer.echo(f"webhook URL:    {out['webhook_url']}")
    typer.echo(f"webhook secret: {out['webhook_secret']}")
    typer.echo(out["instructions"])


@project_app.command("list")
def project_list(
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    server: str | None = ServerOpt,
    token: str | None = TokenOpt,
) -> None:
    """List projects with the last status of each pipeline."""
    import json

    c = _client(server, token)
    projects = _call(lambda: c.get("/api/v1/projects"))
    if json_out:
        typer.echo(json.dumps(projects, indent=2))
        return
    for p in projects:
        last = ", ".join(f"{k}: {v}" for k, v in p["last_status"].items()) or "no runs"
        typer.echo(f"{p['name']:30} {p['repo_url']}  [{last}]")


@app.command()
def trigger(
    project: str = typer.Argument(..., help="Project name."),
    ref: str | None = typer.Option(None, "--ref", help="Branch, tag or ref (default: the default branch)."),
    commit: str | None = typer.Option(None, "--commit"),
    pipeline: list[str] = typer.Option([], "--pipeline", help="Only these pipelines (repeatable)."),
    stdin: bool = typer.Option(False, "--stdin", help="Read `old new ref` lines (a git post-receive hook)."),
    json_out: bool = typer.Option(False, "--json", help="Print the queued runs as JSON."),
    server: str | None = ServerOpt,
    token: str | None = TokenOpt,
) -> None:
    """Queue runs for a ref. In a post-receive hook: `chute trigger PROJECT --stdin`."""
    import json

    c = _client(server, token)
    targets: list[tuple[str | None, str | None]] = [(ref, commit)]
    if stdin:
        targets = []
        for line in sys.stdin.read().splitlines():
            parts = line.split()
            if len(parts) == 3 and set(parts[1]) != {"0"}:  # a deleted ref has the null sha
                targets.append((parts[2], parts[1]))
    runs: list[dict] = []  # type: ignore[type-arg]
    for r, sha in targets:
        body = {"ref": r, "commit": sha, "pipelines": pipeline or None}
        runs += _call(lambda b=body: c.post(f"/api/v1/projects/{project}/trigger", b))
    if json_out:
        typer.echo(json.dumps(runs, indent=2))
        return
    if not runs:
        typer.echo("nothing to run for this ref (no matching pipelines)")
    for r in runs:
        typer.echo(f"run {r['id']} queued: {r['pipeline']} on {r['change']['commit'][:12]}  {r['url']}")


def _run_line(r: dict) -> str:  # type: ignore[type-arg]
    when = (r.get("created_at") or "")[:19].replace("T", " ")
    return f"{r['id']:>6} {r['project']}/{r['pipeline']:<20} {r['status']:<10} {r['change']['commit'][:12]} {when}"


@app.command()
def status(
    run_id: int | None = typer.Argument(None, help="Run id (default: list the latest runs)."),
    project: str | None = typer.Option(None, "--project", "-P", help="Only this project's runs."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    server: str | None = ServerOpt,
    token: str | None = TokenOpt,
) -> None:
    """Show a run (status, stages, published images), or the latest runs."""
    import json

    c = _client(server, token)
    if run_id is None:
        params = {"project": project} if project else {}
        runs = _call(lambda: c.get("/api/v1/runs", params=params))
        if json_out:
            typer.echo(json.dumps(runs, indent=2))
            return
        for r in runs:
            typer.echo(_run_line(r))
        return
    r = _call(lambda: c.get(f"/api/v1/runs/{run_id}"))
    if json_out:
        typer.echo(json.dumps(r, indent=2))
        return
    typer.echo(f"run {r['id']} {r['project']}/{r['pipeline']}: {r['status']}"
               + (f" ({r['reason']})" if r["reason"] else ""))
    for st in r["stages"]:
        d = f"{st['duration']:.1f}s" if st["duration"] is not None else ""
        typer.echo(f"  {st['name']:24} {st['status']:10} {d}")
    for img in r["images"]:
        for ref in img["references"]:
            typer.echo(f"  image {ref}")
    typer.echo(r["url"])
    if r["status"] in ("failure", "error"):
        raise typer.Exit(1)


@app.command()
def logs(
    run_id: int = typer.Argument(...),
    stage: str | None = typer.Option(None, "--stage"),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until the run ends."),
    json_out: bool = typer.Option(False, "--json", help="Print the log chunks as JSON lines."),
    server: str | None = ServerOpt,
    token: str | None = TokenOpt,
) -> None:
    """Print a run's logs."""
    import time

    c = _client(server, token)
    after = -1
    while True:
        params: dict[str, object] = {"after": after}
        if stage:
            params["stage"] = stage
        for chunk in _call(lambda p=params: c.get(f"/api/v1/runs/{run_id}/logs", params=p)):
            if json_out:
                import json

                sys.stdout.write(json.dumps(chunk) + "\n")
            else:
                sys.stdout.write(chunk["text"])
            after = chunk["seq"]
        sys.stdout.flush()
        if not follow or _call(lambda: c.get(f"/api/v1/runs/{run_id}"))["status"] in (
                "success", "failure", "error", "cancelled"):
            break
        time.sleep(1)


@app.command()
def rerun(
    run_id: int = typer.Argument(...),
    failed: bool = typer.Option(False, "--failed", help="Rerun only failed stages; reuse the ones that passed."),
    json_out: bool = typer.Option(False, "--json", help="Print the new run as JSON."),
    server: str | None = ServerOpt,
    token: str | None = TokenOpt,
) -> None:
    """Rerun a finished run."""
    import json

    c = _client(server, token)
    r = _call(lambda: c.post(f"/api/v1/runs/{run_id}/rerun", {"failed_only": failed}))
    if json_out:
        typer.echo(json.dumps(r, indent=2))
        return
    typer.echo(f"run {r['id']} queued (rerun of {run_id})  {r['url']}")


@app.command()
def cancel(run_id: int = typer.Argument(...), server: str | None = ServerOpt, token: str | None = TokenOpt) -> None:
    """Cancel a queued or running run."""
    c = _client(server, token)
    r = _call(lambda: c.post(f"/api/v1/runs/{run_id}/cancel"))
    typer.echo(f"run {r['id']}: {r['status']}")


@app.command()
def init(
    path: str = typer.Argument(".", help="The repository (default: the current directory)."),
    base: str | None = typer.Option(None, "--base", help="Base image for the Blubber config."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing .pipeline files."),
) -> None:
    """Write a commented starter .pipeline/blubber.yaml and config.yaml for this repository's stack."""
    from pathlib import Path

    from chute.starter import DEFAULT_BASE, write_starter

    repo = Path(path).resolve()
    if not repo.is_dir():
        sys.stderr.write(f"error: {path} is not a directory\n")
        raise typer.Exit(1)
    try:
        stack, files = write_starter(repo, base=base or DEFAULT_BASE, force=force)
    except FileExistsError as err:
        sys.stderr.write(f"error: {err} already exists; use --force to overwrite\n")
        raise typer.Exit(1) from None
    typer.echo(f"detected a {stack.name} project (from {stack.evidence})")
    for f in files:
        typer.echo(f"wrote {f.relative_to(repo)}")
    typer.echo("next: read the comments in those files, then `chute lint` and `chute run test`")


@app.command()
def deploy(
    environment: str = typer.Argument(..., help="The environment, e.g. staging."),
    project: str = typer.Option(..., "--project", "-P", help="Project name."),
    image: str | None = typer.Option(None, "--image", help="Image reference (tag or digest) to deploy."),
    run: int | None = typer.Option(None, "--run", help="Deploy the last image this run published."),
    reason: str = typer.Option("", "--reason", help="Why (kept in the history and the ledger)."),
    override_freeze: bool = typer.Option(False, "--override-freeze",
                                         help="Deploy during a freeze or outside the deploy windows (needs --reason)."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Return once the deployment is queued."),
    server: str | None = ServerOpt,
    token: str | None = TokenOpt,
) -> None:
    """Deploy an image (or a run's image) to an environment; waits for its health verdict."""
    from chute.deploy.cli import deploy_command

    c = _client(server, token)
    raise typer.Exit(_call(lambda: deploy_command(c, project, environment, image=image, run=run, reason=reason,
                                                  override_freeze=override_freeze, wait=not no_wait,
                                                  argv=sys.argv[1:])))


@app.command()
def rollback(
    environment: str = typer.Argument(..., help="The environment, e.g. production."),
    project: str = typer.Option(..., "--project", "-P", help="Project name."),
    to: int | None = typer.Option(None, "--to", help="Revision to go back to (default: the last healthy "
                                                     "revision with another image)."),
    reason: str = typer.Option("", "--reason", help="Why (kept in the history and the ledger)."),
    override_freeze: bool = typer.Option(False, "--override-freeze",
                                         help="Roll back during a freeze (needs --reason)."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Return once the rollback is queued."),
    server: str | None = ServerOpt,
    token: str | None = TokenOpt,
) -> None:
    """Serve an earlier revision again; waits for its health verdict."""
    from chute.deploy.cli import rollback_command

    c = _client(server, token)
    raise typer.Exit(_call(lambda: rollback_command(c, project, environment, to_revision=to, reason=reason,
                                                    override_freeze=override_freeze, wait=not no_wait,
                                                    argv=sys.argv[1:])))


@app.command()
def history(
    environment: str = typer.Argument(..., help="The environment, e.g. staging."),
    project: str = typer.Option(..., "--project", "-P", help="Project name."),
    json_out: bool = typer.Option(False, "--json", help="Print the deployments as JSON."),
    limit: int = typer.Option(20, "--limit", help="How many deployments (newest first)."),
    server: str | None = ServerOpt,
    token: str | None = TokenOpt,
) -> None:
    """Deployments of an environment: revision, image, status, who, when, why."""
    from chute.deploy.cli import history_command

    c = _client(server, token)
    raise typer.Exit(_call(lambda: history_command(c, project, environment, as_json=json_out, limit=limit)))


@app.command()
def environments(
    project: str = typer.Option(..., "--project", "-P", help="Project name."),
    json_out: bool = typer.Option(False, "--json", help="Print as JSON."),
    server: str | None = ServerOpt,
    token: str | None = TokenOpt,
) -> None:
    """A project's environments: what serves, what waits, freezes."""
    from chute.deploy.cli import environments_command

    c = _client(server, token)
    raise typer.Exit(_call(lambda: environments_command(c, project, as_json=json_out)))


@app.command()
def metrics(
    project: str | None = typer.Option(None, "--project", "-P", help="Only this project."),
    since: str | None = typer.Option(None, "--since", help="Start date (YYYY-MM-DD or ISO time)."),
    until: str | None = typer.Option(None, "--until", help="End date."),
    environment: str = typer.Option("production", "--environment", "-e", help="The environment that counts."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON (deployment_count, lead_time_*, ...)."),
    server: str | None = ServerOpt,
    token: str | None = TokenOpt,
) -> None:
    """Delivery metrics (DORA) from the ledger: deploys, lead time per patch, failure rate, time to restore."""
    from chute.metrics.cli import metrics_command

    raise typer.Exit(metrics_command(project, since, json_out, until=until, environment=environment,
                                     server=server, token=token))


@app.command()
def trace(
    target: str = typer.Argument(..., help="A change number, a commit sha, or ENV@REVISION (production@12)."),
    project: str = typer.Option(..., "--project", "-P", help="Project name."),
    environment: str = typer.Option("production", "--environment", "-e", help="Where the journey ends."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
    server: str | None = ServerOpt,
    token: str | None = TokenOpt,
) -> None:
    """A patch's journey to production, or every change a deployment shipped."""
    from chute.metrics.cli import trace_command

    raise typer.Exit(trace_command(target, project, json_out, environment=environment, server=server,
                                   token=token))


events_app = typer.Typer(help="The event ledger.", no_args_is_help=True)
app.add_typer(events_app, name="events")


@events_app.command("export")
def events_export(
    project: str | None = typer.Option(None, "--project", "-P", help="Only this project."),
    since: str | None = typer.Option(None, "--since", help="Start date (YYYY-MM-DD or ISO time)."),
    until: str | None = typer.Option(None, "--until", help="End date."),
    es: str | None = typer.Option(None, "--es", envvar="CHUTE_ES_URL",
                                  help="Bulk-index into Elasticsearch/OpenSearch at this URL instead of printing."),
    server: str | None = ServerOpt,
    token: str | None = TokenOpt,
) -> None:
    """Export events as JSON lines (one per line, a stable schema: docs/ledger.md)."""
    from chute.metrics.cli import events_export_command

    raise typer.Exit(events_export_command(project, since, es, until=until, server=server, token=token))


# ------------------------------------------------------------------ access: login, users, roles, tokens
def _access(code: int) -> None:
    if code:
        raise typer.Exit(code)


@app.command()
def login(
    user: str | None = typer.Argument(None, help="Your user name (default: your login name)."),
    server: str | None = ServerOpt,
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin's first line."),
    token_stdin: bool = typer.Option(False, "--token-stdin", help="Save a token you have (from stdin) instead."),
    expires: str = typer.Option("30d", help="How long the new token lives (e.g. 12h, 30d)."),
) -> None:
    """Log in to a chute server; later commands use the saved token (credentials file, mode 0600)."""
    from chute.server.access_cli import login_command

    _access(_call(lambda: login_command(server, user, password_stdin=password_stdin, token_stdin=token_stdin,
                                        expires=expires)))


@app.command()
def logout(server: str | None = ServerOpt) -> None:
    """Revoke the saved token on the server and forget it here."""
    from chute.server.access_cli import logout_command

    _access(_call(lambda: logout_command(server)))


@app.command()
def whoami(server: str | None = ServerOpt, token: str | None = TokenOpt,
           json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Who the server thinks you are, and your roles."""
    from chute.server.access_cli import whoami_command

    _access(_call(lambda: whoami_command(_client(server, token), as_json=json_out)))


user_app = typer.Typer(help="Local users (server admins).", no_args_is_help=True)
app.add_typer(user_app, name="user")


@user_app.command("add")
def user_add(
    name: str = typer.Argument(...),
    admin: bool = typer.Option(False, "--admin", help="Make the user a server admin."),
    display_name: str = typer.Option("", "--display-name"),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin's first line."),
    server: str | None = ServerOpt, token: str | None = TokenOpt,
) -> None:
    """Create a user; the password from stdin or asked on the terminal (never on the command line)."""
    from chute.server.access_cli import user_add_command

    _access(_call(lambda: user_add_command(_client(server, token), name, password_stdin=password_stdin,
                                           admin=admin, display_name=display_name)))


@user_app.command("passwd")
def user_passwd(
    name: str = typer.Argument(...),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin's first line."),
    server: str | None = ServerOpt, token: str | None = TokenOpt,
) -> None:
    """Set a user's password; ends their browser sessions."""
    from chute.server.access_cli import user_passwd_command

    _access(_call(lambda: user_passwd_command(_client(server, token), name, password_stdin=password_stdin)))


@user_app.command("list")
def user_list(server: str | None = ServerOpt, token: str | None = TokenOpt,
              json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List users."""
    from chute.server.access_cli import user_list_command

    _access(_call(lambda: user_list_command(_client(server, token), as_json=json_out)))


@user_app.command("set")
def user_set(
    name: str = typer.Argument(...),
    admin: bool | None = typer.Option(None, "--admin/--no-admin", help="Make or unmake a server admin."),
    disabled: bool | None = typer.Option(None, "--disable/--enable", help="Disable or enable the user."),
    server: str | None = ServerOpt, token: str | None = TokenOpt,
) -> None:
    """Make or unmake a server admin; disable or enable a user."""
    from chute.server.access_cli import user_set_command

    _access(_call(lambda: user_set_command(_client(server, token), name, admin=admin, disabled=disabled)))


role_app = typer.Typer(help="Roles per project: viewer, developer, deployer (per environment), admin.",
                       no_args_is_help=True)
app.add_typer(role_app, name="role")
EnvOpt = typer.Option(None, "--env", help="For deployer: the environments (repeat; default all).")


@role_app.command("grant")
def role_grant(
    user: str = typer.Argument(...), role: str = typer.Argument(..., help="viewer, developer, deployer or admin"),
    project: str = typer.Option(..., "--project", "-P"), environments: list[str] | None = EnvOpt,
    server: str | None = ServerOpt, token: str | None = TokenOpt,
) -> None:
    """Give USER the ROLE on a project."""
    from chute.server.access_cli import role_grant_command

    _access(_call(lambda: role_grant_command(_client(server, token), user, role, project,
                                             environments=environments)))


@role_app.command("revoke")
def role_revoke(
    user: str = typer.Argument(...), role: str = typer.Argument(...),
    project: str = typer.Option(..., "--project", "-P"), environments: list[str] | None = EnvOpt,
    server: str | None = ServerOpt, token: str | None = TokenOpt,
) -> None:
    """Take a role away."""
    from chute.server.access_cli import role_revoke_command

    _access(_call(lambda: role_revoke_command(_client(server, token), user, role, project,
                                              environments=environments)))


@role_app.command("list")
def role_list(project: str = typer.Option(..., "--project", "-P"), server: str | None = ServerOpt,
              token: str | None = TokenOpt, json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Who has which role on a project."""
    from chute.server.access_cli import role_list_command

    _access(_call(lambda: role_list_command(_client(server, token), project, as_json=json_out)))


token_app = typer.Typer(help="API tokens (hashed at rest, scoped, expiring, revocable).", no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    name: str = typer.Argument(...),
    scopes: list[str] | None = typer.Option(None, "--scope", help="read, run, deploy, admin, agent (repeat)."),
    expires: str = typer.Option("90d", help="Lifetime, e.g. 12h, 30d, never."),
    user: str | None = typer.Option(None, "--user", help="For another user (server admins)."),
    server: str | None = ServerOpt, token: str | None = TokenOpt,
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Create a token; it is printed once, alone on stdout."""
    from chute.server.access_cli import token_create_command

    _access(_call(lambda: token_create_command(_client(server, token), name, scopes=scopes, expires=expires,
                                               user=user, as_json=json_out)))


@token_app.command("list")
def token_list(
    all_users: bool = typer.Option(False, "--all", help="Every user's tokens (server admins)."),
    user: str | None = typer.Option(None, "--user"),
    server: str | None = ServerOpt, token: str | None = TokenOpt,
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List tokens (never their secret part)."""
    from chute.server.access_cli import token_list_command

    _access(_call(lambda: token_list_command(_client(server, token), all_users=all_users, user=user,
                                             as_json=json_out)))


@token_app.command("revoke")
def token_revoke(key: str = typer.Argument(..., help="Token id or prefix."), server: str | None = ServerOpt,
                 token: str | None = TokenOpt) -> None:
    """Revoke a token."""
    from chute.server.access_cli import token_revoke_command

    _access(_call(lambda: token_revoke_command(_client(server, token), key)))




# ------------------------------------------------------------------ secrets
secret_app = typer.Typer(help="Secrets per project and environment (encrypted at rest, given only to trusted stages).",
                         no_args_is_help=True)
app.add_typer(secret_app, name="secret")
SecretEnvOpt = typer.Option("", "--env", help="Scope the secret to one environment (default: the whole project).")


@secret_app.command("set")
def secret_set(
    project: str = typer.Argument(...), name: str = typer.Argument(..., help="e.g. API_TOKEN"),
    environment: str = SecretEnvOpt, server: str | None = ServerOpt, token: str | None = TokenOpt,
) -> None:
    """Set a secret; the value is read from stdin (never from the command line, where `ps` would show it)."""
    from urllib.parse import quote

    value = sys.stdin.read()
    if value.endswith("\n") and value.count("\n") == 1:
        value = value[:-1]  # `echo value | chute secret set` means the value without the newline
    c = _client(server, token)
    r = _call(lambda: c.request("PUT", f"/api/v1/projects/{quote(project, safe='')}/secrets/{quote(name, safe='')}",
                                json={"value": value, "environment": environment}))
    scope = f"environment {environment}" if environment else "the project"
    typer.echo(f"secret {r['name']} {'created' if r.get('created') else 'updated'} for {scope} of {project}")


@secret_app.command("list")
def secret_list(project: str = typer.Argument(...), server: str | None = ServerOpt, token: str | None = TokenOpt,
                json_out: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Names and scopes of a project's secrets (values are never shown)."""
    from urllib.parse import quote

    c = _client(server, token)
    rows = _call(lambda: c.get(f"/api/v1/projects/{quote(project, safe='')}/secrets"))
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo(f"project {project} has no secrets; add one with `chute secret set {project} NAME`")
    for r in rows:
        typer.echo(f"{r['name']:<32} {r['environment'] or '(project)':<16} updated {r['updated_at']} "
                   f"by {r['updated_by']}")


@secret_app.command("delete")
def secret_delete(project: str = typer.Argument(...), name: str = typer.Argument(...),
                  environment: str = SecretEnvOpt, server: str | None = ServerOpt,
                  token: str | None = TokenOpt) -> None:
    """Delete a secret."""
    from urllib.parse import quote

    c = _client(server, token)
    _call(lambda: c.request("DELETE", f"/api/v1/projects/{quote(project, safe='')}/secrets/{quote(name, safe='')}",
                            params={"environment": environment}))
    typer.echo(f"secret {name} deleted")


@secret_app.command("new-key")
def secret_new_key() -> None:
    """Print a new key (32 random bytes, URL-safe base64) for CHUTE_SECRET_KEY or the key file."""
    from chute.secrets.crypto import new_key

    typer.echo(new_key())


@secret_app.command("rotate")
def secret_rotate() -> None:
    """Re-encrypt every stored secret with the first key; run on the server machine, with its settings.

    Put the new key first (CHUTE_SECRET_KEY=new,old or a new first line in the key file), run this,
    then drop the old key.
    """
    from chute.secrets import SecretKeyError, SecretStore
    from chute.server.settings import Settings
    from chute.store.db import Database

    settings = Settings()
    store = SecretStore(settings.home)
    try:
        with Database(settings.database_url).session() as s:
            count = store.rotate(s)
    except SecretKeyError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{count} secret{'' if count == 1 else 's'} re-encrypted with key {store.keyring().current_id}")




def version_callback(value: bool) -> None:
    if value:
        typer.echo(f"chute {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """chute: Blubber images, PipelineLib pipelines, continuous deployment and delivery metrics."""


def main(argv: list[str] | None = None) -> None:
    """Run the app; usage errors exit 1 (Blubber's convention), not click's 2."""
    try:
        code = app(args=list(sys.argv[1:] if argv is None else argv), prog_name="chute",
                   standalone_mode=False)
    except typer.Abort:
        sys.stderr.write("Aborted.\n")
        raise SystemExit(130) from None
    except Exception as err:
        # Typer vendors click; its UsageError is not public, so recognise it by shape.
        if any(c.__name__ == "UsageError" for c in type(err).__mro__) and hasattr(err, "show"):
            err.show()
            raise SystemExit(1) from None
        raise
    raise SystemExit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
