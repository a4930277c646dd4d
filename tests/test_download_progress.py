"""The hub's own download progress, forwarded by model/hf/loading.py (a tqdm class for snapshot_download) and drawn
by the page (app_pages/opening.py: with_download_progress). No network: a fake snapshot_download drives the
tqdm class the way huggingface_hub's does (its own hf_thread_map and progress-bar factory, files in threads)."""
import inspect
import time
from pathlib import Path

import pytest

import huggingface_hub

FILES = {"config.json": 700, "model.safetensors": 3_000_000, "tokenizer.json": 400_000, "vocab.txt": 200_000}
CHUNK = 65_536


def drive_like_snapshot_download(repo_id, *, allow_patterns=None, ignore_patterns=None, local_files_only=False,
                                 tqdm_class=None, **_):
    """What huggingface_hub 2.x snapshot_download does with tqdm_class: a bar of bytes received, a bar of bytes
    written (each file adds its size to its total when it starts, then its bytes as they come), and the files
    bar of hf_thread_map, updated as each file completes (files downloaded in worker threads)."""
    from huggingface_hub.utils.tqdm import _create_progress_bar, hf_thread_map

    assert allow_patterns and "*.safetensors" in allow_patterns and not local_files_only
    if tqdm_class is None:
        return "/nowhere"
    transfer = _create_progress_bar(cls=tqdm_class, log_level=30, name="huggingface_hub.snapshot_download.transfer",
                                    desc="Downloading bytes", total=0, initial=0, unit="B", unit_scale=True)
    written = _create_progress_bar(cls=tqdm_class, log_level=30, name="huggingface_hub.snapshot_download",
                                   desc="Reconstructing (incomplete total...)", total=0, initial=0, unit="B",
                                   unit_scale=True)

    def one(name: str) -> None:
        size = FILES[name]
        written.total += size
        transfer.total += size
        written.refresh()
        for start in range(0, size, CHUNK):
            n = min(CHUNK, size - start)
            transfer.update(n)
            written.update(n)
            time.sleep(0.001)

    hf_thread_map(one, list(FILES), desc=f"Fetching {len(FILES)} files", max_workers=2, tqdm_class=tqdm_class)
    written.set_description("Reconstruction complete")
    return f"/cache/{repo_id}"


@pytest.fixture
def fake_hub(monkeypatch):
    monkeypatch.setattr(huggingface_hub, "snapshot_download", drive_like_snapshot_download)


@pytest.mark.unit
def test_the_installed_snapshot_download_takes_a_tqdm_class():
    assert "tqdm_class" in inspect.signature(huggingface_hub.snapshot_download).parameters


@pytest.mark.unit
def test_the_callback_receives_increasing_bytes_and_totals_up_to_every_file(fake_hub):
    from model.hf.loading import download, download_progress

    seen = []
    with download_progress(seen.append):
        assert download("fake/model") == "/cache/fake/model"
    assert len(seen) > len(FILES)
    done = [p.done for p in seen]
    totals = [p.total for p in seen]
    files_done = [p.files_done for p in seen]
    assert all(b >= a for a, b in zip(done, done[1:])), "bytes done went back"
    assert all(b >= a for a, b in zip(totals, totals[1:])), "the total went back"
    assert all(b >= a for a, b in zip(files_done, files_done[1:])), "files done went back"
    assert len(set(done)) > len(FILES)                              # chunks, not only whole files
    assert all(p.done <= p.total for p in seen)
    last = seen[-1]
    assert (last.done, last.total, last.files_done, last.files) == (sum(FILES.values()), sum(FILES.values()),
                                                                    len(FILES), len(FILES))
    assert last.fraction == 1.0


@pytest.mark.unit
def test_without_a_callback_nothing_is_reported_and_the_download_still_runs(fake_hub):
    from model.hf import loading

    assert loading._SINK.get() is None
    assert loading.download("fake/model") == "/nowhere"               # no tqdm class passed


@pytest.mark.unit
def test_a_hub_load_downloads_through_the_progress_before_from_pretrained(monkeypatch, fake_hub):
    """load_weights, when the model is not in the cache and the hub answers: the files come through download()
    (the progress), then transformers reads them."""
    import torch
    import transformers as tf

    from model.hf import loading

    config = tf.GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=50, n_positions=16)
    calls = []

    def from_pretrained(src, local_files_only, **kw):
        calls.append(("weights", local_files_only))
        if local_files_only:
            raise OSError("not in the cache")
        return tf.GPT2LMHeadModel(config), {"missing_keys": []}

    monkeypatch.setattr(tf.AutoModelForCausalLM, "from_pretrained", staticmethod(from_pretrained))
    monkeypatch.setattr(tf.AutoTokenizer, "from_pretrained", staticmethod(lambda *a, **k: "tok"))
    monkeypatch.setattr(loading, "hub_reachable", lambda: True)
    monkeypatch.setattr(loading, "offline", lambda: False)
    seen = []
    with loading.download_progress(seen.append):
        hf, head, tok, n = loading.load_weights("fake/model", "fake/model", False, config,
                                                loading.spec_for("gpt2"), torch.device("cpu"))
    assert calls == [("weights", True), ("weights", False)]
    assert seen and seen[-1].files_done == len(FILES)


@pytest.mark.unit
def test_download_words_say_the_bytes_and_files():
    from app_pages.opening import download_words
    from model.hf.loading import DownloadProgress

    assert download_words("gpt2", DownloadProgress(0, 0, 0, 0)) == "Asking the Hugging Face hub for the files of gpt2…"
    assert download_words("gpt2", DownloadProgress(120_500_000, 548_100_000, 3, 7)) == (
        "Downloading gpt2 from the Hugging Face hub: 120.5 MB of the 548.1 MB started so far; 3 of 7 files done.")


@pytest.mark.apptest
def test_the_page_draws_the_hub_progress_as_it_comes(fake_hub):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).parent / "apps" / "download_progress_app.py"), default_timeout=60)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    bars = at.get("progress")
    assert bars, "no progress bar was drawn"
    values = [b.proto.value for b in bars]                           # percent
    texts = [b.proto.text for b in bars]
    assert values == sorted(values) and values[-1] == 100
    assert texts[-1] == (f"Downloading fake/model from the Hugging Face hub: {sum(FILES.values()) / 1e6:,.1f} MB of "
                         f"the {sum(FILES.values()) / 1e6:,.1f} MB started so far; {len(FILES)} of {len(FILES)} "
                         "files done.")
    assert any(m.value == "loaded from /cache/fake/model" for m in at.markdown)


@pytest.mark.apptest
def test_a_hub_id_from_the_sidebar_loads_with_the_progress_callback_set(monkeypatch, fake_hub):
    """load_or_stop on a hub id: the load runs where a download reports to the page (the callback is set), and the
    page then opens on the loaded model. The loader is faked: it downloads through the fake hub and returns the
    built-in transformer-lm."""
    from streamlit.testing.v1 import AppTest

    import model
    from conftest import ROOT
    from model.hf import loading

    real_load = model.load
    calls = []

    def fake_load(name, device=None):
        if name != "someone/progress-model":
            return real_load(name, device)
        calls.append(loading._SINK.get() is not None)
        loading.download(name)
        return real_load("transformer-lm", device)

    monkeypatch.setenv("LAB_ALLOW_HUB", "1")
    monkeypatch.setattr(model, "load", fake_load)
    at = AppTest.from_file(str(ROOT / "lab.py"), default_timeout=120)
    at.query_params["model"] = "someone/progress-model"
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert calls == [True]
    assert not at.get("progress")                                    # cleared once the model is open
