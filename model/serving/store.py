"""What a shared server may load, and how much of it it keeps.

A link or the sidebar names a model by a string anyone can write, so the server decides what such a
name may reach (`LinkPolicy`, set by whoever runs the server):

  default             built-in models and the suggested hub ids only
  LAB_ALLOW_FOLDERS=1 also model folders on the server's disk
  LAB_ALLOW_HUB=1     also any Hugging Face hub id

The Python API (`model.load`) and the command line are not restricted. `ModelStore` keeps loaded
models for every session under a byte budget (least recently used first out), keys folders by their
resolved real path (four symlinks to one folder are one model), and remembers a failed load for a
short time so a page rerun does not retry it. `TraceCache` does the same for traced runs.
"""
from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import InputError, ModelLoadError

SUGGESTED_HF = ["gpt2", "distilgpt2", "bert-base-uncased", "t5-small", "Helsinki-NLP/opus-mt-en-fr"]


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", ".", "~")) or "\\" in name


@dataclass(frozen=True)
class LinkPolicy:
    allow_folders: bool = False
    allow_hub: bool = False
    builtin: tuple[str, ...] = ()
    suggested: tuple[str, ...] = tuple(SUGGESTED_HF)

    @classmethod
    def from_env(cls) -> "LinkPolicy":
        from ..builtin import BUILTIN

        return cls(_flag("LAB_ALLOW_FOLDERS"), _flag("LAB_ALLOW_HUB"), tuple(BUILTIN))

    def resolve(self, name: str) -> str:
        """The name to load, or ModelLoadError saying why this server does not open it.

        Under the default policy no name touches the disk: a name that is not a built-in or a suggested id gets
        one message, whatever it points at. With folders allowed, "no such folder" and "not a model folder" get
        one identical message, so a link cannot probe which folders exist on the server.
        """
        name = (name or "").strip()
        if not name:
            raise ModelLoadError("No model name given.")
        if len(name) > 200 or any(ord(ch) < 32 for ch in name):
            raise ModelLoadError("That model name is not valid: it is too long or contains control characters.")
        if name in self.builtin or name in self.suggested:
            return name
        if is_trained_live_name(name):
            raise ModelLoadError(TRAINED_ELSEWHERE)
        hub_id = self.allow_hub and _looks_like_hub_id(name)
        if self.allow_folders and (not hub_id or _looks_like_path(name) or Path(name).expanduser().exists()):
            p = Path(name).expanduser()
            try:
                real = p.resolve(strict=True)
                ok = real.is_dir() and (real / "config.json").is_file()
            except (OSError, RuntimeError):
                ok = False
            if not ok:
                raise ModelLoadError("There is no model folder at that path (a folder saved with save_pretrained, "
                                     "or one written by python -m model.training.train).")
            return str(real)
        if hub_id:
            return name
        raise ModelLoadError(self.refusal(name))

    def refusal(self, name: str = "") -> str:
        """The message for a name this server does not open. It depends on the name's shape alone (a model trained
        live, a hub id, a folder path, anything else), never on the disk, so it never says whether a path exists."""
        if is_trained_live_name(name):
            return TRAINED_ELSEWHERE
        builtin = f" ({', '.join(self.builtin)})" if self.builtin else ""
        opens = (f"This server opens the built-in models{builtin} and the suggested Hugging Face models "
                 f"({', '.join(self.suggested)})")
        if _looks_like_hub_id(name) and not self.allow_hub:
            return (f"{opens}; other Hugging Face ids are off. The person running the server can allow any hub id "
                    "with LAB_ALLOW_HUB=1, if the server can reach the hub (it may have no network).")
        if (_looks_like_path(name) or "/" in name) and not self.allow_folders:
            return (f"{opens}; it does not open model folders named in a link or the sidebar. The person running the "
                    "server can allow that with LAB_ALLOW_FOLDERS=1.")
        switches = [s for s, on in (("any hub id with LAB_ALLOW_HUB=1", self.allow_hub),
                                    ("model folders with LAB_ALLOW_FOLDERS=1", self.allow_folders)) if not on]
        also = [w for w, on in (("Hugging Face ids (like gpt2 or Helsinki-NLP/opus-mt-en-fr)", self.allow_hub),
                                ("model folders on the server", self.allow_folders)) if on]
        msg = f"That is not a model name this server opens. {opens}" + (f", and {' and '.join(also)}" if also else "")
        return msg + "." + (f" The person running it can allow {' and '.join(switches)}." if switches else "")


