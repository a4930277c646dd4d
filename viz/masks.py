"""Mask figures: which cells a query may see, scores before / after masking and after softmax, padding."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .common import DIVERGING, SEQUENTIAL, apply_theme, as_array, check_labels, esc, position_labels, token_axis

MASKED_GREY = "#9e9e9e"
CELL_MARKS_MAX = 16      # up to this many keys a masked cell is written "−∞"; beyond, the cells are too narrow
PANEL_TICK_FONT = 11     # tick labels of the three side-by-side panels (projector mode scales them with the type)


def mask_matrix(allowed, q_labels: Sequence[str], k_labels: Sequence[str], title: str = "") -> go.Figure:
    """Allowed cells in blue, masked cells in grey with a −∞ mark."""
    a = as_array(allowed, 2, "mask", "(queries, keys) of booleans").astype(bool)
    check_labels(q_labels, a.shape[0], "query")
    check_labels(k_labels, a.shape[1], "key")
    z = a.astype(np.uint8)
    marks = dict(text=np.where(a, "", "−∞"), texttemplate="%{text}", textfont=dict(size=13)) \
        if a.shape[1] <= CELL_MARKS_MAX else {}
    fig = go.Figure(go.Heatmap(z=z, x=position_labels(k_labels), y=position_labels(q_labels),
                               colorscale=[[0, MASKED_GREY], [1, "#4a90d9"]], zmin=0, zmax=1, showscale=False,
                               xgap=1, ygap=1, **marks,
                               hovertemplate="query %{y} → key %{x}: %{customdata}<extra></extra>",
                               customdata=np.where(a, "may attend", "masked (−∞)")))
    fig.update_xaxes(token_axis(k_labels, side="top", tickangle=-45))
    fig.update_yaxes(token_axis(q_labels, autorange="reversed"))
    return apply_theme(fig, height=min(700, 200 + 30 * len(q_labels)), title=title or "blue: may attend · grey: masked")


SCORES = DIVERGING  # signed scores (blue negative, red positive; colour-blind safe), centred at 0


def masking_stages(scores, allowed, weights, q_labels: Sequence[str], k_labels: Sequence[str]) -> go.Figure:
    """Three panels: raw scores, scores with −∞ where masked, softmax weights. With scores None (a model that
    cannot give them) the first two panels say so and only the weights are drawn."""
    a = as_array(allowed, 2, "mask", "(queries, keys) of booleans").astype(bool)
    w = as_array(weights, 2, "weights", "(queries, keys)").astype(np.float32)
    s = None if scores is None else as_array(scores, 2, "scores", "(queries, keys)").astype(np.float32)
    if a.shape != w.shape or (s is not None and s.shape != w.shape):
        raise ValueError(f"scores {None if s is None else s.shape}, mask {a.shape} and weights {w.shape} must have "
                         "the same shape")
    check_labels(q_labels, w.shape[0], "query")
    check_labels(k_labels, w.shape[1], "key")
    x, y = position_labels(k_labels), position_labels(q_labels)
    # panels 1 and 2 share the score scale: one colour bar, in the gap after panel 2, its title beside it
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.12,
                        subplot_titles=("1. scores q·k/√d_k" if s is not None else "1. scores: not available",
                                        "2. masked (grey = −∞)", "3. softmax weights"))
    hover = "query %{y}<br>key %{x}<br>"
    right_of = lambda col: fig.get_subplot(1, col).xaxis.domain[1] + 0.01         # noqa: E731
    bar = dict(thickness=12, len=0.9, xanchor="left", tickfont=dict(size=PANEL_TICK_FONT),
               title=dict(side="right", font=dict(size=PANEL_TICK_FONT + 1)))
    if s is not None:
        m = float(np.abs(s).max()) or 1.0
        fig.add_trace(go.Heatmap(z=s, x=x, y=y, colorscale=SCORES, zmid=0, zmin=-m, zmax=m, showscale=False,
                                 hovertemplate=hover + "score %{z:.3f}<extra></extra>"), 1, 1)
    fig.add_trace(go.Heatmap(z=np.where(a, np.nan, 0.0), x=x, y=y, colorscale=[[0, MASKED_GREY], [1, MASKED_GREY]],
                             showscale=False, hoverongaps=False,
                             hovertemplate=hover + "−∞ (masked)<extra></extra>"), 1, 2)
    if s is not None:
        fig.add_trace(go.Heatmap(z=np.where(a, s, np.nan), x=x, y=y, colorscale=SCORES, zmid=0, zmin=-m, zmax=m,
                                 hoverongaps=False, colorbar={**bar, "x": right_of(2), "title": {**bar["title"],
                                                                                                 "text": "score"}},
                                 hovertemplate=hover + "score %{z:.3f}<extra></extra>"), 1, 2)
    fig.add_trace(go.Heatmap(z=w, x=x, y=y, colorscale=SEQUENTIAL, zmin=0, zmax=1,
                             colorbar={**bar, "x": right_of(3), "title": {**bar["title"], "text": "weight"}},
                             hovertemplate=hover + "weight %{z:.3f}<extra></extra>"), 1, 3)
    small = dict(tickfont=dict(size=PANEL_TICK_FONT))
    for col in (1, 2, 3):
        fig.update_xaxes(token_axis(k_labels, max_ticks=24, tickangle=-90, **small), row=1, col=col)
        fig.update_yaxes(token_axis(q_labels, max_ticks=24, autorange="reversed", showticklabels=col == 1, **small),
                         row=1, col=col)
    return apply_theme(fig, height=min(720, 260 + 26 * len(q_labels)))


def padding_mask(batch_tokens: Sequence[Sequence[str]], valid) -> go.Figure:
    """A padded batch: one row per sentence, pad cells grey; the key-padding mask is 'real token or not'."""
    rows = [list(r) for r in batch_tokens]
    if not rows or any(len(r) != len(rows[0]) for r in rows):
        raise ValueError("batch_tokens must be a non-empty list of equally long (padded) token lists")
    real = as_array(valid, 2, "valid", "(sentences, positions) of booleans").astype(bool)
    if real.shape != (len(rows), len(rows[0])):
        raise ValueError(f"valid has shape {real.shape}; the batch is {len(rows)} x {len(rows[0])}")
    text = [[esc(t) for t in r] for r in rows]
    names = [f"sentence {i + 1}" for i in range(len(rows))]
    fig = go.Figure(go.Heatmap(z=real.astype(np.uint8), x=list(range(len(rows[0]))), y=names, text=text,
                               texttemplate="%{text}", textfont=dict(size=14), colorscale=[[0, MASKED_GREY], [1, "#cfe3f7"]],
                               zmin=0, zmax=1, showscale=False, xgap=2, ygap=2,
                               customdata=np.where(real, "real token: mask = True (attend)", "padding: mask = False (−∞)"),
                               hovertemplate="%{y}, position %{x}: %{text}<br>%{customdata}<extra></extra>"))
    fig.update_xaxes(title="position", dtick=1, side="top")
    fig.update_yaxes(autorange="reversed")
    return apply_theme(fig, height=120 + 60 * len(rows), title="A padded batch (grey = padding, ignored as a key)")
