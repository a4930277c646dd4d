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


def test_every_trace_and_intervention_equals_9615489_to_float32_rounding():
    """Every tensor's name, shape and dtype as 9615489 wrote them, and its values: bit for bit where this CPU's kernels
    round as the machine that wrote the file did, else its sum within 1e-5 of its absolute sum (float32 rounding: on an
    AMD EPYC, 2026-12-02, 2,424 of the 3,208 tensors differed in their last bits, their sums by at most 1.4e-7 of it).
    A head not switched off, a mask cell let through or a wrong scale moves a sum far more."""

    ref = json.loads((DATA / "reference_9615489.json").read_text())["tensors"]
    w = load_file(str(DATA / "reference_weights.safetensors"))
    modules = {m: {k[len(m) + 1:]: v for k, v in w.items() if k.startswith(m + ".")} for m in ("rlm", "rtr")}
    values = compute(modules)
    got = {k: fingerprint(v) for k, v in values.items()}
    assert sorted(got) == sorted(ref)
    shapes = [k for k in ref if (got[k]["shape"], got[k]["dtype"]) != (ref[k]["shape"], ref[k]["dtype"])]
    assert not shapes, f"{len(shapes)} tensors changed shape or dtype, e.g. {shapes[:5]}"
    far = []
    for k in ref:
        if got[k]["sha256"] == ref[k]["sha256"]:
            continue
        v = values[k]
        if not v.is_floating_point():
            far.append((k, ref[k]["sum"], got[k]["sum"]))
            continue
        scale = float(v.double().abs().sum())
        if abs(got[k]["sum"] - ref[k]["sum"]) > 1e-5 * max(scale, 1e-6):
            far.append((k, ref[k]["sum"], got[k]["sum"]))
    assert not far, f"{len(far)} of {len(ref)} tensors differ beyond float32 rounding, e.g. {far[:5]}"