TRAINED_ELSEWHERE = ("This model was trained in another browser session, and trained models live only in the session "
                     "that trained them: open Train it live to train one here, then save it to open it on every page.")


def is_trained_live_name(name: str) -> bool:
    """A name the Train it live page gives a model it saved for its session, e.g. "Transformer trained live (1a2b3c4d)"."""
    import re

    return re.fullmatch(r".{1,40} trained live \([0-9a-f]{8}\)", (name or "").strip()) is not None


def _looks_like_hub_id(name: str) -> bool:
    """`owner/name` or `name` of letters, digits, `-`, `_`, `.`; no `..`, no leading or trailing `.` or `-`."""
    import re

    return (re.fullmatch(r"[A-Za-z0-9][\w.\-]*(/[A-Za-z0-9][\w.\-]*)?", name) is not None and ".." not in name
            and "--" not in name and not name.endswith((".", "-")))


def model_bytes(m) -> int:
    """Bytes of a loaded model's parameters and buffers (shared tensors counted once)."""
    mod = getattr(m, "module", None) or getattr(m, "hf", None)
    if mod is None:
        return 0
    seen, total = set(), 0
    for t in list(mod.parameters()) + list(mod.buffers()):
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()
    return total


@dataclass
class _Failure:
    error: ModelLoadError
    until: float


# ----------------------------------------------------------------------------- model sizes, before building
MAX_SAFETENSORS_HEADER = 100 * 2**20


def _first(d: dict, *keys, default=0):
    for k in keys:
        v = d.get(k)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    return default


def params_from_hf_config(raw: dict) -> int:
    """Parameters a transformers config declares, counted in closed form (embeddings, attention and MLP
    matrices; biases and norms left out, so it errs low): no module is built, not even on the meta device."""
    text = raw.get("text_config") if isinstance(raw.get("text_config"), dict) else raw
    d = _first(text, "hidden_size", "n_embd", "d_model", "dim")
    V = _first(text, "vocab_size")
    P = _first(text, "max_position_embeddings", "n_positions")
    ff = _first(text, "intermediate_size", "n_inner", "d_ff", "encoder_ffn_dim", "hidden_dim", default=4 * d) or 4 * d
    enc = _first(text, "encoder_layers", "num_layers", "n_layer", "num_hidden_layers", "n_layers")
    dec = _first(text, "decoder_layers", "num_decoder_layers", default=0)
    if text.get("is_encoder_decoder") and not dec:
        dec = enc
    block = 4 * d * d + 2 * d * ff
    return V * d + P * d + (enc + dec) * block + dec * 4 * d * d


def params_from_safetensors(folder: Path, limit_files: int = 200) -> int:
    """Parameters in a folder's *.safetensors files, read from their headers only (8 bytes + a JSON header)."""
    import json

    total = 0
    for f in sorted(folder.glob("*.safetensors"))[:limit_files]:
        try:
            with open(f, "rb") as fh:
                n = int.from_bytes(fh.read(8), "little")
                if not 0 < n <= MAX_SAFETENSORS_HEADER:
                    continue
                header = json.loads(fh.read(n))
        except (OSError, ValueError):
            continue                                   # the loader says what is wrong with the file
        for k, v in header.items():
            if k != "__metadata__" and isinstance(v, dict) and isinstance(v.get("shape"), list):
                numel = 1
                for s in v["shape"]:
                    numel *= int(s) if isinstance(s, int) else 0
                total += numel
    return total


