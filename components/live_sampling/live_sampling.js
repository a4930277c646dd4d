// Live sampling: temperature -> top-k -> top-p -> final, recomputed in the browser on every
// `input` event of the component's own sliders. Same rules as model/sampling.py and Hugging Face
// transformers' TemperatureLogitsWarper / TopKLogitsWarper / TopPLogitsWarper.
//
// Data from Python (components/live_sampling/__init__.py): {id, logits (base64 float32 LE), n,
// labels: [[token id, label], ...] for the words the chart can show, settings, ranges (each
// setting's min, max, step, default, label and hint, from model.sampling.SamplingSettings: the
// only place they are written), top_n, compact, large, title}. Settings go back to Python on release (`change`), as state "settings".
// Vocabulary labels are untrusted text: they only ever become text nodes (textContent).

const SVG = "http://www.w3.org/2000/svg";
const PREPARED = new Map();          // logits id -> prepared arrays, shared by every instance on the page
const INSTANCES = new WeakMap();     // root element -> instance

// ------------------------------------------------------------------ maths (pure, exposed for tests)

export function decodeLogits(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new Float32Array(bytes.buffer);                     // little-endian, as numpy sends it
}

// Sort once per logits: descending, ties with the higher vocabulary id first (the reverse of a
// stable ascending sort, which is what TopPLogitsWarper's torch.sort does on small vocabularies).
export function prepare(x) {
  const V = x.length;
  const order = new Uint32Array(V);
  for (let i = 0; i < V; i++) order[i] = i;
  order.sort((a, b) => (x[a] > x[b] ? -1 : x[a] < x[b] ? 1 : b - a));
  const xs = new Float32Array(V);
  for (let i = 0; i < V; i++) xs[i] = x[order[i]];
  const raw = new Float64Array(V);
  const m = xs[0];
  let z = 0;
  for (let i = 0; i < V; i++) { raw[i] = Math.exp(xs[i] - m); z += raw[i]; }
  let h = 0;
  for (let i = 0; i < V; i++) { raw[i] /= z; if (raw[i] > 0) h -= raw[i] * Math.log(raw[i]); }
  return { V, order, xs, raw, rawEntropy: h, e: new Float64Array(V) };
}

// One setting. Positions are in the sorted order of `pre`: the final support is always the first
// `kept` of them (top-k keeps a prefix including ties at the k-th value, top-p a prefix of that).
export function compute(pre, temperature, topK, topP) {
  const { V, xs, e } = pre;
  const t = Math.fround(temperature);                       // torch divides float32 by float32
  const m = Math.fround(xs[0] / t);
  // One pass over the vocabulary: e = exp(s - m), z = sum e, and a = sum e * (s - m) (for the entropy, whose
  // log q is (s - m) - log zF: no logarithm per word; e = 0 terms, -inf logits included, add nothing).
  let z = 0, a = 0;
  for (let i = 0; i < V; i++) {
    const d = Math.fround(xs[i] / t) - m, v = Math.exp(d);
    e[i] = v; z += v;
    if (v > 0) a += v * d;
  }
  let nK = V;
  if (topK > 0 && topK < V) {                                // top-k: keep every word >= the k-th
    const kth = Math.fround(xs[topK - 1] / t);
    nK = topK;
    while (nK < V && Math.fround(xs[nK] / t) >= kth) nK++;
  }
  let zK = 0;
  for (let i = 0; i < nK; i++) zK += e[i];
  let nP = nK;
  if (topP < 1) {                                            // top-p: a word goes when the mass ahead of it >= p
    let before = 0;
    nP = 1;                                                  // the most likely word always stays
    for (let i = 1; i < nK; i++) {
      before += e[i - 1];
      if (before / zK >= topP) break;
      nP = i + 1;
    }
  }
  let zF = 0;
  for (let i = 0; i < nP; i++) zF += e[i];
  if (nP < V) {                                              // the kept words only (a prefix): the sum again
    a = 0;
    for (let i = 0; i < nP; i++) { const v = e[i]; if (v > 0) a += v * (Math.fround(xs[i] / t) - m); }
  }
  const h = Math.max(0, Math.log(zF) - a / zF);              // -sum q log q, q = e / zF
  let cutK = 0, cutP = 0;
  for (let i = nK; i < V; i++) cutK += e[i];
  for (let i = nP; i < nK; i++) cutP += e[i];
  return {
    V, keptTopK: nK, kept: nP, z, zFinal: zF,
    entropy: h, rawEntropy: pre.rawEntropy,
    removedByTopK: cutK / z, removedByTopP: cutP / z, removedMass: (cutK + cutP) / z,
    scaled: (i) => e[i] / z,                                 // by sorted position
    final: (i) => (i < nP ? e[i] / zF : 0),
    raw: (i) => pre.raw[i],
  };
}

