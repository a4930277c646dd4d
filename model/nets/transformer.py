"""The Transformer of "Attention Is All You Need", written out so every step can be shown.

Names follow the paper: d_model, h heads of d_k = d_model / h, d_ff, N layers.
Two assemblies share the same blocks:
  TransformerLM       decoder-only language model (masked self-attention + feed-forward)
  Seq2SeqTransformer  encoder-decoder translator (encoder self-attention; decoder masked
                      self-attention and encoder-decoder cross-attention)

Every interesting activation passes through a named hook point (model/hooks.py: `blocks.1.attn.weights`,
`blocks.0.ln_attn.out`, `encoder.blocks.2.attn.head_out` ...). A call may record or replace what passes:

    model(ids, trace=True)                      -> a `Trace` (model/trace.py) built from the recorded points
    model(ids, interventions=Interventions(ablate_heads={("self", 2, 0)}, no_positions=True))
    model(ids, hooks=HookRun(record={"blocks.1.attn.head_out"}))     # activation patching reads and writes here

Nothing is stored on the module: the run belongs to the calling thread, so one model object serves every
user of the server at once. Where no run asks for the attention weights, attention goes through torch's
fused scaled_dot_product_attention, as fast as a plain implementation; with no run at all the computation
is exactly the plain forward pass.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .config import DictConfig
from ..hooks import HookPoint, HookRun, active, current, merged
from ..trace import AttentionTrace, LayerNormTrace, Trace


@dataclass
class TransformerConfig(DictConfig):
    arch: str = "decoder"             # "decoder" (GPT-like LM) or "encoder-decoder" (translator)
    vocab_size: int = 256             # LM vocabulary, or the decoder's (target) vocabulary
    src_vocab_size: int = 0           # encoder (source) vocabulary; encoder-decoder only
    d_model: int = 128                # width of the residual stream
    h: int = 4                        # attention heads; d_k = d_model // h
    d_ff: int = 512                   # inner width of the feed-forward network (4 x d_model)
    n_layers: int = 3                 # decoder blocks (the LM's blocks)
    n_encoder_layers: int = 0         # encoder blocks; encoder-decoder only
    max_len: int = 64                 # longest sequence the positional encoding covers
    dropout: float = 0.1              # used only while training
    pos_encoding: str = "sinusoidal"  # "sinusoidal" (paper), "learned" or "none"
    norm: str = "post"                # "post": LN(x + sublayer(x)) as in the paper; "pre": x + sublayer(LN(x))
    activation: str = "relu"          # feed-forward non-linearity: "relu" (paper) or "gelu"
    tie_embeddings: bool = True       # output projection shares the (target) embedding matrix
    pad_id: int = 0
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.arch not in ("decoder", "encoder-decoder"):
            raise ValueError(f"arch must be 'decoder' or 'encoder-decoder', got {self.arch!r}")
        if self.d_model % self.h:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by the number of heads h ({self.h})")
        if self.pos_encoding not in ("sinusoidal", "learned", "none"):
            raise ValueError(f"pos_encoding must be sinusoidal, learned or none, got {self.pos_encoding!r}")
        if self.norm not in ("post", "pre"):
            raise ValueError(f"norm must be 'post' or 'pre', got {self.norm!r}")
        if self.activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be 'relu' or 'gelu', got {self.activation!r}")

    @property
    def d_k(self) -> int:
        return self.d_model // self.h


# ----------------------------------------------------------------------------- pure functions

def sinusoidal_encoding(max_len: int, d_model: int) -> Tensor:
    """PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(pos / 10000^(2i/d_model))."""
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]               # (P, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)                # (ceil(D/2),)
    angle = pos / torch.pow(10000.0, two_i / d_model)                        # (P, ceil(D/2))
    pe = torch.zeros(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : d_model // 2])
    return pe.float()


def subsequent_mask(size: int, offset: int = 0) -> Tensor:
    """Mask out subsequent positions: (size, offset + size) bool, True where query i may see key j."""
    q = torch.arange(size)[:, None] + offset
    k = torch.arange(offset + size)[None, :]
    return k <= q


def attention_scores(q: Tensor, k: Tensor, scale: float | None = None) -> Tensor:
    """q.k / sqrt(d_k): (B, h, Tq, Tk). scale: None = the paper's 1/sqrt(d_k); a number multiplies q.k instead."""
    if scale is None:
        return q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    return (q @ k.transpose(-2, -1)) * scale


