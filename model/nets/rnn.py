"""A vanilla (Elman) RNN language model, the same interface as model/lstm.py's LSTMLM.

    h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)

Training and the plain forward pass use torch.nn.RNN (tanh). With trace=True every layer's
hidden state at every step is returned in `trace.hidden["rnn"]` (one (B, T, U) tensor per layer),
computed by the loop above from the same weights (`rnn_layer_steps`; a test checks it equals
torch.nn.RNN). Nothing is stored on the module.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch import Tensor

from .config import DictConfig
from ..trace import Trace


@dataclass
class RNNConfig(DictConfig):
    vocab_size: int = 256
    d_embed: int = 128        # token embedding width
    d_hidden: int = 256       # units per layer
    n_layers: int = 1
    dropout: float = 0.1      # between layers and before the head, training only
    max_len: int = 64
    pad_id: int = 0


@dataclass
class RNNOutput:
    logits: Tensor                   # (B, T, V)
    trace: Trace | None = None
    state: Tensor | None = None      # h, (n_layers, B, U): carry on to continue the text


def rnn_layer_steps(x: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor, b_hh: Tensor, h0: Tensor) -> Tensor:
    """One tanh RNN layer step by step: (B, T, U) hidden states. x: (B, T, E); h0: (B, U).

    Differentiable: every h_t is a node of the graph, so the gradient of a later loss with respect
    to each h_t can be asked for (model/forgetting.py)."""
    xs = x @ w_ih.T + b_ih                                            # (B, T, U): input part, all steps
    h, out = h0, []
    for t in range(x.size(1)):
        h = torch.tanh(xs[:, t] + h @ w_hh.T + b_hh)
        out.append(h)
    return torch.stack(out, dim=1)


class RNNLM(nn.Module):
    """Embedding -> stacked tanh RNN -> linear to the vocabulary."""

    def __init__(self, cfg: RNNConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_embed)
        self.rnn = nn.RNN(cfg.d_embed, cfg.d_hidden, num_layers=cfg.n_layers, nonlinearity="tanh", batch_first=True,
                          dropout=cfg.dropout if cfg.n_layers > 1 else 0.0)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.d_hidden, cfg.vocab_size)

    def layer_weights(self, k: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return tuple(getattr(self.rnn, f"{n}_l{k}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def forward(self, ids: Tensor, *, state: Tensor | None = None, use_cache: bool = False,
                trace: bool = False) -> RNNOutput:
        """ids: (B, T). state: h from an earlier call, to continue a sequence."""
        x = self.drop(self.embed(ids))                               # (B, T, E)
        if not trace:
            out, new_state = self.rnn(x, state)
            return RNNOutput(self.head(self.drop(out)), None, new_state if use_cache else None)
        B, L, U = ids.size(0), self.cfg.n_layers, self.cfg.d_hidden
        h0 = state if state is not None else x.new_zeros(L, B, U)
        inp, layers = x, []
        for k in range(L):
            inp = rnn_layer_steps(inp, *self.layer_weights(k), h0[k])
            layers.append(inp)
        tr = Trace(hidden={"rnn": [h.detach().float().cpu() for h in layers]})
        new_state = torch.stack([h[:, -1] for h in layers])
        return RNNOutput(self.head(inp), tr, new_state if use_cache else None)