// For tests: the whole distribution in vocabulary order.
export function full(pre, temperature, topK, topP) {
  const r = compute(pre, temperature, topK, topP);
  const probs = new Array(pre.V).fill(0);
  const keep = [];
  for (let i = 0; i < r.kept; i++) { probs[pre.order[i]] = r.final(i); keep.push(pre.order[i]); }
  const topkKeep = [];
  for (let i = 0; i < r.keptTopK; i++) topkKeep.push(pre.order[i]);
  keep.sort((a, b) => a - b);
  topkKeep.sort((a, b) => a - b);
  return { keep, topkKeep, probs, entropy: r.entropy, rawEntropy: r.rawEntropy, removedMass: r.removedMass,
           removedByTopK: r.removedByTopK, removedByTopP: r.removedByTopP };
}

if (typeof window !== "undefined") window.__liveSamplingMath = { decodeLogits, prepare, compute, full, clampSettings };

// ------------------------------------------------------------------ formatting

const INT = new Intl.NumberFormat("en-US");
const fmtInt = (n) => INT.format(n);
function fmtPct(p) {
  if (p <= 0) return "0%";
  if (p < 0.001) return "<0.1%";
  if (p >= 0.9995 && p < 1) return ">99.9%";
  return (p * 100).toFixed(p < 0.1 ? 1 : p < 0.995 ? 1 : 0) + "%";
}
function fmtLabel(s, max) {
  let t = String(s).replace(/\n/g, "↵").replace(/\t/g, "⇥").replace(/\r/g, "␍");
  if (t.trim() === "") t = t.replace(/ /g, "␣") || "∅";
  return t.length > max ? t.slice(0, max - 1) + "…" : t;
}
function el(tag, cls, parent, text) {
  const n = document.createElement(tag);
  if (cls) n.className = cls;
  if (text !== undefined) n.textContent = text;
  if (parent) parent.appendChild(n);
  return n;
}
function svgEl(tag, attrs, parent) {
  const n = document.createElementNS(SVG, tag);
  for (const k in attrs) n.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(n);
  return n;
}
// The chart's scale: a round maximum and a round tick step.
const SCALES = [[0.01, 0.002], [0.02, 0.005], [0.05, 0.01], [0.1, 0.02], [0.2, 0.05], [0.25, 0.05], [0.4, 0.1],
                [0.5, 0.1], [0.6, 0.2], [0.8, 0.2], [1, 0.2]];
function niceScale(v) {
  for (const [m, step] of SCALES) if (v <= m + 1e-12) return [m, step];
  return [1, 0.2];
}
const fmtTick = (p, step) => (p * 100).toFixed(step < 0.01 ? 1 : 0) + "%";
// Tick j's label, or "" where it would run into a neighbour's ("8%10%" in a narrow panel): labels every
// `every`-th tick, as often as the widest label (about 0.68 em a character) allows; the last, right-aligned
// label also needs half the previous one's width. dx: pixels between two ticks.
function tickLabel(j, nTicks, step, dx, fs) {
  const w = (k) => fmtTick(k * step, step).length * fs * 0.68, gap = fs * 0.5, widest = w(nTicks);
  let every = 1;
  while (every < nTicks && every * dx < widest + gap) every++;
  if (j % every) return "";
  if (j === nTicks && j > 0 && every * dx < widest + w(j - every) / 2 + gap) return "";
  return fmtTick(j * step, step);
}

// ------------------------------------------------------------------ the instance

const KPOS = 1000;                                           // top-k slider positions on a large vocabulary

function kToPos(k, V) {
  if (V <= KPOS) return k;
  if (k <= 0) return 0;
  return Math.min(KPOS, 1 + Math.round((KPOS - 1) * Math.log(k) / Math.log(V)));
}
function posToK(pos, V) {
  if (V <= KPOS) return pos;
  if (pos <= 0) return 0;
  return Math.min(V, Math.max(1, Math.round(Math.exp(Math.log(V) * (pos - 1) / (KPOS - 1)))));
}

