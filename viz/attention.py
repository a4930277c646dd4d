"""Attention figures: one head large, all heads as a lean grid, one token across heads, logit lens."""
from __future__ import annotations

import base64
import functools
import io
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from .common import (LONG_AXIS, MAGNITUDE, SEQUENTIAL, apply_theme, as_array, check_labels, esc, index_axis,
                     position_labels, token_axis)

HOVER = "query: %{y}<br>key: %{x}<br>weight: %{z:.3f}<extra></extra>"
EXACT_HEAD_CELLS = 256 * 256    # one head above this many cells is sent as 255 levels (1 byte a cell), not float32
HEAD_POOL_ABOVE = 512           # one head of a longer text: each 2x2 (or larger) block drawn as its largest weight


def attention_heatmap(weights, q_labels: Sequence[str], k_labels: Sequence[str], title: str = "",
                      zmax: float | None = None) -> go.Figure:
    """One head: rows are queries (top to bottom), columns keys; hover shows both tokens and the weight.

    Over EXACT_HEAD_CELLS cells the weights are sent as 255 levels of the head's largest weight (one byte a cell)
    on numbered axes; over HEAD_POOL_ABOVE positions each f x f block is drawn as its largest weight (f = 2 at
    1,024 tokens): the figure is then drawn four times faster, a peak is never lost (a browser shrinking 1,024
    rows into a 700-pixel figure drops rows), and hover names the block. The token view has every exact value."""
    w = as_array(weights, 2, "attention weights", "(queries, keys)")
    w = w if w.dtype == np.float16 else w.astype(np.float32)
    check_labels(q_labels, w.shape[0], "query")
    check_labels(k_labels, w.shape[1], "key")
    levels = w.size > EXACT_HEAD_CELLS
    f = -(-max(w.shape) // HEAD_POOL_ABOVE) if levels else 1
    if f > 1:
        w = pool_max(w[None, None], f)[0, 0]
    w = w.astype(np.float32)
    top = zmax if zmax is not None else max(float(np.nanmax(w)), 1e-6)
    if levels:
        q = np.clip(np.rint(np.nan_to_num(w) / top * 255), 0, 255).astype(np.uint8)
        ticks = [0, 64, 128, 191, 255]
        # a block's centre is its place on the position axes (block i covers positions i*f .. i*f+f-1)
        block = (f"a {f}×{f} block around query %{{y}}, key %{{x}}<br>largest weight" if f > 1
                 else "query position %{y}<br>key position %{x}<br>weight")
        fig = go.Figure(go.Heatmap(z=q, x0=(f - 1) / 2, dx=f, y0=(f - 1) / 2, dy=f, colorscale=SEQUENTIAL,
                                   zmin=0, zmax=255, hovertemplate=f"{block}: %{{z}}/255 × {top:.4f}<extra></extra>",
                                   colorbar=dict(title="weight", thickness=14, tickvals=ticks,
                                                 ticktext=[f"{top * t / 255:.3g}" for t in ticks])))
        per = f", {f} positions a cell" if f > 1 else ""
        fig.update_xaxes(index_axis(k_labels, side="top", tickangle=-45, title="key (looked at)" + per))
        fig.update_yaxes(index_axis(q_labels, autorange="reversed", title="query (looking)" + per))
    else:
        fig = go.Figure(go.Heatmap(z=w, x=position_labels(k_labels), y=position_labels(q_labels),
                                   colorscale=SEQUENTIAL, zmin=0, zmax=top, hovertemplate=HOVER,
                                   colorbar=dict(title="weight", thickness=14)))
        fig.update_xaxes(token_axis(k_labels, side="top", tickangle=-45, title="key (looked at)"))
        fig.update_yaxes(token_axis(q_labels, autorange="reversed", title="query (looking)"))
    size = min(760, 220 + 32 * max(len(q_labels), 6))
    return apply_theme(fig, height=size, title=title)


def _tile(w: np.ndarray, gap: int, fill) -> np.ndarray:
    """(L, H, Tq, Tk) -> one (L*(Tq+gap)-gap, H*(Tk+gap)-gap) array, tiles separated by `fill`."""
    L, H, Tq, Tk = w.shape
    out = np.full((L * (Tq + gap) - gap, H * (Tk + gap) - gap), fill, dtype=w.dtype)
    for l in range(L):
        for h in range(H):
            r, c = l * (Tq + gap), h * (Tk + gap)
            out[r:r + Tq, c:c + Tk] = w[l, h]
    return out


def grid_tile_at(x: float, y: float, Tq: int, Tk: int, gap: int | None = None) -> tuple[int, int] | None:
    """Map a clicked cell (x = column, y = row of the tiled grid) to (layer, head), 0-based; None in a gap."""
    gap = _gap(Tq, Tk) if gap is None else gap
    l, rr = divmod(int(round(y)), Tq + gap)
    h, cc = divmod(int(round(x)), Tk + gap)
    if rr >= Tq or cc >= Tk:
        return None
    return l, h


def _gap(Tq: int, Tk: int) -> int:
    return max(1, round(max(Tq, Tk) / 24))


def palette_png(index: np.ndarray, palette: np.ndarray) -> bytes:
    """An 8-bit indexed PNG (one byte per pixel) from a 2-D uint8 array and a (n <= 256, 3) uint8 palette."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(index, dtype=np.uint8), mode="P")
    img.putpalette(np.ascontiguousarray(palette, dtype=np.uint8).tobytes())
    out = io.BytesIO()
    img.save(out, format="PNG", compress_level=1)                # fast: the grid is built while a page waits
    return out.getvalue()


LEVELS = 255          # weights 0..1 quantised to 0..254 in the image grid; index 255 is the white gap


POOL_ABOVE = 128               # image grids of longer texts: one pixel per f x f block of cells (its largest weight)


def pool_max(w: np.ndarray, f: int) -> np.ndarray:
    """(L, H, Tq, Tk) -> (L, H, ceil(Tq/f), ceil(Tk/f)), each cell the largest weight of its f x f block
    (a peak stays visible; the one-head view has every exact value). Weights are >= 0.

    float16 weights (long texts) are pooled on their bit patterns: for non-negative half floats the unsigned
    16-bit pattern orders exactly as the value, so the max of the patterns is the pattern of the max (if a -0.0,
    whose sign bit makes it the largest pattern, wins a block, the signs are cleared and it is pooled again).
    No float32 copy of the whole stack is made."""
    w = np.asarray(w)
    L, H, Tq, Tk = w.shape
    if w.dtype == np.float16:
        out = _pool(w.view(np.uint16), f)
        if (out >= 0x8000).any():                       # a -0.0 (sign bit set) won a block: clear the signs, again
            out = _pool(w.view(np.uint16) & np.uint16(0x7FFF), f)
        return out.view(np.float16)
    return _pool(w, f)


def _pool(a: np.ndarray, f: int) -> np.ndarray:
    L, H, Tq, Tk = a.shape
    if Tq % f == 0 and Tk % f == 0:            # query rows first: whole rows compared at once (5x faster)
        rows = a.reshape(L, H, Tq // f, f, Tk).max(axis=3)
        return rows.reshape(L, H, Tq // f, Tk // f, f).max(axis=4)
    # ragged last block: reduce over index ranges, no padded copy
    return np.maximum.reduceat(np.maximum.reduceat(a, np.arange(0, Tk, f), axis=3), np.arange(0, Tq, f), axis=2)


def grid_levels(weights: np.ndarray) -> np.ndarray:
    """Weights in [0, 1] -> palette indices 0..254 (what the image grid shows; 1 level = 1/254)."""
    return np.clip(np.rint(np.asarray(weights, np.float32) * (LEVELS - 1)), 0, LEVELS - 1).astype(np.uint8)


@functools.lru_cache(maxsize=1)
def _palette() -> np.ndarray:
    """LEVELS colours of the sequential scale, then white for the gaps (computed once; read-only)."""
    colors = sample_colorscale(SEQUENTIAL, np.linspace(0, 1, LEVELS), colortype="tuple")
    pal = np.array(colors, dtype=np.float64)
    pal = pal * 255 if pal.max() <= 1.0 else pal
    out = np.vstack([np.rint(pal), [[255, 255, 255]]]).astype(np.uint8)
    out.setflags(write=False)
    return out


GRID_LABELS_MAX = 20           # tokens per axis up to which the grid labels every query and key


def attention_grid(weights, q_labels: Sequence[str], k_labels: Sequence[str],
                   row_names: Sequence[str] | None = None, max_exact_cells: int = 40_000, pool: int = 1) -> go.Figure:
    """Every layer x head as small heatmaps in ONE trace (lean: no subplots).

    Small grids are one heatmap with exact float32 weights and a hover that names layer, head and
    tokens. Grids over `max_exact_cells` cells (GPT-2: 12 x 12 heads x 128 x 128) become one
    indexed PNG image (weights quantised to 255 levels, one pixel per query-key cell), which the
    browser decodes natively: a few MB at most and drawn several times faster than a 2.6-million-cell
    heatmap. They have no hover; pick a head to see exact values. In both, cell (query i, key j) of
    layer l, head h sits at x = h*(Tk+gap)+j, y = l*(Tq+gap)+i (see `grid_tile_at`).

    pool > 1: `weights` are already max-pooled, each cell the largest weight of a pool x pool block of the
    len(q_labels) x len(k_labels) head (a compact trace keeps them so); drawn as the image, as pooled here.
    """
    w = as_array(weights, 4, "attention weights", "(layers, heads, queries, keys)")
    w = w if w.dtype == np.float16 else w.astype(np.float32)     # long texts stay float16 until pooled
    L, H, Tq, Tk = w.shape
    check_labels(q_labels[::pool] if pool > 1 else q_labels, Tq, "query")
    check_labels(k_labels[::pool] if pool > 1 else k_labels, Tk, "key")
    row_names = list(row_names) if row_names is not None else [f"layer {i + 1}" for i in range(L)]
    check_labels(row_names, L, "layer")
    exact = w.size <= max_exact_cells and pool == 1
    w = w.astype(np.float32) if exact else w
    if not exact and pool == 1 and max(Tq, Tk) > POOL_ABOVE:   # long texts: each tile max-pooled to <= POOL_ABOVE px
        w = pool_max(w, -(-max(Tq, Tk) // POOL_ABOVE))
        Tq, Tk = w.shape[2:]
    gap = _gap(Tq, Tk)
    if exact:
        z = _tile(w, gap, np.nan)
        ql = [esc(t) for t in q_labels]
        kl = [esc(t) for t in k_labels]
        text = np.full(z.shape, "", dtype=object)
        for l in range(L):
            for h in range(H):
                r, c = l * (Tq + gap), h * (Tk + gap)
                for i in range(Tq):
                    for j in range(Tk):
                        text[r + i, c + j] = f"layer {l + 1}, head {h + 1}<br>{ql[i]} → {kl[j]}"
        traces = [go.Heatmap(z=z, text=text, colorscale=SEQUENTIAL, zmin=0, zmax=1, hoverongaps=False,
                             hovertemplate="%{text}<br>weight: %{z:.3f}<extra></extra>",
                             colorbar=dict(title="weight", thickness=14))]
    else:
        png = palette_png(_tile(grid_levels(w), gap, np.uint8(LEVELS)), _palette())
        traces = [go.Image(source="data:image/png;base64," + base64.b64encode(png).decode("ascii"),
                           x0=0, dx=1, y0=0, dy=1, hoverinfo="skip", name="all heads"),
                  # an empty marker trace that only carries the colour bar (an image has none)
                  go.Scatter(x=[None], y=[None], mode="markers", hoverinfo="skip", showlegend=False,
                             marker=dict(color=[0.0], colorscale=SEQUENTIAL, cmin=0, cmax=1, showscale=True,
                                         colorbar=dict(title="weight", thickness=14)))]
    fig = go.Figure(traces)
    fig.update_xaxes(tickmode="array", tickvals=[h * (Tk + gap) + (Tk - 1) / 2 for h in range(H)],
                     ticktext=[f"head {h + 1}" for h in range(H)], side="top", showgrid=False, zeroline=False,
                     range=[-0.5, H * (Tk + gap) - gap - 0.5])
    fig.update_yaxes(tickmode="array", tickvals=[l * (Tq + gap) + (Tq - 1) / 2 for l in range(L)],
                     ticktext=row_names, autorange="reversed", showgrid=False, zeroline=False,
                     scaleanchor="x", scaleratio=1)
    if not exact:
        fig.update_yaxes(autorange=False, range=[L * (Tq + gap) - gap - 0.5, -0.5])
    tile_px = int(np.clip(900 / max(H, 1), 40, 160))
    labelled = pool == 1 and max(Tq, Tk) <= GRID_LABELS_MAX and H <= 8
    if labelled:                      # token labels where they fit: queries left of each layer, keys under each head
        fig.update_yaxes(side="right")
        small = dict(size=11, color="#555")
        notes = [dict(x=-0.7, y=l * (Tq + gap) + i, text=esc(q_labels[i]), xanchor="right", showarrow=False,
                      font=small, xref="x", yref="y") for l in range(L) for i in range(Tq)]
        notes += [dict(x=h * (Tk + gap) + j, y=L * (Tq + gap) - gap - 0.3, text=esc(k_labels[j]), textangle=-60,
                       xanchor="right", yanchor="top", showarrow=False, font=small, xref="x", yref="y")
                  for h in range(H) for j in range(Tk)]
        fig.update_layout(annotations=notes)
        for t in fig.data:
            if getattr(t, "colorbar", None) is not None and t.type == "heatmap":
                t.colorbar.x = 1.08
    fig = apply_theme(fig, height=int(min(1500, 80 + L * tile_px * (Tq + gap) / (Tk + gap))))
    if labelled:
        longest = max(len(str(t)) for t in list(q_labels) + list(k_labels))
        fig.update_layout(margin=dict(l=20 + 7 * longest, b=20 + 6 * longest, r=90))
        fig.update_layout(height=fig.layout.height + 6 * longest)
    return fig


def token_attention(weights, query_index: int | None, k_labels: Sequence[str], q_label: str = "") -> go.Figure:
    """Where one query token looks, in every head: rows 'L1 H1' ... , columns the keys.

    weights: (layers, heads, queries, keys) with query_index, or one query's (layers, heads, keys) with None."""
    if query_index is None:
        w = as_array(weights, 3, "attention weights", "(layers, heads, keys)").astype(np.float32)[:, :, None, :]
        query_index = 0
    else:
        w = as_array(weights, 4, "attention weights", "(layers, heads, queries, keys)")
    w = w if w.dtype == np.float16 else w.astype(np.float32)     # long texts: only the query's rows are converted
    L, H, Tq, Tk = w.shape
    check_labels(k_labels, Tk, "key")
    if not 0 <= query_index < Tq:
        raise ValueError(f"query_index {query_index} is outside 0..{Tq - 1}")
    rows = w[:, :, query_index, :].reshape(L * H, Tk).astype(np.float32)    # float32: sent as a compact typed array
    names = [f"L{l + 1} H{h + 1}" for l in range(L) for h in range(H)]
    long = Tk > LONG_AXIS
    fig = go.Figure(go.Heatmap(z=rows, x=None if long else position_labels(k_labels), y=names, colorscale=SEQUENTIAL,
                               zmin=0, zmax=1, colorbar=dict(title="weight", thickness=14),
                               hovertemplate="%{y}<br>key" + (" position" if long else "") +
                                             ": %{x}<br>weight: %{z:.3f}<extra></extra>"))
    fig.update_xaxes((index_axis if long else token_axis)(k_labels, side="top", tickangle=-45))
    fig.update_yaxes(autorange="reversed", type="category")
    return apply_theme(fig, height=min(1400, 120 + 26 * L * H), title=f"From “{q_label}”" if q_label else None)


def logit_lens(top_tokens: Sequence[Sequence[str]], top_probs, token_labels: Sequence[str],
               layer_names: Sequence[str]) -> go.Figure:
    """Top predicted token (written in the cell) and its probability (colour), per layer and position."""
    p = as_array(top_probs, 2, "top_probs", "(layers + 1, tokens)").astype(np.float32)
    n_layers, T = p.shape
    check_labels(token_labels, T, "token")
    check_labels(layer_names, n_layers, "layer")
    if len(top_tokens) != n_layers or any(len(r) != T for r in top_tokens):
        raise ValueError(f"top_tokens must be {n_layers} rows of {T} tokens")
    text = [[esc(t) for t in row] for row in top_tokens]
    fig = go.Figure(go.Heatmap(z=p, x=position_labels(token_labels), y=list(layer_names), text=text,
                               texttemplate="%{text}", textfont=dict(size=13), colorscale=MAGNITUDE, zmin=0, zmax=1,
                               hovertemplate="after: %{x}<br>%{y}<br>top next token: %{text} (%{z:.3f})<extra></extra>",
                               colorbar=dict(title="prob", thickness=14)))
    fig.update_xaxes(token_axis(token_labels, side="top", tickangle=-45, title="position (predicting the next token)"))
    fig.update_yaxes(type="category")
    return apply_theme(fig, height=min(900, 140 + 44 * n_layers))
