"""Break it: switch off one part of the Transformer and see what changes, beside the intact model."""
import contextlib

import streamlit as st

from app_pages import common as c
from model import LabError, Translates
from model.teaching.interventions import (N_AGREE, N_CE, N_TRANSLATE, NEEDS, SUBLAYER_NAMES, build, compare, describe, heldout,
                                 layout, offers, opening, supported, with_reference, word_order_demo)
from viz.experiments import attention_pair, distribution_pair, head_change_grid

m, _ = c.open_page(
    "experiments", "Break it",
    "Switch off one part of the model, for this run only, and compare with the intact model on the same "
    "text: the next-word distribution, which attention heads changed and by how much, and held-out "
    "figures recomputed on a fixed evaluation slice. Everything shown is computed, nothing is simulated.",
    needs=None, run=False)
applies = supported(m)
if isinstance(applies, str):
    st.info(c.md_escape(applies))
    st.stop()

STACKS = {"self": "self-attention", "encoder": "encoder self-attention", "decoder": "decoder masked self-attention",
          "cross": "cross-attention"}
CHOICES = {"heads": "Ablate attention heads", "positions": "Remove the positional encoding",
           "mask": "Remove the causal mask", "layernorm": "Skip a LayerNorm",
           "residual": "Skip a residual connection", "scale": "Scores without 1/√d_k",
           "shuffle": "Shuffle the word order (seeded)"}
available = [k for k in NEEDS if offers(m, k)]
present = c.presenting()
# projector mode: what is switched off and the next-word distribution (the key figure) first, the choices under them
stage, controls = (st.container(), st.container()) if present else (contextlib.nullcontext(), contextlib.nullcontext())
with controls:
    if len(available) < len(NEEDS):
        st.caption(f"For {c.md_escape(m.name)} the lab supports: {', '.join(applies)}.")
    parts = layout(m)
    first = opening(m)                                    # what the page opens on for this model: a visible effect
    first_what = first.what if first.what in available else available[0]
    first_stack = first.stack if first.stack in parts else (list(parts) or ["self"])[0]

    what = st.selectbox("What to break", available, format_func=CHOICES.get,
                        **c.labelled("break", first_what, options=available))
    kw: dict = {}
    seed = None
    if what == "heads":
        multi = len(parts) > 1                           # a stack to choose: its own column, else none left empty
        cols = st.columns([1, 0.7, 1.6, 1.4] if multi else [0.7, 1.6, 1.4])    # heads wide enough for four chips
        stack = cols.pop(0).selectbox("Attention", list(parts), format_func=STACKS.get,
                                      **c.labelled("stack", first_stack, options=list(parts))) if multi else "self"
        n_layers, n_heads = parts[stack]["layers"], parts[stack]["heads"]
        layer_opts, head_opts = [*range(1, n_layers + 1), "every"], list(range(1, n_heads + 1))
        ours = stack == first_stack and first.layer < n_layers and all(h < n_heads for h in first.heads or ())
        first_layer = first.layer + 1 if ours else 1
        first_heads = [h + 1 for h in first.heads] if ours and first.heads is not None else head_opts
        layer = cols[0].selectbox("Layer", layer_opts, **c.bound("layer", first_layer, options=layer_opts))
        heads = cols[1].multiselect("Heads", head_opts, **c.bound("heads", first_heads, options=head_opts))
        modes = ["reference", "mean", "zero"]
        mode = cols[2].radio("Replace the output by", modes,
                             format_func={"reference": "its mean (reference set)", "mean": "its mean (this text)",
                                          "zero": "zeros"}.get,
                             captions=["over held-out or example sentences: the head says nothing particular",
                                       "over this text's positions", "off the inputs the model knows"],
                             **c.bound("mode", first.head_mode, options=modes))
        layers = range(n_layers) if layer == "every" else layer - 1
        kw = dict(stack=stack, layer=layers, heads=[h - 1 for h in heads], head_mode=mode)
    elif what in ("layernorm", "residual"):
        with_subs = [s for s in parts if parts[s]["sublayers"]]
        cols = st.columns(3)                             # stack (where there are two), sub-layer, layer: left to right
        stack = cols.pop(0).selectbox("Stack", with_subs, format_func=lambda s: s if s != "self" else "decoder",
                                      key="exp_ln_stack") if len(with_subs) > 1 else with_subs[0]
        subs = list(parts[stack]["sublayers"])
        if what == "layernorm" and parts[stack]["final_ln"]:
            subs.append("final")
        sub = cols[0].selectbox("Sub-layer", subs, format_func=SUBLAYER_NAMES.get, key=f"exp_{what}_sub")
        layer = 0
        if sub != "final":
            layer = cols[1].selectbox("Layer", range(1, parts[stack]["layers"] + 1), key=f"exp_{what}_layer") - 1
        kw = dict(stack=stack, layer=layer, sublayer=sub)
    elif what == "shuffle":
        seed = c.number("Shuffle seed", "seed", 0, 0, 10_000)
    iv = build("none" if what == "shuffle" else what, **kw)
    if what == "heads" and not kw["heads"]:
        st.info("Pick at least one head to ablate.")
        st.stop()

