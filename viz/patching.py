"""Figures for activation patching: the normalised effect of each patched site (0 = none, 1 = the whole
difference between the two inputs). Pure functions: numpy arrays and labels in, a Plotly figure out."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from .common import DIVERGING, apply_theme, as_array, check_labels, position_labels, token_axis


def _effect_heatmap(z: np.ndarray, x: list[str], y: list[str], hover: str, title: str, height: int) -> go.Figure:
    top = max(1.0, float(np.abs(z).max()))                # keep 0 white and 1 the same red on every figure
    fig = go.Figure(go.Heatmap(z=z, x=x, y=y, colorscale=DIVERGING, zmid=0, zmin=-top, zmax=top,
                               text=[[f"{v:.2f}" for v in row] for row in z], texttemplate="%{text}",
                               hovertemplate=hover + "<br>effect: %{z:.4f}<extra></extra>",
                               colorbar=dict(title=dict(text="effect", side="right"), thickness=14)))
    fig.update_yaxes(autorange="reversed")
    return apply_theme(fig, height=height, title=title)


def head_effects(effect, title: str = "") -> go.Figure:
    """(layers, heads) normalised effect of patching each head's output."""
    e = as_array(effect, 2, "effect", "(layers, heads)").astype(np.float32)
    L, H = e.shape
    return _effect_heatmap(e, [f"head {h + 1}" for h in range(H)], [f"layer {l + 1}" for l in range(L)],
                           "%{y}, %{x}", title, 140 + 44 * L)


def position_effects(effect, tokens: Sequence[str], changed: Sequence[int] = (), title: str = "") -> go.Figure:
    """(layers, positions) normalised effect of patching one site at each position; the positions where the
    two inputs differ are marked with an asterisk."""
    e = as_array(effect, 2, "effect", "(layers, positions)").astype(np.float32)
    L, T = e.shape
    toks = check_labels(tokens, T, "token")
    marked = [t + " *" if i in set(changed) else t for i, t in enumerate(toks)]
    fig = _effect_heatmap(e, position_labels(marked), [f"layer {l + 1}" for l in range(L)], "%{y}, %{x}", title,
                          170 + 44 * L)
    fig.update_xaxes(token_axis(marked))
    return fig