def params_from_lab_config(cfg) -> int:
    """Parameters of a built-in-format checkpoint, from its CheckpointConfig (no module built)."""
    m = cfg.model
    if cfg.type in ("lstm-lm", "rnn-lm"):
        V, e, h, L = (int(m.get(k, dflt)) for k, dflt in (("vocab_size", 256), ("d_embed", 128), ("d_hidden", 256),
                                                             ("n_layers", 2)))
        gates = 4 if cfg.type == "lstm-lm" else 1
        return V * e + gates * (e * h + h * h) + gates * 2 * h * h * max(L - 1, 0) + h * V
    d, ff, L = int(m.get("d_model", 128)), int(m.get("d_ff", 512)), int(m.get("n_layers", 3))
    V, Vs, enc, P = (int(m.get(k, dflt)) for k, dflt in (("vocab_size", 256), ("src_vocab_size", 0),
                                                         ("n_encoder_layers", 0), ("max_len", 64)))
    head = 0 if m.get("tie_embeddings", True) else V * d
    pos = P * d if m.get("pos_encoding") == "learned" else 0
    return (V + Vs) * d + head + pos * (2 if enc else 1) + (L + enc) * (4 * d * d + 2 * d * ff) + (L if enc else 0) * 4 * d * d


def model_bytes_estimate(name: str) -> int | None:
    """float32 bytes of the model `name` (a built-in, a built-in-format folder or a transformers folder), from its
    config and its safetensors headers, before anything is built; None for a hub id (not on disk yet)."""
    import json

    from ..builtin import BUILTIN, CHECKPOINTS, is_checkpoint_folder
    from ..checkpoint import read_config

    folder = CHECKPOINTS / name if name in BUILTIN else Path(name).expanduser()
    if name in BUILTIN or is_checkpoint_folder(folder):
        return 4 * params_from_lab_config(read_config(folder))      # a malformed config: ModelLoadError here
    try:
        if not (folder / "config.json").is_file():
            return None
        raw = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None                                    # the loader gives the message
    if not isinstance(raw, dict):
        return None
    return 4 * max(params_from_hf_config(raw), params_from_safetensors(folder))


def budget_error(size: int, budget: int, estimated: bool = False) -> ModelLoadError:
    return ModelLoadError(f"That model needs {'about ' if estimated else ''}{size / 2**30:,.1f} GiB, more than this "
                          f"server's budget for models ({budget / 2**30:.1f} GiB, LAB_MODEL_BUDGET_GB).")


@dataclass
class ModelStore:
    """Loaded models shared by every session, under a byte budget.

    A model's size is estimated from its config and safetensors headers before anything is built, and one over
    the budget is refused then; every failed load (a refusal, a malformed config, anything the loader raised) is
    remembered for `failure_ttl` seconds, so a page rerun does not retry it."""

    budget_bytes: int = int(float(os.environ.get("LAB_MODEL_BUDGET_GB", "4")) * 2**30)
    failure_ttl: float = 30.0
    loader: Callable = None                   # (name, device) -> LabModel; model.load by default
    estimator: Callable = model_bytes_estimate  # name -> bytes or None, before loading
    _models: OrderedDict = field(default_factory=OrderedDict)
    _failed: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loading: dict = field(default_factory=dict)

    def get(self, name: str, device: str = "auto"):
        key = (name, device)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key][0]
            f = self._failed.get(key)
            if f is not None and f.until > time.monotonic():
                raise f.error
            ev = self._loading.get(key)
            if ev is None:
                ev = self._loading[key] = threading.Event()
                mine = True
            else:
                mine = False
        if not mine:                          # another session is loading the same model: wait for it
            ev.wait(600)
            return self.get(name, device)
        try:
            est = self.estimator(name) if self.estimator is not None else None
            if est is not None and est > self.budget_bytes:
                raise budget_error(est, self.budget_bytes, estimated=True)
            if self.loader is None:
                from .. import load as loader
            else:
                loader = self.loader
            m = loader(name, device)
            size = model_bytes(m)
            with self._lock:
                if size > self.budget_bytes:
                    raise budget_error(size, self.budget_bytes)
                while self._models and self.used_bytes() + size > self.budget_bytes:
                    self._models.popitem(last=False)          # least recently used goes first
                self._models[key] = (m, size)
                self._failed.pop(key, None)
            return m
        except Exception as e:
            err = e if isinstance(e, ModelLoadError) else ModelLoadError(
                f"Could not load that model: {type(e).__name__}: {e}")
            with self._lock:
                self._failed[key] = _Failure(err, time.monotonic() + self.failure_ttl)
            if err is e:
                raise
            raise err from e
        finally:
            with self._lock:
                self._loading.pop(key, None)
            ev.set()

    def used_bytes(self) -> int:
        return sum(s for _, s in self._models.values())

    def loaded(self) -> list[str]:
        with self._lock:
            return [k[0] for k in self._models]