with stage:
    st.markdown(f"**Switched off:** {c.md_escape(describe(with_reference(m, iv), seed))}")
    first_heads_all = range(parts.get(first_stack, {}).get("heads", 0))
    if first.why and what == first.what and iv == build(first.what, stack=first_stack, layer=first.layer,
                                                        heads=first.heads if first.heads is not None else first_heads_all,
                                                        head_mode=first.head_mode):
        st.caption(first.why)                              # the opening's reason, while it is what is switched off
seen = (c.text(), repr(iv), seed)       # with the model, what the comparison and its figures come from
try:
    with st.spinner("Running both models…"):
        cmp = c.cached(m, "compare", seen, lambda: compare(m, c.text(), iv, shuffle_seed=seed))
except LabError as e:
    st.warning(c.md_escape(str(e)))
    st.stop()
c.unknown_warning(m, c.get_run(m, c.text()).unknown, c.example_for(m))


def reads() -> None:
    """What each model reads (and, for a translator, writes)."""
    left, right = st.columns(2)
    left.markdown("**Intact model reads**")
    left.code(" ".join(cmp.tokens), language=None, wrap_lines=True)
    right.markdown("**Intervened model reads**")
    right.code(" ".join(cmp.tokens_broken), language=None, wrap_lines=True)
    if cmp.translation_intact is not None:
        left.markdown("**Intact translation**")
        left.code(cmp.translation_intact or "(empty)", language=None, wrap_lines=True)
        right.markdown("**Intervened translation**")
        right.code(cmp.translation_broken or "(empty)", language=None, wrap_lines=True)


if not present:
    reads()
with stage:
    if not present:
        st.subheader("Next-word distribution")
    c.plot(c.cached_figure(m, "exp_dist", seen,
                           lambda: distribution_pair(cmp.top_words, cmp.p_intact, cmp.p_broken,
                                                     title=f"Probability of {cmp.predicts}"
                                                     + ("" if "(shuffled)" in cmp.predicts else ": intact vs intervened"))),
           key="exp_dist")
    best_a, best_b = cmp.top_words[int(cmp.p_intact.argmax())], cmp.top_words[int(cmp.p_broken.argmax())]
    st.markdown(f"Most likely as {c.md_escape(cmp.predicts)}: **“{c.md_escape(best_a)}”** ({cmp.p_intact.max():.0%}) "
                f"intact, **“{c.md_escape(best_b)}”** ({cmp.p_broken.max():.0%}) intervened.")
    st.caption(f"KL(intact ‖ intervened) = {cmp.kl:.4f} nats; total variation distance = {cmp.tv:.4f} "
               "(0 means the two distributions are identical). Bars: the union of both models' most likely words.")
if present:
    reads()

st.subheader("Which attention heads changed")
if not cmp.aligned:
    st.caption("The intervened model read the words in another order: its attention maps are put back in the "
               "intact order before comparing, so a cell compares the same pair of words.")
stacks = list(cmp.head_change)
for s in stacks:
    n = cmp.changed_heads(s)
    c.plot(c.cached_figure(m, "exp_change", (s, *seen), lambda s=s: head_change_grid(
        cmp.head_change[s], title=f"{STACKS.get(s, s)}: largest change of any weight, per head")), key=f"exp_change_{s}")
    st.caption(f"{n} of {cmp.head_change[s].size} heads changed (a cell of 0.000 means that head's attention "
               "weights are exactly those of the intact model).")
if what == "heads":
    n_changed = sum(cmp.changed_heads(s) for s in stacks)
    if n_changed:
        k, grids = len(iv.ablate_heads), "grids" if len(stacks) > 1 else "grid"
        st.markdown(f"**Heads downstream change too:** ablating removes only the output of the {k} switched-off "
                    f"head{'s' if k > 1 else ''}, not their attention, yet {n_changed} head{'s' if n_changed > 1 else ''} "
                    f"after them now attend{'s' if n_changed == 1 else ''} differently (the {grids} above): later "
                    "layers read what the switched-off heads no longer write.")
    elif len(parts) == 1 and layer == n_layers:
        st.markdown(f"**No other head changed:** layer {n_layers} is the last layer, so no head comes after the "
                    "switched-off heads; ablating removes their output, not their attention, and the effect shows "
                    "only in the prediction.")
    else:
        st.markdown("**No other head changed** on this text: ablating removes the switched-off heads' output, not "
                    "their attention, and no later head's attention moved; the effect shows only in the prediction.")


