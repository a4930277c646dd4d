"""A class-sized flood on one replica: N headless Chromium sessions each open the Attention page with a
DISTINCT long text on a GPT-2-small-sized folder model (random weights), all at once, while a few other
sessions keep moving a slider on a small built-in model.

    python -m bench --only flood --sessions 30 --tokens 1024 --runs 3
    python -m bench --only pages --sessions 30 --runs 3      # whole-page rerun, one shared text, every page

What is measured (each run starts a fresh server; the model is loaded by one warm-up visit first):

- the server's resident memory (its process and any children, from /proc), sampled every 0.5 s; the peak
  against the bound of issue 19, *models + trace budget + 0.5 GiB* (models: the float32 bytes of the folder
  model and the built-in model the other sessions use, estimated from their configs as the model store does;
  the trace budget: LAB_TRACE_BUDGET_MB as model/serving/store.py reads it);
- every flooding session's page: drawn (the script idle, no stale element, and every plotly chart on the page,
  at least the attention grid, has drawn its SVG), with the seconds it took, and whether it showed the queue
  message ("Waiting for the server" / "Another session is computing") before it drew; a page that showed an
  error or warning instead, or did not draw within the deadline, is counted as not drawn, with what it showed;
- the other sessions' slider rerun times (Streamlit's websocket protocol, bench/load.py's client) while the
  flood is under way: p50 / p95.

Figures depend on the machine and on what else runs on it: each result carries the 1-minute load average at
its start and end.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from bench.load import Session, SessionError, pct, serve, server_env

GIB = 2**30
MIB = 2**20
QUEUE_WORDS = ("Waiting for the server", "Another session is computing")
GRID_KEY = "grid_"                  # the attention grid's element key (st-key-grid_… in the browser)
OTHER_PAGE, OTHER_QUERY, OTHER_WIDGET = "sampling", "text=" + quote("the bear ate the"), "Number of draws"

# The page has drawn: the script is idle, nothing is stale or still loading its code, and every plotly chart on
# the page (at least one: the attention grid) has its SVG. Otherwise: what the page says (queue, error, warning).
DRAWN_JS = """() => {
  const st = document.querySelector("[data-test-script-state]");
  const idle = !!st && st.getAttribute("data-test-script-state") === "notRunning";
  const charts = [...document.querySelectorAll("[data-testid='stPlotlyChart']")];
  const drawn = idle && !document.querySelector("[data-stale='true']")
      && !document.querySelector("[data-testid='stSkeleton']")
      && charts.length > 0 && charts.every(c => c.querySelector(".main-svg"));
  const said = kind => [...document.querySelectorAll(kind)].map(e => e.innerText.trim()).filter(t => t);
  return {idle, drawn, charts: charts.length,
          alerts: said("[data-testid='stAlert'], [data-testid='stAlertContainer']"),
          exceptions: said("[data-testid='stException']")};
}"""


# ----------------------------------------------------------------------------- memory of a process tree
def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            out += [int(x) for x in task.read_text().split()]
    return out


def tree_rss_bytes(pid: int) -> int:
    """Resident bytes of the process and all its descendants (from /proc; 0 for a process that is gone)."""
    total, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
        except OSError:
            continue
        todo += _children(p)
    return total


class RssSampler:
    """Samples tree_rss_bytes(pid) every `every` seconds in a thread, from start() until stop()."""

    def __init__(self, pid: int, every: float = 0.5):
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, int]] = []          # (seconds since start, bytes)
        self._stop = threading.Event()
        self._t0 = 0.0
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while True:
            self.samples.append((time.perf_counter() - self._t0, tree_rss_bytes(self.pid)))
            if self._stop.wait(self.every):
                return

    def __enter__(self) -> "RssSampler":
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> int:
        return max((b for _, b in self.samples), default=0)


# ----------------------------------------------------------------------------- the model and the texts
def make_folder_model(folder: str | Path, tokens: int = 1024, layers: int = 12, heads: int = 12, d: int = 768,
                      vocab: int = 50257) -> Path:
    """A GPT-2 model with random weights (GPT-2 small by default: 12 layers, 12 heads, 768 wide, 50,257 words)
    and a word-level tokenizer ('w0 w1 ...', one token per word), saved in `folder`; positions: max(1024, tokens)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from devkit.hf_fixtures import save_word_tokenizer

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=vocab, n_positions=max(1024, tokens), n_embd=d, n_layer=layers, n_head=heads,
                     bos_token_id=vocab - 1, eos_token_id=vocab - 1)     # the tokenizer's <|endoftext|>
    GPT2LMHeadModel(cfg).save_pretrained(folder)
    save_word_tokenizer(folder, vocab_size=vocab)
    return Path(folder)


