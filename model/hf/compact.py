"""Compact traces of long Hugging Face runs: keep what the pages draw, recompute one layer exactly on demand.

A full trace holds layers x heads x T x T weights (GPT-2 small at 1,024 tokens: 12 x 12 x 1,024^2 floats). A compact
run is called without `output_attentions`: eager attention still computes each layer's weights, and the hook point
`blocks.{i}.attn.weights` hands them here one layer at a time, before they are dropped. What is kept:

  pooled     every head max-pooled to <= GRID_PIXELS cells a side (float16): the all-heads grid, as it was drawn
  rows       the weights of a few query rows in every head (the token the Attention page opens on)
  calls      each block's call as the model made it: its input (the residual stream, shared with trace.hidden) and
             its keyword arguments (the mask, the rotary (cos, sin): one object shared by every layer)

`HFReplay.weights(layer)` runs that one block again on its kept input, under a hook run of the calling thread
that reads the attention module's weights and stops the block there: the same modules on the same input compute
the same numbers (bit for bit on the fixtures; the tests check 1e-6 against `output_attentions`). One head
(`weights(layer, head)`) is computed from that layer's q and k alone (the block run only to its projections). Nothing is stored
on a module and nothing recomputed is cached here, so one shared model serves every session and a trace does not
grow as pages ask for heads. A norm's input and output vectors come back the same way (`norm`). Raw scores and
query rows use the layer's q and k (capture.layer_qk), re-projected from the kept input; they are offered only when
softmax(q.k * scaling + mask) reproduced transformers' weights on the check rows of every layer during the run.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .. import hooks
from ..hooks import HookRun
from ..trace import CompactAttentionTrace, grid_pool
from .capture import layer_qk, raw_scores, reproduces, resolve


def _pool_max(w: Tensor, f: int) -> Tensor:
    """(B, H, Tq, Tk) -> (B, H, ceil(Tq/f), ceil(Tk/f)), each cell the largest weight of its f x f block (as
    viz.attention.pool_max): whole rows compared at once where f divides both sides."""
    if f == 1:
        return w
    b, h, tq, tk = w.shape
    if tq % f or tk % f:
        return torch.nn.functional.max_pool2d(w, f, f, ceil_mode=True)
    rows = w.view(b, h, tq // f, f, tk).amax(3)                                   # (B, H, Tq/f, Tk)
    return rows.view(b, h, tq // f, tk // f, f).amax(4)


class _Stop(Exception):
    """Raised by a replay's hook run once it has what it asked for: the rest of the block is not computed."""


class _Take(HookRun):
    """Record the named points (visits and notes); stop the forward once every one has been seen."""

    def __init__(self, names: set[str]):
        super().__init__(record=set(names))
        self.left = set(names)

    def _got(self, name: str, x) -> None:
        if name in self.left:
            self.cache[name] = x
            self.left.discard(name)
            if not self.left:
                raise _Stop

    def note(self, name: str, x) -> None:
        self._got(name, x)

    def visit(self, name: str, x):
        self._got(name, x)
        return x


