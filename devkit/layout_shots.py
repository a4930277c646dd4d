"""Before/after screenshots of issue 18's defects 2 (other figures), 3, 8 and 9, for docs/layout/.

The "before" pictures come from the code of commit 9615489 (extracted with `git archive` into a temporary folder,
or the folder given with --old), the "after" ones from this checkout. Each is served by its own `streamlit run
app.py` on a free local port (one server at a time, HF_HUB_OFFLINE=1; the no-network message runs on a second
server with HF_HUB_OFFLINE=0 and HF_ENDPOINT pointing at a closed local port, so the hub is never asked), driven by
headless Chromium at 1280x720 (a projector), each picture from a fresh browser context (a new browser session).
Servers run in their own process group, stopped (with their training workers) when done.

    python -m devkit.layout_shots                     # every picture, before and after
    python -m devkit.layout_shots --only 3- 9-        # the names that start so
    python -m devkit.layout_shots --old /tmp/old      # a ready checkout of 9615489

Pictures (docs/layout/<name>-before.png and -after.png):

- 2-toolbar-lstm, 2-toolbar-positional, 2-toolbar-attention, 2-toolbar-translate: the figure whose subplot title
  the always-visible Plotly toolbar covered ("forget gate", "Dot product between positions", "head 4",
  "Step 3: next-word distribution").
- 3-stop3: the lesson path walked as a class does (home, stop 2 "LSTM gates", its "Next" link): stop 3's banner
  and the page's "What <model> uses" section (before: lstm-lm, "An LSTM needs no positional encoding").
- 3-masks-layer: the lesson path from the home page to stop 4 (Attention), layer 3 picked there, then its "Next:
  Masks" link: the Masks page's address, banner and Layer box (before: layer 3, inherited).
- 8-train-time: session 1 starts the quick preset and is pictured once 20 s of training are shown (after: with
  the time left); session 2 (a second browser context) then presses Start a new training (the server runs one
  training at a time here: LAB_TRAIN_WORKERS=1, LAB_MAX_TRAININGS=1 at 9615489): what each is told about time.
  Both trainings are stopped afterwards.
- 9-messages-trained: a link to a model trained live in another session opened in a fresh browser.
- 9-messages-gpt2-offline: `gpt2` not in the local Hugging Face cache with offline mode on (HF_HUB_OFFLINE=1).
- 9-messages-gpt2-nonetwork: `gpt2` not cached, offline mode off, the hub unreachable.
  (Both gpt2 pictures need a machine whose Hugging Face cache has no gpt2.)

Each picture has a grey strip naming the address the browser showed (and, where it matters, how the page was
reached or how the server ran). PNGs are written optimised and, if still over 250 KB, reduced to 256 colours.
A picture that fails is reported and skipped; the others are still taken.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import quote, unquote, urlsplit

from PIL import Image, ImageDraw, ImageFont

from devkit.browser import chromium, free_port, fresh_page, open_url, wait_idle

ROOT = Path(__file__).resolve().parent.parent
OLD_COMMIT = "9615489"
W, H = 1280, 720
MAX_BYTES = 250_000
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
OFFLINE = {"HF_HUB_OFFLINE": "1"}
NO_NETWORK = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}     # nothing listens on port 9


# ----------------------------------------------------------------------------- server
@contextlib.contextmanager
def serve(root: Path, env: dict, timeout: float = 180):
    """`streamlit run app.py` in `root` on a free port, in a process group of its own; yields the base URL, the
    process and its log's path, and stops the whole group (the server and any training worker it started)
    afterwards."""
    port = free_port()
    env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false", "HF_HUB_DISABLE_TELEMETRY": "1",
           "LAB_TRAIN_WORKERS": "1", "LAB_MAX_TRAININGS": "1", **env}
    log = tempfile.NamedTemporaryFile("w+", prefix="layout-shots-server-", suffix=".log", delete=False)
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true",
                             "--browser.gatherUsageStats", "false"], cwd=root, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
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
                raise RuntimeError(f"streamlit did not start in {root}:\n{log.read()[-3000:]}")
            time.sleep(0.5)
        yield url, proc, log.name
    finally:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            end = time.time() + wait
            while time.time() < end and _group_alive(proc.pid):
                proc.poll()
                time.sleep(0.2)
            if not _group_alive(proc.pid):
                break
        proc.wait()
        log.close()
        os.unlink(log.name)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def old_checkout(dest: Path) -> Path:
    """The code of OLD_COMMIT, extracted (not a worktree: nothing to clean up in the repository)."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", OLD_COMMIT], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


