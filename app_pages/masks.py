"""Masks: the causal (look-ahead) mask and the padding mask, and what they do to the scores."""
import streamlit as st

from app_pages import common as c
from viz.masks import mask_matrix, masking_stages, padding_mask

c.intro("Masks",
        "A language model learns to predict each next word, so while reading word *t* it must not see words "
        "after *t*. The **causal mask** forbids it: before the softmax, every score above the diagonal is set "
        "to **−∞**, and e^−∞ = 0, so those weights vanish and each row still sums to 1. A **padding mask** does "
        "the same for the filler tokens that make sentences of different lengths fit in one batch.",
        "pick a layer and head, and compare the three panels: raw scores, scores with −∞, weights after softmax.")

m = c.load_or_stop()
r = c.transformer_run_or_stop(
    m, "The LSTM needs no mask: it reads left to right, so it never sees the future. Pick a Transformer.")
stack = {"lm": "self", "mlm": "self", "seq2seq": "decoder"}[m.kind]
labels = r.target_tokens if stack == "decoder" else r.tokens
layers = r.trace.attention[stack]
allowed = layers[0].allowed[0].numpy() if layers[0].allowed is not None else None

st.subheader("The mask for this text")
if m.kind == "mlm":
    st.markdown(f"**{m.name}** is an encoder (BERT-like): it reads the whole sentence at once, so there is no "
                "causal mask: every token may look at every other one. That is why it can fill in a [MASK] "
                "but cannot write text word by word.")
elif m.kind == "seq2seq":
    st.markdown("The translator's **decoder** uses the causal mask on the French it has written so far; its "
                "encoder and its cross-attention see the whole English sentence.")
if allowed is not None:
    c.plot(mask_matrix(allowed, labels, labels, title="Allowed (query row may look at key column)"), key="mask_m")


@st.fragment
def stages() -> None:
    st.subheader("Scores → masked → softmax")
    if not m.has_scores or layers[0].scores is None:
        st.info(f"{m.name} does not expose its raw scores here; the built-in models and GPT-2 do.")
        return
    c1, c2 = st.columns(2)
    layer = c1.selectbox("Layer", range(1, len(layers) + 1), key="mask_layer")
    head = c2.selectbox("Head", range(1, layers[0].weights.shape[1] + 1), key="mask_head")
    a = layers[layer - 1]
    ok = a.allowed[0].numpy() if a.allowed is not None else (a.weights[0, 0].numpy() >= 0)
    c.plot(masking_stages(a.scores[0, head - 1].numpy(), ok, a.weights[0, head - 1].numpy(), labels, labels),
           key="mask_stages")
    st.caption("Left: q·k/√d_k for every pair. Middle: the mask puts −∞ where a query may not look. "
               "Right: softmax of each row; the −∞ cells become exactly 0.")


stages()

st.subheader("Padding: a batch of sentences of different lengths")
st.markdown("To run sentences together they are padded to the same length with **[PAD]**. The padding mask "
            "stops every real token from attending to the pads, so the short sentence's result is the same as "
            "if it ran alone.")
short = st.text_input("A shorter second sentence", "the cat slept", key="mask_short")
try:
    toks, trace = m.run_padded([c.text(), short])
except Exception as e:  # LabError for unsupported models or bad text
    st.info(str(e))
    st.stop()
PAD = "[PAD]"
c.plot(padding_mask([t.tokens for t in toks], pad_token=PAD), key="mask_pad")
short_i = max((0, 1), key=lambda i: toks[i].tokens.count(PAD))                 # the one that got padded
last = trace.attention["self"][-1]
st.markdown(f"Attention of sentence {short_i + 1} (last layer, head 1): the pad columns are all zero.")
c.plot(masking_stages(last.scores[short_i, 0].numpy(), last.allowed[short_i].numpy(),
                      last.weights[short_i, 0].numpy(), toks[short_i].tokens, toks[short_i].tokens), key="mask_pad_att")
