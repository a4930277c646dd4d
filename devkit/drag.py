"""Live sampling component: slider drag -> redrawn chart latency, measured inside headless Chromium.

`drag_latency(repeat)` starts tests/apps/live_sampling_app.py (V = 50,257 random logits, four panels), drags
the first panel's temperature slider with real mouse moves and times, inside the page, each `input` event
to the first task after the frame in which the component drew the new chart (the component's "ls-drawn"
signal, then a message-channel task so the frame's paint is included; performance.now() clock), quiet and
under Chromium's CPU throttling at rate 4, with the drawing before issue 18 as a reference, interleaved.
Also used by tests/test_live_sampling.py (serve_script, the drag and component helpers).
"""
from __future__ import annotations

import os
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


# Installs a probe on one instance: every `input` event on its sliders (capture phase, so before the
# component's own listener) waits for the component's own "ls-drawn" signal (dispatched at the end of the
# draw, inside its requestAnimationFrame callback), then for the first task after that frame (a
# message-channel task: the frame's style, layout and paint are done by then). Events that arrive in one
# frame share one draw. Per event: lat (input -> frame painted), maths (the draw's compute), dom (the
# draw's DOM writes), all in ms on performance.now(). (The probe before issue 18 registered its own
# requestAnimationFrame at the input event, which ran before the component's in the same frame, saw no
# draw yet and read one frame late.)
PROBE_JS = """(index) => {
  const root = document.querySelectorAll("%s")[index].shadowRoot.querySelector('.ls-root');
  const probe = {lat: [], maths: [], dom: [], changed: 0};
  window.__dragProbe = probe;
  const sig = () => [...root.querySelectorAll('.ls-bar-final')].slice(0, 5).map(r => r.getAttribute('width')).join(',');
  let waiting = [];
  root.getRootNode().addEventListener('input', () => { waiting.push({t0: performance.now(), s0: sig()}); }, true);
  root.addEventListener('ls-drawn', (ev) => {
    const these = waiting, d = ev.detail;
    waiting = [];
    if (!these.length) return;
    const ch = new MessageChannel();
    ch.port1.onmessage = () => {
      const t = performance.now(), s = sig();
      for (const w of these) {
        probe.lat.push(t - w.t0); probe.maths.push(d.maths); probe.dom.push(d.dom);
        if (s !== w.s0) probe.changed++;
      }
    };
    ch.port2.postMessage(0);
  });
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


def _q(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def drag_samples(repeat: int = 3, rates=(1, 4), drawings=("new", "old"), steps: int = 60) -> dict:
    """{(rate, drawing): probe}: temperature drags on the first of four panels (the Sampling page's: one full chart
    above three compact ones), V = 50,257, under Chromium's CPU throttling at each rate (CDP
    Emulation.setCPUThrottlingRate), with this drawing ("new") and the one before issue 18 ("old", the component's
    legacy hook), interleaved: each repeat drags once with each drawing, in alternating order."""
    out = {(r, d): {"lat": [], "maths": [], "dom": [], "changed": 0} for r in rates for d in drawings}
    with serve_script() as url, browser_page(1600, 1000) as page:
        open_component(page, f"{url}/?case=random50257&layout=four", n=4)
        cdp = page.context.new_cdp_session(page)
        page.evaluate(PROBE_JS, 0)
        for rate in rates:
            cdp.send("Emulation.setCPUThrottlingRate", {"rate": rate})
            for d in drawings:                                        # warm-up (JIT) in each drawing
                page.evaluate(f"(on) => {root_js(0)}.__liveSampling.legacy(on)", d == "old")
                drag(page, steps=20)
            for i in range(repeat):
                for d in (drawings if i % 2 == 0 else drawings[::-1]):
                    page.evaluate(f"(on) => {root_js(0)}.__liveSampling.legacy(on)", d == "old")
                    page.wait_for_timeout(200)
                    page.evaluate("() => { const p = window.__dragProbe; p.lat = []; p.maths = []; p.dom = []; p.changed = 0; }")
                    drag(page, steps=steps)
                    page.wait_for_timeout(300)
                    got = page.evaluate("() => window.__dragProbe")
                    for k in ("lat", "maths", "dom"):
                        out[(rate, d)][k] += got[k]
                    out[(rate, d)]["changed"] += got["changed"]
        cdp.send("Emulation.setCPUThrottlingRate", {"rate": 1})
        page.evaluate(f"() => {root_js(0)}.__liveSampling.legacy(false)")
    return out


def drag_latency(repeat: int = 3) -> list[tuple[str, str, str]]:
    """Rows (what, measured, target): input event -> frame painted while dragging, V = 50,257, four panels,
    quiet and at CPU throttling 4, this drawing and the one before issue 18, with the maths / paint split."""
    load0 = os.getloadavg()[0]
    samples = drag_samples(repeat)
    load = f"{load0:.1f} -> {os.getloadavg()[0]:.1f}"
    rows = []
    for (rate, d), p in samples.items():
        lat, maths = p["lat"], p["maths"]
        what = (f"live sampling, Chromium, V = 50,257, four panels, temperature drag: input event -> frame painted, "
                f"{'no throttling' if rate == 1 else f'CPU throttled x{rate}'}, "
                f"{'this drawing' if d == 'new' else 'drawing before issue 18 (reference)'} (load average {load})")
        if not lat:
            rows.append((what, "no input events measured", ""))
            continue
        paint = [t - m for t, m in zip(lat, maths)]
        fig = (f"median {statistics.median(lat):.1f} ms, p95 {_q(lat, 0.95):.1f} ms (maths median {statistics.median(maths):.1f} / "
               f"p95 {_q(maths, 0.95):.1f} ms; DOM writes median {statistics.median(p['dom']):.2f} ms; rest to painted frame "
               f"median {statistics.median(paint):.1f} / p95 {_q(paint, 0.95):.1f} ms; n = {len(lat)}, chart changed in {p['changed']})")
        rows.append((what, fig, ("p95 <= 16.7 ms" if rate == 1 else "p95 <= 50 ms") if d == "new" else ""))
    return rows


if __name__ == "__main__":                                        # python -m devkit.drag [repeat]
    for row in drag_latency(int(sys.argv[1]) if len(sys.argv) > 1 else 5):
        print(" | ".join(row))
