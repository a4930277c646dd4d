"""Train it live: a Transformer, an LSTM and a vanilla RNN learning side by side; then why RNNs forget."""
import contextlib
import uuid

import streamlit as st

from app_pages import common as c
from model import LabError
from model.teaching.forgetting import (agreement_by_distance, decay_per_word, gradient_profiles, load_seed_profiles,
                                      seed_bands, time_per_token)
from model.training.jobs import (KINDS, LABELS, MANAGER, PRESETS, VISIBLE_PRESETS, JobLimitError, estimate_seconds,
                        measured_tokens_per_s, save_trained, tokenizer)
from viz.experiments import accuracy_by_distance, gradient_profiles as gradient_figure, gradient_seed_bands, loss_curves
from viz.experiments import time_per_token as time_figure

c.intro("Train it live",
        "Three small language models learn the lab's English corpus side by side, on the same batches: a "
        "**Transformer**, an **LSTM** and a vanilla **RNN** (`h_t = tanh(W x_t + U h_{t-1} + b)`). Watch the "
        "training and held-out loss fall, the speed of each, and sentences sampled from each model as it learns.",
        tip="Try: start the quick preset; stop it half-way and resume; then, below, see why the RNN forgets.")

if "train_owner" not in st.session_state:
    st.session_state.train_owner = uuid.uuid4().hex
job = st.session_state.get("train_job")
present = c.presenting()
# projector mode: the buttons, then the training's progress and its loss curves (the key figure, once a training has
# run), then what the server says about time and load, then the choice of preset and models
buttons_at, progress_at, settings_at = (st.container(), st.container(), st.container()) if present else (None,) * 3


def at(box):
    return box if box is not None else contextlib.nullcontext()


with at(settings_at):
    cols = st.columns([2, 3])
    preset = cols[0].radio("Preset", VISIBLE_PRESETS, format_func=lambda p: f"{p}: {PRESETS[p].description}",
                           **c.labelled("preset", VISIBLE_PRESETS[0], options=list(VISIBLE_PRESETS)))
    kinds = cols[1].multiselect("Models", list(KINDS), format_func=LABELS.get,
                                **c.labelled("models", list(KINDS), options=list(KINDS)))
with at(buttons_at):
    b1 = b2 = b3 = st.container(horizontal=True)          # one row of buttons as wide as their labels (never cut)
    running = job is not None and job.alive                 # queued or running
    if b1.button("Start a new training", type="primary", disabled=running or not kinds, key="train_start"):
        try:
            job = MANAGER.start(st.session_state.train_owner, preset=preset, kinds=tuple(kinds))
            st.session_state.train_job = job
            running = True
        except JobLimitError as e:
            st.warning(c.md_escape(str(e)))
    queued = running and job.snapshot().status == "queued"
    if b2.button("Leave the queue" if queued else "Stop", disabled=not running, key="train_stop"):
        job.stop()
        running = job.alive
    if b3.button("Resume", disabled=job is None or running or job.snapshot().step >= job.snapshot().steps
                 or job.snapshot().status == "failed", key="train_resume"):
        try:
            MANAGER.resume(job)
            running = True
        except LabError as e:
            st.warning(c.md_escape(str(e)))


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"about {max(1, round(seconds)):,} s"
    return f"about {seconds / 60:,.0f} min"


def _takes(chosen: str, models: tuple[str, ...]) -> str:
    """How long a training of `chosen` with `models` takes, as this server knows it now: a training measures its
    pace from its first steps, so the sentence changes while this session's own training runs."""
    whole = estimate_seconds(chosen, models)
    if whole is not None:
        pace = measured_tokens_per_s(chosen, models)
        return f"takes {_duration(whole)}" + (f" at {pace:,.0f} tokens/s, measured on this server." if pace else ".")
    snap = job.snapshot() if job is not None and job.alive else None
    if snap is not None and snap.preset == chosen and set(snap.kinds) == set(models):
        return ("takes a time this server measures from the first steps of your training, which "
                + ("is starting." if snap.status in ("queued", "starting") else "is under way."))
    return "takes a time this server can estimate only once a training of this preset has run on it."


