"""Every teaching claim of model.teaching.lessons holds on the shipped checkpoints."""
import pytest

import model
from model.teaching import lessons

pytestmark = pytest.mark.unit

_cache: dict = {}


def _model(name):
    if name not in _cache:
        _cache[name] = model.load(name, "cpu")
    return _cache[name]


SLOW = {"attention.translator_it", "translate.it_gender", "translate.compose", "patching.agreement_head", "lstm.number_fades",
        "attention.number_family", "break.no_mask"}     # 4-14 CPU-s each: many generated sentences per check


@pytest.mark.parametrize("lesson", [pytest.param(l, id=l.key, marks=pytest.mark.slow if l.key in SLOW else ())
                                    for l in lessons.LESSONS])
def test_lesson_claim_holds_on_shipped_checkpoint(lesson):
    ok, measured = lesson.check(_model(lesson.model))
    assert ok, f"{lesson.key}: claim “{lesson.claim}” does not hold: {measured}"


def test_every_page_default_is_known_to_its_models():
    for page, by_model in lessons.DEFAULTS.items():
        for name, text in by_model.items():
            assert _model(name).tokenize(text).unknown == [], (page, name, text)


def test_claims_with_figures_state_the_measured_figures():
    # a claim's figures come from FIGURES, filled from a measurement; none may be missing (0%)
    for key in ("it_head_top", "it_cross_median", "pronoun_accuracy", "transformer_states_one", "transformer_states_many",
                "lstm_states_one", "lstm_states_many"):
        assert key in lessons.FIGURES, key


def test_lessons_for_filters_by_page_and_model():
    got = lessons.lessons_for("attention", "translator-en-fr")
    assert got and all(l.model == "translator-en-fr" and "attention" in l.pages for l in got)
    assert "attention.translator_it" in {l.key for l in got}
    assert "attention.causal_it" in {l.key for l in lessons.lessons_for("attention", "transformer-lm")}
    assert lessons.lessons_for("attention", "gpt2") == []
    assert {l.key for l in lessons.lessons_for("sampling", "lstm-lm")} >= {"sampling.choice_point.lstm"}


def test_translator_it_claim_names_the_head_it_checks():
    lsn = next(l for l in lessons.LESSONS if l.key == "attention.translator_it")
    layer, head = lessons.IT_HEAD
    assert f"layer {layer}, head {head}" in lsn.claim
