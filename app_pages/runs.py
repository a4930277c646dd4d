"""The server-wide model store and trace cache (one each per server process, shared by every session), and a page's
traced runs and views through them: admitted, computed once per key, the page showing its place while it waits."""
from __future__ import annotations

from typing import Any, Callable

import streamlit as st

from model import LabModel, Run
from model.serving.store import LinkPolicy, ModelStore, TraceCache


@st.cache_resource
def store() -> ModelStore:
    return ModelStore()


@st.cache_resource
def traces() -> TraceCache:
    return TraceCache()


def policy() -> LinkPolicy:
    return LinkPolicy.from_env()


def model_key(m: LabModel) -> str:
    return f"{m.name}|{m.device}|{id(m)}"


def get_run(m: LabModel, text_: str, target: str | tuple[int, ...] | None = None) -> Run:
    """The traced forward pass of `text`, cached per (model, text, target) under the server's byte budget: computed
    once however many sessions ask (the others wait for it), at most LAB_MAX_TRACES at once, its estimated bytes and
    its forward pass's working memory reserved while it runs. While it waits its place in the queue is shown; a session that goes away stops waiting
    (the callback's Streamlit call raises), and work nobody waits for is dropped."""
    from model.serving.store import run_estimate, run_working

    return queued(("run", model_key(m), text_, target),
                  lambda: m.run(text_) if target is None else m.run(text_, target),
                  estimate=run_estimate(m, text_, target), working=run_working(m, text_, target))


def queued(key, compute, *, estimate: int | None, working: int | None):
    """A heavy computation through the server's trace cache (admission, single flight, bytes reserved), its place
    in the queue shown on the page while it waits and cleared when it is done."""
    shown: list = []

    def waiting(w) -> None:
        if not shown:
            shown.append(st.empty())
        shown[0].info(str(w), icon=":material/hourglass_top:")

    try:
        return traces().get(key, compute, estimate=estimate, working=working, heavy=True, on_wait=waiting)
    finally:
        if shown:
            shown[0].empty()


def cached(m: LabModel, what: str, args: tuple, compute: Callable) -> Any:
    """Any view computed from a model, cached like runs (e.g. a translation, a padded batch)."""
    return traces().get((what, model_key(m), *args), compute)


def run_key(r: Run) -> tuple:
    """What a traced run was computed from, besides the model: its tokens (and a translator's target so far).
    With the model, the key of every figure drawn from the run (`cached_figure`)."""
    return tuple(r.tokens), tuple(getattr(r, "target_tokens", None) or ())
