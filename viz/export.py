"""Export: the exact numbers a figure draws, with their labels, as a JSON-ready dict and as CSV."""
from __future__ import annotations

import csv
import html
import io

import numpy as np
import plotly.graph_objects as go

FIELDS = ("x", "y", "z", "text", "customdata")


def _plain(v):
    if v is None:
        return None
    a = np.asarray(v, dtype=object) if not isinstance(v, np.ndarray) else v
    if a.dtype.kind in "fc":
        return np.where(np.isfinite(a), a, np.nan).tolist()
    if a.dtype.kind in "iub":
        return a.tolist()
    return [html.unescape(x) if isinstance(x, str) else _plain(x) if isinstance(x, (list, tuple, np.ndarray)) else x
            for x in a.tolist()]


def figure_data(fig: go.Figure) -> dict:
    """{"title": ..., "traces": [{"name", "type", "x", "y", "z", ...}]} with labels unescaped (as the reader sees them)."""
    title = fig.layout.title.text if fig.layout.title and fig.layout.title.text else ""
    traces = []
    for t in fig.data:
        d = {"name": t.name or "", "type": t.type}
        for f in FIELDS:
            if f in t and t[f] is not None:
                d[f] = _plain(t[f])
        traces.append(d)
    return {"title": html.unescape(title), "traces": traces}


def to_csv(data: dict) -> str:
    """Heatmaps as a labelled matrix (one block per trace), other traces as x, y (and text) columns.

    A dict given directly (not from figure_data) is written as one column per key of equal-length lists, or
    as a labelled matrix when it has "matrix", "rows" and "columns"."""
    buf = io.StringIO()
    w = csv.writer(buf)
    if "traces" not in data:
        if "matrix" in data:
            w.writerow([data.get("corner", "")] + list(data["columns"]))
            for label, row in zip(data["rows"], data["matrix"]):
                w.writerow([label] + list(row))
        else:
            cols = [k for k, v in data.items() if isinstance(v, (list, tuple))]
            w.writerow(cols)
            for row in zip(*(data[c] for c in cols)):
                w.writerow(row)
        return buf.getvalue()
    for t in data["traces"]:
        w.writerow([f"# {t['type']} {t.get('name', '')}".strip()])
        if "z" in t and isinstance(t["z"], list) and t["z"] and isinstance(t["z"][0], list):
            xs = t.get("x") or list(range(len(t["z"][0])))
            ys = t.get("y") or list(range(len(t["z"])))
            w.writerow([""] + list(xs))
            for label, row in zip(ys, t["z"]):
                w.writerow([label] + list(row))
        else:
            cols = [f for f in ("x", "y", "text") if isinstance(t.get(f), list)]
            w.writerow(cols)
            for row in zip(*(t[c] for c in cols)):
                w.writerow(row)
    return buf.getvalue()