def trace_bytes(obj) -> int:
    """Bytes held by the tensors and arrays of a run (or any nest of dataclasses, lists and dicts). A storage
    shared by several tensors (a compact trace's block inputs are its hidden states) and an object reached twice
    (the replay every compact layer points to) count once."""
    import dataclasses

    import numpy as np

    seen: set[int] = set()
    visited: set[int] = set()

    def walk(o) -> int:
        if isinstance(o, (list, tuple, dict)) or (dataclasses.is_dataclass(o) and not isinstance(o, type)):
            if id(o) in visited:
                return 0
            visited.add(id(o))
        if isinstance(o, torch.Tensor):
            return 0 if o.data_ptr() in seen or seen.add(o.data_ptr()) else o.numel() * o.element_size()
        if isinstance(o, np.ndarray):
            return o.nbytes
        if isinstance(o, (str, bytes)):                 # e.g. a figure's embedded image
            return len(o)
        if isinstance(getattr(o, "nbytes", None), int):  # an object that says what it holds (a cached figure)
            return o.nbytes
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return sum(walk(getattr(o, f.name)) for f in dataclasses.fields(o))
        if isinstance(o, dict):
            return sum(walk(v) for v in o.values())
        if isinstance(o, (list, tuple)):
            return sum(walk(v) for v in o)
        return 0

    return walk(obj)


# ----------------------------------------------------------------------------- traced runs, bounded before they start
COMPACT_ABOVE = 256          # Hugging Face self-attention traces above this many tokens are compact (model/hf/compact.py)
GRID_PIXELS = 128            # a compact trace's pooled grid: at most this many cells a side per head (model.trace)


