"""Why RNNs forget: gradients through time, agreement by distance, time per token."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model.teaching.forgetting import (agreement_accuracy, agreement_by_distance, distance_items, gradient_profile,
                              hidden_gradients, time_per_token)
from model.nets.lstm import LSTMConfig, LSTMLM
from model.nets.rnn import RNNConfig, RNNLM
from model.nets.transformer import TransformerConfig, TransformerLM

pytestmark = pytest.mark.unit


def small_rnn(scale: float) -> RNNLM:
    torch.manual_seed(0)
    m = RNNLM(RNNConfig(vocab_size=30, d_embed=8, d_hidden=16, n_layers=1, dropout=0.0))
    with torch.no_grad():
        q, _ = torch.linalg.qr(torch.randn(16, 16))
        m.rnn.weight_hh_l0.copy_(scale * q)                       # all singular values = scale
    return m.eval()


def test_rnn_gradients_are_positive_and_shrink_with_distance():
    m = small_rnn(0.5)
    ids = torch.randint(4, 30, (4, 20))
    p = gradient_profile(m, ids)
    assert p.norm.shape == (19,) and (p.norm > 0).all()
    assert (np.diff(p.norm) < 0).all()                            # ||W_hh|| = 0.5 < 1: strictly shrinking
    assert p.norm[-1] < p.norm[0] * 0.5 ** 15                      # at least geometrically


def test_gradient_at_distance_zero_is_the_output_layer_gradient():
    m = small_rnn(0.9)
    ids = torch.randint(4, 30, (1, 9))
    g = hidden_gradients(m, ids)                                  # (1, 8)
    with torch.no_grad():
        h = m(ids[:, :-1], trace=True).trace.hidden["rnn"][0][0, -1]
        p = F.softmax(m.head(h), -1)
        p[ids[0, -1]] -= 1                                        # d CE / d logits
        expected = (m.head.weight.T @ p).norm()
    assert abs(g[0, -1] - float(expected)) < 1e-5


def test_lstm_and_transformer_profiles():
    torch.manual_seed(0)
    ids = torch.randint(4, 30, (2, 12))
    lstm = LSTMLM(LSTMConfig(vocab_size=30, d_embed=8, d_hidden=16, n_layers=2, dropout=0.0))
    tr = TransformerLM(TransformerConfig(vocab_size=30, d_model=16, h=2, d_ff=32, n_layers=2, max_len=16, dropout=0.0))
    for m in (lstm, tr):
        p = gradient_profile(m, ids)
        assert p.norm.shape == (11,) and np.isfinite(p.norm).all() and (p.norm > 0).all()
    # the unrolled LSTM is the real one: same output as torch.nn.LSTM
    from model.teaching.forgetting import _unroll_lstm
    with torch.no_grad():
        top, _ = _unroll_lstm(lstm.eval(), lstm.embed(ids), 0)
        torch.testing.assert_close(lstm.head(top), lstm(ids).logits, atol=1e-5, rtol=1e-5)


def test_distance_items_have_the_stated_distance():
    for d in (0, 3, 12):
        for it in distance_items(d, 20):
            assert len(it["prefix"].split()) == 2 + d
            assert {it["correct"], it["wrong"]} in ({"is", "are"}, {"was", "were"})


def test_agreement_by_distance_on_builtin_models():
    import model

    lm = model.load("transformer-lm", "cpu")
    res = agreement_by_distance({"t": lm.module}, lm.tok, distances=(3, 6), n=40)
    assert res["t"].shape == (2,) and res["t"][0] >= 0.9           # one phrase in between: the trained case
    items = distance_items(3, 10)
    flipped = [dict(it, correct=it["wrong"], wrong=it["correct"]) for it in items]
    assert abs(agreement_accuracy(lm.module, lm.tok, items) + agreement_accuracy(lm.module, lm.tok, flipped) - 1) < 1e-6


def test_time_per_token_shapes():
    res = time_per_token(lengths=(4, 8), batch=2, reps=1, preset="tiny")
    assert set(res) == {"Transformer", "LSTM", "RNN (tanh)"}
    assert all(v.shape == (2,) and (v > 0).all() for v in res.values())


def test_figures_build():
    from viz.experiments import accuracy_by_distance, gradient_profiles, loss_curves, time_per_token as tpt

    d = np.arange(5)
    fig = gradient_profiles({"RNN (tanh)": (d, np.array([1, .5, .2, .1, .01]))})
    assert fig.layout.yaxis.type == "log" and list(fig.data[0].y) == [1, .5, .2, .1, .01]
    fig = accuracy_by_distance(d, {"LSTM": np.linspace(1, .5, 5), "<b>x</b>": np.ones(5)})
    assert len(fig.data) == 2 and "&lt;b&gt;" in fig.data[1].name
    fig = loss_curves({"Transformer": {"steps": [1, 2], "train": [3, 2], "heldout_steps": [0, 2], "heldout": [3.5, 2.5]}})
    assert len(fig.data) == 2
    fig = tpt(np.array([16, 32]), {"LSTM": np.array([1e-5, 2e-5])})
    assert np.allclose(fig.data[0].y, [10, 20])


def test_the_builtin_lstm_gradient_vanishes_too_and_the_transformer_keeps_more():
    """What the Train page says under the gradient figure, on the shipped models: the LSTM's gradient shrinks
    geometrically per word back (factor clearly below 1), and the Transformer's factor is closer to 1."""
    import model
    from model.teaching.forgetting import decay_per_word, gradient_profiles
    from model.training.jobs import tokenizer

    mods = {n: model.load(n, "cpu").module for n in ("lstm-lm", "transformer-lm")}
    rates = decay_per_word(gradient_profiles(mods, tokenizer(), n=8, length=48))
    assert rates["lstm-lm"] < 0.9
    assert rates["lstm-lm"] < rates["transformer-lm"] < 1.0


