"""Hugging Face `transformers` models in the lab, by capability (model/api.py).

    m = model.load("gpt2")        # a hub id (only when the hub may be asked), or a save_pretrained folder

  architectures.py  one declarative entry per supported architecture (module paths, norms, positions, head)
  loading.py        local folder / cache / hub, every failure as one ModelLoadError message
  capture.py        per-call, per-thread hooks; raw scores recomputed and verified against transformers
  families.py       HFCausalLM, HFMaskedLM, HFEncoder, HFEncoderDecoder
"""
from __future__ import annotations

import torch

from .architectures import ARCHITECTURES, SUPPORTED
from .families import (COMPACT_ABOVE, FAMILY_CLASSES, HFAttentionTrace, HFCausalLM, HFEncoder,
                       HFEncoderDecoder, HFMaskedLM, HFModel, display_tokens)
from .loading import load_weights, read_config

__all__ = ["load_hf", "HFModel", "HFCausalLM", "HFMaskedLM", "HFEncoder", "HFEncoderDecoder", "HFAttentionTrace",
           "ARCHITECTURES", "SUPPORTED", "COMPACT_ABOVE", "display_tokens"]


def load_hf(name: str, device: torch.device) -> HFModel:
    """A Hugging Face id or save_pretrained folder -> the family class for its architecture and head."""
    import transformers as tf

    tf.utils.logging.disable_progress_bar()
    tf.utils.logging.set_verbosity_error()
    config, spec, src, local = read_config(name)
    hf, head, tok, n_params = load_weights(name, src, local, config, spec, device)
    return FAMILY_CLASSES[head](name, hf, tok, spec, head, device, n_params)
