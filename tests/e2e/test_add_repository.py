"""Adding a repository in the browser: the form, the webhook page, the no-pipeline project page."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"


def test_add_repository_then_see_webhook_and_what_to_add(live_server: Any, browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    repo = tmp_path / "billing"
    repo.mkdir()
    env = {**os.environ, "GIT_AUTHOR_NAME": "Ada", "GIT_AUTHOR_EMAIL": "ada@example.org",
           "GIT_COMMITTER_NAME": "Ada", "GIT_COMMITTER_EMAIL": "ada@example.org"}
    (repo / "main.py").write_text("print('bill')\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "start"]):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)

    ctx = browser.new_context(viewport={"width": 1200, "height": 900},
                              permissions=["clipboard-read", "clipboard-write"])
    page = ctx.new_page()
    page.goto(f"{live_server.url}/")
    expect(page.get_by_text("No repositories yet.")).to_be_visible()
    page.locator("main .page-head").get_by_role("link", name="Add repository").click()
    expect(page.get_by_role("button", name="Add repository")).to_be_disabled()  # log in first
    page.locator("main").get_by_role("link", name="log in").click()
    page.get_by_label("API token").fill(live_server.token)
    page.get_by_role("group", name="API token").get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{live_server.url}/add-repository")

    page.locator("#repo").fill(str(repo))
    page.get_by_label("Code review").select_option("github")
    shot(page, "20-add-repository")
    page.get_by_role("button", name="Add repository").click()

    expect(page).to_have_url(f"{live_server.url}/projects/billing/setup?new=1")
    expect(page.get_by_text("Repository added as")).to_be_visible()
    url = f"{live_server.url}/webhooks/github?project=billing"
    expect(page.locator("#webhook-url")).to_have_text(url)
    page.locator("#webhook-url + button.copy").click()
    expect(page.locator("#webhook-url ~ .copied")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == url
    expect(page.locator("#webhook-secret")).not_to_be_empty()
    expect(page.locator("main")).to_contain_text("GitHub > Settings > Webhooks")
    shot(page, "21-webhook-setup")

    page.get_by_role("link", name="Go to the project page").click()
    expect(page.get_by_role("heading", name="This repository has no pipeline yet")).to_be_visible()
    expect(page.locator("main")).to_contain_text("chute init")
    shot(page, "22-project-without-pipeline")
    ctx.close()


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
