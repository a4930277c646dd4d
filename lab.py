"""The lab's Streamlit script (served by app.py: `streamlit run app.py`): st.navigation over the page
registry, the shared sidebar (model, device, text, projector mode), a lesson stop's settings, and the home page."""
from __future__ import annotations

import streamlit as st

from app_pages import common as c
from app_pages import lesson, registry
from app_pages.address import keep_in_url
from model.serving.store import SUGGESTED_HF

PRESENT = st.session_state.get("present", st.query_params.get("present", "") in ("1", "true"))
st.set_page_config(page_title="Transformer & LSTM lab", page_icon="🔬", layout="wide",
                   initial_sidebar_state="collapsed" if PRESENT else "auto")

PAGES = {p.key: st.Page(p.path, title=p.title, icon=p.icon, url_path=p.key) for p in registry.PAGES}
BLURBS = {p.key: p.blurb for p in registry.PAGES}


def home() -> None:
    from model import TracedRun, views
    from viz.attention import attention_heatmap

    st.title("Transformer & LSTM lab")
    st.markdown(
        "Small models, trained by this project, run live and show what they compute inside: "
        "**attention** of every head, **positional encodings**, **masks**, **layer norm**, the "
        "**next-word distribution** as you change the sampling settings, and an **LSTM**'s gates "
        "beside a Transformer. Pick a model and type a sentence in the sidebar; every page uses them. "
        "Hugging Face models (GPT-2, BERT, T5, Marian …) work too.")
    m = c.load_or_stop()
    left, right = st.columns([1, 1])
    with left:
        st.subheader(f"The map of {c.md_escape(m.name)}")
        st.caption("Every block opens the page that shows it, with this model and text. Read from the bottom up.")
        architecture(views.architecture_map(m))
    with right:
        st.subheader("A lesson in eight stops (45 minutes)")
        for i, stop in enumerate(registry.LESSON, 1):
            st.page_link(f"app_pages/{stop.page}.py", label=f"{i}. {stop.title} · {stop.minutes} min",
                         query_params={**stop.params, "stop": str(i)})
        st.subheader("Every page")
        for key, page in PAGES.items():
            st.page_link(page, label=f"**{page.title}**", icon=page.icon)
            st.caption(BLURBS[key])       # the blurb wraps under its link (a link's own label is one line, cut)
    st.subheader("A first look")
    if not isinstance(m, TracedRun):
        st.info("This model cannot be traced here.")
        return
    r = c.run_or_stop(m, example=c.example_for(m))
    stacks = views.attention_views(r)
    if not stacks:
        st.markdown("The LSTM has no attention: open the **LSTM** page to see its gates.")
        return
    v = stacks.get("cross") or next(iter(stacks.values()))
    last = v.n_layers - 1
    st.markdown(f"{v.title}, layer {last + 1}, head 1 of **{c.md_escape(m.name)}** reading "
                f"{c.tokens_line(r.tokens)}: each row is a word, each cell how much that word looks at another "
                "when the model builds its meaning. Hover a cell for the exact weight.")
    c.plot(attention_heatmap(v.head(last, 0), v.query_tokens, v.key_tokens,
                             title=f"{v.title}, layer {last + 1}, head 1"), key="home_fig")


def architecture(amap) -> None:
    """The model's blocks as linked boxes, the repeated layers framed with their real count."""
    cols = st.columns(len(amap.columns))
    for col, (title, blocks) in zip(cols, amap.columns.items()):
        with col:
            st.markdown(f"**{title}**")
            top, middle, bottom = blocks[:1], blocks[1:-1], blocks[-1:]
            if title == "Encoder":                  # no output block: its top is the first repeated block
                top, middle = [], blocks[:-1]
            for b in top:
                block(b)
            with st.container(border=True):
                st.caption(f"× {amap.repeat[title]} layers")
                for b in middle:
                    block(b)
            for b in bottom:
                block(b)


def block(b) -> None:
    with st.container(border=True):
        if b.page:
            st.page_link(PAGES[b.page], label=f"**{b.label}**")
        else:
            st.markdown(f"**{b.label}**")
        if b.detail:
            st.caption(b.detail)


def sidebar() -> None:
    import model

    sb = st.sidebar
    sb.header("Model and text")
    options = model.builtin_names() + list(c.trained()) + SUGGESTED_HF + [c.OTHER]
    sb.selectbox("Model", options, key="model_choice",
                 help="Built-in models work offline. Hugging Face ids load from the local cache, or from the hub "
                      "where this server allows it.")
    if st.session_state.get("model_choice") == c.OTHER:
        sb.text_input("Hugging Face id or local folder", key="model_custom", max_chars=200,
                      placeholder="e.g. gpt2 or /models/my-gpt2")
    sb.radio("Device", ["auto"] + model.available_devices(), key="device", horizontal=True,
             help="auto: CUDA if present, else Apple MPS, else CPU.")
    sb.text_area("Text", key="text", height=90, max_chars=c.MAX_TEXT, on_change=use_text_typed,
                 help="Used by every page. Built-in models know the toy vocabulary of the example sentences.")
    sb.caption("Examples: *the keys to the old cabinet are on the table* · *the black cat ate the mouse* · "
               "for BERT: *the bear ate the [MASK] because it was hungry*")
    sb.toggle("Projector mode", key="present", help="Large type, one key figure per screen; the link keeps it (?present=1).")


def use_text_typed() -> None:
    st.session_state["_text_touched"] = True


