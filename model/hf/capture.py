"""Hooks for one traced call, and the raw attention scores recomputed from what the hooks saw.

A `Capture` registers its forward hooks on entry and removes them on exit (also when the forward raises).
Each hook records only for the thread that registered it, so concurrent users of one shared model never
see each other's data. What it records:

  norms       every LayerNorm / RMSNorm's input and output (-> LayerNormTrace, with its stack)
  q, k        the query/key projection outputs of each self-attention layer (GPT-2: the fused c_attn),
              and for rotary models the (cos, sin) the model's rotary module returned, so that
              scores = rotary(q) . repeat_interleave(rotary(k), H / H_kv) * scaling
              are computed from the model's own activations, nothing re-run.

`verified_qk` gives a layer's q/k only when softmax(scores + mask) reproduces transformers' own weights
(max abs difference <= CHECK_ATOL, every layer and head, on CHECK_ROWS evenly spaced query rows: all rows up
to 64 tokens); otherwise no layer gets scores.
"""
from __future__ import annotations

import re
import threading
from typing import Any

import torch
from torch import Tensor, nn

from ..trace import LayerNormTrace
from .architectures import ArchSpec

CHECK_ATOL = 1e-4        # softmax(scores + mask) vs transformers' weights (the tests check 1e-5 on the fixtures)
CHECK_ROWS = 64          # query rows checked per layer, evenly spaced, first and last included, every head: a wrong
                         # rotary, head mapping, scaling or mask shows on every row (rows are independent softmaxes)


def resolve(root: nn.Module, path: str):
    """'h.3.attn' -> the submodule; 'wpe.weight' -> the parameter or buffer."""
    obj: Any = root
    for part in path.split("."):
        obj = obj[int(part)] if part.isdigit() and isinstance(obj, (nn.ModuleList, nn.Sequential)) else getattr(obj, part)
    return obj


def is_norm(mod: nn.Module) -> bool:
    return isinstance(mod, nn.LayerNorm) or type(mod).__name__.endswith(("LayerNorm", "RMSNorm"))


def norm_label(rel: str, in_base: bool, seq2seq: bool) -> tuple[str, str]:
    """Module path (relative to the base model) -> (label for people, stack)."""
    stack = "self"
    prefix = ""
    if seq2seq:
        stack = "encoder" if rel.startswith("encoder.") else "decoder"
        prefix = "enc " if stack == "encoder" else "dec "
    if not in_base:
        return f"head {rel.split('.')[-1]}", stack
    m = re.search(r"(?:^|\.)(\d+)\.", rel)
    if m:
        return f"{prefix}L{int(m.group(1)) + 1} {rel[m.end():]}", stack
    if seq2seq:
        rel = rel.split(".", 1)[-1]
    return prefix + rel, stack                     # "ln_f", "norm", "embeddings.LayerNorm", "dec final_layer_norm"


def rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def raw_scores(q: Tensor, k: Tensor, scaling: float) -> Tensor:
    """(B, H, Tq, dh) queries, (B, H_kv, Tk, dh) keys -> (B, H, Tq, Tk) q.k * scaling; each key head serves
    H / H_kv consecutive query heads (grouped-query attention)."""
    if k.shape[1] != q.shape[1]:
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    return (q @ k.transpose(-1, -2)) * scaling


