"""Layout defects measured in the browser, by geometry: what a class would see as a collision or a cut label.

Used by tests/test_layout.py and by scripts that take screenshots of a page. Run `defects(page)` on a fully
drawn page (devkit.browser.wait_idle): it returns a list of dicts {kind, chart, what, detail}.

Kinds:
- ``overlap``: a legend, a toolbar (modebar) or a colour-bar title over a figure's title, a subplot title
  (annotation), a tick label of another axis, or over each other (legend and toolbar); a bar's value label (Plotly's
  ``text.bartext``) over a title, a subplot title, a legend or the toolbar.
- ``ticks``: two tick labels of one axis that collide (their rotated boxes intersect), in Plotly figures and in
  the live sampling chart (plain SVG).
- ``cell-text``: two text labels drawn in heatmap cells that run together ("−∞−∞").
- ``clipped``: a Plotly label drawn partly outside its figure (cut by the figure's edge).
- ``cut``: a Streamlit button, download button or page link whose label is cut (scrollWidth > clientWidth,
  or shown with an ellipsis).
"""
from __future__ import annotations

import collections

# Boxes of rotated SVG text are measured as their real (rotated) rectangles: the local bbox's four corners
# through the element's screen matrix; two convex quads intersect unless an axis separates them (SAT).
LAYOUT_JS = r"""
(opts) => {
  const TOL = (opts && opts.tol) || 1.0;           // pixels of overlap forgiven
  const TICK_GAP = 0, CELL_GAP = 4;                // tick labels collide when their boxes meet; cell labels read as one word when closer than 4 px
  const out = [];
  const short = (s) => (s || '').replace(/\s+/g, ' ').trim().slice(0, 60);
  // grow < 0: shrink (touching boxes do not count); grow > 0: labels closer than 2*grow px run together
  const quad = (el, grow) => {
    let b; try { b = el.getBBox(); } catch (e) { return null; }
    if (!b || (b.width === 0 && b.height === 0)) return null;
    const m = el.getScreenCTM(); if (!m) return null;
    const p = (x, y) => ({x: m.a * x + m.c * y + m.e, y: m.b * x + m.d * y + m.f});
    const s = grow === undefined ? -TOL / 2 : -grow, x0 = b.x + s, y0 = b.y + s, x1 = b.x + b.width - s, y1 = b.y + b.height - s;
    if (x1 <= x0 || y1 <= y0) return null;
    return [p(x0, y0), p(x1, y0), p(x1, y1), p(x0, y1)];
  };
  const rectQuad = (el) => {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) return null;
    const s = TOL / 2;
    return [{x: r.left + s, y: r.top + s}, {x: r.right - s, y: r.top + s}, {x: r.right - s, y: r.bottom - s},
            {x: r.left + s, y: r.bottom - s}];
  };
  const visible = (el) => {
    const cs = getComputedStyle(el);
    if (cs.display === 'none' || cs.visibility === 'hidden' || parseFloat(cs.opacity) === 0) return false;
    for (let e = el; e && e !== document.body; e = e.parentElement) {
      const c = getComputedStyle(e);
      if (c.display === 'none' || parseFloat(c.opacity) === 0) return false;
    }
    return true;
  };
  const axes = (q) => {
    const r = [];
    for (let i = 0; i < 4; i++) {
      const a = q[i], b = q[(i + 1) % 4];
      r.push({x: -(b.y - a.y), y: b.x - a.x});
    }
    return r;
  };
  const hit = (p, q) => {
    if (!p || !q) return false;
    for (const ax of [...axes(p), ...axes(q)]) {
      let pmin = Infinity, pmax = -Infinity, qmin = Infinity, qmax = -Infinity;
      for (const v of p) { const d = v.x * ax.x + v.y * ax.y; pmin = Math.min(pmin, d); pmax = Math.max(pmax, d); }
      for (const v of q) { const d = v.x * ax.x + v.y * ax.y; qmin = Math.min(qmin, d); qmax = Math.max(qmax, d); }
      if (pmax <= qmin || qmax <= pmin) return false;
    }
    return true;
  };
  const bounds = (q) => ({l: Math.min(...q.map(v => v.x)), r: Math.max(...q.map(v => v.x)),
                          t: Math.min(...q.map(v => v.y)), b: Math.max(...q.map(v => v.y))});
  const label = (el) => short(el.textContent);

  const charts = [...document.querySelectorAll('.js-plotly-plot')];
  charts.forEach((plot, ci) => {
    const titleEl = plot.querySelector('.gtitle');
    const chart = short(titleEl ? titleEl.textContent : '') || `chart ${ci + 1}`;
    const item = (el, kind, q) => ({el, kind, q, text: label(el)});
    const svgs = [...plot.querySelectorAll('svg.main-svg')];
    const frame = svgs.length ? svgs[0].getBoundingClientRect() : plot.getBoundingClientRect();
    const texts = (sel, kind) => [...plot.querySelectorAll(sel)]
        .filter(el => visible(el) && (el.textContent || '').trim())
        .map(el => item(el, kind, quad(el))).filter(i => i.q);
    const titles = texts('.gtitle', 'title');
    // annotations that are not heatmap cell text: subplot titles and notes
    const annos = texts('.annotation-text', 'subplot title');
    const cbtitles = texts('.cbtitle text', 'colour-bar title');
    const legends = [...plot.querySelectorAll('g.legend')].filter(visible).map(el => {
      const bg = el.querySelector('rect.bg') || el;
      return item(el, 'legend', quad(bg));
    }).filter(i => i.q);
    const modebars = [...plot.querySelectorAll('.modebar')].filter(visible)
        .map(el => item(el, 'toolbar', rectQuad(el))).filter(i => i.q);
    modebars.forEach(m => m.text = 'toolbar');
    // tick labels grouped by their axis layer (colour-bar ticks belong to their colour bar)
    const tickGroups = new Map();
    // (a colour bar's tick labels are in groups named "ycb<id>tick", not "ytick")
    plot.querySelectorAll('.xtick text, .ytick text, .colorbar g[class^="ycb"][class$="tick"] text').forEach(el => {
      if (!visible(el) || !(el.textContent || '').trim()) return;
      const q = quad(el, TICK_GAP ? TICK_GAP / 2 : undefined); if (!q) return;
      const layer = el.closest('[class*="axislayer"], .cbaxis, .colorbar') || el.parentNode.parentNode;
      const cls = el.parentNode.classList.contains('xtick') ? 'x' : 'y';           // colour bars here are vertical
      const key = layer;
      if (!tickGroups.has(key)) tickGroups.set(key, {cls, items: [], colorbar: !!el.closest('.colorbar, .cbaxis')});
      tickGroups.get(key).items.push(item(el, 'tick', q));
    });
    const groups = [...tickGroups.values()];
    const ticks = groups.flatMap(g => g.items.map(i => Object.assign(i, {group: g})));

    // a bar's value label (text="…" on a bar trace: Plotly draws it as text.bartext in the bar's g.point), which
    // textposition="outside" with cliponaxis=False may push out of the plotting area, into the title's band
    const barTexts = texts('g.points text.bartext', 'bar label');

    const add = (kind, what, detail) => out.push({kind, chart, what, detail});
    const pair = (a, b) => { if (hit(a.q, b.q)) add('overlap', `${a.kind} over ${b.kind}`, `"${a.text}" / "${b.text}"`); };
    for (const top of [...legends, ...modebars, ...cbtitles]) {
      for (const t of [...titles, ...annos]) pair(top, t);
    }
    for (const l of legends) for (const m of modebars) pair(l, m);
    for (const b of barTexts) for (const t of [...titles, ...annos, ...legends, ...modebars]) pair(b, t);
    // a colour-bar title or a legend on a plotting area (over the data)
    const areas = [...plot.querySelectorAll('.draglayer .nsewdrag')].map(el => item(el, 'plot area', rectQuad(el)))
        .filter(i => i.q);
    for (const top of [...cbtitles, ...legends]) {
      for (const a of areas) if (hit(top.q, a.q)) { add('overlap', `${top.kind} over plot area`, `"${top.text}"`); break; }
    }
    for (const cb of cbtitles) for (const m of modebars) pair(cb, m);
    // a colour-bar title or a legend over the tick labels of a (non-colour-bar) axis
    for (const top of [...cbtitles, ...legends]) {
      for (const t of ticks) if (!t.group.colorbar || top.kind === 'legend') {
        if (hit(top.q, t.q)) { add('overlap', `${top.kind} over tick label`, `"${top.text}" / "${t.text}"`); break; }
      }
    }
    // colliding tick labels of one axis
    for (const g of groups) {
      const it = g.items;
      let n = 0, first = '';
      for (let i = 0; i < it.length; i++) for (let j = i + 1; j < it.length; j++) {
        if (hit(it[i].q, it[j].q)) { n++; if (!first) first = `"${it[i].text}" / "${it[j].text}"`; }
      }
      if (n) add('ticks', `${n} colliding ${g.cls} tick label pair(s)${g.colorbar ? ' (colour bar)' : ''}`, first);
    }
    // text in heatmap cells running together, per trace
    plot.querySelectorAll('g.hm, g.heatmaplayer g.trace').forEach(hm => {
      const cells = [...hm.querySelectorAll('text')].filter(el => visible(el) && (el.textContent || '').trim())
          .map(el => item(el, 'cell', quad(el, CELL_GAP / 2))).filter(i => i.q);
      let n = 0, first = '';
      // cells sit on a grid: compare each with its neighbours in reading order (enough to see a run-together row)
      const sorted = cells.sort((a, b) => bounds(a.q).t - bounds(b.q).t || bounds(a.q).l - bounds(b.q).l);
      for (let i = 0; i < sorted.length; i++) for (let j = i + 1; j < Math.min(sorted.length, i + 40); j++) {
        if (hit(sorted[i].q, sorted[j].q)) { n++; if (!first) first = `"${sorted[i].text}" / "${sorted[j].text}"`; }
      }
      if (n) add('cell-text', `${n} colliding cell label pair(s)`, first);
    });
    // labels cut by the figure's edge
    for (const it of [...titles, ...annos, ...cbtitles, ...legends, ...ticks, ...barTexts]) {
      const b = bounds(it.q);
      if (b.l < frame.left - 2 || b.r > frame.right + 2 || b.t < frame.top - 2 || b.b > frame.bottom + 2) {
        add('clipped', `${it.kind} outside the figure`, `"${it.text}"`);
      }
    }
  });

  // the live sampling chart (plain SVG, components/live_sampling, inside its shadow root): its axis labels
  const roots = [document];
  const walk = (root) => root.querySelectorAll('*').forEach(e => {
    if (e.shadowRoot) { roots.push(e.shadowRoot); walk(e.shadowRoot); } });
  walk(document);
  const svgs = new Set(roots.flatMap(r => [...r.querySelectorAll('svg .ls-tick')]).map(t => t.ownerSVGElement));
  [...svgs].forEach((svg, si) => {
    const it = [...svg.querySelectorAll('.ls-tick')].filter(el => visible(el) && (el.textContent || '').trim())
        .map(el => ({text: short(el.textContent), q: quad(el)})).filter(i => i.q);
    let n = 0, first = '';
    for (let i = 0; i < it.length; i++) for (let j = i + 1; j < it.length; j++) {
      if (hit(it[i].q, it[j].q)) { n++; if (!first) first = `"${it[i].text}" / "${it[j].text}"`; }
    }
    if (n) out.push({kind: 'ticks', chart: `live sampling chart ${si + 1}`,
                     what: `${n} colliding x tick label pair(s)`, detail: first});
  });

  // Streamlit buttons, download buttons and page links whose label is cut
  const controls = document.querySelectorAll(
      '[data-testid="stButton"] button, [data-testid="stDownloadButton"] button, ' +
      '[data-testid="stPageLink"] a, [data-testid="stLinkButton"] a, [data-testid="stFormSubmitButton"] button');
  controls.forEach(ctl => {
    if (!visible(ctl) || ctl.getBoundingClientRect().width === 0) return;
    const name = short(ctl.innerText || ctl.textContent) || short(ctl.getAttribute("aria-label")) || ctl.outerHTML.slice(0, 60);
    const parts = [ctl, ...ctl.querySelectorAll('*')];
    for (const el of parts) {
      const cs = getComputedStyle(el);
      const txt = (el.innerText || el.textContent || '');
      const cut = el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0 && cs.overflowX !== 'visible';
      const ell = cs.textOverflow === 'ellipsis' && el.scrollWidth > el.clientWidth + 1;
      if (cut || ell || /…$/.test(txt.trim()) && !/…$/.test((el.getAttribute('aria-label') || txt).trim())) {
        out.push({kind: 'cut', chart: '', what: 'label cut', detail: `"${name}" (${el.scrollWidth} > ${el.clientWidth} px)`});
        break;
      }
    }
  });
  return out;
}
"""

