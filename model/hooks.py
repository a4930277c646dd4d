"""Hook points: named places in a forward pass where one run may record or replace what passes through.

A hook point is an identity. Outside a run that asks for something it costs one lookup and returns its
input unchanged; inside `with hooks.active(HookRun(...))` it can

  record   keep the tensor under its name (a trace, a cache for activation patching), and
  edit     replace it with what a function returns (head ablation, no positions, patching).

The run lives in a ContextVar: it belongs to the calling thread only, so one model object serves
every session of the server while each call records or breaks only its own pass. Nothing is stored
on the module.

Names are the same for every model (built-in or Hugging Face), written like the trace:

  pos                                  what is added to the token embeddings (positions)
  blocks.{i}.resid_pre                 the residual stream entering block i (resid_post of block i-1)
  blocks.{i}.attn.scores|weights       (B, H, Tq, Tk) before the mask / after softmax
  blocks.{i}.attn.head_out             (B, H, Tq, d_k) each head's output, before W_o concatenates them
  blocks.{i}.attn.out                  (B, T, D) the attention sublayer's output (after W_o)
  blocks.{i}.cross.*                   the same for a decoder's cross-attention
  blocks.{i}.mlp.out                   (B, T, D) the feed-forward sublayer's output
  blocks.{i}.ln_attn|ln_cross|ln_ffn.in|out   a LayerNorm's input and output
  blocks.{i}.attn.skip|cross.skip|mlp.skip    the residual path around a sublayer ("x" in x + f(x))
  blocks.{i}.resid_post                the residual stream leaving block i
  ln_final.in|out                      a pre-LN stack's final LayerNorm

An encoder-decoder prefixes them with its stack: `encoder.blocks.0.attn.weights`,
`decoder.blocks.1.cross.head_out`. The Hugging Face families reach the same names through forward hooks
at the module paths their architecture table lists (model/hf/architectures.py).
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Callable, Iterator

from torch import Tensor, nn

Edit = Callable[[Tensor], Tensor]

_RUN: ContextVar["HookRun | None"] = ContextVar("lab_hook_run", default=None)


@dataclass
class HookRun:
    """What one forward pass records and replaces.

    edits:   name -> function of the tensor that passes there, returning the tensor to use instead
    record:  names to keep (a set), a predicate on names, or True for every point
    scale:   the factor on q.k (None: the paper's 1/sqrt(d_k)); a run-wide option of the formula
    """

    edits: dict[str, Edit] = field(default_factory=dict)
    record: set[str] | Callable[[str], bool] | bool = False
    scale: float | None = None
    cache: dict[str, Tensor] = field(default_factory=dict)   # name -> tensor as it left the point, in forward order

    def records(self, name: str) -> bool:
        r = self.record
        if isinstance(r, bool):
            return r
        return r(name) if callable(r) else name in r

    def wants(self, name: str) -> bool:
        """Whether this run reads or replaces the point `name` (the attention computes weights only then)."""
        return name in self.edits or self.records(name)

    def note(self, name: str, x: Tensor) -> None:
        """Record `x` under `name` if asked (a value beside a point, that no edit may change: a mask)."""
        if self.records(name):
            self.cache[name] = x

    def visit(self, name: str, x: Tensor) -> Tensor:
        f = self.edits.get(name)
        if f is not None:
            x = f(x)
        if self.records(name):
            self.cache[name] = x
        return x


def current() -> HookRun | None:
    """The run of the calling thread, or None (the plain forward pass)."""
    return _RUN.get()


@contextmanager
def active(run: HookRun | None) -> Iterator[HookRun | None]:
    """Make `run` the calling thread's run for the duration of the block (None: leave things as they are)."""
    if run is None:
        yield None
        return
    token = _RUN.set(run)
    try:
        yield run
    finally:
        _RUN.reset(token)


def merged(*runs: HookRun | None) -> HookRun | None:
    """One run doing what each given run does, in order: each applies its edit, then records what it left
    (so a trace given last records the edited values), each into its own cache."""
    runs = tuple(r for r in runs if r is not None)
    if len(runs) <= 1:
        return runs[0] if runs else None
    return _Merged(runs)


class _Merged(HookRun):
    def __init__(self, runs: tuple[HookRun, ...]) -> None:
        scales = [r.scale for r in runs if r.scale is not None]
        super().__init__(scale=scales[-1] if scales else None)
        self.runs = runs

    def records(self, name: str) -> bool:
        return any(r.records(name) for r in self.runs)

    def wants(self, name: str) -> bool:
        return any(r.wants(name) for r in self.runs)

    def note(self, name: str, x: Tensor) -> None:
        for r in self.runs:
            r.note(name, x)

    def visit(self, name: str, x: Tensor) -> Tensor:
        for r in self.runs:
            x = r.visit(name, x)
        return x


class HookPoint(nn.Module):
    """An identity with a name: the calling thread's run (if any) may record or replace what passes."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def forward(self, x: Tensor) -> Tensor:
        run = _RUN.get()
        return x if run is None else run.visit(self.name, x)

    def extra_repr(self) -> str:
        return repr(self.name)


def hook_points(module: nn.Module) -> list[str]:
    """Every hook point's name in a module, in module order."""
    return [m.name for m in module.modules() if isinstance(m, HookPoint)]
