"""Every page under streamlit's AppTest: runs on defaults, and its main controls change what is drawn."""
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT, charts, slow_except

from app_pages.registry import KEYS as PAGES

pytestmark = pytest.mark.apptest


def open_page(page: str | None = None, **state) -> AppTest:
    at = AppTest.from_file(str(ROOT / "lab.py"), default_timeout=120)
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    if page:
        at.switch_page(f"app_pages/{page}.py")
        at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def chart_with(at, title_part: str) -> dict:
    for c in charts(at):
        t = ((c.get("layout", {}).get("title") or {}).get("text") or "").replace("<br>", " ")   # titles may wrap
        if title_part in t:
            return c
    raise AssertionError(f"no chart titled like {title_part!r}; titles: "
                         f"{[(c.get('layout', {}).get('title') or {}).get('text') for c in charts(at)]}")


def test_home_shows_a_real_figure():
    at = open_page()
    figs = charts(at)
    assert figs, "the home page should show a figure without any typing"
    z = np.asarray(figs[0]["data"][0]["z"], dtype=float)
    assert z.shape[0] == z.shape[1] == 10                   # [BOS] + 9 words of the default sentence
    np.testing.assert_allclose(z.sum(1), 1, atol=1e-4)
    links = [pl.proto for pl in at.get("page_link")]
    assert {p for p in PAGES} <= {l.page.strip("/") for l in links}            # every page is linked
    from app_pages.registry import LESSON

    stops = [l for l in links if "stop=" in l.query_string]
    assert len(stops) == len(LESSON)                                          # and every lesson stop, with its settings
    assert all("model=" in l.query_string or "d=" in l.query_string for l in stops)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_runs_on_defaults(page):
    at = open_page(page)
    assert charts(at), f"{page} drew no figure"
    assert not at.error


@pytest.mark.parametrize("page", slow_except(PAGES, {"lstm", "experiments"}))
@pytest.mark.parametrize("model", ["transformer-lm", "translator-en-fr"])
def test_every_page_runs_in_projector_mode(page, model):
    """Projector mode lays pages out in another order (the key figure first, its choices under it): every page
    still runs, on a decoder-only model and on the translator (other stacks, other choices), and draws its figures."""
    at = open_page(page, present=True, model_choice=model, text="the black cat ate the mouse")
    assert not at.error and not at.exception
    assert charts(at) or page == "train", f"{page} drew no figure in projector mode"
    assert not at.expander or page in ("patching",), [e.label for e in at.expander]   # hints: in the heading's row


@pytest.mark.parametrize("page", PAGES)
def test_every_page_runs_on_the_translator(page):
    at = open_page(page, model_choice="translator-en-fr", text="the black cat ate the mouse")
    assert not at.error


def test_attention_picking_another_head_changes_the_figure():
    at = open_page("attention")
    before = chart_with(at, "layer 3, head 1")["data"][0]["z"]
    at.selectbox(key="head").set_value(2).run()
    after = chart_with(at, "layer 3, head 2")["data"][0]["z"]
    assert not np.allclose(before, after)
    at.selectbox(key="q").set_value(2).run()
    assert not at.exception


def test_attention_translator_has_three_kinds():
    at = open_page("attention", model_choice="translator-en-fr", text="the black cat ate the mouse")
    assert at.radio(key="stack").options == ["Encoder self-attention", "Decoder masked self-attention",
                                             "Cross-attention (decoder → encoder)"]
    at.radio(key="stack").set_value("cross").run()
    assert not at.exception
    z = np.asarray(chart_with(at, "Cross-attention")["data"][0]["z"])
    assert z.shape == (8, 7)                    # [BOS] le chat noir a mangé la souris x 6 English words + [EOS]


def open_with_link(page: str, **query) -> AppTest:
    at = AppTest.from_file(str(ROOT / "lab.py"), default_timeout=120)
    at.query_params.update(query)
    at.run()
    at.switch_page(f"app_pages/{page}.py")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def expected_probs(at) -> np.ndarray:
    """The final probabilities the draws are compared with (the markers of the sample histogram)."""
    hist = next(c for c in charts(at) if len(c["data"]) == 2 and c["data"][1].get("mode") == "markers")
    return np.asarray(hist["data"][1]["y"], dtype=float)


def test_sampling_top_k_one_from_a_link_leaves_one_word():
    assert len(expected_probs(open_with_link("sampling", text="the bear ate the"))) > 1
    p = expected_probs(open_with_link("sampling", text="the bear ate the", k="1"))
    assert len(p) == 1 and p[0] == pytest.approx(1.0)


