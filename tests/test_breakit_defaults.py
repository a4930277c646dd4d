"""Break it opens on a visible effect: each built-in model's default sentence and intervention change what the page
shows (the distribution, or the translation), the chart names the word whose prediction is drawn, and ablating
heads says how many heads downstream changed."""
import re

import pytest

from model.teaching import lessons
from model.teaching.interventions import OPENINGS


def opening_why(name: str) -> str:
    return OPENINGS[name].why

pytestmark = pytest.mark.apptest


def _page(**state):
    from streamlit.testing.v1 import AppTest

    from conftest import ROOT

    at = AppTest.from_file(str(ROOT / "lab.py"), default_timeout=300)
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    at.switch_page("app_pages/experiments.py")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def _tv(at) -> float:
    got = [re.search(r"total variation distance = ([0-9.]+)", c.value) for c in at.caption]
    return float(next(g for g in got if g).group(1))


def _dist_title(at) -> str:
    from conftest import charts

    return next(ch["layout"]["title"]["text"] for ch in charts(at) if "Probability of" in str(ch["layout"].get("title")))


def _codes(at) -> list[str]:
    return [c.value for c in at.code]


@pytest.mark.slow                                  # 3-4 s
def test_transformer_lm_opens_on_a_head_that_moves_the_prediction():
    at = _page()
    assert at.session_state["text"] == lessons.DEFAULTS["experiments"]["transformer-lm"]
    switched = next(m.value for m in at.markdown if m.value.startswith("**Switched off:**"))
    assert ("self layer 3 heads 1 replaced by their mean output over the reference set (50 held-out sentences)"
            in switched.replace("\\", "")), switched
    assert opening_why("transformer-lm") in [c.value for c in at.caption]     # why this head (checked below)
    assert _tv(at) >= 0.1                                  # measured 0.45 (mean over the reference set; zeros: 0.47)
    line = next(m.value for m in at.markdown if m.value.startswith("Most likely as the word after “chased”:"))
    assert "“was”" in line and "“were”" in line, line
    # layer 3 is the last layer: no head after it, and the page says so
    assert any(m.value.startswith("**No other head changed:** layer 3 is the last layer") for m in at.markdown)
    rows = {r[0]: (float(r[1]), float(r[2])) for r in at.table[0].value.values.tolist()}
    acc = rows["agreement accuracy"]
    assert acc[1] < acc[0] - 0.05, acc                      # held-out agreement 100% -> 92% (mean ablation)


@pytest.mark.slow
def test_ablating_an_early_layer_counts_the_heads_downstream_that_changed():
    at = _page()
    at.selectbox(key="layer").set_value(1).run()
    at.multiselect(key="heads").set_value([1, 2, 3, 4]).run()
    assert not at.exception
    said = next(m.value for m in at.markdown if m.value.startswith("**Heads downstream change too:**"))
    n = int(re.search(r"yet (\d+) heads? after them", said).group(1))
    grid = next(c.value for c in at.caption if "heads changed (a cell of 0.000" in c.value)
    assert n == int(grid.split(" of ")[0]) and 0 < n <= 8, (said, grid)     # only layers 2 and 3 come after


@pytest.mark.slow
def test_translator_opens_on_an_intervention_that_changes_its_translation():
    at = _page(model_choice="translator-en-fr")
    assert at.session_state["text"] == lessons.DEFAULTS["experiments"]["translator-en-fr"]
    codes = _codes(at)
    intact, broken = codes[1], codes[3]                     # left: read, translated; right: the same, intervened
    assert intact == lessons.EXACT_TRANSLATIONS[lessons.TRANSLATE_IT_EATER]
    assert broken != intact and "elle" in broken, broken
    assert opening_why("translator-en-fr") in [c.value for c in at.caption]        # why this intervention, said


@pytest.mark.slow                                  # 3-4 s
def test_shuffle_title_names_the_word_the_shuffled_run_predicts_after():
    at = _page()
    at.selectbox(key="break").set_value("shuffle").run()
    assert not at.exception
    intact, shuffled = _codes(at)[0].split(), _codes(at)[1].split()
    assert intact[-1] != shuffled[-1]                      # seed 0 moves the last word
    title = _dist_title(at).replace("<br>", " ")           # a long title wraps
    assert f"after “{intact[-1]}” (intact) and after “{shuffled[-1]}” (shuffled)" in title, title


@pytest.mark.slow
def test_held_out_figures_say_what_they_compute_while_they_run(spinner_texts):
    said = spinner_texts
    _page()
    assert ("Held-out figures: cross-entropy on 200 held-out sentences and agreement on 300 items, intact and "
            "intervened…") in said, said
    said.clear()
    _page(model_choice="translator-en-fr")
    assert "Held-out figures: translating 100 held-out sentences, intact and intervened…" in said, said


@pytest.mark.slow
def test_the_opening_head_is_the_one_patching_finds_for_agreement():
    """The caption's claim: on 40 generated agreement pairs, patching one head at a time, layer 3 head 1 moves the
    verb's logit difference most in every pair."""
    import model
    from model.teaching.patching import agreement_pairs, patch

    m = model.load("transformer-lm", "cpu")
    found = [patch(m, clean, corrupted, answers).strongest_head("self")[:2]
             for clean, corrupted, answers in agreement_pairs(m, 40)]
    assert len(found) == 40 and set(found) == {(2, 0)}, found
    assert "40 of 40" in opening_why("transformer-lm") and "Layer 3, head 1" in opening_why("transformer-lm")
    o = OPENINGS["transformer-lm"]
    assert (o.layer, o.heads) == (2, (0,))


def test_translator_chart_is_drawn_where_the_translations_part():
    """The translator's comparison draws the step where the intervened translation departs from the intact one
    (its title names the French words before it), so the default's chart moves visibly."""
    import model
    from model.teaching.interventions import build, compare

    tr = model.load("translator-en-fr", "cpu")
    o = OPENINGS["translator-en-fr"]
    c = compare(tr, "the cat ate the soup because it was hungry",
                build(o.what, stack=o.stack, layer=o.layer, heads=o.heads, head_mode=o.head_mode))
    assert c.translation_intact != c.translation_broken
    assert c.predicts == "the French word after “le chat a mangé la soupe parce”"
    assert c.tv >= 0.1


@pytest.mark.slow                                  # four mean ablations of one cross-attention layer
def test_translator_opening_needs_the_four_cross_heads_together_any_one_alone_changes_nothing():
    """The opening's caption: all four cross-attention heads of decoder layer 1, replaced by their means over the
    reference set, turn qu'il into qu'elle; each of them alone leaves the translation exactly as it was."""
    import model
    from model.teaching.interventions import build, compare

    tr = model.load("translator-en-fr", "cpu")
    text = lessons.DEFAULTS["experiments"]["translator-en-fr"]
    o = OPENINGS["translator-en-fr"]
    assert (o.what, o.stack, o.layer, o.heads, o.head_mode) == ("heads", "cross", 0, (0, 1, 2, 3), "reference")
    both = compare(tr, text, build("heads", stack="cross", layer=0, heads=o.heads, head_mode="reference"))
    assert "qu'il" in both.translation_intact and "qu'elle" in both.translation_broken, both.translation_broken
    for head in o.heads:
        c = compare(tr, text, build("heads", stack="cross", layer=0, heads=(head,), head_mode="reference"))
        assert c.translation_broken == c.translation_intact, (head, c.translation_broken)
    assert "all four heads" in opening_why("translator-en-fr") and "any one of them alone" in opening_why("translator-en-fr")