function makeInstance(root, ranges) {
  const inst = { root, draws: 0, settings: null, lastSent: null, lastData: null, pre: null, id: null,
                 labels: new Map(), pending: false, setState: null };
  root.replaceChildren();
  const head = el("div", "ls-head", root);
  inst.titleEl = el("div", "ls-title", head);
  inst.pngBtn = el("button", "ls-png", head, "PNG");
  inst.pngBtn.type = "button";
  inst.pngBtn.title = "Download this chart, its settings and legend as a PNG image";
  inst.pngBtn.addEventListener("click", () => downloadPng(inst));
  const controls = el("div", "ls-controls", root);

  function control(name, label, hint) {
    const box = el("div", "ls-control", controls);
    const top = el("div", "ls-control-top", box);
    const lab = el("label", "ls-label", top, label);
    const val = el("span", "ls-value", top);
    const range = el("input", "ls-range", box);
    range.type = "range";
    range.dataset.name = name;
    range.setAttribute("aria-label", label);
    el("div", "ls-hint", box, hint);
    return { box, range, val };
  }
  inst.t = control("temperature", ranges.temperature.label, ranges.temperature.hint);
  inst.k = control("top_k", ranges.top_k.label, ranges.top_k.hint);
  inst.p = control("top_p", ranges.top_p.label, ranges.top_p.hint);
  inst.kNum = el("input", "ls-num", inst.k.val.parentNode);
  inst.kNum.type = "number";
  inst.kNum.min = "0";
  inst.kNum.step = "1";
  inst.kNum.setAttribute("aria-label", "Top-k value");
  inst.k.val.remove();

  const stats = el("div", "ls-stats", root);
  const stat = (label) => { const b = el("div", "ls-stat", stats); el("div", "ls-stat-label", b, label); return el("div", "ls-stat-value", b); };
  inst.sRaw = stat("Entropy (raw)");
  inst.sFin = stat("Entropy (final)");
  inst.sKept = stat("Words kept");
  inst.sCut = stat("Mass cut");

  const legend = el("div", "ls-legend", root);
  const item = (cls, text) => { const it = el("span", "ls-legend-item", legend); el("span", "ls-swatch " + cls, it); el("span", "", it, text); };
  item("sw-raw", "raw (T = 1)");
  item("sw-scaled", "after temperature");
  item("sw-final", "final, renormalised");
  item("sw-cutk", "cut by top-k");
  item("sw-cutp", "cut by top-p");

  inst.legend = legend;
  inst.chartBox = el("div", "ls-chart", root);
  inst.svg = svgEl("svg", { role: "img" }, inst.chartBox);
  inst.note = el("div", "ls-note", root);
  // tooltips: a row's is written when the pointer comes onto it (and kept current while it stays there)
  inst.svg.addEventListener("pointerover", (ev) => {
    if (inst.legacy || !inst.rows) return;
    const g = ev.target.closest && ev.target.closest(".ls-row");
    const row = g ? inst.rows[Number(g.dataset.row)] : null;
    if (row && row.g === g && inst.hover !== row) { inst.hover = row; row.tip.textContent = tipText(row); }
  });
  inst.svg.addEventListener("pointerleave", () => { inst.hover = null; });

  // input: redraw on the next frame (many input events in one frame draw once); change: tell Python.
  const onInput = (ev) => {
    const tgt = ev.target;
    if (tgt === inst.kNum) {
      const k = Math.max(0, Math.min(inst.pre ? inst.pre.V : 0, Math.round(Number(tgt.value) || 0)));
      inst.settings.top_k = k;
      inst.k.range.value = String(kToPos(k, inst.pre.V));
    } else if (tgt === inst.t.range) inst.settings.temperature = Number(tgt.value);
    else if (tgt === inst.p.range) inst.settings.top_p = Number(tgt.value);
    else if (tgt === inst.k.range) inst.settings.top_k = posToK(Number(tgt.value), inst.pre.V);
    else return;
    schedule(inst);
  };
  const onChange = (ev) => { onInput(ev); send(inst); };
  for (const c of [inst.t.range, inst.k.range, inst.p.range, inst.kNum]) {
    c.addEventListener("input", onInput);
    c.addEventListener("change", onChange);
  }
  // a test/bench hook on the element (inside the component's shadow root)
  root.__liveSampling = {
    instance: inst,
    result: (t, k, p) => full(inst.pre, t, k, p),
    set: (t, k, p) => { inst.settings = { temperature: t, top_k: k, top_p: p }; syncControls(inst); draw(inst); },
    settings: () => ({ ...inst.settings }),
    // the drawing before issue 18 (bench reference): on/off, redraws at once
    legacy: (on) => { inst.legacy = !!on; inst.chartKey = null; if (inst.pre) draw(inst); return inst.legacy; },
  };
  // redraw when the column changes width (no cleanup needed: it goes with the element)
  // (the width is read here, not in draw: reading it there would force a layout of the whole page)
  new ResizeObserver((entries) => {
    const w = Math.floor(entries[entries.length - 1].contentRect.width);
    if (w !== inst.width) { inst.width = w; if (inst.pre) draw(inst); }
  }).observe(inst.chartBox);
  return inst;
}

