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
    layers: tuple[AttentionTrace, ...]
    query_tokens: tuple[str, ...] = ()    # row labels (the target for decoder and cross)
    key_tokens: tuple[str, ...] = ()      # column labels (the source for cross)

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

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
