"""What every page shares: how a page opens (`open_page`: words, model, hints, capability, traced run), the
server's model store and trace cache, the sidebar's choices, projector mode, figures with export, and messages
that never interpret a user's string as markdown. Pages stay thin: widgets, layout, words.
The address (settings in the URL, its widget helpers) is address.py, Break it's toggles breakit.py, the lesson path
and the pages' hints lesson.py, figures figures.py, what a page says while a model opens (a hub download's
progress) opening.py, the server-wide model store and trace cache and a page's runs through them runs.py.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

import streamlit as st

from app_pages.address import (bound, labelled, link_version, number, sampling_controls, set_setting,  # noqa: F401
                                setting)                     # pages: c.bound, c.number …
from app_pages.figures import cached_figure, export, plot  # noqa: F401 (pages: c.plot …)
from app_pages.lesson import example_for, hints  # noqa: F401 (pages: c.example_for …)
from app_pages.runs import cached, get_run, model_key, policy, queued, run_key, store, traces  # noqa: F401 (c.get_run …)
from model import LabError, LabModel, Run, TracedRun

DEFAULT_TEXT = "the bear ate the honey because it was hungry"
OTHER = "Other Hugging Face id or local folder…"
MAX_TEXT = 40_000                                 # characters (4,096 tokens of words fit); longer text is cut, with a message



# ----------------------------------------------------------------------------- words
WORD_JOINER = "\u2060"                              # invisible; breaks a web address so markdown cannot link it
_AUTOLINK = re.compile(r"(?i)(?<=[a-z])(?=:/)|(?<=www)(?=\.)|(?<=@)")   # scheme://, www., user@host


def md_escape(text: Any) -> str:
    """Any user-given string (text, model id, token, error quoting them) made literal for markdown, and never a
    link: markdown turns a bare `http://…`, `www.…` or `user@host` into a live link even with its punctuation
    escaped, so an invisible word joiner goes before the colon of `scheme:/`, after `www` and after `@`."""
    return "".join("\\" + ch if ch in "\\`*_{}[]()<>#+-.!|~$&:" else ch for ch in _AUTOLINK.sub(WORD_JOINER, str(text)))


def tokens_line(tokens: Sequence[str]) -> str:
    """Tokens as inline code, readable in markdown (backticks neutralised)."""
    return " ".join("`" + str(t).replace("`", "'").replace("\n", " ") + "`" for t in tokens)


def intro(title: str, what: str, tip: str = ""):
    """Page heading with a short explanation (the lab's own words, not user text) and an optional "Try:" line.
    In projector mode the heading, the explanation and the page's hints share one row (the explanation and the hints
    behind buttons that open over the page), so that the key figure starts high on the first screen: returns that
    row (None in normal mode), for `hints`."""
    if not presenting():
        st.title(title)
        st.markdown(what)
        if tip:
            st.caption(tip)
        return None
    row = st.container(horizontal=True, vertical_alignment="center", gap="medium", key="page_head")
    row.title(title, width="content")
    with row.popover("What this shows", icon=":material/info:"):
        st.markdown(what)
        if tip:
            st.caption(tip)
    return row


def fallback_note(text: str) -> None:
    """A note about what the page shows instead (a fallback model): a box, or in projector mode one caption line."""
    if presenting():
        st.caption(f":material/info: {text}")
    else:
        st.info(text)


def use_text(t: str) -> None:
    st.session_state["text"] = t
    st.session_state["_text_touched"] = True


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


def trained() -> dict[str, str]:
    """Models this session trained live and saved: name -> the folder the server wrote."""
    return st.session_state.get("trained_models", {})


def resolve(name: str) -> str:
    """What to load for a name: a model this session trained (its own folder), or what the link policy allows."""
    return trained()[name] if name in trained() else policy().resolve(name)


def load_or_stop(name: str | None = None) -> LabModel:
    """The model chosen in the sidebar (or `name`), or a clear message and stop."""
    name = model_name() if name is None else name
    if not name:
        folder = " or a model folder" if policy().allow_folders else ""
        st.info(f"Type a Hugging Face model id (like `gpt2`){folder} in the sidebar.")
        st.stop()
    from app_pages.opening import from_hub, opening_words, with_download_progress

    try:
        path = resolve(name)
        with st.spinner(opening_words(name, path)):
            models, device = store(), device_name()       # read here: the helper thread has no session
            if from_hub(name, path):
                return with_download_progress(name, lambda: models.get(path, device))
            return models.get(path, device)
    except LabError as e:
        st.error(f"**Could not open the model “{md_escape(name[:200])}”.** {md_escape(e)}")
        st.stop()
    except Exception as e:  # anything unexpected still gets a message, not a traceback
        st.error(f"**Could not open that model:** {md_escape(type(e).__name__)}: {md_escape(e)}")
        st.stop()


def try_load(name: str) -> LabModel | None:
    """A model for a side panel: None (no message) when it cannot be opened."""
    try:
        return store().get(resolve(name), device_name())
    except Exception:
        return None


def unknown_warning(m: LabModel, unknown: Sequence[str], example: str | None = None) -> None:
    if not unknown:
        return
    words = ", ".join(f"“{md_escape(w)}”" for w in dict.fromkeys(unknown))
    st.warning(f"{md_escape(m.name)} does not know {words}: it reads each as the unknown token **[UNK]**, so what "
               "it computes for them is not about those words. Try words from the example sentences.")
    if example:
        st.button(f"Use a sentence it knows: “{example}”", key="use_known_example", on_click=use_text, args=(example,))


def run_or_stop(m: LabModel, text_: str | None = None, target: str | tuple[int, ...] | None = None,
                example: str | None = None) -> Run:
    """Traced run of the text, or a clear message (empty, too long, ...) and stop. Unknown words are named."""
    text_ = text() if text_ is None else text_
    try:
        with st.spinner("Running the model on the text…"):
            r = get_run(m, text_, target)
    except LabError as e:
        st.warning(md_escape(e))
        st.stop()
    unknown_warning(m, r.unknown, example)
    return r


def open_page(page: str, title: str, what: str, *, needs: type | None = TracedRun, message: str = "",
              fallback: str | None = None, example: str = "home", run: bool = True,
              tip: str = "") -> tuple[LabModel, Run | None]:
    """How every page opens: its title and lesson (`what`), the sidebar's model (a spinner while it loads, a clear
    message if it cannot), the capability the page `needs` (without it: `message` and stop, or the built-in
    `fallback` model with `message` as a note; "{name}" in it is the model's name), the page's hints, and the
    traced run of the text (a spinner while it runs; unknown words named, with a sentence the model knows from
    `example`'s lesson). `tip`: a "Try:" line under the explanation. Returns (model, run); run is None with
    run=False."""
    head = intro(title, what, tip if presenting() else "")     # normal mode: the tip under the hints
    m = load_or_stop()
    for note in m.training_notes():                # an extra loss or a planted head: always in sight, never folded
        st.caption(f":material/info: {md_escape(note)}")
    if needs is not None and not isinstance(m, needs):
        if fallback is None:
            st.info(message.replace("{name}", md_escape(m.name)))
            st.stop()
        fallback_note(message.replace("{name}", md_escape(m.name)))
        m = load_or_stop(fallback)
    hints(page, m, head)
    if tip and not presenting():
        st.caption(tip)
    return m, run_or_stop(m, example=example_for(m, example)) if run else None


# ----------------------------------------------------------------------------- projector mode
def presenting() -> bool:
    return bool(st.session_state.get("present", False))


PRESENT_CSS = """
<style>
html, body, [data-testid="stAppViewContainer"] { font-size: 21px; }
[data-testid="stMarkdownContainer"] p, [data-testid="stMarkdownContainer"] li { font-size: 1.15rem; }
h1 { font-size: 2.1rem !important; padding: 0 0 0.6rem 0 !important; } h2, h3 { font-size: 1.7rem !important; }
[data-testid="stCaptionContainer"] { font-size: 1.0rem !important; }
[data-testid="stWidgetLabel"] p { font-size: 1.05rem !important; font-weight: 600; }
.block-container { padding-top: 1rem; max-width: 100%; }   /* the key figure starts on the first screen */
[data-testid="stHeader"] { background: transparent; }        /* so the title may sit beside the sidebar button */
/* the heading's row (title, explanation, hints) lies under the header's band: the band lets clicks through to it,
   only the header's own buttons and links take them */
[data-testid="stHeader"], [data-testid="stHeader"] div { pointer-events: none; }
[data-testid="stHeader"] button, [data-testid="stHeader"] a { pointer-events: auto; }
</style>
"""


def present_style() -> None:
    if presenting():
        st.html(PRESENT_CSS)


