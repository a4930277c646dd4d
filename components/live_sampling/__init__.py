"""Live sampling: a Streamlit components-v2 component that recomputes temperature -> top-k -> top-p
-> final in the browser on every slider move and draws the top words' stages as plain SVG.

The logits go to the browser (float32, base64) with the labels of the words the chart can show;
the browser sorts them once, then every `input` event of its own sliders recomputes the
distribution (same rules as `model.nets.sampling.distribution` and transformers' warpers) and redraws,
with no round trip to Python. When a slider is released the settings come back to Python, which
returns them here so the page can draw seeded samples, other panels, or a shareable link.

    from components import live_sampling

    s = live_sampling(run.next_logits, m.vocab, key="samp_live", temperature=0.8, top_p=0.9)
    d = sampling.distribution(run.next_logits, **s.as_kwargs())     # the same distribution, in Python
    s.temperature, s.top_k, s.top_p

Several instances can sit on one page (distinct keys); `compact=True` suits three side by side,
`large=True` is for a projector. Initial settings apply when an instance first appears (for
example restored from the URL); afterwards the instance keeps what the user set. To start an
instance over with new initial settings, give it a new key.
"""
from __future__ import annotations

import base64
import hashlib
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import streamlit as st

from model.nets.sampling import SamplingSettings

_HERE = Path(__file__).resolve().parent
NAME = "lab_live_sampling"

_mount = st.components.v2.component(
    NAME,
    html='<div class="ls-root"></div>',
    css=(_HERE / "live_sampling.css").read_text(encoding="utf-8"),
    js=(_HERE / "live_sampling.js").read_text(encoding="utf-8"),
)




def _as_logits(logits) -> np.ndarray:
    if hasattr(logits, "detach"):                                 # torch tensor
        logits = logits.detach().float().cpu().numpy()
    x = np.asarray(logits, dtype=np.float32)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"logits must be a non-empty 1-D array (one score per word); got shape {x.shape}")
    if np.isnan(x).any() or (x == np.inf).any() or not np.isfinite(x).any():
        raise ValueError("logits must be finite or -inf, with at least one finite value")
    return x


def _clamp(s, V: int) -> SamplingSettings:
    return SamplingSettings.clamped(V, **{k.name: s.get(k.name) for k in SamplingSettings.KNOBS})


def top_order(x: np.ndarray, n: int) -> np.ndarray:
    """The ids of the n highest logits in the browser's order (descending; ties: higher id first)."""
    order = np.lexsort((-np.arange(x.size), -x.astype(np.float64)))
    return order[:n]


def live_sampling(logits, labels: Sequence[str] | None, *, key: str, temperature: float = 1.0, top_k: int = 0,
                  top_p: float = 1.0, top_n: int | None = None, compact: bool = False, large: bool = False,
                  title: str | None = None, on_change: Callable[[], None] | None = None) -> SamplingSettings:
    """Mount (or update) one live sampling panel and return its current settings.

    logits: (V,) next-word logits (torch tensor, numpy array or list); float32 is what the browser gets.
    labels: the vocabulary, token id -> display text (untrusted: shown as text only), or None for '#id'.
    key: unique per instance on the page.
    temperature, top_k (0 = off, up to V), top_p (1 = off): initial settings, clamped into the ranges of
        `model.nets.sampling.SamplingSettings` (which the browser's sliders get in the data); used until the user
        moves a slider in this instance.
    top_n: words in the chart (default 25, 12 when compact). compact: controls stacked, for narrow
        columns. large: bigger fonts (projector). title: a heading inside the panel.
    on_change: called (as a Streamlit callback, before the rerun) when the user releases a slider.
    Returns SamplingSettings(temperature, top_k, top_p): the settings as last released in the browser (or the
    initial settings until the first release).
    """
    x = _as_logits(logits)
    V = int(x.size)
    if labels is not None and len(labels) != V:
        raise ValueError(f"labels has {len(labels)} entries for {V} logits")
    n = int(top_n or (12 if compact else 25))
    n = max(1, min(n, V))
    raw = x.astype("<f4").tobytes()
    digest = hashlib.blake2b(raw, digest_size=12).hexdigest()
    ids = top_order(x, n)
    shown = [[int(i), str(labels[i]) if labels is not None else f"#{int(i)}"] for i in ids]
    state = st.session_state.get(key) or {}
    current = state.get("settings") if isinstance(state, dict) or hasattr(state, "get") else None
    initial = _clamp(dict(temperature=temperature, top_k=top_k, top_p=top_p), V)
    settings = _clamp(current, V) if current else initial
    data = {"id": f"{digest}-{V}", "logits": base64.b64encode(raw).decode("ascii"), "n": V, "labels": shown,
            "settings": asdict(settings), "ranges": SamplingSettings.ranges(V), "top_n": n, "compact": bool(compact),
            "large": bool(large),
            "title": title or ""}
    result = _mount(key=key, data=data, default={"settings": asdict(initial)},
                    on_settings_change=on_change or (lambda: None))
    got = getattr(result, "settings", None) or (result.get("settings") if hasattr(result, "get") else None)
    return _clamp(got, V) if got else settings