def masked_softmax(scores: Tensor, allowed: Tensor | None) -> Tensor:
    """Scores set to -inf where not allowed, then softmax over the keys: every row sums to 1."""
    masked = scores if allowed is None else scores.masked_fill(~allowed, float("-inf"))
    return masked.softmax(dim=-1)


def attention(q: Tensor, k: Tensor, v: Tensor, allowed: Tensor | None = None,
              scale: float | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Scaled dot-product attention, spelled out. Returns (output, scores before the mask, weights).

    q: (B, h, Tq, d_k); k, v: (B, h, Tk, d_k); allowed: bool broadcastable to (B, h, Tq, Tk).
    """
    scores = attention_scores(q, k, scale)
    weights = masked_softmax(scores, allowed)
    return weights @ v, scores, weights                                      # (B, h, Tq, d_k)


@dataclass(frozen=True)
class Mask:
    """Where each query may look. allowed: (B|1, Tq|1, Tk) bool, True where attending is allowed; None = every
    key (or, with causal, the fused kernel's own causal rule)."""

    allowed: Tensor | None = None
    causal: bool = False

    def full(self, B: int, Tq: int, Tk: int, device) -> Tensor:
        """(B, Tq, Tk) bool, spelled out."""
        if self.allowed is not None:
            return self.allowed.expand(B, Tq, Tk)
        if self.causal:
            return subsequent_mask(Tq, Tk - Tq).to(device)[None].expand(B, Tq, Tk)
        return torch.ones(B, Tq, Tk, dtype=torch.bool, device=device)


# ----------------------------------------------------------------------------- interventions

SUBLAYERS = ("attn", "cross", "ffn")


def _frozen(items) -> frozenset:
    return frozenset(tuple(i) for i in (items or ()))


def stack_prefix(stack: str) -> str:
    """Hook-point prefix of a stack: "" for a single stack ("self"), "encoder." or "decoder." (cross: the decoder's)."""
    return {"self": "", "encoder": "encoder.", "decoder": "decoder.", "cross": "decoder."}[stack]


def ablate_heads_edit(heads: tuple[int, ...], mode: str, q_valid: Tensor | None, reference: Tensor | None = None):
    """An edit of a `head_out` point (B, h, Tq, d_k): the listed heads set to 0, to their mean over the valid query
    positions of this call (mode "mean"), or to their mean output over a reference set of texts (mode "reference":
    `reference` is that (h, d_k) mean)."""
    idx = list(heads)

    def edit(out: Tensor) -> Tensor:
        out = out.clone()
        if mode == "zero":
            out[:, idx] = 0.0
            return out
        if mode == "reference":
            out[:, idx] = reference[idx][None, :, None, :].to(out.dtype).expand_as(out[:, idx])
            return out
        sel = out[:, idx]                                                    # (B, n, Tq, d_k)
        if q_valid is None:
            mean = sel.mean(dim=-2, keepdim=True)
        else:
            w = q_valid[:, None, :, None].to(sel.dtype)                      # (B, 1, Tq, 1)
            mean = (sel * w).sum(dim=-2, keepdim=True) / w.sum(dim=-2, keepdim=True).clamp(min=1.0)
        out[:, idx] = mean.expand_as(sel)
        return out
    return edit


def _zero(x: Tensor) -> Tensor:
    return torch.zeros_like(x)


def _skip_norm(name: str, edits: dict) -> None:
    """Edits that make the norm at `name` an identity: its output is replaced by what entered it."""
    seen: dict[str, Tensor] = {}

    def keep(x: Tensor) -> Tensor:
        seen["x"] = x
        return x
    edits[f"{name}.in"] = keep
    edits[f"{name}.out"] = lambda y: seen.pop("x")


@dataclass(frozen=True)
class Interventions:
    """What to break in one forward pass. Passed as an argument; never stored on the module.

    Layers and heads count from 0. Stacks are named as in traces: "self" (decoder-only LM),
    "encoder", "decoder" and "cross" (the decoder's cross-attention) for the translator.
    Each one is an edit at a hook point (`run`), except the causal mask, which is how the mask is built.
    """

    ablate_heads: frozenset = frozenset()     # {(stack, layer, head)}: that head's output removed
    head_mode: str = "zero"                   # "zero": head output set to 0; "mean": to its mean over the
                                              # (non-padding) query positions of this call; "reference": to its
                                              # mean output over a reference set of texts (`reference`)
    no_positions: bool = False                # add no positional encoding (every stack)
    no_causal_mask: bool = False              # decoder self-attention may look at later tokens
    skip_layernorm: frozenset = frozenset()   # {(stack, layer, sublayer)}: sublayer "attn" | "cross" | "ffn";
                                              # (stack, -1, "final") for a pre-LN model's final LayerNorm
    skip_residual: frozenset = frozenset()    # {(stack, layer, sublayer)}: output = sublayer only, no "x +"
    no_scale: bool = False                    # scores q.k without the 1/sqrt(d_k) factor
    reference: dict | None = field(default=None, compare=False, repr=False)  # head_out point -> (h, d_k) mean
    reference_label: str = ""                 # what the reference set was, in words (part of the identity)

    def __post_init__(self) -> None:
        for name in ("ablate_heads", "skip_layernorm", "skip_residual"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        if self.head_mode not in ("zero", "mean", "reference"):
            raise ValueError(f"head_mode must be 'zero', 'mean' or 'reference', got {self.head_mode!r}")

    @property
    def active(self) -> bool:
        return bool(self.ablate_heads or self.no_positions or self.no_causal_mask or self.skip_layernorm
                    or self.skip_residual or self.no_scale)

    def heads(self, stack: str, layer: int) -> tuple[int, ...]:
        return tuple(sorted(h for s, l, h in self.ablate_heads if s == stack and l == layer))

    def skipped_norms(self) -> set[str]:
        """Hook names of the norms this switches off (a trace leaves them out)."""
        return {f"{stack_prefix(s)}ln_final" if l < 0 else f"{stack_prefix(s)}blocks.{l}.ln_{sub}"
                for s, l, sub in self.skip_layernorm}

    def run(self, q_valid: dict[str, Tensor | None], pos_edit: Callable = None) -> HookRun:
        """The edits of this intervention on the stacks named in q_valid (stack -> (B, Tq) bool of real query
        positions, for mean ablation). The no-1/sqrt(d_k) option is the run's scale. pos_edit: how the `pos`
        point loses its positions (default: nothing added)."""
        edits: dict = {}
        for s, l, _ in sorted(self.ablate_heads):
            if s in q_valid:
                sub = "cross" if s == "cross" else "attn"
                name = f"{stack_prefix(s)}blocks.{l}.{sub}.head_out"
                if self.head_mode == "reference" and (self.reference is None or name not in self.reference):
                    raise ValueError(f"head_mode 'reference' needs the reference mean of {name}")
                edits[name] = ablate_heads_edit(self.heads(s, l), self.head_mode, q_valid[s],
                                                (self.reference or {}).get(name))
        for s in q_valid:
            if self.no_positions and s != "cross":
                edits[f"{stack_prefix(s)}pos"] = pos_edit or _zero
        for name in self.skipped_norms():
            if any(name.startswith(stack_prefix(s)) for s in q_valid if s != "cross"):
                _skip_norm(name, edits)
        for s, l, sub in self.skip_residual:
            if s in q_valid:
                edits[f"{stack_prefix(s)}blocks.{l}.{sub}.skip"] = _zero
        return HookRun(edits, scale=1.0 if self.no_scale else None)


def _active(iv: "Interventions | None") -> "Interventions | None":
    return iv if iv is not None and iv.active else None


# ----------------------------------------------------------------------------- modules

class MultiHeadAttention(nn.Module):
    """h heads of scaled dot-product attention over learned projections, then W_o.

    Hook points: {name}.scores, .weights (only computed where a run asks), .head_out, .out.
    """

    def __init__(self, d_model: int, h: int, dropout: float, name: str = "attn", cross: bool = False) -> None:
        super().__init__()
        self.h, self.d_k, self.cross, self.name = h, d_model // h, cross, name
        self.w_q = nn.Linear(d_model, d_model)
        self.w_k = nn.Linear(d_model, d_model)
        self.w_v = nn.Linear(d_model, d_model)
        self.w_o = nn.Linear(d_model, d_model)
        self.dropout = dropout
        self.hook_scores, self.hook_weights = HookPoint(f"{name}.scores"), HookPoint(f"{name}.weights")
        self.hook_head_out, self.hook_out = HookPoint(f"{name}.head_out"), HookPoint(f"{name}.out")

    def _heads(self, x: Tensor) -> Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.h, self.d_k).transpose(1, 2)                # (B, h, T, d_k)

    def forward(self, x_q: Tensor, x_kv: Tensor | None, mask: Mask | None = None,
                cache: "LayerCache | None" = None) -> Tensor:
        """mask: where each query may look (None: every key). cache: keys/values of earlier steps (self-attention while generating) or of the encoder output
        (cross-attention), read from cache.past and written to cache.new."""
        B, Tq, D = x_q.shape
        mask = mask or Mask()
        slot = "cross" if self.cross else "self"
        past = cache.past.get(slot) if cache is not None else None
        q = self._heads(self.w_q(x_q))                                       # (B, h, Tq, d_k)
        if self.cross and past is not None:
            k, v = past                                                      # the encoder's, computed once
        else:
            k, v = self._heads(self.w_k(x_kv)), self._heads(self.w_v(x_kv))  # (B, h, Tk, d_k)
            if past is not None:
                k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        if cache is not None:
            cache.new[slot] = (k, v)
        run = current()
        if run is not None and (run.wants(self.hook_weights.name) or run.wants(self.hook_scores.name)):
            allowed = mask.full(B, Tq, k.size(2), q.device)                  # (B, Tq, Tk)
            run.note(f"{self.name}.allowed", allowed)                        # recorded beside the weights, not editable
            scores = self.hook_scores(attention_scores(q, k, run.scale))     # (B, h, Tq, Tk), before the mask
            weights = self.hook_weights(masked_softmax(scores, allowed[:, None]))
            out = weights @ v
        else:
            am = None if mask.allowed is None else mask.allowed[:, None]     # (B, 1, Tq|1, Tk)
            scale = None if run is None else run.scale
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=am, is_causal=mask.causal and am is None,
                                                 dropout_p=self.dropout if self.training else 0.0,
                                                 **({} if scale is None else {"scale": scale}))
        out = self.hook_head_out(out)                                        # (B, h, Tq, d_k)
        return self.hook_out(self.w_o(out.transpose(1, 2).reshape(B, Tq, D)))  # heads concatenated, then W_o


class FeedForward(nn.Module):
    """FFN(x) = W_2 act(W_1 x + b_1) + b_2, applied to each position separately."""

    def __init__(self, d_model: int, d_ff: int, activation: str, dropout: float, name: str = "ffn") -> None:
        super().__init__()
        self.w_1 = nn.Linear(d_model, d_ff)
        self.w_2 = nn.Linear(d_ff, d_model)
        self.act = nn.ReLU() if activation == "relu" else nn.GELU()
        self.drop = nn.Dropout(dropout)
        self.hook_out = HookPoint(f"{name}.out")

    def forward(self, x: Tensor) -> Tensor:
        return self.hook_out(self.w_2(self.drop(self.act(self.w_1(x)))))


class Norm(nn.Module):
    """Hook points around a LayerNorm: {name}.in and {name}.out (the norm's own weights stay on the block)."""

    def __init__(self, name: str, label: str) -> None:
        super().__init__()
        self.name, self.label = name, label
        self.hook_in, self.hook_out = HookPoint(f"{name}.in"), HookPoint(f"{name}.out")

    def forward(self, ln: nn.LayerNorm, x: Tensor) -> Tensor:
        return self.hook_out(ln(self.hook_in(x)))


@dataclass
class LayerCache:
    """Keys and values of one block's attention layers: those of earlier steps (past), this call's (new)."""

    past: dict = field(default_factory=dict)
    new: dict = field(default_factory=dict)


class Block(nn.Module):
    """One layer: self-attention, optional cross-attention, feed-forward; each wrapped in residual + LayerNorm.

    Post-LN (the paper): x = LN(x + Sublayer(x)). Pre-LN: x = x + Sublayer(LN(x)).
    """

    def __init__(self, cfg: TransformerConfig, prefix: str, label: str, cross: bool = False) -> None:
        super().__init__()
        self.pre = cfg.norm == "pre"
        self.self_attn = MultiHeadAttention(cfg.d_model, cfg.h, cfg.dropout, f"{prefix}attn")
        self.ln_attn = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.cross_attn = MultiHeadAttention(cfg.d_model, cfg.h, cfg.dropout, f"{prefix}cross", cross=True) if cross else None
        self.ln_cross = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps) if cross else None
        self.ffn = FeedForward(cfg.d_model, cfg.d_ff, cfg.activation, cfg.dropout, f"{prefix}ffn")
        self.ln_ffn = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.drop = nn.Dropout(cfg.dropout)
        self.norms = nn.ModuleDict({s: Norm(f"{prefix}ln_{s}", f"{label}{w} LN") for s, w in
                                    (("attn", "attention"), ("cross", "cross-attention"), ("ffn", "feed-forward"))
                                    if s != "cross" or cross})
        self.skips = nn.ModuleDict({s: HookPoint(f"{prefix}{s}.skip") for s in self.norms})
        self.resid_pre, self.resid_post = HookPoint(f"{prefix}resid_pre"), HookPoint(f"{prefix}resid_post")

    def residual(self, x: Tensor, sub: str, f: Callable[[Tensor], Tensor], ln: nn.LayerNorm) -> Tensor:
        """x + Sublayer(LN(x)) (pre-LN) or LN(x + Sublayer(x)) (post-LN); `skip` is the "x +" path."""
        norm, skip = self.norms[sub], self.skips[sub]
        if self.pre:
            return skip(x) + self.drop(f(norm(ln, x)))
        return norm(ln, skip(x) + self.drop(f(x)))

    def forward(self, x: Tensor, mask: Mask, memory: Tensor | None = None, memory_mask: Mask | None = None,
                cache: LayerCache | None = None) -> Tensor:
        x = self.residual(self.resid_pre(x), "attn", lambda y: self.self_attn(y, y, mask, cache), self.ln_attn)
        if self.cross_attn is not None:
            x = self.residual(x, "cross", lambda y: self.cross_attn(y, memory, memory_mask, cache), self.ln_cross)
        return self.resid_post(self.residual(x, "ffn", self.ffn, self.ln_ffn))


