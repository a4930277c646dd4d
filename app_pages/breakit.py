"""Break it, where it fits on a page: one toggle that reruns the text with one part of the model switched off,
beside the intact model. The Break it page (experiments.py) has every choice and the held-out figures."""
from __future__ import annotations

import streamlit as st

from app_pages import common as c
from model import LabError, LabModel, Translates


def break_it(m: LabModel, what: str, label: str, key: str, head: tuple[str, int, int] | None = None,
             **choice) -> None:
    """A toggle (`key`, in the address) that reruns this text with one part switched off (a per-call option of the
    forward pass, never a change to the shared model), draws its next-word distribution beside the intact one (and
    one head's map, intact and broken, when `head` = (stack, layer, head) is given), and links to the Break it
    page. Offered only for the models the intervention applies to."""
    from model.teaching.interventions import build, compare, offers
    from viz.experiments import attention_pair, distribution_pair

    if not offers(m, what, choice.get("stack")) or not st.toggle(label, **c.bound(key, False)):
        return
    iv = build(what, **choice)
    if long_hf(m):
        _long_text(m, what, key, iv, head)
        _more(what)
        return
    try:
        with st.spinner("Running the model with and without it…"):
            cmp = c.cached(m, "compare", (c.text(), repr(iv), None), lambda: compare(m, c.text(), iv))   # as Break it
    except LabError as e:
        st.warning(c.md_escape(e))
        return
    c.plot(distribution_pair(cmp.top_words, cmp.p_intact, cmp.p_broken,
                             title=f"Probability of {cmp.predicts}: intact vs intervened"), key=f"{key}_dist")
    st.caption(f"KL(intact ‖ intervened) = {cmp.kl:.4f} nats, total variation {cmp.tv:.4f} (0: identical "
               "distributions). Computed now, on this text.")
    if what == "mask" and cmp.tv < 0.01:
        st.caption("The prediction hardly changes here: the last word may look at every word before it with or "
                   "without the mask. Only the earlier words now see later ones (the map below), and that reaches the "
                   "last word only through the next layers."
                   + ("" if isinstance(m, Translates) else " Try a text that stops at a choice point, e.g. "
                                                          "*the bear ate the*."))
    if head is not None and head[0] in cmp.attention:
        stack, layer, h = head
        a, b = cmp.head_maps(stack, layer, h)
        c.plot(attention_pair(a, b, cmp.q_labels[stack], cmp.k_labels[stack],
                              title=f"Layer {layer + 1}, head {h + 1}: intact, intervened, and the difference"),
               key=f"{key}_pair")
    _more(what)


def _more(what: str) -> None:
    st.page_link("app_pages/experiments.py", label="More on the Break it page: every head that changed, held-out figures",
                 icon=":material/build:", query_params={"break": what})


# ----------------------------------------------------------------------------- a long Hugging Face text
def long_hf(m: LabModel) -> bool:
    """A Hugging Face model (not a translator) whose run of this text is compact (model/hf/compact.py): the
    comparison of every layer's maps (model.teaching.interventions.compare) would hold both runs' full weights, about
    300 MB a run at 1,024 tokens of GPT-2 small, outside the trace budget."""
    from model.serving.store import COMPACT_ABOVE

    if getattr(m, "source", "") != "hf" or isinstance(m, Translates):
        return False
    try:
        return len(m.tokenize(c.text()).ids) > COMPACT_ABOVE
    except LabError:
        return False


def broken_run(m: LabModel, iv):
    """The traced run of this text with `iv`'s edits at the hook points: compact, cached and admitted like every run
    (its bytes and working memory reserved before it starts), the intervention kept by the run for what it
    recomputes later (a head's map)."""
    from model import hooks
    from model.serving.store import run_estimate, run_working
    from model.teaching.interventions import hooked_run, with_reference

    text_ = c.text()
    edits = hooked_run(m, with_reference(m, iv))

    def compute():
        with hooks.active(edits):
            return m.run(text_)

    return c.queued(("run_broken", c.model_key(m), text_, repr(iv)), compute,
                    estimate=run_estimate(m, text_), working=run_working(m, text_))


def _long_text(m: LabModel, what: str, key: str, iv, head: tuple[str, int, int] | None) -> None:
    """Break it on a long Hugging Face text: the intact run (the page's, from the cache) and the intervened one, both
    compact; the next-word distributions compared, and the one head asked for recomputed in both (pooled like the
    one-head view above 512 tokens). Nothing per layer is kept beyond what the two cached runs hold."""
    from model.teaching.interventions import next_word_comparison
    from model.views import head_pair
    from viz.experiments import attention_pair, distribution_pair

    try:
        with st.spinner("Running the model with and without it…"):
            r_a = c.get_run(m, c.text())
            r_b = broken_run(m, iv)
    except LabError as e:
        st.warning(c.md_escape(e))
        return
    if r_a.next_logits is None or r_b.next_logits is None:
        st.warning(f"{c.md_escape(m.name)} predicts nothing for this text: put [MASK] where it should fill in a word.")
        return
    words, pa, pb, kl, tv = next_word_comparison(r_a.next_logits, r_b.next_logits, m.vocab)
    seen = c.run_key(r_a)
    c.plot(c.cached_figure(m, f"{key}_dist", (repr(iv), *seen), lambda: distribution_pair(
        words, pa, pb, title="Probability of the next token: intact vs intervened")), key=f"{key}_dist")
    st.caption(f"KL(intact ‖ intervened) = {kl:.4f} nats, total variation {tv:.4f} (0: identical distributions). "
               "Computed now, on this text.")
    if head is None or head[0] not in r_a.trace.attention:
        return
    stack, layer, h = head
    c.plot(c.cached_figure(m, f"{key}_pair", (repr(iv), stack, layer, h, *seen), lambda: attention_pair(
        *head_pair(r_a, r_b, stack, layer, h), title=f"Layer {layer + 1}, head {h + 1}: intact, intervened, and the "
        "difference")), key=f"{key}_pair")
