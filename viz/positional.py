"""Positional-encoding figures: waves per dimension, the position x dimension table, similarity."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from .common import DIVERGING, OKABE_ITO, apply_theme, as_array


def pe_waves(pe, dims: Sequence[int], title: str = "", curve=None) -> go.Figure:
    """PE[:, d] against position for the chosen dimensions (even: sin, odd: cos for sinusoidal tables).

    The table is defined at whole positions (markers). `curve` = (x, table) sampled between them draws the
    underlying wave as a smooth line, so fast dimensions read as waves rather than zigzags."""
    a = as_array(pe, 2, "positional encoding", "(positions, d_model)").astype(np.float32)
    P, D = a.shape
    bad = [d for d in dims if not 0 <= d < D]
    if bad:
        raise ValueError(f"dimensions {bad} are outside 0..{D - 1}")
    fig = go.Figure()
    colors = OKABE_ITO
    for n, d in enumerate(dims):
        col = colors[n % len(colors)]
        name = f"dim {d} ({'sin' if d % 2 == 0 else 'cos'})"
        if curve is not None:
            cx, ct = curve
            fig.add_trace(go.Scatter(x=np.asarray(cx, np.float32), y=np.asarray(ct, np.float32)[:, d], mode="lines",
                                     line=dict(color=col, width=2), name=name, legendgroup=name, hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=np.arange(P), y=a[:, d], mode="markers" if curve is not None else "lines+markers",
                                 marker=dict(size=6, color=col), line=dict(color=col), legendgroup=name,
                                 name=name, showlegend=curve is None,
                                 hovertemplate=f"dim {d}<br>position %{{x}}<br>value %{{y:.3f}}<extra></extra>"))
    fig.update_xaxes(title="position")
    fig.update_yaxes(title="value", range=[-1.1, 1.1] if np.abs(a).max() <= 1.0001 else None)
    return apply_theme(fig, height=380, title=title)


def pe_heatmap(pe, title: str = "") -> go.Figure:
    """Rows: positions; columns: dimensions."""
    a = as_array(pe, 2, "positional encoding", "(positions, d_model)").astype(np.float32)
    m = float(np.abs(a).max()) or 1.0
    fig = go.Figure(go.Heatmap(z=a, colorscale=DIVERGING, zmid=0, zmin=-m, zmax=m,
                               hovertemplate="position %{y}<br>dimension %{x}<br>value %{z:.3f}<extra></extra>",
                               colorbar=dict(thickness=14)))
    fig.update_xaxes(title="dimension")
    fig.update_yaxes(title="position", autorange="reversed")
    return apply_theme(fig, height=420, title=title)


def pe_similarity(pe, title: str = "", cosine: bool = False) -> go.Figure:
    """P x P dot products (or cosines) between position vectors: nearby positions look alike."""
    a = as_array(pe, 2, "positional encoding", "(positions, d_model)").astype(np.float32)
    if cosine:
        a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-9)
    s = a @ a.T
    m = float(np.abs(s).max()) or 1.0
    fig = go.Figure(go.Heatmap(z=s, colorscale=DIVERGING, zmid=0, zmin=-m, zmax=m,
                               hovertemplate="positions %{y} and %{x}<br>" + ("cosine" if cosine else "dot product")
                               + " %{z:.3f}<extra></extra>", colorbar=dict(thickness=14)))
    fig.update_xaxes(title="position", scaleanchor="y")
    fig.update_yaxes(title="position", autorange="reversed")
    return apply_theme(fig, height=420, title=title)
