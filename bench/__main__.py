"""Benchmarks: how fast the models, traces, sampling and figures are. Not tests: figures to read.

    python -m bench                  # everything that needs no browser
    python -m bench --only gpt2,sampling
    python -m bench --browser        # also the in-browser timings (starts the app, drives Chromium)
    python -m bench --only load      # server load: N headless sessions, a large model loading, two trainings
    python -m bench --only load2,cold   # 2 replicas behind nginx; cold start and import breakdown
    python -m bench --only drag      # live sampling drag: input -> painted frame, quiet and CPU-throttled x4
    python -m bench --only serve        # a fresh server (and 2 replicas behind nginx) to a finished session
    python -m bench --only flood --sessions 30 --tokens 1024 --runs 3   # a class floods one replica (bench/flood.py)
    python -m bench --only pages --sessions 30 --runs 3                 # whole-page rerun, one shared text, every page

Each line is a median over repeats after a warm-up, on this machine, printed as a markdown table
that goes into the README's benchmark table.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import threading
import time
from typing import Callable

import torch

ROWS: list[tuple[str, str, str]] = []   # (what, figure, target)


def timeit(fn: Callable[[], object], repeat: int = 20, warmup: int = 3) -> float:
    """Median seconds of fn() over `repeat` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def row(what: str, figure: str, target: str = "") -> None:
    ROWS.append((what, figure, target))
    print(f"  {what}: {figure}" + (f"   (target {target})" if target else ""), flush=True)


def ms(s: float) -> str:
    return f"{s * 1000:.2f} ms"


# ----------------------------------------------------------------------------- sections
def bench_builtin(repeat: int) -> None:
    import model
    from model import Recurrent
    from model.builtin import BuiltinTranslator

    text = " ".join(("the bear ate the honey because it was hungry .".split() * 8)[:63])   # + [BOS] = 64 tokens
    for name in model.builtin_names():
        m = model.load(name, "cpu")
        if isinstance(m, BuiltinTranslator):
            src = m.tokenize(" ".join(["the black cat ate the mouse"] * 5)[: 10_000])
            n = min(len(src.ids), m.max_len)
            s = torch.tensor([src.ids[:n]])
            t = torch.tensor([[m.bos_id] + src.ids[: n - 1]]) % len(m.vocab)
            with torch.inference_mode():
                plain = timeit(lambda: m.module(s, t), repeat)
                traced = timeit(lambda: m.module(s, t, trace=True), repeat)
            label = f"{name} forward, {n}+{n} tokens"
        else:
            ids = m.tokenize(text).ids[:64]
            x = torch.tensor([ids])
            with torch.inference_mode():
                plain = timeit(lambda: m.module(x), repeat)
                traced = timeit(lambda: m.module(x, trace=True), repeat)
            label = f"{name} forward, {len(ids)} tokens"
        row(f"{label}: plain / traced", f"{ms(plain)} / {ms(traced)} (+{(traced / plain - 1) * 100:.0f}%)",
            "tracing < +30%" if not isinstance(m, Recurrent) else "")


