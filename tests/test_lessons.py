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


SLOW = {"attention.translator_it", "translate.it_gender", "translate.compose", "patching.agreement_head", "lstm.number_holds",
        "attention.number_family", "break.no_mask"}     # 4-14 CPU-s each: many generated sentences per check
SLOW_FAMILIES = ("agreement.", "attention.agreement.", "lstm.compare.")   # 2-2.5 s each: 24-25 variants each


def _slow(key: str) -> bool:
    return key in SLOW or key.startswith(SLOW_FAMILIES)


@pytest.mark.parametrize("lesson", [pytest.param(l, id=l.key, marks=pytest.mark.slow if _slow(l.key) else ())
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


@pytest.mark.parametrize("name", ["transformer-lm", "lstm-lm"])
def test_language_model_lesson_families_have_at_least_20_known_variants(name):
    """Issue 20: each language-model lesson's check runs over a family of at least 20 generated variants."""
    m = _model(name)
    for plural in (False, True):
        for insert in lessons.INSERTS.values():
            assert len(lessons.eater_family(m, plural, insert)) >= 20, (plural, insert)
    assert len([t for t in lessons.choice_texts() if not m.tokenize(t).unknown]) >= 20
    assert len(lessons.causal_pairs()) >= 20
    for form in ("plain", "and", "with"):
        items = lessons.agreement_family(m, form)
        assert len(items) == lessons.FAMILY >= 20 and all(i["attractor"] for i in items), form
    assert all(" and " in i["prefix"] for i in lessons.agreement_family(m, "and"))
    assert all(" with " in i["prefix"] for i in lessons.agreement_family(m, "with"))


def test_and_and_with_lessons_are_stated_for_both_language_models():
    for name, kind in (("transformer-lm", "lm"), ("lstm-lm", "lstm")):
        keys = {l.key for l in lessons.lessons_for("attention", name)} | {l.key for l in lessons.lessons_for("lstm", name)}
        assert {f"agreement.and.{kind}", f"agreement.with.{kind}"} <= keys, name
    by_key = {l.key: l for l in lessons.LESSONS}
    assert " and " in by_key["agreement.and.lm"].text and " with " in by_key["agreement.with.lstm"].text
