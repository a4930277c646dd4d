"""Masks: the causal (look-ahead) mask and the padding mask, and what they do to the scores."""
import streamlit as st

from app_pages import common as c
from app_pages.breakit import break_it
from model import PaddedBatch, views
from viz.masks import mask_matrix, masking_stages, padding_mask

m, r = c.open_page(
    "masks", "Masks",
    "A language model learns to predict each next word, so while reading word *t* it must not see words "
    "after *t*. The **causal mask** forbids it: before the softmax, every score above the diagonal is set "
    "to **−∞**, and e^−∞ = 0, so those weights vanish and each row still sums to 1. A **padding mask** does "
    "the same for the filler tokens that make sentences of different lengths fit in one batch.",
    message="This model cannot be traced here.")
if not r.trace.attention:
    st.info("The LSTM needs no mask: it reads left to right, so it never sees the future. Pick a Transformer.")
    st.stop()
role = views.masked_role(r)
att = views.attention_views(r)[role]
first = views.masking_view(r, role, 0, 0)

def mask_section() -> None:
    st.subheader("The mask for this text")
    mask_words()
    c.plot(c.cached_figure(m, "mask_m", seen, lambda: mask_matrix(first.allowed, first.query_tokens, first.key_tokens,
                                                                 title="Allowed (query row may look at key column)")),
           key="mask_m")


def mask_words() -> None:
    if not att.causal:
        st.markdown(f"**{c.md_escape(m.name)}** reads the whole sentence at once (an encoder, BERT-like), so there is "
                    "no causal mask: every token may look at every other one. That is why it can fill in a blank but "
                    "cannot write text word by word.")
    elif role == "decoder":
        st.markdown("The translator's **decoder** uses the causal mask on the French it has written so far; its "
                    "encoder and its cross-attention see the whole English sentence.")


seen = (role, *c.run_key(r))        # with the model, what every figure below is computed from


@st.fragment
def stages() -> None:
    # projector mode: this is the page's key figure, on the first screen: no heading (its panels are titled),
    # the figure above its layer / head boxes
    above = st.container() if c.presenting() else None
    if above is None:
        st.subheader("Scores → masked → softmax")
    c1, c2 = st.columns(2)
    layers = list(range(1, att.n_layers + 1))
    heads = list(range(1, att.n_heads + 1))
    layer = c1.selectbox("Layer", layers, **c.bound("layer", 1, options=layers))
    head = c2.selectbox("Head", heads, **c.bound("head", 1, options=heads))
    v = views.masking_view(r, role, layer - 1, head - 1, m)
    if v.scores is None:
        st.info(f"{c.md_escape(m.name)} does not give its raw scores here (its attention adds a position term inside "
                "the layer that the lab does not recompute), so only the weights after softmax are drawn.")
    with above if above is not None else st.container():
        c.plot(c.cached_figure(m, "mask_stages", (layer, head, *seen),
                               lambda: masking_stages(v.scores, v.allowed, v.weights, v.query_tokens, v.key_tokens)),
               key="mask_stages")
    st.caption("Left: q·k/√d_k for every pair. Middle: the mask puts −∞ where a query may not look. "
               "Right: softmax of each row; the −∞ cells become exactly 0.")
    if att.causal:
        break_it(m, "mask", "Break it: run without the causal mask", "brk_mask", head=(role, layer - 1, head - 1))


if c.presenting():                  # projector mode: the key figure first, the simple mask after it
    stages()
    mask_section()
else:
    mask_section()
    stages()

st.subheader("Padding: a batch of sentences of different lengths")
if not isinstance(m, PaddedBatch):
    st.info(f"{c.md_escape(m.name)} is not run in padded batches in this lab.")
    st.stop()
st.markdown("To run sentences together they are padded to the same length with a **pad** token. The padding mask "
            "stops every real token from attending to the pads, so the short sentence's result is the same as "
            "if it ran alone.")
short = st.text_input("A shorter second sentence", max_chars=c.MAX_TEXT, **c.bound("short", "the cat slept"))
try:
    pv = c.cached(m, "padded", (c.text(), short), lambda: views.padded_view(m, [c.text(), short]))
except Exception as e:  # LabError for bad text
    st.info(c.md_escape(e))
    st.stop()
c.plot(c.cached_figure(m, "mask_pad", (c.text(), short), lambda: padding_mask(pv.batch_tokens, valid=pv.valid)),
       key="mask_pad")
s = pv.stages
st.markdown(f"Attention of sentence {pv.padded_row + 1} (last layer, head 1): the pad columns are all zero.")
c.plot(c.cached_figure(m, "mask_pad_att", (c.text(), short),
                       lambda: masking_stages(s.scores, s.allowed, s.weights, s.query_tokens, s.key_tokens)),
       key="mask_pad_att")
