"""The real app in a real browser: links, export, drag, projector type. (Every page opening by its link with no
exception and no console error, in normal and projector mode, is tests/test_layout.py's, on the views it measures;
the README's pictures: python -m devkit.screenshots.)

Starts `streamlit run app.py` on a free local port and drives Debian's headless Chromium with
Playwright: one server and one Chromium for the module, each test's pages in a new browser context (their own
cookies, storage and cache, as in a new browser).
"""
import os
from pathlib import Path

import pytest

from devkit.browser import CHROMIUM, chromium, fresh_page, open_url, serve_app, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"),
                                 reason=f"no Chromium at {CHROMIUM} (run tests/install_system.sh, or set CHROMIUM)")]


@pytest.fixture(scope="module")
def app_url():
    with serve_app() as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def test_shareable_link_sets_model_and_text(browser):
    """A link such as /sampling?model=lstm-lm&text=... opens that page, through lab.py (sidebar and
    navigation present), with that model and text, even as the first request a fresh server sees."""
    with serve_app() as app_url, fresh_page(browser) as page:       # its own, fresh server
        open_url(page, f"{app_url}/sampling?model=lstm-lm&text=the%20bear%20ate%20the")
        assert page.locator("[data-testid='stException']").count() == 0
        assert page.locator("[data-testid='stSidebarNav']").count() == 1, "page ran without lab.py's navigation"
        assert page.get_by_role("textbox", name="Text").input_value() == "the bear ate the"
        model_box = page.locator("[data-testid='stSidebar'] [data-testid='stSelectbox']").first
        shown = model_box.inner_text() + " " + " ".join(model_box.locator("input").evaluate_all("es => es.map(e => e.value)"))
        assert "lstm-lm" in shown, shown
        assert page.get_by_role("heading", name="Sampling").count() >= 1
        assert page.get_by_text("almost certain").count() == 0      # a choice point: no hint to move elsewhere


FIGURE_DATA_JS = """(title) => {
  const plot = [...document.querySelectorAll('.js-plotly-plot')].find(p => (p.layout?.title?.text || '').includes(title));
  if (!plot) return null;
  const arr = v => v == null ? null : Array.from(v, r => (r != null && typeof r === 'object') ? Array.from(r) : r);
  return JSON.stringify(plot._fullData.map(t => ({z: arr(t.z), x: arr(t.x), y: arr(t.y)})));   // decoded by Plotly.js
}"""


def figure(page, title: str):
    page.wait_for_function(f"(t) => ({FIGURE_DATA_JS})(t) !== null", arg=title, timeout=30_000)
    return page.evaluate(FIGURE_DATA_JS, title)


def pick(page, label: str, option: str) -> None:
    """Choose an option of the selectbox with this label, as a person would, and wait for the rerun."""
    box = page.locator("[data-testid='stSelectbox']").filter(has=page.get_by_role("combobox", name=label)).first
    box.scroll_into_view_if_needed()
    page.wait_for_timeout(200)
    box.get_by_role("button", name="Open").click()
    page.get_by_role("option", name=option, exact=True).click()
    page.wait_for_timeout(300)
    wait_idle(page)


def test_a_copied_link_reproduces_the_view(app_url, browser):
    """Move widgets, copy the address, open it in a fresh browser: the same figures with the same numbers."""
    with fresh_page(browser) as page:
        open_url(page, f"{app_url}/attention?model=translator-en-fr&text=the%20small%20black%20cat")
        page.get_by_text("Cross-attention (decoder → encoder)", exact=True).click()
        wait_idle(page)
        pick(page, "Layer", "1")
        pick(page, "Head", "3")
        link = page.url
        want = figure(page, "layer 1, head 3")
    assert "stack=cross" in link and "layer=1" in link and "head=3" in link and "model=translator-en-fr" in link
    with fresh_page(browser) as fresh:                # a new context, as a new browser: nothing but the address
        open_url(fresh, link)
        assert figure(fresh, "layer 1, head 3") == want
        assert fresh.locator("[data-testid='stException']").count() == 0


def download(page, kind: str):
    return page.get_by_test_id("stBaseButton-tertiary").filter(has_text=kind).filter(visible=True)


def test_export_downloads_exactly_the_numbers_drawn(app_url, browser):
    import csv
    import io
    import json

    with fresh_page(browser) as page:
        open_url(page, f"{app_url}/attention")
        drawn = json.loads(figure(page, "layer 3, head 1"))[0]                  # as decoded by Plotly.js
        with page.expect_download() as dl:
            download(page, "CSV").nth(1).click()                                 # 0: the grid, 1: one head
        rows = list(csv.reader(io.StringIO(open(dl.value.path()).read())))
        with page.expect_download() as dj:
            download(page, "JSON").nth(1).click()
        data = json.loads(open(dj.value.path()).read())
        names = dl.value.suggested_filename, dj.value.suggested_filename
        exceptions = page.locator("[data-testid='stException']").count()      # a download reruns nothing
    assert "layer 3, head 1" in data["title"], data["title"]                  # the one head drawn, not the grid
    assert names[0].endswith(".csv") and names[1] == names[0][:-len(".csv")] + ".json", names
    assert exceptions == 0
    z = [[float(v) for v in r[1:]] for r in rows[2:]]
    assert rows[1][1:] == [str(x) for x in data["traces"][0]["x"]]        # key labels as the reader sees them
    import numpy as np

    np.testing.assert_allclose(z, np.asarray(drawn["z"], dtype=float), atol=1e-7)
    np.testing.assert_allclose(np.asarray(data["traces"][0]["z"], float), z, atol=1e-7)


def test_projector_mode_has_large_type_and_a_closed_sidebar(app_url, browser):
    """(Every page in projector mode opening with no exception is tests/test_layout.py's, on the views it measures.)"""
    with fresh_page(browser, 1280, 720) as page:
        sizes = {}
        for present in ("0", "1"):
            open_url(page, f"{app_url}/attention?present={present}")
            sizes[present] = page.evaluate("() => parseFloat(getComputedStyle(document.querySelector("
                                           "'[data-testid=stMarkdownContainer] p, h1')).fontSize)")
            collapsed = page.locator("[data-testid='stSidebar']").get_attribute("data-collapsed")
        assert collapsed == "true", "the sidebar should start collapsed in projector mode"
        assert sizes["1"] > sizes["0"]


def test_sampling_chart_follows_a_dragged_slider_on_the_real_page(app_url, browser):
    from devkit.drag import drag, root_js

    with fresh_page(browser, 1600, 1000) as page:
        open_url(page, f"{app_url}/sampling?text=the%20bear%20ate%20the")
        page.wait_for_function(f"() => {{ try {{ return !!{root_js()}.__liveSampling; }} catch (e) {{ return false; }} }}",
                               timeout=30_000)
        sig = f"() => [...{root_js()}.querySelectorAll('.ls-bar-final')].slice(0, 5).map(r => r.getAttribute('width')).join(',')"
        seen = [page.evaluate(sig)]
        drag(page, steps=40, back=False, check=lambda i: seen.append(page.evaluate(sig)) if i % 8 == 4 else None)
        assert len(set(seen)) >= 3, "the chart did not follow the slider while it was dragged"
        page.wait_for_function("() => location.search.includes('t=3')", timeout=30_000)   # released: into the link
