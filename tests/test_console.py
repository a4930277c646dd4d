"""A clean console under a path prefix: pages opened by their own address (a deep link) on a server behind
server.baseUrlPath log no console error and no failed request (every page at the root is checked the same way by
tests/test_browser.py::test_every_page_in_chromium). Streamlit's frontend used to look for the server under the
page's path first (two 404s on every deep link); app.py tells it where the server is."""
import contextlib
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from devkit.browser import PAGES, ROOT, browser_page, free_port, wait_idle

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


@contextlib.contextmanager
def _serve_under(prefix: str):
    """The app served under /<prefix> (Streamlit's server.baseUrlPath); yields the app's address."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true", "--server.baseUrlPath",
                             prefix, "--browser.gatherUsageStats", "false"], cwd=ROOT,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/{prefix}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, "streamlit did not start"
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_deep_links_under_a_path_prefix_have_a_clean_console():
    with _serve_under("lab") as url:
        assert _problems(url, ["home", "masks", "experiments"]) == []
