"""The server's link policy, model store and trace cache: what a link may reach, and how much is kept."""
import os

import pytest
import torch

from model.errors import ModelLoadError
from model.serving.store import LinkPolicy, ModelStore, TraceCache, trace_bytes

pytestmark = pytest.mark.unit

BUILTIN = ("transformer-lm", "lstm-lm", "translator-en-fr")


def test_default_policy_opens_builtins_and_suggested_ids_only_and_refuses_all_else_with_one_message(tmp_path):
    p = LinkPolicy(builtin=BUILTIN)
    assert p.resolve("transformer-lm") == "transformer-lm" and p.resolve("gpt2") == "gpt2"
    messages = set()
    for name in (str(tmp_path), "/root/.ssh", "/no/such/folder", "./model", "~/x", "someone/some-model", "model",
                 "model/../../../../../../etc/passwd", "model/../../../../../../etc/nothere"):
        with pytest.raises(ModelLoadError) as e:
            p.resolve(name)
        messages.add(str(e.value))
        assert str(e.value) == p.refusal(name)               # by the name's shape: hub id, folder path, other
    assert p.refusal(str(tmp_path)) == p.refusal("/no/such/folder")          # an existing folder and a missing one alike
    assert len(messages) == 2 and "LAB_ALLOW_HUB" in p.refusal() and "LAB_ALLOW_FOLDERS" in p.refusal()


def test_default_policy_touches_no_file_for_any_name(monkeypatch):
    """No existence oracle: an existing and a missing path get the same words, and no filesystem call is made
    (every stat-like call raises here)."""
    import pathlib

    def boom(*a, **k):
        raise AssertionError("the link policy touched the disk")

    results = []
    with monkeypatch.context() as mp:                         # undone before pytest itself touches files again
        for attr in ("exists", "is_dir", "is_file", "resolve", "stat", "lstat", "expanduser"):
            mp.setattr(pathlib.Path, attr, boom)
        for fn in ("stat", "lstat", "access", "listdir", "scandir"):
            mp.setattr(os, fn, boom)
        mp.setattr(os.path, "exists", boom)
        for policy in (LinkPolicy(builtin=BUILTIN), LinkPolicy(builtin=BUILTIN, allow_hub=True)):
            messages = set()
            for name in ("model/../../../../../../etc/passwd", "model/../../../../../../etc/nothere", "/etc/passwd",
                         "/etc/nothere", "./model", "~root", "tests/..", "x/../y"):
                try:
                    policy.resolve(name)
                except ModelLoadError as e:
                    messages.add(str(e))
            results.append((messages, policy.refusal("/etc/passwd")))      # every path: the folder message
    for messages, refusal in results:
        assert messages == {refusal}
    assert LinkPolicy(builtin=BUILTIN, allow_hub=True).resolve("someone/some-model") == "someone/some-model"


def test_allowed_folders_give_one_message_for_missing_and_non_model_folders(tmp_path):
    p = LinkPolicy(allow_folders=True, builtin=BUILTIN)
    messages = set()
    for name in (str(tmp_path / "missing"), str(tmp_path), "/root/.ssh", "tests", "no-such-relative-folder"):
        with pytest.raises(ModelLoadError) as e:
            p.resolve(name)
        messages.add(str(e.value))
    assert len(messages) == 1 and "no model folder" in messages.pop()


def test_symlinks_to_one_folder_resolve_to_one_real_path(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "config.json").write_text("{}")
    for i in range(4):
        os.symlink(real, tmp_path / f"link{i}")
    p = LinkPolicy(allow_folders=True, builtin=BUILTIN)
    assert {p.resolve(str(tmp_path / f"link{i}")) for i in range(4)} == {str(real.resolve())}


def test_policy_rejects_control_characters_and_overlong_names():
    p = LinkPolicy(builtin=BUILTIN, allow_hub=True)
    for bad in ("gpt2\x00", "a" * 300, "gpt\n2"):
        with pytest.raises(ModelLoadError, match="not valid"):
            p.resolve(bad)


class _Fake:
    def __init__(self, n):
        self.module = torch.nn.Linear(n, 1, bias=False)     # n float32 parameters = 4n bytes


