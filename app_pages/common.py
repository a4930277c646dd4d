"""What every page shares: the server's model store and trace cache, the sidebar's choices, the address
as the view (settings read from and written to the URL), projector mode, figures with export, and
messages that never interpret a user's string as markdown. Pages stay thin: widgets, layout, words.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import streamlit as st

from model import LabError, LabModel, Run, Translates
from model.store import LinkPolicy, ModelStore, TraceCache

DEFAULT_TEXT = "the bear ate the honey because it was hungry"
OTHER = "Other Hugging Face id or local folder…"
MAX_TEXT = 10_000                                 # characters (1,024 tokens of words fit); longer text is cut, with a message
PLOT_CONFIG = {"displaylogo": False, "displayModeBar": True, "modeBarButtonsToRemove": ["lasso2d", "select2d"],
               "toImageButtonOptions": {"scale": 2}}


# ----------------------------------------------------------------------------- words
def md_escape(text: Any) -> str:
    """Any user-given string (text, model id, token, error quoting them) made literal for markdown."""
    return "".join("\\" + ch if ch in "\\`*_{}[]()<>#+-.!|~$&:" else ch for ch in str(text))


def tokens_line(tokens: Sequence[str]) -> str:
    """Tokens as inline code, readable in markdown (backticks neutralised)."""
    return " ".join("`" + str(t).replace("`", "'").replace("\n", " ") + "`" for t in tokens)


def intro(title: str, what: str) -> None:
    """Page heading with a short explanation (the lab's own words, not user text)."""
    st.title(title)
    if not presenting():
        st.markdown(what)
    else:
        with st.expander("What this shows"):
            st.markdown(what)


def hints(page: str, m: LabModel) -> None:
    """What this page shows about this model: each line is a lesson in model/lessons.py whose check a test runs
    on the model it names, so a hint only appears with the model it is true for. A button loads its sentence."""
    from model import lessons

    found = lessons.lessons_for(page, m.name)
    if not found:
        return
    with st.expander(f"Try: what {m.name} shows here ({len(found)})", expanded=len(found) <= 3 and not presenting()):
        for i, lesson in enumerate(found):
            a, b = st.columns([5, 1])
            a.markdown(f"{tokens_line([lesson.text])} — {md_escape(lesson.claim)}")
            if lesson.text != text():
                b.button("Use this sentence", key=f"lesson_{page}_{i}", on_click=use_text, args=(lesson.text,))


def use_text_typed() -> None:
    st.session_state["_text_touched"] = True


def use_text(t: str) -> None:
    st.session_state["text"] = t
    st.session_state["_text_touched"] = True


def example_for(m: LabModel, page: str = "home") -> str | None:
    """A text this model knows (the page's own default), for the 'use a sentence it knows' button."""
    from model import lessons

    return lessons.default_text(page, m.name)


def page_default_text(page: str) -> None:
    """Until the user types their own text (or a link brings one), each page opens on its lesson's sentence for
    the chosen built-in model: a choice point for Sampling, the agreement phrase for the LSTM, and so on."""
    from model import lessons

    current = st.session_state.get("text", DEFAULT_TEXT)
    defaults = {DEFAULT_TEXT} | {t for by_model in lessons.DEFAULTS.values() for t in by_model.values()}
    if st.session_state.get("_text_touched") or current not in defaults:
        return                                      # the user's own text is never replaced
    t = lessons.default_text(page or "home", model_name())
    if t:
        st.session_state["text"] = t


# ----------------------------------------------------------------------------- server-wide caches
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
    if len(fixed) > MAX_TEXT:
        fixed = fixed[:MAX_TEXT]
        notes.append(f"the text was cut to its first {MAX_TEXT:,} characters")
    if notes:
        st.session_state["text"] = fixed
        st.session_state.setdefault("_url_errors", []).extend(notes)


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
        st.info("Type a Hugging Face model id (like `gpt2`) or a local folder in the sidebar.")
        st.stop()
    try:
        return store().get(resolve(name), device_name())
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


def get_run(m: LabModel, text_: str, target: str | tuple[int, ...] | None = None) -> Run:
    """The traced forward pass of `text`, cached per (model, text, target) under the server's byte budget."""
    return traces().get(("run", model_key(m), text_, target),
                        lambda: m.run(text_) if target is None else m.run(text_, target))


def cached(m: LabModel, what: str, args: tuple, compute: Callable) -> Any:
    """Any view computed from a model, cached like runs (e.g. a translation, a padded batch)."""
    return traces().get((what, model_key(m), *args), compute)


def run_key(r: Run) -> tuple:
    """What a traced run was computed from, besides the model: its tokens (and a translator's target so far).
    With the model, the key of every figure drawn from the run (`cached_figure`)."""
    return tuple(r.tokens), tuple(getattr(r, "target_tokens", None) or ())


@dataclass
class _CachedFigure:
    fig: Any
    nbytes: int                 # what the trace cache counts against its budget (arrays and strings it holds)


def cached_figure(m: LabModel | None, what: str, args: tuple, build: Callable[[], Any]) -> Any:
    """A figure built once per model, text and setting (`args`: whatever else it is computed from) and shared by
    every session: a whole-page rerun then costs no figure building (plotly validates every property), and the
    1,024-token grid is pooled once. The trace cache counts its arrays and strings against its byte budget; m=None
    for a figure that depends on no model.

    The one Figure object is handed to every session: drawing only reads it (Streamlit serialises a copy). Pages
    must not change it; `plot` copies it for projector mode. (Rebuilding a Figure from a cached dict instead cost
    more than building the figure: plotly validates every property, the whole template included.)"""
    from model.store import trace_bytes

    def make() -> _CachedFigure:
        fig = build()
        return _CachedFigure(fig, trace_bytes(fig.to_plotly_json()))

    if m is None:                                  # a figure that depends on no model (the paper's formula)
        return traces().get((what, None, *args), make).fig
    return cached(m, what, args, make).fig


def break_it(m: LabModel, what: str, label: str, key: str, head: tuple[str, int, int] | None = None,
             **choice) -> None:
    """Break it, where it fits on a page: a toggle that reruns this text with one part of the model switched off
    (a per-call option of the forward pass, never a change to the shared model), draws its next-word distribution
    beside the intact one (and one head's map, intact and broken, when `head` = (stack, layer, head) is given),
    and links to the Break it page. Offered only for the models the intervention applies to."""
    from model.interventions import build, compare, offers
    from viz.experiments import attention_pair, distribution_pair

    if not offers(m, what, choice.get("stack")) or not st.toggle(label, **state(key, False)):
        return
    iv = build(what, **choice)
    try:
        with st.spinner("Running the model with and without it…"):
            cmp = cached(m, "compare", (text(), repr(iv), None), lambda: compare(m, text(), iv))   # as Break it
    except LabError as e:
        st.warning(md_escape(e))
        return
    plot(distribution_pair(cmp.top_words, cmp.p_intact, cmp.p_broken,
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
        plot(attention_pair(a, b, cmp.q_labels[stack], cmp.k_labels[stack],
                            title=f"Layer {layer + 1}, head {h + 1}: intact, intervened, and the difference"),
             key=f"{key}_pair")
    st.page_link("app_pages/experiments.py", label="More on the Break it page: every head that changed, held-out figures",
                 icon=":material/build:", query_params={"break": what})


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
        r = get_run(m, text_, target)
    except LabError as e:
        st.warning(md_escape(e))
        st.stop()
    unknown_warning(m, r.unknown, example)
    return r


def need(m: LabModel, capability: type, message: str) -> None:
    """Stop with `message` (the lab's words) when the model lacks a capability the page needs."""
    if not isinstance(m, capability):
        st.info(message)
        st.stop()


# ----------------------------------------------------------------------------- the address is the view
def _parse(raw: str, default: Any, options: Sequence | None, lo, hi):
    if isinstance(default, bool):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError("expected 1 or 0")
    if isinstance(default, int):
        v = int(raw)
    elif isinstance(default, float):
        v = float(raw)
        if v != v or v in (float("inf"), float("-inf")):
            raise ValueError("not a number")
    elif isinstance(default, list):
        cast = int if options and isinstance(next(iter(options)), int) else str
        v = [cast(x) for x in raw.split(",") if x.strip()]
        if options is not None and any(x not in options for x in v):
            raise ValueError("not among the choices")
        return v
    else:
        v = raw
    if options is not None and v not in options:
        raise ValueError("not among the choices")
    if lo is not None and v < lo or hi is not None and v > hi:
        raise ValueError(f"outside {lo}–{hi}")
    return v


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    return str(v)


def state(key: str, default: Any, *, options: Sequence | None = None, lo=None, hi=None) -> dict:
    """Prepare a widget whose value lives in the address, and return the widget's arguments:
    `st.slider("Temperature", 0.05, 3.0, step=0.05, **c.state("t", 1.0))`.

    A `?key=` this session did not write itself (a shared link, a lesson stop) sets the widget, checked (a bad
    value is named and ignored); the value is kept valid for the current options; and the address is then
    kept equal to the widget's value (left out while it is the default), so a copied link reproduces the view.
    """
    raw = st.query_params.get(key)
    mark = f"_url_{key}"
    if raw is not None and raw != st.session_state.get(mark):
        try:
            st.session_state[key] = _parse(raw, default, options, lo, hi)
            st.session_state["_url_applied"] = st.session_state.get("_url_applied", 0) + 1
        except (ValueError, TypeError) as e:
            st.warning(f"The link's setting {md_escape(key)}={md_escape(repr(raw[:40]))} is not valid "
                       f"({md_escape(e)}) and was ignored.")
    cur = st.session_state.get(key, default)
    if options is not None:
        if isinstance(default, list):
            cur = [x for x in cur if x in options] if isinstance(cur, list) else default
        elif cur not in options:
            cur = default if default in options else options[0]
    elif isinstance(cur, (int, float)) and not isinstance(cur, bool) and lo is not None and hi is not None:
        cur = min(max(cur, lo), hi)
    st.session_state[key] = cur
    keep_in_url(key, None if cur == default else _fmt(cur))
    return {"key": key}


def link_version() -> int:
    """Counts the address values applied from links this session: a browser-side control keyed with it starts
    over with the link's settings."""
    return st.session_state.get("_url_applied", 0)


def setting(key: str, default: Any, **kw) -> Any:
    """A setting that lives in the address but is not a Streamlit widget (e.g. a browser-side slider)."""
    state(key, default, **kw)
    return st.session_state[key]


def set_setting(key: str, value: Any, default: Any) -> None:
    st.session_state[key] = value
    keep_in_url(key, None if value == default else _fmt(value))


def keep_in_url(key: str, value: str | None) -> None:
    """Write `?key=value` (remove it for None) and remember that this session wrote it."""
    if st.query_params.get(key) != value:
        if value is None:
            del st.query_params[key]
        else:
            st.query_params[key] = value
    st.session_state[f"_url_{key}"] = value


def url_errors() -> None:
    errs = st.session_state.pop("_url_errors", None)
    if errs:
        st.warning("About the text: " + "; ".join(md_escape(e) for e in errs) + ".")


def number(label: str, key: str, default: int, lo: int, hi: int, container=None, **kw) -> int:
    """A whole-number box that says when a typed value is out of range (instead of silently keeping it)."""
    container = container or st
    v = container.number_input(label, min_value=lo, max_value=hi, step=1, **state(key, default, lo=lo, hi=hi), **kw)
    return int(v)


# ----------------------------------------------------------------------------- projector mode
def presenting() -> bool:
    return bool(st.session_state.get("present", False))


PRESENT_CSS = """
<style>
html, body, [data-testid="stAppViewContainer"] { font-size: 21px; }
[data-testid="stMarkdownContainer"] p, [data-testid="stMarkdownContainer"] li { font-size: 1.15rem; }
h1 { font-size: 2.3rem !important; } h2, h3 { font-size: 1.7rem !important; }
[data-testid="stCaptionContainer"] { font-size: 1.0rem !important; }
[data-testid="stWidgetLabel"] p { font-size: 1.05rem !important; font-weight: 600; }
.block-container { padding-top: 2.2rem; max-width: 100%; }
</style>
"""


def present_style() -> None:
    if presenting():
        st.html(PRESENT_CSS)


# ----------------------------------------------------------------------------- figures
def plot(fig: Any, key: str, data: Callable[[], dict] | None = None, **kw) -> Any:
    """Draw a figure with a visible toolbar (PNG) and CSV/JSON downloads of exactly what it draws.

    `data` (called only when a download is clicked) overrides what is exported, for figures drawn as an image
    like the large attention grid."""
    from viz.export import figure_data

    if presenting():
        from viz.common import projector

        fig = projector(fig)
    out = st.plotly_chart(fig, key=key, config=PLOT_CONFIG, **kw)
    title = (fig.layout.title.text if fig.layout.title else None) or key
    export(key, data if data is not None else (lambda: figure_data(fig)), title)
    return out


# ----------------------------------------------------------------------------- the lesson path
def lesson_banner(page: str) -> None:
    """On a lesson stop (?stop=N), what to say there and links to the previous and next stops."""
    from app_pages.registry import LESSON

    raw = st.query_params.get("stop")
    if raw is None:
        return
    try:
        i = int(raw) - 1
        stop = LESSON[i]
        if i < 0 or stop.page != page:
            raise IndexError
    except (ValueError, IndexError):
        return
    with st.container(border=True):
        st.markdown(f"**Lesson, stop {i + 1} of {len(LESSON)}: {stop.title}** · about {stop.minutes} min  \n{stop.say}")
        a, b, _ = st.columns([1, 1, 3])
        if i > 0:
            a.page_link(f"app_pages/{LESSON[i - 1].page}.py", label=f"Previous: {LESSON[i - 1].title}",
                        icon=":material/arrow_back:", query_params={**LESSON[i - 1].params, "stop": str(i)})
        if i + 1 < len(LESSON):
            b.page_link(f"app_pages/{LESSON[i + 1].page}.py", label=f"Next: {LESSON[i + 1].title}",
                        icon=":material/arrow_forward:", query_params={**LESSON[i + 1].params, "stop": str(i + 2)})


def export(key: str, data: Callable[[], dict], title: str = "") -> None:
    """CSV and JSON downloads of exactly the numbers drawn (computed only when clicked)."""
    from viz.export import to_csv

    a, b, _ = st.columns([1, 1, 6])
    a.download_button("CSV", lambda: to_csv(data()), file_name=f"{key}.csv", mime="text/csv", key=f"{key}_csv", on_click="ignore",
                      icon=":material/download:", type="tertiary", help=f"The numbers drawn in “{title or key}”, as CSV")
    b.download_button("JSON", lambda: json.dumps(data(), ensure_ascii=False), file_name=f"{key}.json",
                      mime="application/json", key=f"{key}_json", on_click="ignore", icon=":material/download:", type="tertiary",
                      help="The same numbers with their labels, as JSON")