def distinct_texts(n: int, tokens: int, vocab: int = 50257) -> list[str]:
    """n texts of `tokens` words of the word-level tokenizer, no two alike (each starts at its own word)."""
    words = vocab - 1
    return [" ".join(f"w{(i * 7919 + j * 31) % words}" for j in range(tokens)) for i in range(n)]


def models_bytes(folder: str | Path, builtin: str = "transformer-lm") -> int:
    """float32 bytes of the folder model and the built-in model the other sessions use, estimated from their
    configs as the server's model store does before loading them."""
    from model.serving.store import model_bytes_estimate

    return sum(model_bytes_estimate(str(x)) or 0 for x in (folder, builtin))


def default_model_name() -> str:
    from model import builtin_names

    return builtin_names()[0]


# ----------------------------------------------------------------------------- one flood
@dataclass
class Visit:
    index: int
    drawn_s: float | None = None            # seconds from navigation to drawn; None: never drawn
    queued: bool = False                    # showed the queue message before drawing
    said: str = ""                          # the last alert or exception the page showed (when not drawn)
    browser: bool = False                   # a Chromium tab (else Streamlit's protocol, bench/load.py's client)


@dataclass
class FloodResult:
    sessions: int
    tokens: int
    visits: list[Visit]
    other_reruns: list[float]
    other_errors: list[str]
    rss_before: int                         # server tree RSS just before the flood (model loaded)
    rss_peak: int
    rss_after: int                          # the last sample, after every flooding tab closed
    bound: int                              # models + trace budget + 0.5 GiB
    models: int
    budget: int
    wall_s: float
    load: tuple[float, float]               # 1-minute load average at the start and at the end
    client_peak: int = 0                    # Chromium's resident memory at its peak (all its processes)
    samples: list[tuple[float, int]] = field(default_factory=list)

    @property
    def drawn(self) -> int:
        return sum(v.drawn_s is not None for v in self.visits)

    @property
    def queued_then_drawn(self) -> int:
        return sum(v.queued and v.drawn_s is not None for v in self.visits)

    def summary(self) -> str:
        times = [v.drawn_s for v in self.visits if v.drawn_s is not None]
        failed = [f"#{v.index}: {v.said[:120]}" for v in self.visits if v.drawn_s is None]
        return (f"N={self.sessions} x {self.tokens} tokens ({sum(v.browser for v in self.visits)} in Chromium): "
                f"drawn {self.drawn}/{self.sessions} "
                f"({self.queued_then_drawn} after the queue message; time to drawn p50 {pct(times, .5):.1f} s, "
                f"max {max(times, default=float('nan')):.1f} s); RSS {self.rss_before / MIB:,.0f} -> peak "
                f"{self.rss_peak / MIB:,.0f} MiB (bound {self.bound / MIB:,.0f} = models {self.models / MIB:,.0f} + "
                f"budget {self.budget / MIB:,.0f} + 512), after {self.rss_after / MIB:,.0f} MiB; "
                + (f"other sessions' rerun p50 / p95 {pct(self.other_reruns, .5) * 1000:,.0f} / "
                   f"{pct(self.other_reruns, .95) * 1000:,.0f} ms (n={len(self.other_reruns)}, "
                   f"{len(self.other_errors)} errors); " if self.other_reruns or self.other_errors else "no other sessions; ")
                + f"Chromium peak "
                f"{self.client_peak / MIB:,.0f} MiB; {self.wall_s:.0f} s; load average {self.load[0]:.1f} -> "
                f"{self.load[1]:.1f}" + (f"; not drawn: {'; '.join(failed[:5])}" if failed else ""))