def test_sampling_temperature_changes_the_distribution_without_new_forward_pass(monkeypatch):
    from model.nets.transformer import TransformerLM

    at = open_with_link("sampling", text="the bear ate the")       # a choice point: several words are likely
    base = expected_probs(at)
    calls = []
    forward = TransformerLM.forward
    monkeypatch.setattr(TransformerLM, "forward", lambda self, *a, **kw: calls.append(1) or forward(self, *a, **kw))
    at.query_params["t"] = "0.3"                               # what the browser sends back on release, via the link
    at.run()
    sharp = expected_probs(at)
    assert sharp[0] > base[0]                                   # lower temperature: the top word gains
    assert calls == [], "a sampling setting must not run the model again"


def test_sampling_step_through_generation():
    at = open_page("sampling")
    at.button(key="gen_take").click().run()
    at.button(key="gen_take").click().run()
    assert not at.exception
    steps = [c for c in charts(at) if any(str(x).startswith("2.") for x in c["data"][0].get("x", []))]
    assert steps, "the generation history should show two steps"
    at.button(key="gen_reset").click().run()
    assert not at.exception


def test_positional_d_model_slider_changes_the_table():
    at = open_page("positional")
    z = np.asarray(chart_with(at, "Position × dimension")["data"][0]["z"])
    assert z.shape == (64, 128)
    at.slider(key="d").set_value(32).run()
    z = np.asarray(chart_with(at, "Position × dimension")["data"][0]["z"])
    assert z.shape == (64, 32)
    assert chart_with(at, "learned (transformer-lm)")            # the LM's own learned table beside it


def test_masks_layer_and_head_change_the_stages():
    at = open_page("masks")
    figs = [c for c in charts(at) if len(c["data"]) == 4]
    first = np.asarray(figs[0]["data"][0]["z"], dtype=float)
    at.selectbox(key="head").set_value(3).run()
    figs = [c for c in charts(at) if len(c["data"]) == 4]
    assert not np.allclose(first, np.asarray(figs[0]["data"][0]["z"], dtype=float))
    w = np.asarray(figs[0]["data"][3]["z"], dtype=float)
    assert np.allclose(np.triu(w, 1), 0) and np.allclose(w.sum(1), 1, atol=1e-4)


def test_layernorm_token_pick_changes_histogram():
    at = open_page("layernorm")
    before = chart_with(at, "at L1")["data"][0]["x"]
    at.selectbox(key="tok").set_value(1).run()
    assert not at.exception
    after = chart_with(at, "at L1")["data"][0]["x"]
    assert not np.allclose(np.asarray(before, float), np.asarray(after, float))


def test_lstm_layer_switch():
    at = open_page("lstm")
    at.radio(key="layer").set_value(2).run()
    assert not at.exception
    cmp = [c for c in charts(at) if len(c["data"]) == 2 and c["data"][0].get("type") == "bar"]
    assert cmp and {d["name"] for d in cmp[0]["data"]} == {"LSTM (lstm-lm)", "Transformer (transformer-lm)"}


def test_lstm_units_choice_shows_few_or_all_rows():
    at = open_page("lstm")
    panel = lambda: next(c for c in charts(at) if len(c["data"]) == 6)      # the six gate / state heatmaps
    few = panel()["data"][4]                                                # cell state
    assert len(few["y"]) == 24 and few["y"][0].startswith("unit ")
    at.radio(key="units").set_value("all").run()
    assert not at.exception
    assert panel()["data"][4].get("y") is None                              # every unit, 0..191 bottom to top


def test_translate_default_sentence_and_crossing_alignment():
    at = open_page("translate", text="the black cat ate the mouse")
    assert any("le chat noir a mangé la souris" in m.value for m in at.markdown)
    at.sidebar.text_area(key="text").set_value("the white dog saw the small cat").run()
    assert any("le chien blanc a vu le petit chat" in m.value for m in at.markdown)


@pytest.mark.parametrize("text,kind", [("", "warning"), ("the zebra ate the honey", "warning"),
                                       ("the cat " * 60, "warning")])
def test_bad_text_gives_a_message_not_a_traceback(text, kind):
    for page in ("attention", "sampling"):
        at = open_page(page, text=text)
        assert getattr(at, kind), f"{page}: expected a {kind} for {text[:20]!r}"


def test_unknown_model_gives_a_clear_error():
    at = open_page("attention", model_choice="Other Hugging Face id or local folder…",
                   model_custom="/no/such/folder/model")
    assert at.error and "Could not open" in at.error[0].value


def test_every_lesson_stop_opens_its_page_with_its_settings_and_banner():
    from app_pages.registry import LESSON

    for i, stop in enumerate(LESSON, 1):
        at = open_with_link(stop.page, **stop.params, stop=str(i))
        assert not at.error, (stop.title, [e.value for e in at.error])
        assert any(f"stop {i} of {len(LESSON)}" in md.value for md in at.markdown), stop.title
        if "text" in stop.params:
            assert at.session_state["text"] == stop.params["text"], stop.title


