"""The rewritten forward pass (hook points) computes exactly what commit 9615489 computed.

tests/data/reference_9615489.json holds SHA-256 fingerprints of every trace tensor and every intervention's
logits, written by `devkit/reference.py` on 9615489 (built-in transformer-lm and translator-en-fr, plus a
pre-LN random LM and translator whose weights are in reference_weights.safetensors)."""
import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from devkit.reference import compute, fingerprint

pytestmark = [pytest.mark.unit, pytest.mark.slow]                  # 3,208 tensors: seconds
DATA = Path(__file__).parent / "data"


def test_every_trace_and_intervention_is_bit_identical_to_9615489():
    ref = json.loads((DATA / "reference_9615489.json").read_text())["tensors"]
    w = load_file(str(DATA / "reference_weights.safetensors"))
    modules = {m: {k[len(m) + 1:]: v for k, v in w.items() if k.startswith(m + ".")} for m in ("rlm", "rtr")}
    got = {k: fingerprint(v) for k, v in compute(modules).items()}
    assert sorted(got) == sorted(ref)
    differ = [(k, ref[k]["sum"], got[k]["sum"]) for k in ref if got[k]["sha256"] != ref[k]["sha256"]]
    assert not differ, f"{len(differ)} of {len(ref)} tensors differ, e.g. {differ[:5]}"
