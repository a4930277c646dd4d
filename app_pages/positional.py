"""Positional encoding: how a Transformer knows word order."""
import contextlib

import streamlit as st

from app_pages import common as c
from app_pages.breakit import break_it
from model.teaching.interventions import offers
from model import PositionTable, views
from viz.positional import pe_heatmap, pe_similarity, pe_waves

m, _ = c.open_page(
    "positional", "Positional encoding",
    "Attention by itself ignores order: *dog bites man* and *man bites dog* would look the same. So each "
    "position gets a vector added to its word's embedding. The paper uses waves: dimension 2i is "
    "sin(pos / 10000^(2i/d_model)) and dimension 2i+1 the matching cos. Low dimensions wiggle fast, high "
    "ones slowly, like the hands of a clock, so every position gets a unique pattern, and nearby "
    "positions get similar ones.", needs=None, run=False,
    tip="Try: move d_model and see the slow dimensions stretch; in the similarity map, the bright band along the "
        "diagonal says that neighbouring positions look alike.")


@st.fragment
def sinusoidal() -> None:
    # projector mode: the waves (the key figure) first, the three choices in one row under them
    above = st.container() if c.presenting() else None
    c1, c2, c3 = st.columns(3) if above is not None else (*st.columns(2), st)
    d_model = c1.slider("d_model (width of the vectors)", 8, 512, step=8, **c.bound("d", 128, lo=8, hi=512))
    max_len = c2.slider("Positions", 8, 256, step=8, **c.bound("len", 64, lo=8, hi=256))
    pe = views.sinusoidal_table(max_len, d_model)
    size = (max_len, d_model)                # the table is the paper's formula: the same for every model
    dims_all = list(range(d_model))
    default = [d for d in (0, 1, 10, 24, 48) if d < d_model]       # fast pair, medium, slow, very slow
    dims = c3.multiselect("Dimensions to draw", dims_all, help="Even dimensions are sines, odd ones cosines of the "
                          "same frequency.", **c.bound("dims", default, options=dims_all))
    if dims:
        with above if above is not None else contextlib.nullcontext():
            c.plot(c.cached_figure(None, "pe_waves", (*size, tuple(dims)),
                                   lambda: pe_waves(pe, dims, title="Sinusoidal encoding: one wave per dimension",
                                                    curve=views.sinusoidal_curve(max_len, d_model))), key="pe_waves")
    a, b = st.columns(2)
    with a:
        c.plot(c.cached_figure(None, "pe_heat", size, lambda: pe_heatmap(pe, title="Position × dimension")),
               key="pe_heat")
    with b:
        c.plot(c.cached_figure(None, "pe_sim", size, lambda: pe_similarity(pe, title="Dot product between positions")),
               key="pe_sim")


sinusoidal()

st.subheader(f"What {c.md_escape(m.name)} uses")
if not isinstance(m, PositionTable):
    st.markdown("An LSTM needs no positional encoding: it reads the words one after another, so order is built in.")
    st.stop()
NOTES = {
    "learned": "learned its own position vectors during training. Beside them, the paper's sinusoidal table of the "
               "same size. Learned tables often rediscover smooth, wave-like patterns.",
    "sinusoidal": "uses the fixed sinusoidal table of the paper (nothing learned): the waves above, at its own width.",
    "rotary": "uses **rotary** positions (RoPE): instead of adding a vector to the embeddings, each layer rotates "
              "its queries and keys by an angle that grows with the position, so q·k depends on how far apart two "
              "words are. There is no table to draw.",
    "relative": "uses **relative** positions (as T5): a learned bias per distance is added to the attention scores "
                "inside each layer, not to the embeddings, so there is no table to draw.",
    "none": "uses no positional encoding at all.",
}
infos = c.cached(m, "position_tables", (), lambda: views.position_tables(m))
for kind in views.position_kinds(infos):
    st.markdown(f"**{c.md_escape(m.name)}** {NOTES.get(kind, 'uses ' + kind + ' positions.')}")
for p in infos:
    if p.table is None:
        continue
    if p.layout == "halves":
        st.caption("This table puts all the sines first and all the cosines after them (the same waves as the "
                   "paper, in another order of dimensions).")
    a, b = st.columns(2)
    with a:
        c.plot(c.cached_figure(m, "pe_m_heat", (p.stack,),
                               lambda: pe_heatmap(p.table, title=f"{p.label}: position × dimension")),
               key=f"pe_m_heat_{p.stack}")
    with b:
        c.plot(c.cached_figure(m, "pe_m_sim", (p.stack,),
                               lambda: pe_similarity(p.table, title=f"{p.label}: similarity between positions")),
               key=f"pe_m_sim_{p.stack}")
sin = views.sinusoidal_beside_learned(infos)
if sin is not None:
    a, b = st.columns(2)
    with a:
        c.plot(c.cached_figure(m, "pe_s_heat", (), lambda: pe_heatmap(sin, title="sinusoidal, same size")),
               key="pe_s_heat")
    with b:
        c.plot(c.cached_figure(m, "pe_s_sim", (), lambda: pe_similarity(sin, title="sinusoidal: similarity")),
               key="pe_s_sim")

if offers(m, "positions"):
    st.subheader("Without positions")
    st.markdown("Self-attention compares every word with every other one and adds up what it finds: apart from a "
                "causal mask, nothing in it knows the order of the words. Switch the positional encoding off and "
                "see what the model now predicts for this text.")
    break_it(m, "positions", "Break it: run without the positional encoding", "brk_pos")