class Stack(nn.Module):
    """Token embedding x sqrt(d_model) + positional encoding, then N blocks (and a final LN for pre-LN)."""

    def __init__(self, cfg: TransformerConfig, vocab_size: int, n_layers: int, key: str, label: str,
                 cross: bool = False) -> None:
        super().__init__()
        self.cfg, self.key, self.label = cfg, key, label
        p = stack_prefix(key)
        self.tok_emb = nn.Embedding(vocab_size, cfg.d_model)
        nn.init.normal_(self.tok_emb.weight, std=cfg.d_model ** -0.5)     # x sqrt(d_model) -> unit scale
        if cfg.pos_encoding == "learned":
            self.pos_emb = nn.Embedding(cfg.max_len, cfg.d_model)
            nn.init.normal_(self.pos_emb.weight, std=0.1)
        else:
            self.pos_emb = None
            self.register_buffer("pe", sinusoidal_encoding(cfg.max_len, cfg.d_model), persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, f"{p}blocks.{i}.", f"{label}L{i + 1} ", cross) for i in range(n_layers))
        self.ln_final = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps) if cfg.norm == "pre" else None
        self.final_norm = Norm(f"{p}ln_final", f"{label}final LN")
        self.hook_pos = HookPoint(f"{p}pos")

    def positional_table(self) -> Tensor | None:
        """(max_len, d_model): what is added to the token embeddings at each position (None if nothing)."""
        if self.cfg.pos_encoding == "none":
            return None
        if self.pos_emb is not None:
            return self.pos_emb.weight
        return self.pe

    def forward(self, ids: Tensor, mask: Mask, *, offset: int = 0, memory: Tensor | None = None,
                memory_mask: Mask | None = None, past: list | None = None) -> tuple[Tensor, list]:
        T = ids.size(1)
        if offset + T > self.cfg.max_len:
            raise ValueError(f"sequence of {offset + T} tokens is longer than the model's context of "
                             f"{self.cfg.max_len} tokens")
        x = self.tok_emb(ids) * math.sqrt(self.cfg.d_model)                 # (B, T, D)
        table = self.positional_table()
        if table is not None:
            x = x + self.hook_pos(table[offset: offset + T])
        x = self.drop(x)
        caches = [LayerCache(dict(past[i]) if past else {}) for i in range(len(self.blocks))]
        for block, cache in zip(self.blocks, caches):
            x = block(x, mask, memory, memory_mask, cache)
        if self.ln_final is not None:
            x = self.final_norm(self.ln_final, x)
        return x, [c.new for c in caches]

    def norm_modules(self) -> dict[str, tuple[Norm, nn.LayerNorm]]:
        """Hook name of each norm -> (its hook points, the LayerNorm)."""
        out = {}
        for b in self.blocks:
            for sub, norm in b.norms.items():
                out[norm.name] = (norm, getattr(b, f"ln_{sub}"))
        if self.ln_final is not None:
            out[self.final_norm.name] = (self.final_norm, self.ln_final)
        return out


