"""What a class sees, measured by geometry in headless Chromium: every page opens by its link with a figure and no
exception or console error, no collisions, no cut labels, the key figure on the first screen in projector mode,
and no serious accessibility violations (axe-core).

One server and one browser for the module. Every page, in normal and projector mode (?present=1), is opened
once at 1280x720 and measured there (what it showed while opening, accessibility, then layout; in projector mode
also where its key figure starts), then at 1600x1000 and 1920x1080 (the viewport is
resized; each measure waits until every chart has been redrawn at its new column width and the page has stopped
moving: devkit.layout.settle); the lesson stops at 1280x720. The measuring JavaScript is devkit/layout.py (shared
with screenshot scripts).
"""
import os
from pathlib import Path
from urllib.parse import urlencode

import pytest

from app_pages.registry import LESSON
from devkit.browser import CHROMIUM, PAGES, browser_page, open_url, serve_app
from devkit.layout import axe, count_by_kind, defects, describe, first_screen, resize, settle

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"),
                                 reason=f"no Chromium at {CHROMIUM} (run tests/install_system.sh)")]

SIZES = [(1280, 720), (1600, 1000), (1920, 1080)]
VIEWS = [(name, mode) for mode in ("normal", "projector") for name in PAGES]
STOPS = list(range(1, len(LESSON) + 1))
# each page's key figure, by its Streamlit element key (the largest element matching is measured): the all-heads
# grid, the live sampling chart, the three masking stages, the LSTM's gates and states, the sin/cos waves, the norms'
# statistics, the translation step's next-word distribution, Break it's next-word distribution intact vs intervened,
# the heads grid of activation patching, and the loss curves of a training. Home has none: it is the model's map and
# the lesson's stops (its small "first look" heatmap closes the page, and every page it links to has its own).
KEY_FIGURE = {"attention": "[class*='st-key-grid_']", "sampling": "[class*='st-key-live_main']",
              "masks": ".st-key-mask_stages", "lstm": ".st-key-lstm_panel", "positional": ".st-key-pe_waves",
              "layernorm": ".st-key-ln_stats", "translate": ".st-key-tr_dist", "experiments": ".st-key-exp_dist",
              "patching": "[class*='st-key-patch_heads_']", "train": ".st-key-train_curves"}
# Train draws its loss curves only once a training has measured held-out loss: the test starts one as a student
# would (the quick preset on the RNN alone: seconds on a quiet machine, the first held-out point after 20 steps),
# measures the curves while it runs, and stops it
KEY_FIGURE_QUERY = {"train": "models=rnn"}


def start_a_training(page) -> None:
    page.get_by_role("button", name="Start a new training").click()
    page.wait_for_selector(".st-key-train_curves .main-svg", timeout=240_000)


