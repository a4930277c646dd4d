"""The trace cache bounds work before it starts: one computation per key, at most N heavy ones at once with a
queue whose place a caller can read, estimated bytes reserved while running, and work nobody waits for dropped.

Fake compute functions and threads; every wait has a deadline, and no assertion is about wall-clock time."""
import threading

import pytest
import torch

from model.errors import InputError
from model.serving.store import TraceCache, Waiting, trace_bytes, trace_estimate

pytestmark = pytest.mark.unit

DEADLINE = 20.0          # seconds: only ever reached when the code under test is broken


def _thread(fn, *a, **kw) -> tuple[threading.Thread, dict]:
    out: dict = {}

    def body():
        try:
            out["value"] = fn(*a, **kw)
        except BaseException as e:       # noqa: BLE001  (handed to the test)
            out["error"] = e

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t, out


def _join(*threads: threading.Thread) -> None:
    for t in threads:
        t.join(DEADLINE)
        assert not t.is_alive(), "a thread did not finish"


def _wait_until(cond, what: str) -> None:
    ev = threading.Event()
    for _ in range(int(DEADLINE / 0.01)):
        if cond():
            return
        ev.wait(0.01)
    raise AssertionError(f"never happened: {what}")


def test_two_threads_asking_for_the_same_key_compute_it_once():
    c = TraceCache(budget_bytes=10**6, poll=0.01)
    started, release = threading.Event(), threading.Event()
    calls = []

    def compute():
        calls.append(1)
        started.set()
        assert release.wait(DEADLINE)
        return {"w": torch.zeros(10)}

    t1, o1 = _thread(c.get, "k", compute, estimate=100)
    assert started.wait(DEADLINE)
    seen: list[Waiting] = []
    t2, o2 = _thread(c.get, "k", compute, estimate=100, on_wait=seen.append)
    _wait_until(lambda: seen, "the second caller reported that it waits")
    release.set()
    _join(t1, t2)
    assert calls == [1] and o1["value"] is o2["value"]
    assert seen[0].queued is False                         # it waited for the other session's computation


def test_with_a_limit_of_one_never_more_than_one_heavy_computation_runs_at_once():
    c = TraceCache(budget_bytes=10**6, max_running=1, poll=0.01)
    lock = threading.Lock()
    running, peak, done = [0], [0], []

    def compute(i):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        threading.Event().wait(0.01)                       # give the others a chance to overlap if they could
        with lock:
            running[0] -= 1
            done.append(i)
        return i

    threads = [_thread(c.get, i, lambda i=i: compute(i), estimate=10)[0] for i in range(8)]
    _join(*threads)
    assert peak[0] == 1 and sorted(done) == list(range(8))


def test_with_a_limit_of_two_two_run_together_and_no_third():
    c = TraceCache(budget_bytes=10**6, max_running=2, poll=0.01)
    lock = threading.Lock()
    running, peak = [0], [0]
    both_in, release = threading.Barrier(2, timeout=DEADLINE), threading.Event()

    def compute(i):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        if i < 2:
            both_in.wait()                                 # the first two are running at the same time
        assert release.wait(DEADLINE)
        with lock:
            running[0] -= 1
        return i

    first = [_thread(c.get, i, lambda i=i: compute(i), estimate=10)[0] for i in range(2)]
    _wait_until(lambda: running[0] == 2, "two computations running")
    rest = [_thread(c.get, i, lambda i=i: compute(i), estimate=10)[0] for i in range(2, 5)]
    _wait_until(lambda: len(c._queue) == 3, "three queued")
    assert running[0] == 2
    release.set()
    _join(*first, *rest)
    assert peak[0] == 2


