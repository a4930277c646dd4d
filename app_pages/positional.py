"""Positional encoding: how a Transformer knows word order."""
import streamlit as st

from model.transformer import sinusoidal_encoding
from app_pages import common as c
from viz.positional import pe_heatmap, pe_similarity, pe_waves

c.intro("Positional encoding",
        "Attention by itself ignores order: *dog bites man* and *man bites dog* would look the same. So each "
        "position gets a vector added to its word's embedding. The paper uses waves: dimension 2i is "
        "sin(pos / 10000^(2i/d_model)) and dimension 2i+1 the matching cos. Low dimensions wiggle fast, high "
        "ones slowly, like the hands of a clock, so every position gets a unique pattern, and nearby "
        "positions get similar ones.",
        "move d_model and see the slow dimensions stretch; in the similarity map, notice the bright band "
        "along the diagonal: neighbours look alike.")


@st.fragment
def sinusoidal() -> None:
    c1, c2 = st.columns(2)
    d_model = c1.slider("d_model (width of the vectors)", 8, 512, 128, step=8, key="pe_d")
    max_len = c2.slider("Positions", 8, 256, 64, step=8, key="pe_len")
    pe = sinusoidal_encoding(max_len, d_model).numpy()
    default = [d for d in (0, 1, 10, 24, 48) if d < d_model]       # fast pair, medium, slow, very slow
    dims = st.multiselect("Dimensions to draw", list(range(d_model)), default=default, key=f"pe_dims_{d_model}",
                          help="Even dimensions are sines, odd ones cosines of the same frequency.")
    if dims:
        c.plot(pe_waves(pe, dims, title="Sinusoidal encoding: one wave per dimension"), key="pe_waves")
    a, b = st.columns(2)
    with a:
        c.plot(pe_heatmap(pe, title="Position × dimension"), key="pe_heat")
    with b:
        c.plot(pe_similarity(pe, title="Dot product between positions"), key="pe_sim")


sinusoidal()

m = c.load_or_stop()
tables = m.positional_tables()
learned = {k: v for k, v in tables.items() if "sinusoidal" not in k}
st.subheader(f"What {m.name} uses")
if m.kind == "lstm":
    st.markdown("An LSTM needs no positional encoding: it reads the words one after another, so order is built in.")
elif not learned:
    st.markdown(f"**{m.name}** uses **{m.pos_encoding or 'no'}** positional encoding"
                + (": the waves above, at its own width." if m.pos_encoding == "sinusoidal" else "."))
    if m.pos_encoding == "relative":
        st.markdown("Relative position (as in T5) is added inside attention as a bias per distance, not to the "
                    "embeddings, so there is no table to draw.")
else:
    st.markdown(f"**{m.name}** learned its own position vectors during training. Beside them, the sinusoidal "
                "table of the same size. Learned tables often rediscover smooth, wave-like patterns.")
    for name, table in learned.items():
        a, b = st.columns(2)
        with a:
            c.plot(pe_heatmap(table, title=f"{name}: position × dimension"), key=f"pe_l_heat_{name}")
        with b:
            c.plot(pe_similarity(table, title=f"{name}: similarity between positions"), key=f"pe_l_sim_{name}")
    sin = tables.get("sinusoidal (paper formula)")
    if sin is not None:
        a, b = st.columns(2)
        with a:
            c.plot(pe_heatmap(sin, title="sinusoidal, same size"), key="pe_s_heat")
        with b:
            c.plot(pe_similarity(sin, title="sinusoidal: similarity"), key="pe_s_sim")