def trace_estimate(arch, n_tokens: int, n_target: int | None = None, compact_above: int | None = COMPACT_ABOVE) -> int:
    """Bytes a traced run of `n_tokens` will hold, from the model's shape alone (before computing it).

    Full traces, per attention stack: layers x heads x Tq x Tk weights and raw scores (float32), the allowed mask;
    per norm its input and output (T x d_model); the hidden states; an LSTM's six gates and states per layer.

    Compact traces (a self-attention model above `compact_above` tokens, model/hf/compact.py): the hidden states
    ((L + 1) x T x d_model float32: the blocks' kept inputs are these), the mask the blocks were called with (a
    decoder's T x T float32, shared by every layer), the allowed mask (T x T bool), each head pooled to at most
    GRID_PIXELS cells a side (float16), one query row of every head (float32), four statistics per norm and token,
    the rotary (cos, sin). GPT-2 small: 50.0 MiB at 1,024 tokens, 246 MiB at 4,096 (its 4,096-position variant;
    measured 49.6 and 244.5 MiB).
    An encoder-decoder above `compact_above` keeps float16 weights (its translations are short).
    """
    T = max(int(n_tokens), 1)
    S = max(int(n_target or T), 1)
    L, H, d = max(arch.n_layers, 0), max(arch.n_heads, 1), max(arch.d_model, 1)
    if arch.n_heads <= 0:                                        # recurrent: gates, candidate, cell, hidden
        return 6 * L * T * d * 4 + 64 * 1024
    compact = compact_above is not None and max(T, S) > compact_above
    enc = max(arch.n_encoder_layers, 0)
    if compact and not enc:                                      # a compact self-attention trace
        f = -(-T // GRID_PIXELS)
        p = -(-T // f)
        decoder = "decoder" in getattr(arch, "family", "")       # its blocks are called with a T x T float mask
        dh = d // H
        return ((L + 1) * T * d * 4 + (T * T * 4 if decoder else 0) + T * T + L * H * p * p * 2 + L * H * T * 4
                + (2 * L + 1) * 4 * T * 4 + 2 * T * dh * 4 + T * 17 + 64 * 1024)
    per_cell = 2 if compact else 8                               # weights (+ raw scores when not compact)
    act = 2 if compact else 4

    def stack(layers: int, tq: int, tk: int) -> int:
        return layers * H * tq * tk * per_cell + layers * tq * tk        # + the allowed mask (bool)

    if enc:                                                      # encoder self, decoder self, cross
        att = stack(enc, T, T) + stack(L, S, S) + stack(L, S, T)
        norms = (2 * enc + 1) * 2 * T * d * act + (3 * L + 1) * 2 * S * d * act
        hidden = (enc + 1) * T * d * 4 + (L + 1) * S * d * 4
    else:
        att = stack(L, T, T)
        norms = (2 * L + 1) * 2 * T * d * act
        hidden = (L + 1) * T * d * 4                             # the residual stream after each block, float32
    return att + norms + hidden + 64 * 1024                               # + tokens, next-word logits, small arrays


def working_estimate(arch, n_tokens: int, n_target: int | None = None) -> int:
    """Bytes a traced run needs while it runs, besides what it keeps (trace_estimate): the forward pass's working
    memory, from the model's shape alone. Attention (eager, one layer at a time) holds a layer's scores and weights,
    (B, H, Tq, Tk) float32 each, while the next block's inputs, q/k/v and the feed-forward's 4 x d_model activations
    are alive: 2 x H x Tq x Tk x 4 + 8 x T x d_model x 4 bytes per stack, the largest stack counting. Measured on
    GPT-2 small at 1,024 tokens: the heap peaked 111-128 MB above what the run kept (estimate 126 MB); on its
    4,096-position variant (1 torch thread) the anonymous memory peaked 90 / 392 / 1,672 MB above what the run kept
    at 1,024 / 2,048 / 4,096 tokens (estimates 126 / 453 / 1,711 MB). At 4,096 tokens eager attention's 805 MB a
    layer, twice, passes the default budget: such a text is read where traces have a larger budget (max_tokens_for)."""
    T = max(int(n_tokens), 1)
    S = max(int(n_target or T), 1)
    H, d = max(arch.n_heads, 1), max(arch.d_model, 1)
    if arch.n_heads <= 0:                                        # recurrent: a few (T, d) activations
        return 4 * T * d * 4
    sizes = [(T, T)] + ([(S, S), (S, T)] if max(arch.n_encoder_layers, 0) else [])
    return max(2 * H * q * k * 4 + 8 * max(q, k) * d * 4 for q, k in sizes)


def run_working(m, text: str, target=None) -> int | None:
    """working_estimate for this model and text (tokenizing only), or None where it cannot be told."""
    try:
        n = len(m.tokenize(text).ids)
        n_target = None
        if getattr(m.arch, "n_encoder_layers", 0):
            n_target = len(target) + 1 if isinstance(target, (list, tuple)) else getattr(m, "max_len", n)
        return working_estimate(m.arch, n, n_target)
    except Exception:
        return None


def run_estimate(m, text: str, target=None) -> int | None:
    """trace_estimate for this model and text (tokenizing only), or None where it cannot be told."""
    try:
        n = len(m.tokenize(text).ids)
        n_target = None
        if getattr(m.arch, "n_encoder_layers", 0):
            n_target = len(target) + 1 if isinstance(target, (list, tuple)) else getattr(m, "max_len", n)
        compact = COMPACT_ABOVE if getattr(m, "source", "") == "hf" else None
        return trace_estimate(m.arch, n, n_target, compact)
    except Exception:                                            # bad text: the run itself says what is wrong
        return None


def trace_budget_bytes() -> int:
    """The server's byte budget for traces (LAB_TRACE_BUDGET_MB, default 1 GiB)."""
    return int(float(os.environ.get("LAB_TRACE_BUDGET_MB", "1024")) * 2**20)


def run_need(arch, n_tokens: int, n_target: int | None = None, compact_above: int | None = COMPACT_ABOVE) -> int:
    """Bytes admission reserves for a traced run while it runs: what it will hold and its working memory."""
    return trace_estimate(arch, n_tokens, n_target, compact_above) + working_estimate(arch, n_tokens, n_target)


def max_tokens_for(m, budget_bytes: int, positions: int | None = None) -> int:
    """The longest input whose traced run fits `budget_bytes` while it runs (the trace it keeps and its forward pass's
    working memory, `run_need`: admission refuses more), and no longer than the model's positions.

    `positions`: the model's own limit (its position table / max_position_embeddings), read from the model when
    not given (`m.positions_limit`, a Hugging Face config's max_position_embeddings or n_positions, else
    m.max_len). A Hugging Face model's max_len is this with the trace budget (model/hf/families.py)."""
    if positions is None:
        cfg = getattr(getattr(m, "hf", None), "config", None)
        positions = (getattr(m, "positions_limit", None) or getattr(cfg, "max_position_embeddings", None)
                     or getattr(cfg, "n_positions", None) or getattr(m, "max_len", 0))
    compact = COMPACT_ABOVE if getattr(m, "source", "") == "hf" else None
    seq2seq = bool(getattr(m.arch, "n_encoder_layers", 0))
    fits = lambda n: run_need(m.arch, n, n if seq2seq else None, compact) <= budget_bytes
    lo, hi = 0, int(positions)
    if compact is not None and hi > compact:      # the need grows with T up to COMPACT_ABOVE and again after it
        if fits(compact):                         # (it drops where traces turn compact): bisect the part that decides
            lo = compact
        else:
            hi = compact
    while lo < hi:                                               # the estimate grows with T: bisect
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


@dataclass(frozen=True)
class Waiting:
    """Where a caller's computation stands while it waits: for a page to show ("2 ahead of you")."""

    ahead: int          # computations admitted before this one (0: it starts as soon as a slot frees)
    running: int        # heavy computations running now
    limit: int          # at most this many at once
    queued: bool        # False: someone else is computing this very result; the caller waits for it

    def __str__(self) -> str:
        if not self.queued:
            return "Another session is computing this same result; using theirs as soon as it is ready."
        return (f"Waiting for the server: {self.ahead} ahead of you ({self.running} running, at most {self.limit} "
                "at once).")


@dataclass(eq=False)
class _Flight:
    key: Any
    heavy: bool
    estimate: int
    working: int = 0                 # reserved while it runs, on top of `estimate` (at most what the budget leaves)
    state: str = "queued"            # queued -> admitted (a slot is held) -> running -> done
    waiters: int = 0
    orphan_since: float | None = None  # when its last waiter left (a rerun of that session may come back for it)
    value: Any = None
    error: BaseException | None = None


def _env_int(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


@dataclass
class TraceCache:
    """Traced runs (or any computed view) by key, bounded before the work starts, shared by every session.

    - single flight: one computation per key at a time; a second caller of the same key waits for the first;
    - admission: at most `max_running` heavy computations at once (LAB_MAX_TRACES, default 1: one trace uses
      both cores of a small server), the others queued in order, their place told through `on_wait`;
    - a heavy computation's estimated bytes (from its shape, `trace_estimate`) and its working memory while it
      runs (`working_estimate`) are reserved against the budget while it runs; the cache evicts least recently used
      results to make room, and a computation whose estimate and working memory together pass the whole budget is
      refused before anything is computed (a model's longest input is the longest that fits: max_tokens_for), so
      what the cache holds and what runs never pass the budget together;
    - a queued computation whose every waiter has gone (its `on_wait` raised, e.g. the session stopped or
      reran) keeps its place for `orphan_grace` seconds (the same page rerun comes back for it), is never started
      meanwhile, and is then dropped.
    """

    budget_bytes: int = field(default_factory=lambda: trace_budget_bytes())
    max_running: int = _env_int("LAB_MAX_TRACES", 1)
    wait_timeout: float = float(os.environ.get("LAB_TRACE_WAIT_S", "300"))
    poll: float = 0.5                       # seconds between on_wait calls while waiting
    orphan_grace: float = 3.0               # a queued job whose waiters all left keeps its place this long
    clock: Callable[[], float] = time.monotonic
    _items: OrderedDict = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _flights: dict = field(default_factory=dict)
    _queue: list = field(default_factory=list)
    _used: int = 0
    _running: int = 0
    _reserved: int = 0

    def __post_init__(self) -> None:
        self._cond = threading.Condition(self._lock)

    def get(self, key, compute: Callable, *, estimate: int | None = None, heavy: bool | None = None,
            on_wait: Callable[[Waiting], None] | None = None, timeout: float | None = None,
            working: int | None = None):
        """The cached value of `key`, else compute() once (whoever else asks meanwhile waits for it).

        heavy (default: an estimate was given): wait for an admission slot first; `estimate` (what the result holds)
        and `working` (what computing it needs besides) are reserved while it runs. on_wait(Waiting) is called
        (outside any lock) when the caller's place changes and every `poll` seconds while it waits; if it raises,
        the caller stops waiting, and its queued computation, if no other caller waits for it, keeps its place for
        `orphan_grace` seconds without starting, then is dropped.
        Raises InputError when the estimate and working memory together cannot fit the budget, or when no result came
        within `timeout`."""
        heavy = estimate is not None if heavy is None else heavy
        deadline = time.monotonic() + (self.wait_timeout if timeout is None else timeout)
        with self._cond:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]
            if estimate is not None and estimate + int(working or 0) > self.budget_bytes:
                held = f"hold about {estimate / 2**20:,.0f} MB" + (
                    f" and need {int(working) / 2**20:,.0f} MB more while it is computed" if working else "")
                raise InputError(f"This would {held}, more than this server keeps for all traced runs together "
                                 f"({self.budget_bytes / 2**20:,.0f} MB, LAB_TRACE_BUDGET_MB). Use a shorter text.")
            f = self._flights.get(key)
            if f is None:
                f = self._flights[key] = _Flight(key, heavy, int(estimate or 0), int(working or 0),
                                                 state="queued" if heavy else "admitted")
                if heavy:
                    self._queue.append(f)
            f.waiters += 1
            f.orphan_since = None
        timed_out = False
        try:
            last, last_t = None, 0.0
            while True:
                report = None
                with self._cond:
                    self._admit()
                    if f.state == "done":
                        if f.error is not None:
                            raise f.error
                        return f.value
                    if f.state == "admitted":
                        f.state = "running"
                        break
                    now = time.monotonic()
                    if now >= deadline:
                        timed_out = True
                        raise InputError("The server is busy with other students' texts and this one did not start "
                                         "in time. Try again in a minute.")
                    status = self._status(f)
                    if on_wait is not None and (status != last or now - last_t >= self.poll):
                        report = status
                    else:
                        self._cond.wait(min(deadline - now, self.poll))
                if report is not None:
                    last, last_t = report, time.monotonic()
                    on_wait(report)
            return self._run(f, compute)
        finally:
            with self._cond:
                f.waiters -= 1
                if f.waiters == 0 and f.state == "queued" and self.orphan_grace > 0 and not timed_out:
                    f.orphan_since = self.clock()     # a rerun of the same page comes back within the grace
                elif f.waiters == 0 and f.state in ("queued", "admitted"):
                    self._drop(f)

    def _run(self, f: _Flight, compute: Callable):
        try:
            value = compute()
        except Exception as e:
            with self._cond:
                self._finish(f, None, e, 0)
            raise
        except BaseException:                        # this caller was stopped: hand the work to another waiter
            with self._cond:
                self._release(f)
                f.state = "queued" if f.heavy else "admitted"
                if f.heavy:
                    self._queue.insert(0, f)
                self._cond.notify_all()
            raise
        size = trace_bytes(value)
        with self._cond:
            self._finish(f, value, None, size)
        return value

    # the methods below run under self._lock
    def _admit(self) -> None:
        now = self.clock()
        for f in [f for f in self._queue if f.orphan_since is not None and now - f.orphan_since >= self.orphan_grace]:
            self._drop(f)                            # nobody came back for it
        admitted = False
        queued = [f for f in self._queue if f.orphan_since is None]     # an orphan keeps its place, runs only if claimed
        while queued and self._running < self.max_running:
            f = queued[0]
            need = f.estimate + f.working
            while self._items and self._used + self._reserved + need > self.budget_bytes:
                self._evict()
            if self._used + self._reserved + need > self.budget_bytes:
                break                                # wait for a running computation to finish
            queued.pop(0)
            self._queue.remove(f)
            f.state = "admitted"
            self._running += 1
            self._reserved += need
            admitted = True
        if admitted:
            self._cond.notify_all()

    def _status(self, f: _Flight) -> Waiting:
        queued = f.state == "queued"
        return Waiting(self._queue.index(f) if queued else 0, self._running, self.max_running, queued)

    def _release(self, f: _Flight) -> None:
        if f.heavy and f.state in ("admitted", "running"):
            self._running -= 1
            self._reserved -= f.estimate + f.working

    def _drop(self, f: _Flight) -> None:
        self._release(f)
        if f in self._queue:
            self._queue.remove(f)
        self._flights.pop(f.key, None)
        f.state = "done"
        f.error = InputError("Nobody waits for this result any more.")
        self._cond.notify_all()

    def _finish(self, f: _Flight, value, error, size: int) -> None:
        self._release(f)
        f.state, f.value, f.error = "done", value, error
        self._flights.pop(f.key, None)
        if error is None and size <= self.budget_bytes:
            while self._items and self._used + self._reserved + size > self.budget_bytes:
                self._evict()
            self._items[f.key] = (value, size)
            self._used += size
        self._cond.notify_all()

    def _evict(self) -> None:
        _, (_, size) = self._items.popitem(last=False)          # least recently used goes first
        self._used -= size

    def used_bytes(self) -> int:
        with self._lock:
            return self._used

    def reserved_bytes(self) -> int:
        """Bytes estimated for the heavy computations running now (what they will hold and their working memory)."""
        with self._lock:
            return self._reserved

    def waiting(self, key) -> Waiting | None:
        """Where the computation of `key` stands (None: not queued or running)."""
        with self._lock:
            self._admit()
            f = self._flights.get(key)
            return None if f is None else self._status(f)


# ----------------------------------------------------------------------------- torch's threads in a shared server
DEFAULT_TORCH_THREADS = 1    # measured: `python -m bench --only threads` (README: one trace at a time, busy cores)
_threads_applied: list[int] = []


def torch_threads() -> int:
    """Intra-op threads for torch in the server: LAB_TORCH_THREADS (a whole number >= 1; 0 or "auto" keeps
    torch's own default), else DEFAULT_TORCH_THREADS. Many sessions on few cores: each trace using every core
    makes them fight for the cores with each other and with the server's own Python thread."""
    raw = os.environ.get("LAB_TORCH_THREADS", "").strip().lower()
    if raw in ("0", "auto"):
        return 0
    try:
        return max(1, int(raw)) if raw else DEFAULT_TORCH_THREADS
    except ValueError:
        return DEFAULT_TORCH_THREADS


def apply_torch_threads() -> int:
    """Set torch's intra-op threads for this process once (start-up); returns the number in use."""
    if not _threads_applied:
        n = torch_threads()
        if n:
            torch.set_num_threads(n)
        _threads_applied.append(torch.get_num_threads())
    return _threads_applied[0]