def chromium_rss(browser_pid: int | None) -> int:
    return tree_rss_bytes(browser_pid) if browser_pid else 0


def _browser_pid(browser) -> int | None:
    """The pid of the Chromium that Playwright launched (its process tree holds every renderer)."""
    mine = os.getpid()
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
            cmd = (p / "cmdline").read_bytes()
        except OSError:
            continue
        if b"chrom" in cmd.split(b"\0")[0] and b"--type=" not in cmd:
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            # launched by Playwright's driver (a child of this process) or directly by this process
            if ppid == mine or ppid in _children(mine):
                return int(p.name)
    return None


async def _flood_async(url: str, folder: str, texts: list[str], others: int, deadline: float,
                       log: Callable[[str], None], browsers: int | None = None
                       ) -> tuple[list[Visit], list[float], list[str], int]:
    from playwright.async_api import async_playwright

    from devkit.browser import CHROME_ARGS, CHROMIUM

    visits = [Visit(i) for i in range(len(texts))]
    reruns: list[float] = []
    other_errors: list[str] = []
    done = asyncio.Event()
    client_peak = [0]

    async def other(i: int) -> None:
        """A session on a small built-in model, moving its slider every ~1 s until the flood is over."""
        s = Session(url, timeout=deadline)
        try:
            await s.open(OTHER_PAGE, OTHER_QUERY)
            while not done.is_set():
                reruns.append(await s.change(OTHER_WIDGET))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(done.wait(), 0.5 + (i % 3) * 0.25)
        except Exception as e:
            other_errors.append(f"{type(e).__name__}: {e}"[:300])
        finally:
            await s.close()

    async def visit_protocol(v: Visit, text: str) -> None:
        """A student's tab as the server sees it (bench/load.py's client: Streamlit's websocket protocol, no
        browser): drawn when the script finished and the attention grid's figure arrived."""
        s = Session(url, timeout=deadline)
        t0 = time.perf_counter()
        try:
            await s.open("attention", f"model={quote(folder)}&text={quote(text)}")
            v.queued = any(w in body for _, body in s.alerts for w in QUEUE_WORDS)
            if any(GRID_KEY in cid for cid in s.charts):
                v.drawn_s = time.perf_counter() - t0
            else:
                v.said = " | ".join(s.errors + [body for fmt, body in s.alerts if fmt in ("ERROR", "WARNING")]
                                    ) or f"finished without the attention grid ({len(s.charts)} charts)"
        except Exception as e:
            v.said = f"{type(e).__name__}: {e}"[:300]
        finally:
            await s.close()

    async def visit(browser, v: Visit, text: str) -> None:
        v.browser = True
        ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
        try:
            page = await ctx.new_page()
            t0 = time.perf_counter()
            await page.goto(f"{url}/attention?model={quote(folder)}&text={quote(text)}",
                            wait_until="domcontentloaded", timeout=deadline * 1000)
            while time.perf_counter() - t0 < deadline:
                s = await page.evaluate(DRAWN_JS)
                if any(w in a for a in s["alerts"] for w in QUEUE_WORDS):
                    v.queued = True
                if s["drawn"]:
                    v.drawn_s = time.perf_counter() - t0
                    return
                if s["idle"] and (s["exceptions"] or s["alerts"]) and not s["charts"]:
                    v.said = " | ".join(s["exceptions"] + s["alerts"])     # finished with a message, no figure
                    return
                await asyncio.sleep(0.5)
            v.said = f"not drawn within {deadline:.0f} s"
        except Exception as e:
            v.said = f"{type(e).__name__}: {e}"[:300]
        finally:
            await ctx.close()

    n_browsers = len(texts) if browsers is None else max(0, min(browsers, len(texts)))
    async with async_playwright() as p:
        browser = (await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROME_ARGS)
                   if n_browsers else None)
        bpid = _browser_pid(browser) if browser else None

        async def watch_client() -> None:
            while not done.is_set():
                client_peak[0] = max(client_peak[0], chromium_rss(bpid))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(done.wait(), 1.0)

        try:
            side = [asyncio.create_task(other(i)) for i in range(others)] + [asyncio.create_task(watch_client())]
            await asyncio.sleep(2.0 if others else 0)                         # the others are moving first
            t0 = time.perf_counter()
            # the browser tabs first, spread over the class (every k-th student), the others by protocol
            every = len(texts) / n_browsers if n_browsers else 0
            in_browser = {int(k * every) for k in range(n_browsers)}
            await asyncio.gather(*(visit(browser, v, t) if v.index in in_browser else visit_protocol(v, t)
                                   for v, t in zip(visits, texts)))
            log(f"    flood done in {time.perf_counter() - t0:.0f} s")
            done.set()
            await asyncio.gather(*side)
        finally:
            done.set()
            if browser:
                await browser.close()
    return visits, reruns, other_errors, client_peak[0]