# The first screen: where the key figure starts (the largest element matching the selector, by area; by default
# the largest Plotly chart on the page).
FIRST_SCREEN_JS = r"""
(sel) => {
  const els = [...document.querySelectorAll(sel || '[data-testid="stPlotlyChart"]')];
  if (!els.length) return null;
  const big = els.map(e => ({e, r: e.getBoundingClientRect()}))
                 .sort((a, b) => b.r.width * b.r.height - a.r.width * a.r.height);
  const inner = window.innerHeight;
  // the chart's index among the page's charts and its box relative to the unscrolled page
  const r = big[0].r, top = r.top + window.scrollY;
  const shown = Math.max(0, Math.min(inner, top + r.height) - Math.max(0, top));
  return {index: els.indexOf(big[0].e), top, height: r.height, visible: r.height ? shown / r.height : 0,
          title: ((big[0].e.querySelector('.gtitle') || {}).textContent || '').slice(0, 60)};
}
"""


def defects(page, tol: float = 1.0) -> list[dict]:
    """Every layout defect on the page as drawn now (see the module's docstring for the kinds)."""
    return page.evaluate(LAYOUT_JS, {"tol": tol})


def count_by_kind(found: list[dict]) -> dict[str, int]:
    return dict(collections.Counter(d["kind"] for d in found))