def _busy_words(b: dict, estimated: bool) -> str | None:
    """The warning for a busy server, saying what is true: trainings waiting in the queue, every worker taken, or
    only a high load (then nobody is ahead: a training starts at once, but runs slower)."""
    if not b["busy"]:
        return None
    load = f"load {b['load']:.1f} on {b['cores']} cores" if b["load"] is not None else ""
    slower = "slower than estimated" if estimated else "slower than on a quiet server"
    n = f"{b['running']} training{'s' if b['running'] != 1 else ''} running" if b["running"] else "no training running"
    if b["queued"]:
        return (f"The server is busy ({n}, {b['queued']} waiting" + (f", {load}" if load else "")
                + f"): a training may wait for its turn and run {slower}.")
    mine = job is not None and job.alive and job.snapshot().status in ("starting", "running", "stopping")
    if mine:
        return (f"The server's load is high ({load}; {n}, none waiting): the queue is empty, and your training runs "
                f"{slower}.")
    if b["running"] >= b["workers"]:
        return (f"The server is busy ({n}, none waiting" + (f", {load}" if load else "")
                + f"): the queue is empty, but every training worker is taken, so a new training waits for the "
                f"first to finish, and the load is high, so it will run {slower}.")
    return (f"The server's load is high ({load}; {n}, none waiting): the queue is empty, so a training starts at "
            f"once, but it will run {slower}.")


def about_time() -> None:
    """What the server says about time and load (drawn with the progress: refreshed while a training runs)."""
    busy = MANAGER.busy()
    st.caption(f"Trainings run in the background on the server, {busy['workers']} at a time, one per student; "
               f"others wait their turn in a queue. A training stops by itself about a minute after you leave "
               f"this page (resume continues it). The **{preset}** preset with {len(kinds)} model"
               f"{'s' if len(kinds) != 1 else ''} {_takes(preset, tuple(kinds))}")
    warn = _busy_words(busy, estimate_seconds(preset, tuple(kinds)) is not None)
    if warn:
        st.warning(warn)


def show_progress() -> None:
    if job is None:
        st.info("No training yet in this session: press **Start a new training**.")
        return
    job.heartbeat()
    snap = job.snapshot()
    if snap.status == "queued":
        st.info(f"Waiting for a free training worker: you are **number {snap.place}** in the queue; estimated "
                f"start: {_duration(snap.starts_in) if snap.starts_in else 'as soon as a training ends'}"
                f"{' from now' if snap.starts_in else ''}. Keep this page open to keep your place.")
    elif snap.status == "starting":
        st.info("Starting a training worker…")
    left = f"; {_duration(snap.remaining)} left" if snap.status in ("running", "stopping") and snap.remaining else ""
    st.progress(snap.progress, text=f"step {snap.step} of {snap.steps} ({snap.status}, {snap.seconds:.0f} s "
                                     f"of training{left}, preset {snap.preset})")
    if snap.message:
        st.warning(c.md_escape(snap.message))
    if snap.running and not any(cv.heldout for cv in snap.curves.values()):
        return                                   # nothing measured yet
    if present:                                  # projector mode: the curves first
        c.plot(loss_curves(snap.curve_table(), title="Loss while training"), key="train_curves")
    st.table({"model": [r[0] for r in snap.latest()], "tokens / s": [r[1] for r in snap.latest()],
              "training loss": [r[2] for r in snap.latest()], "held-out loss": [r[3] for r in snap.latest()]})
    st.caption("Tokens per second: each model's own compute time (the three take turns on one core of the "
               "server). Losses in nats per token; held-out: 100 sentences never trained on.")
    if not present:
        c.plot(loss_curves(snap.curve_table(), title="Loss while training"), key="train_curves")
    st.markdown("**Sampled sentences** (temperature 0.8, seeded), newest first")
    for k in snap.kinds:
        lines = [f"step {step:>5}: {text}" for step, text in reversed(snap.samples[k][-4:])]
        st.markdown(f"*{LABELS[k]}*")
        st.code("\n".join(lines) or "(the first sample comes after a few steps)", language=None, wrap_lines=True)
    if running and not snap.running:
        st.rerun(scope="app")                    # finished: refresh the buttons


def live() -> None:
    """Time and load, and the training's progress: one fragment, rerun every second while a training runs."""
    if present:
        show_progress()
        about_time()
    else:
        about_time()
        show_progress()


