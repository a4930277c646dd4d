"""Attention: every head of every layer, one head large, and where one token looks."""
import streamlit as st

from app_pages import common as c
from viz.attention import attention_grid, attention_heatmap, token_attention

c.intro("Attention",
        "Each head asks, for every token (a **row**, the *query*), how much to look at every token (a "
        "**column**, the *key*) when building its new meaning. A row's weights sum to 1. Different heads "
        "learn different habits: some look at the previous word, some at the first token, some at the word "
        "that a pronoun refers to.",
        "in the last layers, find the head where **it** looks at **bear**; then change *hungry* to "
        "*delicious* and see it switch to **honey**.")

m = c.load_or_stop()
r = c.transformer_run_or_stop(
    m, "The LSTM has no attention: it reads one word at a time and keeps a memory. "
       "See the **LSTM** page, or pick a Transformer in the sidebar.")

STACKS = {"encoder": "Encoder self-attention", "decoder": "Decoder masked self-attention",
          "cross": "Cross-attention (decoder → encoder)", "self": "Self-attention"}
stacks = [s for s in ("encoder", "decoder", "cross", "self") if s in r.trace.attention]
stack = st.radio("Attention", stacks, format_func=STACKS.get, horizontal=True, key="att_stack") \
    if len(stacks) > 1 else stacks[0]
if m.kind == "seq2seq":
    st.markdown(f"Source: {c.tokens_line(r.tokens)}  \nTarget so far (the decoder's input): "
                f"{c.tokens_line(r.target_tokens)}")
q_labels = r.target_tokens if stack in ("decoder", "cross") else r.tokens
k_labels = r.target_tokens if stack == "decoder" else r.tokens
weights = [a.weights[0].numpy() for a in r.trace.attention[stack]]           # per layer (H, Tq, Tk)
L, H = len(weights), weights[0].shape[0]

st.subheader(f"All {L} layers × {H} heads")
show_grid = True
if L * H > 48:
    show_grid = st.toggle(f"Draw all {L * H} heads", value=L * H * len(q_labels) <= 144 * 128, key="att_show_grid",
                          help="Large models have many heads; the grid is drawn on demand.")
if show_grid:
    import numpy as np

    c.plot(attention_grid(np.stack(weights), q_labels, k_labels), key=f"grid_{stack}")
    st.caption("Rows of the grid are layers (1 = closest to the input), columns are heads. Pick one below to see it large.")


@st.fragment
def one_head() -> None:
    st.subheader("One head, large")
    c1, c2 = st.columns(2)
    layer = c1.selectbox("Layer", range(1, L + 1), index=L - 1, key=f"att_layer_{stack}")
    head = c2.selectbox("Head", range(1, H + 1), key=f"att_head_{stack}")
    w = weights[layer - 1][head - 1]
    c.plot(attention_heatmap(w, q_labels, k_labels, title=f"{STACKS[stack]}: layer {layer}, head {head}"),
           key=f"head_{stack}")


@st.fragment
def one_token() -> None:
    st.subheader("Where one token looks, in every head")
    default = q_labels.index("it") if "it" in q_labels else len(q_labels) - 1     # the pronoun of the example
    qi = st.selectbox("Query token", range(len(q_labels)), index=default,
                      format_func=lambda i: f"{i}: {q_labels[i]}", key=f"att_token_{stack}")
    import numpy as np

    c.plot(token_attention(np.stack(weights), qi, k_labels, q_labels[qi]), key=f"tok_{stack}")
    st.caption("One row per head (L = layer, H = head); each row is that head's attention from the chosen token.")


one_head()
one_token()