def test_queue_positions_are_told_in_order_and_shrink_as_work_finishes():
    c = TraceCache(budget_bytes=10**6, max_running=1, poll=0.01)
    release = {i: threading.Event() for i in range(4)}
    started = {i: threading.Event() for i in range(4)}
    order = []

    def compute(i):
        order.append(i)
        started[i].set()
        assert release[i].wait(DEADLINE)
        return i

    reports: dict[int, list[int]] = {i: [] for i in range(4)}
    threads = [_thread(c.get, 0, lambda: compute(0), estimate=10)[0]]
    assert started[0].wait(DEADLINE)
    for i in (1, 2, 3):                                    # queued one after another, in this order
        threads.append(_thread(c.get, i, lambda i=i: compute(i), estimate=10,
                               on_wait=lambda w, i=i: reports[i].append(w.ahead))[0])
        _wait_until(lambda i=i: c.waiting(i) is not None, f"job {i} queued")
    assert [c.waiting(i).ahead for i in (1, 2, 3)] == [0, 1, 2]
    _wait_until(lambda: reports[3][-1:] == [2], "job 3 told it has 2 ahead")
    for i in range(4):
        release[i].set()
        if i < 3:
            assert started[i + 1].wait(DEADLINE)
            if i < 2:                                      # job 3 is told its new place before the next finishes
                _wait_until(lambda i=i: reports[3][-1:] == [1 - i], f"job 3 told {1 - i} ahead")
    _join(*threads)
    assert order == [0, 1, 2, 3]
    assert reports[3][0] == 2 and 1 in reports[3] and 0 in reports[3]          # 2, then 1, then 0 ahead
    assert all(a >= b for a, b in zip(reports[3], reports[3][1:]))            # never moves back


def test_an_estimate_over_the_budget_is_refused_before_compute_is_called():
    c = TraceCache(budget_bytes=1000)
    calls = []
    with pytest.raises(InputError, match="LAB_TRACE_BUDGET_MB"):
        c.get("long", lambda: calls.append(1), estimate=1001)
    assert calls == [] and c.waiting("long") is None


def test_a_running_estimate_is_reserved_so_a_second_one_waits_until_it_fits():
    c = TraceCache(budget_bytes=1000, max_running=2, poll=0.01)
    release, started_b = threading.Event(), threading.Event()

    def a():
        assert c.reserved_bytes() == 600
        assert release.wait(DEADLINE)
        return "a"

    ta, oa = _thread(c.get, "a", a, estimate=600)
    _wait_until(lambda: c.reserved_bytes() == 600, "a running")
    tb, ob = _thread(c.get, "b", lambda: started_b.set() or "b", estimate=600)   # 600 + 600 > 1000
    _wait_until(lambda: c.waiting("b") is not None, "b queued")
    assert not started_b.is_set() and c.waiting("b").queued
    release.set()
    _join(ta, tb)
    assert started_b.is_set() and oa["value"] == "a" and ob["value"] == "b"


def test_cached_results_are_evicted_to_make_room_for_a_running_estimate():
    c = TraceCache(budget_bytes=10_000)
    for i in range(2):
        c.get(i, lambda: {"w": torch.zeros(1000)})          # 4,000 bytes each: 8,000 used
    seen = []
    c.get("big", lambda: seen.append((c.used_bytes(), c.reserved_bytes())) or "x", estimate=5000)
    used, reserved = seen[0]
    assert reserved == 5000 and used + reserved <= 10_000   # the oldest went before the work started


def test_a_running_computation_also_reserves_its_working_memory_and_gives_it_back_when_done():
    """What a heavy computation needs while it runs (its forward pass's working memory) is reserved beside what its
    result will hold: the cache evicts for both before the work starts, and keeps only the result afterwards."""
    c = TraceCache(budget_bytes=10_000)
    for i in range(2):
        c.get(i, lambda: {"w": torch.zeros(1000)})          # 4,000 bytes each: 8,000 used
    seen = []
    c.get("big", lambda: seen.append((c.used_bytes(), c.reserved_bytes())) or {"w": torch.zeros(500)},
          estimate=2_000, working=3_000)
    used, reserved = seen[0]
    assert reserved == 5_000 and used == 4_000                # the oldest went before the work started
    assert c.reserved_bytes() == 0 and c.used_bytes() == 6_000   # what the result holds, beside the one kept


