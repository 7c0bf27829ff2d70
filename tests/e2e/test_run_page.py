"""The run page in a real browser: see the tag, copy it, log in, rerun, watch the new run live.

The run is queued in the store the way the API's trigger queues it
(``services.queue_run``) and then driven by a test agent speaking the real HTTP
agent protocol (chute's AgentClient) to the real server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chute.agent.client import AgentClient
from chute.server import services
from chute.store import Change, Project

pytestmark = pytest.mark.browser

TAG1 = "127.0.0.1:15000/greeter:2026-11-26-101500-production"
TAG2 = "127.0.0.1:15000/greeter:2026-11-26-102000-production"


def queue_publish_run(server: Any) -> int:
    state = server.app.state.chute
    with state.db.session() as s:
        p = Project(name="greeter", repo_url=str(server.repo), default_branch="main", webhook_secret="hook-secret",
                    has_pipeline=True, settings={"poll": False})
        s.add(p)
        s.flush()
        ch = Change(project=p, kind="push", commit=server.commit, ref="refs/heads/main", branch="main",
                    author="Ada <ada@example.org>", title="Greeter: say hello")
        s.add(ch)
        s.flush()
        run = services.queue_run(s, state.settings, p, ch, "publish", trigger="manual", actor="ada", trusted=True)
        s.flush()
        run_id = run.id
    state.wake_agents()
    return run_id


def image(tag: str, digest_byte: str) -> dict[str, Any]:
    name, _, t = tag.rpartition(":")
    return {"stage": "production", "name": name, "tags": [t, "latest"], "digest": "sha256:" + digest_byte * 32}


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"


def test_open_run_copy_tag_rerun_and_watch_it_live(live_server: Any, browser: Any) -> None:
    from playwright.sync_api import expect

    agent = AgentClient(live_server.url, live_server.token, "e2e-agent")
    try:
        # ---- run 1, played through the agent protocol before anyone looks
        assert queue_publish_run(live_server) == 1
        job = agent.claim(wait=5)
        assert job is not None and job["run_id"] == 1
        jid = job["job_id"]
        agent.graph(jid, {"stages": ["test", "production"], "edges": [["test", "production"]]})
        for stage, text in (("test", "Ran 3 tests in 0.002s\nOK\n"), ("production", "Pushed " + TAG1 + "\n")):
            agent.stage(jid, stage, "running")
            agent.logs(jid, [{"seq": 1 if stage == "test" else 2, "stage": stage, "text": text}])
            agent.stage(jid, stage, "success")
        agent.complete(jid, {"status": "success", "images": [image(TAG1, "a1")], "duration": 2.0,
                             "stages": [{"name": "test", "status": "success"},
                                        {"name": "production", "status": "success"}]})

        # ---- without JavaScript the page is complete: tag, Rerun, graph, logs
        plain = browser.new_context(java_script_enabled=False, viewport={"width": 1200, "height": 900})
        p0 = plain.new_page()
        p0.goto(f"{live_server.url}/runs/1")
        expect(p0.locator("code.ref-tag").first).to_have_text(TAG1)
        expect(p0.get_by_role("link", name="Rerun", exact=True)).to_be_visible()
        expect(p0.locator("button.copy").first).to_be_hidden()  # copy buttons need JavaScript
        expect(p0.locator("#run-graph svg a.node")).to_have_count(2)
        shot(p0, "00-run-1-without-javascript")
        plain.close()

        # ---- with JavaScript: the tag is the first thing, and the copy button copies it
        ctx = browser.new_context(viewport={"width": 1200, "height": 900},
                                  permissions=["clipboard-read", "clipboard-write"])
        page = ctx.new_page()
        page.goto(f"{live_server.url}/runs/1")
        tag = page.locator("code.ref-tag").first
        expect(tag).to_have_text(TAG1)
        expect(page.locator("#run-head .badge").first).to_contain_text("passed")
        assert tag.bounding_box()["y"] < page.locator("#run-graph").bounding_box()["y"]
        assert tag.bounding_box()["y"] < 250, "the image tag must be visible without scrolling"
        copy = page.locator("li.ref-line", has=page.locator("code.ref-tag").first).locator("button.copy").first
        copy.click()
        expect(page.locator("li.ref-line .copied").first).to_have_text("Copied")
        assert page.evaluate("navigator.clipboard.readText()") == TAG1
        shot(page, "01-run-1-finished-with-tag")

        # ---- Rerun: anonymous users are sent to log in, then back to the run
        page.get_by_role("link", name="Rerun", exact=True).click()
        expect(page).to_have_url(f"{live_server.url}/login?next=/runs/1")
        page.get_by_label("API token").fill(live_server.token)
        shot(page, "02-login")
        page.get_by_role("group", name="API token").get_by_role("button", name="Log in").click()
        expect(page).to_have_url(f"{live_server.url}/runs/1")
        expect(page.locator("header.top")).to_contain_text("Logged in as admin")
        page.get_by_role("button", name="Rerun", exact=True).click()

        # ---- the new run's page, queued, live
        expect(page).to_have_url(f"{live_server.url}/runs/2")
        expect(page.locator("#run-head h1")).to_contain_text("Run #2")
        expect(page.locator("#run-head .badge").first).to_contain_text("queued")
        expect(page.get_by_text("The stage graph appears when an agent starts the run.")).to_be_visible()
        expect(page.get_by_role("button", name="Cancel")).to_be_visible()
        page.evaluate("window.__chuteNoReload = 42")  # a reload or navigation would drop it
        shot(page, "03-run-2-queued")

        job = agent.claim(wait=5)
        assert job is not None and job["run_id"] == 2
        jid = job["job_id"]
        expect(page.locator("#run-head .badge").first).to_contain_text("running")
        expect(page.locator("#run-meta")).to_contain_text("Started")
        agent.graph(jid, {"stages": ["test", "production"], "edges": [["test", "production"]]})
        expect(page.locator("#run-graph svg a.node")).to_have_count(2)
        agent.stage(jid, "test", "running")
        expect(page.locator('#run-graph a.node[data-stage="test"]')).to_have_class("node st-running")
        agent.logs(jid, [{"seq": 1, "stage": "test", "text": "Ran 3 tests in 0.002s\n"}])
        test_log = page.locator('pre.log[data-stage="test"]')
        expect(test_log).to_contain_text("Ran 3 tests")
        expect(test_log).to_be_visible()  # the running stage's log opened by itself
        agent.logs(jid, [{"seq": 2, "stage": "test", "text": "\x1b[32mOK\x1b[0m <all green>\n"}])
        expect(test_log).to_contain_text("OK <all green>")
        expect(test_log.locator("span.ansi-fg-green")).to_have_text("OK")
        shot(page, "04-run-2-live-test-running")

        agent.stage(jid, "test", "success")
        expect(page.locator('#run-graph a.node[data-stage="test"]')).to_have_class("node st-success")
        expect(page.locator('#run-graph a.node[data-stage="test"] text.state')).to_contain_text("passed ·")
        agent.stage(jid, "production", "running")
        expect(page.locator('#run-graph a.node[data-stage="production"]')).to_have_class("node st-running")
        agent.logs(jid, [{"seq": 3, "stage": "production", "text": "Pushing " + TAG2 + "\n"}])
        expect(page.locator('pre.log[data-stage="production"]')).to_contain_text("Pushing " + TAG2)
        expect(page.locator('pre.log[data-stage="production"]')).to_be_visible()
        shot(page, "05-run-2-live-production-running")
        agent.stage(jid, "production", "success")
        agent.complete(jid, {"status": "success", "images": [image(TAG2, "b2")], "duration": 3.0,
                             "stages": [{"name": "test", "status": "success"},
                                        {"name": "production", "status": "success"}]})

        expect(page.locator("#run-head .badge").first).to_contain_text("passed")
        expect(page.locator("code.ref-tag").first).to_have_text(TAG2)
        expect(page.get_by_role("button", name="Rerun", exact=True)).to_be_visible()
        expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
        assert page.evaluate("window.__chuteNoReload") == 42, "the page must update in place, not reload"
        assert page.url == f"{live_server.url}/runs/2"
        shot(page, "06-run-2-finished-live")

        page.goto(f"{live_server.url}/")
        expect(page.locator("table.projects")).to_contain_text("greeter")
        expect(page.locator("table.projects code.ref")).to_have_text(TAG2)
        shot(page, "07-dashboard")
        ctx.close()
    finally:
        agent.close()


def test_failed_run_says_why_and_reruns_only_the_failed_stages(live_server: Any, browser: Any) -> None:
    from playwright.sync_api import expect

    agent = AgentClient(live_server.url, live_server.token, "e2e-agent")
    try:
        queue_publish_run(live_server)
        job = agent.claim(wait=5)
        jid = job["job_id"]
        agent.graph(jid, {"stages": ["test", "production"], "edges": [["test", "production"]]})
        agent.stage(jid, "test", "running")
        agent.logs(jid, [{"seq": 1, "stage": "test", "text": "Ran 3 tests\nOK\n"}])
        agent.stage(jid, "test", "success", exports={"tested": "yes"})
        agent.stage(jid, "production", "running")
        agent.logs(jid, [{"seq": 2, "stage": "production",
                          "text": "Step 4/7 : RUN pip install -r requirements.txt\n"
                                  "\x1b[31mERROR: No matching distribution found for flask==9.9\x1b[0m\n"}])
        error = "building variant production failed: RUN pip install -r requirements.txt exited with status 1"
        agent.stage(jid, "production", "failure", error=error)
        agent.complete(jid, {"status": "failure", "error": "stage production failed", "images": [],
                             "stages": [{"name": "test", "status": "success", "exports": {"tested": "yes"}},
                                        {"name": "production", "status": "failure", "error": error}]})

        ctx = browser.new_context(viewport={"width": 1200, "height": 900})
        page = ctx.new_page()
        page.goto(f"{live_server.url}/runs/1")
        why = page.get_by_role("region", name="Why it failed")
        expect(why).to_contain_text("stage production failed")
        expect(why).to_contain_text(error)
        expect(why).to_contain_text("No matching distribution found for flask==9.9")
        assert why.bounding_box()["y"] < page.locator("#run-graph").bounding_box()["y"]
        expect(page.locator('#run-graph a.node[data-stage="production"]')).to_have_class("node st-failure")
        shot(page, "10-run-failed-why")

        page.locator("header.top").get_by_role("link", name="Log in").click()
        page.get_by_label("API token").fill(live_server.token)
        page.get_by_role("group", name="API token").get_by_role("button", name="Log in").click()
        expect(page).to_have_url(f"{live_server.url}/runs/1")
        page.get_by_role("button", name="Rerun failed stages").click()
        expect(page).to_have_url(f"{live_server.url}/runs/2")
        expect(page.locator("#run-head .badge").first).to_contain_text("queued")

        job = agent.claim(wait=5)
        assert job["run_id"] == 2
        assert job["payload"]["reuse"] == {"test": {"exports": {"tested": "yes"}, "run": 1}}
        jid = job["job_id"]
        agent.graph(jid, {"stages": ["test", "production"], "edges": [["test", "production"]]})
        agent.stage(jid, "test", "reused")
        expect(page.locator('#run-graph a.node[data-stage="test"]')).to_have_class("node st-reused")
        agent.stage(jid, "production", "running")
        agent.logs(jid, [{"seq": 1, "stage": "production", "text": "Successfully installed flask-3.0\n"}])
        expect(page.locator('pre.log[data-stage="production"]')).to_contain_text("Successfully installed")
        agent.stage(jid, "production", "success")
        agent.complete(jid, {"status": "success", "images": [image(TAG2, "c3")],
                             "stages": [{"name": "test", "status": "reused", "reused_from": 1},
                                        {"name": "production", "status": "success"}]})
        expect(page.locator("#run-head .badge").first).to_contain_text("passed")
        expect(page.locator("code.ref-tag").first).to_have_text(TAG2)
        expect(page.locator("#run-stages")).to_contain_text("reused from run #1")
        expect(page.get_by_role("region", name="Why it failed")).to_have_count(0)
        shot(page, "11-rerun-failed-stages-passed")

        # Cancel a queued run from its page.
        page.goto(f"{live_server.url}/runs/1")
        page.get_by_role("button", name="Rerun", exact=True).click()
        expect(page).to_have_url(f"{live_server.url}/runs/3")
        page.get_by_role("button", name="Cancel").click()
        expect(page.locator("#run-head .badge").first).to_contain_text("cancelled")
        expect(page.get_by_role("region", name="Why it was cancelled")).to_contain_text("cancelled by admin")
        shot(page, "12-run-cancelled")

        # The project page's filters (a GET form) and the change page with every run of the commit.
        page.locator("#run-meta").get_by_role("link", name="greeter").click()
        expect(page.locator("table.runs tbody tr")).to_have_count(3)
        page.get_by_label("Status").select_option("failure")
        page.get_by_role("button", name="Filter").click()
        expect(page).to_have_url(f"{live_server.url}/projects/greeter?pipeline=&branch=&status=failure")
        expect(page.locator("table.runs tbody tr")).to_have_count(1)
        expect(page.locator("table.runs tbody")).to_contain_text("#1")
        shot(page, "13-project-runs-filtered")
        page.locator("table.runs").get_by_role("link", name="main @").click()
        expect(page.locator("main h1")).to_contain_text("Commit")
        expect(page.locator("table.runs tbody tr")).to_have_count(3)
        shot(page, "14-change-page")
        ctx.close()
    finally:
        agent.close()
