"""Shared helpers: input checks with clear errors, escaped token labels, a projector-friendly theme."""
from __future__ import annotations

import html
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

pio.templates.default = "plotly_white"   # set once: applying it per figure copied the whole template each time


def _remember_property_paths() -> None:
    """plotly turns every property path it is given ("title_font_size", "xaxis.range") into a tuple with a pure
    but slow parser, again on every update: about a third of building a figure here (py-spy on a Masks page
    rerun). Its answers depend only on the string, so they are remembered (the index list is copied per call).
    If a plotly version has no such function, nothing changes. Worth it, measured: `python -m bench --only plotly`
    builds the Masks and layer-norm figures 1.38x faster with it (interleaved with plotly's own parser)."""
    import functools

    import plotly.basedatatypes as bd

    parse = getattr(bd, "_str_to_dict_path_full", None)
    if parse is None or getattr(parse, "lab_remembered", False):
        return

    @functools.lru_cache(maxsize=8192)
    def remembered(path: str):
        props, idcs = parse(path)
        return props, tuple(idcs)

    def fast(path):
        if not isinstance(path, str):
            return parse(path)
        props, idcs = remembered(path)
        return props, list(idcs)

    fast.lab_remembered = True
    fast.original = parse
    bd._str_to_dict_path_full = fast