def test_decay_per_word_recovers_a_geometric_rate():
    from model.teaching.forgetting import decay_per_word

    d = np.arange(30)
    rates = decay_per_word({"a": (d, 3.0 * 0.7 ** d), "b": (d, 0.5 * 0.95 ** d)})
    assert abs(rates["a"] - 0.7) < 1e-9 and abs(rates["b"] - 0.95) < 1e-9


# ----------------------------------------------------------------------------- over training seeds
def _synthetic_seeds():
    d = np.arange(30)
    rnn = [list(2.0 * 0.5 ** d), list(1.0 * 0.6 ** d)]                       # falls fast from the start
    lstm = [list(3.0 * np.where(d < 4, 0.3 ** d, 0.3 ** 4 * 0.9 ** (d - 4))),   # fast first, then slowly
            list(1.0 * np.where(d < 2, 0.2 ** d, 0.2 ** 2 * 0.95 ** (d - 2)))]
    return {"seeds": [0, 1], "distance": list(d), "norm": {"rnn": rnn, "lstm": lstm}}


def test_seed_bands_on_known_profiles():
    from model.teaching.forgetting import seed_bands

    b = seed_bands(_synthetic_seeds())
    np.testing.assert_allclose(b.rel["rnn"][0], 0.5 ** np.arange(30))          # divided by the value 0 words back
    np.testing.assert_allclose(b.slope["rnn"], np.log([0.5, 0.6]))
    assert b.slope_range("rnn") == pytest.approx((np.log(0.5), np.log([0.5, 0.6]).mean(), np.log(0.6)))
    lo, mid, hi = b.band("lstm")
    assert (lo <= mid).all() and (mid <= hi).all() and lo[0] == hi[0] == 1
    # the separation: the first distance from which the RNN stays below, found here by brute force
    for s in range(2):
        below = b.rel["rnn"][s] < b.rel["lstm"][s]
        first = next(i for i in range(30) if below[i:].all())
        assert b.separation[s] == first and not below[first - 1]
    assert b.separation_range() == (min(b.separation), np.median(b.separation), max(b.separation))
    assert b.below("rnn", "lstm", int(max(b.separation))) == 2
    assert b.below("lstm", "rnn", 1, 2) == 2 and b.below("rnn", "lstm", 1, 2) == 0
    assert b.left_at("rnn", 3) == pytest.approx(np.median([0.5 ** 3, 0.6 ** 3]))
    assert b.fall_range("rnn") == pytest.approx((-np.log(0.6), -np.log([0.5, 0.6]).mean(), -np.log(0.5)))
    assert b.separated and b.mostly_below("lstm", "rnn", 1, 1) and not b.mostly_below("rnn", "lstm", 1, 1)


def test_a_seed_whose_rnn_never_ends_below_has_no_separation():
    from model.teaching.forgetting import seed_bands

    data = _synthetic_seeds()
    data["norm"]["rnn"][1] = list(np.ones(30))                               # never vanishes
    b = seed_bands(data)
    assert np.isnan(b.separation[1]) and b.separation_range() == (b.separation[0],) * 3 and b.separated
    data["norm"]["rnn"][0] = list(np.ones(30))
    assert not seed_bands(data).separated


def test_the_stored_seeds_are_of_this_corpus_and_at_least_five():
    from model.teaching.forgetting import corpus_fingerprint, load_seed_profiles

    data = load_seed_profiles()
    assert len(data["seeds"]) >= 5
    assert data["fingerprint"] == corpus_fingerprint(), \
        "the corpus or tokenizer changed: remake the seeds with python -m model.teaching.forgetting"
    assert set(data["norm"]) == {"rnn", "lstm"} and all(len(v) == len(data["seeds"]) for v in data["norm"].values())


