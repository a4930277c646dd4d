"""The shipped checkpoints and the public API: load, reach their quality, handle bad input clearly."""
import json
import subprocess
import sys

import pytest
import torch

import model
from model import InputError, ModelLoadError
from model.teaching import corpora
from model.teaching import probes
from model.nets import sampling
from model.builtin import CHECKPOINTS
from model.training.evaluate import (agreement_accuracy, lm_cross_entropy, pronoun_accuracy,
                            translator_exact_match)

from conftest import ROOT, slow_except

pytestmark = pytest.mark.unit


def test_checkpoints_are_small_safetensors():
    for name in model.builtin_names():
        folder = CHECKPOINTS / name
        files = {p.name for p in folder.iterdir()}
        assert "model.safetensors" in files and "config.json" in files
        assert not {f for f in files if f.endswith((".pt", ".pth", ".bin", ".pkl"))}
        assert sum(p.stat().st_size for p in folder.iterdir()) < 10_500_000
        assert (folder / "model.safetensors").stat().st_size < 10_000_000     # issue 20: each model under 10 MB
        cfg = json.loads((folder / "config.json").read_text())
        assert cfg["train"]["loss_curve"] and cfg["eval"]                  # curves and figures stored as before


@pytest.mark.slow                                  # a held-out evaluation
@pytest.mark.parametrize("name", ["transformer-lm", "lstm-lm"])
def test_language_models_reach_their_quality(name, lm, lstm):
    m = lm if name == "transformer-lm" else lstm
    d = m.cfg.data
    _, held = corpora.lm_datasets(d["n_train"], d["n_heldout"], d["seed"])
    ce = lm_cross_entropy(m, held[:400])
    h = corpora.grammar_entropy_per_token(5000)
    assert ce < h + 0.25, f"held-out cross-entropy {ce:.3f} nats vs grammar entropy {h:.3f}"
    acc = agreement_accuracy(m, corpora.agreement_items(400, seed=777))
    assert acc >= 0.95, f"agreement accuracy {acc:.3f}"


@pytest.mark.parametrize("name", ["transformer-lm", "lstm-lm"])
def test_language_models_agree_on_hand_written_probes(name, lm, lstm):
    m = lm if name == "transformer-lm" else lstm
    acc = agreement_accuracy(m, probes.agreement_probe_items())
    assert acc >= 0.95, f"probe agreement accuracy {acc:.3f}"


def _training_prefixes(m) -> set[str]:
    d = m.cfg.data
    train, _ = corpora.lm_datasets(d["n_train"], 10, d["seed"])
    return {" ".join(w[:k]) for w in (s.split() for s in train) for k in range(1, len(w))}


@pytest.mark.slow                                  # generates the training corpus
@pytest.mark.parametrize("name", ["transformer-lm", "lstm-lm"])
def test_language_models_agree_with_and_and_with_subjects_on_held_out_items(name, lm, lstm):
    """"the cat and the dog" -> are, "the dog with the cats" -> is, on generated items whose prefix begins no
    training sentence. Measured on the shipped checkpoints: 100% on both kinds and both models (548 "and" and 586
    "with" held-out items of 600 each); the threshold is 95%, as for the other agreement figures."""
    m = lm if name == "transformer-lm" else lstm
    seen = _training_prefixes(m)
    for kind, items in (("and", corpora.coordination_items(600, seed=31)), ("with", corpora.with_items(600, seed=32))):
        held = [i for i in items if i["prefix"] not in seen]
        assert len(held) >= 500, (kind, len(held))
        assert sum(i["attractor"] for i in held) >= 300                 # the noun before the verb has the other number
        acc = agreement_accuracy(m, held)
        assert acc >= 0.95, f"{kind}: agreement accuracy {acc:.3f} on {len(held)} held-out items"


@pytest.mark.slow                                  # a held-out evaluation
def test_translator_reaches_its_quality(tr):
    d = tr.cfg.data
    _, held = corpora.translation_datasets(d["n_train"], d["n_heldout"], d["seed"])
    assert translator_exact_match(tr, held[:300]) >= 0.90
    assert tr.translate("the black cat ate the mouse", greedy=True) == "le chat noir a mangé la souris"


def test_translator_exact_on_hand_written_probes(tr):
    assert translator_exact_match(tr, probes.translation_probe_pairs()) >= 0.90


@pytest.mark.slow                                  # a held-out evaluation
def test_translator_picks_il_or_elle_on_unseen_eater_food_pairs(tr):
    acc = pronoun_accuracy(tr)
    assert acc["pronoun_accuracy"] >= 0.95, acc
    assert acc["pronoun_accuracy_opposite_gender"] >= 0.95, acc


@pytest.mark.slow                                  # a held-out evaluation
def test_plain_translator_has_no_encoder_head_that_tracks_it(tr):
    """Trained without an attention loss, no encoder head's attention from "it" is highest on its referent in 90% of
    the held-out pronoun sentences; the closest is the head the lesson names (lessons.IT_HEAD)."""
    from model.teaching.lessons import IT_HEAD
    from model.training.evaluate import it_head_tables

    assert "it_attention" not in tr.cfg.train
    t = it_head_tables(tr)
    assert max(max(row) for row in t["it_heads_top_table"]) < 0.9, t
    assert tuple(t["it_heads_best"]) == IT_HEAD, t


def test_translator_training_note_says_it_was_trained_plainly(tr):
    notes = tr.training_notes()
    assert len(notes) == 1 and "translation loss alone" in notes[0] and "no extra loss term" in notes[0]
    assert f"{tr.cfg.train['steps']} steps" in notes[0] and "planted" not in notes[0].lower()


