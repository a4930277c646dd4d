"""Every failure a user can cause when naming a model gets its own advice, checked word for word: a model trained live
in another browser session, a hub id with the hub off, a hub id the server cannot fetch (offline mode, no network), a
folder with folders off. The page shows them as written (no literal backticks), and says what a load is doing."""

import pytest

import model
from model.errors import ModelLoadError
from model.serving.store import LinkPolicy

BUILTIN = ("transformer-lm", "lstm-lm", "translator-en-fr")
OPENS = ("This server opens the built-in models (transformer-lm, lstm-lm, translator-en-fr) and the suggested Hugging "
         "Face models (gpt2, distilgpt2, bert-base-uncased, t5-small, Helsinki-NLP/opus-mt-en-fr)")
TRAINED = ("This model was trained in another browser session, and trained models live only in the session that "
           "trained them: open Train it live to train one here, then save it to open it on every page.")
HUB_OFF = (OPENS + "; other Hugging Face ids are off. The person running the server can allow any hub id with "
           "LAB_ALLOW_HUB=1, if the server can reach the hub (it may have no network).")
FOLDERS_OFF = (OPENS + "; it does not open model folders named in a link or the sidebar. The person running the server "
               "can allow that with LAB_ALLOW_FOLDERS=1.")
NO_FOLDERS = ("; a copy saved with save_pretrained opens from a folder only where the server allows folders "
              "(LAB_ALLOW_FOLDERS=1).")


def _refused(policy: LinkPolicy, name: str) -> str:
    with pytest.raises(ModelLoadError) as e:
        policy.resolve(name)
    return str(e.value)


@pytest.mark.unit
def test_a_model_trained_in_another_session_says_so():
    for policy in (LinkPolicy(builtin=BUILTIN), LinkPolicy(True, True, BUILTIN)):
        assert _refused(policy, "Transformer trained live (1a2b3c4d)") == TRAINED
        assert _refused(policy, "RNN (tanh) trained live (0f0f0f0f)") == TRAINED


@pytest.mark.unit
def test_a_hub_id_with_the_hub_off_names_the_switch_and_the_network():
    for name in ("gpt2-medium", "someone/some-model"):
        assert _refused(LinkPolicy(builtin=BUILTIN), name) == HUB_OFF
    assert LinkPolicy(allow_hub=True, builtin=BUILTIN).resolve("gpt2-medium") == "gpt2-medium"


@pytest.mark.unit
def test_a_folder_with_folders_off_names_the_switch():
    for name in ("/models/my-gpt2", "./my-gpt2", "~/models/x", "models/../gpt2"):
        assert _refused(LinkPolicy(builtin=BUILTIN), name) == FOLDERS_OFF
        assert _refused(LinkPolicy(allow_hub=True, builtin=BUILTIN), name) == FOLDERS_OFF


@pytest.mark.unit
def test_anything_else_names_both_switches():
    assert _refused(LinkPolicy(builtin=BUILTIN), "no such model!!") == (
        "That is not a model name this server opens. " + OPENS + ". The person running it can allow any hub id with "
        "LAB_ALLOW_HUB=1 and model folders with LAB_ALLOW_FOLDERS=1.")


@pytest.mark.unit
def test_a_hub_id_offline_and_not_cached(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("LAB_ALLOW_FOLDERS", raising=False)
    with pytest.raises(ModelLoadError) as e:
        model.load("no-such-user/no-such-model-xyz", "cpu")
    assert str(e.value) == (
        "“no-such-user/no-such-model-xyz” is not in the local Hugging Face cache, and offline mode is on "
        "(HF_HUB_OFFLINE=1), so the hub is not asked. The built-in models work offline. The person running the server "
        "can download it into the cache on a machine with network, or turn offline mode off" + NO_FOLDERS)
    monkeypatch.setenv("LAB_ALLOW_FOLDERS", "1")                 # where folders open, a folder is the advice
    with pytest.raises(ModelLoadError) as e:
        model.load("no-such-user/no-such-model-xyz", "cpu")
    assert str(e.value).endswith("or turn offline mode off; or give the folder of a copy saved with save_pretrained.")


@pytest.mark.unit
def test_a_hub_id_with_no_network(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")     # nothing listens there: unreachable at once
    monkeypatch.delenv("LAB_ALLOW_FOLDERS", raising=False)
    with pytest.raises(ModelLoadError) as e:
        model.load("surely-not-cached-model", "cpu")
    assert str(e.value) == (
        "Cannot reach the Hugging Face hub (127.0.0.1:9; the server may have no network), and "
        "“surely-not-cached-model” is not in the local Hugging Face cache. The built-in models work offline. The person "
        "running the server can download it into the cache on a machine with network" + NO_FOLDERS)


# ----------------------------------------------------------------------------- on the page
def _app(query: dict | None = None):
    from streamlit.testing.v1 import AppTest

    from conftest import ROOT

    at = AppTest.from_file(str(ROOT / "lab.py"), default_timeout=120)
    at.query_params.update(query or {})
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


@pytest.mark.apptest
def test_a_link_to_a_model_trained_elsewhere_opened_in_a_fresh_session(monkeypatch):
    monkeypatch.delenv("LAB_ALLOW_HUB", raising=False)
    at = _app({"model": "Transformer trained live (1a2b3c4d)"})
    assert [e.value for e in at.error] == [
        "**Could not open the model “Transformer trained live \\(1a2b3c4d\\)”.** This model was trained in another "
        "browser session, and trained models live only in the session that trained them\\: open Train it live to train "
        "one here, then save it to open it on every page\\."]


@pytest.mark.apptest
def test_offline_gpt2_on_the_page_has_no_literal_backticks(monkeypatch):
    from app_pages.common import md_escape

    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache("gpt2", "config.json"), str):
        pytest.skip("gpt2 is in this machine's Hugging Face cache")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("LAB_ALLOW_FOLDERS", raising=False)
    at = _app({"model": "gpt2"})
    shown = at.error[0].value
    assert shown == "**Could not open the model “gpt2”.** " + md_escape(
        "“gpt2” is not in the local Hugging Face cache, and offline mode is on (HF_HUB_OFFLINE=1), so the hub is not "
        "asked. The built-in models work offline. The person running the server can download it into the cache on a "
        "machine with network, or turn offline mode off" + NO_FOLDERS)
    assert "`" not in shown


@pytest.mark.apptest
def test_the_spinner_says_a_hub_model_may_be_downloading(monkeypatch, spinner_texts):
    """A hub download cannot run offline in CI: the loader is patched, and every spinner the page opens is recorded."""
    from model.serving import store

    said = spinner_texts
    builtin = model.load("transformer-lm", "cpu")
    monkeypatch.setattr(store.ModelStore, "get", lambda self, name, device: builtin)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    _app({"model": "gpt2"})
    assert ("Opening gpt2: from this server's Hugging Face cache, or downloading it from the Hugging Face hub if it is "
            "not there yet (a first download can take minutes)…") in said
    said.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _app({"model": "gpt2"})
    assert "Opening gpt2 from this server's Hugging Face cache (offline mode: the hub is not asked)…" in said
    said.clear()
    _app()
    assert "Opening transformer\\-lm…" in said                 # a built-in: nothing to download
