"""Sampling figures: the stages of the next-token distribution, settings side by side, draws, generation."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from .common import CUT_K, CUT_P, KEPT, RAW, apply_theme, as_array, esc, top_indices


def _vec(x, name: str, n: int | None = None) -> np.ndarray:
    a = as_array(x, 1, name, "(vocabulary,)").astype(np.float32)
    if n is not None and a.size != n:
        raise ValueError(f"{name} has {a.size} entries but the vocabulary has {n}")
    return a


def _labels(vocab_labels: Sequence[str], idx: np.ndarray) -> list[str]:
    # token text may repeat in odd vocabularies: keep bars apart by rank
    return [f"{r + 1}. {esc(vocab_labels[i])}" for r, i in enumerate(idx)]


def distribution_stages(raw_probs, scaled_probs, topk_keep, topp_keep, final_probs, vocab_labels: Sequence[str],
                        top_n: int = 25, title: str = "", removed_mass: float | None = None,
                        entropy: float | None = None) -> go.Figure:
    """The top_n tokens (by probability after temperature): raw, after temperature (coloured kept / cut), final."""
    V = len(vocab_labels)
    raw, scaled, final = _vec(raw_probs, "raw_probs", V), _vec(scaled_probs, "scaled_probs", V), _vec(final_probs, "final_probs", V)
    kk = np.asarray(topk_keep, dtype=bool)
    kp = np.asarray(topp_keep, dtype=bool)
    if kk.shape != (V,) or kp.shape != (V,):
        raise ValueError(f"keep masks must have one entry per vocabulary word ({V})")
    idx = top_indices(scaled, top_n)
    x = _labels(vocab_labels, idx)
    colors = np.where(~kk[idx], CUT_K, np.where(~kp[idx], CUT_P, KEPT))
    status = np.where(~kk[idx], "cut by top-k", np.where(~kp[idx], "cut by top-p", "kept"))
    fig = go.Figure([
        go.Bar(x=x, y=raw[idx], name="raw (temperature 1)", marker_color=RAW,
               hovertemplate="%{x}<br>raw probability %{y:.3f}<extra></extra>"),
        go.Bar(x=x, y=scaled[idx], name="after temperature", marker_color=colors.tolist(), customdata=status,
               hovertemplate="%{x}<br>after temperature %{y:.3f}<br>%{customdata}<extra></extra>"),
        go.Scatter(x=x, y=final[idx], name="final (renormalised)", mode="markers",
                   marker=dict(symbol="diamond", size=12, color="black"),
                   hovertemplate="%{x}<br>final probability %{y:.3f}<extra></extra>"),
        # legend entries for the colours
        go.Bar(x=[None], y=[None], name="kept", marker_color=KEPT, showlegend=True),
        go.Bar(x=[None], y=[None], name="cut by top-k", marker_color=CUT_K, showlegend=True),
        go.Bar(x=[None], y=[None], name="cut by top-p", marker_color=CUT_P, showlegend=True),
    ])
    notes = []
    if removed_mass is not None:
        notes.append(f"mass cut: {removed_mass:.1%}")
    if entropy is not None:
        notes.append(f"final entropy: {entropy:.2f} nats")
    if notes:
        fig.add_annotation(text=" · ".join(notes), xref="paper", yref="paper", x=1, y=1.02, showarrow=False,
                           xanchor="right", yanchor="bottom", font=dict(size=15))
    fig.update_layout(barmode="group", bargap=0.25, legend=dict(orientation="h", y=-0.35))
    fig.update_xaxes(tickangle=-45)
    fig.update_yaxes(title="probability", rangemode="tozero")
    return apply_theme(fig, height=480, title=title)


LABEL_ROOM = 0.2      # of the tallest bar: room above it for its value label (drawn outside the bar, in the plot)


def _probability_axis(tallest: float) -> dict:
    """A probability axis (0 to 1) that leaves room above the tallest bar for the label drawn outside it: a label
    pushed above the plotting area would sit on the title (Translate's "1.00" did at 1280 px). Past 1, no tick or
    grid line: the room is blank."""
    top = float(tallest) * (1 + LABEL_ROOM) + 0.02
    ax = dict(range=[0, top])
    if top > 1:
        ax.update(tickmode="array", tickvals=[0, 0.2, 0.4, 0.6, 0.8, 1.0])
    return ax


def final_distribution(final_probs, vocab_labels: Sequence[str], top_n: int = 15, title: str = "") -> go.Figure:
    """A plain bar chart of the final distribution's top_n tokens (for side-by-side comparisons)."""
    p = _vec(final_probs, "final_probs", len(vocab_labels))
    idx = top_indices(p, top_n)
    idx = idx[p[idx] > 0] if (p[idx] > 0).any() else idx[:1]
    fig = go.Figure(go.Bar(x=[esc(vocab_labels[i]) for i in idx], y=p[idx], marker_color=KEPT,
                           text=[f"{v:.2f}" for v in p[idx]], textposition="outside", cliponaxis=False,
                           hovertemplate="%{x}<br>probability %{y:.3f}<extra></extra>"))
    fig.update_xaxes(type="category", tickangle=-45)
    fig.update_yaxes(title="probability", **_probability_axis(p[idx].max()))
    return apply_theme(fig, height=360, title=title)


def sample_histogram(counts, final_probs, vocab_labels: Sequence[str], top_n: int = 20) -> go.Figure:
    """Observed share of N draws (bars) against the final probability (markers)."""
    V = len(vocab_labels)
    c = _vec(counts, "counts", V)
    p = _vec(final_probs, "final_probs", V)
    n = float(c.sum())
    if n <= 0:
        raise ValueError("counts are all zero: draw at least one sample")
    idx = top_indices(p + c / n * 1e-6, top_n)
    idx = idx[(p[idx] > 0) | (c[idx] > 0)]
    x = [esc(vocab_labels[i]) for i in idx]
    fig = go.Figure([
        go.Bar(x=x, y=c[idx] / n, name=f"observed in {int(n):,} draws", marker_color=KEPT, customdata=c[idx],
               hovertemplate="%{x}<br>drawn %{customdata:.0f} times (%{y:.3f})<extra></extra>"),
        go.Scatter(x=x, y=p[idx], name="expected probability", mode="markers",
                   marker=dict(symbol="line-ew", size=26, line=dict(width=3, color="black")),
                   hovertemplate="%{x}<br>expected %{y:.3f}<extra></extra>")])
    fig.update_xaxes(type="category", tickangle=-45)
    fig.update_yaxes(title="share", rangemode="tozero")
    fig.update_layout(legend=dict(orientation="h", y=-0.35))
    return apply_theme(fig, height=400)


def generation_steps(steps: Sequence[dict]) -> go.Figure:
    """Each generated token with the probability it had when chosen; the alternatives on hover."""
    if not steps:
        raise ValueError("steps is empty: generate at least one token")
    x = [f"{i + 1}. {esc(s['token'])}" for i, s in enumerate(steps)]
    probs = [float(s["prob"]) for s in steps]
    alts = ["<br>".join(f"{esc(t)}: {p:.3f}" for t, p in s.get("top", [])[:5]) for s in steps]
    fig = go.Figure(go.Bar(x=x, y=probs, marker_color=KEPT, customdata=alts, text=[esc(s["token"]) for s in steps],
                           textposition="outside", cliponaxis=False,
                           hovertemplate="%{x} (p = %{y:.3f})<br>alternatives:<br>%{customdata}<extra></extra>"))
    fig.update_xaxes(type="category", tickangle=-45, title="step")
    fig.update_yaxes(title="probability when chosen", **_probability_axis(max(probs)))
    return apply_theme(fig, height=340)
