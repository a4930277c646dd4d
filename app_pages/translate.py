"""Translate: the encoder-decoder at work, step by step, with its cross-attention."""
import numpy as np
import streamlit as st

from model import LabError
from app_pages import common as c
from viz.attention import attention_heatmap, token_attention
from viz.sampling import final_distribution

c.intro("Translate",
        "The **encoder** reads the whole English sentence at once. The **decoder** then writes French one "
        "word at a time: each step it looks at the French written so far (masked self-attention) and at the "
        "English (**cross-attention**), and predicts the next word. French puts most adjectives after the "
        "noun, so when the decoder writes *chat* it looks at *cat*, and when it writes *noir* it looks back "
        "at *black*: the alignment crosses.",
        "step through *the black cat ate the mouse* and watch cross-attention jump back to *black* for *noir*.")

m = c.load_or_stop()
if m.kind != "seq2seq":
    m = c.load_or_stop("translator-en-fr")
    st.caption("Using the built-in translator (pick an encoder-decoder model such as t5-small or "
               "Helsinki-NLP/opus-mt-en-fr in the sidebar to use it here).")
st.session_state.setdefault("source_text", c.DEFAULT_SOURCE)
src = st.text_input("English sentence", key="source_text",
                    help="The built-in translator knows the toy vocabulary: animals, colours, foods, simple verbs.")
c1, c2, c3, c4, c5 = st.columns([1.2, 1, 1, 1, 1])
mode = c1.radio("Decoding", ["greedy", "sample"], horizontal=True, key="tr_mode")
t = c2.slider("Temperature", 0.05, 3.0, 1.0, 0.05, key="tr_t", disabled=mode == "greedy")
k = c3.number_input("Top-k", 0, len(m.vocab), 0, key="tr_k", disabled=mode == "greedy")
p = c4.slider("Top-p", 0.05, 1.0, 1.0, 0.05, key="tr_p", disabled=mode == "greedy")
seed = c5.number_input("Seed", 0, 2**31 - 1, 0, key="tr_seed", disabled=mode == "greedy")


@st.cache_resource(max_entries=64, show_spinner="Translating…")
def translate(_m, key: str, text: str, greedy: bool, t: float, k: int, p: float, seed: int):
    mm = _m
    gen = mm.generate(text, max_new_tokens=mm.max_len - 1, greedy=greedy, temperature=t, top_k=k, top_p=p, seed=seed)
    target_ids = [mm.bos_id] + [s.token_id for s in gen.steps if s.token_id != mm.eos_id]
    return gen, target_ids


try:
    gen, target_ids = translate(m, c.model_key(m), src, mode == "greedy", t, int(k), p,
                                int(seed))
except LabError as e:
    st.warning(str(e))
    st.stop()
words = [s.token for s in gen.steps if s.token_id != m.eos_id]
st.markdown("### " + (c.md_escape(m.decode([s.token_id for s in gen.steps])) or "(empty)"))
r = c.run_or_stop(m, src, target=tuple(target_ids)) if words else None
if r is None:
    st.info("The model produced no words.")
    st.stop()


@st.fragment
def steps() -> None:
    n = len(gen.steps)
    i = st.slider("Step", 1, n, 1, key="tr_step") if n > 1 else 1
    step = gen.steps[i - 1]
    written = [m.vocab[j] for j in target_ids[:i]]
    st.markdown(f"Step {i}: the decoder has {c.tokens_line(written)} and picks **{step.token}** "
                f"(probability {step.prob:.3f}).")
    cross = np.stack([a.weights[0].numpy() for a in r.trace.attention["cross"]])   # (L, H, Tt, Ts)
    a, b = st.columns([1, 1])
    with a:
        c.plot(final_distribution(step.dist.probs.numpy(), m.vocab, top_n=10, title=f"Step {i}: next-word distribution"),
               key="tr_dist")
    with b:
        row = min(i - 1, cross.shape[2] - 1)
        c.plot(token_attention(cross, row, r.tokens, written[-1]), key="tr_cross_row")
    st.caption("Right: where the decoder looks in the English while choosing this word, in every layer (L) and head (H).")


steps()


@st.fragment
def full() -> None:
    st.subheader("Cross-attention of the whole translation")
    layers = r.trace.attention["cross"]
    c1, c2 = st.columns(2)
    layer = c1.selectbox("Layer", range(1, len(layers) + 1), index=len(layers) - 1, key="tr_layer")
    head_opts = ["average of heads"] + list(range(1, layers[0].weights.shape[1] + 1))
    head = c2.selectbox("Head", head_opts, key="tr_head")
    w = layers[layer - 1].weights[0]
    w = w.mean(0) if head == "average of heads" else w[head - 1]
    c.plot(attention_heatmap(w.numpy(), r.target_tokens, r.tokens,
                             title=f"Cross-attention, layer {layer}, {head if isinstance(head, str) else f'head {head}'}"),
           key="tr_full")
    st.caption("Rows: the French the decoder had written ([BOS] first) when predicting the next word; columns: the English.")


full()
