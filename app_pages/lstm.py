"""LSTM: gates, cell and hidden state over time, beside the Transformer on the same text."""
import contextlib

import streamlit as st

from app_pages import common as c
from model import NextToken, Recurrent, views
from viz.lstm import compare_next_token, lstm_gates_panel, most_changing_units

lstm, r = c.open_page(
    "lstm", "LSTM",
    "An LSTM reads one word at a time and carries two vectors forward: the **cell state** *c* (long-term "
    "memory) and the **hidden state** *h* (what it outputs). Three gates, each between 0 and 1, decide: "
    "the **forget gate** how much of the old memory to keep, the **input gate** how much of the new "
    "**candidate** to write, the **output gate** how much of the memory to show. "
    "c_t = f·c_{t-1} + i·g,  h_t = o·tanh(c_t).",
    needs=Recurrent, fallback="lstm-lm", example="lstm",
    message="{name} is not a recurrent network, so this page shows the built-in **lstm-lm** on the same text, and "
            "the sidebar's model beside it below.")
chosen = c.load_or_stop()                   # the sidebar's model (the same object as `lstm` when it is recurrent)
layers = views.lstm_layers(r)
UNITS_SHOWN = 24            # a readable number of rows
UNITS_PROJECTED = 12        # projector mode: the gates and states on one screen, every row named in large type


@st.fragment
def gates() -> None:
    # projector mode: the panel first (gates in one row, states in the next: one screen), its choices under it
    above = st.container() if c.presenting() else None
    opts = list(range(1, len(layers) + 1))
    left, right = st.columns([1, 2]) if above is not None else (st, st)
    layer = left.radio("Layer", opts, horizontal=True, **c.bound("layer", 1, options=opts)) if len(layers) > 1 else 1
    g = layers[layer - 1]
    n_units = g["cell state"].shape[1]
    few = min(UNITS_PROJECTED if above is not None else UNITS_SHOWN, n_units)
    which = right.radio("Units", ["few", "all"], horizontal=True,
                        captions=[f"the {few} whose memory changes most on this text", f"all {n_units}"],
                        **c.bound("units", "few", options=["few", "all"]))
    units = most_changing_units(g["cell state"], few) if which == "few" else None
    cols = 3 if above is not None else 2
    with above if above is not None else contextlib.nullcontext():
        c.plot(c.cached_figure(lstm, "lstm_panel", (layer, which, cols, *c.run_key(r)),
                               lambda: lstm_gates_panel(g, r.tokens, units, cols=cols)), key="lstm_panel")
    st.caption("Each panel: units (rows) over the words (columns). Gates run 0 (closed) to 1 (open); "
               "candidate, cell and hidden are signed (blue negative, red positive). "
               + ("Units are ordered by how much their cell state varies across the text." if units is not None
                  else ""))


gates()

st.subheader("Next word: LSTM beside Transformer")
other = chosen if chosen is not lstm else None
if other is None or not isinstance(other, NextToken) or other.vocab != lstm.vocab:
    other = c.try_load("transformer-lm")
if other is None:
    st.info("The built-in Transformer could not be opened, so there is nothing to compare with.")
    st.stop()
rt = c.run_or_stop(other)
c.plot(c.cached_figure(lstm, "lstm_cmp", (c.model_key(other), *c.run_key(r)),
                       lambda: compare_next_token({f"LSTM ({lstm.name})": views.next_probs(r),
                                                   f"Transformer ({other.name})": views.next_probs(rt)},
                                                  lstm.vocab, top_n=12)), key="lstm_cmp")
st.caption("Both models were trained on the same toy corpus, with a similar number of parameters.")