with at(progress_at):
    if running:
        st.fragment(run_every=1.0)(live)()
    else:
        live()


has_weights = job is not None and not job.alive and bool(job.saved_step)   # a worker that died saved nothing
if has_weights:
    st.subheader("Keep a trained model")
    kept = st.session_state.setdefault("trained_models", {})
    cols = st.columns(len(job.kinds))
    for col, k in zip(cols, job.kinds):
        if col.button(f"Save the {LABELS[k]}", key=f"train_save_{k}"):
            try:
                folder = save_trained(job, k)
                kept[f"{LABELS[k]} trained live ({job.job_id})"] = str(folder)
            except LabError as e:
                st.warning(c.md_escape(str(e)))
    for name, folder in kept.items():
        st.markdown(f"**{c.md_escape(name)}**: saved as safetensors in")
        st.code(folder, language=None, wrap_lines=True)
    if kept:
        st.caption("Saved for this session: pick it in the sidebar's Model list to open it on every other page.")

# ----------------------------------------------------------------------------- why RNNs forget
st.header("Why RNNs forget")
st.markdown("An RNN carries everything it knows in one vector, rewritten at every word. The gradient that teaches "
            "it to use a word far back must pass through every step in between, multiplied each time by the "
            "same weights and by tanh's slope (at most 1): it usually **vanishes** (or explodes). The LSTM adds "
            "its cell state with a gate instead of rewriting it; a Transformer attends to every earlier word "
            "directly.")

trained = has_weights
builtin = {}
for name in ("lstm-lm", "transformer-lm"):
    got = c.try_load(name)
    if got is None:
        st.warning(f"The built-in {name} could not be opened.")
    else:
        builtin[f"built-in {name}"] = got.module
models = {**(job.trained_modules() if trained else {}), **builtin}
if trained:
    st.caption("Measured on the models trained above, and the built-in LSTM and Transformer for reference.")
else:
    st.caption("Train the three models above to add the RNN; until then the built-in LSTM and Transformer are shown.")
tok = tokenizer()
key = tuple(models)


@st.cache_resource(show_spinner="Back-propagating through 8 texts of 48 words…", max_entries=4)
def _builtin_gradients(device: str, names: tuple):
    return gradient_profiles(builtin, tok, n=8, length=48)


st.subheader("Gradient through time")
builtin_profiles = dict(_builtin_gradients(c.device_name(), tuple(builtin)))
profiles = builtin_profiles
if trained:
    live = st.session_state.get("forget_grad_res")
    if live and live[0] == job.job_id:
        profiles = {**live[1], **profiles}
    elif st.button("Add the models trained above", key="forget_grad"):
        with st.spinner("Back-propagating through 8 texts of 48 words…"):
            live = (job.job_id, gradient_profiles(job.trained_modules(), tok, n=8, length=48))
        st.session_state.forget_grad_res = live
        profiles = {**live[1], **profiles}
if profiles:
    grad_title = "‖∂ loss at the last word / ∂ hidden state k words back‖"
    c.plot(c.cached_figure(None, "forget_g", (c.device_name(), tuple(builtin)),      # the built-ins' figure: one
                           lambda: gradient_figure(profiles, title=grad_title)) if profiles is builtin_profiles  # for all
           else gradient_figure(profiles, title=grad_title), key="forget_g")
    st.caption("Mean over the same 8 held-out texts of 48 tokens (sentences run together). RNN and LSTM: the "
               "first layer's hidden state h; Transformer: the residual stream right after the embeddings. Log "
               "scale: a straight falling line is a geometric decay.")
    rates = decay_per_word(profiles)
    st.markdown("Measured here, per word back (fitted on the log scale): "
                + "; ".join(f"**{c.md_escape(n)}** ×{f:.2f} (after 20 words ×{f ** 20:.1e})" for n, f in rates.items())
                + ". A factor below 1 compounds over the words.")
    lstm = rates.get("built-in lstm-lm")
    if lstm is not None and lstm < 1:
        st.caption(f"The built-in LSTM's gradient vanishes too (×{lstm:.2f} per word): its gated cell state does not "
                   "stop the decay.")

st.subheader("RNN against LSTM, over training seeds")