@dataclass
class HFReplay:
    """What a compact run keeps to recompute its layers, and the recomputation. Its tensors are the run's own (the
    block inputs are the trace's hidden states: counted once by trace_bytes)."""

    model: Any                                   # the HFModel: its modules are read, never written
    n_layers: int
    n_heads: int
    valid: Tensor                                # (B, T) bool, real tokens
    causal: bool
    keep_rows: tuple[int, ...] = ()              # query rows kept whole at trace time
    ids: Tensor | None = None                    # (B, T) the input ids (norms outside the blocks are re-run from them)
    attention_mask: Tensor | None = None
    ambient: HookRun | None = None               # the run active when the trace was made (an intervention): re-applied
    calls: list = field(default_factory=list)    # per layer: (args, kwargs) of the block call, before any edit
    allowed: list = field(default_factory=list)  # per layer: (B, T, T) bool (one shared object per window size)
    layers: list = field(default_factory=list)   # per layer: CompactAttentionTrace, filled as the run goes, emptied
                                                 # by `finish` (each layer points here: no reference cycle, below)
    kept: list = field(default_factory=list)     # per layer: the rows kept whole (query -> (B, H, Tk)), as its trace
    final_input: Tensor | None = None            # the final norm's input (the last hidden state)
    rotary: tuple | None = None                  # (cos, sin) as the model's rotary module returned them
    verified: bool = True                        # q.k reproduced the weights on every layer so far

    def __post_init__(self):
        self.calls = [None] * self.n_layers
        self.layers = [None] * self.n_layers
        self.kept = [{} for _ in range(self.n_layers)]
        t = self.valid.shape[1]
        shared: dict[int | None, Tensor] = {}
        for i in range(self.n_layers):
            win = self.model._window(i) if self.causal else None
            win = None if win is not None and win >= t else win
            if win not in shared:
                shared[win] = self.model._allowed(self.valid, self.causal, win)
            self.allowed.append(shared[win])

    # ----------------------------------------------------------------- during the traced run
    def layer_weights(self, i: int, w: Tensor, cap) -> None:
        """Layer i's (B, H, T, T) weights, as eager attention returned them: pool, keep the rows, check q.k."""
        if not 0 <= i < len(self.layers) or self.layers[i] is not None:     # (emptied once the run is over)
            return
        w = w.detach()
        b, h, tq, tk = w.shape
        f = grid_pool(tq, tk)
        pooled = _pool_max(w.float(), f)
        rows = {q: w[:, :, q].float().cpu().clone() for q in self.keep_rows if 0 <= q < tq}
        if self.verified:
            got = cap.verified_qk(i, w, self.allowed[i], self.n_heads, self.n_layers) if cap.want_qk else None
            self.verified = got is not None
        for key in [k for k in cap.proj if k[0] == i]:          # this layer's q/k are no longer needed
            del cap.proj[key]
        self.kept[i] = rows
        self.layers[i] = CompactAttentionTrace(pooled.half().cpu(), f, (b, h, tq, tk), self.allowed[i], self, i, rows)

    def finish(self, cap) -> list[CompactAttentionTrace] | None:
        """The layers, once the run is over (None if a layer's weights never came: the caller falls back).

        The replay lets go of them: each layer points to the replay (its `source`), so a replay that kept its layers
        would make every compact run a reference cycle, which CPython frees only in a full garbage collection. A
        server with a large heap and no collection after each script (.streamlit/config.toml) runs one rarely: in
        issue 19's flood the runs the trace cache had evicted stayed alive as cycles (about 640 MB at 30 sessions)."""
        layers, self.layers = self.layers, []
        if any(a is None for a in layers) or any(c is None for c in self.calls):
            return None
        self.rotary = cap.rotary if self.model.spec.position.rotary else None
        if not cap.want_qk:
            self.verified = False
        cap.proj.clear()
        return list(layers)

    def block_input(self, i: int) -> Tensor:
        args, kwargs = self.calls[i]
        return args[0] if args else kwargs["hidden_states"]

    # ----------------------------------------------------------------- on demand
    def _block(self, i: int, names: set[str]) -> dict[str, Any]:
        """Run block i again on its kept input and call, recording `names`; stop as soon as they are all seen."""
        m = self.model
        args, kwargs = self.calls[i]
        kwargs = dict(kwargs)
        for key in ("past_key_values", "past_key_value", "layer_past"):
            if key in kwargs:
                kwargs[key] = None
        if "use_cache" in kwargs:
            kwargs["use_cache"] = False
        args = tuple(None if type(a).__name__.endswith("Cache") else a for a in args)
        block = resolve(m.base, m.spec.stacks["self"].block.format(i=i))
        take = _Take(names)
        with torch.inference_mode(), hooks.active(hooks.merged(self.ambient, take)):
            try:
                block(*args, **kwargs)
            except _Stop:
                pass
        if take.left:
            raise RuntimeError(f"block {i} did not pass {sorted(take.left)} when run again")
        return take.cache

    def _qk(self, i: int) -> tuple[Tensor, Tensor, float] | None:
        a = self.model.spec.attention["self"]
        parts = [a.qkv] if a.qkv else [a.q, a.k]
        got = self._block(i, {f"blocks.{i}.attn.{p}" for p in parts})
        proj = {(i, p): got[f"blocks.{i}.attn.{p}"] for p in parts}
        mod = resolve(self.model.base, a.path.format(i=i))
        return layer_qk(self.model.spec, mod, proj, i, self.n_heads, self.rotary)

    def weights(self, layer: int, head: int | None = None) -> Tensor:
        """(B, H, Tq, Tk) float32 weights of the layer (head given: (B, 1, Tq, Tk)), recomputed: every head by
        running block `layer` again on its kept input (its attention module's own weights); one head from its q and
        k (softmax(q.k * scaling + mask): the block runs only to its projections, and H - 1 heads are not
        computed) where the run checked that q.k reproduces the weights, else the same way as every head."""
        if head is not None and self.verified:
            got = self._qk(layer)
            if got is not None:
                q, k, scaling = got
                kv = head // (q.shape[1] // k.shape[1])
                s = raw_scores(q[:, head:head + 1], k[:, kv:kv + 1], scaling)           # (B, 1, Tq, Tk)
                return torch.nan_to_num(s.masked_fill(~self.allowed[layer][:, None], float("-inf")).softmax(-1))
        w = self._block(layer, {f"blocks.{layer}.attn.weights"})[f"blocks.{layer}.attn.weights"]
        w = w if head is None else w[:, head:head + 1]
        return w.detach().float().cpu().clone()

    def scores(self, layer: int, head: int) -> Tensor | None:
        """(B, Tq, Tk) raw scores q.k * scaling of one head before the mask, or None (not reproduced in the run)."""
        if not self.verified:
            return None
        got = self._qk(layer)
        if got is None:
            return None
        q, k, scaling = got
        kv = head // (q.shape[1] // k.shape[1])
        return raw_scores(q[:, head:head + 1], k[:, kv:kv + 1], scaling)[:, 0]

    def rows(self, query: int, layers: list[int]) -> list[Tensor]:
        """Per layer in `layers`: (B, H, Tk) weights of one query row, from that layer's q and k (the block run
        again only to its projections), or from the layer's recomputed weights where q.k was not reproduced."""
        out = []
        for i in layers:
            kept = self.kept[i]
            if query in kept:
                out.append(kept[query])
                continue
            got = self._qk(i) if self.verified else None
            if got is None:
                out.append(self.weights(i)[:, :, query])
                continue
            q, k, scaling = got
            s = raw_scores(q[:, :, query:query + 1], k, scaling)                     # (B, H, 1, Tk)
            ok = self.allowed[i][:, query][:, None, None]
            out.append(torch.nan_to_num(s.masked_fill(~ok, float("-inf")).softmax(-1))[:, :, 0])
        return out

    def norm(self, point: str) -> tuple[Tensor, Tensor]:
        """(B, T, D) input and output of the norm at hook point `point`, recomputed."""
        m = self.model
        names = {f"{point}.in", f"{point}.out"}
        block = re.match(r"^blocks\.(\d+)\.", point)
        final = m.final_norm is not None and self.final_input is not None and point == self._final_point()
        if block:
            got = self._block(int(block.group(1)), names)
        elif final:
            with torch.inference_mode():
                x = self.final_input.to(m.device)
                return x.float().cpu(), m.final_norm(x).detach().float().cpu()
        else:                                         # outside the blocks (an embedding norm, a head's norm): run
            got = self._rerun(names)                  # the model again from the ids, stopped right after it
        return got[f"{point}.in"].detach().float().cpu(), got[f"{point}.out"].detach().float().cpu()

    def _final_point(self) -> str:
        from .capture import point_name

        m = self.model
        path = next((p for _, _, p, mod in m.norms if mod is m.final_norm), "")
        return point_name(m.spec, path, m.hf)

    def _rerun(self, names: set[str]) -> dict[str, Any]:
        m = self.model
        kw: dict[str, Any] = dict(return_dict=True)
        if self.attention_mask is not None:
            kw["attention_mask"] = self.attention_mask
        if m.causal:
            kw.update(use_cache=False, logits_to_keep=1)
        take = _Take(names)
        with torch.inference_mode(), hooks.active(hooks.merged(self.ambient, take)):
            try:
                m.hf(input_ids=self.ids, **kw)
            except _Stop:
                pass
        if take.left:
            raise RuntimeError(f"the model did not pass {sorted(take.left)} when run again")
        return take.cache
