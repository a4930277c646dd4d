"""The Transformer of "Attention Is All You Need", written out so every step can be shown.

Names follow the paper: d_model, h heads of d_k = d_model / h, d_ff, N layers.
Two assemblies share the same blocks:
  TransformerLM       decoder-only language model (masked self-attention + feed-forward)
  Seq2SeqTransformer  encoder-decoder translator (encoder self-attention; decoder masked
                      self-attention and encoder-decoder cross-attention)

Call a model with trace=True and it returns a `Trace` (model/trace.py) beside the logits:
per layer and head the raw scores and the weights, every LayerNorm's input and output, and
the residual stream after each block. Nothing is stored on the module, so one model object
can serve every user of the server at once. Without trace the attention runs through
torch's fused scaled_dot_product_attention, as fast as a plain implementation.

Experiments ("break the model") are options of one call, never state on the module:
`model(ids, interventions=Interventions(ablate_heads={("self", 2, 0)}, no_positions=True))`.
With no interventions (None, or an Interventions with nothing switched on) the computation
is exactly the plain forward pass.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .trace import AttentionTrace, LayerNormTrace, Trace


@dataclass
class TransformerConfig:
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

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TransformerConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


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


def attention(q: Tensor, k: Tensor, v: Tensor, allowed: Tensor | None = None,
              scale: float | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Scaled dot-product attention, spelled out. Returns (output, scores before the mask, weights).

    q: (B, h, Tq, d_k); k, v: (B, h, Tk, d_k); allowed: bool broadcastable to (B, h, Tq, Tk).
    scale: None = the paper's 1/sqrt(d_k); a number multiplies q.k instead (1.0 = no scaling).
    """
    if scale is None:
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))            # (B, h, Tq, Tk)
    else:
        scores = (q @ k.transpose(-2, -1)) * scale
    masked = scores if allowed is None else scores.masked_fill(~allowed, float("-inf"))
    weights = masked.softmax(dim=-1)                                         # rows sum to 1
    return weights @ v, scores, weights                                      # (B, h, Tq, d_k)


# ----------------------------------------------------------------------------- interventions

SUBLAYERS = ("attn", "cross", "ffn")


def _frozen(items) -> frozenset:
    return frozenset(tuple(i) for i in (items or ()))