def test_break_it_toggles_on_masks_positional_and_attention_pages_compute_the_intervention():
    """The Break-it toggles where they fit: without the causal mask the chosen head's intervened map has weight
    above the diagonal (a word now looks at later words) while the intact one has none; without positions and
    with one head off the next-word distributions are drawn beside the intact ones (at a choice point, where they
    differ); an LSTM is offered none. After a whole sentence, the last word already sees every word, so without
    the mask its prediction hardly moves: the page says so from the numbers."""
    at = open_with_link("masks", text="the bear ate the", brk_mask="true", layer="2", head="3")
    pair = chart_with(at, "Layer 2, head 3: intact, intervened")
    intact, broken = (np.asarray(pair["data"][i]["z"], dtype=float) for i in (0, 1))
    above = np.triu(np.ones_like(intact, dtype=bool), 1)
    assert intact[above].max() == 0 and broken[above].sum() > 0.5
    np.testing.assert_allclose(broken.sum(1), 1, atol=1e-4)
    def changed(dist) -> bool:
        a, b = (np.asarray(dist["data"][i]["y"], dtype=float) for i in (0, 1))
        return len(dist["data"]) == 2 and np.abs(a - b).max() > 1e-3

    assert changed(chart_with(at, "intact vs intervened"))
    at = open_with_link("positional", text="the bear ate the", brk_pos="true")
    assert changed(chart_with(at, "intact vs intervened"))
    at = open_with_link("masks", brk_mask="true")
    assert any("hardly changes" in c.value for c in at.caption)
    at = open_with_link("attention", brk_head="true")
    assert chart_with(at, "intact vs intervened")
    at = open_with_link("positional", model="lstm-lm", brk_pos="true")
    assert not [t for t in at.toggle if "Break it" in t.label]
    assert not [c for c in charts(at) if "intervened" in str((c.get("layout", {}).get("title") or {}).get("text"))]


# ----------------------------------------------------------------------------- the address through Streamlit
def test_a_link_sets_the_bound_widgets_and_the_figure_follows():
    at = open_with_link("attention", layer="2", head="3", grid="false")
    assert at.selectbox(key="layer").value == 2 and at.selectbox(key="head").value == 3
    assert chart_with(at, "layer 2, head 3")
    at = open_with_link("positional", d="32", len="16", dims=["0", "3"])
    assert at.slider(key="d").value == 32 and at.multiselect(key="dims").value == [0, 3]
    assert np.asarray(chart_with(at, "Position × dimension")["data"][0]["z"]).shape == (16, 32)
    at = open_with_link("sampling", text="the bear ate the", gt="0.5", gk="3", n="100")
    assert (at.slider(key="gt").value, at.number_input(key="gk").value, at.select_slider(key="n").value) == (0.5, 3, 100)
    assert not at.warning


def test_a_link_sets_the_labelled_widgets_kept_by_hand():
    at = open_with_link("attention", model="translator-en-fr", text="the black cat ate the mouse", stack="cross",
                        q="2")
    assert at.radio(key="stack").value == "cross" and at.selectbox(key="q").value == 2
    assert at.query_params["stack"] == "cross" and at.query_params["q"] == "2"     # the address keeps the short value


@pytest.mark.parametrize("page,query,key,value", [
    ("attention", {"head": "x", "layer": "2"}, "head", 1), ("masks", {"layer": "9"}, "layer", 1),
    ("positional", {"d": "7"}, "d", 128), ("sampling", {"gp": "1.5"}, "gp", 0.9),
    ("attention", {"brk_head": "1"}, "brk_head", False), ("attention", {"q": "99"}, "q", 7),
])
def test_a_bad_value_in_a_link_is_named_and_the_widget_keeps_its_default(page, query, key, value):
    at = open_with_link(page, **query)
    bad = next(iter(query)).replace("_", "\\_")                         # as markdown shows it, escaped
    assert [w.value for w in at.warning if f"{bad}=" in w.value and "not valid" in w.value], [w.value for w in at.warning]
    assert at.session_state[key] == value
    if "layer" in query and key != "layer":
        assert at.session_state["layer"] == int(query["layer"])          # the good value beside it still applies


def _widget_values(at) -> dict:
    """Every keyed widget on the page (not the sidebar's) and its value."""
    kinds = ("selectbox", "slider", "select_slider", "radio", "number_input", "multiselect", "toggle", "text_input")
    side = {"model_choice", "model_custom", "device", "text", "present"}
    return {w.key: w.value for kind in kinds for w in at.get(kind) if w.key and w.key not in side
            and not w.key.startswith("lesson_")}


