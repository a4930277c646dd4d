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
    st.page_link("app_pages/experiments.py", label="More on the Break it page: every head that changed, held-out figures",
                 icon=":material/build:", query_params={"break": what})
