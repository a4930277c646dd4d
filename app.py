"""Transformer & LSTM lab: see what happens inside small Transformers and LSTMs, live.

    streamlit run app.py
"""
from __future__ import annotations

import streamlit as st

import model
from app_pages import common as c
from app_pages import registry

st.set_page_config(page_title="Transformer & LSTM lab", page_icon="🔬", layout="wide")

PAGES = {p.key: st.Page(p.path, title=p.title, icon=p.icon, url_path=p.key) for p in registry.PAGES}
BLURBS = {p.key: p.blurb for p in registry.PAGES}


def home() -> None:
    st.title("Transformer & LSTM lab")
    st.markdown(
        "Small models, trained by this project, run live and show what they compute inside: "
        "**attention** of every head, **positional encodings**, **masks**, **layer norm**, the "
        "**next-word distribution** as you change the sampling settings, and an **LSTM**'s gates "
        "beside a Transformer. Pick a model and type a sentence in the sidebar; every page uses them. "
        "Hugging Face models (GPT-2, BERT, T5, Marian …) work too.")
    cols = st.columns(2)
    for i, (key, page) in enumerate(PAGES.items()):
        with cols[i % 2]:
            with st.container(border=True):
                st.page_link(page, label=f"**{page.title}**", icon=page.icon)
                st.caption(BLURBS[key])
    m = c.load_or_stop()
    st.subheader("A first look")
    if m.kind == "lstm":
        st.markdown("The LSTM has no attention: open the **LSTM** page to see its gates.")
        return
    r = c.run_or_stop(m)
    from viz.attention import attention_heatmap

    stack = "cross" if m.kind == "seq2seq" else "self"
    layers = r.trace.attention[stack]
    last = len(layers) - 1
    q = r.target_tokens if stack == "cross" else r.tokens
    st.markdown(f"Layer {last + 1}, head 1 of **{m.name}** reading *{c.text()}*: each row is a word, "
                "each cell how much that word looks at another when the model builds its meaning. "
                "Hover a cell for the exact weight.")
    c.plot(attention_heatmap(layers[last].weights[0, 0].numpy(), q, r.tokens,
                             title=f"{stack} attention, layer {last + 1}, head 1"), key="home_fig")


def sidebar() -> None:
    sb = st.sidebar
    sb.header("Model and text")
    options = model.builtin_names() + c.SUGGESTED_HF + [c.OTHER]
    sb.selectbox("Model", options, key="model_choice",
                 help="Built-in models work offline. Hugging Face ids download from the hub when picked.")
    if st.session_state.get("model_choice") == c.OTHER:
        sb.text_input("Hugging Face id or local folder", key="model_custom", placeholder="e.g. gpt2 or /models/my-gpt2")
    sb.radio("Device", ["auto"] + model.available_devices(), key="device", horizontal=True,
             help="auto: CUDA if present, else Apple MPS, else CPU.")
    sb.text_area("Text", key="text", height=90,
                 help="Used by every page. Built-in models know the toy vocabulary of the example sentences.")
    sb.caption("Examples: *the keys to the old cabinet are on the table* · *the black cat ate the mouse* · "
               "for BERT: *the bear ate the [MASK] because it was hungry*")


def from_link() -> None:
    """A shared link like ?model=gpt2&text=... opens with that model and text (read once per session)."""
    qp = st.query_params
    if st.session_state.get("_link_read"):
        return
    st.session_state["_link_read"] = True
    name = qp.get("model", "").strip()
    if name:
        known = model.builtin_names() + c.SUGGESTED_HF
        st.session_state["model_choice"] = name if name in known else c.OTHER
        if name not in known:
            st.session_state["model_custom"] = name
    if qp.get("text", "").strip():
        st.session_state["text"] = qp["text"][:2000]


from_link()
st.session_state.setdefault("model_choice", "transformer-lm")
st.session_state.setdefault("device", "auto")
st.session_state.setdefault("text", c.DEFAULT_TEXT)
nav = st.navigation([st.Page(home, title="Home", icon=":material/home:", default=True), *PAGES.values()])
sidebar()
nav.run()
