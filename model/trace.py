"""Plain trace objects: what a forward pass computed inside, returned (never stored on a module).

Every tensor in a trace is detached and on the CPU. Shapes use B = batch, H = heads,
T = tokens (Tq queries, Tk keys), D = model width, U = LSTM units.

Stacks are named the same way everywhere:
  "self"     the single stack of a decoder-only (GPT-like) or encoder-only (BERT-like) model
  "encoder"  the encoder stack of an encoder-decoder model (self-attention over the source)
  "decoder"  its decoder stack (masked self-attention over the target)
  "cross"    the decoder's encoder-decoder attention (queries: target, keys/values: source)
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

ROLES = ("encoder", "decoder", "cross", "self")      # the order pages list stacks in
TITLES = {"encoder": "Encoder self-attention", "decoder": "Decoder masked self-attention",
          "cross": "Cross-attention (decoder → encoder)"}


@dataclass(frozen=True)
class AttentionTrace:
    """One attention layer, all heads."""

    weights: Tensor               # (B, H, Tq, Tk) after mask and softmax; rows sum to 1
    scores: Tensor | None = None  # (B, H, Tq, Tk) raw q.k / sqrt(d_k), before the mask (None if unavailable)
    allowed: Tensor | None = None  # (B, Tq, Tk) bool, True where a query may attend to a key


def default_query(tokens: list[str] | tuple[str, ...], prefer: str = "it") -> int:
    """The row a page opens on: the pronoun of the teaching example if present, else the last token."""
    return tokens.index(prefer) if prefer in tokens else len(tokens) - 1


GRID_PIXELS = 128    # a compact trace keeps each head max-pooled to at most this many cells a side: the all-heads
                     # grid's tiles (viz.attention.POOL_ABOVE draws long texts at this size)


def grid_pool(tq: int, tk: int) -> int:
    """The block size f of a compact trace's pooled grid: each f x f block of a head becomes one cell."""
    return max(1, -(-max(tq, tk) // GRID_PIXELS))


@dataclass(frozen=True)
class CompactAttentionTrace:
    """One attention layer of a long run, held compactly: every head max-pooled for the all-heads grid, a few query
    rows kept whole, and a `source` that recomputes the full weights of this layer (one head, or every head) exactly
    on demand from what the run kept (the block's input and its call: model/hf/compact.py). Nothing recomputed is
    kept here, so what a trace holds does not grow as pages ask for heads."""

    pooled: Tensor                # (B, H, ceil(Tq/pool), ceil(Tk/pool)) float16: each cell its block's largest weight
    pool: int                     # f: the block size (grid_pool)
    shape: tuple[int, int, int, int]   # (B, H, Tq, Tk) of the full weights
    allowed: Tensor | None        # (B, Tq, Tk) bool, True where a query may attend to a key
    source: Any                   # .weights(layer, head) / .rows(query) / .scores(layer, head): recomputed, exact
    layer: int
    rows: dict[int, Tensor] = field(default_factory=dict)   # query index -> (B, H, Tk) float32, kept at trace time
    scores: None = None           # raw scores are computed on demand (`model.scores(run, layer, head)`)

    @property
    def weights(self) -> Tensor:
        """(B, H, Tq, Tk) float32, every head recomputed (H x T x T floats: ask for one head where that is enough)."""
        return self.source.weights(self.layer)

    def head_weights(self, head: int) -> Tensor:
        """(B, Tq, Tk) float32 weights of one head, recomputed."""
        return self.source.weights(self.layer, head)[:, 0]

    def query_row(self, query: int) -> Tensor:
        """(B, H, Tk) float32: where one query looks in every head of this layer."""
        kept = self.rows.get(query)
        return kept if kept is not None else self.source.rows(query, [self.layer])[0]


def head_weights(a: AttentionTrace | CompactAttentionTrace, b: int, head: int) -> Tensor:
    """(Tq, Tk) weights of one head of batch row b, held or recomputed."""
    if isinstance(a, CompactAttentionTrace):
        return a.head_weights(head)[b]
    return a.weights[b, head]


@dataclass(frozen=True)
class CompactLayerNormTrace:
    """One norm of a long run: its statistics per token, held; its input and output vectors recomputed on demand
    (`source.norm(point)`: the block that contains it is run again from its kept input)."""

    name: str
    mean_in: Tensor               # (B, T) over features
    std_in: Tensor                # (B, T) population std
    mean_out: Tensor
    std_out: Tensor
    gamma: Tensor | None = None
    beta: Tensor | None = None
    stack: str = ""
    source: Any = None
    point: str = ""               # its hook-point name ("blocks.3.ln_2", "ln_f")

    @property
    def x_in(self) -> Tensor:     # (B, T, D) recomputed
        return self.source.norm(self.point)[0]

    @property
    def x_out(self) -> Tensor:
        return self.source.norm(self.point)[1]

    def features(self, b: int, t: int) -> tuple[Tensor, Tensor]:
        """Token t's (D,) input and output vectors (one recomputation)."""
        x_in, x_out = self.source.norm(self.point)
        return x_in[b, t], x_out[b, t]


@dataclass(frozen=True)
class LayerNormTrace:
    """One LayerNorm: its input and output vectors and parameters."""

    name: str                     # for people, e.g. "L2 attention LN" (block 2, the norm of its attention sub-layer)
    x_in: Tensor                  # (B, T, D)
    x_out: Tensor                 # (B, T, D)
    gamma: Tensor | None = None   # (D,)
    beta: Tensor | None = None    # (D,)
    stack: str = ""               # "self", "encoder" or "decoder": which stack it belongs to

    @property
    def mean_in(self) -> Tensor:   # (B, T), mean over features
        return self.x_in.mean(-1)

    @property
    def std_in(self) -> Tensor:    # (B, T), population std over features (as LayerNorm uses)
        return self.x_in.std(-1, unbiased=False)

    @property
    def mean_out(self) -> Tensor:
        return self.x_out.mean(-1)

    @property
    def std_out(self) -> Tensor:
        return self.x_out.std(-1, unbiased=False)


@dataclass(frozen=True)
class LSTMLayerTrace:
    """One LSTM layer over time; gates after their sigmoid, candidate after tanh."""

    input_gate: Tensor    # (B, T, U)
    forget_gate: Tensor   # (B, T, U)
    output_gate: Tensor   # (B, T, U)
    candidate: Tensor     # (B, T, U)  g_t = tanh(...)
    cell: Tensor          # (B, T, U)  c_t = f*c_{t-1} + i*g
    hidden: Tensor        # (B, T, U)  h_t = o*tanh(c_t)


@dataclass(frozen=True)
class AttentionStack(Sequence):
    """Every layer of one attention stack, with what a page needs to draw it without knowing the model.

    Indexing gives the layers: stack[2].weights is layer 3's (B, H, Tq, Tk) weights.
    """

    role: str                             # "self", "encoder", "decoder" (masked self-attention) or "cross"
    causal: bool                          # a query may not look at later keys
    layers: tuple[AttentionTrace, ...] | tuple[CompactAttentionTrace, ...]
    query_tokens: tuple[str, ...] = ()    # row labels (the target for decoder and cross)
    key_tokens: tuple[str, ...] = ()      # column labels (the source for cross)

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def compact(self) -> bool:
        """Whether the layers are CompactAttentionTrace (full weights recomputed on demand)."""
        return bool(self.layers) and isinstance(self.layers[0], CompactAttentionTrace)

    def query_rows(self, query: int, b: int = 0) -> Tensor:
        """(L, H, Tk): where one query looks, in every head of every layer (held, or recomputed layer by layer)."""
        if not self.compact:
            return torch.stack([a.weights[b, :, query] for a in self.layers])
        missing = [i for i, a in enumerate(self.layers) if query not in a.rows]
        got = dict(zip(missing, self.layers[0].source.rows(query, missing))) if missing else {}
        return torch.stack([(a.rows[query] if i not in got else got[i])[b] for i, a in enumerate(self.layers)])

    @property
    def title(self) -> str:
        """What the stack is, for people: "Encoder self-attention", "Masked self-attention", …"""
        return TITLES.get(self.role, "Masked self-attention" if self.causal else "Self-attention")


def describe_stacks(raw: dict[str, list[AttentionTrace]], tokens: list[str], target_tokens: list[str] | None,
                    self_causal: bool) -> dict[str, AttentionStack]:
    """Per-layer lists as recorded -> AttentionStacks that carry their role, causality and token labels."""
    tgt = tuple(target_tokens or ())
    src = tuple(tokens)
    labels = {"self": (src, src), "encoder": (src, src), "decoder": (tgt, tgt), "cross": (tgt, src)}
    causal = {"self": self_causal, "encoder": False, "decoder": True, "cross": False}
    return {role: AttentionStack(role, causal[role], tuple(raw[role]), *labels[role])
            for role in ROLES if role in raw}


@dataclass
class Trace:
    """Everything a page may show about one forward pass."""

    attention: dict[str, AttentionStack] = field(default_factory=dict)       # role -> its stack of layers
    layernorms: list[LayerNormTrace] = field(default_factory=list)           # in forward order
    hidden: dict[str, list[Tensor]] = field(default_factory=dict)            # stack -> [embeddings, after block 1, ...] each (B, T, D)
    lstm: list[LSTMLayerTrace] = field(default_factory=list)                 # per LSTM layer

    def residual_norms(self, stack: str) -> Tensor:
        """(L+1, B, T): L2 norm of the residual stream per token, after the embeddings and after each block."""
        import torch

        return torch.stack([h.norm(dim=-1) for h in self.hidden[stack]])
