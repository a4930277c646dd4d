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
from typing import Callable

import torch

from .errors import ModelLoadError

SUGGESTED_HF = ["gpt2", "distilgpt2", "bert-base-uncased", "t5-small", "Helsinki-NLP/opus-mt-en-fr"]
NOT_ALLOWED_FOLDER = ("This server does not open model folders from a link or the sidebar. The person running it "
                      "can allow that with LAB_ALLOW_FOLDERS=1.")


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
        from .builtin import BUILTIN

        return cls(_flag("LAB_ALLOW_FOLDERS"), _flag("LAB_ALLOW_HUB"), tuple(BUILTIN))

    def resolve(self, name: str) -> str:
        """The name to load, or ModelLoadError saying why this server does not open it.

        "No such folder" and "not a model folder" get one identical message, so a link cannot probe
        which folders exist on the server.
        """
        name = (name or "").strip()
        if not name:
            raise ModelLoadError("No model name given.")
        if len(name) > 200 or any(ord(ch) < 32 for ch in name):
            raise ModelLoadError("That model name is not valid: it is too long or contains control characters.")
        if name in self.builtin or name in self.suggested:
            return name
        if _looks_like_path(name) or Path(name).expanduser().exists():
            if not self.allow_folders:
                raise ModelLoadError(NOT_ALLOWED_FOLDER)
            p = Path(name).expanduser()
            try:
                real = p.resolve(strict=True)
                ok = real.is_dir() and (real / "config.json").is_file()
            except (OSError, RuntimeError):
                ok = False
            if not ok:
                raise ModelLoadError("There is no model folder at that path (a folder saved with `save_pretrained`, "
                                     "or one written by `python -m model.train`).")
            return str(real)
        if not self.allow_hub:
            raise ModelLoadError("This server opens the built-in models and the suggested Hugging Face models only "
                                 f"({', '.join(self.suggested)}). The person running it can allow any hub id with "
                                 "LAB_ALLOW_HUB=1.")
        return name


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


@dataclass
class ModelStore:
    """Loaded models shared by every session, under a byte budget."""

    budget_bytes: int = int(float(os.environ.get("LAB_MODEL_BUDGET_GB", "4")) * 2**30)
    failure_ttl: float = 30.0
    loader: Callable = None                   # (name, device) -> LabModel; model.load by default
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
            if self.loader is None:
                from . import load as loader
            else:
                loader = self.loader
            m = loader(name, device)
            size = model_bytes(m)
            with self._lock:
                if size > self.budget_bytes:
                    raise ModelLoadError(f"That model needs {size / 2**30:.1f} GiB, more than this server's budget "
                                         f"for models ({self.budget_bytes / 2**30:.1f} GiB, LAB_MODEL_BUDGET_GB).")
                while self._models and self.used_bytes() + size > self.budget_bytes:
                    self._models.popitem(last=False)          # least recently used goes first
                self._models[key] = (m, size)
                self._failed.pop(key, None)
            return m
        except ModelLoadError as e:
            with self._lock:
                self._failed[key] = _Failure(e, time.monotonic() + self.failure_ttl)
            raise
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
    """Bytes held by the tensors and arrays of a run (or any nest of dataclasses, lists and dicts)."""
    import dataclasses

    import numpy as np

    seen: set[int] = set()

    def walk(o) -> int:
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


@dataclass
class TraceCache:
    """Traced runs (or any computed view) by key, under a byte budget shared by every session."""

    budget_bytes: int = int(float(os.environ.get("LAB_TRACE_BUDGET_MB", "1024")) * 2**20)
    _items: OrderedDict = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key, compute: Callable):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]
        value = compute()
        size = trace_bytes(value)
        with self._lock:
            if size <= self.budget_bytes:
                while self._items and sum(s for _, s in self._items.values()) + size > self.budget_bytes:
                    self._items.popitem(last=False)
                self._items[key] = (value, size)
        return value

    def used_bytes(self) -> int:
        with self._lock:
            return sum(s for _, s in self._items.values())
