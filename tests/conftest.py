"""Shared test helpers: read the figures a page sent, as the browser would get them."""
import base64
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")     # tests never reach the hub
os.environ.setdefault("LAB_DEVICE", "cpu")


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _torch_threads_per_worker() -> None:
    """Under xdist, each worker runs torch with cores // workers threads (1 on 2 cores), as deploy/ does for
    replicas, unless OMP_NUM_THREADS says otherwise. Two workers with torch's default (one thread per core) each
    oversubscribe the cores, and OpenMP's threads then wait on each other: measured on 2 cores at load 11-16, the
    reference means of the translator (50 traced translations) took 21-23 s in each of two processes with one
    thread, 690-720 s with two; test_reference.py 5 s against 165 s (bit-identical results either way). Set in
    this (the main) thread before any test runs: threads started later, AppTest's script threads included, use it.
    Servers and training workers that tests start are other processes and keep their own settings."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers < 1 or "OMP_NUM_THREADS" in os.environ:
        return
    import torch

    torch.set_num_threads(max(1, _cores() // workers))


_torch_threads_per_worker()


def decode(obj):
    """Plotly JSON with numpy arrays sent as {'dtype', 'bdata', 'shape'} -> nested numpy arrays."""
    if isinstance(obj, dict):
        if "bdata" in obj and "dtype" in obj:
            a = np.frombuffer(base64.b64decode(obj["bdata"]), dtype=np.dtype(obj["dtype"]))
            if obj.get("shape"):
                a = a.reshape([int(s) for s in str(obj["shape"]).split(",")])
            return a
        return {k: decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    return obj


def charts(at) -> list[dict]:
    """Every plotly chart on an AppTest page, decoded (data and layout)."""
    return [decode(json.loads(el.proto.spec)) for el in at.get("plotly_chart")]


def slow_except(values, fast) -> list:
    """Parametrize values: those in `fast` run in the fast loop, every other one is also marked slow (the full
    suite runs them all). For matrices (every page, every family) whose cases cost seconds each."""
    assert set(fast) <= set(values), set(fast) - set(values)
    return [v if v in fast else pytest.param(v, marks=pytest.mark.slow) for v in values]


@pytest.fixture(scope="session", autouse=True)
def _component_scan_once():
    """Streamlit 1.67's AppTest scans every installed distribution's metadata for components-v2 manifests on the
    first run of each AppTest (0.16 CPU-s with 145 distributions, about a third of a short page test's time); the
    installed packages do not change during a test run, so each process scans once. (The lab's own component is
    declared inline, not by a manifest, and is registered as before: only the scan's result is reused.)"""
    try:
        from streamlit.components.v2 import manifest_scanner
    except ImportError:
        yield
        return
    scan = manifest_scanner.scan_component_manifests
    found: list = []

    def once(*args, **kwargs):
        if not found:
            found.append(scan(*args, **kwargs))
        return list(found[0])
    manifest_scanner.scan_component_manifests = once        # component_manager imports it at each call
    try:
        yield
    finally:
        manifest_scanner.scan_component_manifests = scan


@pytest.fixture(scope="session")
def lm():
    """The built-in transformer-lm on the CPU (model.load keeps one copy per process)."""
    import model

    return model.load("transformer-lm", "cpu")


@pytest.fixture(scope="session")
def tr():
    import model

    return model.load("translator-en-fr", "cpu")


@pytest.fixture(scope="session")
def lstm():
    import model

    return model.load("lstm-lm", "cpu")


def run_page(at, page: str | None):
    """Run an AppTest of lab.py with app_pages/<page>.py opened directly, as by its link (one run; None: the home page).
    Before the first run AppTest finds a page by its file's stem, which is its url path in this app; the check says
    so if that ever changes (AppTest would run the home page instead, and say nothing)."""
    if page:
        at.switch_page(f"app_pages/{page}.py")
    at.run()
    if page:                                         # AppTest has no public name for the page that ran
        assert at._finished_page_script_hash == at._page_hash, f"{page}: another page ran"
    return at


def until(done, what: str, timeout: float, every: float = 0.5):
    """Call done() until it returns something true and return that; fail naming `what` after `timeout` s."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        got = done()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(every)


@pytest.fixture
def spinner_texts(monkeypatch) -> list[str]:
    """Every text a page opens st.spinner with during the test (recorded, then shown as usual)."""
    import contextlib

    import streamlit as st

    said: list[str] = []
    real = st.spinner

    @contextlib.contextmanager
    def recording(text="", *a, **k):
        said.append(text)
        with real(text, *a, **k):
            yield
    monkeypatch.setattr(st, "spinner", recording)
    return said


# Scheduling (pytest-xdist, `--dist loadfile --no-loadscope-reorder` in pytest.ini). Each test file is run whole on
# one worker (its module fixtures load once). Workers take files in the order pytest_collection_modifyitems gives:
# test_hosts.py first (see the lock below), then, for the other workers, the longest files that drive no browser
# until they cover its time (a browser file there would wait for the lock), then the longest files first, so that
# the last files to start are short ones. (Until 2026-12-02 this was `--dist loadgroup` with an xdist_group mark per
# file, but pytest-xdist 3.8 names the groups by rewriting item._nodeid, which pytest 9 no longer reads: every test
# was scheduled on its own, a file's tests spread over both workers, and module fixtures such as test_flood.py's
# flood ran once per worker.)
# Seconds per file: the full suite's per-test wall times summed per file, 2 workers on 2 cores at load 3-12 (other
# sessions' servers and browsers), 2026-12-02, after the changes of that day (test_layout.py less the 24 s it
# waited for the lock); files not listed take under 5 s. Only the order matters.
COST = {"test_training_queue.py": 230, "test_layout.py": 196, "test_browser.py": 146, "test_live_sampling.py": 122,
        "test_deploy.py": 73, "test_keyboard.py": 65, "test_hf.py": 63, "test_flood.py": 60, "test_hosts.py": 52,
        "test_corpora.py": 37, "test_jobs.py": 36, "test_bad_input.py": 34, "test_builtin.py": 34,
        "test_composition.py": 29, "test_lessons.py": 28, "test_console.py": 26, "test_forgetting.py": 23,
        "test_interventions.py": 21, "test_load.py": 21, "test_breakit_defaults.py": 17, "test_compact.py": 16,
        "test_pages.py": 16, "test_no_links.py": 7}

# Chromium aborts its requests in flight when the machine's network interfaces change (net::ERR_NETWORK_CHANGED),
# and tests/test_hosts.py adds and removes interfaces (a bridge and veths for its namespaced hosts) and cuts links.
# So test_hosts.py holds an exclusive lock while it runs, and each file below that drives Chromium holds a shared
# one: Chromium files run side by side, never while test_hosts.py's network exists. test_hosts.py is scheduled
# first and the files the other workers take meanwhile drive no browser, so nobody waits long for the lock in a
# full run. (Until 2026-12 every Chromium file and test_hosts.py ran one after another on one worker: about 90% of
# the full suite's wall time on 2 cores.)
CHANGES_NETWORK = "test_hosts.py"
DRIVES_CHROMIUM = {"test_browser.py", "test_console.py", "test_flood.py", "test_keyboard.py", "test_layout.py",
                   "test_live_sampling.py", "test_no_links.py"}


def file_order(names, workers: int) -> list[str]:
    """The files in the order the workers should take them (see above)."""
    names = sorted(names, key=lambda n: (-COST.get(n, 0), n))
    order = []
    if CHANGES_NETWORK in names:
        order.append(CHANGES_NETWORK)
        busy = [0.0] * (workers - 1)                    # the other workers' seconds of work, while test_hosts.py runs
        others = [n for n in names if n != CHANGES_NETWORK and n not in DRIVES_CHROMIUM]
        while busy and others and min(busy) < COST.get(CHANGES_NETWORK, 0):
            n = others.pop(0)
            busy[busy.index(min(busy))] += COST.get(n, 0) or 1
            order.append(n)
    return order + [n for n in names if n not in order]


def pytest_xdist_auto_num_workers(config):
    """`-n auto` (pytest.ini): one worker more than the cores, at most 4 (--maxprocesses). Much of the full suite
    waits rather than computes (servers and replicas starting, health checks, trainings' workers, pages loading in
    Chromium), so one more worker than cores fills the waits: on 2 cores, 2026-12-02 (quiet, the same tree), the
    full suite took 356 s with 2 workers and 328 s with 3, the CPU 96% busy with 3 (vmstat); with 4, as long as
    with 2 (every test slower: the CPU was full). Each worker still runs torch with one thread (above)."""
    return min(4, _cores() + 1)


def pytest_collection_modifyitems(config, items):
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    rank = {n: i for i, n in enumerate(file_order({item.path.name for item in items}, workers))}
    items.sort(key=lambda item: rank[item.path.name])    # stable: a file's tests keep their order


@pytest.fixture(scope="module", autouse=True)
def _network_lock(request, tmp_path_factory):
    """Exclusive for test_hosts.py, shared for the files that drive Chromium (see above), for the whole module. The
    lock file lies in the run's temporary folder, which the xdist workers of one run share (pytest removes it later)."""
    import fcntl

    name = request.path.name
    if name != CHANGES_NETWORK and name not in DRIVES_CHROMIUM:
        yield
        return
    with open(tmp_path_factory.getbasetemp().parent / "network.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX if name == CHANGES_NETWORK else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
