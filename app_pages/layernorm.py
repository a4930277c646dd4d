"""Layer norm and the residual stream: how each token's vector is kept in range, layer after layer."""
import contextlib

import streamlit as st

from app_pages import common as c
from model import LogitLens, views
from viz.attention import logit_lens
from viz.layernorm import feature_distribution, gamma_beta, layernorm_stats, residual_norm

m, r = c.open_page(
    "layernorm", "Layer norm",
    "Every sub-layer (attention, feed-forward) adds its result to a running vector per token: the "
    "**residual stream** (*Add*). A **LayerNorm** (*Norm*) rescales a token's vector to mean 0 and standard "
    "deviation 1 across its features, then stretches it by **γ** and shifts it by **β** (both learned, one "
    "per feature). The paper puts it after each residual addition (*post-LN*); GPT-2 and most newer models put "
    "it before each sub-layer (*pre-LN*). Some newer models use **RMSNorm**, which only rescales (no mean, "
    "no β).", message="This model cannot be traced here.")
groups = views.norm_groups(r)
if not groups:
    st.info(f"{c.md_escape(m.name)} has no LayerNorm (an LSTM keeps its values in range with its gates). "
            "Pick a Transformer in the sidebar.")
    st.stop()
SPREAD = ("Compare the spread before and after each norm: a norm divides every token's vector by its own spread "
          "(LayerNorm: its standard deviation, after subtracting its mean; RMSNorm: its root mean square), so every "
          "token leaves at the same scale, which γ and β then stretch and shift (the 'out' rows are after γ and β).")
# projector mode: the statistics (the key figure) first; the stack, the kind of norm and the note under it
above = st.container() if c.presenting() else None
if above is None:
    st.caption(SPREAD)
sides = list(groups)
side = st.radio("Stack", sides, horizontal=True, **c.bound("side", sides[0], options=sides)) if len(sides) > 1 \
    else sides[0]
g = groups[side]
a = m.arch
st.markdown(f"**{c.md_escape(m.name)}** uses **{a.norm}-{a.norm_kind or 'norm'}**: {len(g.names)} norms in this "
            "stack, in forward order.")
if above is not None:
    st.caption(SPREAD)
seen = (side, *c.run_key(r))        # with the model, what every figure below is computed from
with above if above is not None else contextlib.nullcontext():
    c.plot(c.cached_figure(m, "ln_stats", seen,
                           lambda: layernorm_stats(g.names, g.mean_in, g.std_in, g.mean_out, g.std_out, g.tokens)),
           key="ln_stats")


@st.fragment
def one_token() -> None:
    st.subheader("One token's features, before and after")
    c1, c2 = st.columns(2)
    norms, toks = list(range(len(g.names))), list(range(len(g.tokens)))
    li = c1.selectbox("Norm", norms, format_func=lambda i: g.names[i], **c.labelled("norm", 0, options=norms))
    ti = c2.selectbox("Token", toks, format_func=lambda i: f"{i}: {g.tokens[i]}",
                      **c.labelled("tok", len(toks) - 1, options=toks))
    left, right = st.columns(2)
    with left:
        c.plot(c.cached_figure(m, "ln_feat", (li, ti, *seen),
                               lambda: feature_distribution(*g.features(li, ti),
                                                            title=f"“{g.tokens[ti]}” at {g.names[li]}")), key="ln_feat")
    with right:
        if g.gamma[li] is not None:
            c.plot(c.cached_figure(m, "ln_gb", (li, *seen),
                                   lambda: gamma_beta(g.gamma[li], g.beta[li], title=f"γ and β of {g.names[li]}")),
                   key="ln_gb")


one_token()

res = views.residual_view(r, side)
if res is not None:
    st.subheader(res.heading)
    if a.norm == "post":
        st.caption("Post-LN: the stream is rescaled by a norm after every addition, so its size is set by each norm's "
                   "γ and β rather than accumulating from block to block.")
    c.plot(c.cached_figure(m, "ln_resid", seen, lambda: residual_norm(res.norms, res.tokens, res.layer_names)),
           key="ln_resid")
if isinstance(m, LogitLens) and side == m.lens_stack:
    st.subheader("Logit lens: what each layer would predict")
    st.markdown("Project the residual stream after each block straight to the vocabulary (through the final "
                "norm where the model has one): the top word per position and its probability.")
    def lens_figure():
        lens = views.logit_lens_view(m, r)
        return logit_lens(lens.top_tokens, lens.top_probs, lens.tokens, lens.layer_names)

    c.plot(c.cached_figure(m, "ln_lens", seen, lens_figure), key="ln_lens")
