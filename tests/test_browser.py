"""The real app in a real browser: every page renders with no exception and no console error.

Starts `streamlit run app.py` on a free local port and drives Debian's headless Chromium with
Playwright. Screenshots go to test-artifacts/screenshots/ (and to docs/screenshots/ with
LAB_UPDATE_SCREENSHOTS=1).
"""
import os
import re
import shutil
from pathlib import Path

import pytest

from bench.browser import CHROMIUM, PAGES, browser_page, open_page, serve_app
from conftest import ROOT

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"),
                                reason=f"no Chromium at {CHROMIUM} (run tests/install_chromium.sh)")
SHOTS = ROOT / "test-artifacts" / "screenshots"


@pytest.fixture(scope="module")
def app_url():
    with serve_app() as url:
        yield url


def test_every_page_in_chromium(app_url):
    SHOTS.mkdir(parents=True, exist_ok=True)
    problems = []
    with browser_page() as page:
        console = []
        # Streamlit's frontend probes <page>/_stcore/health and host-config before falling back to the root
        # path when a page URL is opened directly: those two 404s are its normal start-up, not our errors.
        probe = re.compile(r"/[\w-]+/_stcore/(health|host-config)$")
        page.on("console", lambda m: console.append(m.text)
                if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
        page.on("response", lambda r: console.append(f"HTTP {r.status} {r.url}")
                if r.status >= 400 and not probe.search(r.url) else None)
        page.on("pageerror", lambda e: console.append(f"page error: {e}"))
        for name in PAGES:
            console.clear()
            seconds = open_page(page, app_url, name)
            exceptions = page.locator("[data-testid='stException']").count()
            charts = page.locator("[data-testid='stPlotlyChart']").count()
            page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
            if exceptions:
                problems.append(f"{name}: {exceptions} exception element(s)")
            if console:
                problems.append(f"{name}: console errors {console}")
            if charts == 0:
                problems.append(f"{name}: no chart drawn")
            print(f"{name}: {charts} charts, {seconds:.2f} s")
    if os.environ.get("LAB_UPDATE_SCREENSHOTS"):
        dest = ROOT / "docs" / "screenshots"
        dest.mkdir(parents=True, exist_ok=True)
        for f in SHOTS.glob("*.png"):
            shutil.copy(f, dest / f.name)
    assert not problems, "\n".join(problems)