@st.cache_resource(max_entries=1)
def _seed_bands():
    return seed_bands(load_seed_profiles())


sb = _seed_bands()
n_seeds, far, near = len(sb.seeds), 20, 5
(r_lo, r_mid, r_hi), (l_lo, l_mid, l_hi) = sb.fall_range("rnn"), sb.fall_range("lstm")
s_lo, s_mid, s_hi = sb.separation_range()
c.plot(c.cached_figure(None, "forget_seeds", (), lambda: gradient_seed_bands(     # the same for every session
    sb.distance, {"RNN (tanh)": sb.band("rnn"), "LSTM": sb.band("lstm")}, separation=(s_lo, s_mid, s_hi),
    title=f"Gradient left k words back: RNN and LSTM, {n_seeds} training seeds")), key="forget_seeds")
st.caption(f"The quick preset's RNN and LSTM trained by this app's training code once per seed (seeds "
           f"{sb.seeds[0]} to {sb.seeds[-1]}), then measured on the same held-out texts as above; each curve is divided "
           "by its value 0 words back, so the two start at 1. Lines: the median over seeds; shaded: from the lowest "
           "to the highest seed.")
st.markdown(f"**The LSTM's gradient vanishes too.** Its log-norm falls by {l_mid:.2f} per word back (median over "
            f"{n_seeds} seeds; {l_lo:.2f} to {l_hi:.2f}), the RNN's by {r_mid:.2f} ({r_lo:.2f} to {r_hi:.2f}): "
            f"the LSTM's gradient falls more slowly, but it falls: {far} words back, {sb.left_at('lstm', far):.0e} of it "
            f"is left (median), against {sb.left_at('rnn', far):.0e} of the RNN's.")
if sb.separated:
    st.markdown(f"**Where they separate:** the RNN keeps less of its gradient than the LSTM at every distance from "
                f"{s_mid:g} words back on (median over seeds; {s_lo:g} to {s_hi:g}). From {far} words back on it keeps "
                f"less in {sb.below('rnn', 'lstm', far)} of {n_seeds} seeds. Close to the prediction"
                + (" it is the other way round" if sb.mostly_below("lstm", "rnn", 1, near) else "")
                + f": at every distance from 1 to {near} words back, the LSTM keeps less in "
                f"{sb.below('lstm', 'rnn', 1, near)} of {n_seeds} seeds, the RNN in {sb.below('rnn', 'lstm', 1, near)}.")

st.subheader("Agreement across a growing distance")
if st.button("Measure agreement by distance", key="forget_agree"):
    with st.spinner("Scoring 100 sentences at each distance…"):
        st.session_state.forget_agree_res = (key, agreement_by_distance(models, tok, n=100))
res = st.session_state.get("forget_agree_res")
if res and res[0] == key:
    c.plot(accuracy_by_distance(list(range(0, 25, 3)), res[1],
                                title="“the keys to the box near the cups … are”: accuracy by distance"),
           key="forget_a")
    st.caption("100 prefixes per distance, the same for every model: a subject, then phrases of three words "
               "(“near the cups”) whose nouns are singular or plural at random, then the verb. A model is right "
               "when it gives the correct form (is/are, was/were) more probability than the wrong one.")

st.subheader("Training time per token")
if job is not None and job.alive:
    st.info("Stop the training first: timing while it runs would measure the two competing for the CPU.")
elif st.button("Time a training step at lengths 16 to 128", key="forget_time"):
    with st.spinner("Timing forward, backward and optimiser steps…"):
        lengths = (16, 32, 64, 128)
        st.session_state.forget_time_res = (lengths, time_per_token(lengths, preset="quick", batch=8, reps=2))
res = st.session_state.get("forget_time_res")
if res:
    c.plot(time_figure(list(res[0]), res[1], title="Training time per token against sequence length"), key="forget_t")
    st.caption("The quick preset's model sizes, batch of 8, the fastest of 2 timed steps at each length, on this "
               "server's CPU and its current load. An RNN or LSTM computes its steps one after another, each "
               "waiting for the previous one; a Transformer computes all positions at once, with attention work "
               "that grows with the square of the length. Which cost wins depends on the sizes and the hardware: "
               "the figure is this machine's measurement.")