# ----------------------------------------------------------------------------- traces from hook points

_TRACED = (".scores", ".weights", ".allowed", ".in", ".out", "resid_pre", "resid_post")


def trace_run() -> HookRun:
    """A run that records what a `Trace` shows: attention scores and weights, norms, the residual stream."""
    return HookRun(record=lambda name: name.endswith(_TRACED) and not name.endswith((".attn.out", ".cross.out",
                                                                                         ".ffn.out")))


def build_trace(cache: dict[str, Tensor], stacks: list[Stack], skipped: set[str] = frozenset()) -> Trace:
    """A Trace (every tensor detached, float32, on the CPU) from a trace run's recordings."""
    tr = Trace()
    cpu = lambda t: t.detach().float().cpu()
    norms = {}
    for st in stacks:
        norms.update(st.norm_modules())
        p = stack_prefix(st.key)
        for i in range(len(st.blocks)):
            for sub, role in (("attn", st.key), ("cross", "cross")):
                name = f"{p}blocks.{i}.{sub}"
                if f"{name}.weights" in cache:
                    tr.attention.setdefault(role, []).append(AttentionTrace(
                        weights=cpu(cache[f"{name}.weights"]), scores=cpu(cache[f"{name}.scores"]),
                        allowed=cache[f"{name}.allowed"].detach().cpu()))
        if f"{p}blocks.0.resid_pre" in cache:
            tr.hidden[st.key] = [cpu(cache[f"{p}blocks.0.resid_pre"])] + [
                cpu(cache[f"{p}blocks.{i}.resid_post"]) for i in range(len(st.blocks))]
    for name in cache:                                                       # forward order
        base = name[:-len(".out")]
        if name.endswith(".out") and base in norms and base not in skipped:
            norm, ln = norms[base]
            stack = next(st.key for st in stacks if norm in st.modules())
            tr.layernorms.append(LayerNormTrace(
                name=norm.label, x_in=cpu(cache[f"{base}.in"]), x_out=cpu(cache[name]),
                gamma=ln.weight.detach().float().cpu(), beta=ln.bias.detach().float().cpu(), stack=stack))
    return tr


