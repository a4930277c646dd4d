"""Sampling: the next-token distribution, live, as temperature, top-k and top-p change."""
import streamlit as st

from model import sampling
from app_pages import common as c
from viz.sampling import distribution_stages, final_distribution, generation_steps, sample_histogram

c.intro("Sampling",
        "The model gives a score (logit) to every word in its vocabulary; softmax turns the scores into "
        "probabilities. **Temperature** divides the scores first: below 1 sharpens the distribution, above 1 "
        "flattens it. **Top-k** keeps only the k most likely words; **top-p** keeps the smallest set of words "
        "whose probabilities add up to p. What is left is renormalised and one word is drawn. (Same order and "
        "rules as Hugging Face `transformers`: temperature, then top-k, then top-p.)",
        "set temperature to 0.2, then 2.0; set top-k to 1 (that is greedy decoding); set top-p to 0.5 and "
        "watch the cut mass.")

m = c.load_or_stop()
r = c.run_or_stop(m)
logits = r.next_logits
if m.kind == "mlm" and logits is None:
    st.info(f"{m.name} is a masked language model: it fills in a blank. Put **{getattr(m, 'mask_token', '[MASK]')}** "
            "in the text (e.g. *the bear ate the [MASK] because it was hungry*).")
    st.stop()
if m.kind == "seq2seq":
    st.info("For the translator, this is the distribution of the next French word after its own translation. "
            "The **Translate** page samples it step by step.")
vocab = m.vocab
where = "the masked position" if m.kind == "mlm" else "the text"
st.markdown(f"Next word after {where}: {c.tokens_line(r.tokens if m.kind != 'seq2seq' else r.target_tokens)}")
if m.kind in ("lm", "lstm") and float(sampling.distribution(logits).entropy) < 0.05:
    st.info("The model is almost certain of the next word here, so the settings have little to change. "
            "Sampling is more interesting at a **choice point**, where several words are plausible.")
    st.button(f"Use a choice point: “{c.CHOICE_TEXT}”", key="samp_choice",
              on_click=lambda: st.session_state.update(text=c.CHOICE_TEXT))


def controls(prefix: str, t: float = 1.0, k: int = 0, p: float = 1.0, cols=None) -> dict:
    cols = cols or st.columns(3)
    temperature = cols[0].slider("Temperature", 0.05, 3.0, t, 0.05, key=f"{prefix}_t")
    top_k = cols[1].number_input("Top-k (0 = off)", 0, len(vocab), k, key=f"{prefix}_k")
    top_p = cols[2].slider("Top-p (1 = off)", 0.05, 1.0, p, 0.05, key=f"{prefix}_p")
    return dict(temperature=temperature, top_k=int(top_k), top_p=top_p)


@st.fragment
def live() -> None:
    s = controls("s")
    try:
        d = sampling.distribution(logits, **s)
    except ValueError as e:  # SamplingError: settings out of range
        st.warning(str(e))
        return
    a, b, e3, f = st.columns(4)
    a.metric("Entropy (raw)", f"{d.raw_entropy:.2f} nats")
    b.metric("Entropy (final)", f"{d.entropy:.2f} nats")
    e3.metric("Words kept", f"{int(d.keep.sum())} of {len(vocab)}")
    f.metric("Mass cut", f"{d.removed_mass:.1%}")
    c.plot(distribution_stages(d.raw_probs.numpy(), d.scaled_probs.numpy(), d.topk_keep.numpy(), d.topp_keep.numpy(),
                               d.probs.numpy(), vocab, top_n=25, removed_mass=d.removed_mass, entropy=d.entropy,
                               title="Raw → temperature → top-k / top-p → final"), key="samp_stages")

    st.subheader("Draw samples")
    c1, c2 = st.columns(2)
    n = c1.select_slider("Number of draws", [10, 100, 1000, 10000], 1000, key="samp_n")
    seed = c2.number_input("Seed", 0, 2**31 - 1, 0, key="samp_seed")
    counts = sampling.sample_counts(d, int(n), seed=int(seed))
    c.plot(sample_histogram(counts.numpy(), d.probs.numpy(), vocab, top_n=20), key="samp_hist")
    st.caption("Bars: how often each word was drawn; markers: the final probability. More draws, closer match. "
               "The same seed always gives the same draws.")


live()


@st.fragment
def compare() -> None:
    st.subheader("Settings side by side (same logits)")
    presets = [(0.5, 0, 1.0), (1.0, 0, 1.0), (1.5, 0, 0.9)]
    cols = st.columns(3)
    for i, (t, k, p) in enumerate(presets):
        with cols[i]:
            st.markdown(f"**Setting {'ABC'[i]}**")
            s = controls(f"cmp{i}", t, k, p, cols=[st, st, st])
            try:
                d = sampling.distribution(logits, **s)
            except ValueError as e:  # SamplingError: settings out of range
                st.warning(str(e))
                continue
            c.plot(final_distribution(d.probs.numpy(), vocab, top_n=12,
                                      title=f"entropy {d.entropy:.2f} · kept {int(d.keep.sum())}"), key=f"cmp_fig{i}")


compare()


@st.fragment
def step_through() -> None:
    st.subheader("Generate one token at a time")
    if m.kind not in ("lm", "lstm"):
        st.info("Step-by-step generation is for language models (the Translate page does it for the translator).")
        return
    key = f"gen_{m.name}_{c.text()}"
    chosen = st.session_state.setdefault(key, [])
    s = controls("g", 1.0, 0, 0.9)
    prompt = m.tokenize(c.text()).ids
    ids = prompt + [h["id"] for h in chosen]
    if len(ids) >= m.max_len:
        st.warning(f"The context is full ({m.max_len} tokens). Reset to start again.")
        return
    d = sampling.distribution(c.next_logits(m, ids), **s)
    seed = len(chosen) + int(st.session_state.get("samp_seed", 0))
    drawn = int(sampling.sample(d, 1, seed=seed)[0])
    st.markdown("Text so far: " + c.tokens_line([vocab[i] for i in ids]))
    c.plot(final_distribution(d.probs.numpy(), vocab, top_n=15,
                              title=f"Step {len(chosen) + 1}: the sampler drew “{vocab[drawn]}”"), key="gen_dist")
    top = [int(i) for i in d.probs.argsort(descending=True)[:20] if d.probs[int(i)] > 0] or [drawn]
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
        c.plot(generation_steps([{"token": h["token"], "prob": h["prob"], "top": h["top"]} for h in chosen]),
               key="gen_steps")


step_through()