@dataclass(frozen=True)
class Interventions:
    """What to break in one forward pass. Passed as an argument; never stored on the module.

    Layers and heads count from 0. Stacks are named as in traces: "self" (decoder-only LM),
    "encoder", "decoder" and "cross" (the decoder's cross-attention) for the translator.
    """

    ablate_heads: frozenset = frozenset()     # {(stack, layer, head)}: that head's output removed
    head_mode: str = "zero"                   # "zero": head output set to 0; "mean": to its mean over the
                                              # (non-padding) query positions of this call
    no_positions: bool = False                # add no positional encoding (every stack)
    no_causal_mask: bool = False              # decoder self-attention may look at later tokens
    skip_layernorm: frozenset = frozenset()   # {(stack, layer, sublayer)}: sublayer "attn" | "cross" | "ffn";
                                              # (stack, -1, "final") for a pre-LN model's final LayerNorm
    skip_residual: frozenset = frozenset()    # {(stack, layer, sublayer)}: output = sublayer only, no "x +"
    no_scale: bool = False                    # scores q.k without the 1/sqrt(d_k) factor

    def __post_init__(self) -> None:
        for name in ("ablate_heads", "skip_layernorm", "skip_residual"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        if self.head_mode not in ("zero", "mean"):
            raise ValueError(f"head_mode must be 'zero' or 'mean', got {self.head_mode!r}")

    @property
    def active(self) -> bool:
        return bool(self.ablate_heads or self.no_positions or self.no_causal_mask or self.skip_layernorm
                    or self.skip_residual or self.no_scale)

    def heads(self, stack: str, layer: int) -> tuple[int, ...]:
        return tuple(sorted(h for s, l, h in self.ablate_heads if s == stack and l == layer))


def _active(iv: "Interventions | None") -> "Interventions | None":
    return iv if iv is not None and iv.active else None


def _ablate_heads(out: Tensor, heads: tuple[int, ...], mode: str, q_valid: Tensor | None) -> Tensor:
    """out: (B, h, Tq, d_k) per-head outputs before W_o; the listed heads zeroed or mean-replaced."""
    out = out.clone()
    idx = list(heads)
    if mode == "zero":
        out[:, idx] = 0.0
        return out
    sel = out[:, idx]                                                        # (B, n, Tq, d_k)
    if q_valid is None:
        mean = sel.mean(dim=-2, keepdim=True)
    else:
        w = q_valid[:, None, :, None].to(sel.dtype)                          # (B, 1, Tq, 1)
        mean = (sel * w).sum(dim=-2, keepdim=True) / w.sum(dim=-2, keepdim=True).clamp(min=1.0)
    out[:, idx] = mean.expand_as(sel)
    return out


# ----------------------------------------------------------------------------- modules

class _Recorder:
    """Collects one forward pass's internals. Lives only for that call."""

    def __init__(self) -> None:
        self.trace = Trace()
        self.stack = ""                       # the stack being run, set by Stack.forward

    def attn(self, key: str, at: AttentionTrace) -> None:
        self.trace.attention.setdefault(key, []).append(at)

    def ln(self, name: str, module: nn.LayerNorm, x_in: Tensor, x_out: Tensor) -> None:
        self.trace.layernorms.append(LayerNormTrace(
            name=name, x_in=x_in.detach().float().cpu(), x_out=x_out.detach().float().cpu(),
            gamma=module.weight.detach().float().cpu(), beta=module.bias.detach().float().cpu(), stack=self.stack))

    def hidden(self, key: str, x: Tensor) -> None:
        self.trace.hidden.setdefault(key, []).append(x.detach().float().cpu())


class MultiHeadAttention(nn.Module):
    """h heads of scaled dot-product attention over learned projections, then W_o."""

    def __init__(self, d_model: int, h: int, dropout: float) -> None:
        super().__init__()
        self.h, self.d_k = h, d_model // h
        self.w_q = nn.Linear(d_model, d_model)
        self.w_k = nn.Linear(d_model, d_model)
        self.w_v = nn.Linear(d_model, d_model)
        self.w_o = nn.Linear(d_model, d_model)
        self.dropout = dropout

    def _heads(self, x: Tensor) -> Tensor:
        B, T, _ = x.shape
        return x.view(B, T, self.h, self.d_k).transpose(1, 2)                # (B, h, T, d_k)

    def forward(self, x_q: Tensor, x_kv: Tensor | None, allowed: Tensor | None, *, is_causal: bool = False,
                past_kv: tuple[Tensor, Tensor] | None = None, static_kv: tuple[Tensor, Tensor] | None = None,
                trace: bool = False, ablate: tuple[int, ...] = (), head_mode: str = "zero",
                q_valid: Tensor | None = None, scale: float | None = None
                ) -> tuple[Tensor, tuple[Tensor, Tensor], AttentionTrace | None]:
        """allowed: (B, Tq, Tk) or (B, 1, Tk) bool, True where attending is allowed; None = all allowed.

        past_kv: cached keys/values of earlier positions (self-attention while generating);
        static_kv: precomputed keys/values of the encoder output (cross-attention while generating).
        ablate: heads whose output is removed (head_mode "zero" or "mean" over the valid query
        positions q_valid (B, Tq)); scale: None = 1/sqrt(d_k), else the factor on q.k.
        """
        B, Tq, D = x_q.shape
        q = self._heads(self.w_q(x_q))                                       # (B, h, Tq, d_k)
        if static_kv is not None:
            k, v = static_kv
        else:
            k, v = self._heads(self.w_k(x_kv)), self._heads(self.w_v(x_kv))   # (B, h, Tk, d_k)
            if past_kv is not None:
                k, v = torch.cat([past_kv[0], k], dim=2), torch.cat([past_kv[1], v], dim=2)
        mask = None if allowed is None else allowed[:, None]                 # (B, 1, Tq|1, Tk)
        at = None
        if trace:
            out, scores, weights = attention(q, k, v, mask, scale)
            full = None if allowed is None else allowed.expand(B, Tq, k.size(2))
            at = AttentionTrace(weights=weights.detach().float().cpu(), scores=scores.detach().float().cpu(),
                                allowed=None if full is None else full.detach().cpu())
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal and mask is None,
                                                 dropout_p=self.dropout if self.training else 0.0,
                                                 **({} if scale is None else {"scale": scale}))
        if ablate:
            out = _ablate_heads(out, ablate, head_mode, q_valid)
        out = out.transpose(1, 2).reshape(B, Tq, D)                          # concat heads: (B, Tq, D)
        return self.w_o(out), (k, v), at