# ----------------------------------------------------------------------------- browser helpers
def settle(page, ms: int = 600) -> None:
    page.wait_for_timeout(ms)
    wait_idle(page, 180_000)
    page.wait_for_timeout(400)


def follow(page, name: str, where: str = "main") -> None:
    """Click a link as a person would (a page link: the same browser session) and wait for the page."""
    scope = page.locator("[data-testid='stSidebar']" if where == "sidebar" else "[data-testid='stMain']")
    link = scope.get_by_role("link", name=name).first
    link.scroll_into_view_if_needed()
    link.click()
    settle(page, 1500)


def pick(page, label: str, option: str) -> None:
    """Choose an option of the selectbox with this label and wait for the rerun."""
    box = page.locator("[data-testid='stSelectbox']").filter(has=page.get_by_role("combobox", name=label)).first
    box.scroll_into_view_if_needed()
    page.wait_for_timeout(200)
    box.get_by_role("button", name="Open").click()
    page.get_by_role("option", name=option, exact=True).click()
    settle(page)


def to_top(page, locator, margin: int = 70) -> None:
    """Scroll the page's main area so that `locator` starts `margin` px below the top of the window."""
    locator.first.evaluate("""(el, margin) => {
        let sc = null;                           // the ancestor that scrolls furthest: the page's main area
        for (let e = el.parentElement; e; e = e.parentElement)
            if (/(auto|scroll)/.test(getComputedStyle(e).overflowY)
                    && e.scrollHeight - e.clientHeight > (sc ? sc.scrollHeight - sc.clientHeight : 0))
                sc = e;
        (sc || document.scrollingElement).scrollTop += el.getBoundingClientRect().top - margin;
    }""", margin)
    page.wait_for_timeout(500)


def grab(page, top: float = 0, height: float = H, left: float = 0, width: float = W,
         window: tuple[int, int] = (W, H)) -> Image.Image:
    """A region of the window as it is now (window coordinates)."""
    top, left = max(0, top), max(0, left)
    height, width = min(height, window[1] - top), min(width, window[0] - left)
    png = page.screenshot(clip={"x": left, "y": top, "width": width, "height": height})
    return Image.open(io.BytesIO(png)).convert("RGB")


def box(locator) -> dict:
    return locator.first.bounding_box()


def address(page) -> str:
    u = urlsplit(page.url)
    return unquote(u.path + (f"?{u.query}" if u.query else "")).replace("+", " ")


# ----------------------------------------------------------------------------- composing
def strip(text: str, width: int, size: int = 16) -> Image.Image:
    """`text` on a grey band `width` px wide, wrapped at spaces (or anywhere, for a long address) to fit."""
    font = ImageFont.truetype(FONT, size)
    lines, line = [], ""
    for ch in text:
        if font.getlength(line + ch) > width - 20:
            cut = line.rfind(" ")
            if cut > len(line) // 2:
                lines.append(line[:cut])
                line = line[cut + 1:]
            else:
                lines.append(line)
                line = ""
        line += ch
    lines.append(line)
    step = size + 6
    im = Image.new("RGB", (width, step * len(lines) + 10), (232, 234, 237))
    draw = ImageDraw.Draw(im)
    for i, ln in enumerate(lines):
        draw.text((10, 6 + i * step), ln, fill=(40, 40, 40), font=font)
    return im


def stack(*parts: Image.Image | None, gap: int = 6) -> Image.Image:
    parts = [p for p in parts if p is not None]
    width = max(p.width for p in parts)
    out = Image.new("RGB", (width, sum(p.height for p in parts) + gap * (len(parts) - 1)), (190, 190, 190))
    y = 0
    for p in parts:
        out.paste(p, (0, y))
        y += p.height + gap
    return out


def with_address(page, *parts: Image.Image | None, note: str = "") -> Image.Image:
    body = stack(*parts)
    return stack(strip(f"address: {address(page)}" + (f"   ({note})" if note else ""), body.width), body, gap=0)


def save(im: Image.Image, path: Path) -> int:
    im.save(path, optimize=True)
    if path.stat().st_size > MAX_BYTES:
        im.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    return path.stat().st_size


# ----------------------------------------------------------------------------- the pictures
def chart_with(page, text: str):
    """The Streamlit chart element whose figure shows `text` (title, subplot title or annotation)."""
    charts = page.locator("[data-testid='stPlotlyChart']")
    for i in range(charts.count()):
        found = charts.nth(i).evaluate("""(el, want) => [...el.querySelectorAll('.main-svg text')]
            .some(t => t.textContent.trim() === want || t.textContent.trim().endsWith(want))""", text)
        if found:
            return charts.nth(i)
    raise LookupError(f"no chart shows {text!r} on {page.url}")


