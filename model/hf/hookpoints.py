"""The lab's hook points (model/hooks.py) on a Hugging Face model, placed from its architecture table.

`install(hf, spec)` registers forward hooks once, at load, on the modules the table names. Each hook asks the
calling thread's run (`hooks.current()`) whether it reads or replaces that point and otherwise returns at
once, so one shared model serves every session and only a call that asks is touched. The names are the
built-in Transformer's:

  {p}pos                        the table's position embedding, a rotary module's (cos, sin), T5's relative bias
  {p}blocks.{i}.resid_pre       a block's input hidden states;  {p}blocks.{i}.resid_post its output
  {p}blocks.{i}.attn.head_out   (B, H, T, d_head): the input of W_o, split into its heads
  {p}blocks.{i}.attn.out        W_o's output;  `cross` instead of `attn` for a decoder's cross-attention
  {p}blocks.{i}.ffn.out         the feed-forward sublayer's output, before the residual
  blocks.{i}.attn.weights       (B, H, T, T) a self-attention layer's weights after softmax, as eager attention
                                returned them: read only (noted, never replaced; they are already used)
  blocks.{i}.resid_pre.call     noted: the block's call as the model made it, (args, kwargs) before any edit,
                                so a compact trace can run that one block again (model/hf/compact.py)

with {p} "" for a single stack, "encoder." or "decoder." for an encoder-decoder.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .. import hooks
from .architectures import ArchSpec
from .capture import PREFIX, point_name, resolve


def _layers(base: nn.Module, path: str) -> list[nn.Module]:
    out, i = [], 0
    while True:
        try:
            out.append(resolve(base, path.format(i=i)))
        except (AttributeError, IndexError):
            return out
        i += 1


def _n_heads(attn: nn.Module, default: int) -> int:
    for name in ("num_heads", "n_heads", "num_attention_heads", "n_head"):
        v = getattr(attn, name, None)
        if isinstance(v, int) and v > 0:
            return v
    return default


def _visit_first(name: str, value: Any) -> Any:
    """Run the point on a tensor, or on the first element of a module's tuple output."""
    run = hooks.current()
    if run is None or not run.wants(name):
        return None
    if isinstance(value, tuple):
        return (run.visit(name, value[0]), *value[1:])
    return run.visit(name, value)


def _head_out_hook(name: str, n_heads: int):
    def pre(_mod, args):
        run = hooks.current()
        if run is None or not run.wants(name):
            return None
        x = args[0]                                                   # (B, T, H * d_head): heads concatenated
        B, T, D = x.shape
        heads = x.view(B, T, n_heads, D // n_heads).transpose(1, 2)   # (B, H, T, d_head)
        heads = run.visit(name, heads)
        return (heads.transpose(1, 2).reshape(B, T, D), *args[1:])
    return pre


def _block_pre_hook(name: str):
    call = f"{name}.call"

    def pre(_mod, args, kwargs):
        run = hooks.current()
        if run is None:
            return None
        if run.records(call):                   # the call as made, before any edit (a replay re-applies the edits)
            run.note(call, (args, kwargs))
        if not run.wants(name):
            return None
        if args:
            return (run.visit(name, args[0]), *args[1:]), kwargs
        kwargs = dict(kwargs)
        kwargs["hidden_states"] = run.visit(name, kwargs["hidden_states"])
        return args, kwargs
    return pre


def _output_hook(name: str, whole: bool = False):
    """A module's output (or the first element of its tuple) through the point; whole: the tuple itself (a rotary
    module's (cos, sin))."""
    def post(_mod, _args, output):
        if whole:
            run = hooks.current()
            return run.visit(name, output) if run is not None and run.wants(name) else None
        return _visit_first(name, output)
    return post


def _weights_hook(name: str):
    """A self-attention module's weights (the second element of its output, eager attention), noted for a run that
    records them; the output itself is never changed."""
    def post(_mod, _args, output):
        run = hooks.current()
        if run is None or not run.records(name):
            return None
        if isinstance(output, tuple) and len(output) > 1 and isinstance(output[1], Tensor):
            run.note(name, output[1])
        return None
    return post


def _input_hook(name: str):
    """A module's first input through the point (a norm's input: `.in`)."""
    def pre(_mod, args):
        run = hooks.current()
        if run is None or not run.wants(name):
            return None
        return (run.visit(name, args[0]), *args[1:])
    return pre


def install(hf: nn.Module, spec: ArchSpec, n_heads: int, norm_paths: list[str] = ()) -> list[str]:
    """Register the table's hook points on `hf` (once, at load), and `.in` / `.out` points on every norm at
    `norm_paths` (module paths from the root, named by capture.point_name); returns their names."""
    base = hf.base_model
    names: list[str] = []

    def hook(mod: nn.Module, name: str, pre=None, post=None, pre_kwargs=False) -> None:
        if pre is not None:
            mod.register_forward_pre_hook(pre, with_kwargs=pre_kwargs)
        if post is not None:
            mod.register_forward_hook(post)
        names.append(name)

    for stack, a in spec.attention.items():
        if not a.o:
            continue
        p, sub = PREFIX[stack], ("cross" if stack == "cross" else "attn")
        attns = _layers(base, a.path)
        for i, o in enumerate(_layers(base, a.o)):
            h = _n_heads(attns[i], n_heads) if i < len(attns) else n_heads
            hook(o, f"{p}blocks.{i}.{sub}.head_out", pre=_head_out_hook(f"{p}blocks.{i}.{sub}.head_out", h))
            hook(o, f"{p}blocks.{i}.{sub}.out", post=_output_hook(f"{p}blocks.{i}.{sub}.out"))
    for stack, st in spec.stacks.items():
        p = PREFIX[stack]
        for i, block in enumerate(_layers(base, st.block)):
            hook(block, f"{p}blocks.{i}.resid_pre", pre=_block_pre_hook(f"{p}blocks.{i}.resid_pre"), pre_kwargs=True)
            hook(block, f"{p}blocks.{i}.resid_post", post=_output_hook(f"{p}blocks.{i}.resid_post"))
        for i, ffn in enumerate(_layers(base, st.ffn)):
            hook(ffn, f"{p}blocks.{i}.ffn.out", post=_output_hook(f"{p}blocks.{i}.ffn.out"))
    for stack, path in spec.position.modules:
        hook(resolve(base, path), f"{PREFIX[stack]}pos", post=_output_hook(f"{PREFIX[stack]}pos", whole=True))
    a = spec.attention.get("self")
    for i, attn in enumerate(_layers(base, a.path) if a else []):    # q/k projections (raw scores are rebuilt)
        for part in ([a.qkv] if a.qkv else [a.q, a.k]):
            hook(getattr(attn, part), f"blocks.{i}.attn.{part}", post=_output_hook(f"blocks.{i}.attn.{part}"))
        hook(attn, f"blocks.{i}.attn.weights", post=_weights_hook(f"blocks.{i}.attn.weights"))
    modules = dict(hf.named_modules())
    for path in norm_paths:
        name = point_name(spec, path, hf)
        hook(modules[path], f"{name}.in", pre=_input_hook(f"{name}.in"))
        hook(modules[path], f"{name}.out", post=_output_hook(f"{name}.out"))
    return names


def no_positions_edit(kind: str):
    """The edit of a `pos` point that removes positions: nothing added (tables, relative bias), or no rotation
    (cos 1, sin 0) for rotary models."""
    if kind == "rotary":
        return lambda cs: (torch.ones_like(cs[0]), torch.zeros_like(cs[1]))
    return lambda x: torch.zeros_like(x)

