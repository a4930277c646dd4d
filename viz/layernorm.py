"""LayerNorm figures: per-token statistics across LayerNorms, one token's features, gamma/beta, residual norm."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .common import (DIVERGING, LEGEND_BELOW, MAGNITUDE, apply_theme, as_array, check_labels, esc, position_labels,
                     token_axis)


def layernorm_stats(ln_names: Sequence[str], mean_in, std_in, mean_out, std_out,
                    token_labels: Sequence[str]) -> go.Figure:
    """2 x 2 heatmaps (LayerNorm x token): mean and std of the input and of the output."""
    arrays = [as_array(a, 2, n, "(layernorms, tokens)").astype(np.float32)
              for a, n in ((mean_in, "mean_in"), (std_in, "std_in"), (mean_out, "mean_out"), (std_out, "std_out"))]
    shape = arrays[0].shape
    if any(a.shape != shape for a in arrays):
        raise ValueError(f"all four statistics must have the same shape; got {[a.shape for a in arrays]}")
    names = check_labels(ln_names, shape[0], "LayerNorm")
    check_labels(token_labels, shape[1], "token")
    x = position_labels(token_labels)
    y = [f"{i + 1}. {esc(n)}" for i, n in enumerate(names)]
    titles = ("mean of input", "std of input", "mean of output", "std of output")
    fig = make_subplots(rows=2, cols=2, subplot_titles=titles, horizontal_spacing=0.14, vertical_spacing=0.2)
    for k, (a, t) in enumerate(zip(arrays, titles)):
        r, c = divmod(k, 2)
        if "mean" in t:
            m = float(np.abs(a).max()) or 1.0
            kw = dict(colorscale=DIVERGING, zmid=0, zmin=-m, zmax=m)
        else:
            kw = dict(colorscale=MAGNITUDE, zmin=0)
        dom = fig.get_subplot(r + 1, c + 1)
        bar = dict(thickness=10, len=(dom.yaxis.domain[1] - dom.yaxis.domain[0]) * 0.95, yanchor="middle",
                   y=sum(dom.yaxis.domain) / 2, x=dom.xaxis.domain[1] + 0.01, xanchor="left", tickfont=dict(size=13))
        fig.add_trace(go.Heatmap(z=a, x=x, y=y, colorbar=bar,
                                 hovertemplate=f"{t}<br>%{{y}}<br>token %{{x}}<br>%{{z:.3f}}<extra></extra>", **kw),
                      r + 1, c + 1)
        fig.update_xaxes(token_axis(token_labels, tickangle=-45), row=r + 1, col=c + 1)
        fig.update_yaxes(autorange="reversed", type="category", showticklabels=c == 0, row=r + 1, col=c + 1)
    return apply_theme(fig, height=min(1200, 380 + 2 * 26 * shape[0]))


def feature_distribution(x_in, x_out, title: str = "") -> go.Figure:
    """One token's features before and after a LayerNorm, as overlaid histograms with mean and std."""
    a = as_array(x_in, 1, "x_in", "(features,)").astype(np.float32)
    b = as_array(x_out, 1, "x_out", "(features,)").astype(np.float32)
    if a.shape != b.shape:
        raise ValueError(f"x_in {a.shape} and x_out {b.shape} must have the same length")
    fig = go.Figure()
    for arr, name, color in ((a, "before", "#ff7f0e"), (b, "after", "#1f77b4")):
        fig.add_trace(go.Histogram(x=arr, name=f"{name}: mean {arr.mean():.2f}, std {arr.std():.2f}", opacity=0.6,
                                   marker_color=color, nbinsx=40,
                                   hovertemplate=f"{name}<br>value %{{x}}<br>%{{y}} features<extra></extra>"))
    fig.update_layout(barmode="overlay", legend=LEGEND_BELOW)
    fig.update_xaxes(title="feature value")
    fig.update_yaxes(title="features")
    return apply_theme(fig, height=380, title=title)


def gamma_beta(gamma, beta=None, title: str = "") -> go.Figure:
    """The learned scale γ and shift β of one LayerNorm, per feature (β None for an RMSNorm, which has none)."""
    g = as_array(gamma, 1, "gamma", "(features,)").astype(np.float32)
    traces = [go.Scatter(x=np.arange(g.size), y=g, mode="lines", name="γ (scale)",
                         hovertemplate="feature %{x}<br>γ %{y:.3f}<extra></extra>")]
    if beta is not None:
        b = as_array(beta, 1, "beta", "(features,)").astype(np.float32)
        if g.shape != b.shape:
            raise ValueError(f"gamma {g.shape} and beta {b.shape} must have the same length")
        traces.append(go.Scatter(x=np.arange(b.size), y=b, mode="lines", name="β (shift)",
                                 hovertemplate="feature %{x}<br>β %{y:.3f}<extra></extra>"))
    fig = go.Figure(traces)
    fig.add_hline(y=1, line_dash="dot", line_color="#888")
    fig.add_hline(y=0, line_dash="dot", line_color="#888")
    fig.update_xaxes(title="feature")
    fig.update_layout(legend=LEGEND_BELOW)
    return apply_theme(fig, height=380, title=title)


def residual_norm(norms, token_labels: Sequence[str], layer_names: Sequence[str]) -> go.Figure:
    """L2 norm of each token's residual-stream vector after the embeddings and each block; thick line: mean."""
    n = as_array(norms, 2, "norms", "(layers + 1, tokens)").astype(np.float32)
    check_labels(token_labels, n.shape[1], "token")
    names = check_labels(layer_names, n.shape[0], "layer")
    fig = go.Figure()
    for t, tok in enumerate(token_labels):
        fig.add_trace(go.Scatter(x=names, y=n[:, t], mode="lines+markers", name=f"{t}: {esc(tok)}",
                                 line=dict(width=1.5), marker=dict(size=5),
                                 hovertemplate=f"{t}: {esc(tok)}<br>%{{x}}<br>norm %{{y:.2f}}<extra></extra>"))
    fig.add_trace(go.Scatter(x=names, y=n.mean(1), mode="lines", name="mean", line=dict(width=5, color="black"),
                             hovertemplate="mean over tokens<br>%{x}<br>%{y:.2f}<extra></extra>"))
    fig.update_yaxes(title="‖residual‖")
    return apply_theme(fig, height=420)
