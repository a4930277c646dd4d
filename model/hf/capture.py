"""Hooks for one traced call, and the raw attention scores recomputed from what the hooks saw.

A `Capture` is a hook run (model/hooks.py) over the hook points hookpoints.py places on every Hugging Face
model at load: it belongs to the calling thread, so concurrent users of one shared model never see each
other's data. What it records:

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
from typing import Any

import torch
from torch import Tensor, nn

from ..hooks import HookRun
from ..trace import CompactLayerNormTrace, LayerNormTrace
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


def point_name(spec: ArchSpec, path: str, hf: nn.Module) -> str:
    """The hook-point name of a module at `path` (from the model's root): inside a block of the table,
    "{p}blocks.{i}.<rest>" (GPT-2's h.0.ln_1 -> blocks.0.ln_1); elsewhere its path in the base model (ln_f,
    encoder.final_layer_norm), or "head.<path>" for a module of the prediction head."""
    prefix = getattr(hf, "base_model_prefix", "")
    if hf.base_model is not hf and path.startswith(prefix + "."):
        path = path[len(prefix) + 1:]
    elif hf.base_model is not hf:
        return f"head.{path}"
    for stack, st in spec.stacks.items():
        m = re.match("^" + re.escape(st.block).replace(r"\{i\}", r"(\d+)") + r"\.(.+)$", path)
        if m:
            return f"{PREFIX[stack]}blocks.{m.group(1)}.{m.group(2)}"
    return path


PREFIX = {"self": "", "encoder": "encoder.", "decoder": "decoder.", "cross": "decoder."}


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


def layer_qk(spec: ArchSpec, mod: nn.Module, proj: dict[tuple[int, str], Tensor], i: int, n_heads: int,
             rotary: tuple[Tensor, Tensor] | None) -> tuple[Tensor, Tensor, float] | None:
    """Layer i's (B, H, T, dh) queries and (B, H_kv, T, dh) keys from its recorded projection outputs `proj`
    ((i, child name) -> (B, T, width)), rotated by the model's own (cos, sin) where it has rotary positions, and the
    scaling of its attention module `mod`; None when something is missing."""
    a = spec.attention["self"]
    if a.qkv:
        fused = proj.get((i, a.qkv))
        if fused is None:
            return None
        q, k, _ = fused.split(fused.shape[-1] // 3, dim=-1)
    else:
        q, k = proj.get((i, a.q)), proj.get((i, a.k))
        if q is None or k is None:
            return None
    b, t, _ = q.shape
    dh = q.shape[-1] // n_heads
    q = q.reshape(b, t, n_heads, dh).transpose(1, 2).float()
    k = k.reshape(b, k.shape[1], -1, dh).transpose(1, 2).float()
    if spec.position.rotary:
        if rotary is None:
            return None
        cos, sin = (x.float()[:, None] for x in rotary)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
    scaling = float(getattr(mod, "scaling", dh ** -0.5))
    return q.contiguous().cpu(), k.contiguous().cpu(), scaling     # own storage: never keeps v (fused c_attn) alive


def check_rows(t: int) -> Tensor:
    """The query rows a check compares: all up to CHECK_ROWS, else CHECK_ROWS evenly spaced (first and last)."""
    return torch.arange(t) if t <= CHECK_ROWS else torch.linspace(0, t - 1, CHECK_ROWS).round().long().unique()


def reproduces(q: Tensor, k: Tensor, scaling: float, weights: Tensor, allowed: Tensor) -> bool:
    """Whether softmax(q.k * scaling + mask) gives `weights` (B, H, T, T) on the check rows of every head."""
    rows = check_rows(q.shape[2])
    s = raw_scores(q[:, :, rows], k, scaling)
    if s.shape != (*weights.shape[:2], len(rows), weights.shape[3]):
        return False
    check = torch.nan_to_num(s.masked_fill(~allowed[:, rows][:, None], float("-inf")).softmax(-1))
    return bool((check - weights[:, :, rows].float().cpu()).abs().max() <= CHECK_ATOL)


class Capture(HookRun):
    """One traced call's recordings, as a hook run over the model's hook points (hookpoints.py): every norm's input
    and output, and (want_qk) the self-attention's q/k projections and a rotary model's (cos, sin). Use as
    `with hooks.active(hooks.merged(hooks.current(), cap)): out = hf(...)`: an intervention run already active
    edits first, and the capture records what it left. It converts what it keeps as it records (float16 for
    compact runs), so no float32 copy of a long run is held."""

    def __init__(self, hf: nn.Module, spec: ArchSpec, norms: list[tuple[str, str, str, nn.Module]],
                 final_norm: nn.Module | None, want_qk: bool, half: bool = False, replay=None):
        self.hf, self.spec, self.want_qk = hf, spec, want_qk
        self.dtype = torch.float16 if half else torch.float32
        self.replay = replay                 # compact run (model/hf/compact.py): per-norm statistics, each layer's
                                             # weights handed to it as they are computed, the block calls noted
        self.layernorms: list[LayerNormTrace | CompactLayerNormTrace] = []
        self.final_norm_input: Tensor | None = None
        self.proj: dict[tuple[int, str], Tensor] = {}
        self.rotary: tuple[Tensor, Tensor] | None = None
        self.attn_modules: list[nn.Module] = []
        self._norms = {point_name(spec, path, hf): (label, stack, mod, mod is final_norm)
                       for label, stack, path, mod in norms}
        self._x_in: dict[str, Tensor] = {}
        self._qk: dict[str, tuple[int, str]] = {}
        if want_qk and "self" in spec.attention:
            a = spec.attention["self"]
            i = 0
            while True:
                try:
                    self.attn_modules.append(resolve(hf.base_model, a.path.format(i=i)))
                except (AttributeError, IndexError):
                    break
                for part in ([a.qkv] if a.qkv else [a.q, a.k]):
                    self._qk[f"blocks.{i}.attn.{part}"] = (i, part)
                i += 1
        names = {f"{n}.{end}" for n in self._norms for end in ("in", "out")} | set(self._qk)
        if want_qk and spec.position.rotary:
            names.add("pos")
        if replay is not None:
            names |= {f"blocks.{i}.{end}" for i in range(len(self.attn_modules))
                      for end in ("resid_pre.call", "attn.weights")}
        super().__init__(record=names)

    def note(self, name: str, x) -> None:
        if self.replay is None or not self.records(name):
            return
        i = int(name.split(".")[1])
        if name.endswith(".call"):
            self.replay.calls[i] = x
        else:
            self.replay.layer_weights(i, x, self)

    def visit(self, name: str, x):
        if not self.records(name):
            return x
        if name in self._qk:
            self.proj[self._qk[name]] = x.detach()
        elif name == "pos":
            self.rotary = (x[0].detach(), x[1].detach())
        elif name.endswith(".in"):
            self._x_in[name[:-3]] = x.detach().float().cpu()
        else:
            base = name[:-4]
            label, stack, mod, is_final = self._norms[base]
            x_in = self._x_in.pop(base)
            if is_final:
                self.final_norm_input = x_in
            gamma, beta = getattr(mod, "weight", None), getattr(mod, "bias", None)
            gamma = None if not isinstance(gamma, Tensor) else gamma.detach().float().cpu()
            beta = None if not isinstance(beta, Tensor) else beta.detach().float().cpu()
            if self.replay is not None:          # compact: the statistics; the vectors are recomputed on demand
                s_in, m_in = torch.std_mean(x_in, -1, unbiased=False)
                s_out, m_out = torch.std_mean(x.detach().float().cpu(), -1, unbiased=False)
                self.layernorms.append(CompactLayerNormTrace(label, m_in, s_in, m_out, s_out, gamma, beta, stack=stack,
                                                             source=self.replay, point=base))
                return x
            self.layernorms.append(LayerNormTrace(
                label, x_in.to(self.dtype), x.detach().cpu().to(self.dtype), gamma, beta, stack=stack))
        return x

    def qk(self, i: int, n_heads: int) -> tuple[Tensor, Tensor, float] | None:
        """Layer i's (B, H, T, dh) queries and (B, H_kv, T, dh) keys as the attention used them, and its scaling."""
        return layer_qk(self.spec, self.attn_modules[i], self.proj, i, n_heads, self.rotary)

    def verified_qk(self, i: int, weights: Tensor, allowed: Tensor, n_heads: int, n_layers: int):
        """Layer i's (q, k, scaling) when softmax(scores + mask) reproduces its `weights` (B, H, T, T) on CHECK_ROWS
        rows of every head, else None; `allowed` is (B, T, T). Only those rows' scores are ever computed here."""
        if not self.want_qk or len(self.attn_modules) != n_layers:
            return None
        got = self.qk(i, n_heads)
        if got is None:
            return None
        return got if reproduces(*got, weights, allowed) else None