@pytest.mark.slow
def test_retraining_a_stored_seed_gives_a_profile_inside_the_stored_seeds_band():
    """The stored file is what the app's code computes: seed 1 is trained again (seconds) and measured again, and
    every distance of its profile lies within the stored seeds' band (lowest to highest, log scale, 0.1 of margin).
    Not bit for bit: training amplifies the CPU's rounding. On the machine that wrote the file seed 1 came back
    within 1e-3; on an AMD EPYC (2026-12-02) the RNN came back within 3e-5 and the LSTM moved by up to 2.3 (log),
    one distance of 47 outside the band by 0.05, against a band 3.7 wide (median)."""
    from model.teaching.forgetting import load_seed_profiles, seed_profiles

    data = load_seed_profiles()
    again = seed_profiles((1,), preset=data["preset"], n=data["texts"], length=data["length"],
                          text_seed=data["text_seed"])
    for kind in ("rnn", "lstm"):
        stored, fresh = np.log(np.array(data["norm"][kind])), np.log(again["norm"][kind][0])
        lo, hi = stored.min(0) - 0.1, stored.max(0) + 0.1
        out = np.flatnonzero((fresh < lo) | (fresh > hi))
        assert out.size == 0, f"{kind}: distances {out.tolist()} outside the stored seeds' band: {fresh[out]} not in " \
                              f"[{lo[out]}, {hi[out]}]"


def test_seed_band_figure_draws_the_bands_and_the_separation():
    from viz.experiments import gradient_seed_bands

    d = np.arange(5)
    lo, mid, hi = np.array([1, .1, .01, .001, 1e-4]), np.array([1, .2, .04, .008, .0016]), np.ones(5)
    fig = gradient_seed_bands(d, {"RNN (tanh)": (lo, mid, hi)}, separation=(2, 3, 4))
    band, median, column, line = fig.data
    assert band.fill == "toself" and list(band.y) == list(hi) + list(lo[::-1]) and list(band.x) == [0, 1, 2, 3, 4, 4, 3, 2, 1, 0]
    assert list(median.y) == list(mid)
    assert min(column.x) == 2 and max(column.x) == 4 and list(line.x) == [3, 3]
    assert fig.layout.yaxis.type == "log"
    assert len(gradient_seed_bands(d, {"LSTM": (lo, mid, hi)}, separation=(np.nan,) * 3).data) == 2
    with pytest.raises(ValueError, match="one value per distance"):
        gradient_seed_bands(d, {"LSTM": (lo[:3], mid, hi)})


@pytest.mark.apptest
def test_every_number_in_the_seed_sentences_is_the_computation():
    """The Train page's sentences under the seed figure, read back from the page, against seed_bands of the stored
    profiles (recomputed here), and the figure's lines against the bands."""
    import re

    from streamlit.testing.v1 import AppTest

    from conftest import ROOT, charts
    from model.teaching.forgetting import load_seed_profiles, seed_bands

    b = seed_bands(load_seed_profiles())
    at = AppTest.from_file(str(ROOT / "lab.py"), default_timeout=180)
    at.run()
    at.switch_page("app_pages/train.py")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    md = [m.value for m in at.markdown]
    vanish = next(t for t in md if t.startswith("**The LSTM's gradient vanishes too.**"))
    head, tail = vanish.split(": the LSTM's gradient falls more slowly")
    nums = [float(x) for x in re.findall(r"\d+\.\d+|\d+", head)]
    r, l = b.slope_range("rnn"), b.slope_range("lstm")          # slopes of ln norm: the page says how it falls
    n = len(b.seeds)
    expect = [-l[1], n, -l[2], -l[0], -r[1], -r[2], -r[0]]
    assert nums == pytest.approx(expect, abs=0.005), (vanish, expect)
    left = re.findall(r"\d+(?:\.\d+)?e[-+]\d+|\d+", tail)
    assert left == ["20", f"{b.left_at('lstm', 20):.0e}", f"{b.left_at('rnn', 20):.0e}"], tail
    assert b.left_at("rnn", 20) < b.left_at("lstm", 20) < 0.01
    assert l[1] < 0 and l[1] > r[1]                        # it vanishes, more slowly than the RNN's
    sep = next(t for t in md if t.startswith("**Where they separate:**"))
    nums = [float(x) for x in re.findall(r"\d+(?:\.\d+)?", sep)]
    s_lo, s_mid, s_hi = b.separation_range()
    assert nums == [s_mid, s_lo, s_hi, 20, b.below("rnn", "lstm", 20), n, 1, 5, b.below("lstm", "rnn", 1, 5), n,
                    b.below("rnn", "lstm", 1, 5)], sep
    assert ("the other way round" in sep) == (2 * b.below("lstm", "rnn", 1, 5) > n) == b.mostly_below("lstm", "rnn", 1, 5)
    fig = next(ch for ch in charts(at) if "training seeds" in ch["layout"]["title"]["text"])
    medians = {t["name"]: np.asarray(t["y"], float) for t in fig["data"] if t["name"].endswith(": median")}
    np.testing.assert_allclose(medians["RNN (tanh): median"], b.band("rnn")[1])
    np.testing.assert_allclose(medians["LSTM: median"], b.band("lstm")[1])