@dataclass
class TransformerOutput:
    logits: Tensor                 # (B, T, V)
    trace: Trace | None = None     # only when asked for
    past: list | None = None       # key/value cache, only when use_cache=True


def self_mask(T: int, offset: int, pad: Tensor | None, causal: bool, explicit: bool) -> Mask:
    """The decoder's self-attention mask; without padding and unless asked to spell it out, the fused kernel's
    own causal rule (or no mask for one query)."""
    if pad is None and not explicit:
        if not causal or T == 1:
            return Mask()
        if offset == 0:
            return Mask(causal=True)
    allowed = subsequent_mask(T, offset) if causal else torch.ones(T, offset + T, dtype=torch.bool)
    allowed = allowed[None]                                                  # (1, T, Tk)
    if pad is not None:                                                      # pad: (B, Tk) True = real token
        allowed = allowed.to(pad.device) & pad[:, None, :]
    return Mask(allowed)


def _run(hooks: HookRun | None, iv: Interventions | None, q_valid: dict, trace: HookRun | None) -> HookRun | None:
    """The calling thread's run, then the interventions' edits, the caller's hooks, and the trace last (it
    records what the edits left)."""
    return merged(current(), iv.run(q_valid) if iv is not None else None, hooks, trace)


class _VocabHead(nn.Module):
    """The decoder's final linear layer to the vocabulary (optionally tied to its embedding), and the logit lens."""

    decoder: "Stack"

    def _make_head(self, cfg: TransformerConfig) -> None:
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.decoder.tok_emb.weight

    def unembed(self, x: Tensor) -> Tensor:
        """Project residual-stream vectors to vocabulary logits (final LN first for pre-LN): the 'logit lens'."""
        if self.decoder.ln_final is not None:
            x = self.decoder.ln_final(x)
        return self.lm_head(x)


