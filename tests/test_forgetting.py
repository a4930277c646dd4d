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
