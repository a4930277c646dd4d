"""Drive the real app in headless Chromium (Playwright + Debian's /usr/bin/chromium).

Used by tests/test_browser.py (every page renders, no exception, no console error, screenshots)
and by `python -m bench --browser` (first full render per page, slider-to-chart latency).
"""
from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from app_pages.registry import KEYS

ROOT = Path(__file__).resolve().parent.parent


def find_chromium() -> str:
    """$CHROMIUM if set; else Debian's /usr/bin/chromium; else the Chromium that `python -m playwright install
    chromium` downloaded (tests/install_system.sh's fallback where there is no apt); else /usr/bin/chromium."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    cache = Path(os.environ.get("PLAYWRIGHT_BROWSERS_PATH") or Path.home() / (
        "Library/Caches/ms-playwright" if sys.platform == "darwin" else ".cache/ms-playwright"))
    found = sorted(cache.glob("chromium-*/chrome-*/chrome")) + sorted(
        cache.glob("chromium-*/chrome-mac*/*.app/Contents/MacOS/*"))
    return str(found[-1]) if found else "/usr/bin/chromium"


CHROMIUM = find_chromium()
CHROME_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
PAGES = {"home": "", **{k: k for k in KEYS}}                 # name -> url path
IDLE = "[data-test-script-state='notRunning']"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_app(timeout: float = 90, script: Path | None = None, env: dict | None = None, base_path: str = ""):
    """Start `streamlit run app.py` (or another script) on a free local port, under /base_path if given (Streamlit's
    server.baseUrlPath); yield its base URL; stop it afterwards."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false", **(env or {})}
    # The server's output goes to a file (a pipe nobody reads would block the server once full).
    log = open(os.environ.get("LAB_SERVER_LOG") or tempfile.mktemp(prefix="lab-server-", suffix=".log"), "w+")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(script or ROOT / "app.py"), "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true",
                             "--browser.gatherUsageStats", "false",
                             *(["--server.baseUrlPath", base_path] if base_path else [])], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}" + (f"/{base_path}" if base_path else "")
    try:
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                log.seek(0)
                out = log.read()
                raise RuntimeError(f"streamlit did not start on {url}:\n{out[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        if not os.environ.get("LAB_SERVER_LOG"):
            os.unlink(log.name)


@contextlib.contextmanager
def chromium():
    """One headless Chromium; open pages in it with fresh_page (a test module can share one browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROME_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def fresh_page(browser, width: int = 1400, height: int = 1000):
    """A page in a new browser context of `browser`: its own cookies, storage and cache, as a new browser has."""
    context = browser.new_context(viewport={"width": width, "height": height})
    try:
        yield context.new_page()
    finally:
        context.close()


@contextlib.contextmanager
def browser_page(width: int = 1400, height: int = 1000):
    """A page in a Chromium of its own."""
    with chromium() as browser, fresh_page(browser, width, height) as page:
        yield page


def wait_idle(page, timeout_ms: int = 60_000) -> None:
    """Wait until the script has finished and every plotly chart on the page has drawn."""
    page.wait_for_selector(IDLE, timeout=timeout_ms, state="attached")
    page.wait_for_function("""() => {
        const st = document.querySelector("[data-test-script-state]");
        if (!st || st.getAttribute("data-test-script-state") !== "notRunning") return false;
        if (document.querySelector("[data-stale='true']")) return false;
        if (document.querySelector("[data-testid='stSkeleton']")) return false;   // a chart still loading its code
        const charts = [...document.querySelectorAll("[data-testid='stPlotlyChart']")];
        return charts.every(c => c.querySelector(".main-svg"));
    }""", timeout=timeout_ms)


def open_url(page, url: str, timeout_ms: int = 60_000) -> float:
    """Go to an address of the app and return seconds until it was fully rendered."""
    t0 = time.perf_counter()
    page.goto(url, wait_until="domcontentloaded")
    wait_idle(page, timeout_ms)                      # the new document starts at state 'initial', never idle
    return time.perf_counter() - t0


def open_page(page, url: str, name: str) -> float:
    """Go to one of PAGES and return seconds until it was fully rendered."""
    return open_url(page, f"{url}/{PAGES[name]}")


def browser_timings(repeat: int = 10) -> list[tuple[str, str, str]]:
    rows = []
    with serve_app() as url, browser_page() as page:
        open_page(page, url, "home")                    # warm: models loaded, caches filled
        for name in PAGES:
            open_page(page, url, name)
        for name in PAGES:
            t = [open_page(page, url, name) for _ in range(3)]
            rows.append((f"page '{name}' full render in Chromium (built-in model, CPU)",
                         f"{statistics.median(t):.2f} s", "< 3 s"))
    return rows


# Timed inside the page, from the click on the option to the next frame painted after the large
# heatmap's drawn title names the new head (Playwright's own click adds ~100 ms of actionability checks).
PICK_AND_WAIT_JS = """async (want) => {
  const opt = [...document.querySelectorAll('[role=option]')].find(o => o.innerText.trim() === String(want));
  const drawn = () => [...document.querySelectorAll('.js-plotly-plot .gtitle')]
      .some(t => t.textContent.endsWith('head ' + want));
  const t0 = performance.now();
  opt.click();
  while (!drawn()) {
    if (performance.now() - t0 > 30000) throw new Error('head ' + want + ' never drawn');
    await new Promise(r => requestAnimationFrame(r));
  }
  await new Promise(r => requestAnimationFrame(r));
  return performance.now() - t0;
}"""


def grid_timings(folder: str, n_tokens: int = 128, repeat: int = 5) -> list[tuple[str, str, str]]:
    """Attention page on a GPT-2-small-sized model saved in `folder` (word tokenizer 'w0 w1 ...'):
    time to the first full draw of the 144-head grid at n_tokens, and head-switch latency."""
    from urllib.parse import quote

    text = " ".join(f"w{i}" for i in range(n_tokens))
    rows = []
    with serve_app(env={"LAB_ALLOW_FOLDERS": "1"}) as url, browser_page() as page:     # the model is a folder
        link = f"{url}/attention?model={quote(folder)}&text={quote(text)}"
        first = open_url(page, link, 300_000)                    # loads the model, runs and caches the trace and grid
        rows.append((f"attention page, GPT-2-small-sized ({n_tokens} tokens): the server's first visit ever (loads "
                     "the model from disk, traces, builds the grid)", f"{first:.2f} s", ""))
        fresh_text = " ".join(f"w{i + 1}" for i in range(n_tokens))          # model loaded, a text never traced
        fresh = open_url(page, f"{url}/attention?model={quote(folder)}&text={quote(fresh_text)}", 300_000)
        rows.append((f"attention page, GPT-2-small-sized ({n_tokens} tokens): model loaded, a text not traced before "
                     "(trace + grid + draw)", f"{fresh:.2f} s", ""))
        draws = []
        for _ in range(3):                                       # a fresh session each time: transfer + draw
            draws.append(open_url(page, link, 120_000))
        grid = page.locator("[data-testid='stPlotlyChart']").count() >= 3    # grid + one head + one token
        rows.append((f"attention page, GPT-2-small-sized ({n_tokens} tokens): a new session's first full draw incl. "
                     "the 144-head grid, the server having traced this text before "
                     f"(grid drawn: {'yes' if grid else 'NO'})", f"median {statistics.median(draws):.2f} s", "< 3 s"))
        lat = []
        head_box = page.locator("[data-testid='stSelectbox']").filter(has=page.get_by_role("combobox", name="Head")).first
        for i in range(repeat):
            want = 2 + i % 2                                      # alternate heads 2 and 3
            head_box.scroll_into_view_if_needed()                 # as a user would; a scroll closes the list again
            page.wait_for_timeout(300)
            head_box.get_by_role("button", name="Open").click()
            page.get_by_role("option", name=str(want), exact=True).wait_for()
            lat.append(page.evaluate(PICK_AND_WAIT_JS, want) / 1000)
            wait_idle(page)
        rows.append(("attention page, GPT-2-small-sized: pick another head → large heatmap redrawn",
                     f"median {statistics.median(lat) * 1000:.0f} ms (max {max(lat) * 1000:.0f} ms, n={len(lat)})",
                     "< 300 ms"))
    return rows