def first_screen(page, selector: str | None = None) -> dict | None:
    """Where the page's largest chart starts (scrolled to the top): top (px), height, visible share of it."""
    page.evaluate("() => { window.scrollTo(0, 0); const m = document.querySelector('[data-testid=\"stMain\"]');"
                  " if (m) m.scrollTop = 0; }")
    try:                                 # a component draws after the script is idle: wait for it to have a size
        page.wait_for_function(f"(sel) => {{ const w = ({FIRST_SCREEN_JS})(sel); return w && w.height > 0; }}",
                               arg=selector, timeout=20_000)
    except Exception:                    # measured as it is (the test then says what it found)
        pass
    return page.evaluate(FIRST_SCREEN_JS, selector)


def describe(found: list[dict]) -> str:
    return "\n".join(f"[{d['kind']}] {d['chart'] or '-'}: {d['what']} {d['detail']}" for d in found)


# The page's layout has settled: every Plotly chart drawn at its column's width (Streamlit passes the column width
# to Plotly as layout.width some hundreds of ms after a resize: more on a busy machine), no chart in a transition or
# a pending Plotly resize, every live sampling chart drawn at its box's width, and then nothing on the page moving or
# changing size for `quiet` ms (frames in a row). Resolves {waited: ms} or {late: what is still pending} at the
# deadline.
SETTLED_JS = r"""
async ({quiet, timeout}) => {
  const frame = () => new Promise(r => requestAnimationFrame(() => r()));
  const t0 = performance.now();
  const hosts = () => [...document.querySelectorAll("[data-testid='stBidiComponentIsolated']")];
  const pending = () => {
    const out = [];
    if (document.querySelector("[data-stale='true'], [data-testid='stSkeleton']")) out.push('a stale or loading element');
    document.querySelectorAll("[data-testid='stPlotlyChart']").forEach((c, i) => {
      const p = c.querySelector('.js-plotly-plot'), s = p && p.querySelector('.main-svg');
      if (!p || !s || !p.layout) { out.push(`chart ${i + 1} not drawn`); return; }
      if (p._transitioning || p._transitioningWithDuration || p._resolveResize) { out.push(`chart ${i + 1} in transition`); return; }
      const w = c.getBoundingClientRect().width;
      if (w > 0 && (Math.abs(p.layout.width - w) > 1 || Math.abs(Number(s.getAttribute('width')) - p.layout.width) > 1))
        out.push(`chart ${i + 1} drawn at ${s.getAttribute('width')} px in a ${Math.round(w)} px column`);
    });
    hosts().forEach((h, i) => {
      const r = h.shadowRoot && h.shadowRoot.querySelector('.ls-root');
      if (!r) return;                                   // not the live sampling chart
      const inst = r.__liveSampling && r.__liveSampling.instance;
      if (!r.dataset.draws || !inst) { out.push(`live sampling chart ${i + 1} not drawn`); return; }
      const box = inst.chartBox, cs = box && getComputedStyle(box);   // its ResizeObserver reads the content box
      const w = box ? Math.floor(box.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight)) : 0;
      if (w > 0 && Math.abs(w - inst.width) > 1) out.push(`live sampling chart ${i + 1} drawn at ${inst.width} px in a ${w} px box`);
    });
    return out;
  };
  const geometry = () => {
    const boxes = [...document.querySelectorAll('.js-plotly-plot, [data-testid="stElementContainer"]')]
        .map(e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.width, r.height].map(Math.round).join(','); });
    const svgs = [...document.querySelectorAll('.js-plotly-plot .main-svg')].map(s => s.getAttribute('width') + 'x' + s.getAttribute('height'));
    const live = hosts().map(h => { const s = h.shadowRoot && h.shadowRoot.querySelector('.ls-root svg');
                                    return s ? s.getAttribute('width') + 'x' + s.getAttribute('height') : ''; });
    return [document.documentElement.scrollHeight, boxes.join(';'), svgs.join(';'), live.join(';')].join('|');
  };
  // settled before and nothing has changed since (the same size measured twice): no new quiet period needed
  if (!pending().length && window.__labSettled === geometry()) return {waited: 0};
  let last = null, since = null;
  while (true) {
    await frame();
    const now = performance.now(), busy = pending();
    const g = busy.length ? null : geometry();
    if (g === null || g !== last) { last = g; since = now; }
    else if (now - since >= quiet) { window.__labSettled = g; return {waited: Math.round(now - t0)}; }
    if (now - t0 > timeout) return {late: busy.length ? busy.slice(0, 5) : ['the layout still moving']};
  }
}
"""