class TransformerLM(_VocabHead):
    """Decoder-only language model: predicts each next token from the ones before it."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.decoder = Stack(cfg, cfg.vocab_size, cfg.n_layers, key="self", label="")
        self._make_head(cfg)

    def forward(self, ids: Tensor, *, pad_mask: Tensor | None = None, past: list | None = None,
                use_cache: bool = False, trace: bool = False, interventions: Interventions | None = None,
                hooks: HookRun | None = None) -> TransformerOutput:
        """ids: (B, T) token ids; pad_mask: (B, T_total) bool, True for real tokens (None = no padding).

        interventions: what to break in this call only (see `Interventions`); None = the intact model.
        hooks: a run that records or replaces activations at named hook points (model/hooks.py).
        """
        offset = 0 if not past else past[0]["self"][0].size(2)
        iv = _active(interventions)
        tr = trace_run() if trace else None
        run = _run(hooks, iv, {"self": None if pad_mask is None else pad_mask[:, -ids.size(1):]}, tr)
        mask = self_mask(ids.size(1), offset, pad_mask, causal=not (iv and iv.no_causal_mask), explicit=run is not None)
        with active(run):
            x, new_past = self.decoder(ids, mask, offset=offset, past=past)
            logits = self.lm_head(x)
        trace_ = build_trace(tr.cache, [self.decoder], iv.skipped_norms() if iv else set()) if tr else None
        return TransformerOutput(logits, trace_, new_past if use_cache else None)


class Seq2SeqTransformer(_VocabHead):
    """Encoder-decoder translator: the encoder reads the source, the decoder writes the target."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Stack(cfg, cfg.src_vocab_size or cfg.vocab_size, cfg.n_encoder_layers, key="encoder",
                             label="enc ")
        self.decoder = Stack(cfg, cfg.vocab_size, cfg.n_layers, key="decoder", label="dec ", cross=True)
        self._make_head(cfg)

    def encode(self, src: Tensor, src_pad: Tensor | None = None, *, interventions: Interventions | None = None,
               hooks: HookRun | None = None) -> Tensor:
        iv = _active(interventions)
        run = _run(hooks, iv, {"encoder": src_pad}, None)
        with active(run):                                                    # (B, 1, Ts): padded keys masked
            memory, _ = self.encoder(src, Mask(None if src_pad is None else src_pad[:, None, :]))
        return memory

    def decode(self, tgt: Tensor, memory: Tensor, *, src_pad: Tensor | None = None, tgt_pad: Tensor | None = None,
               past: list | None = None, interventions: Interventions | None = None,
               hooks: HookRun | None = None) -> tuple[Tensor, list]:
        offset = 0 if not past else past[0]["self"][0].size(2)
        iv = _active(interventions)
        q_valid = None if tgt_pad is None else tgt_pad[:, -tgt.size(1):]
        run = _run(hooks, iv, {"decoder": q_valid, "cross": q_valid}, None)
        mask = self_mask(tgt.size(1), offset, tgt_pad, causal=not (iv and iv.no_causal_mask), explicit=run is not None)
        memory_mask = Mask(None if src_pad is None else src_pad[:, None, :])
        with active(run):
            x, new_past = self.decoder(tgt, mask, offset=offset, memory=memory, memory_mask=memory_mask, past=past)
            logits = self.lm_head(x)
        return logits, new_past

    def forward(self, src: Tensor, tgt: Tensor, *, src_pad: Tensor | None = None, tgt_pad: Tensor | None = None,
                trace: bool = False, interventions: Interventions | None = None,
                hooks: HookRun | None = None) -> TransformerOutput:
        """src: (B, Ts) source ids; tgt: (B, Tt) target ids starting with [BOS] (teacher forcing)."""
        tr = trace_run() if trace else None
        run = merged(hooks, tr)
        memory = self.encode(src, src_pad, interventions=interventions, hooks=run)
        logits, _ = self.decode(tgt, memory, src_pad=src_pad, tgt_pad=tgt_pad, interventions=interventions, hooks=run)
        iv = _active(interventions)
        trace_ = build_trace(tr.cache, [self.encoder, self.decoder], iv.skipped_norms() if iv else set()) if tr else None
        return TransformerOutput(logits, trace_)


def build_transformer(cfg: TransformerConfig) -> nn.Module:
    return TransformerLM(cfg) if cfg.arch == "decoder" else Seq2SeqTransformer(cfg)
