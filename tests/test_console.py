"""A clean console under a path prefix: pages opened by their own address (a deep link) on a server behind
server.baseUrlPath log no console error and no failed request (every page at the root is checked the same way by
tests/test_browser.py::test_every_page_in_chromium). Streamlit's frontend used to look for the server under the
page's path first (two 404s on every deep link); app.py tells it where the server is."""
import pytest

from devkit.browser import PAGES, browser_page, serve_app, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _problems(url: str, names) -> list[str]:
    problems = []
    with browser_page() as page:
        seen: list[str] = []
        page.on("console", lambda m: seen.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: seen.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: seen.append(f"request failed: {r.url} ({r.failure})"))
        page.on("response", lambda r: seen.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)
        for name in names:
            page.goto("about:blank")
            seen.clear()
            page.goto(f"{url}/{PAGES[name]}", wait_until="domcontentloaded")      # a new document: a deep link
            wait_idle(page, 120_000)
            page.wait_for_timeout(500)                    # late requests (components, fonts) still counted
            if seen:
                problems.append(f"{name}: {seen}")
    return problems


def test_deep_links_under_a_path_prefix_have_a_clean_console():
    with serve_app(base_path="lab") as url:
        assert _problems(url, ["home", "masks", "experiments"]) == []
