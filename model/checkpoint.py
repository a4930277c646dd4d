"""A built-in checkpoint's config.json, typed and read strictly: an unknown or missing key is an error,
never silently dropped (a typo in a config would otherwise build a different model than was trained)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

from .errors import ModelLoadError

CONFIG = "config.json"
TYPES = ("transformer-lm", "lstm-lm", "rnn-lm", "translator")
FORMAT = 1


def _model_fields(kind: str) -> set[str]:
    from .lstm import LSTMConfig
    from .rnn import RNNConfig
    from .transformer import TransformerConfig

    return {f.name for f in fields({"lstm-lm": LSTMConfig, "rnn-lm": RNNConfig}.get(kind, TransformerConfig))}


@dataclass(frozen=True)
class CheckpointConfig:
    lab_format: int
    type: str                                   # one of TYPES
    model: dict                                 # the architecture's own config (TransformerConfig / LSTMConfig fields)
    name: str = ""
    description: str = ""
    data: dict = field(default_factory=dict)    # how the training data was drawn
    train: dict = field(default_factory=dict)   # recipe, seconds, loss curve
    eval: dict = field(default_factory=dict)    # figures from `python -m model.evaluate`

    @classmethod
    def from_dict(cls, d: dict) -> "CheckpointConfig":
        if not isinstance(d, dict):
            raise ModelLoadError("A checkpoint config must be a JSON object.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ModelLoadError(f"Unknown keys in the checkpoint config: {', '.join(unknown)}.")
        missing = [k for k in ("lab_format", "type", "model") if k not in d]
        if missing:
            raise ModelLoadError(f"The checkpoint config lacks: {', '.join(missing)}.")
        if d["lab_format"] != FORMAT:
            raise ModelLoadError(f"Checkpoint format {d['lab_format']!r} is not the format {FORMAT} this lab reads.")
        if d["type"] not in TYPES:
            raise ModelLoadError(f"Unknown checkpoint type {d['type']!r}; expected one of {', '.join(TYPES)}.")
        if not isinstance(d["model"], dict):
            raise ModelLoadError("The checkpoint config's `model` must be an object.")
        bad = sorted(set(d["model"]) - _model_fields(d["type"]))
        if bad:
            raise ModelLoadError(f"Unknown keys in the checkpoint's model config: {', '.join(bad)}.")
        try:
            return cls(**d)
        except TypeError as e:
            raise ModelLoadError(f"Malformed checkpoint config: {e}") from e


def read_config(folder: Path) -> CheckpointConfig:
    try:
        raw = json.loads((folder / CONFIG).read_text())
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"Cannot read the config of {folder.name}: {e}") from e
    return CheckpointConfig.from_dict(raw)
