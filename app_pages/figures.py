"""Figures on a page: drawn with a visible toolbar (PNG) and CSV / JSON downloads of exactly what they draw,
and built once per model, text and setting for every session (`cached_figure`)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

import streamlit as st

from model import LabModel

PLOT_CONFIG = {"displaylogo": False, "displayModeBar": True, "modeBarButtonsToRemove": ["lasso2d", "select2d"],
               "toImageButtonOptions": {"scale": 2}}


@dataclass
class _CachedFigure:
    fig: Any
    nbytes: int                 # what the trace cache counts against its budget (arrays and strings it holds)


def cached_figure(m: LabModel | None, what: str, args: tuple, build: Callable[[], Any]) -> Any:
    """A figure built once per model, text and setting (`args`: whatever else it is computed from) and shared by
    every session: a whole-page rerun then costs no figure building (plotly validates every property), and the
    1,024-token grid is pooled once. The trace cache counts its arrays and strings against its byte budget; m=None
    for a figure that depends on no model.

    The one Figure object is handed to every session: drawing only reads it (Streamlit serialises a copy). Pages
    must not change it; `plot` copies it for projector mode. (Rebuilding a Figure from a cached dict instead cost
    more than building the figure: plotly validates every property, the whole template included.)"""
    from app_pages.common import cached, traces
    from model.serving.store import trace_bytes

    def make() -> _CachedFigure:
        fig = build()
        return _CachedFigure(fig, trace_bytes(fig.to_plotly_json()))

    if m is None:                                  # a figure that depends on no model (the paper's formula)
        return traces().get((what, None, *args), make).fig
    return cached(m, what, args, make).fig


def plot(fig: Any, key: str, data: Callable[[], dict] | None = None, **kw) -> Any:
    """Draw a figure with a visible toolbar (PNG) and CSV/JSON downloads of exactly what it draws.

    `data` (called only when a download is clicked) overrides what is exported, for figures drawn as an image
    like the large attention grid."""
    from app_pages.common import presenting
    from viz.export import figure_data

    if presenting():
        from viz.common import projector

        fig = projector(fig)
    out = st.plotly_chart(fig, key=key, config=PLOT_CONFIG, **kw)
    title = (fig.layout.title.text if fig.layout.title else None) or key
    export(key, data if data is not None else (lambda: figure_data(fig)), title)
    return out


def export(key: str, data: Callable[[], dict], title: str = "") -> None:
    """CSV and JSON downloads of exactly the numbers drawn (computed only when clicked)."""
    from viz.export import to_csv

    row = st.container(horizontal=True, gap="small")      # the buttons as wide as their labels, never cut
    a = b = row
    a.download_button("CSV", lambda: to_csv(data()), file_name=f"{key}.csv", mime="text/csv", key=f"{key}_csv", on_click="ignore",
                      icon=":material/download:", type="tertiary", help=f"The numbers drawn in “{title or key}”, as CSV")
    b.download_button("JSON", lambda: json.dumps(data(), ensure_ascii=False), file_name=f"{key}.json",
                      mime="application/json", key=f"{key}_json", on_click="ignore", icon=":material/download:", type="tertiary",
                      help="The same numbers with their labels, as JSON")