def toolbar(path: str, text: str, max_height: int | None = None):
    def take(browser, url, when):
        with fresh_page(browser, W, H) as page:
            open_url(page, f"{url}/{path}", 300_000)
            page.wait_for_timeout(800)
            chart = chart_with(page, text)
            to_top(page, chart, 70)                  # its top in the window (taller than the window: its top part)
            b = box(chart)
            im = grab(page, b["y"], min(b["height"], max_height or H - 80), b["x"], b["width"])
            return with_address(page, im)
    return take


def stop3(browser, url, when):
    with fresh_page(browser, W, H) as page:
        open_url(page, url + "/", 300_000)
        follow(page, "2. LSTM gates")
        follow(page, "Next: Embeddings and positional encoding")
        title = box(page.get_by_role("heading", name="Positional encoding", exact=True))
        top = grab(page, 50, title["y"] + title["height"] + 8 - 50)
        heading = page.get_by_role("heading", name="uses").filter(has_text="What")
        to_top(page, heading, 60)
        b = box(heading)
        section = grab(page, b["y"] - 10, 330)
        return with_address(page, top, section, note="stop 2, LSTM, then its Next link")


def masks_layer(browser, url, when):
    with fresh_page(browser, W, H) as page:
        open_url(page, url + "/", 300_000)
        follow(page, "4. Self-attention and multi-head")
        pick(page, "Layer", "3")
        follow(page, "Next: Masks")
        banner = page.get_by_text("Lesson, stop 5 of").first
        to_top(page, banner, 60)
        top = box(banner)["y"] - 26
        nxt = box(page.get_by_role("link", name="Next:"))
        first = grab(page, top, nxt["y"] + nxt["height"] + 20 - top)
        layer = page.locator("[data-testid='stSelectbox']").filter(has=page.get_by_role("combobox", name="Layer")).first
        to_top(page, layer, 160)
        b = box(layer)
        return with_address(page, first, grab(page, b["y"] - 50, b["height"] + 60),
                            note="layer 3 picked at stop 4, Attention, then its Next link")


def _train_top(page) -> Image.Image:
    """The main column from the preset's choice (its promise of time), or from the buttons where that does not
    fit in the window, down to the progress bar, the warnings and the queue's notice."""
    scope = page.locator("[data-testid='stMain']")
    main = box(page.locator("[data-testid='stMainBlockContainer']"))

    def region(anchor):
        to_top(page, anchor, 70)
        top = box(anchor)["y"] - 2
        below = [b["y"] for sel in ("[data-testid='stTable']", "[data-testid='stPlotlyChart']", "h2")
                 for i in range(scope.locator(sel).count())
                 if (b := scope.locator(sel).nth(i).bounding_box()) and b["y"] > top and b["height"] > 0]
        stop_at = min(below, default=top + H)
        ends = [b["y"] + b["height"] for sel in ("[data-testid='stProgress']", "[data-testid='stAlert']",
                                               "[data-testid='stCaptionContainer']", "[data-testid='stButton']")
                for i in range(scope.locator(sel).count())
                if (b := scope.locator(sel).nth(i).bounding_box()) and top < b["y"] and b["y"] + b["height"] < stop_at]
        return top, max(ends, default=top + 400) + 12

    top, bottom = region(scope.locator("[data-testid='stRadio']").first)
    if bottom > H:
        top, bottom = region(scope.locator("[data-testid='stButton']").first)
    return grab(page, top, bottom - top, main["x"] + 40, main["width"] - 80)


PROGRESS_JS = """() => [...document.querySelectorAll("[data-testid='stProgress']")].map(e => e.innerText).join(' | ')"""


