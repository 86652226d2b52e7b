"""The console in a real headless browser: Debian's chromium driven by Playwright.

Sign in, start a run from its definition's page, watch it change state without a reload, then
Pause (PAUSED), Resume and Cancel with the page's buttons. A screenshot is kept as an artifact.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.models import NodeRun, PipelineDefinition, PipelineRun
from orchestrator.state import RunStatus
from tests.conftest import TEST_DIR, ApiUsers
from tests.served import Server

pytestmark = pytest.mark.django_db(transaction=True)

CHROMIUM = "/usr/bin/chromium"


def _unavailable(reason: str) -> None:
    """Skip where a browser truly cannot be had; on CI a missing browser is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI must run the browser tests)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> str:
    if not Path(CHROMIUM).exists() and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(
            "apt-get update -qq && apt-get install -y -qq chromium",
            shell=True,
            capture_output=True,
            timeout=1200,
            check=False,
        )
    if not Path(CHROMIUM).exists():
        _unavailable(
            f"No browser at {CHROMIUM}: install Debian's chromium (apt-get install chromium)"
        )
    return CHROMIUM


@pytest.fixture
def page(chromium: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # Playwright's sync API keeps an event loop in this thread; the test's own ORM calls are
    # plain synchronous ones that never run inside it.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed (pip install playwright)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=["--no-sandbox", "--disable-background-networking"],
        )
        try:
            yield browser.new_page(viewport={"width": 1200, "height": 900})
        finally:
            browser.close()


def test_operator_watches_a_run_live_and_pauses_resumes_and_cancels_it(
    served: Server, api_users: ApiUsers, page: Any
):
    from playwright.sync_api import expect

    seconds = {"w0": 0.5, "w1": 4, "w2": 60, "w3": 0}
    ids = list(seconds)
    PipelineDefinition.objects.create(
        name="browser-demo",
        description="Four waits",
        config={
            "name": "browser-demo",
            "nodes": [
                {"id": i, "type": "wait", "config": {"seconds": s}, "next": nxt}
                for (i, s), nxt in zip(seconds.items(), [*ids[1:], None], strict=True)
            ],
        },
    )
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))

    page.goto(f"{served.url}/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))
    page.fill("#id_username", "operator")
    page.fill("#id_password", "pw")
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Runs")

    page.goto(f"{served.url}/definitions/browser-demo/")
    page.fill("textarea[name=payload]", '{"host": "web-01"}')
    page.click("#start-run button[type=submit]")
    expect(page).to_have_url(re.compile(r"/runs/\d+/$"))
    run_id = int(re.search(r"/runs/(\d+)/$", page.url).group(1))
    page.evaluate("window.sameDocument = true")  # gone if the page ever reloads

    status = page.locator("#run-status")
    box = {node: page.locator(f'svg.graph g[data-node="{node}"]') for node in ids}
    expect(box["w0"]).to_have_class(re.compile("status-completed"), timeout=15000)
    expect(status).to_have_text("RUNNING")
    expect(box["w1"]).to_have_class(re.compile("status-running"), timeout=15000)

    page.click("button.action.pause")
    expect(page.locator("#flash")).to_contain_text(f"Pipeline run {run_id} is pausing")
    expect(status).to_have_text("PAUSED", timeout=15000)
    expect(box["w1"]).to_have_class(re.compile("status-completed"))
    expect(page.locator("button.action.pause")).to_have_count(0)
    artifacts = TEST_DIR / "artifacts"
    artifacts.mkdir(exist_ok=True)
    page.screenshot(path=str(artifacts / "console-run-paused.png"), full_page=True)

    page.click("button.action.resume")
    expect(page.locator("#flash")).to_contain_text(f"Pipeline run {run_id} has been resumed")
    expect(box["w2"]).to_have_class(re.compile("status-running"), timeout=15000)
    expect(status).to_have_text("RUNNING")

    page.click("button.action.cancel")
    expect(status).to_have_text("CANCELLED", timeout=15000)
    expect(box["w2"]).to_have_class(re.compile("status-cancelled"))
    expect(page.locator("#actions button")).to_have_count(0)
    assert page.evaluate("window.sameDocument") is True
    page.screenshot(path=str(artifacts / "console-run-cancelled.png"), full_page=True)

    run = PipelineRun.objects.get(pk=run_id)
    assert run.status == RunStatus.CANCELLED and run.payload == {"host": "web-01"}
    nodes = {n.node_id: (n.status, n.attempt) for n in NodeRun.objects.filter(run_id=run_id)}
    assert nodes == {"w0": ("COMPLETED", 1), "w1": ("COMPLETED", 1), "w2": ("CANCELLED", 1)}
    assert all(url.startswith(served.url) for url in requested), "nothing from elsewhere"
