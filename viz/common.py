"""Shared helpers: input checks with clear errors, escaped token labels, a projector-friendly theme."""
from __future__ import annotations

import html
from typing import Sequence

import numpy as np
import plotly.graph_objects as go

FONT = 16                      # base font size: readable on a projector
SEQUENTIAL = "Blues"           # weights in [0, 1]
DIVERGING = "RdBu_r"           # signed values, centred at 0 (blue negative, red positive)
KEPT, CUT_K, CUT_P, RAW = "#1f77b4", "#d62728", "#ff7f0e", "#c7c7c7"


def as_array(x, ndim: int, name: str, shape_doc: str) -> np.ndarray:
    """np.asarray with a helpful error when the number of dimensions is wrong."""
    a = np.asarray(x)
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {shape_doc}; got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} is empty; expected {shape_doc}")
    return a


def check_labels(labels: Sequence[str], n: int, what: str) -> list[str]:
    labels = list(labels)
    if len(labels) != n:
        raise ValueError(f"got {len(labels)} {what} labels for {n} {what} positions")
    return labels


def esc(token: str) -> str:
    """Token text made safe for Plotly's HTML-like labels ('<unk>' shows literally)."""
    return html.escape(str(token), quote=False)


def position_labels(tokens: Sequence[str]) -> list[str]:
    """Unique category names 'i: token' (so repeated tokens never merge on an axis), escaped."""
    return [f"{i}: {esc(t)}" for i, t in enumerate(tokens)]


MAX_TICKS = 48   # more token labels than this on one axis overlap into an unreadable smear


def token_axis(tokens: Sequence[str], max_ticks: int = MAX_TICKS, **extra) -> dict:
    """Axis settings showing the escaped tokens as ticks for positions 0..n-1 (works with category names too).

    Long sequences label every step-th position only (with its index, so the reader can count); hover
    still names every cell's tokens."""
    names = position_labels(tokens)
    text = [esc(t) for t in tokens]
    step = -(-len(tokens) // max_ticks) if max_ticks > 0 else 1
    if step > 1:
        keep = range(0, len(tokens), step)
        names, text = [names[i] for i in keep], [f"{i}: {text[i]}" for i in keep]
    return dict(tickmode="array", tickvals=names, ticktext=text, type="category", **extra)


def apply_theme(fig: go.Figure, height: int | None = None, title: str | None = None) -> go.Figure:
    fig.update_layout(template="plotly_white", font=dict(size=FONT), margin=dict(l=10, r=10, t=50 if title else 20, b=10),
                      hoverlabel=dict(font_size=FONT))
    if title:
        fig.update_layout(title=dict(text=title, x=0.0, xanchor="left", font=dict(size=FONT + 2)))
    if height:
        fig.update_layout(height=height)
    return fig


def top_indices(values: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n largest values, largest first (stable for ties)."""
    n = min(n, values.size)
    return np.argsort(-values, kind="stable")[:n]