def test_a_result_and_working_memory_that_pass_the_budget_together_are_refused_before_compute_is_called():
    """What a computation holds and what it needs while it runs must fit the budget together: otherwise it is refused
    before it starts (the message names both), and the cache keeps what it held."""
    c = TraceCache(budget_bytes=10_000)
    c.get("old", lambda: {"w": torch.zeros(1000)})
    called = []
    with pytest.raises(InputError, match=r"need .* more while it is computed.*shorter text"):
        c.get("long", lambda: called.append(1), estimate=4_000, working=6_001)
    assert called == [] and c.used_bytes() == 4_000 and c.reserved_bytes() == 0
    seen = []                                                  # exactly the budget: runs, the cache emptied first
    assert c.get("fits", lambda: seen.append((c.used_bytes(), c.reserved_bytes())) or "x", estimate=4_000,
                 working=6_000) == "x"
    assert seen == [(0, 10_000)]


def test_the_gpt2_small_working_memory_estimate_matches_the_measured_peak():
    """Measured (docs/deploy.md): a 1,024-token compact trace of GPT-2 small took the heap 111-128 MB above what the
    run kept, at its peak."""
    from model.api import Architecture
    from model.serving.store import working_estimate

    a = Architecture("decoder-only Transformer", n_layers=12, n_heads=12, d_model=768)
    assert 111 <= working_estimate(a, 1024) / 1e6 <= 150
    assert working_estimate(a, 4096) > 16 * working_estimate(a, 1024) / 2      # the T x T scores dominate


def test_a_waiter_that_stops_drops_its_queued_work():
    c = TraceCache(budget_bytes=10**6, max_running=1, poll=0.01, orphan_grace=0)
    release = threading.Event()
    calls = []

    class Stopped(Exception):
        pass

    def stop(w):
        raise Stopped                                      # as a page's callback does when its session is gone

    t0, _ = _thread(c.get, "first", lambda: release.wait(DEADLINE), estimate=10)
    _wait_until(lambda: c.reserved_bytes() == 10, "first running")
    t1, o1 = _thread(c.get, "second", lambda: calls.append(1), estimate=10, on_wait=stop)
    _join(t1)
    assert isinstance(o1["error"], Stopped) and c.waiting("second") is None and c._queue == []
    release.set()
    _join(t0)
    assert calls == []                                     # never computed: nobody waited for it


def test_a_queued_job_survives_when_one_of_two_waiters_stops():
    c = TraceCache(budget_bytes=10**6, max_running=1, poll=0.01, orphan_grace=0)
    release = threading.Event()
    calls = []

    def stop(w):
        raise KeyboardInterrupt

    t0, _ = _thread(c.get, "first", lambda: release.wait(DEADLINE), estimate=10)
    _wait_until(lambda: c.reserved_bytes() == 10, "first running")
    t1, o1 = _thread(c.get, "k", lambda: calls.append(1) or "v", estimate=10)
    _wait_until(lambda: c.waiting("k") is not None, "k queued")
    t2, o2 = _thread(c.get, "k", lambda: calls.append(2) or "v", estimate=10, on_wait=stop)
    _join(t2)
    assert isinstance(o2["error"], KeyboardInterrupt) and c.waiting("k") is not None
    release.set()
    _join(t0, t1)
    assert o1["value"] == "v" and calls == [1]


