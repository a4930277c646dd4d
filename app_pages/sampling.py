"""Sampling: the next-token distribution, live, as temperature, top-k and top-p change."""
import streamlit as st

from app_pages import common as c
from model import MaskedFill, NextToken, Translates, views
from model.nets.sampling import SamplingSettings
from components import live_sampling
from viz.sampling import final_distribution, generation_steps, sample_histogram

m, r = c.open_page(
    "sampling", "Sampling",
    "The model gives a score (logit) to every word in its vocabulary; softmax turns the scores into "
    "probabilities. **Temperature** divides the scores first: below 1 sharpens the distribution, above 1 "
    "flattens it. **Top-k** keeps only the k most likely words; **top-p** keeps the smallest set of words "
    "whose probabilities add up to p. What is left is renormalised and one word is drawn. (Same order and "
    "rules as Hugging Face `transformers`: temperature, then top-k, then top-p.)",
    message="This model cannot be traced here.", example="sampling")
if r.next_logits is None:
    if isinstance(m, MaskedFill):
        st.info(f"{c.md_escape(m.name)} is a masked language model: it fills in a blank. Put "
                f"**{c.md_escape(m.mask_token)}** in the text (e.g. *the bear ate the [MASK] because it was hungry*).")
    else:
        st.info(f"{c.md_escape(m.name)} has no prediction head in this checkpoint: its attention and layer norms "
                "are real, but it predicts no words, so there is nothing to sample.")
    st.stop()
logits = views.logits_array(r)
vocab = m.vocab
V = len(vocab)
if isinstance(m, Translates):
    st.info("For the translator, this is the distribution of the next French word after its own translation. "
            "The **Translate** page samples it step by step.")
    where = c.tokens_line(r.target_tokens)
elif isinstance(m, MaskedFill):
    where = c.tokens_line(r.tokens) + f" at position {r.predict_position}"
else:
    where = c.tokens_line(r.tokens)
st.markdown(f"Next word after {where}")
choice = c.example_for(m, "sampling")
if isinstance(m, NextToken) and views.sampling_view(logits).entropy < 0.05:
    st.info("The model is almost certain of the next word here, so the settings have little to change. "
            "Sampling is more interesting at a **choice point**, where several words are plausible.")
    if choice:
        st.button(f"Use a choice point: “{choice}”", key="samp_choice", on_click=c.use_text, args=(choice,))


def live_panel(prefix: str, preset: SamplingSettings, **kw) -> SamplingSettings:
    """Sliders computed in the browser on every move (no round trip); the settings come back on release and
    live in the address like every other setting (by hand: a component has no `bind`)."""
    init = {k.name: c.setting(prefix + k.key, getattr(preset, k.name), lo=k.lo, hi=k.top(V))
            for k in SamplingSettings.KNOBS}
    s = live_sampling(logits, vocab, key=f"live_{prefix or 'main'}_{c.link_version()}", large=c.presenting(), **init, **kw)
    for k in SamplingSettings.KNOBS:
        c.set_setting(prefix + k.key, getattr(s, k.name), getattr(preset, k.name))
    return s


@st.fragment
def live() -> None:
    s = live_panel("", SamplingSettings(), title="Raw → temperature → top-k / top-p → final",
                   top_n=10 if c.presenting() else None).as_kwargs()        # projector: the chart fits one screen
    d = views.sampling_view(logits, **s)
    c.export("samp_stages", lambda: {"word": [vocab[i] for i in d.top(V)], "raw": [float(d.raw[i]) for i in d.top(V)],
                                      "after temperature": [float(d.scaled[i]) for i in d.top(V)],
                                      "final": [float(d.probs[i]) for i in d.top(V)]})
    st.caption(f"Released at temperature {s['temperature']:g}, top-k {s['top_k'] or 'off'}, top-p {s['top_p']:g}: "
               f"{d.kept} of {V} words kept, final entropy {d.entropy:.2f} nats, {d.removed_mass:.1%} of the mass cut.")
    st.subheader("Draw samples")
    c1, c2 = st.columns(2)
    draws = [10, 100, 1000, 10000]
    n = c1.select_slider("Number of draws", draws, **c.bound("n", 1000, options=draws, arg="value"))
    seed = c.number("Seed", "seed", 0, 0, 2**31 - 1, container=c2)
    c.plot(c.cached_figure(m, "samp_hist", (*c.run_key(r), tuple(s.items()), n, seed),     # one build for every
                           lambda: sample_histogram(views.draw_counts(d, n, seed), d.probs, vocab, top_n=20)),  # session
           key="samp_hist")
    st.caption("Bars: how often each word was drawn with the released settings; markers: the final probability. "
               "More draws, closer match. The same seed always gives the same draws.")


live()


def compare() -> None:
    st.subheader("Settings side by side (same logits)")
    presets = [(0.5, 0, 1.0), (1.0, 0, 1.0), (1.5, 0, 0.9)]
    for col, prefix, (t, k, p) in zip(st.columns(3), "abc", presets):
        with col:
            st.fragment(lambda prefix=prefix, t=t, k=k, p=p: live_panel(prefix, SamplingSettings(t, k, p), compact=True,
                                                                     title=f"Setting {prefix.upper()}"))()


compare()


@st.fragment
def step_through() -> None:
    st.subheader("Generate one token at a time")
    if not isinstance(m, NextToken):
        st.info("Step-by-step generation is for language models that predict the next word from the words before "
                "it (the Translate page does it for the translator).")
        return
    key = f"gen_{m.name}_{c.text()}"
    chosen = st.session_state.setdefault(key, [])
    s = c.sampling_controls("g", V, SamplingSettings(1.0, 0, 0.9)).as_kwargs()
    try:
        ids = views.prefix_ids(m, c.text(), [h["id"] for h in chosen])
    except Exception as e:  # the context is full
        st.warning(c.md_escape(e))
        st.button("Reset", key="gen_reset_full", on_click=chosen.clear)
        return
    d = views.sampling_view(c.cached(m, "next", (tuple(ids),), lambda: m.next_logits(ids)), **s)
    seed = len(chosen) + int(st.session_state.get("seed", 0))
    drawn = views.draw_one(d, seed)
    st.markdown("Text so far: " + c.tokens_line([vocab[i] for i in ids]))
    c.plot(c.cached_figure(m, "gen_dist", (tuple(ids), tuple(s.items()), len(chosen), drawn),
                           lambda: final_distribution(d.probs, vocab, top_n=15,
                                                      title=f"Step {len(chosen) + 1}: the sampler drew “{vocab[drawn]}”")),
           key="gen_dist")
    top = d.top(20)
    b1, b2, b3, b4 = st.columns([1.3, 2, 1, 1])

    def take(i: int) -> None:                          # button callbacks run before the fragment reruns
        chosen.append({"id": i, "token": vocab[i], "prob": float(d.probs[i]),
                       "top": [(vocab[j], float(d.probs[j])) for j in top[:5]]})

    b1.button(f"Take “{vocab[drawn]}”", key="gen_take", type="primary", on_click=take, args=(drawn,))
    b2.selectbox("or pick", top, format_func=lambda i: f"{vocab[i]} ({float(d.probs[i]):.3f})",
                 key="gen_pick", label_visibility="collapsed")
    b3.button("Take pick", key="gen_take_pick", on_click=lambda: take(int(st.session_state["gen_pick"])))
    b4.button("Reset", key="gen_reset", on_click=chosen.clear)
    if chosen:
        c.plot(generation_steps(chosen), key="gen_steps")


step_through()