def test_store_evicts_least_recently_used_under_its_byte_budget():
    calls = []

    def loader(name, device):
        calls.append(name)
        return _Fake(100)                                    # 400 bytes each

    s = ModelStore(budget_bytes=1000, loader=loader)
    a = s.get("a")
    s.get("b")
    assert s.get("a") is a and calls == ["a", "b"]          # a cached; used again, so b is now the oldest
    s.get("c")                                               # 1,200 bytes would not fit: b goes
    assert s.loaded() == ["a", "c"] and s.used_bytes() == 800


def test_store_refuses_a_model_over_the_budget_and_remembers_failures():
    calls = []

    def loader(name, device):
        calls.append(name)
        if name == "bad":
            raise ModelLoadError("no such model")
        return _Fake(1000)

    s = ModelStore(budget_bytes=1000, loader=loader, failure_ttl=60)
    with pytest.raises(ModelLoadError, match="budget"):
        s.get("huge")
    for _ in range(3):
        with pytest.raises(ModelLoadError, match="no such model"):
            s.get("bad")
    assert calls.count("bad") == 1                           # a failed load is not retried on every rerun


def test_trace_cache_keeps_within_its_byte_budget():
    c = TraceCache(budget_bytes=10_000)
    for i in range(5):
        c.get(i, lambda: {"w": torch.zeros(1000)})         # 4,000 bytes each
    assert c.used_bytes() <= 10_000 and trace_bytes({"w": torch.zeros(1000)}) == 4000
    hits = []
    c.get(4, lambda: hits.append(1))
    assert hits == []                                        # the newest is still cached


def test_cached_figure_is_built_once_counted_in_the_budget_and_drawn_by_many_sessions_at_once(monkeypatch):
    """The slow grid figure is built once and the same Figure serves every session; the trace cache counts its
    arrays against its budget; serialising it as st.plotly_chart does, from 8 threads at once, always gives the
    same spec (drawing only reads it)."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import plotly.graph_objects as go
    import plotly.io as pio
    import plotly.tools

    from app_pages import common as c

    store: dict = {}
    monkeypatch.setattr(c, "cached", lambda m, what, args, compute:
                        store[(what, args)] if (what, args) in store else store.setdefault((what, args), compute()))
    z = np.random.default_rng(0).random((60, 60))
    builds = []
    build = lambda: builds.append(1) or go.Figure(go.Heatmap(z=z, colorbar=dict(title="w")))     # noqa: E731
    figs = [c.cached_figure("a model", "grid", ("x",), build) for _ in range(3)]
    assert len(builds) == 1 and figs[0] is figs[1] is figs[2]
    assert trace_bytes(store[("grid", ("x",))]) >= z.nbytes

    def draw(_):
        return pio.to_json(plotly.tools.return_figure_from_figure_or_data(figs[0], validate_figure=True),
                           validate=False)

    with ThreadPoolExecutor(8) as ex:
        specs = set(ex.map(draw, range(200)))
    assert len(specs) == 1 and '"type":"heatmap"' in specs.pop()


@pytest.mark.parametrize("raw,expected", [("", 1), ("1", 1), ("2", 2), ("auto", 0), ("0", 0), ("x", 1), ("-3", 1)])
def test_torch_threads_setting_reads_lab_torch_threads(monkeypatch, raw, expected):
    from model.serving.store import torch_threads

    monkeypatch.setenv("LAB_TORCH_THREADS", raw)
    assert torch_threads() == expected


def test_apply_torch_threads_sets_the_threads_new_script_threads_use():
    """In a fresh interpreter (this one's threads are left alone): applied from a start-up thread, as app.py does,
    a thread started afterwards (as Streamlit starts one per script run) runs torch with that many threads."""
    import subprocess
    import sys

    code = ("import threading, torch\n"
            "from model.serving.store import apply_torch_threads\n"
            "t = threading.Thread(target=apply_torch_threads); t.start(); t.join()\n"
            "out = []\n"
            "def run():\n"
            "    torch.ones(64, 64) @ torch.ones(64, 64); out.append(torch.get_num_threads())\n"
            "t = threading.Thread(target=run); t.start(); t.join(); print(out[0])\n")
    env = {**os.environ, "LAB_TORCH_THREADS": "1"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"
