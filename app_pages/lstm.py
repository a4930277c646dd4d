"""LSTM: gates, cell and hidden state over time, beside the Transformer on the same text."""
import streamlit as st

from app_pages import common as c
from viz.lstm import compare_next_token, lstm_gates_panel, most_changing_units

c.intro("LSTM",
        "An LSTM reads one word at a time and carries two vectors forward: the **cell state** *c* (long-term "
        "memory) and the **hidden state** *h* (what it outputs). Three gates, each between 0 and 1, decide: "
        "the **forget gate** how much of the old memory to keep, the **input gate** how much of the new "
        "**candidate** to write, the **output gate** how much of the memory to show. "
        "c_t = f·c_{t-1} + i·g,  h_t = o·tanh(c_t).",
        "look for units whose cell state switches at *because* or holds steady across *to the old cabinet*; "
        "then compare the LSTM's next-word guesses with the Transformer's.")

lstm = c.load_or_stop("lstm-lm") if c.model_name() != "lstm-lm" else c.load_or_stop()
r = c.run_or_stop(lstm)
layers = r.trace.lstm
UNITS_SHOWN = 24            # a readable number of rows on a projector


@st.fragment
def gates() -> None:
    layer = st.radio("Layer", range(1, len(layers) + 1), horizontal=True, key="lstm_layer",
                     format_func=lambda i: f"layer {i}") if len(layers) > 1 else 1
    lt = layers[layer - 1]
    g = {"input gate": lt.input_gate, "forget gate": lt.forget_gate, "output gate": lt.output_gate,
         "candidate": lt.candidate, "cell state": lt.cell, "hidden state": lt.hidden}
    g = {k: v[0].numpy() for k, v in g.items()}
    n_units = g["cell state"].shape[1]
    few = min(UNITS_SHOWN, n_units)
    which = st.radio("Units", ["few", "all"], horizontal=True, key="lstm_units",
                     format_func=lambda w: f"the {few} whose memory changes most on this text" if w == "few"
                     else f"all {n_units}")
    units = most_changing_units(g["cell state"], few) if which == "few" else None
    c.plot(lstm_gates_panel(g, r.tokens, units), key="lstm_panel")
    st.caption("Each panel: units (rows) over the words (columns). Gates run 0 (closed) to 1 (open); "
               "candidate, cell and hidden are signed (blue negative, red positive). "
               + ("Units are ordered by how much their cell state varies across the text." if units is not None
                  else ""))


gates()

st.subheader("Next word: LSTM beside Transformer")
try:
    tf = c.get_model(c.model_name(), c.device_name())
except Exception:  # the sidebar's model failed to load: fall back to the built-in Transformer
    tf = None
if tf is None or tf.kind != "lm" or tf.vocab != lstm.vocab:
    tf = c.load_or_stop("transformer-lm")
rt = c.run_or_stop(tf)
dists = {f"LSTM ({lstm.name})": r.next_logits.softmax(-1).numpy(),
         f"Transformer ({tf.name})": rt.next_logits.softmax(-1).numpy()}
c.plot(compare_next_token(dists, lstm.vocab, top_n=12), key="lstm_cmp")
st.caption("Both models were trained on the same toy corpus, with a similar number of parameters.")