def page_default_text(page: str) -> None:
    """Until the user types their own text (or a link brings one), each page opens on its lesson's sentence for
    the chosen built-in model: a choice point for Sampling, the agreement phrase for the LSTM, and so on."""
    from model.teaching import lessons

    current = st.session_state.get("text", c.DEFAULT_TEXT)
    defaults = {c.DEFAULT_TEXT} | {t for by_model in lessons.DEFAULTS.values() for t in by_model.values()}
    if st.session_state.get("_text_touched") or current not in defaults:
        return                                      # the user's own text is never replaced
    t = lessons.default_text(page or "home", c.model_name())
    if t:
        st.session_state["text"] = t


def clean_text() -> None:
    """Text that reached the session from a link or a test: lone surrogates (not valid Unicode) become U+FFFD and
    more than MAX_TEXT characters are cut, each with a message, before any widget or model sees it."""
    t = st.session_state.get("text")
    if not isinstance(t, str):
        return
    fixed = t.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    notes = []
    if fixed != t:
        notes.append("characters that are not valid Unicode text were replaced by �")
    if len(fixed) > c.MAX_TEXT:
        fixed = fixed[:c.MAX_TEXT]
        notes.append(f"the text was cut to its first {c.MAX_TEXT:,} characters")
    if notes:
        st.session_state["text"] = fixed
        st.session_state.setdefault("_url_errors", []).extend(notes)


def url_errors() -> None:
    errs = st.session_state.pop("_url_errors", None)
    if errs:
        st.warning("About the text: " + "; ".join(c.md_escape(e) for e in errs) + ".")


# The model, the text and projector mode are kept in the address by hand: the model may be any hub id (not one of
# the selectbox's options, which is all a bound selectbox accepts), each page replaces an untouched text with its
# lesson's sentence, and `?present=1` is read before the page is configured (and binding takes only true/false).
def from_link() -> None:
    """A link like ?model=gpt2&text=... (shared, or a lesson stop) opens with that model and text. Only a value
    this session did not write itself counts, so the sidebar's own changes are never undone."""
    import model

    qp = st.query_params
    name = qp.get("model")
    if name is not None and name != st.session_state.get("_url_model"):
        name = name.strip()[:200]
        known = model.builtin_names() + list(c.trained()) + SUGGESTED_HF
        st.session_state["model_choice"] = name if name in known else c.OTHER
        if name not in known:
            st.session_state["model_custom"] = name
        st.session_state["_url_model"] = name
    t = qp.get("text")
    if t is not None and t != st.session_state.get("_url_text") and t.strip():
        st.session_state["text"] = t
        st.session_state["_url_text"] = t
        st.session_state["_text_touched"] = True
    p = qp.get("present")
    if p is not None and p != st.session_state.get("_url_present"):
        st.session_state["present"] = p in ("1", "true")


# Text contrast of at least 4.5:1 (axe-core, WCAG AA): Streamlit's captions (drawn at 60% opacity, 3.9:1) and the
# labels of disabled widgets (40%, 2.3:1) drawn darker; a disabled widget still looks lighter than an active one.
# Keyboard focus always visible (WCAG 2.4.7; tests/test_keyboard.py): Streamlit draws no ring on its page links,
# the sidebar's navigation, text fields, select boxes or the main area (the skip link's target), so every element
# focused from the keyboard gets a 3 px blue ring (#0b57d0: 6.4:1 on white, apart from the red theme colour); text
# fields, whose boxes clip what is drawn outside them, get it inside. Radio buttons, switches and sliders hide their
# input: the ring goes on what they draw instead (the option, the switch and its label, the thumb). Mouse clicks draw
# no ring (:focus-visible).
A11Y_CSS = """<style>
[data-testid="stCaptionContainer"] { opacity: 1 !important; }
[data-testid="stCaptionContainer"], [data-testid="stCaptionContainer"] * { color: rgba(47, 45, 43, 0.78) !important; }
label[data-testid="stWidgetLabel"][disabled] { color: rgba(47, 45, 43, 0.72) !important; }
a:focus-visible, button:focus-visible, summary:focus-visible, [role="button"]:focus-visible, [role="tab"]:focus-visible,
[role="option"]:focus-visible, [role="slider"]:focus-visible, [tabindex]:focus-visible, input:focus-visible,
select:focus-visible { outline: 3px solid #0b57d0 !important; outline-offset: 2px !important; }
textarea:focus-visible, input[type="text"]:focus-visible, input[type="number"]:focus-visible,
input[role="combobox"]:focus-visible, [data-testid="stMain"]:focus-visible {
  outline: 3px solid #0b57d0 !important; outline-offset: -3px !important; }
label:has(input:focus-visible), div:has(> div > input[type="range"]:focus-visible) {
  outline: 3px solid #0b57d0 !important; outline-offset: 2px; }
</style>"""


def to_link() -> None:
    """The address always names the model, text and projector mode in use (left out while they are the defaults)."""
    keep_in_url("model", c.model_name() if c.model_name() != "transformer-lm" else None)
    keep_in_url("text", c.text() if c.text() != c.DEFAULT_TEXT else None)
    keep_in_url("present", "1" if c.presenting() else None)


from_link()
st.session_state.setdefault("model_choice", "transformer-lm")
st.session_state.setdefault("device", "auto")
st.session_state.setdefault("text", c.DEFAULT_TEXT)
nav = st.navigation([st.Page(home, title="Home", icon=":material/home:", default=True), *PAGES.values()])
lesson.open_stop(nav.url_path)
page_default_text(nav.url_path)
clean_text()
sidebar()
st.html(A11Y_CSS)
c.present_style()
to_link()
url_errors()
lesson.banner(nav.url_path)
nav.run()
