"""Live sampling component: slider drag -> redrawn chart latency, measured inside headless Chromium.

`drag_latency(repeat)` starts tests/apps/live_sampling_app.py (V = 50,257 random logits), drags the
temperature slider with real mouse moves and times, inside the page, each `input` event to the
first task after the frame in which the component drew the new chart (requestAnimationFrame, then
a message-channel task so the frame's paint is included; performance.now() clock).
Also used by tests/test_live_sampling.py (serve_script, the drag and component helpers).
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path

from devkit.browser import browser_page, serve_app

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "tests" / "apps" / "live_sampling_app.py"
HOST = "[data-testid='stBidiComponentIsolated']"


def serve_script(script: Path = APP, timeout: float = 90):
    """Start `streamlit run script` (the live-sampling test app by default) on a free local port."""
    return serve_app(timeout, script=script)


def open_component(page, url: str, n: int = 1, timeout_ms: int = 60_000) -> None:
    """Open a URL of the test app and wait until n component instances have drawn their chart."""
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector("[data-test-script-state='notRunning']", state="attached", timeout=timeout_ms)
    page.wait_for_function(f"""(n) => {{
        const hosts = [...document.querySelectorAll("{HOST}")];
        return hosts.length >= n && hosts.every(h => h.shadowRoot && h.shadowRoot.querySelector('.ls-root[data-draws]'));
    }}""", arg=n, timeout=timeout_ms)


def root_js(index: int = 0) -> str:
    """A JS expression for the index-th instance's root element (inside its shadow root)."""
    return f"document.querySelectorAll(\"{HOST}\")[{index}].shadowRoot.querySelector('.ls-root')"


# Installs a probe on one instance: every `input` event on its sliders is timed (capture phase, so
# before the component's own listener) until the first task after the frame in which its draw
# counter moved past the value it had at the event.
PROBE_JS = """(index) => {
  const root = document.querySelectorAll("%s")[index].shadowRoot.querySelector('.ls-root');
  const probe = {lat: [], changed: 0, signatures: []};
  window.__dragProbe = probe;
  const sig = () => [...root.querySelectorAll('.ls-bar-final')].slice(0, 5).map(r => r.getAttribute('width')).join(',');
  root.getRootNode().addEventListener('input', (ev) => {
    const t0 = performance.now();
    const before = Number(root.dataset.draws || 0);
    const s0 = sig();
    const wait = () => requestAnimationFrame(() => {
      if (Number(root.dataset.draws || 0) > before) {
        const ch = new MessageChannel();
        ch.port1.onmessage = () => { probe.lat.push(performance.now() - t0); if (sig() !== s0) probe.changed++; };
        ch.port2.postMessage(0);
      } else if (performance.now() - t0 < 5000) wait();
    });
    wait();
  }, true);
  return true;
}""" % HOST


def drag(page, index: int = 0, slider: str = "temperature", steps: int = 60, back: bool = True,
         check=None) -> None:
    """Press the mouse on a slider's thumb of the index-th instance, move it across the track in
    `steps` mouse moves (and back), then release. check(i) is called between moves (mouse still down)."""
    box = page.evaluate(f"""() => {{
        const r = {root_js(index)}.querySelector("input[data-name='{slider}']");
        r.scrollIntoView({{block: 'center'}});
        const b = r.getBoundingClientRect();
        const f = (Number(r.value) - Number(r.min)) / (Number(r.max) - Number(r.min));
        return {{x: b.left, y: b.top + b.height / 2, w: b.width, f}};
    }}""")
    x0 = box["x"] + 8 + (box["w"] - 16) * box["f"]               # the thumb's centre
    y = box["y"]
    page.mouse.move(x0, y)
    page.mouse.down()
    path = [box["x"] + 4 + (box["w"] - 8) * i / steps for i in range(steps + 1)]
    if back:
        path += path[::-1]
    for i, x in enumerate(path):
        page.mouse.move(x, y)
        if check:
            check(i)
    page.mouse.up()


def drag_latency(repeat: int = 5) -> list[tuple[str, str, str]]:
    """Rows (what, measured, target): input event -> redrawn chart while dragging, V = 50,257."""
    lat: list[float] = []
    changed = total = 0
    with serve_script() as url, browser_page(1600, 1000) as page:
        open_component(page, f"{url}/?case=random50257")
        page.evaluate(PROBE_JS, 0)
        drag(page, steps=20)                                      # warm-up (JIT)
        page.wait_for_timeout(300)
        page.evaluate("() => { window.__dragProbe.lat = []; window.__dragProbe.changed = 0; }")
        for _ in range(repeat):
            drag(page, steps=60)
            page.wait_for_timeout(200)
        probe = page.evaluate("() => window.__dragProbe")
        lat, changed = probe["lat"], probe["changed"]
        total = len(lat)
    if not lat:
        return [("live sampling: slider input event -> chart redrawn (V = 50,257)", "no input events measured", "<= 50 ms")]
    return [("live sampling, Chromium, V = 50,257: temperature drag, input event -> chart redrawn and painted",
             f"median {statistics.median(lat):.1f} ms, 95th percentile {sorted(lat)[int(0.95 * (total - 1))]:.1f} ms "
             f"(max {max(lat):.1f} ms, n = {total}, chart changed in {changed})",
             "<= 50 ms")]


if __name__ == "__main__":                                        # python -m devkit.drag [repeat]
    for row in drag_latency(int(sys.argv[1]) if len(sys.argv) > 1 else 5):
        print(" | ".join(row))