function send(inst) {
  const s = { ...inst.settings };
  inst.lastSent = s;
  if (inst.setState) inst.setState("settings", s);
}

function schedule(inst) {
  if (inst.pending) return;
  inst.pending = true;
  requestAnimationFrame(() => { inst.pending = false; draw(inst); });
}

function syncControls(inst) {
  const s = inst.settings, V = inst.pre.V, R = inst.ranges;
  Object.assign(inst.t.range, { min: R.temperature.min, max: R.temperature.max, step: R.temperature.step });
  Object.assign(inst.p.range, { min: R.top_p.min, max: R.top_p.max, step: R.top_p.step });
  inst.t.range.value = String(s.temperature);
  inst.p.range.value = String(s.top_p);
  inst.k.range.max = String(V <= KPOS ? V : KPOS);
  inst.k.range.step = "1";
  inst.k.range.min = "0";
  inst.k.range.value = String(kToPos(s.top_k, V));
  inst.kNum.max = String(V);
  if (document.activeElement !== inst.kNum && inst.root.getRootNode().activeElement !== inst.kNum) inst.kNum.value = String(s.top_k);
}

// One update. Every text is written only when it changes. When done, the root dispatches "ls-drawn" (not
// bubbling) with {t0, maths, dom}: performance.now() at the start, the maths' and the DOM writes' ms.
function draw(inst) {
  const t0 = performance.now();
  const s = inst.settings, pre = inst.pre, V = pre.V;
  const r = compute(pre, s.temperature, s.top_k, s.top_p);
  const t1 = performance.now();
  const setText = inst.legacy ? setTextAlways : setTextIfChanged;
  setText(inst.t.val, s.temperature.toFixed(2));
  setText(inst.p.val, s.top_p >= 1 ? "1.00 (off)" : s.top_p.toFixed(2));
  if (inst.root.getRootNode().activeElement !== inst.kNum && inst.kNum.value !== String(s.top_k)) inst.kNum.value = String(s.top_k);
  inst.k.box.classList.toggle("ls-off", !(s.top_k > 0 && s.top_k < V));
  inst.p.box.classList.toggle("ls-off", !(s.top_p < 1));
  setText(inst.sRaw, r.rawEntropy.toFixed(2) + " nats");
  setText(inst.sFin, r.entropy.toFixed(2) + " nats");
  setText(inst.sKept, fmtInt(r.kept) + " of " + fmtInt(V));
  setText(inst.sCut, fmtPct(r.removedMass));
  const cutTip = "top-k cut " + fmtPct(r.removedByTopK) + ", top-p cut " + fmtPct(r.removedByTopP);
  if (inst.sCut.title !== cutTip) inst.sCut.title = cutTip;
  drawChart(inst, r);
  inst.draws += 1;
  inst.root.dataset.draws = String(inst.draws);
  if (inst.root.dataset.kept !== String(r.kept)) inst.root.dataset.kept = String(r.kept);
  const t2 = performance.now();
  inst.root.dispatchEvent(new CustomEvent("ls-drawn", { detail: { t0, maths: t1 - t0, dom: t2 - t1, draws: inst.draws } }));
}

// The chart's geometry, from the column width and the instance's settings (not from the data).
function geometry(inst) {
  const cfg = inst.cfg;
  const n = Math.min(cfg.top_n, inst.pre.V);
  const fs = (cfg.large ? 1.45 : 1) * (cfg.compact ? 12 : 13);
  const rowH = Math.round(fs * (cfg.compact ? 1.55 : 1.75));
  if (!inst.width) inst.width = Math.floor(inst.chartBox.clientWidth);     // first draw only
  const W = Math.max(240, inst.width || 600);
  const labelW = Math.round(Math.min(W * 0.32, fs * (cfg.compact ? 7.5 : 10)));
  const valueW = Math.round(fs * 4.6);
  const top = Math.round(fs * 1.6);
  const plotW = Math.max(60, W - labelW - valueW - 8);
  return { n, fs, rowH, W, labelW, valueW, top, plotW, H: top + n * rowH + 4 };
}

