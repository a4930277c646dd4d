"""What every page shares: the cached model loader, cached traced runs, the sidebar's choices,
error display. Pages stay thin: widgets, layout, a few lines of text; no maths here either.
"""
from __future__ import annotations

from typing import Any

import streamlit as st

import model
from model import LabError, LabModel, Run

DEFAULT_TEXT = "the bear ate the honey because it was hungry"
DEFAULT_SOURCE = "the black cat ate the mouse"
CHOICE_TEXT = "the bear ate the"                 # many plausible next words: where sampling settings matter
SUGGESTED_HF = ["gpt2", "distilgpt2", "bert-base-uncased", "t5-small", "Helsinki-NLP/opus-mt-en-fr"]
OTHER = "Other Hugging Face id or local folder…"
PLOT_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["lasso2d", "select2d"], "toImageButtonOptions": {"scale": 2}}


# ----------------------------------------------------------------------------- cached resources
@st.cache_resource(show_spinner="Loading the model…", max_entries=6)
def get_model(name: str, device: str) -> LabModel:
    """One shared copy per (model, device) for the whole server; never mutated."""
    return model.load(name, device)


def model_key(m: LabModel) -> str:
    """Identifies a loaded model in caches (the object itself is not hashed)."""
    return f"{m.name}|{m.device}|{id(m)}"


@st.cache_resource(show_spinner="Running the model…", max_entries=64)
def _run(_m: LabModel, key: str, text: str, target: str | tuple[int, ...] | None) -> Run:
    return _m.run(text, target)


def get_run(m: LabModel, text: str, target: str | tuple[int, ...] | None = None) -> Run:
    """The traced forward pass of `text`, cached per (model, text, target). Never mutate the result."""
    return _run(m, model_key(m), text, target)


@st.cache_resource(max_entries=256)
def _next_logits(_m: LabModel, key: str, ids: tuple[int, ...]):
    return _m.next_logits(list(ids))


def next_logits(m: LabModel, ids: list[int]):
    """Next-token logits after the ids, cached (a slider never reruns the model)."""
    return _next_logits(m, model_key(m), tuple(ids))


# ----------------------------------------------------------------------------- sidebar choices
def model_name() -> str:
    choice = st.session_state.get("model_choice", "transformer-lm")
    if choice == OTHER:
        return (st.session_state.get("model_custom") or "").strip()
    return choice


def device_name() -> str:
    return st.session_state.get("device", "auto")


def text() -> str:
    return st.session_state.get("text", DEFAULT_TEXT)


def load_or_stop(name: str | None = None) -> LabModel:
    """The model chosen in the sidebar (or `name`), or a clear message and stop."""
    name = name or model_name()
    if not name:
        st.info("Type a Hugging Face model id (like `gpt2`) or a local folder in the sidebar.")
        st.stop()
    try:
        return get_model(name, device_name())
    except LabError as e:
        st.error(f"**Could not load `{name}`.** {e}")
        st.stop()
    except Exception as e:  # anything unexpected still gets a message, not a traceback
        st.error(f"**Could not load `{name}`:** {type(e).__name__}: {e}")
        st.stop()


def transformer_run_or_stop(m: LabModel, lstm_note: str) -> Run:
    """For pages about Transformer internals: on the LSTM say why there is nothing to show and stop;
    otherwise the traced run of the text."""
    if m.kind == "lstm":
        st.info(lstm_note)
        st.stop()
    return run_or_stop(m)


def run_or_stop(m: LabModel, text_: str | None = None, target: str | tuple[int, ...] | None = None) -> Run:
    """Traced run of the text, or a clear message (empty, too long, ...) and stop."""
    text_ = text() if text_ is None else text_
    try:
        r = get_run(m, text_, target)
    except LabError as e:
        st.warning(str(e))
        st.stop()
    if r.unknown:
        words = ", ".join(f"“{w}”" for w in dict.fromkeys(r.unknown))
        st.warning(f"Not in {m.name}'s vocabulary: {words}. They are read as the unknown token "
                   f"**[UNK]**. Try words from the example sentences.")
    return r


def plot(fig: Any, key: str | None = None, **kw) -> Any:
    return st.plotly_chart(fig, key=key, config=PLOT_CONFIG, **kw)


def intro(title: str, what: str, try_: str | None = None) -> None:
    """Page heading with a short explanation and an optional 'try this'."""
    st.title(title)
    st.markdown(what)
    if try_:
        st.caption("Try: " + try_)


def md_escape(text: str) -> str:
    """Model output shown as markdown text, with markdown's special characters made literal."""
    return "".join("\\" + ch if ch in "\\`*_{}[]()<>#+-.!|~$" else ch for ch in text)


def tokens_line(tokens: list[str]) -> str:
    """Tokens as inline code, readable in markdown (backticks and pipes neutralised)."""
    return " ".join("`" + t.replace("`", "'") + "`" for t in tokens)
