"""The lab's engine: models that return their internals, sampling, corpora, training.

    import model
    m = model.load("transformer-lm")          # a built-in, a Hugging Face id, or a local folder
    run = m.run("the bear ate the honey because it was hungry")
    run.trace.attention["self"][0].weights    # (1, heads, T, T) of layer 1

No Streamlit here; pages/ call this, viz/ draws what it returns.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .api import (Architecture, Generates, Generation, Hooked, LabModel, LogitLens, MaskedFill, NextToken, PaddedBatch,
                  PaddedRun, PositionInfo, PositionTable, RawScores, Recurrent, Run, Step, Tokens, TracedRun, Translates)
from .device import DeviceError, available_devices, pick_device
from .errors import InputError, LabError, ModelLoadError, NotSupported, SamplingError

__all__ = ["load", "builtin_names", "LabModel", "LabError", "InputError", "ModelLoadError", "NotSupported",
           "SamplingError", "Run", "Tokens", "Step", "Generation", "Architecture", "PositionInfo", "PaddedRun",
           "TracedRun", "NextToken", "Generates", "Translates", "MaskedFill", "PositionTable", "PaddedBatch",
           "LogitLens", "RawScores", "Recurrent", "Hooked", "pick_device", "available_devices", "DeviceError"]


def builtin_names() -> list[str]:
    from .builtin import BUILTIN

    return list(BUILTIN)


def load(name: str, device: str | torch.device | None = None) -> LabModel:
    """Load a built-in model by name, a built-in-format folder, or a Hugging Face id / local folder.

    Raises ModelLoadError (a LabError) with a message meant for the user when that fails.
    """
    from .builtin import BUILTIN, is_checkpoint_folder, load_builtin

    name = (name or "").strip()
    if not name:
        raise ModelLoadError("No model name given. Built-in models: " + ", ".join(BUILTIN))
    try:
        dev = pick_device(device)
    except DeviceError as e:
        raise ModelLoadError(str(e)) from e
    if name in BUILTIN:
        return load_builtin(name, dev)
    path = Path(name).expanduser()
    if is_checkpoint_folder(path):
        return load_builtin(path, dev)                     # a model trained by `python -m model.training.train`
    try:
        from .hf import load_hf
    except ImportError as e:                               # pragma: no cover - transformers missing
        raise ModelLoadError(f"Unknown model {name!r}. Built-in models: {', '.join(BUILTIN)}") from e
    return load_hf(name, dev)
