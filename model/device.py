"""Pick where models run: CUDA when available, else Apple MPS, else CPU; or force one.

Force with the argument (e.g. pick_device("cpu")) or the environment variable LAB_DEVICE.
"""
from __future__ import annotations

import os

import torch

CHOICES = ("auto", "cpu", "cuda", "mps")


class DeviceError(ValueError):
    """The requested device does not exist on this machine."""


def available_devices() -> list[str]:
    out = ["cpu"]
    if torch.cuda.is_available():
        out.insert(0, "cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.insert(0, "mps")
    return out


def pick_device(preference: str | torch.device | None = None) -> torch.device:
    """'auto'/None -> cuda, else mps, else cpu. 'cpu'/'cuda'/'mps' force one (error if absent)."""
    pref = str(preference) if preference is not None else os.environ.get("LAB_DEVICE", "auto")
    pref = pref.strip().lower() or "auto"
    if pref == "auto":
        return torch.device(available_devices()[0])
    kind = pref.split(":")[0]
    if kind not in CHOICES:
        raise DeviceError(f"unknown device {pref!r}; choose one of {', '.join(CHOICES)}")
    if kind != "cpu" and kind not in available_devices():
        raise DeviceError(f"device {pref!r} is not available on this machine (available: "
                          f"{', '.join(available_devices())})")
    return torch.device(pref)
