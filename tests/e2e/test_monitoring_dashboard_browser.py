"""The dashboard in a real browser (Debian's chromium driven by Playwright) on a live mesh.

Loads the page served by ``tulle dashboard`` against the running proxy, waits
for the numbers, and checks that what the page shows matches the proxy's own
``/metrics`` within tolerance: the success rate of ``web`` (a quarter of its
requests fail, by construction), its request rate, and its total responses.
The live tap view must show requests as they happen. A screenshot is taken every
run; with TULLE_UPDATE_SCREENSHOT=1 it replaces docs/images/dashboard.png (so a
test run leaves the working tree as it found it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.mesh_harness import REPO, MonitoredMesh, require_tool
from tests.support.proxy import free_port
from tulle.telemetry.golden import group_window, parse_scrape
from tulle.telemetry.scrape import fetch_metrics

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
DOCS_SCREENSHOT = REPO / "docs" / "images" / "dashboard.png"


@pytest.fixture(scope="module")
def dashboard(mesh: MonitoredMesh, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("dashboard") / "dashboard.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "tulle"), "dashboard", "--admin", mesh.admin,
             "--name", f"{mesh.admin}=edge-proxy", "--listen", f"127.0.0.1:{port}",
             "--window", "5s"],
            stdout=out, stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 10
            while b"dashboard on" not in log.read_bytes():  # bounded by the deadline
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(timeout=10)


def _web_from_metrics(admin: str, seconds: float) -> tuple[float, float, float]:
    """(success rate, rps, total responses) of web, from /metrics over ``seconds``."""
    before = [parse_scrape(admin, fetch_metrics(admin))]
    time.sleep(seconds)
    after = [parse_scrape(admin, fetch_metrics(admin))]
    rows = group_window(before, after, lambda source, labels: labels.get("dst_service"))
    total = sum(value for labels, value in after[0].series("response_total")
                if labels.get("dst_service") == "web")
    web = rows["web"].signals
    assert web.success_rate is not None
    return web.success_rate, web.rps, total


def _number(text: str) -> float:
    return float(text.rstrip("%ms"))


def test_dashboard_numbers_match_the_proxy_metrics(
    mesh: MonitoredMesh, dashboard: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    chromium = require_tool("chromium", "/usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(dashboard + "/")
            web = page.locator('#services tbody tr[data-service="web"]')
            web.wait_for(timeout=10_000)
            # Wait for a full 5 s window of samples, so the page and /metrics agree.
            page.wait_for_function(
                "Number(document.querySelector('#status').dataset.updates || 0) >= 6",
                timeout=15_000)
            expected_rate, expected_rps, total_before = _web_from_metrics(mesh.admin, 2.0)
            shown_rate = _number(web.locator('[data-field="success"]').inner_text()) / 100
            shown_rps = _number(web.locator('[data-field="rps"]').inner_text())
            shown_total = _number(web.locator('[data-field="total"]').inner_text())
            assert shown_rate == pytest.approx(expected_rate, abs=0.05)
            assert shown_rate == pytest.approx(0.75, abs=0.05)
            assert shown_rps == pytest.approx(expected_rps, rel=0.3)
            # The page is at most a couple of seconds behind /metrics.
            assert total_before - 4 * expected_rps <= shown_total <= total_before
            endpoints = page.locator("#endpoints tbody tr")
            assert endpoints.count() == 4  # three web endpoints and one api endpoint
            assert set(page.locator('[data-field="state"]').all_inner_texts()) == {"active"}

            page.fill('input[name="service"]', "web")
            page.fill('input[name="status"]', "500")
            page.click("#tap-start")
            page.locator("#tap tbody tr").nth(2).wait_for(timeout=10_000)
            rows = page.locator("#tap tbody tr").all_inner_texts()
            assert all("/status/500" in row and "500" in row for row in rows)
            page.wait_for_timeout(500)
            screenshot = (DOCS_SCREENSHOT if os.environ.get("TULLE_UPDATE_SCREENSHOT") == "1"
                          else tmp_path_factory.mktemp("screenshot") / "dashboard.png")
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
            assert screenshot.stat().st_size > 10_000
        finally:
            browser.close()
