"""Translate: the encoder-decoder at work, step by step, with its cross-attention."""
import streamlit as st

from app_pages import common as c
from model import Translates, views
from viz.attention import attention_heatmap, token_attention
from viz.sampling import final_distribution

m, _ = c.open_page(
    "translate", "Translate",
    "The **encoder** reads the whole English sentence at once. The **decoder** then writes French one "
    "word at a time: each step it looks at the French written so far (masked self-attention) and at the "
    "English (**cross-attention**), and predicts the next word. French puts most adjectives after the "
    "noun, so when the decoder writes *chat* it looks at *cat*, and when it writes *noir* it looks back "
    "at *black*: the alignment crosses.",
    needs=Translates, fallback="translator-en-fr", run=False,
    message="Using the built-in translator, on the sidebar's text (pick an encoder-decoder model such as t5-small "
            "or Helsinki-NLP/opus-mt-en-fr in the sidebar to use it here).")
src = c.text()
present = c.presenting()
if not present:
    st.markdown(f"English (the sidebar's text): {c.tokens_line([src])}")
# projector mode: the sentence and its translation, then the steps (the key figure), the decoding settings under them
head, stage, settings = (st.container(), st.container(), st.container()) if present else (None, None, st.container())
with settings:
    c1, c2, c3, c4, c5 = st.columns([1.2, 1, 1, 1, 1])
    modes = ["greedy", "sample"]
    mode = c1.radio("Decoding", modes, horizontal=True, **c.bound("mode", "greedy", options=modes))
    off = mode == "greedy"
    ss = c.sampling_controls("d", len(m.vocab), cols=[c2, c3, c4], disabled=off)      # ?dt=, ?dk=, ?dp=
    t, k, p = ss.temperature, ss.top_k, ss.top_p
    seed = c.number("Seed", "seed", 0, 0, 2**31 - 1, container=c5, disabled=off)

try:
    tv = c.cached(m, "translate", (src, off, t, k, p, seed),
                  lambda: views.translation_view(m, src, greedy=off, temperature=t, top_k=k, top_p=p, seed=seed))
except Exception as e:  # LabError: empty or too long text
    st.warning(c.md_escape(e))
    st.stop()
if present:
    with head:
        c.unknown_warning(m, tv.run.unknown if tv.run else [], c.example_for(m, "translate"))
        st.markdown(f"{c.tokens_line([src])} → **{c.md_escape(tv.text) or '(empty)'}**")
else:
    c.unknown_warning(m, tv.run.unknown if tv.run else [], c.example_for(m, "translate"))
    st.markdown("### " + (c.md_escape(tv.text) or "(empty)"))
if tv.run is None:
    st.info("The model produced no words.")
    st.stop()
r = tv.run
seen = (src, off, t, k, p, seed)      # with the model, what the translation and every figure below come from


@st.fragment
def steps() -> None:
    n = len(tv.steps)
    i = st.slider("Step", 1, n, **c.bound("step", 1, lo=1, hi=n)) if n > 1 else 1
    s = tv.steps[i - 1]
    said = (f"Step {i}: the decoder has {c.tokens_line(s.written)} and picks {c.tokens_line([s.token])} "
            f"(probability {s.prob:.3f}).")
    if not c.presenting():                  # projector mode: under the figures (their titles name the step)
        st.markdown(said)
    a, b = st.columns([1, 1])
    with a:
        c.plot(c.cached_figure(m, "tr_dist", (i, *seen), lambda: final_distribution(
            s.probs, m.vocab, top_n=10, title=f"Step {i}: next-word distribution")), key="tr_dist")
    with b:
        if s.cross is not None:
            c.plot(c.cached_figure(m, "tr_cross_row", (i, *seen),
                                   lambda: token_attention(s.cross, None, r.tokens, s.written[-1])), key="tr_cross_row")
    if c.presenting():
        st.markdown(said)
    st.caption("Right: where the decoder looks in the English while choosing this word, in every layer (L) and head (H).")


if stage is not None:
    with stage:
        steps()
else:
    steps()


@st.fragment
def full() -> None:
    st.subheader("Cross-attention of the whole translation")
    v = views.attention_views(r)["cross"]                  # no copy: made from the cached run each time
    c1, c2 = st.columns(2)
    layers = list(range(1, v.n_layers + 1))
    heads = ["average"] + [str(h) for h in range(1, v.n_heads + 1)]
    layer = c1.selectbox("Layer", layers, **c.bound("tlayer", v.n_layers, options=layers))
    head = c2.selectbox("Head (or the average of the heads)", heads, **c.bound("thead", "average", options=heads))
    w = v.head_mean(layer - 1) if head == "average" else v.head(layer - 1, int(head) - 1)
    c.plot(c.cached_figure(m, "tr_full", (layer, head, *seen), lambda: attention_heatmap(
        w, v.query_tokens, v.key_tokens,
        title=f"Cross-attention, layer {layer}, " + ("average of heads" if head == "average" else f"head {head}"))),
        key="tr_full")
    st.caption("Rows: the French the decoder had written ([BOS] first) when predicting the next word; columns: the English.")


full()