const MAX_TICKS = 1 + Math.max(...SCALES.map(([m, step]) => Math.round(m / step)));

// Build the chart's elements once per size and logits: rows (word label, three bars, value, an empty tooltip),
// and a pool of gridlines with their tick labels. The words never change for given logits (they are the top
// words by logit), so their labels are written here only.
function buildChart(inst, g, key) {
  const svg = inst.svg, pre = inst.pre;
  inst.chartKey = key;
  inst.hover = null;
  svg.replaceChildren();
  svg.setAttribute("width", g.W);
  svg.setAttribute("height", g.H);
  svg.setAttribute("viewBox", `0 0 ${g.W} ${g.H}`);
  svg.style.fontSize = g.fs + "px";
  svgEl("title", {}, svg).textContent = "Top " + g.n + " words: raw, after temperature, cut and final probability";
  inst.grid = svgEl("g", { class: "ls-grid" }, svg);
  inst.ticks = [];                                          // the pool: in the grid only while the scale uses them
  for (let j = 0; j < MAX_TICKS; j++) {
    const line = svgEl("line", { y1: g.top - 3, y2: g.H - 2, class: "ls-gridline" });
    const text = svgEl("text", { y: g.top - g.fs * 0.45, class: "ls-tick" });
    inst.ticks.push({ line, text, x: null, anchor: null, label: null });
  }
  inst.shownTicks = 0;
  inst.scale = null;
  inst.rows = [];
  const maxChars = Math.max(6, Math.floor((g.labelW - 8) / (g.fs * 0.62)));
  for (let i = 0; i < g.n; i++) {
    const y = g.top + i * g.rowH, rowH = g.rowH;
    const rg = svgEl("g", { class: "ls-row" }, svg);
    rg.dataset.row = String(i);
    const tip = svgEl("title", {}, rg);
    const label = svgEl("text", { x: g.labelW - 6, y: y + rowH * 0.68, "text-anchor": "end", class: "ls-word" }, rg);
    const scaled = svgEl("rect", { x: g.labelW, y: y + rowH * 0.08, height: rowH * 0.3, class: "ls-bar-scaled" }, rg);
    const fin = svgEl("rect", { x: g.labelW, y: y + rowH * 0.4, height: rowH * 0.34, class: "ls-bar-final" }, rg);
    const raw = svgEl("rect", { x: g.labelW, y: y + rowH * 0.78, height: Math.max(2, rowH * 0.1), class: "ls-bar-raw" }, rg);
    const val = svgEl("text", { x: g.W - 4, y: y + rowH * 0.68, "text-anchor": "end", class: "ls-val" }, rg);
    const id = pre.order[i];
    const lab = inst.labels.has(id) ? inst.labels.get(id) : "#" + id;
    label.textContent = fmtLabel(lab, maxChars);                       // text node: never parsed as markup
    // what is drawn now: the DOM is written only where these change
    inst.rows.push({ g: rg, tip, label, scaled, fin, raw, val, lab, status: null, text: null,
                     ws: null, wf: null, wr: null, rp: 0, sp: 0, fp: 0 });
  }
}

// A row's tooltip, from the numbers it shows now (written when the pointer is on the row, not on every update).
function tipText(row) {
  return `${row.lab}\nraw ${fmtPct(row.rp)} · after temperature ${fmtPct(row.sp)} · final ${fmtPct(row.fp)}` +
    (row.status === "kept" ? "" : row.status === "cutp" ? " · cut by top-p" : " · cut by top-k");
}

function setTextIfChanged(node, text) { if (node.textContent !== text) node.textContent = text; }
function setTextAlways(node, text) { node.textContent = text; }
const setText = setTextIfChanged;