def warm(url: str, folder: str, timeout: float) -> None:
    """Load the folder model (a short text on the Attention page) and the others' page once, as a class's
    teacher would before the students arrive."""
    async def go():
        for page, query in (("attention", f"model={quote(folder)}&text={quote('w1 w2 w3 w4')}"),
                            (OTHER_PAGE, OTHER_QUERY)):
            s = Session(url, timeout)
            try:
                await s.open(page, query)
                if s.errors:
                    raise SessionError(f"the warm-up visit of {page} failed: {s.errors[-1]}")
            finally:
                await s.close()
    asyncio.run(go())


def run_flood(sessions: int = 30, tokens: int = 1024, folder: str | Path | None = None, others: int = 3,
              deadline: float = 900.0, env: dict[str, str] | None = None, texts: list[str] | None = None,
              linger: float = 1.0, log: Callable[[str], None] = print, browsers: int | None = None) -> FloodResult:
    """One flood on a fresh server (one replica). `folder`: the model (default: GPT-2 small, random weights, made
    in a temporary folder); `env`: extra server settings (e.g. LAB_TRACE_BUDGET_MB); `texts`: the flooding texts
    (default: `sessions` distinct texts of `tokens` words); `linger`: seconds the sampling goes on after the last
    tab closed (Streamlit keeps a disconnected session, and what it holds, for server.disconnectedSessionTTL, 120 s
    by default); `browsers`: how many of the sessions are Chromium tabs (default: all), spread over the class, the
    others Streamlit's websocket protocol (bench/load.py's client: what the server does for a student, without a
    browser on the server's own cores)."""
    if sessions < 1 or tokens < 1 or others < 0:
        raise ValueError(f"sessions and tokens must be at least 1 and others at least 0 (got {sessions}, {tokens}, "
                         f"{others})")
    with contextlib.ExitStack() as stack:
        if folder is None:
            folder = make_folder_model(stack.enter_context(tempfile.TemporaryDirectory(prefix="lab-flood-")), tokens)
        folder = str(Path(folder).resolve())
        texts = texts or distinct_texts(sessions, tokens)
        extra = {"LAB_ALLOW_FOLDERS": "1", **(env or {})}
        old = {k: os.environ.get(k) for k in extra}
        os.environ.update(extra)                 # the budget as the server will read it
        try:
            from model.serving.store import trace_budget_bytes

            budget = trace_budget_bytes()
        finally:
            for k, v in old.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        models = models_bytes(folder, default_model_name())
        with serve(env=server_env(**extra), timeout=180) as srv:
            warm(srv.url, folder, deadline)
            pid = srv.pids[0]
            before = tree_rss_bytes(pid)
            load0 = os.getloadavg()[0]
            t0 = time.perf_counter()
            with RssSampler(pid) as sampler:
                visits, reruns, errors, client_peak = asyncio.run(
                    _flood_async(srv.url, folder, texts, others, deadline, log, browsers))
                time.sleep(linger)               # samples after the tabs closed
            wall = time.perf_counter() - t0
            r = FloodResult(len(texts), tokens, visits, reruns, errors, before, max(sampler.peak, before),
                            sampler.samples[-1][1] if sampler.samples else before, models + budget + GIB // 2,
                            models, budget, wall, (load0, os.getloadavg()[0]), client_peak, sampler.samples)
    log("  " + r.summary())
    return r


