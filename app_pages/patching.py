"""Find the cause: activation patching between two texts that differ in one word."""
import contextlib

import streamlit as st

from app_pages import common as c
from model import Hooked, LabError, MaskedFill, Translates
from model.teaching.patching import SITE_NAMES, patch
from viz.patching import head_effects, position_effects

STACK_NAMES = {"self": "", "encoder": "encoder ", "decoder": "decoder ", "cross": "cross-attention "}

m, _ = c.open_page(
    "patching", "Find the cause",
    "Attention weights show where a head *looks*; they do not show what the model *uses*. To find that, run two "
    "texts that differ in one word, then run the first again with **one** activation copied from the second "
    "and measure how far the answer moves: **0** = no effect, **1** = the whole difference. This is "
    "*activation patching*; every number below is computed now, for this model.",
    needs=Hooked, message="Activation patching works on Transformers here (the built-in ones and the Hugging Face "
                          "families the lab knows); {name} has no hook points to patch.", run=False)

if isinstance(m, Translates):
    pair = ("the cat ate the soup because it was hungry", "the cat ate the soup because it was hot")
elif isinstance(m, MaskedFill):
    pair = ("the key to the cabinet [MASK] on the table", "the keys to the cabinet [MASK] on the table")
else:
    pair = ("the key to the old cabinet", "the keys to the old cabinet")
left, right = st.columns(2)
clean = left.text_input("Clean text", max_chars=400, **c.bound("clean", pair[0]))
corrupted = right.text_input("Corrupted text (change one word)", max_chars=400, **c.bound("corrupt", pair[1]))
# projector mode: the heads grid (the key figure) right under the two texts; what it measured, and the answers to
# compare, under it
grids, said = (st.container(), st.container()) if c.presenting() else (None, None)
with st.expander("Answers to compare (optional)"):
    st.caption("Leave empty to compare what each text makes the model predict first.")
    a1, a2 = st.columns(2)
    ans_a = a1.text_input("Answer A (the clean text's)", max_chars=40, **c.bound("ans_a", ""))
    ans_b = a2.text_input("Answer B (the corrupted text's)", max_chars=40, **c.bound("ans_b", ""))
answers = (ans_a, ans_b) if ans_a.strip() and ans_b.strip() else None

try:
    with st.spinner("Patching every head and every position, one batched run per kind…"):
        res = c.cached(m, "patching", (clean, corrupted, answers), lambda: patch(m, clean, corrupted, answers))
except LabError as e:
    st.info(c.md_escape(e))
    st.stop()

A, B = (c.md_escape(w) for w in res.answers)
with said if said is not None else contextlib.nullcontext():
    st.markdown(f"Predicting {c.md_escape(res.predicts)}"
                + (f" after *{c.md_escape(' '.join(res.target[1:]))}*" if res.target[1:] else "")
                + f": the clean text prefers **{A}** to **{B}** by {res.clean_diff:+.2f} (logit difference), the "
                f"corrupted text by {res.corrupted_diff:+.2f}.")
    for stack, eff in res.heads.items():
        l, h, e = res.strongest_head(stack)
        st.markdown(f"Patching the output of {STACK_NAMES[stack]}**layer {l + 1} head {h + 1}** alone moves the "
                    f"answer **{e:.0%}** of the way from {A} to {B} on these two texts.")

with grids if grids is not None else contextlib.nullcontext():
    n = len(res.heads)                                  # at most two grids side by side: three leave a title and
    rows = [st.columns(2) for _ in range((n + 1) // 2)] if n > 1 else [[st.container()]]   # ticks no room at 1280 px
    cols = [col for row in rows for col in row]
    for col, (stack, eff) in zip(cols, res.heads.items()):
        with col:
            title = f"Patching each {STACK_NAMES[stack]}head's output"
            c.plot(c.cached_figure(m, f"patch_heads_{stack}", (clean, corrupted, answers),
                                   lambda eff=eff, title=title: head_effects(eff, title=title)),
                   key=f"patch_heads_{stack}")

st.subheader("Where in the sentence")
sites = list(SITE_NAMES)
site = st.radio("Patch", sites, format_func=SITE_NAMES.get, horizontal=True, **c.bound("site", sites[0], options=sites))
for stack, by_site in res.positions.items():
    title = f"Patching the {STACK_NAMES[stack]}{SITE_NAMES[site]} at one position"
    c.plot(c.cached_figure(m, f"patch_pos_{stack}", (clean, corrupted, answers, site),
                           lambda by_site=by_site, stack=stack, title=title: position_effects(
                               by_site[site], res.tokens[stack], res.changed[stack], title=title)),
           key=f"patch_pos_{stack}")
st.caption("Positions marked * are where the two texts differ. Patching the residual stream entering the first block "
           "at the changed position gives the corrupted run itself (effect 1): everything the model knows of that word "
           "is there. Follow the 1s down the layers to see where the information moves to.")
with st.expander("How it is computed"):
    st.markdown("LD = logit(A) − logit(B). For each site, the clean text is run again with that one activation taken "
                "from the corrupted run; effect = (LD_patched − LD_clean) / (LD_corrupted − LD_clean). A head's output "
                "is its weighted sum of values before W_o, at every position. Negative values push the other way. "
                "Mean-ablation on *Break it* asks a different question (what if this part were average?); patching "
                "asks what this part carries about the one word that changed.")