def stop_the_training(page) -> None:
    """Stop it if it still runs (the quick RNN alone may have finished by now: its Stop button is then disabled)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    stop = page.get_by_role("button", name="Stop").first
    if stop.count() and stop.is_enabled():
        try:
            stop.click(timeout=10_000)
        except PlaywrightTimeout:
            assert not stop.is_enabled(), "the Stop button stayed enabled and could not be clicked"   # it finished
        page.wait_for_timeout(1000)


BEFORE_MEASURING = {"train": (start_a_training, stop_the_training)}


@pytest.fixture(scope="module")
def browser_tab():
    with serve_app() as url, browser_page(*SIZES[0]) as page:
        page.lab_url = url
        page.console_errors = said = []          # what the browser reported since the last page was opened
        page.on("console", lambda m: said.append(m.text) if m.type == "error" else None)
        page.on("response", lambda r: said.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)
        page.on("pageerror", lambda e: said.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: said.append(f"request failed: {r.url} ({r.failure})"))
        yield page


def view_url(base: str, name: str, mode: str) -> str:
    return f"{base}/{PAGES[name]}" + ("?present=1" if mode == "projector" else "")


def at_size(page, w: int, h: int) -> None:
    """The viewport at w x h, the layout settled (a resize only when the size differs)."""
    if page.viewport_size != {"width": w, "height": h}:
        resize(page, w, h)
    else:
        settle(page)


def open_at_1280(page, url: str) -> None:
    """Open an address at 1280x720 (the viewport set before the load: no relayout of the page left) and wait until
    it is drawn and settled (the live sampling chart draws after the script is idle)."""
    resize(page, *SIZES[0], settle_ms=0)
    open_url(page, url, 120_000)
    settle(page)


# where each projector view's key figure started when its page was opened by `opened` (the key-figure test uses it
# rather than opening the page again; a view not measured yet, e.g. with -k, is opened by the test itself)
FIRST_SCREEN: dict[str, dict | None] = {}


@pytest.fixture(scope="module", params=VIEWS, ids=[f"{n}-{m}" for n, m in VIEWS])
def opened(request, browser_tab):
    """A page opened by its link (a new document) in one mode at 1280x720, and what it showed while opening: the
    exception elements, the charts drawn, the console errors and failed requests (late ones included: 0.5 s after
    it settled). Module scope: the tests of one view share one load; the accessibility test comes first, at the
    size the page was opened at."""
    name, mode = request.param
    browser_tab.console_errors.clear()
    open_at_1280(browser_tab, view_url(browser_tab.lab_url, name, mode))
    browser_tab.wait_for_timeout(500)                # late requests (components, fonts) still counted
    seen = {"exceptions": browser_tab.locator("[data-testid='stException']").count(),
            "charts": browser_tab.locator("[data-testid='stPlotlyChart']").count(),
            "console": list(browser_tab.console_errors)}
    if mode == "projector" and name in KEY_FIGURE and name not in KEY_FIGURE_QUERY:
        FIRST_SCREEN[name] = first_screen(browser_tab, KEY_FIGURE[name])
    return browser_tab, name, mode, seen


def test_page_opens_by_its_link_with_a_figure_and_no_exception_or_console_error(opened):
    page, name, mode, seen = opened
    assert seen["exceptions"] == 0, f"{name} ({mode}): {seen['exceptions']} exception element(s)"
    assert not seen["console"], f"{name} ({mode}): console errors {seen['console']}"
    assert seen["charts"] > 0, f"{name} ({mode}): no chart drawn"


def test_no_serious_or_critical_accessibility_violation(opened):
    page, name, mode, _ = opened
    at_size(page, *SIZES[0])
    found = axe(page)
    assert not found, f"{name} ({mode}): " + "\n".join(
        f"[{v['impact']}] {v['id']}: {v['help']} at {v['nodes']}" for v in found)


def test_no_collision_or_cut_label_at_three_screen_sizes(opened):
    page, name, mode, _ = opened
    found = []
    for w, h in SIZES:                        # from the size the page was opened at, up: two resizes
        at_size(page, w, h)
        found += [dict(d, size=f"{w}x{h}") for d in defects(page)]
    assert not found, f"{name} ({mode}): {count_by_kind(found)}\n" + "\n".join(
        f"{d['size']} {line}" for d, line in zip(found, describe(found).splitlines()))


@pytest.mark.parametrize("stop", STOPS)
def test_lesson_stop_has_no_collision_or_cut_label_at_1280x720(browser_tab, stop):
    s = LESSON[stop - 1]
    open_at_1280(browser_tab, f"{browser_tab.lab_url}/{s.page}?{urlencode({**s.params, 'stop': stop})}")
    found = defects(browser_tab)
    assert not found, f"stop {stop} ({s.page}): {count_by_kind(found)}\n{describe(found)}"


def test_every_page_but_home_has_a_key_figure():
    assert set(KEY_FIGURE) == set(PAGES) - {"home"}


@pytest.mark.parametrize("name", list(KEY_FIGURE))
def test_projector_key_figure_starts_on_the_first_screen_at_1280x720(browser_tab, name):
    """The page's key figure starts above 720 px and at least 60% of it is visible without scrolling (measured when
    `opened` opened the projector view, else here)."""
    if name in FIRST_SCREEN:
        where = FIRST_SCREEN[name]
    else:
        extra = KEY_FIGURE_QUERY.get(name)
        open_at_1280(browser_tab, view_url(browser_tab.lab_url, name, "projector") + (f"&{extra}" if extra else ""))
        before, after = BEFORE_MEASURING.get(name, (None, None))
        if before:
            before(browser_tab)
        try:
            where = first_screen(browser_tab, KEY_FIGURE[name])
        finally:
            if after:
                after(browser_tab)
    assert where is not None, f"{name}: no figure"
    assert where["top"] < 720 and where["visible"] >= 0.6, f"{name}: key figure {where}"


# the translator draws other figures on these pages (three attention kinds, two-layer grids, translation steps)
TRANSLATOR_PAGES = ["attention", "translate", "experiments", "patching"]


@pytest.mark.parametrize("name", TRANSLATOR_PAGES)
def test_translator_pages_have_no_collision_or_cut_label_at_1280x720(browser_tab, name):
    open_at_1280(browser_tab, f"{browser_tab.lab_url}/{PAGES[name]}?model=translator-en-fr")
    found = defects(browser_tab)
    assert not found, f"{name} (translator-en-fr): {count_by_kind(found)}\n{describe(found)}"