class FeedForward(nn.Module):
    """FFN(x) = W_2 act(W_1 x + b_1) + b_2, applied to each position separately."""

    def __init__(self, d_model: int, d_ff: int, activation: str, dropout: float) -> None:
        super().__init__()
        self.w_1 = nn.Linear(d_model, d_ff)
        self.w_2 = nn.Linear(d_ff, d_model)
        self.act = nn.ReLU() if activation == "relu" else nn.GELU()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.w_2(self.drop(self.act(self.w_1(x))))


class Block(nn.Module):
    """One layer: self-attention, optional cross-attention, feed-forward; each wrapped in residual + LayerNorm."""

    def __init__(self, cfg: TransformerConfig, self_key: str, cross: bool = False) -> None:
        super().__init__()
        self.self_key, self.pre = self_key, cfg.norm == "pre"
        self.self_attn = MultiHeadAttention(cfg.d_model, cfg.h, cfg.dropout)
        self.ln_attn = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.cross_attn = MultiHeadAttention(cfg.d_model, cfg.h, cfg.dropout) if cross else None
        self.ln_cross = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps) if cross else None
        self.ffn = FeedForward(cfg.d_model, cfg.d_ff, cfg.activation, cfg.dropout)
        self.ln_ffn = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.drop = nn.Dropout(cfg.dropout)

    @staticmethod
    def _norm(ln: nn.LayerNorm, x: Tensor, name: str, rec: _Recorder | None) -> Tensor:
        y = ln(x)
        if rec is not None:
            rec.ln(name, ln, x, y)
        return y

    def _residual(self, x: Tensor, sublayer: Callable[[Tensor], Tensor], ln: nn.LayerNorm, name: str,
                  rec: _Recorder | None, skip_ln: bool = False, skip_res: bool = False) -> Tensor:
        if not (skip_ln or skip_res):
            if self.pre:                                                     # x + Sublayer(LN(x))
                return x + self.drop(sublayer(self._norm(ln, x, name, rec)))
            return self._norm(ln, x + self.drop(sublayer(x)), name, rec)     # LN(x + Sublayer(x))
        if self.pre:                                                         # intervened: LN and/or "x +" left out
            s = self.drop(sublayer(x if skip_ln else self._norm(ln, x, name, rec)))
            return s if skip_res else x + s
        z = self.drop(sublayer(x))
        z = z if skip_res else x + z
        return z if skip_ln else self._norm(ln, z, name, rec)

    def forward(self, x: Tensor, allowed: Tensor | None, *, is_causal: bool = False, memory: Tensor | None = None,
                memory_allowed: Tensor | None = None, cache: dict | None = None, rec: _Recorder | None = None,
                name: str = "", iv: Interventions | None = None, layer: int = 0,
                q_valid: Tensor | None = None) -> tuple[Tensor, dict]:
        new_cache: dict = {}
        tracing = rec is not None
        key = self.self_key
        opt = {} if iv is None else dict(head_mode=iv.head_mode, q_valid=q_valid,
                                         scale=1.0 if iv.no_scale else None)

        def skips(sub: str) -> dict:
            if iv is None:
                return {}
            return dict(skip_ln=(key, layer, sub) in iv.skip_layernorm, skip_res=(key, layer, sub) in iv.skip_residual)

        def self_sub(y: Tensor) -> Tensor:
            out, kv, at = self.self_attn(y, y, allowed, is_causal=is_causal,
                                         past_kv=cache.get("self") if cache else None, trace=tracing,
                                         **({} if iv is None else dict(ablate=iv.heads(key, layer), **opt)))
            new_cache["self"] = kv
            if at is not None:
                rec.attn(self.self_key, at)
            return out

        x = self._residual(x, self_sub, self.ln_attn, f"{name}attention LN", rec, **skips("attn"))
        if self.cross_attn is not None:
            def cross_sub(y: Tensor) -> Tensor:
                out, kv, at = self.cross_attn(y, memory, memory_allowed,
                                              static_kv=cache.get("cross") if cache else None, trace=tracing,
                                              **({} if iv is None else dict(ablate=iv.heads("cross", layer), **opt)))
                new_cache["cross"] = kv
                if at is not None:
                    rec.attn("cross", at)
                return out

            x = self._residual(x, cross_sub, self.ln_cross, f"{name}cross-attention LN", rec, **skips("cross"))
        x = self._residual(x, self.ffn, self.ln_ffn, f"{name}feed-forward LN", rec, **skips("ffn"))
        return x, new_cache