def test_a_rerun_that_comes_back_within_the_grace_keeps_its_place_and_an_orphan_is_never_started():
    now = [0.0]
    c = TraceCache(budget_bytes=10**6, max_running=1, poll=0.01, orphan_grace=3.0, clock=lambda: now[0])
    release = threading.Event()
    calls = []

    class Rerun(BaseException):
        pass

    def rerun(w):
        raise Rerun                                        # as Streamlit raises when the page reruns

    t0, _ = _thread(c.get, "first", lambda: release.wait(DEADLINE), estimate=10)
    _wait_until(lambda: c.reserved_bytes() == 10, "first running")
    for key in ("a", "b"):
        t, o = _thread(c.get, key, lambda key=key: calls.append(key) or key, estimate=10, on_wait=rerun)
        _join(t)
        assert isinstance(o["error"], Rerun)
    assert [c.waiting(k).ahead for k in ("a", "b")] == [0, 1]           # both orphans keep their places
    tb, ob = _thread(c.get, "b", lambda: calls.append("b") or "b", estimate=10)   # b's rerun comes back
    _wait_until(lambda: c._flights["b"].orphan_since is None, "b claimed again")
    now[0] = 3.0                                           # the grace is over for a: dropped, never started
    assert c.waiting("a") is None and c.waiting("b").ahead == 0
    release.set()
    _join(t0, tb)
    assert ob["value"] == "b" and calls == ["b"]


def test_an_error_reaches_every_waiter_and_is_not_cached():
    c = TraceCache(budget_bytes=10**6, poll=0.01)
    started, release = threading.Event(), threading.Event()

    def bad():
        started.set()
        assert release.wait(DEADLINE)
        raise InputError("too long")

    t1, o1 = _thread(c.get, "k", bad, estimate=10)
    assert started.wait(DEADLINE)
    seen = []
    t2, o2 = _thread(c.get, "k", bad, estimate=10, on_wait=seen.append)
    _wait_until(lambda: seen, "second waits")
    release.set()
    _join(t1, t2)
    assert isinstance(o1["error"], InputError) and isinstance(o2["error"], InputError)
    assert c.get("k", lambda: "ok") == "ok"                # a later call computes again


def test_a_caller_that_waits_past_its_timeout_gets_a_busy_message():
    c = TraceCache(budget_bytes=10**6, max_running=1, poll=0.01)
    release = threading.Event()
    t0, _ = _thread(c.get, "first", lambda: release.wait(DEADLINE), estimate=10)
    _wait_until(lambda: c.reserved_bytes() == 10, "first running")
    with pytest.raises(InputError, match="busy"):
        c.get("second", lambda: "x", estimate=10, timeout=0.05)
    assert c._queue == []
    release.set()
    _join(t0)


@pytest.mark.parametrize("n", [8, 40, 300])
def test_the_estimate_covers_a_real_hugging_face_trace(tmp_path, n):
    """trace_estimate from the shape alone is at least what a tiny GPT-2's run holds, and not over twice it."""
    import model
    from devkit.hf_fixtures import make_tiny
    from model.serving.store import run_estimate

    m = model.load(str(make_tiny("gpt2", tmp_path / "g", positions=512)), "cpu")
    words = ("the bear ate the honey because it was hungry . " * 100).split()

    def length(k):
        try:
            return len(m.tokenize(" ".join(words[:k])).ids)
        except InputError:                                 # longer than the model reads
            return n + 1

    k = max(k for k in range(1, 200) if length(k) <= n)
    text = " ".join(words[:k])
    r = m.run(text)
    assert n - 3 <= len(r.tokens) <= n
    held, est = trace_bytes(r), run_estimate(m, text)
    assert est is not None and held <= est <= 2 * held + 256 * 1024, (held, est)


def test_the_estimate_covers_the_builtin_traces():
    import model
    from model.serving.store import run_estimate

    for name in model.builtin_names():
        m = model.load(name, "cpu")
        text = "the bear ate the honey because it was hungry"
        r = m.run(text)
        held, est = trace_bytes(r), run_estimate(m, text)
        assert est is not None and held <= est, (name, held, est)