_remember_property_paths()
FONT = 16                      # base font size: readable on a projector
# Colour scales readable with deuteranopia and protanopia: perceptually uniform sequential scales, and a
# ColorBrewer diverging scale marked colour-blind safe (its two ends differ in hue blue/red and in lightness).
SEQUENTIAL = "Cividis"         # attention weights in [0, 1] (cividis: optimised for colour-vision deficiency)
MAGNITUDE = "Viridis"          # other values >= 0: gates, spreads, probabilities, changes
DIVERGING = "RdBu_r"           # signed values, centred at 0 (blue negative, white 0, red positive)
# Okabe-Ito colours (distinct under every common colour-vision deficiency): kept, cut by top-k, cut by top-p
KEPT, CUT_K, CUT_P, RAW = "#0072B2", "#D55E00", "#E69F00", "#c7c7c7"
# Okabe-Ito's categorical colours, for lines and bars that a legend names (black left out: it draws means)
OKABE_ITO = ["#0072B2", "#009E73", "#D55E00", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442"]


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


LONG_AXIS = 256  # above this many positions an axis is numbered (0..n-1) instead of one category per token


def index_axis(tokens: Sequence[str], max_ticks: int = MAX_TICKS, **extra) -> dict:
    """A numbered axis for positions 0..n-1 of a long text, every step-th tick labelled 'i: token'. Figures of over
    LONG_AXIS positions use it: a thousand category names make the figure slower to send and to draw, and their
    cells are narrower than a pixel anyway (hover gives the position; the token view names the tokens)."""
    step = max(1, -(-len(tokens) // max_ticks)) if max_ticks > 0 else 1
    keep = list(range(0, len(tokens), step))
    return dict(tickmode="array", tickvals=keep, ticktext=[f"{i}: {esc(tokens[i])}" for i in keep], type="linear",
                **extra)


TOOLBAR = 38    # px: the toolbar (always shown, PLOT_CONFIG) gets its own row at the top of every figure (36 px tall
                # in projector mode, whose larger root font size scales it)
TITLE_WRAP = 44  # characters: a longer title is broken into two lines (a half-width figure cuts a long one)


def wrap_title(title: str, width: int = TITLE_WRAP) -> str:
    """An escaped title over `width` characters broken at the word boundary nearest its middle (after ':' or ','
    where there is one), so that a figure in a half-width column shows all of it."""
    if len(title) <= width or "<br>" in title:
        return title
    cuts = [i for i, ch in enumerate(title) if ch == " " and 0 < i < len(title) - 1]
    if not cuts:
        return title
    mid = len(title) / 2
    best = min(cuts, key=lambda i: abs(i - mid) - (6 if title[i - 1] in ":,;·" else 0))
    return title[:best] + "<br>" + title[best + 1:]


def apply_theme(fig: go.Figure, height: int | None = None, title: str | None = None) -> go.Figure:
    """Type, margins and title of every figure. The top margin is measured, not guessed: a row for the toolbar,
    then the title, then the subplot titles and any tick labels drawn above the plot, so none of them collide."""
    fig.update_layout(font=dict(size=FONT), margin=dict(l=10, r=10, b=10), hoverlabel=dict(font_size=FONT))
    if title:
        title = wrap_title(esc(title))     # titles may quote a token; Plotly would read <a>, <b> ... as markup
        fig.update_layout(title=dict(text=title, x=0.0, xanchor="left", font=dict(size=FONT + 2)))
    fit_top(fig, FONT)
    if height:
        fig.update_layout(height=height)
    return fig


def _subplot_titles(fig: go.Figure) -> list:
    """The annotations that title a subplot of the top row (make_subplots puts them just above the plot)."""
    return [a for a in (fig.layout.annotations or ()) if a.yref == "paper" and a.yanchor == "bottom"
            and a.y is not None and a.y >= 0.98 and a.xref == "paper"]


def fit_top(fig: go.Figure, font: int) -> go.Figure:
    """Pin the title under the toolbar's row and make the top margin hold title, subplot titles and top ticks."""
    top = TOOLBAR
    if fig.layout.title and fig.layout.title.text:
        size = (fig.layout.title.font.size if fig.layout.title.font and fig.layout.title.font.size else font + 2)
        lines = str(fig.layout.title.text).count("<br>") + 1
        # Plotly puts a "top"-anchored title's first baseline about 0.3 em under the pad's edge and centres a
        # multi-line title on it: the pad that makes its first line start just under the toolbar's row
        pad = TOOLBAR + int(size * 0.3 + (lines - 1) * size * 0.65) + 1
        fig.update_layout(title=dict(yref="container", y=1, yanchor="top", pad=dict(t=pad, b=0)))
        top += int(size * 1.3 * lines) + 6
    subs = _subplot_titles(fig)
    if subs:
        size = max((a.font.size if a.font and a.font.size else font) for a in subs)
        top += int(size * 1.4)
    tick = fig.layout.xaxis.tickfont.size if fig.layout.xaxis.tickfont and fig.layout.xaxis.tickfont.size else font
    top += _top_tick_room(fig, tick)
    fig.update_layout(margin=dict(t=top + 4))
    if fig.layout.legend and fig.layout.legend.yref == "container":       # a legend row under the x axis
        bottom = font * 1.5 + (font * 1.6 if fig.layout.xaxis.title and fig.layout.xaxis.title.text else 0)
        fig.update_layout(margin=dict(b=int(bottom + font * 1.8 + 8)))
    return fig


LEGEND_BELOW = dict(orientation="h", yref="container", y=0, yanchor="bottom", x=0, xanchor="left")  # under the axis


def _top_tick_room(fig: go.Figure, font: int = FONT) -> int:
    """Pixels that the x tick labels (and axis title) drawn above the plot need; 0 when the axis is below."""
    ax = fig.layout.xaxis
    if ax.side != "top":
        return 0
    labels = [str(t) for t in (ax.ticktext or ax.tickvals or [])]
    longest = max((len(html.unescape(t)) for t in labels), default=3)
    text_px = longest * font * 0.6
    room = text_px * 0.72 + font if ax.tickangle not in (None, 0) else font * 1.4
    if ax.title and ax.title.text:
        room += font * 1.6
    return int(room)


def top_indices(values: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n largest values, largest first (stable for ties)."""
    n = min(n, values.size)
    return np.argsort(-values, kind="stable")[:n]


PROJECTOR_FONT = 22            # projector mode: readable from the back of a classroom
PROJECTOR_SCREEN = 640         # px: projector mode enlarges a figure up to this (a 720 px screen less the heading)


def projector(fig: go.Figure) -> go.Figure:
    """The same figure for a projector: larger type everywhere (titles, subplot titles, ticks, cell labels),
    thicker lines, taller by the same ratio, and the top margin measured again for the larger type."""
    scale = PROJECTOR_FONT / FONT
    fig = go.Figure(fig)
    fig.update_layout(font=dict(size=PROJECTOR_FONT), hoverlabel=dict(font_size=PROJECTOR_FONT))
    if fig.layout.title and fig.layout.title.text:
        fig.update_layout(title_font_size=PROJECTOR_FONT + 4)
    for ax in [*fig.select_xaxes(), *fig.select_yaxes()]:
        size = ax.tickfont.size if ax.tickfont and ax.tickfont.size else None
        size = round(size * scale) if size else PROJECTOR_FONT - 2
        if ax.tickangle not in (None, 0):          # slanted token labels: each needs a cell of ~1.4 x its size
            size = min(size, PROJECTOR_FONT - 5)
        ax.update(tickfont_size=size, linewidth=2)
    for a in fig.layout.annotations or ():
        a.update(font_size=round((a.font.size if a.font and a.font.size else FONT) * scale))
    for t in fig.data:
        bar = getattr(t, "colorbar", None)
        if bar is not None and bar.tickfont and bar.tickfont.size:       # a bar's own small type grows too
            bar.update(tickfont_size=round(bar.tickfont.size * scale))
        if bar is not None and bar.title and bar.title.font and bar.title.font.size:
            bar.update(title_font_size=round(bar.title.font.size * scale))
        if t.type == "heatmap" and t.texttemplate:
            t.update(textfont_size=round((t.textfont.size if t.textfont and t.textfont.size else FONT) * scale))
    fig.update_traces(selector=dict(type="scatter"), line_width=4)
    if fig.layout.height:          # taller by the type's ratio, but a figure shorter than a screen stays one
        h = fig.layout.height
        fig.update_layout(height=int(min(h * min(scale, 1.25), max(h, PROJECTOR_SCREEN))))
    return fit_top(fig, PROJECTOR_FONT)