class Stack(nn.Module):
    """Token embedding x sqrt(d_model) + positional encoding, then N blocks (and a final LN for pre-LN)."""

    def __init__(self, cfg: TransformerConfig, vocab_size: int, n_layers: int, key: str, label: str,
                 cross: bool = False) -> None:
        super().__init__()
        self.cfg, self.key, self.label = cfg, key, label
        self.tok_emb = nn.Embedding(vocab_size, cfg.d_model)
        nn.init.normal_(self.tok_emb.weight, std=cfg.d_model ** -0.5)     # x sqrt(d_model) -> unit scale
        if cfg.pos_encoding == "learned":
            self.pos_emb = nn.Embedding(cfg.max_len, cfg.d_model)
            nn.init.normal_(self.pos_emb.weight, std=0.1)
        else:
            self.pos_emb = None
            self.register_buffer("pe", sinusoidal_encoding(cfg.max_len, cfg.d_model), persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, key, cross) for _ in range(n_layers))
        self.ln_final = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps) if cfg.norm == "pre" else None

    def positional_table(self) -> Tensor | None:
        """(max_len, d_model): what is added to the token embeddings at each position (None if nothing)."""
        if self.cfg.pos_encoding == "none":
            return None
        if self.pos_emb is not None:
            return self.pos_emb.weight
        return self.pe

    def forward(self, ids: Tensor, allowed: Tensor | None, *, is_causal: bool = False, offset: int = 0,
                memory: Tensor | None = None, memory_allowed: Tensor | None = None, past: list | None = None,
                rec: _Recorder | None = None, iv: Interventions | None = None,
                q_valid: Tensor | None = None) -> tuple[Tensor, list]:
        T = ids.size(1)
        if offset + T > self.cfg.max_len:
            raise ValueError(f"sequence of {offset + T} tokens is longer than the model's context of "
                             f"{self.cfg.max_len} tokens")
        x = self.tok_emb(ids) * math.sqrt(self.cfg.d_model)                 # (B, T, D)
        table = self.positional_table()
        if table is not None and not (iv is not None and iv.no_positions):
            x = x + table[offset: offset + T]
        x = self.drop(x)
        if rec is not None:
            rec.stack = self.key
            rec.hidden(self.key, x)
        new_past = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, allowed, is_causal=is_causal, memory=memory, memory_allowed=memory_allowed,
                          cache=past[i] if past else None, rec=rec, name=f"{self.label}L{i + 1} ",
                          **({} if iv is None else dict(iv=iv, layer=i, q_valid=q_valid)))
            new_past.append(kv)
            if rec is not None:
                rec.hidden(self.key, x)
        if self.ln_final is not None and not (iv is not None and (self.key, -1, "final") in iv.skip_layernorm):
            x = Block._norm(self.ln_final, x, f"{self.label}final LN", rec)
        return x, new_past


@dataclass
class TransformerOutput:
    logits: Tensor                 # (B, T, V)
    trace: Trace | None = None     # only when asked for
    past: list | None = None       # key/value cache, only when use_cache=True


