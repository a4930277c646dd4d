"""LSTM figures: gates, cell and hidden state over time; next-token distributions side by side."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .common import (DIVERGING, MAGNITUDE, OKABE_ITO, apply_theme, as_array, check_labels, esc, position_labels,
                     token_axis, top_indices)

SIGNED = {"candidate", "cell state", "hidden state", "cell", "hidden"}
UNIT_TICKS = 16        # all units shown: label about this many of them, evenly spaced


def lstm_heatmap(values, token_labels: Sequence[str], title: str = "", signed: bool = False) -> go.Figure:
    """Units (rows) over time (columns). Gates: 0..1 sequential colours; states: diverging around 0."""
    v = as_array(values, 2, "values", "(time, units)").astype(np.float32)
    check_labels(token_labels, v.shape[0], "token")
    fig = go.Figure(go.Heatmap(z=v.T, x=position_labels(token_labels), **_scale(v, signed),
                               hovertemplate="token %{x}<br>unit %{y}<br>%{z:.3f}<extra></extra>"))
    fig.update_xaxes(token_axis(token_labels, tickangle=-45))
    fig.update_yaxes(title="unit")
    return apply_theme(fig, height=420, title=title)


def _scale(v: np.ndarray, signed: bool) -> dict:
    if signed:
        m = float(np.abs(v).max()) or 1.0
        return dict(colorscale=DIVERGING, zmid=0, zmin=-m, zmax=m)
    return dict(colorscale=MAGNITUDE, zmin=0, zmax=1)


def most_changing_units(states, n: int) -> np.ndarray:
    """Indices of the n units whose value varies most over time (std over the time axis of a (T, U)
    array, e.g. the cell state), largest first; ties keep the lower index first."""
    a = as_array(states, 2, "states", "(time, units)").astype(np.float64)
    spread = a.std(axis=0)
    return np.argsort(-spread, kind="stable")[: max(0, min(n, a.shape[1]))]


def lstm_gates_panel(gates: Mapping[str, object], token_labels: Sequence[str],
                     units: Sequence[int] | None = None, cols: int = 2) -> go.Figure:
    """Small multiples (`cols` columns) of gate / state heatmaps of one layer, sharing the token axis. With 3
    columns the three gates make the first row and the candidate, cell and hidden state the second (projector mode:
    the whole panel on one screen).

    `units`: which units (rows) to show, in that order (default all, 0..U-1 bottom to top)."""
    if not gates:
        raise ValueError("gates is empty: pass e.g. {'input gate': (T, U) array, ...}")
    arrays = {k: as_array(v, 2, k, "(time, units)").astype(np.float32) for k, v in gates.items()}
    T, U = next(iter(arrays.values())).shape
    if any(a.shape != (T, U) for a in arrays.values()):
        raise ValueError("every gate must cover the same number of time steps and units")
    check_labels(token_labels, T, "token")
    if units is not None:
        units = [int(u) for u in units]
        if not units or min(units) < 0 or max(units) >= U:
            raise ValueError(f"units must be a non-empty list of unit numbers in 0..{U - 1}")
    if cols not in (2, 3):
        raise ValueError(f"cols must be 2 or 3; got {cols}")
    names = list(arrays)
    rows = -(-len(names) // cols)
    # 2 columns: every panel labels its units and words. 3 columns (narrower panels): the panels of a row share the
    # units (labelled once, at the left) and those of a column the words (labelled once, at the bottom), so the
    # space between two panels holds only the left one's colour bar
    three = cols == 3
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=names, horizontal_spacing=0.2 if not three else 0.11,
                        vertical_spacing=0.16 if not three else 0.1, shared_xaxes=three, shared_yaxes=three)
    x = position_labels(token_labels)
    y = None if units is None else [f"unit {u}" for u in units]
    for k, name in enumerate(names):
        r, c = divmod(k, cols)
        a = arrays[name] if units is None else arrays[name][:, units]
        signed = name in SIGNED or float(arrays[name].min()) < 0
        dom = fig.get_subplot(r + 1, c + 1).yaxis.domain            # each panel its own colour bar, beside it
        # the bar just right of its panel; a gate's ends are named on the bar itself (no title to collide)
        bar = dict(thickness=10, len=(dom[1] - dom[0]) * 0.9, y=(dom[0] + dom[1]) / 2, yanchor="middle",
                   x=fig.get_subplot(r + 1, c + 1).xaxis.domain[1] + 0.01, xanchor="left", tickfont=dict(size=13))
        if not signed:
            bar.update(tickvals=[0, 0.5, 1], ticktext=["0 shut", "0.5", "1 open"])
        if three:
            bar.update(nticks=3, **({"tickvals": [0, 1], "ticktext": ["0 shut", "1 open"]} if not signed else {}))
        fig.add_trace(go.Heatmap(z=a.T, x=x, y=y, colorbar=bar, **_scale(a, signed),
                                 hovertemplate=f"{name}<br>token %{{x}}<br>unit %{{y}}<br>%{{z:.3f}}<extra></extra>"),
                      r + 1, c + 1)
        fig.update_xaxes(token_axis(token_labels, tickangle=-45), row=r + 1, col=c + 1)
        fig.update_yaxes(title="unit" if c == 0 and units is None else None, row=r + 1, col=c + 1,
                         tickfont=dict(size=12 if not three else 11),       # 3 columns: 15 px in projector mode
                         autorange="reversed" if units is not None else True,
                         dtick=max(1, -(-U // UNIT_TICKS)) if units is None else None)
    return apply_theme(fig, height=320 * rows + 80 if not three else 320 * rows + 100)


def compare_next_token(dists: Mapping[str, object], vocab_labels: Sequence[str], top_n: int = 12) -> go.Figure:
    """Grouped bars: each model's probability for the union of their top_n next tokens."""
    if not dists:
        raise ValueError("dists is empty: pass {model name: probabilities}")
    V = len(vocab_labels)
    ps = {}
    for name, p in dists.items():
        a = as_array(p, 1, f"probabilities of {name}", "(vocabulary,)").astype(np.float32)
        if a.size != V:
            raise ValueError(f"probabilities of {name} have {a.size} entries but the vocabulary has {V}")
        ps[name] = a
    union: list[int] = []
    for a in ps.values():
        for i in top_indices(a, top_n):
            if int(i) not in union:
                union.append(int(i))
    union.sort(key=lambda i: -max(a[i] for a in ps.values()))
    x = [esc(vocab_labels[i]) for i in union]
    colors = OKABE_ITO
    fig = go.Figure([go.Bar(x=x, y=a[union], name=esc(name), marker_color=colors[k % len(colors)],
                            hovertemplate=f"{esc(name)}<br>%{{x}}: %{{y:.3f}}<extra></extra>")
                     for k, (name, a) in enumerate(ps.items())])
    fig.update_layout(barmode="group", legend=dict(orientation="h", y=-0.3))
    fig.update_xaxes(type="category", tickangle=-45)
    fig.update_yaxes(title="probability of the next word")
    return apply_theme(fig, height=420)
