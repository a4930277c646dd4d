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

from devkit.browser import CHROMIUM, PAGES, browser_page, open_page, open_url, serve_app
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
            shot(page, name)
            if exceptions:
                problems.append(f"{name}: {exceptions} exception element(s)")
            if console:
                problems.append(f"{name}: console errors {console}")
            if charts == 0:
                problems.append(f"{name}: no chart drawn")
            print(f"{name}: {charts} charts, {seconds:.2f} s")
    assert not problems, "\n".join(problems)


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    if os.environ.get("LAB_UPDATE_SCREENSHOTS"):
        dest = ROOT / "docs" / "screenshots"
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(SHOTS / f"{name}.png", dest / f"{name}.png")


def test_shareable_link_sets_model_and_text():
    """A link such as /sampling?model=lstm-lm&text=... opens that page, through app.py (sidebar and
    navigation present), with that model and text, even as the first request a fresh server sees."""
    with serve_app() as app_url, browser_page() as page:            # its own, fresh server
        open_url(page, f"{app_url}/sampling?model=lstm-lm&text=the%20bear%20ate%20the")
        assert page.locator("[data-testid='stException']").count() == 0
        assert page.locator("[data-testid='stSidebarNav']").count() == 1, "page ran without app.py's navigation"
        assert page.get_by_role("textbox", name="Text").input_value() == "the bear ate the"
        model_box = page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").first
        shown = model_box.inner_text() + " " + " ".join(model_box.locator("input").evaluate_all("es => es.map(e => e.value)"))
        assert "lstm-lm" in shown, shown
        assert page.get_by_role("heading", name="Sampling").count() >= 1
        assert page.get_by_text("almost certain").count() == 0      # a choice point: no hint to move elsewhere
        shot(page, "sampling-choice")
