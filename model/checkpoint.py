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


def _model_defaults(kind: str) -> dict:
    """The architecture config's fields and their defaults (whose types the values must have)."""
    from .nets.lstm import LSTMConfig
    from .nets.rnn import RNNConfig
    from .nets.transformer import TransformerConfig

    return {f.name: f.default for f in fields({"lstm-lm": LSTMConfig, "rnn-lm": RNNConfig}.get(kind, TransformerConfig))}


def _model_fields(kind: str) -> set[str]:
    return set(_model_defaults(kind))


MAY_BE_ZERO = {"pad_id", "src_vocab_size", "n_encoder_layers", "dropout", "layer_norm_eps"}


def check_model_values(kind: str, model: dict) -> None:
    """Each value has its field's type, sizes are positive (counts that may be absent: >= 0), floats finite: a
    config with d_model = -5 is refused here, with its key named, instead of failing inside torch."""
    import math

    defaults = _model_defaults(kind)
    for k, v in model.items():
        want = defaults[k]
        if isinstance(want, bool):
            ok = isinstance(v, bool)
        elif isinstance(want, int):
            ok = isinstance(v, int) and not isinstance(v, bool) and (v >= 0 if k in MAY_BE_ZERO else v > 0)
        elif isinstance(want, float):
            ok = (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                  and (v >= 0 if k in MAY_BE_ZERO else v > 0))
        elif isinstance(want, str):
            ok = isinstance(v, str)
        else:
            ok = True
        if not ok:
            kind_words = ("true or false" if isinstance(want, bool) else "a whole number" if isinstance(want, int)
                          else "a number" if isinstance(want, float) else "a string")
            sign = "" if isinstance(want, (bool, str)) else (" >= 0" if k in MAY_BE_ZERO else " > 0")
            raise ModelLoadError(f"Malformed checkpoint config: model.{k} is {v!r}, expected {kind_words}{sign}.")


@dataclass(frozen=True)
class CheckpointConfig:
    lab_format: int
    type: str                                   # one of TYPES
    model: dict                                 # the architecture's own config (TransformerConfig / LSTMConfig fields)
    name: str = ""
    description: str = ""
    data: dict = field(default_factory=dict)    # how the training data was drawn
    train: dict = field(default_factory=dict)   # recipe, seconds, loss curve
    eval: dict = field(default_factory=dict)    # figures from `python -m model.training.evaluate`

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
        check_model_values(d["type"], d["model"])
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