def bench_generation(repeat: int) -> None:
    """Generation with and without the cache, forcing a fixed number of new tokens (no stop at end-of-sequence),
    so the figure measures the cache: the built-ins at 40 tokens (their context is 64 / 32), and a
    GPT-2-small-sized decoder of ours (random weights) at 40 and 128 through the same `generate` code."""
    import model

    for name, prompt, n_new in (("transformer-lm", "the bear", 40), ("lstm-lm", "the bear", 40),
                                ("translator-en-fr", "the black cat ate the mouse", 30)):
        m = model.load(name, "cpu")
        rates = []
        for cache in (True, False):
            def go():
                return m.generate(prompt, max_new_tokens=n_new, temperature=1.0, seed=0, use_cache=cache,
                                  stop_at_eos=False)
            g = go()
            rates.append(len(g.steps) / timeit(go, max(3, repeat // 4), 1))
        row(f"{name} generation, {len(g.steps)} new tokens: with / without cache",
            f"{rates[0]:,.0f} / {rates[1]:,.0f} tokens/s ({rates[0] / rates[1]:.1f}x)")
    big = _gpt2_generator()
    for n_new in (40, 128):
        rates = []
        for cache in (True, False):
            def go():
                return big.generate([0, 1, 2, 3], max_new_tokens=n_new, greedy=True, use_cache=cache, stop_at_eos=False)
            rates.append(n_new / timeit(go, 2, 1))
        row(f"GPT-2-small-sized decoder (ours, random weights) generation, {n_new} new tokens: with / without cache",
            f"{rates[0]:,.1f} / {rates[1]:,.1f} tokens/s ({rates[0] / rates[1]:.1f}x)",
            "cache >= 3x at 128 tokens" if n_new == 128 else "")


def _gpt2_generator():
    """Our TransformerLM at GPT-2-small size behind the lab's own `Generates` loop (vocabulary ids as words)."""
    from model.api import Generates, LabModel
    from model.nets.transformer import TransformerLM

    torch.manual_seed(0)
    module = TransformerLM(gpt2_small_config()).eval()

    class Big(LabModel, Generates):
        name, vocab, max_len = "gpt2-sized", [str(i) for i in range(50257)], 1024

        @torch.inference_mode()
        def _start(self, ids, use_cache):
            out = module(torch.tensor([ids]), use_cache=use_cache)
            return out.logits[0, -1].clone(), (out.past if use_cache else list(ids))

        @torch.inference_mode()
        def _advance(self, state, token_id, use_cache):
            if not use_cache:
                return self._start(state + [token_id], False)
            out = module(torch.tensor([[token_id]]), use_cache=True, past=state)
            return out.logits[0, -1].clone(), out.past

    return Big()


def gpt2_small_config():
    from model.nets.transformer import TransformerConfig

    return TransformerConfig(vocab_size=50257, d_model=768, h=12, d_ff=3072, n_layers=12, max_len=1024, dropout=0.0,
                             pos_encoding="learned", norm="pre", activation="gelu", tie_embeddings=True)


def bench_gpt2(repeat: int) -> None:
    """Our GPT-2-small-sized decoder beside transformers' GPT-2 (random weights, eager attention), 128 tokens."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from model.nets.transformer import TransformerLM

    torch.manual_seed(0)
    ours = TransformerLM(gpt2_small_config()).eval()
    hf = GPT2LMHeadModel(GPT2Config(attn_implementation="eager")).eval()
    hf.config._attn_implementation = "eager"
    x = torch.randint(0, 50257, (1, 128))
    with torch.inference_mode():
        t_ours = timeit(lambda: ours(x), repeat)
        t_hf = timeit(lambda: hf(x), repeat)
        t_ours_tr = timeit(lambda: ours(x, trace=True), repeat)
        t_hf_att = timeit(lambda: hf(x, output_attentions=True), repeat)
    row("GPT-2-small-sized forward, 128 tokens: ours / transformers eager",
        f"{ms(t_ours)} / {ms(t_hf)} (ratio {t_ours / t_hf:.2f})", "ratio <= 1.0")
    row("same, ours traced / transformers output_attentions",
        f"{ms(t_ours_tr)} / {ms(t_hf_att)} (tracing +{(t_ours_tr / t_ours - 1) * 100:.0f}% over plain)")


def bench_hf_trace(repeat: int) -> None:
    """The lab's trace of a GPT-2-small pass vs transformers' own forward with attentions, like for like: hidden
    states and the last position's logits only (`logits_to_keep=1`), interleaved, at 128 tokens (a full trace) and
    1,024 (a compact trace, which calls transformers without `output_attentions`: compared with the call the app
    made before, that returns every layer's attentions)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    import model
    from devkit.hf_fixtures import save_word_tokenizer  # a full-size word-level vocabulary, offline

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as d:
        hf = GPT2LMHeadModel(GPT2Config(attn_implementation="eager"))
        hf.save_pretrained(d)
        save_word_tokenizer(d, vocab_size=50257)
        m = model.load(d, "cpu")
        ref = m.hf
        for n in (128, 1024):
            text = " ".join(f"w{i}" for i in range(n))
            ids = m.tokenize(text).ids
            assert len(ids) == n, len(ids)
            x = torch.tensor([ids])

            def plain():               # like for like: attentions and hidden states, the last position's logits
                with torch.inference_mode():
                    ref(x, output_attentions=True, output_hidden_states=True, logits_to_keep=1, use_cache=False)
            labs, refs = [], []
            k, warm = (3, 1) if n <= 128 else (1, 0)
            if n > 128:                # once each first (allocator, caches), then single timed calls
                m.run(text)
                plain()
            for i in range(max(3, repeat // 3) if n <= 128 else max(5, repeat // 4)):      # interleaved, alternating
                pair = [("lab", lambda: m.run(text)), ("ref", plain)]                   # which goes first
                for name, f in (pair if i % 2 == 0 else pair[::-1]):
                    (labs if name == "lab" else refs).append(timeit(f, k, warm))
            t_lab, t_ref = statistics.median(labs), statistics.median(refs)
            kind = "full trace" if n <= 256 else "compact trace"
            row(f"GPT-2 small (HF weights layout), {n} tokens ({kind}): lab trace / transformers output_attentions + "
                f"hidden states, last logits only (interleaved, median of {len(labs)}; load average "
                f"{os.getloadavg()[0]:.1f})", f"{ms(t_lab)} / {ms(t_ref)} (ratio {t_lab / t_ref:.2f})", "ratio <= 1.2")


def bench_compact(repeat: int) -> None:
    """What a compact trace holds: GPT-2-small-config random folder models, 1,024 tokens (1,024 positions) and
    4,096 (a 4,096-position variant, loaded with a 2 GiB trace budget: under the default 1 GiB its longest input is
    shorter, since the run's working memory must fit too): the trace's tensors' bytes, the admission's estimate, the
    working memory (the process's anonymous memory sampled every 2 ms: its peak above what it was before the run and
    what the run kept) against its estimate, the traced run's time, and what one head, its raw scores, one query's
    rows and one norm's vectors cost on demand. As in a server: its allocator settings (model/serving/memory.py;
    glibc's own keep freed blocks in the heap, and the same 1,024-token run then peaks 150-230 MiB above what it
    keeps instead of 85-110) and its torch threads (LAB_TORCH_THREADS, default 1)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    import model
    from devkit.hf_fixtures import save_word_tokenizer
    from model.serving.memory import apply_malloc_settings
    from model.serving.store import run_estimate, run_working, torch_threads, trace_bytes

    apply_malloc_settings()
    threads, torch_default = torch_threads() or torch.get_num_threads(), torch.get_num_threads()
    torch.set_num_threads(threads)

    def anon() -> int:
        with open("/proc/self/status") as f:
            return next(int(x.split()[1]) * 1024 for x in f if x.startswith("RssAnon"))

    for n, budget in ((1024, "1024"), (4096, "2048")):
        torch.manual_seed(0)
        with tempfile.TemporaryDirectory() as d:
            GPT2LMHeadModel(GPT2Config(n_positions=n, attn_implementation="eager")).save_pretrained(d)
            save_word_tokenizer(d, vocab_size=50257)
            old = os.environ.get("LAB_TRACE_BUDGET_MB")
            os.environ["LAB_TRACE_BUDGET_MB"] = budget        # read by the load (the model's longest input)
            try:
                m = model.load(d, "cpu")
            finally:
                os.environ.pop("LAB_TRACE_BUDGET_MB") if old is None else os.environ.__setitem__("LAB_TRACE_BUDGET_MB", old)
            text = " ".join(f"w{i}" for i in range(n))
            m.run(" ".join(f"w{i}" for i in range(300)))       # a first compact run: its one-off allocations
            peak, stop = [anon()], threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    peak[0] = max(peak[0], anon())
                    time.sleep(0.002)

            a0 = anon()
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            t0 = time.perf_counter()
            r = m.run(text)
            t_run = time.perf_counter() - t0
            stop.set()
            sampler.join()
            held = trace_bytes(r.trace)
            st = r.trace.attention["self"]
            t0 = time.perf_counter()
            st[11].head_weights(3)
            t1 = time.perf_counter()
            m.scores(r, 11, 3)
            t2 = time.perf_counter()
            st.query_rows(5)
            t3 = time.perf_counter()
            r.trace.layernorms[22].features(0, 5)
            t4 = time.perf_counter()
            row(f"GPT-2 small config (random weights, {n} positions), {n} tokens, trace budget {budget} MiB, "
                f"{threads} torch thread{'s' if threads > 1 else ''}, the server's allocator settings, compact "
                f"trace: held (the trace's tensors) / admission estimate; working memory measured / estimated; traced "
                f"run (load average {os.getloadavg()[0]:.1f})",
                f"{held / 2**20:,.1f} MiB / {run_estimate(m, text) / 2**20:,.1f} MiB; "
                f"{(peak[0] - a0 - held) / 2**20:,.0f} MiB / {run_working(m, text) / 2**20:,.0f} MiB; {t_run:.1f} s",
                ("<= 60 MB" if n == 1024 else "<= 500 MB") + "; measured <= estimated")
            row(f"same, {n} tokens, on demand: layer 12 head 4 weights / its raw scores / one query in all 144 heads / "
                f"one norm's vectors", f"{t1 - t0:.2f} / {t2 - t1:.2f} / {t3 - t2:.2f} / {t4 - t3:.2f} s")
            del r, m
    torch.set_num_threads(torch_default)


def bench_sampling(repeat: int) -> None:
    from model.nets import sampling

    torch.manual_seed(0)
    logits = torch.randn(50257) * 3
    t = timeit(lambda: sampling.distribution(logits, temperature=0.8, top_k=50, top_p=0.9), max(repeat, 200), 10)
    row("sampling pipeline (temperature, top-k 50, top-p 0.9), V = 50,257", ms(t), "< 5 ms")
    d = sampling.distribution(logits, temperature=0.8, top_k=50, top_p=0.9)
    t = timeit(lambda: sampling.sample_counts(d, 1000, seed=0), max(repeat, 100), 5)
    row("1,000 seeded draws, V = 50,257", ms(t))


def bench_viz(repeat: int) -> None:
    import numpy as np

    from viz.attention import attention_grid, attention_heatmap

    rng = np.random.default_rng(0)
    s = rng.normal(size=(12, 12, 128, 128)).astype(np.float32) * 2        # causal softmax of random scores
    s = np.where(np.tril(np.ones((128, 128), bool)), s, -np.inf)
    w = np.exp(s - s.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    labels = [f"tok{i}" for i in range(128)]
    t = timeit(lambda: attention_grid(w, labels, labels), max(3, repeat // 4), 1)
    size = len(attention_grid(w, labels, labels).to_json())
    row("all-heads grid 12 x 12 heads x 128 tokens (causal softmax of random scores): build",
        f"{t:.3f} s, {size / 1e6:.2f} MB payload", "< 0.5 s, < 4 MB")
    noise = rng.random((12, 12, 128, 128)).astype(np.float32)              # worst case for the PNG: pure noise
    size = len(attention_grid(noise, labels, labels).to_json())
    row("same grid, worst case (uniform noise in every cell): payload", f"{size / 1e6:.2f} MB", "< 4 MB")
    t = timeit(lambda: attention_heatmap(w[3, 4], labels, labels), repeat)
    size = len(attention_heatmap(w[3, 4], labels, labels).to_json())
    row("one head 128 x 128: build", f"{ms(t)}, {size / 1e6:.2f} MB payload", "< 2 MB")


def bench_plotly_paths(repeat: int) -> None:
    """viz/common.py remembers plotly's property-path parses (a patch of a private plotly function): is it worth
    it? The Masks page's figures and the sampling panels built with the parser remembered and plotly's own,
    interleaved in one run."""
    import numpy as np
    import plotly.basedatatypes as bd

    from viz.masks import masking_stages
    from viz.layernorm import layernorm_stats

    fast = bd._str_to_dict_path_full
    plain = getattr(fast, "original", None)
    if plain is None:
        row("plotly property paths", "this plotly has no such function: nothing is patched")
        return
    rng = np.random.default_rng(0)
    T = 12
    labels = [f"tok{i}" for i in range(T)]
    s = rng.normal(size=(T, T)).astype(np.float32)
    allowed = np.tril(np.ones((T, T), bool))
    masked = np.where(allowed, s, -np.inf)
    w = np.exp(masked - masked.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    names = [f"L{i} LN" for i in range(6)]
    st = rng.random((6, T)).astype(np.float32)

    def build():
        masking_stages(s, allowed, w, labels, labels)
        layernorm_stats(names, st, st + 1, st * 0, st * 0 + 1, labels)
    times = {"remembered": [], "plotly's own": []}
    for _ in range(max(5, repeat // 2)):
        for name, fn in (("remembered", fast), ("plotly's own", plain)):
            bd._str_to_dict_path_full = fn
            times[name].append(timeit(build, 3, 1))
    bd._str_to_dict_path_full = fast
    a, b = (float(np.median(times[k])) for k in ("remembered", "plotly's own"))
    row("Masks stages + layer-norm stats build, property paths remembered vs plotly's own (interleaved, median)",
        f"{ms(a)} vs {ms(b)} ({b / a:.2f}x)")


def bench_browser(repeat: int) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    from devkit.browser import browser_timings, grid_timings
    from devkit.hf_fixtures import save_word_tokenizer

    from devkit.drag import drag_latency

    for what, figure, target in drag_latency(max(3, repeat // 2)):
        row(what, figure, target)
    for what, figure, target in browser_timings(repeat):
        row(what, figure, target)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as d:               # GPT-2 small, random weights, 50,257-word vocabulary
        GPT2LMHeadModel(GPT2Config()).save_pretrained(d)
        save_word_tokenizer(d, vocab_size=50257)
        for n in (128, 1024):
            for what, figure, target in grid_timings(d, n, repeat if n == 128 else 3):
                row(what, figure, target)


def bench_drag(repeat: int) -> None:
    """Live sampling drag alone (also part of 'browser'): input event -> painted frame, V = 50,257, four panels,
    quiet and under CPU throttling x4, the chart's drawing and the one before issue 18, interleaved."""
    from devkit.drag import drag_latency

    for r in drag_latency(max(3, repeat // 2)):
        row(*r)


def bench_tokens(repeat: int) -> None:
    """Attention at 128 / 256 / 512 / 1024 tokens on a random-weight GPT-2 small: trace bytes (compact above 256
    tokens: the pooled grid kept, one head recomputed), figure payloads and build times, run time."""
    import model
    from devkit.hf_fixtures import save_word_tokenizer
    from model import views
    from model.serving.store import trace_bytes
    from viz.attention import attention_grid, attention_heatmap

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as d:
        from transformers import GPT2Config, GPT2LMHeadModel

        GPT2LMHeadModel(GPT2Config(attn_implementation="eager")).save_pretrained(d)
        save_word_tokenizer(d, vocab_size=50257)
        m = model.load(d, "cpu")
        for n in (128, 256, 512, 1024):
            text = " ".join(f"w{i}" for i in range(n))
            t0 = time.perf_counter()
            r = m.run(text)
            t_run = time.perf_counter() - t0
            v = views.attention_views(r)["self"]
            t0 = time.perf_counter()
            w, pool = v.grid()
            grid = attention_grid(w, v.query_tokens, v.key_tokens, pool=pool).to_json()
            t_grid = time.perf_counter() - t0
            head = attention_heatmap(v.head(11, 0), v.query_tokens, v.key_tokens).to_json()
            row(f"GPT-2 small (random weights), {n} tokens: trace / 144-head grid / one head",
                f"{trace_bytes(r) / 2**20:,.0f} MB / {len(grid) / 2**20:.2f} MB (built in {t_grid:.2f} s) / "
                f"{len(head) / 2**20:.2f} MB; traced run {t_run:.2f} s",
                "grid <= 4 MB, one head <= 2 MB" if n == 1024 else "")


def bench_training(repeat: int) -> None:
    from model.training.jobs import training_throughput

    for threads in (1, None):
        for what, figure, target in training_throughput(threads=threads):
            row(what + (f" ({threads} thread)" if threads else f" ({torch.get_num_threads()} threads)"), figure, target)


def bench_trainqueue(repeat: int) -> None:
    from model.training.jobs import queue_rows

    for what, figure, target in queue_rows():
        row(what, figure, target)


def bench_heal(repeat: int) -> None:
    from deploy.measure import heal_rows

    for what, figure, target in heal_rows():
        row(what, figure, target)


def bench_load(repeat: int) -> None:
    from bench.load import load_rows, training_load_rows

    for r in load_rows(ns=(1, 10, 30, 60), stall=True, log=lambda m: print(m, flush=True)):
        row(*r)
    # a widget outside any fragment reruns the whole page (the sidebar's device switch), on every page
    from app_pages.registry import KEYS

    for page in ("", *KEYS):
        for r in load_rows(ns=(30,), stall=False, page=page, query="", widget="Device", reruns=6,
                           log=lambda m: print(m, flush=True)):
            if "passes 1 s" not in r[0]:
                row(*r)
    for r in training_load_rows(log=lambda m: print(m, flush=True)):
        row(*r)


def bench_flood(repeat: int, sessions: int = 30, tokens: int = 1024, runs: int = 3, budget_mb: int | None = None) -> None:
    """N Chromium sessions, each a distinct long text on the Attention page of a GPT-2-small-sized folder model, on
    one replica: server RSS peak against models + trace budget + 0.5 GiB, every page drawn, the others' slider p95
    (bench/flood.py). budget_mb: the server's LAB_TRACE_BUDGET_MB (default: its own, 1 GiB)."""
    from bench.flood import flood_rows

    for r in flood_rows(sessions, tokens, runs, log=lambda m: print(m, flush=True), budget_mb=budget_mb):
        row(*r)


def bench_pages(repeat: int, sessions: int = 30, tokens: int = 1024, runs: int = 3) -> None:
    """The whole-page rerun (the sidebar's device switch) at N sessions with one shared text, on every page, median
    (range) of the p95 over `runs` fresh servers (bench/flood.py)."""
    from bench.flood import pages_rows

    for r in pages_rows(sessions, runs, log=lambda m: print(m, flush=True)):
        row(*r)


def bench_load2(repeat: int) -> None:
    from bench.load import load_rows

    for r in load_rows(ns=(10, 30, 60, 90), replicas=2, stall=False, log=lambda m: print(m, flush=True)):
        row(*r)


def bench_serve(repeat: int) -> None:
    from bench.load import serve_rows

    for r in serve_rows(log=lambda m: print(m, flush=True)):
        row(*r)


def bench_cold(repeat: int) -> None:
    from bench.load import cold_rows

    for r in cold_rows(browser=True):
        row(*r)


def bench_threads(repeat: int) -> None:
    """torch's intra-op threads for a server: a 128-token trace of a GPT-2-small-sized Hugging Face model (random
    weights) with 1, 2 and torch's own default (the core count) threads, interleaved (the order rotates every round,
    so drift in the machine's load falls on every setting alike), first on this machine as it is, then while a
    second process keeps one core busy. Medians and ranges; the load average is printed with each row. The server
    reads LAB_TORCH_THREADS (model/serving/store.py; default 1)."""
    import subprocess
    import sys

    from transformers import GPT2Config, GPT2LMHeadModel

    import model
    from devkit.hf_fixtures import save_word_tokenizer

    torch.manual_seed(0)
    before = torch.get_num_threads()
    default = os.cpu_count() or before                      # torch's own default: one thread per core
    settings = list(dict.fromkeys([1, 2, default]))         # 1, 2 and the default where it is not 2 already
    names = {n: f"{n}" + (" (torch's default here)" if n == default else "") for n in settings}
    with tempfile.TemporaryDirectory() as d:
        GPT2LMHeadModel(GPT2Config(attn_implementation="eager")).save_pretrained(d)
        save_word_tokenizer(d, vocab_size=50257)
        m = model.load(d, "cpu")
        text = " ".join(f"w{i}" for i in range(128))
        assert len(m.tokenize(text).ids) == 128

        def measure() -> dict[int, list[float]]:
            times: dict[int, list[float]] = {n: [] for n in settings}
            for i in range(max(repeat, 2)):
                order = settings[i % len(settings):] + settings[:i % len(settings)]    # rotate who goes first
                for n in order:
                    torch.set_num_threads(n)
                    t0 = time.perf_counter()
                    m.run(text)
                    times[n].append(time.perf_counter() - t0)
            return times

        try:
            torch.set_num_threads(1)
            m.run(text)                                            # warm-up
            for label, busy in (("machine as it is", 0), ("a second process busy on one core", 1)):
                procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
                try:
                    time.sleep(1.0 if busy else 0.0)
                    load0 = os.getloadavg()[0]
                    times = measure()
                    load1 = os.getloadavg()[0]
                finally:
                    for p in procs:
                        p.kill()
                        p.wait()
                med = {n: statistics.median(times[n]) for n in settings}
                best = min(settings, key=med.get)
                row(f"GPT-2-small-sized trace, 128 tokens, {label}: torch threads "
                    f"{' / '.join(names[n] for n in settings)} (n = {len(times[1])} each, interleaved; load average "
                    f"{load0:.1f} -> {load1:.1f} on {os.cpu_count()} cores)",
                    " / ".join(ms(med[n]) for n in settings) + f"; fastest: {best} thread{'s' if best > 1 else ''} ("
                    + ", ".join(f"{n}: {med[n] / med[best]:.2f}x" for n in settings if n != best) + "); ranges "
                    + " / ".join(f"{ms(min(times[n]))}-{ms(max(times[n]))}" for n in settings),
                    "the server's default (LAB_TORCH_THREADS) is the fastest under a busy process")
        finally:
            torch.set_num_threads(before)


def _flood(sessions: int, tokens: int, bounded: bool) -> None:
    """One probe for bench_admission, in its own interpreter: `sessions` threads each ask the trace cache for a
    different `tokens`-token trace of a GPT-2-small-sized model at once; prints JSON (peak RSS growth, seconds)."""
    import json
    import threading

    from transformers import GPT2Config, GPT2LMHeadModel

    import model
    from devkit.hf_fixtures import save_word_tokenizer
    from model.serving.store import TraceCache, apply_torch_threads, run_estimate

    def rss() -> int:
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    apply_torch_threads()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as d:
        GPT2LMHeadModel(GPT2Config(attn_implementation="eager")).save_pretrained(d)
        save_word_tokenizer(d, vocab_size=50257)
        m = model.load(d, "cpu")
        texts = [" ".join(f"w{(i * 7 + j) % 50000}" for j in range(tokens)) for i in range(sessions)]
        m.run(" ".join(f"w{j}" for j in range(16)))                      # warm-up
        # unbounded: as before issue 19 (every computation at once, sizes counted only afterwards)
        cache = TraceCache(max_running=1 if bounded else sessions)
        base, peak, stop = rss(), [0], threading.Event()

        def sample():
            while not stop.wait(0.2):
                peak[0] = max(peak[0], rss())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        threads = [threading.Thread(target=cache.get, args=(("run", i), lambda t=t: m.run(t)),
                                    kwargs=dict(estimate=run_estimate(m, t) if bounded else None, heavy=True))
                   for i, t in enumerate(texts)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(1800)
        secs = time.perf_counter() - t0
        stop.set()
        sampler.join()
        print(json.dumps({"peak_mb": (max(peak[0], rss()) - base) / 2**20, "secs": secs,
                          "held_mb": cache.used_bytes() / 2**20, "threads": torch.get_num_threads()}))


def bench_admission(repeat: int, sessions: int = 6, tokens: int = 512) -> None:
    """Memory under a class: `sessions` sessions ask for different long traces at once, in one server process.
    Bounded (the trace cache's admission: one at a time, estimates reserved) vs unbounded (all at once, as before):
    the growth of the process's resident memory (sampled every 0.2 s), and the time until all were done."""
    import json
    import subprocess
    import sys

    for bounded in (True, False):
        code = f"from bench.__main__ import _flood; _flood({sessions}, {tokens}, {bounded})"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3600,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        if out.returncode != 0:
            row(f"admission probe ({'bounded' if bounded else 'unbounded'})", "failed: " + out.stderr[-300:])
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        row(f"{sessions} sessions at once, each a different {tokens}-token trace (GPT-2-small-sized, random weights), "
            f"{'admission 1 at a time, estimates reserved' if bounded else 'unbounded (all at once)'}: "
            f"RSS growth / all done (load average {os.getloadavg()[0]:.1f})",
            f"{r['peak_mb']:,.0f} MB / {r['secs']:.1f} s (kept in the cache {r['held_mb']:,.0f} MB)")


SECTIONS = {"builtin": bench_builtin, "generation": bench_generation, "gpt2": bench_gpt2, "hf": bench_hf_trace,
            "compact": bench_compact,
            "sampling": bench_sampling, "viz": bench_viz, "tokens": bench_tokens, "training": bench_training,
            "browser": bench_browser, "drag": bench_drag, "load": bench_load, "load2": bench_load2, "serve": bench_serve, "cold": bench_cold,
            "threads": bench_threads, "admission": bench_admission, "plotly": bench_plotly_paths,
            "trainqueue": bench_trainqueue, "heal": bench_heal, "flood": bench_flood, "pages": bench_pages}
SLOW = ("compact", "browser", "drag", "load", "load2", "serve", "cold", "admission", "trainqueue", "heal", "flood",
        "pages")                                              # run only with --browser / --only
SIZED = ("flood", "pages")          # sections that take --sessions, --tokens and --runs


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated sections: " + ",".join(SECTIONS))
    ap.add_argument("--browser", action="store_true", help="include the in-browser timings (needs Chromium)")
    ap.add_argument("--repeat", type=int, default=20, help="timed repeats per figure (median reported)")
    ap.add_argument("--sessions", type=int, default=30, help="flood, pages: browser / headless sessions at once")
    ap.add_argument("--tokens", type=int, default=1024, help="flood: words (tokens) in each session's distinct text")
    ap.add_argument("--runs", type=int, default=3, help="flood, pages: fresh-server runs (median and range reported)")
    ap.add_argument("--budget-mb", type=int, default=None,
                    help="flood: the server's trace budget, LAB_TRACE_BUDGET_MB (default: its own, 1,024); a 4,096-token "
                         "text on a GPT-2-small-sized model needs 2,048")
    a = ap.parse_args(argv)
    names = [s for s in a.only.split(",") if s] or [s for s in SECTIONS if s not in SLOW or (a.browser and s == "browser")]
    unknown = [s for s in names if s not in SECTIONS]
    if unknown:
        ap.error(f"no section {', '.join(map(repr, unknown))}; the sections are {', '.join(SECTIONS)}")
    for flag, v, lo in (("--sessions", a.sessions, 1), ("--tokens", a.tokens, 1), ("--runs", a.runs, 1),
                        ("--repeat", a.repeat, 1), ("--budget-mb", 1 if a.budget_mb is None else a.budget_mb, 1)):
        if v < lo:
            ap.error(f"{flag} must be a whole number of at least {lo} (got {v})")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    print(f"machine: {machine}")
    for s in names:
        print(f"[{s}]", flush=True)
        if s in SIZED:
            extra = {"budget_mb": a.budget_mb} if s == "flood" else {}
            SECTIONS[s](a.repeat, sessions=a.sessions, tokens=a.tokens, runs=a.runs, **extra)
        else:
            SECTIONS[s](a.repeat)
    print(f"\n| what | measured ({machine}) | target |\n|---|---|---|")
    for what, fig, target in ROWS:
        print(f"| {what} | {fig} | {target} |")


if __name__ == "__main__":
    main()
