"""The LSTM trace against torch.nn.LSTM with the same weights."""
import pytest
import torch

from model.nets.lstm import LSTMConfig, LSTMLM, lstm_layer_steps

pytestmark = pytest.mark.unit


def test_layer_steps_equal_torch_lstm():
    torch.manual_seed(1)
    ref = torch.nn.LSTM(6, 5, batch_first=True).double()
    x = torch.randn(3, 8, 6, dtype=torch.float64)
    h0, c0 = torch.randn(1, 3, 5, dtype=torch.float64), torch.randn(1, 3, 5, dtype=torch.float64)
    out, (hn, cn) = ref(x, (h0, c0))
    tr = lstm_layer_steps(x, ref.weight_ih_l0, ref.weight_hh_l0, ref.bias_ih_l0, ref.bias_hh_l0, h0[0], c0[0])
    torch.testing.assert_close(tr.hidden, out)
    torch.testing.assert_close(tr.cell[:, -1], cn[0])
    # the gates really are the gates: c_t = f c_{t-1} + i g and h_t = o tanh(c_t)
    c_prev = torch.cat([c0[0][:, None], tr.cell[:, :-1]], 1)
    torch.testing.assert_close(tr.cell, tr.forget_gate * c_prev + tr.input_gate * tr.candidate)
    torch.testing.assert_close(tr.hidden, tr.output_gate * torch.tanh(tr.cell))
    for g in (tr.input_gate, tr.forget_gate, tr.output_gate):
        assert ((g > 0) & (g < 1)).all()


def test_traced_model_equals_plain_model_and_state_continues():
    torch.manual_seed(2)
    m = LSTMLM(LSTMConfig(vocab_size=23, d_embed=8, d_hidden=12, n_layers=2, dropout=0.0)).eval()
    ids = torch.randint(0, 23, (2, 11))
    plain, traced = m(ids, use_cache=True), m(ids, trace=True, use_cache=True)
    torch.testing.assert_close(plain.logits, traced.logits, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(plain.state[0], traced.state[0], atol=1e-6, rtol=1e-5)
    assert len(traced.trace.lstm) == 2 and traced.trace.lstm[1].hidden.shape == (2, 11, 12)
    # continuing from a state equals running the whole sequence
    first = m(ids[:, :6], use_cache=True)
    rest = m(ids[:, 6:], state=first.state)
    torch.testing.assert_close(rest.logits, plain.logits[:, 6:], atol=1e-6, rtol=1e-5)
