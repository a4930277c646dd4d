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


# Test files that drive Chromium, and the one that adds network interfaces (tests/test_hosts.py: a bridge and
# veths for its namespaced hosts). Chromium aborts requests in flight when the machine's interfaces change
# (net::ERR_NETWORK_CHANGED), so these files run one after another on one xdist worker (`--dist loadgroup`);
# every other file is its own group, as with `--dist loadfile` (its module fixtures load once).
CHROMIUM_OR_NETWORK = {"test_browser.py", "test_console.py", "test_hosts.py", "test_layout.py",
                       "test_live_sampling.py", "test_no_links.py"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        name = item.path.name
        item.add_marker(pytest.mark.xdist_group("chromium-and-network" if name in CHROMIUM_OR_NETWORK else name))