@st.fragment
def one_head() -> None:
    st.subheader("One head, intact and intervened")
    multi = len(stacks) > 1                          # one attention (a decoder-only LM): no empty first column
    cols = st.columns(3 if multi else 2)
    s = cols[0].selectbox("Attention", stacks, format_func=lambda k: STACKS.get(k, k), key="exp_map_stack") \
        if multi else stacks[0]
    best_l, best_h = cmp.most_changed(s)
    L, H = cmp.head_change[s].shape
    layer = cols[-2].selectbox("Layer", range(1, L + 1), index=best_l, key=f"exp_map_layer_{s}")
    head = cols[-1].selectbox("Head", range(1, H + 1), index=best_h, key=f"exp_map_head_{s}")
    a, b = cmp.head_maps(s, layer - 1, head - 1)
    c.plot(c.cached_figure(m, "exp_pair", (s, layer, head, *seen),
                           lambda: attention_pair(a, b, cmp.q_labels[s], cmp.k_labels[s],
                                                  title=f"{STACKS.get(s, s)}, layer {layer}, head {head}")),
           key="exp_pair")
    if cmp.changed_heads(s):
        st.caption("Preselected: the head whose weights changed most. Right: intervened minus intact "
                   "(red: more attention).")
    else:
        st.caption("No head of this attention changed. Right: intervened minus intact.")


one_head()

st.subheader("Held-out figures")


try:
    plan = (f"translating {N_TRANSLATE} held-out sentences" if isinstance(m, Translates) else
            f"cross-entropy on {N_CE} held-out sentences and agreement on {N_AGREE} items")
    with st.spinner(f"Held-out figures: {plan}, intact and intervened…"):
        rows, slice_what, secs = c.cached(m, "heldout", (repr(iv), seed), lambda: heldout(m, iv, seed))
    st.table({"figure": [r[0] for r in rows], "intact": [f"{r[1]:.4f}" for r in rows],
              "intervened": [f"{r[2]:.4f}" for r in rows]})
    st.caption(f"On a fixed slice: {slice_what} ({secs:.1f} s).")
except LabError as e:
    st.info(c.md_escape(str(e)))

if m.source == "builtin":
    st.subheader("Word order without positions")
    st.markdown("Without a positional encoding, self-attention sees the words as a **set**: the same words in "
                "another order give the same attention, only reordered. Below, two texts with the same words "
                "in a different order, run with each part switched off; differences are measured after putting "
                "the second run back in the first one's order.")
    lm_pair = ("the dog chased the cat .", "the cat chased the dog .")
    tr_pair = ("the dog chased the cat", "the cat chased the dog")
    a_text, b_text = tr_pair if isinstance(m, Translates) else lm_pair
    try:
        demo = c.cached(m, "word_order", (a_text, b_text), lambda: word_order_demo(m, a_text, b_text))
    except LabError as e:
        st.info(c.md_escape(str(e)))
    else:
        st.code(f"A: {demo.a}\nB: {demo.b}", language=None, wrap_lines=True)
        st.table({"condition": [r[0] for r in demo.rows],
                  "largest |logit difference|": [f"{r[1]:.2e}" for r in demo.rows],
                  "largest |attention difference|": [f"{r[2]:.2e}" for r in demo.rows],
                  f"identical (within {demo.tol:g})": ["yes" if r[3] else "no" for r in demo.rows]})
        if demo.translations:
            st.table({"condition": [t[0] for t in demo.translations], "translation of A": [t[1] for t in demo.translations],
                      "translation of B": [t[2] for t in demo.translations]})
        if isinstance(m, Translates):
            st.caption("Logits: every decoder position, decoding the translation of A made under the same condition, "
                       "once from A and once from B. Attention and states: every encoder self-attention weight and "
                       "encoder output, B's put back in A's order.")
        else:
            st.caption("Logits: at the last position (both texts end with the same token). Attention: every "
                       "self-attention weight. The causal mask also carries order (each word sees only the words "
                       "before it), which is why the table shows whether the two texts still differ with the "
                       "positions removed but the mask kept.")