class Capture:
    """Per-call recorder; use as `with Capture(...) as cap: out = hf(...)`."""

    def __init__(self, hf: nn.Module, spec: ArchSpec, norms: list[tuple[str, str, str, nn.Module]],
                 final_norm: nn.Module | None, want_qk: bool, half: bool = False):
        self.thread = threading.get_ident()
        self.hf, self.spec, self.norms, self.final_norm, self.want_qk = hf, spec, norms, final_norm, want_qk
        self.dtype = torch.float16 if half else torch.float32
        self.layernorms: list[LayerNormTrace] = []
        self.final_norm_input: Tensor | None = None
        self.proj: dict[tuple[int, str], Tensor] = {}
        self.rotary: tuple[Tensor, Tensor] | None = None
        self.attn_modules: list[nn.Module] = []
        self.handles: list[Any] = []

    def _mine(self) -> bool:
        return threading.get_ident() == self.thread

    def __enter__(self) -> "Capture":
        try:
            for label, stack, _, mod in self.norms:
                self.handles.append(mod.register_forward_hook(self._norm_hook(label, stack, mod)))
            if self.want_qk and "self" in self.spec.attention:
                a = self.spec.attention["self"]
                base = self.hf.base_model
                i = 0
                while True:
                    try:
                        mod = resolve(base, a.path.format(i=i))
                    except (AttributeError, IndexError):
                        break
                    self.attn_modules.append(mod)
                    for part in ([a.qkv] if a.qkv else [a.q, a.k]):
                        self.handles.append(getattr(mod, part).register_forward_hook(self._proj_hook(i, part)))
                    i += 1
                if self.spec.position.rotary:
                    rot = resolve(base, self.spec.position.rotary)
                    self.handles.append(rot.register_forward_hook(self._rotary_hook))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def _norm_hook(self, label: str, stack: str, mod: nn.Module):
        gamma = getattr(mod, "weight", None)
        beta = getattr(mod, "bias", None)
        is_final = mod is self.final_norm

        def hook(_mod, inputs, output):
            if not self._mine():
                return
            x_in = inputs[0].detach().float().cpu()
            if is_final:
                self.final_norm_input = x_in
            self.layernorms.append(LayerNormTrace(
                label, x_in.to(self.dtype), output.detach().cpu().to(self.dtype),
                None if not isinstance(gamma, Tensor) else gamma.detach().float().cpu(),
                None if not isinstance(beta, Tensor) else beta.detach().float().cpu(), stack=stack))
        return hook

    def _proj_hook(self, i: int, part: str):
        def hook(_mod, inputs, output):
            if self._mine():
                self.proj[(i, part)] = output.detach()
        return hook

    def _rotary_hook(self, _mod, inputs, output):
        if self._mine():
            self.rotary = (output[0].detach(), output[1].detach())

    def qk(self, i: int, n_heads: int) -> tuple[Tensor, Tensor, float] | None:
        """Layer i's (B, H, T, dh) queries and (B, H_kv, T, dh) keys as the attention used them, and its scaling."""
        a = self.spec.attention["self"]
        mod = self.attn_modules[i]
        if a.qkv:
            fused = self.proj.get((i, a.qkv))
            if fused is None:
                return None
            q, k, _ = fused.split(fused.shape[-1] // 3, dim=-1)
        else:
            q, k = self.proj.get((i, a.q)), self.proj.get((i, a.k))
            if q is None or k is None:
                return None
        b, t, _ = q.shape
        dh = q.shape[-1] // n_heads
        q = q.reshape(b, t, n_heads, dh).transpose(1, 2).float()
        k = k.reshape(b, k.shape[1], -1, dh).transpose(1, 2).float()
        if self.spec.position.rotary:
            if self.rotary is None:
                return None
            cos, sin = (x.float()[:, None] for x in self.rotary)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
        scaling = float(getattr(mod, "scaling", dh ** -0.5))
        return q.contiguous().cpu(), k.contiguous().cpu(), scaling     # own storage: never keeps v (fused c_attn) alive

    def verified_qk(self, i: int, weights: Tensor, allowed: Tensor, n_heads: int, n_layers: int):
        """Layer i's (q, k, scaling) when softmax(scores + mask) reproduces its `weights` (B, H, T, T) on CHECK_ROWS
        rows of every head, else None; `allowed` is (B, T, T). Only those rows' scores are ever computed here."""
        if not self.want_qk or len(self.attn_modules) != n_layers:
            return None
        got = self.qk(i, n_heads)
        if got is None:
            return None
        q, k, scaling = got
        t = q.shape[2]
        rows = torch.arange(t) if t <= CHECK_ROWS else torch.linspace(0, t - 1, CHECK_ROWS).round().long().unique()
        s = raw_scores(q[:, :, rows], k, scaling)
        if s.shape != (*weights.shape[:2], len(rows), weights.shape[3]):
            return None
        check = torch.nan_to_num(s.masked_fill(~allowed[:, rows][:, None], float("-inf")).softmax(-1))
        if (check - weights[:, :, rows].float()).abs().max() > CHECK_ATOL:
            return None
        return got