@pytest.mark.slow
def test_each_lesson_stop_opens_on_its_model_and_settings_whatever_other_pages_were_left_at():
    """Settings left on other pages (layer 1 and head 2 on Attention, layer 3 on Masks, d_model 32 on Positional,
    every unit on the LSTM, the LSTM chosen) must not reach a stop: each opens on the model it names and the same
    settings as the stop opened in a fresh session, with the values its link names."""
    from app_pages.registry import LESSON

    for i, stop in enumerate(LESSON, 1):
        fresh = open_with_link(stop.page, **stop.params, stop=str(i))
        at = open_page("attention")
        at.selectbox(key="layer").set_value(1).run()
        at.selectbox(key="head").set_value(2).run()
        at.switch_page("app_pages/masks.py").run()
        at.selectbox(key="layer").set_value(3).run()
        at.switch_page("app_pages/positional.py").run()
        at.slider(key="d").set_value(32).run()
        at.switch_page("app_pages/lstm.py").run()
        at.radio(key="units").set_value("all").run()
        at.sidebar.selectbox(key="model_choice").set_value("lstm-lm").run()
        at.query_params.clear()
        at.query_params.update({**stop.params, "stop": str(i)})
        at.switch_page(f"app_pages/{stop.page}.py").run()
        assert not at.exception, (stop.title, [e.message for e in at.exception])
        assert at.session_state["model_choice"] == stop.params["model"], stop.title
        got, want = _widget_values(at), _widget_values(fresh)
        assert got == want, (stop.title, got, want)
        for key, value in stop.params.items():
            if key in got:
                assert str(got[key]) == value, (stop.title, key)
    assert [s.params["model"] for s in LESSON][2] == "transformer-lm"         # stop 3: the Transformer's positions


def test_a_page_opens_on_its_fallback_model_and_says_so_or_stops_with_its_message():
    at = open_page("lstm")                                          # the sidebar's Transformer is not recurrent
    assert any("transformer\\-lm is not a recurrent network" in i.value for i in at.info)      # the name escaped
    assert charts(at) and not at.error                              # the built-in LSTM is drawn instead
    at = open_page("translate", model_choice="lstm-lm", text="the black cat ate the mouse")
    assert any("Using the built-in translator" in i.value for i in at.info)
    assert any("le chat noir a mangé la souris" in m.value for m in at.markdown)
    at = open_page("masks", model_choice="lstm-lm")
    assert any("The LSTM needs no mask" in i.value for i in at.info) and not charts(at)


def test_stop_7_says_what_its_cross_attention_figure_shows():
    """The stop's sentence names the step's word, the row the figure reads from and the English word every head
    looks at most; each is checked against the drawn numbers (rows are the decoder's inputs, not its outputs)."""
    from app_pages.registry import LESSON

    i, stop = next((i, s) for i, s in enumerate(LESSON, 1) if s.page == "translate")
    at = open_with_link("translate", **stop.params, stop=str(i))
    step = int(stop.params["step"])
    said = next(md.value for md in at.markdown if f"stop {i} of" in md.value)
    assert any(f"picks `noir`" in md.value and "`chat`" in md.value for md in at.markdown)       # step 3 writes noir
    fig = chart_with(at, "From “chat”")                                     # the decoder's last word so far
    z, keys = np.asarray(fig["data"][0]["z"], dtype=float), fig["data"][0]["x"]
    looked = {keys[j].split(": ", 1)[1] for j in z.argmax(1)}                # per head, the key it weighs most
    assert looked == {"black"}, looked
    assert f"At step {step} it chooses *noir*: reading from *chat*" in said and "every head looks at *black*" in said


def test_no_address_key_is_both_bound_by_streamlit_and_kept_by_hand():
    """Streamlit refuses a write to a key bound to a widget, and a bound key leaves the address on another page: a
    key kept by hand (labelled widgets, the live sampling sliders, the sidebar's model and text) is never bound."""
    import re

    from model.nets.sampling import SamplingSettings

    src = "\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "app_pages").glob("*.py")))
    bound = set(re.findall(r'bound\("(\w+)"', src))
    by_hand = set(re.findall(r'labelled\("(\w+)"', src)) | {"model", "text", "present", "stop"}
    by_hand |= {prefix + k.key for prefix in ("", "a", "b", "c") for k in SamplingSettings.KNOBS}     # live panels
    bound |= {prefix + k.key for prefix in ("g", "d") for k in SamplingSettings.KNOBS}               # their sliders
    assert {"layer", "head", "stack", "q", "t"} <= bound | by_hand
    assert not bound & by_hand, bound & by_hand
