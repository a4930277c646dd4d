"""An LSTM language model whose trace shows every gate at every time step.

Training and the plain forward pass use torch.nn.LSTM. With trace=True the same weights give
every gate at every step (see lstm_layer_steps), from the LSTM equations:

    i_t = sigmoid(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)     input gate
    f_t = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf)     forget gate
    g_t = tanh   (W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)     candidate
    o_t = sigmoid(W_io x_t + b_io + W_ho h_{t-1} + b_ho)     output gate
    c_t = f_t * c_{t-1} + i_t * g_t                           cell state
    h_t = o_t * tanh(c_t)                                      hidden state

(torch.nn.LSTM stores the four blocks of W_ih / W_hh in the order i, f, g, o.) A test checks the
traced outputs equal torch.nn.LSTM's.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn as nn
from torch import Tensor

from .config import DictConfig
from ..trace import LSTMLayerTrace, Trace


@dataclass
class LSTMConfig(DictConfig):
    vocab_size: int = 256
    d_embed: int = 128        # token embedding width
    d_hidden: int = 256       # units per layer
    n_layers: int = 2
    dropout: float = 0.1      # between layers, training only
    max_len: int = 64         # longest text the app feeds it (an LSTM itself has no hard limit)
    pad_id: int = 0


@dataclass
class LSTMOutput:
    logits: Tensor                               # (B, T, V)
    trace: Trace | None = None
    state: tuple[Tensor, Tensor] | None = None   # (h, c), each (n_layers, B, U): carry on to continue the text


def lstm_layer_steps(x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor,
                     h0: Tensor, c0: Tensor) -> LSTMLayerTrace:
    """One LSTM layer with every gate, (B, T, U). x: (B, T, E); h0, c0: (B, U).

    Fast and exact: torch's fused LSTM gives h_t for all t; with h_{t-1} known, every gate at every
    step is one batched matrix product, and only the cheap elementwise cell update
    c_t = f_t * c_{t-1} + i_t * g_t is left as a loop over time. h_t is then o_t * tanh(c_t) from
    these gates; a test checks every value against torch.nn.LSTM.
    """
    U = h0.size(-1)
    B, T = x.shape[:2]
    h_fused = torch.lstm(x, (h0[None].contiguous(), c0[None].contiguous()), [w_ih, w_hh, b_ih, b_hh],
                            True, 1, 0.0, False, False, True)[0]
    h_prev = torch.cat([h0[:, None], h_fused[:, :-1]], dim=1)          # (B, T, U)
    z = x @ w_ih.T + b_ih + h_prev @ w_hh.T + b_hh                     # (B, T, 4U): all gates, all steps
    i = torch.sigmoid(z[..., 0:U])
    f = torch.sigmoid(z[..., U:2 * U])
    g = torch.tanh(z[..., 2 * U:3 * U])
    o = torch.sigmoid(z[..., 3 * U:4 * U])
    ig = i * g
    prev, cells = c0, []
    for t in range(T):                                                 # c_t = f_t * c_{t-1} + i_t * g_t
        prev = torch.addcmul(ig[:, t], f[:, t], prev)
        cells.append(prev)
    c = torch.stack(cells, dim=1)
    h = o * torch.tanh(c)
    return LSTMLayerTrace(input_gate=i, forget_gate=f, output_gate=o, candidate=g, cell=c, hidden=h)


class LSTMLM(nn.Module):
    """Embedding -> stacked LSTM -> linear to the vocabulary."""

    def __init__(self, cfg: LSTMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_embed)
        self.lstm = nn.LSTM(cfg.d_embed, cfg.d_hidden, num_layers=cfg.n_layers, batch_first=True,
                            dropout=cfg.dropout if cfg.n_layers > 1 else 0.0)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.d_hidden, cfg.vocab_size)

    def forward(self, ids: Tensor, *, state: tuple[Tensor, Tensor] | None = None, use_cache: bool = False,
                trace: bool = False) -> LSTMOutput:
        """ids: (B, T). state: (h, c) from an earlier call, to continue a sequence."""
        x = self.drop(self.embed(ids))                              # (B, T, E)
        if not trace:
            out, new_state = self.lstm(x, state)
            return LSTMOutput(self.head(self.drop(out)), None, new_state if use_cache else None)
        B, L, U = ids.size(0), self.cfg.n_layers, self.cfg.d_hidden
        h0 = state[0] if state is not None else x.new_zeros(L, B, U)
        c0 = state[1] if state is not None else x.new_zeros(L, B, U)
        layers, hs, cs = [], [], []
        inp = x
        for k in range(L):
            lt = lstm_layer_steps(inp, getattr(self.lstm, f"weight_ih_l{k}"), getattr(self.lstm, f"weight_hh_l{k}"),
                                  getattr(self.lstm, f"bias_ih_l{k}"), getattr(self.lstm, f"bias_hh_l{k}"),
                                  h0[k], c0[k])
            layers.append(lt)
            hs.append(lt.hidden[:, -1])
            cs.append(lt.cell[:, -1])
            inp = lt.hidden                                         # (dropout between layers is off in eval)
        tr = Trace(lstm=[LSTMLayerTrace(**{f.name: getattr(lt, f.name).detach().float().cpu()
                                            for f in fields(LSTMLayerTrace)}) for lt in layers])
        new_state = (torch.stack(hs), torch.stack(cs))
        return LSTMOutput(self.head(inp), tr, new_state if use_cache else None)
