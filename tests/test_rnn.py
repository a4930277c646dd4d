"""The vanilla RNN: its step-by-step trace equals torch.nn.RNN, and the state carries on."""
import pytest
import torch

from model.nets.rnn import RNNConfig, RNNLM, rnn_layer_steps

pytestmark = pytest.mark.unit


def test_layer_steps_equal_torch_rnn():
    torch.manual_seed(1)
    ref = torch.nn.RNN(6, 5, batch_first=True, nonlinearity="tanh").double()
    x = torch.randn(3, 8, 6, dtype=torch.float64)
    h0 = torch.randn(1, 3, 5, dtype=torch.float64)
    out, hn = ref(x, h0)
    h = rnn_layer_steps(x, ref.weight_ih_l0, ref.weight_hh_l0, ref.bias_ih_l0, ref.bias_hh_l0, h0[0])
    torch.testing.assert_close(h, out)
    torch.testing.assert_close(h[:, -1], hn[0])
    assert (h.abs() < 1).all()                                   # tanh units


def test_traced_model_equals_plain_model_and_state_continues():
    torch.manual_seed(2)
    m = RNNLM(RNNConfig(vocab_size=23, d_embed=8, d_hidden=12, n_layers=2, dropout=0.0)).eval()
    ids = torch.randint(0, 23, (2, 11))
    plain, traced = m(ids, use_cache=True), m(ids, trace=True, use_cache=True)
    torch.testing.assert_close(plain.logits, traced.logits, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(plain.state, traced.state, atol=1e-6, rtol=1e-5)
    assert len(traced.trace.hidden["rnn"]) == 2 and traced.trace.hidden["rnn"][1].shape == (2, 11, 12)
    first = m(ids[:, :6], use_cache=True)
    rest = m(ids[:, 6:], state=first.state)
    torch.testing.assert_close(rest.logits, plain.logits[:, 6:], atol=1e-6, rtol=1e-5)