# ----------------------------------------------------------------------------- rows for bench/__main__.py
def _med(xs: list[float], fmt: Callable[[float], str]) -> str:
    if len(xs) == 1:
        return fmt(xs[0])
    return f"{fmt(statistics.median(xs))} ({fmt(min(xs))}–{fmt(max(xs))})"


def flood_rows(sessions: int = 30, tokens: int = 1024, runs: int = 3, others: int = 3,
               log: Callable[[str], None] = print, browsers: int = 3,
               budget_mb: int | None = None) -> list[tuple[str, str, str]]:
    """The flood `runs` times (a fresh server each time): medians with their range over the runs. budget_mb: the
    server's LAB_TRACE_BUDGET_MB (default: its own)."""
    results = []
    env = {"LAB_TRACE_BUDGET_MB": str(budget_mb)} if budget_mb else None
    with tempfile.TemporaryDirectory(prefix="lab-flood-") as d:
        make_folder_model(d, tokens)
        for i in range(runs):
            log(f"  run {i + 1} of {runs}")
            results.append(run_flood(sessions, tokens, d, others, log=log, browsers=browsers, env=env))
    r0 = results[0]
    loads = f"load average {min(r.load[0] for r in results):.1f}–{max(max(r.load) for r in results):.1f}"
    nb = min(browsers, sessions)
    clients = (f"{sessions} Chromium sessions" if nb >= sessions else
               f"{sessions} sessions ({nb} Chromium tabs, {sessions - nb} by Streamlit's websocket protocol)")
    where = (f"{clients}, each a distinct {tokens:,}-token text, Attention page, GPT-2-small-sized "
             f"folder model (random weights, {max(1024, tokens):,} positions), trace budget {r0.budget / MIB:,.0f} MiB, "
             f"1 replica, {runs} run{'s' if runs > 1 else ''}, {os.cpu_count()} cores, "
             f"{loads}")
    mib = lambda b: f"{b / MIB:,.0f} MiB"                                              # noqa: E731
    rows = [
        (f"{where}: server RSS peak (sampled every 0.5 s), median (range); before the flood; after",
         f"{_med([r.rss_peak for r in results], mib)}; {_med([r.rss_before for r in results], mib)}; "
         f"{_med([r.rss_after for r in results], mib)}",
         f"<= models + trace budget + 0.5 GiB = {r0.bound / MIB:,.0f} MiB ({r0.models / MIB:,.0f} + "
         f"{r0.budget / MIB:,.0f} + 512)" + ("" if all(r.rss_peak <= r.bound for r in results) else " (missed)")),
        (f"same: pages drawn (the attention grid on screen in Chromium, or received by the protocol client) / of "
         "them after the queue message; time to drawn, median session, and the slowest",
         "; ".join(f"{r.drawn}/{r.sessions} / {r.queued_then_drawn}, "
                   f"{pct([v.drawn_s for v in r.visits if v.drawn_s is not None], .5):.0f} s, "
                   f"{max((v.drawn_s for v in r.visits if v.drawn_s is not None), default=float('nan')):.0f} s"
                   for r in results),
         "every page draws" + ("" if all(r.drawn == r.sessions for r in results) else " (missed)")),
        *([(f"same: {others} other sessions moving the Sampling page's slider (built-in model) meanwhile, rerun p50 / "
             "p95",
             f"{_med([pct(r.other_reruns, .5) for r in results], lambda s: f'{s * 1000:,.0f}')} / "
             f"{_med([pct(r.other_reruns, .95) for r in results], lambda s: f'{s * 1000:,.0f}')} ms "
             f"(n = {sum(len(r.other_reruns) for r in results)})",
             "p95 <= 1 s" + ("" if statistics.median(pct(r.other_reruns, .95) for r in results) <= 1 else " (missed)"))]
           if others else []),
        ("same: the flood's wall time; Chromium's peak memory (the clients, same machine)",
         f"{_med([r.wall_s for r in results], lambda s: f'{s:,.0f} s')}; {_med([r.client_peak for r in results], mib)}",
         ""),
    ]
    return rows