def settle(page, quiet_ms: int = 150, timeout_ms: int = 30_000) -> int:
    """Wait until the layout has settled (SETTLED_JS); return the ms waited. Fails naming what is still pending after
    timeout_ms (a measurement of a half-drawn page would say nothing)."""
    got = page.evaluate(SETTLED_JS, {"quiet": quiet_ms, "timeout": timeout_ms})
    if "late" in got:
        raise AssertionError(f"the layout did not settle within {timeout_ms / 1000:.0f} s: {'; '.join(got['late'])}")
    return got["waited"]


def resize(page, width: int, height: int, settle_ms: int | None = None) -> None:
    """A new viewport size, then wait until the charts have been redrawn at their new column widths (settle). With
    settle_ms, a fixed wait instead (0: none, e.g. before loading another page)."""
    page.set_viewport_size({"width": width, "height": height})
    if settle_ms is None:
        settle(page)
        return
    page.wait_for_timeout(settle_ms)
    page.wait_for_function("""() => [...document.querySelectorAll('.js-plotly-plot')]
        .every(p => !p._transitioning && p.querySelector('.main-svg'))""", timeout=15_000)


def axe_source() -> str:
    """axe-core's browser script, from the PyPI package axe-playwright-python (requirements-dev.txt)."""
    from importlib import resources

    try:
        return (resources.files("axe_playwright_python") / "axe.min.js").read_text()
    except (ModuleNotFoundError, FileNotFoundError):
        raise RuntimeError("axe-core not found: pip install -r requirements-dev.txt (axe-playwright-python)")


def axe(page, impacts: tuple[str, ...] = ("serious", "critical")) -> list[dict]:
    """Run axe-core on the page; the violations of the given impacts, each {id, impact, help, nodes: [targets]}."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=axe_source())
    res = page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ['violations']});
        return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                       nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ')),
                                       html: v.nodes.slice(0, 5).map(n => n.html.slice(0, 160)),
                                       data: v.nodes.slice(0, 5).map(n => JSON.stringify(
                                           ((n.any || [])[0] || {}).data || null))}));
    }""")
    return [v for v in res if v["impact"] in impacts]