def _self_allowed(T: int, offset: int, pad: Tensor | None, causal: bool, need: bool) -> tuple[Tensor | None, bool]:
    """Build the (B|1, T, offset+T) allowed-mask, or return (None, is_causal) for the fused fast path."""
    if pad is None and not need:
        if not causal or T == 1:
            return None, False
        if offset == 0:
            return None, True
    allowed = subsequent_mask(T, offset) if causal else torch.ones(T, offset + T, dtype=torch.bool)
    allowed = allowed[None]                                                  # (1, T, Tk)
    if pad is not None:                                                      # pad: (B, Tk) True = real token
        allowed = allowed.to(pad.device) & pad[:, None, :]
    return allowed, False


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
                use_cache: bool = False, trace: bool = False,
                interventions: Interventions | None = None) -> TransformerOutput:
        """ids: (B, T) token ids; pad_mask: (B, T_total) bool, True for real tokens (None = no padding).

        interventions: what to break in this call only (see `Interventions`); None = the intact model.
        """
        offset = 0 if not past else past[0]["self"][0].size(2)
        rec = _Recorder() if trace else None
        iv = _active(interventions)
        if iv is None:
            allowed, is_causal = _self_allowed(ids.size(1), offset, pad_mask, causal=True, need=trace)
            x, new_past = self.decoder(ids, allowed, is_causal=is_causal, offset=offset, past=past, rec=rec)
        else:
            allowed, is_causal = _self_allowed(ids.size(1), offset, pad_mask, causal=not iv.no_causal_mask, need=True)
            q_valid = None if pad_mask is None else pad_mask[:, -ids.size(1):]
            x, new_past = self.decoder(ids, allowed, is_causal=is_causal, offset=offset, past=past, rec=rec,
                                       iv=iv, q_valid=q_valid)
        return TransformerOutput(self.lm_head(x), rec.trace if rec else None, new_past if use_cache else None)


class Seq2SeqTransformer(_VocabHead):
    """Encoder-decoder translator: the encoder reads the source, the decoder writes the target."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Stack(cfg, cfg.src_vocab_size or cfg.vocab_size, cfg.n_encoder_layers, key="encoder",
                             label="enc ")
        self.decoder = Stack(cfg, cfg.vocab_size, cfg.n_layers, key="decoder", label="dec ", cross=True)
        self._make_head(cfg)

    def encode(self, src: Tensor, src_pad: Tensor | None = None, rec: _Recorder | None = None,
               interventions: Interventions | None = None) -> Tensor:
        allowed = None if src_pad is None else src_pad[:, None, :]          # (B, 1, Ts): mask padded keys
        if allowed is None and rec is not None:
            allowed = torch.ones(1, 1, src.size(1), dtype=torch.bool, device=src.device)
        iv = _active(interventions)
        if iv is None:
            memory, _ = self.encoder(src, allowed, rec=rec)
        else:
            memory, _ = self.encoder(src, allowed, rec=rec, iv=iv, q_valid=src_pad)
        return memory

    def decode(self, tgt: Tensor, memory: Tensor, *, src_pad: Tensor | None = None, tgt_pad: Tensor | None = None,
               past: list | None = None, rec: _Recorder | None = None,
               interventions: Interventions | None = None) -> tuple[Tensor, list]:
        offset = 0 if not past else past[0]["self"][0].size(2)
        iv = _active(interventions)
        allowed, is_causal = _self_allowed(tgt.size(1), offset, tgt_pad, causal=not (iv and iv.no_causal_mask),
                                           need=rec is not None or iv is not None)
        mem_allowed = None if src_pad is None else src_pad[:, None, :]
        if mem_allowed is None and rec is not None:
            mem_allowed = torch.ones(1, 1, memory.size(1), dtype=torch.bool, device=memory.device)
        if iv is None:
            x, new_past = self.decoder(tgt, allowed, is_causal=is_causal, offset=offset, memory=memory,
                                       memory_allowed=mem_allowed, past=past, rec=rec)
        else:
            q_valid = None if tgt_pad is None else tgt_pad[:, -tgt.size(1):]
            x, new_past = self.decoder(tgt, allowed, is_causal=is_causal, offset=offset, memory=memory,
                                       memory_allowed=mem_allowed, past=past, rec=rec, iv=iv, q_valid=q_valid)
        return self.lm_head(x), new_past

    def forward(self, src: Tensor, tgt: Tensor, *, src_pad: Tensor | None = None, tgt_pad: Tensor | None = None,
                trace: bool = False, interventions: Interventions | None = None) -> TransformerOutput:
        """src: (B, Ts) source ids; tgt: (B, Tt) target ids starting with [BOS] (teacher forcing)."""
        rec = _Recorder() if trace else None
        memory = self.encode(src, src_pad, rec, interventions=interventions)
        logits, _ = self.decode(tgt, memory, src_pad=src_pad, tgt_pad=tgt_pad, rec=rec, interventions=interventions)
        return TransformerOutput(logits, rec.trace if rec else None)


def build_transformer(cfg: TransformerConfig) -> nn.Module:
    return TransformerLM(cfg) if cfg.arch == "decoder" else Seq2SeqTransformer(cfg)
