"""Figures for the experiments: intact vs broken, live training curves, why RNNs forget.

Pure functions: numpy arrays and labels in, a Plotly figure out (no torch, no Streamlit).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .attention import HEAD_POOL_ABOVE, pool_max
from .common import (DIVERGING, MAGNITUDE, OKABE_ITO, SEQUENTIAL, apply_theme, as_array, check_labels, esc,
                     position_labels, token_axis)

INTACT, BROKEN = OKABE_ITO[0], OKABE_ITO[2]            # blue and vermillion: apart under every common CVD
MODEL_COLOURS = {"Transformer": OKABE_ITO[0], "LSTM": OKABE_ITO[1], "RNN (tanh)": OKABE_ITO[2]}
LEGEND_RIGHT = dict(orientation="v", x=1.02, xanchor="left", y=1, yanchor="top")   # beside the plot, with margin
_OTHER = OKABE_ITO[3:]


def _colour(name: str, i: int) -> str:
    for key, c in MODEL_COLOURS.items():
        if name.startswith(key):
            return c
    return _OTHER[i % len(_OTHER)]


def distribution_pair(words: Sequence[str], p_intact, p_broken, title: str = "") -> go.Figure:
    """Next-word probabilities of the intact and the intervened model, side by side per word."""
    a = as_array(p_intact, 1, "p_intact", "(words,)")
    b = as_array(p_broken, 1, "p_broken", "(words,)")
    words = check_labels(words, a.size, "word")
    if b.size != a.size:
        raise ValueError("p_intact and p_broken must have one value per word")
    x = position_labels(words)
    fig = go.Figure([go.Bar(x=x, y=a, name="intact", marker_color=INTACT,
                            hovertemplate="%{x}<br>intact: %{y:.3f}<extra></extra>"),
                     go.Bar(x=x, y=b, name="intervened", marker_color=BROKEN,
                            hovertemplate="%{x}<br>intervened: %{y:.3f}<extra></extra>")])
    fig.update_layout(barmode="group", yaxis=dict(title="probability", range=[0, 1]),
                      legend=LEGEND_RIGHT)
    fig.update_xaxes(token_axis(words))
    return apply_theme(fig, height=360, title=title)


def head_change_grid(change, title: str = "") -> go.Figure:
    """(layers, heads) largest |change| of any attention weight, per head; 0 means untouched."""
    c = as_array(change, 2, "change", "(layers, heads)").astype(float)
    L, H = c.shape
    top = max(1e-6, float(c.max()))
    ticks = [0.0, top / 2, top]                  # three ticks: a grid of one or two layers leaves a short bar
    fig = go.Figure(go.Heatmap(z=c, x=[f"head {h + 1}" for h in range(H)], y=[f"layer {l + 1}" for l in range(L)],
                               colorscale=MAGNITUDE, zmin=0, zmax=top,
                               text=[[f"{v:.3f}" for v in row] for row in c], texttemplate="%{text}",
                               hovertemplate="%{y}, %{x}<br>max |Δ weight|: %{z:.4f}<extra></extra>",
                               colorbar=dict(title=dict(text="max |Δ|", side="right"), thickness=14,
                                             tickvals=ticks, ticktext=[f"{v:.2g}" for v in ticks])))
    fig.update_yaxes(autorange="reversed")
    return apply_theme(fig, height=120 + 48 * L, title=title)


def attention_pair(a, b, q_labels: Sequence[str], k_labels: Sequence[str], title: str = "") -> go.Figure:
    """One head: intact, intervened, and their difference (intervened − intact). Over HEAD_POOL_ABOVE positions,
    as the one-head view: each f x f block drawn as its largest weight, labelled by its first token."""
    a = as_array(a, 2, "intact weights", "(queries, keys)").astype(np.float32)
    b = as_array(b, 2, "intervened weights", "(queries, keys)").astype(np.float32)
    if a.shape != b.shape:
        raise ValueError(f"the two maps differ in shape: {a.shape} vs {b.shape}")
    q = check_labels(q_labels, a.shape[0], "query")
    k = check_labels(k_labels, a.shape[1], "key")
    f = -(-max(a.shape) // HEAD_POOL_ABOVE)
    if f > 1:
        a, b = (pool_max(x[None, None], f)[0, 0] for x in (a, b))
        q, k = list(q)[::f][:a.shape[0]], list(k)[::f][:a.shape[1]]
        title += f" (blocks of {f} × {f} positions, each its largest weight)"
    fig = make_subplots(1, 3, subplot_titles=("intact", "intervened", "difference (intervened − intact)"),
                        horizontal_spacing=0.06)
    xs, ys = position_labels(k), position_labels(q)
    hov = "query: %{y}<br>key: %{x}<br>%{z:.3f}<extra></extra>"
    fig.add_trace(go.Heatmap(z=a, x=xs, y=ys, colorscale=SEQUENTIAL, zmin=0, zmax=1, showscale=False,
                             hovertemplate=hov), 1, 1)
    fig.add_trace(go.Heatmap(z=b, x=xs, y=ys, colorscale=SEQUENTIAL, zmin=0, zmax=1, showscale=False,
                             hovertemplate=hov), 1, 2)
    fig.add_trace(go.Heatmap(z=b - a, x=xs, y=ys, colorscale=DIVERGING, zmid=0, zmin=-1, zmax=1,
                             hovertemplate=hov, colorbar=dict(title=dict(text="Δ", side="right"), thickness=12,
                                                              tickfont=dict(size=12))), 1, 3)
    small = dict(tickfont=dict(size=12))
    for col in (1, 2, 3):
        fig.update_xaxes(token_axis(k, max_ticks=24, tickangle=-90, **small), row=1, col=col)
        fig.update_yaxes(token_axis(q, max_ticks=24, autorange="reversed", showticklabels=col == 1, **small),
                         row=1, col=col)
    return apply_theme(fig, height=min(640, 260 + 26 * len(q)), title=title)


def loss_curves(curves: Mapping[str, Mapping[str, Sequence[float]]], title: str = "") -> go.Figure:
    """name -> {"steps", "train", "heldout_steps", "heldout"}: training loss (thin) and held-out loss (thick)."""
    fig = go.Figure()
    for i, (name, c) in enumerate(curves.items()):
        col = _colour(name, i)
        if len(c["steps"]):
            fig.add_trace(go.Scatter(x=list(c["steps"]), y=list(c["train"]), name=f"{esc(name)} train", mode="lines",
                                     line=dict(color=col, width=1), opacity=0.45))
        if len(c["heldout_steps"]):
            fig.add_trace(go.Scatter(x=list(c["heldout_steps"]), y=list(c["heldout"]), name=f"{esc(name)} held-out",
                                     mode="lines+markers", line=dict(color=col, width=3)))
    fig.update_layout(xaxis_title="step", yaxis_title="cross-entropy (nats/token)",
                      legend=LEGEND_RIGHT)
    return apply_theme(fig, height=420, title=title)


def gradient_profiles(profiles: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str = "") -> go.Figure:
    """name -> (distance, gradient norm), log-scale y."""
    fig = go.Figure()
    for i, (name, (d, g)) in enumerate(profiles.items()):
        d = as_array(d, 1, "distance", "(n,)")
        g = as_array(g, 1, "norm", "(n,)")
        fig.add_trace(go.Scatter(x=d, y=np.maximum(g, 1e-30), name=esc(name), mode="lines+markers",
                                 line=dict(color=_colour(name, i), width=3),
                                 hovertemplate="%{x} words back<br>‖∂loss/∂h‖ = %{y:.2e}<extra></extra>"))
    lows = [float(np.log10(max(float(np.min(g)), 1e-30))) for _, g in profiles.values() if len(g)]
    highs = [float(np.log10(max(float(np.max(g)), 1e-30))) for _, g in profiles.values() if len(g)]
    decades = (max(highs) - min(lows)) if lows else 1
    fig.update_layout(xaxis_title="words back from the prediction",
                      yaxis=dict(type="log", title="‖∂ loss / ∂ h‖", exponentformat="power",
                                 dtick=max(1, int(np.ceil(decades / 6)))),     # whole decades, at most ~7 labels
                      legend=LEGEND_RIGHT)
    return apply_theme(fig, height=420, title=title)


def _rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{alpha})"


def gradient_seed_bands(distance, bands: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                        separation: tuple[float, float, float] | None = None, title: str = "") -> go.Figure:
    """name -> (min, median, max) over seeds of what is left of the gradient at each distance (log y): the median as
    a line, min to max as a shaded band. `separation` (min, median, max): the distance from which one model stays
    below the other, drawn as a shaded column (its range over seeds) and a dashed line (its median)."""
    d = as_array(distance, 1, "distance", "(n,)")
    fig = go.Figure()
    lows, highs = [], []
    for i, (name, (lo, mid, hi)) in enumerate(bands.items()):
        lo, mid, hi = (np.maximum(as_array(a, 1, what, "(n,)"), 1e-30) for a, what in
                       ((lo, "min"), (mid, "median"), (hi, "max")))
        if not len(lo) == len(mid) == len(hi) == len(d):
            raise ValueError(f"{name}: min, median and max need one value per distance ({len(d)})")
        colour = _colour(name, i)
        fig.add_trace(go.Scatter(x=np.concatenate([d, d[::-1]]), y=np.concatenate([hi, lo[::-1]]), fill="toself",
                                 fillcolor=_rgba(colour, 0.25), line=dict(width=0), hoverinfo="skip",
                                 name=esc(f"{name}: min to max over seeds"), legendgroup=esc(name)))
        fig.add_trace(go.Scatter(x=d, y=mid, name=esc(f"{name}: median"), mode="lines", legendgroup=esc(name),
                                 line=dict(color=colour, width=3), customdata=np.stack([lo, hi], 1),
                                 hovertemplate="%{x} words back<br>median %{y:.1e}<br>min %{customdata[0]:.1e}, "
                                               "max %{customdata[1]:.1e}<extra>" + esc(name) + "</extra>"))
        lows.append(float(np.log10(lo.min())))
        highs.append(float(np.log10(hi.max())))
    if separation is not None and np.all(np.isfinite(separation)):
        s_lo, s_mid, s_hi = (float(v) for v in separation)
        y0, y1 = 10 ** min(lows), 10 ** max(highs)
        fig.add_trace(go.Scatter(x=[s_lo, s_hi, s_hi, s_lo, s_lo], y=[y0, y0, y1, y1, y0], fill="toself", mode="none",
                                 fillcolor="rgba(128,128,128,0.2)", hoverinfo="skip",
                                 name="RNN below LSTM from here: min to max over seeds"))
        fig.add_trace(go.Scatter(x=[s_mid, s_mid], y=[y0, y1], mode="lines", line=dict(color="grey", dash="dash"),
                                 name="RNN below LSTM from here: median",
                                 hovertemplate="median: %{x} words back<extra></extra>"))
    decades = (max(highs) - min(lows)) if lows else 1
    fig.update_layout(xaxis_title="words back from the prediction",
                      yaxis=dict(type="log", title="gradient left (÷ its value 0 words back)", exponentformat="power",
                                 dtick=max(1, int(np.ceil(decades / 6)))),
                      legend=LEGEND_RIGHT)
    return apply_theme(fig, height=460, title=title)


def accuracy_by_distance(distances, accuracy: Mapping[str, np.ndarray], title: str = "") -> go.Figure:
    d = as_array(distances, 1, "distances", "(n,)")
    fig = go.Figure()
    for i, (name, acc) in enumerate(accuracy.items()):
        a = as_array(acc, 1, "accuracy", "(n,)")
        fig.add_trace(go.Scatter(x=d, y=a, name=esc(name), mode="lines+markers", line=dict(color=_colour(name, i), width=3),
                                 hovertemplate="%{x} words between<br>accuracy %{y:.0%}<extra></extra>"))
    fig.add_hline(y=0.5, line_dash="dot", line_color="grey", annotation_text="chance")
    fig.update_layout(xaxis_title="words between the subject and the verb",
                      yaxis=dict(title="agreement accuracy", range=[0, 1.02], tickformat=".0%"),
                      legend=LEGEND_RIGHT)
    return apply_theme(fig, height=420, title=title)


def time_per_token(lengths, seconds: Mapping[str, np.ndarray], title: str = "") -> go.Figure:
    L = as_array(lengths, 1, "lengths", "(n,)")
    fig = go.Figure()
    for i, (name, s) in enumerate(seconds.items()):
        s = as_array(s, 1, "seconds", "(n,)")
        fig.add_trace(go.Scatter(x=L, y=s * 1e6, name=esc(name), mode="lines+markers",
                                 line=dict(color=_colour(name, i), width=3),
                                 hovertemplate="length %{x}<br>%{y:.1f} µs per token<extra></extra>"))
    fig.update_layout(xaxis=dict(title="sequence length (tokens)", type="log", tickvals=list(L)),
                      yaxis=dict(title="training time per token (µs)", type="log"),
                      legend=LEGEND_RIGHT)
    return apply_theme(fig, height=420, title=title)