// One update: only what changed is written (bar widths, a row's class and value when its status or value
// moves, the gridlines only when the scale changes; tooltips on hover). Same picture as drawChartLegacy.
function drawChart(inst, r) {
  if (inst.legacy) return drawChartLegacy(inst, r);
  const g = geometry(inst), pre = inst.pre, n = g.n;
  const key = `${g.W}|${n}|${g.fs}|${inst.id}`;
  if (inst.chartKey !== key) buildChart(inst, g, key);
  let vmax = 0;
  for (let i = 0; i < n; i++) vmax = Math.max(vmax, r.raw(i), r.scaled(i), r.final(i));
  const [xmax, step] = niceScale(vmax);
  const X = (p) => g.labelW + (g.plotW * Math.min(p, xmax)) / xmax;
  if (inst.scale !== xmax) {                                 // gridlines and ticks: only when the scale changes
    inst.scale = xmax;
    const nTicks = Math.round(xmax / step);
    for (let j = 0; j < MAX_TICKS; j++) {
      const t = inst.ticks[j];
      if (j > nTicks) { if (t.line.parentNode) { t.line.remove(); t.text.remove(); } continue; }
      const p = step * j, x = X(p);
      const anchor = j === 0 ? "start" : j === nTicks ? "end" : "middle";
      const label = tickLabel(j, nTicks, step, (g.plotW * step) / xmax, g.fs);
      if (t.x !== x) { t.x = x; t.line.setAttribute("x1", x); t.line.setAttribute("x2", x); t.text.setAttribute("x", x); }
      if (t.anchor !== anchor) { t.anchor = anchor; t.text.setAttribute("text-anchor", anchor); }
      if (t.label !== label) { t.label = label; t.text.textContent = label; }
      if (!t.line.parentNode) { inst.grid.appendChild(t.line); inst.grid.appendChild(t.text); }
    }
    setText(inst.note, pre.V > n
      ? `Top ${n} of ${fmtInt(pre.V)} words by logit; the scale ends at ${fmtPct(xmax)}.`
      : `All ${fmtInt(pre.V)} words; the scale ends at ${fmtPct(xmax)}.`);
  }
  for (let i = 0; i < n; i++) {
    const row = inst.rows[i];
    const status = i < r.kept ? "kept" : i < r.keptTopK ? "cutp" : "cutk";
    const sp = r.scaled(i), fp = r.final(i), rp = r.raw(i);
    row.sp = sp; row.fp = fp; row.rp = rp;
    if (row.status !== status) { row.status = status; row.g.setAttribute("class", "ls-row ls-" + status); }
    const ws = Math.max(0, X(sp) - g.labelW), wf = Math.max(0, X(fp) - g.labelW), wr = Math.max(0, X(rp) - g.labelW);
    if (row.ws !== ws) { row.ws = ws; row.scaled.setAttribute("width", ws); }
    if (row.wf !== wf) { row.wf = wf; row.fin.setAttribute("width", wf); }
    if (row.wr !== wr) { row.wr = wr; row.raw.setAttribute("width", wr); }
    const text = status === "kept" ? fmtPct(fp) : status === "cutp" ? "cut (p)" : "cut (k)";
    if (row.text !== text) { row.text = text; row.val.textContent = text; }
  }
  if (inst.hover) inst.hover.tip.textContent = tipText(inst.hover);   // the one tooltip being looked at
}