def train_time(browser, url, when):
    with fresh_page(browser, W, H) as a, fresh_page(browser, W, H) as b:
        open_url(a, f"{url}/train", 300_000)
        a.get_by_role("button", name="Start a new training").click()
        # until the progress has moved (after: until the first steps were timed and the time left is shown)
        # until 20 s of training are shown (after: with the time left)
        want = re.compile(r"step [1-9]\d* of \d+ \(running, (\d+) s of training" + (r".*left" if when == "after" else ""))
        start, seen = time.time(), ""
        while time.time() < start + 240:
            seen = a.evaluate(PROGRESS_JS)
            if (m := want.search(seen)) and int(m.group(1)) >= 20 or "(done" in seen:
                break
            a.wait_for_timeout(1000)
        print(f"  session 1's progress: {seen}", flush=True)
        progress = _train_top(a)
        open_url(b, f"{url}/train", 300_000)
        b.get_by_role("button", name="Start a new training").click()
        b.wait_for_timeout(2500)
        wait_idle(b, 60_000)
        b.wait_for_timeout(1500)
        other = _train_top(b)
        page_b_address = address(b)
        for p in (b, a):                                       # leave no training behind
            stop = p.get_by_role("button", name="Stop").or_(p.get_by_role("button", name="Leave the queue"))
            if stop.count() and stop.first.is_enabled():
                stop.first.click()
                p.wait_for_timeout(1500)
        width = max(progress.width, other.width)
        return stack(strip(f"session 1 ({address(a)}): training the quick preset", width), progress,
                     strip(f"session 2 ({page_b_address}), meanwhile: pressed Start a new training", width), other,
                     gap=0)


def message(query: str, note: str, path: str = "attention"):
    def take(browser, url, when):
        with fresh_page(browser, W, H) as page:
            open_url(page, f"{url}/{path}?{query}", 300_000)
            alert = page.locator("[data-testid='stAlert']").first
            alert.wait_for(timeout=60_000)
            to_top(page, alert, 120)
            b = box(alert)
            return with_address(page, grab(page, b["y"] - 100, b["height"] + 116, b["x"] - 16, b["width"] + 32),
                                note=note)
    return take


@dataclass
class Shot:
    name: str
    take: Callable
    env: dict


SHOTS = [
    Shot("2-toolbar-lstm", toolbar("lstm", "forget gate", max_height=330), OFFLINE),
    Shot("2-toolbar-positional", toolbar("positional", "Dot product between positions"), OFFLINE),
    Shot("2-toolbar-attention", toolbar("attention", "head 4", max_height=330), OFFLINE),
    Shot("2-toolbar-translate", toolbar("translate?model=translator-en-fr&text=" + quote("the black cat ate the mouse")
                                        + "&step=3", "Step 3: next-word distribution"), OFFLINE),
    Shot("3-stop3", stop3, OFFLINE),
    Shot("3-masks-layer", masks_layer, OFFLINE),
    Shot("9-messages-trained", message("model=" + quote("Transformer trained live (1a2b3c4d)"),
                                               "a fresh browser"), OFFLINE),
    Shot("9-messages-gpt2-offline", message("model=gpt2", "server: HF_HUB_OFFLINE=1"), OFFLINE),
    Shot("8-train-time", train_time, OFFLINE),
    Shot("9-messages-gpt2-nonetwork", message("model=gpt2", "server: hub unreachable, offline mode off"),
         NO_NETWORK),
]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--old", type=Path, help=f"a checkout of {OLD_COMMIT} (default: git archive into a temp folder)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "layout")
    ap.add_argument("--only", nargs="*", default=[], help="name prefixes")
    ap.add_argument("--when", choices=("before", "after", "both"), default="both")
    args = ap.parse_args(argv)
    shots = [s for s in SHOTS if not args.only or any(s.name.startswith(p) for p in args.only)]
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="layout-shots-old-") as tmp:
        roots = []
        if args.when in ("before", "both"):
            roots.append(("before", args.old or old_checkout(Path(tmp))))
        if args.when in ("after", "both"):
            roots.append(("after", ROOT))
        for when, root in roots:
            envs = []
            for s in shots:
                if s.env not in envs:
                    envs.append(s.env)
            for env in envs:
                todo = [s for s in shots if s.env == env]
                with serve(root, env) as (url, proc, log), chromium() as browser:
                    try:
                        with fresh_page(browser, W, H) as warm:      # models loaded, caches filled
                            open_url(warm, url + "/", 300_000)
                    except Exception as e:
                        print(f"warming up the {when} server: {type(e).__name__}; it "
                              + (f"exited ({proc.returncode}):\n{Path(log).read_text()[-3000:]}"
                                 if proc.poll() is not None else "runs, going on"), flush=True)
                    for s in todo:
                        t0 = time.time()
                        try:
                            im = s.take(browser, url, when)
                        except Exception as e:                   # one failed picture does not stop the others
                            print(f"{s.name}-{when}: FAILED {type(e).__name__}: {e}", flush=True)
                            if proc.poll() is not None:
                                print(f"the server exited ({proc.returncode}):\n{Path(log).read_text()[-3000:]}")
                                break
                            continue
                        path = args.out / f"{s.name}-{when}.png"
                        size = save(im, path)
                        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {im.width}x"
                              f"{im.height}, {size / 1000:.0f} KB, {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