def test_example_sentences_are_known_to_their_models(lm, lstm, tr):
    examples = ["the keys to the old cabinet are on the table", "the black cat ate the mouse",
                "the bear ate the honey because it was hungry", "the cat sat on the mat", "he is reading a book"]
    for m in (lm, lstm, tr):
        for text in examples:
            assert m.tokenize(text).unknown == [], (m.name, text)


def test_lm_prefers_the_agreeing_verb_and_resolves_it(lm):
    p = lm.run("the keys to the old cabinet").next_logits.softmax(-1)
    v = lm.vocab
    assert p[v.index("are")] > 5 * p[v.index("is")]
    p = lm.run("the bears ate the honey because they were").next_logits.softmax(-1)
    assert p[v.index("hungry")] > p[v.index("delicious")]


def test_run_trace_shapes(lm, lstm, tr):
    r = lm.run("the bear ate the honey because it was hungry")
    assert r.tokens[0] == "[BOS]" and len(r.tokens) == 10
    assert len(r.trace.attention["self"]) == lm.arch.n_layers
    assert r.trace.attention["self"][0].weights.shape == (1, lm.arch.n_heads, 10, 10)
    assert r.next_logits.shape == (len(lm.vocab),)
    r = lstm.run("the bear ate")
    assert len(r.trace.lstm) == 2 and r.trace.lstm[0].cell.shape[:2] == (1, 4)
    r = tr.run("the black cat ate the mouse")
    assert r.target_tokens == ["[BOS]", "le", "chat", "noir", "a", "mangé", "la", "souris"]
    assert r.trace.attention["cross"][0].weights.shape == (1, tr.arch.n_heads, 8, 7)
    toks, probs = lm.logit_lens(lm.run("the bear ate the"))
    assert len(toks) == lm.arch.n_layers + 1 and probs.shape == (lm.arch.n_layers + 1, 5)
    final = lm.run("the bear ate the").next_logits.argmax().item()
    assert toks[-1][-1] == lm.vocab[final]                  # the last layer's lens is the model's prediction


@pytest.mark.parametrize("name", slow_except(["transformer-lm", "lstm-lm", "translator-en-fr"], {"lstm-lm"}))
def test_generation_cache_matches_no_cache_and_seed_repeats(name, lm, lstm, tr):
    m = {"transformer-lm": lm, "lstm-lm": lstm, "translator-en-fr": tr}[name]
    prompt = "the black cat ate the mouse" if name == "translator-en-fr" else "the bear"
    a = m.generate(prompt, 12, greedy=True, use_cache=True)
    b = m.generate(prompt, 12, greedy=True, use_cache=False)
    assert [s.token_id for s in a.steps] == [s.token_id for s in b.steps]
    for x, y in zip(a.steps, b.steps):
        assert x.choice.top_ids[:5] == y.choice.top_ids[:5]
        torch.testing.assert_close(torch.tensor(x.choice.top_probs), torch.tensor(y.choice.top_probs), atol=1e-4, rtol=1e-4)
    s1 = m.generate(prompt, 12, temperature=1.3, seed=5)
    s2 = m.generate(prompt, 12, temperature=1.3, seed=5)
    assert s1.new_tokens == s2.new_tokens
    assert all(0 < s.prob <= 1 for s in s1.steps)


def test_bad_input_raises_clear_errors(lm, tr):
    with pytest.raises(InputError, match="empty"):
        lm.run("   ")
    with pytest.raises(InputError, match="at most 64 tokens"):
        lm.run("the cat " * 40)
    r = lm.run("the zebra ate the honey")
    assert r.unknown == ["zebra"] and "[UNK]" in r.tokens
    with pytest.raises(ModelLoadError, match="transformer-lm"):
        model.load("")
    with pytest.raises(ModelLoadError):
        model.load("/no/such/folder")
    with pytest.raises(ModelLoadError, match="not available"):
        model.load("transformer-lm", "cuda" if not torch.cuda.is_available() else "mps")
    with pytest.raises(sampling.SamplingError, match="temperature"):
        lm.generate("the bear", 3, temperature=0)
    with pytest.raises(sampling.SamplingError, match="top_p"):
        lm.generate("the bear", 3, top_p=1.5)
    with pytest.raises(sampling.SamplingError, match="top_k"):
        lm.generate("the bear", 3, top_k=-1)


@pytest.mark.slow
def test_inspect_cli_list_and_json():
    def start(args, **kw):                          # the three runs side by side: each starts Python and torch
        return subprocess.Popen([sys.executable, "-m", "model.inspect", *args], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, **kw)

    def finish(p):
        stdout, stderr = p.communicate(timeout=300)
        return subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)

    runs = [start(["--list"]),
            start(["--model", "translator-en-fr", "--text", "the black cat ate the mouse", "--json"]),
            start(["--model", "no-such-model-here", "--text", "x"], env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})]
    listed, traced, unknown = [finish(p) for p in runs]
    out = listed
    assert out.returncode == 0 and out.stdout.split() == model.builtin_names()
    out = traced
    data = json.loads(out.stdout)
    assert set(data["attention"]) == {"encoder", "decoder", "cross"}
    assert len(data["attention"]["cross"][0]) == 4                  # heads
    assert len(data["attention"]["cross"][0][0]) == len(data["target_tokens"])
    assert data["tokens"][-1] == "[EOS]" and data["layernorm"] and data["next_token"]
    out = unknown
    assert out.returncode == 2 and "error:" in out.stderr and "Traceback" not in out.stderr