// The drawing before issue 18, kept reachable (root.__liveSampling.legacy(true)) as the benchmark's reference:
// it rebuilds the gridlines and rewrites every row's class, texts and tooltip on each update.
function drawChartLegacy(inst, r) {
  const pre = inst.pre, cfg = inst.cfg;
  const n = Math.min(cfg.top_n, pre.V);
  const large = cfg.large, compact = cfg.compact;
  const fs = (large ? 1.45 : 1) * (compact ? 12 : 13);
  const rowH = Math.round(fs * (compact ? 1.55 : 1.75));
  if (!inst.width) inst.width = Math.floor(inst.chartBox.clientWidth);     // first draw only
  const W = Math.max(240, inst.width || 600);
  const labelW = Math.round(Math.min(W * 0.32, fs * (compact ? 7.5 : 10)));
  const valueW = Math.round(fs * 4.6);
  const top = Math.round(fs * 1.6);
  const plotW = Math.max(60, W - labelW - valueW - 8);
  const H = top + n * rowH + 4;
  let vmax = 0;
  for (let i = 0; i < n; i++) vmax = Math.max(vmax, r.raw(i), r.scaled(i), r.final(i));
  const [xmax, step] = niceScale(vmax);
  const X = (p) => labelW + (plotW * Math.min(p, xmax)) / xmax;

  const svg = inst.svg;
  svg.setAttribute("width", W);
  svg.setAttribute("height", H);
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.style.fontSize = fs + "px";
  const key = `legacy|${W}|${n}|${fs}`;
  if (inst.chartKey !== key) {                             // build the rows once per size
    inst.chartKey = key;
    svg.replaceChildren();
    svgEl("title", {}, svg).textContent = "Top " + n + " words: raw, after temperature, cut and final probability";
    inst.grid = svgEl("g", { class: "ls-grid" }, svg);
    inst.rows = [];
    for (let i = 0; i < n; i++) {
      const y = top + i * rowH;
      const g = svgEl("g", { class: "ls-row" }, svg);
      const tip = svgEl("title", {}, g);
      const label = svgEl("text", { x: labelW - 6, y: y + rowH * 0.68, "text-anchor": "end", class: "ls-word" }, g);
      const scaled = svgEl("rect", { x: labelW, y: y + rowH * 0.08, height: rowH * 0.3, class: "ls-bar-scaled" }, g);
      const fin = svgEl("rect", { x: labelW, y: y + rowH * 0.4, height: rowH * 0.34, class: "ls-bar-final" }, g);
      const raw = svgEl("rect", { x: labelW, y: y + rowH * 0.78, height: Math.max(2, rowH * 0.1), class: "ls-bar-raw" }, g);
      const val = svgEl("text", { x: W - 4, y: y + rowH * 0.68, "text-anchor": "end", class: "ls-val" }, g);
      inst.rows.push({ g, tip, label, scaled, fin, raw, val });
    }
  }
  // grid and ticks
  const grid = inst.grid;
  grid.replaceChildren();
  const nTicks = Math.round(xmax / step);
  for (let j = 0; j <= nTicks; j++) {
    const p = step * j, x = X(p);
    svgEl("line", { x1: x, x2: x, y1: top - 3, y2: H - 2, class: "ls-gridline" }, grid);
    const t = svgEl("text", { x, y: top - fs * 0.45, "text-anchor": j === 0 ? "start" : j === nTicks ? "end" : "middle", class: "ls-tick" }, grid);
    t.textContent = tickLabel(j, nTicks, step, (plotW * step) / xmax, fs);
  }
  const maxChars = Math.max(6, Math.floor((labelW - 8) / (fs * 0.62)));
  for (let i = 0; i < n; i++) {
    const row = inst.rows[i];
    const id = pre.order[i];
    const lab = inst.labels.has(id) ? inst.labels.get(id) : "#" + id;
    const status = i < r.kept ? "kept" : i < r.keptTopK ? "cutp" : "cutk";
    row.g.setAttribute("class", "ls-row ls-" + status);
    row.label.textContent = fmtLabel(lab, maxChars);                 // text node: never parsed as markup
    const sp = r.scaled(i), fp = r.final(i), rp = r.raw(i);
    row.scaled.setAttribute("width", Math.max(0, X(sp) - labelW));
    row.fin.setAttribute("width", Math.max(0, X(fp) - labelW));
    row.raw.setAttribute("width", Math.max(0, X(rp) - labelW));
    row.val.textContent = status === "kept" ? fmtPct(fp) : status === "cutp" ? "cut (p)" : "cut (k)";
    row.tip.textContent = `${lab}\nraw ${fmtPct(rp)} · after temperature ${fmtPct(sp)} · final ${fmtPct(fp)}` +
      (status === "kept" ? "" : status === "cutp" ? " · cut by top-p" : " · cut by top-k");
  }
  inst.note.textContent = pre.V > n
    ? `Top ${n} of ${fmtInt(pre.V)} words by logit; the scale ends at ${fmtPct(xmax)}.`
    : `All ${fmtInt(pre.V)} words; the scale ends at ${fmtPct(xmax)}.`;
}

// ----------------------------------------------------------------------------- PNG export
// The chart is SVG styled by this component's stylesheet; an image of it must carry its styles inline.
const STYLE_PROPS = ["fill", "stroke", "stroke-width", "font-family", "font-size", "font-weight", "text-decoration"];

function inlinedSvg(svg) {
  const clone = svg.cloneNode(true);
  const src = [svg, ...svg.querySelectorAll("*")], dst = [clone, ...clone.querySelectorAll("*")];
  for (let i = 0; i < src.length; i++) {
    const cs = getComputedStyle(src[i]);
    dst[i].setAttribute("style", STYLE_PROPS.map((p) => `${p}:${cs.getPropertyValue(p)}`).join(";"));
  }
  for (const t of clone.querySelectorAll("title")) t.remove();
  clone.setAttribute("xmlns", SVG);
  return new XMLSerializer().serializeToString(clone);
}

function settingsLine(s) {
  return `temperature ${s.temperature}, top-k ${s.top_k ? s.top_k : "off"}, top-p ${s.top_p >= 1 ? "off" : s.top_p}`;
}

