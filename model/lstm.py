"""An LSTM language model whose trace shows every gate at every time step.

Training and the plain forward pass use torch.nn.LSTM. With trace=True the same weights are
run step by step through the LSTM equations, so each gate can be returned:

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

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn as nn
from torch import Tensor

from .trace import LSTMLayerTrace, Trace


@dataclass
class LSTMConfig:
    vocab_size: int = 256
    d_embed: int = 128        # token embedding width
    d_hidden: int = 256       # units per layer
    n_layers: int = 2
    dropout: float = 0.1      # between layers, training only
    max_len: int = 64         # longest text the app feeds it (an LSTM itself has no hard limit)
    pad_id: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LSTMConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class LSTMOutput:
    logits: Tensor                               # (B, T, V)
    trace: Trace | None = None
    state: tuple[Tensor, Tensor] | None = None   # (h, c), each (n_layers, B, U): carry on to continue the text


def lstm_layer_steps(x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor,
                     h0: Tensor, c0: Tensor) -> LSTMLayerTrace:
    """Run one LSTM layer step by step. x: (B, T, E); h0, c0: (B, U). Returns every gate, (B, T, U)."""
    U = h0.size(-1)
    x_proj = x @ w_ih.T + b_ih                                     # (B, T, 4U): input part of all gates at once
    h, c = h0, c0
    rows: dict[str, list[Tensor]] = {k: [] for k in ("i", "f", "g", "o", "c", "h")}
    for t in range(x.size(1)):
        z = x_proj[:, t] + h @ w_hh.T + b_hh                       # (B, 4U)
        i = torch.sigmoid(z[:, 0:U])
        f = torch.sigmoid(z[:, U:2 * U])
        g = torch.tanh(z[:, 2 * U:3 * U])
        o = torch.sigmoid(z[:, 3 * U:4 * U])
        c = f * c + i * g
        h = o * torch.tanh(c)
        for k, v in zip("ifgoch", (i, f, g, o, c, h)):
            rows[k].append(v)
    s = {k: torch.stack(v, dim=1) for k, v in rows.items()}         # (B, T, U)
    return LSTMLayerTrace(input_gate=s["i"], forget_gate=s["f"], output_gate=s["o"], candidate=s["g"],
                          cell=s["c"], hidden=s["h"])


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