def test_the_gpt2_small_estimate_matches_the_measured_trace_sizes():
    """GPT-2 small (12 layers x 12 heads, d 768): measured 37 MiB held at 128 tokens (a full trace), 49.6 MiB at
    1,024 and 244.5 MiB at 4,096 (compact; README). test_compact.py measures a real 1,024-token trace against it."""
    from model.api import Architecture

    a = Architecture("decoder-only Transformer", n_layers=12, n_heads=12, d_model=768)
    assert 37 <= trace_estimate(a, 128) / 2**20 <= 45
    assert 45 <= trace_estimate(a, 1024) / 2**20 <= 60
    assert trace_estimate(a, 4096) / 2**20 <= 500


def test_max_tokens_for_is_the_longest_input_whose_run_fits_while_it_runs_and_no_more_than_the_positions():
    from types import SimpleNamespace

    from model.api import Architecture
    from model.serving.store import COMPACT_ABOVE, max_tokens_for, run_need

    arch = Architecture("decoder-only Transformer", n_layers=12, n_heads=12, d_model=768)
    m = SimpleNamespace(arch=arch, source="hf", max_len=1024,
                        hf=SimpleNamespace(config=SimpleNamespace(max_position_embeddings=4096)))
    n = max_tokens_for(m, 1024 * 2**20)                     # the default 1 GiB: what the run keeps and its working
    assert run_need(arch, n) <= 1024 * 2**20 < run_need(arch, n + 1)         # memory (eager attention's T x T) fit
    assert 2048 < n < 4096 and trace_estimate(arch, n, None, COMPACT_ABOVE) < 250 * 2**20
    assert max_tokens_for(m, 2048 * 2**20) == 4096         # a 2 GiB budget: the positions decide
    budget = 400 * 2**20
    n = max_tokens_for(m, budget)
    assert run_need(arch, n) <= budget < run_need(arch, n + 1)
    assert 1024 < n < 2048                                  # beyond the old 1,024 cap, short of the positions
    small = max_tokens_for(m, 60 * 2**20)                   # a budget a full 256-token trace (120 MB) does not fit:
    assert small < COMPACT_ABOVE                            # every shorter text must fit too, so the limit stays short
    assert all(run_need(arch, k) <= 60 * 2**20 for k in range(1, small + 1))
    assert max_tokens_for(m, 10**15) == 4096                # a generous budget: the model's positions decide
    assert max_tokens_for(m, budget, positions=512) == 512


def test_a_page_waiting_for_its_run_shows_its_place_and_clears_it(monkeypatch):
    """runs.get_run (the page side): while another trace holds the only slot, the page shows where it waits,
    and the note is cleared once its run is there. Streamlit is replaced by a recorder (no runtime)."""
    from types import SimpleNamespace

    from app_pages import runs
    from model.api import Architecture

    cache = TraceCache(budget_bytes=10**9, max_running=1, poll=0.01)
    monkeypatch.setattr(runs, "traces", lambda: cache)
    shown: list[str] = []

    class Placeholder:
        def info(self, body, **kw):
            shown.append(body)

        def empty(self):
            shown.append("<cleared>")

    monkeypatch.setattr(runs, "st", SimpleNamespace(empty=Placeholder))
    m = SimpleNamespace(name="fake", device="cpu", source="builtin", max_len=64,
                        arch=Architecture("decoder-only Transformer", n_layers=2, n_heads=2, d_model=8),
                        tokenize=lambda text: SimpleNamespace(ids=text.split()), run=lambda text: ("run of", text))
    release = threading.Event()
    t0, _ = _thread(cache.get, "other session's trace", lambda: release.wait(DEADLINE), estimate=10)
    _wait_until(lambda: cache.reserved_bytes() == 10, "the other trace running")
    t1, o1 = _thread(runs.get_run, m, "the bear ate")
    _wait_until(lambda: any("0 ahead of you" in s for s in shown), "the page told its place")
    release.set()
    _join(t0, t1)
    assert o1["value"] == ("run of", "the bear ate") and shown[-1] == "<cleared>"