// A PNG (2x) of what the chart shows: title and settings, the legend, the bars. Resolves to a Blob.
export async function chartPng(inst, scale = 2) {
  const svg = inst.svg, cs = getComputedStyle(inst.root);
  const W = Number(svg.getAttribute("width")), H = Number(svg.getAttribute("height"));
  const fs = parseFloat(cs.fontSize) || 14, font = cs.fontFamily, text = cs.color;
  const head = Math.round(fs * 3.4);
  const img = new Image();
  img.src = "data:image/svg+xml;charset=utf-8," + encodeURIComponent(inlinedSvg(svg));
  await img.decode();
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(W * scale);
  canvas.height = Math.round((H + head) * scale);
  const ctx = canvas.getContext("2d");
  ctx.scale(scale, scale);
  ctx.fillStyle = cs.getPropertyValue("--st-background-color").trim() || "#ffffff";   // the theme's page colour
  ctx.fillRect(0, 0, W, H + head);
  ctx.fillStyle = text;
  ctx.textBaseline = "middle";
  ctx.font = `600 ${fs}px ${font}`;
  const title = inst.titleEl.hidden ? "Next-word distribution" : inst.titleEl.textContent;
  ctx.fillText(`${title}: ${settingsLine(inst.settings)}`, 2, fs * 0.8, W - 4);
  ctx.font = `${fs * 0.85}px ${font}`;
  let x = 2;
  for (const it of inst.legend.querySelectorAll(".ls-legend-item")) {      // the legend, as drawn above the chart
    const sw = it.querySelector(".ls-swatch"), label = it.textContent;
    ctx.fillStyle = getComputedStyle(sw).backgroundColor;
    const sh = Math.max(2, sw.getBoundingClientRect().height || fs * 0.7);
    ctx.fillRect(x, fs * 2.2 - sh / 2, fs * 1.4, sh);
    ctx.fillStyle = text;
    ctx.fillText(label, x + fs * 1.8, fs * 2.2);
    x += fs * 1.8 + ctx.measureText(label).width + fs * 1.2;
  }
  ctx.drawImage(img, 0, head, W, H);
  return await new Promise((ok, fail) => canvas.toBlob((b) => (b ? ok(b) : fail(new Error("no PNG"))), "image/png"));
}

async function downloadPng(inst) {
  try {
    const url = URL.createObjectURL(await chartPng(inst));
    const a = document.createElement("a");
    a.href = url;
    a.download = "next-word-distribution.png";
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (e) {
    inst.note.textContent = "Could not make the PNG: " + e.message;
  }
}

// Each setting moved into its range from Python (R = data.ranges); not a number: its default.
export function clampSettings(s, V, R) {
  const one = (name, round) => {
    const r = R[name], v = s && s[name];
    const x = typeof v === "number" && isFinite(v) ? v : r.default;
    const y = Math.min(Math.min(r.max, name === "top_k" ? V : r.max), Math.max(r.min, x));
    return round ? Math.round(y) : y;
  };
  return { temperature: one("temperature", false), top_k: one("top_k", true), top_p: one("top_p", false) };
}
const same = (a, b) => !!a && !!b && a.temperature === b.temperature && a.top_k === b.top_k && a.top_p === b.top_p;

export default function (component) {
  const { data, parentElement, setStateValue } = component;
  const root = parentElement.querySelector(".ls-root");
  if (!root || !data) return;
  let inst = INSTANCES.get(root);
  if (!inst) { inst = makeInstance(root, data.ranges); INSTANCES.set(root, inst); }
  inst.ranges = data.ranges;
  inst.setState = setStateValue;
  inst.cfg = { top_n: data.top_n || 25, compact: !!data.compact, large: !!data.large };
  root.classList.toggle("ls-compact", inst.cfg.compact);
  root.classList.toggle("ls-large", inst.cfg.large);
  inst.titleEl.textContent = data.title || "";
  inst.titleEl.hidden = !data.title;
  if (inst.id !== data.id) {                                     // new logits: decode and sort once
    let pre = PREPARED.get(data.id);
    if (!pre) {
      pre = prepare(decodeLogits(data.logits));
      PREPARED.set(data.id, pre);
      if (PREPARED.size > 8) PREPARED.delete(PREPARED.keys().next().value);
    }
    inst.pre = pre;
    inst.id = data.id;
    inst.labels = new Map(data.labels || []);
    inst.chartKey = null;
  }
  const incoming = clampSettings(data.settings, inst.pre.V, inst.ranges);
  // Settings from Python win when Python changed them, not when it echoes what this instance sent.
  if (!inst.settings || (!same(incoming, inst.lastData) && !same(incoming, inst.lastSent))) inst.settings = incoming;
  inst.settings = clampSettings(inst.settings, inst.pre.V, inst.ranges);
  inst.lastData = incoming;
  syncControls(inst);
  draw(inst);
}
