"""Layer norm and the residual stream: how each token's vector is kept in range, layer after layer."""
import numpy as np
import streamlit as st

from app_pages import common as c
from viz.attention import logit_lens
from viz.layernorm import feature_distribution, gamma_beta, layernorm_stats, residual_norm

c.intro("Layer norm",
        "Every sub-layer (attention, feed-forward) adds its result to a running vector per token: the "
        "**residual stream**. A **LayerNorm** rescales a token's vector to mean 0 and standard deviation 1 "
        "across its features, then stretches it by **γ** and shifts it by **β** (both learned, one per "
        "feature). The paper puts it after each residual addition (*post-LN*); GPT-2 and most newer models put "
        "it before each sub-layer (*pre-LN*), which lets the residual stream grow.",
        "compare std before and after: after a LayerNorm it is near 1 for every token (then scaled by γ).")

m = c.load_or_stop()
r = c.transformer_run_or_stop(
    m, "The built-in LSTM has no LayerNorm. Pick a Transformer in the sidebar.")
lns = r.trace.layernorms
if not lns:
    st.info(f"No LayerNorm statistics were captured for {m.name}.")
    st.stop()

groups = {"all": lns}
if m.kind == "seq2seq":
    groups = {"encoder": [l for l in lns if l.name.startswith("enc")], "decoder": [l for l in lns if l.name.startswith("dec")]}
side = st.radio("Stack", list(groups), horizontal=True, key="ln_side") if len(groups) > 1 else "all"
sel = groups[side]
labels = r.target_tokens if side == "decoder" else r.tokens
st.markdown(f"**{m.name}** uses **{m.norm or '?'}-LN**: {len(sel)} LayerNorms in forward order.")
c.plot(layernorm_stats([l.name for l in sel], np.stack([l.mean_in[0].numpy() for l in sel]),
                       np.stack([l.std_in[0].numpy() for l in sel]), np.stack([l.mean_out[0].numpy() for l in sel]),
                       np.stack([l.std_out[0].numpy() for l in sel]), labels), key="ln_stats")


@st.fragment
def one_token() -> None:
    st.subheader("One token's features, before and after")
    c1, c2 = st.columns(2)
    li = c1.selectbox("LayerNorm", range(len(sel)), format_func=lambda i: sel[i].name, key=f"ln_pick_{side}")
    ti = c2.selectbox("Token", range(len(labels)), index=len(labels) - 1, format_func=lambda i: f"{i}: {labels[i]}",
                      key=f"ln_tok_{side}")
    ln = sel[li]
    a, b = st.columns(2)
    with a:
        c.plot(feature_distribution(ln.x_in[0, ti].numpy(), ln.x_out[0, ti].numpy(),
                                    title=f"“{labels[ti]}” at {ln.name}"), key="ln_feat")
    with b:
        if ln.gamma is not None:
            beta = ln.beta.numpy() if ln.beta is not None else np.zeros_like(ln.gamma.numpy())
            c.plot(gamma_beta(ln.gamma.numpy(), beta, title=f"γ and β of {ln.name}"), key="ln_gb")


one_token()

stack = {"lm": "self", "mlm": "self", "seq2seq": "decoder" if side == "decoder" else "encoder"}[m.kind]
if stack in r.trace.hidden:
    st.subheader("The residual stream grows through the layers")
    hl = labels if stack != "encoder" else r.tokens
    norms = r.trace.residual_norms(stack)[:, 0].numpy()                       # (L+1, T)
    names = ["embeddings"] + [f"after block {i}" for i in range(1, norms.shape[0])]
    c.plot(residual_norm(norms, hl, names), key="ln_resid")
    if stack != "encoder":
        st.subheader("Logit lens: what each layer would predict")
        st.markdown("Project the residual stream after each block straight to the vocabulary (through the final "
                    "LayerNorm where the model has one): the top word per position and its probability. Early "
                    "layers guess; later ones settle on the answer.")
        try:
            toks, probs = m.logit_lens(r, stack)
            c.plot(logit_lens(toks, probs, hl, names), key="ln_lens")
        except Exception as e:  # a model without an unembedding
            st.info(str(e))