def pages_rows(sessions: int = 30, runs: int = 3, reruns: int = 6, log: Callable[[str], None] = print,
               pages: tuple[str, ...] | None = None) -> list[tuple[str, str, str]]:
    """The whole-page rerun (the sidebar's device switch, outside any fragment) at `sessions` sessions with one
    shared text (each page's default), on every page (or `pages`; "" is home), `runs` times (a fresh server each):
    p95, median (range)."""
    from app_pages.registry import KEYS
    from bench.load import run_load, warm_up

    out = []
    for page in (("", *KEYS) if pages is None else pages):
        p95s, failed, loads = [], 0, []
        for _ in range(runs):
            with serve() as srv:
                warm_up(srv.url, page, "", "Device")
                loads.append(os.getloadavg()[0])
                r = run_load(srv.url, sessions, srv.pids, page=page, query="", label="Device", reruns=reruns)
                loads.append(r.loadavg)
            log(f"  {page or 'home'}: {r.summary()}")
            for e in r.errors[:2]:
                log(f"    error: {e}")
            p95s.append(r.p95)
            failed += len(r.errors)
        over = sum(p > 1 for p in p95s)
        ok = statistics.median(p95s) <= 1 and not failed
        out.append((f"whole-page rerun (the sidebar's device switch), {sessions} sessions, one shared text, 1 replica, "
                    f"{page or 'home'} page: p95, median (range) of {runs} run{'s' if runs > 1 else ''} (load average "
                    f"{min(loads):.1f}–{max(loads):.1f})",
                    _med(p95s, lambda s: f"{s * 1000:,.0f} ms") + (f"; {failed} sessions failed" if failed else ""),
                    "<= 1 s" + ("" if ok else " (missed)") + (f" ({over} of {runs} runs over)" if over and ok else "")))
    return out


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=30)
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--others", type=int, default=3)
    ap.add_argument("--browsers", type=int, default=3, help="how many of the sessions are Chromium tabs")
    ap.add_argument("--budget-mb", type=int, default=None, help="the server's LAB_TRACE_BUDGET_MB (default: its own)")
    a = ap.parse_args(argv)
    for flag, v, lo in (("--sessions", a.sessions, 1), ("--tokens", a.tokens, 1), ("--runs", a.runs, 1),
                        ("--others", a.others, 0), ("--browsers", a.browsers, 0), ("--budget-mb", 1 if a.budget_mb is None else a.budget_mb, 1)):
        if v < lo:
            ap.error(f"{flag} must be a whole number of at least {lo} (got {v})")
    for what, fig, tgt in flood_rows(a.sessions, a.tokens, a.runs, a.others, browsers=a.browsers, budget_mb=a.budget_mb):
        print(f"| {what} | {fig} | {tgt} |")


if __name__ == "__main__":
    main()
