"""Activation patching: exact at both ends, two code paths agree, and the page draws it for every Transformer."""
import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

import model
from conftest import ROOT, charts, slow_except
from model import hooks
from model.hooks import HookRun
from model.teaching.patching import _batched, agreement_pairs, patch, single_patch

LM_PAIR = ("the key to the old cabinet", "the keys to the old cabinet")
TR_PAIR = ("the cat ate the soup because it was hot", "the cat ate the soup because it was hungry")


@pytest.mark.unit
def test_patching_nothing_gives_the_clean_run_exactly(lm):
    ids = lm.tokenize(LM_PAIR[0]).ids
    rec = HookRun(record={"blocks.1.resid_pre"})
    with hooks.active(rec):
        clean = lm.hooked_logits(ids)
    same = _batched(lm, ids, None, [("blocks.1.resid_pre", 2)], rec.cache)   # the clean activation copied in
    assert torch.equal(same, clean)


@pytest.mark.unit
@pytest.mark.parametrize("which", slow_except(["lm", "tr"], {"lm"}))   # tr: seconds
def test_patching_the_first_blocks_input_everywhere_gives_the_corrupted_run(which, lm, tr):
    lab, (a, b) = (lm, LM_PAIR) if which == "lm" else (tr, TR_PAIR)
    res = patch(lab, a, b, heads=False)
    first = "encoder" if which == "tr" else "self"
    row = res.positions[first]["resid_pre"][0]
    changed = res.changed[first]
    assert len(changed) == 1
    assert abs(row[changed[0]] - 1.0) < 1e-5                 # the only position that differs carries it all
    others = np.delete(row, changed)
    assert np.abs(others).max() < 1e-5                        # identical words: patching them changes nothing


@pytest.mark.unit
def test_a_heads_batched_effect_equals_a_separate_run_with_that_head_replaced(lm):
    res = patch(lm, *LM_PAIR, positions=False)
    vocab = lm.vocab
    a, b = vocab.index(res.answers[0]), vocab.index(res.answers[1])
    l, h, e = res.strongest_head("self")
    for layer, head in [(l, h), (0, 0), (lm.arch.n_layers - 1, lm.arch.n_heads - 1)]:
        ld = single_patch(lm, *LM_PAIR, f"blocks.{layer}.attn.head_out", head, (a, b))
        want = (ld - res.clean_diff) / (res.corrupted_diff - res.clean_diff)
        assert abs(want - res.heads["self"][layer, head]) < 1e-4, (layer, head)


@pytest.mark.unit
@pytest.mark.slow
def test_lm_number_reaches_the_verb_through_one_late_attention_output_on_40_generated_sentences(lm):
    """What the page finds on its default pair holds on a family: in 40 generated subject-attractor sentences,
    patching the last layer's attention output at the last position carries at least 80% of the subject's
    number, and one head of that layer is the strongest head every time."""
    pairs = agreement_pairs(lm, 40)
    assert len(pairs) == 40
    strongest = set()
    for a, b, answers in pairs:
        res = patch(lm, a, b, answers)
        last = res.positions["self"]["attn.out"][:, -1]
        assert last[-1] >= 0.8 and last[:-1].max() < 0.2, (a, last)
        strongest.add(res.strongest_head("self")[:2])
    assert len(strongest) == 1 and next(iter(strongest))[0] == lm.arch.n_layers - 1


@pytest.mark.apptest
def test_patching_page_draws_heads_and_positions_for_the_lm_and_the_translator():
    for name in ("transformer-lm", "translator-en-fr"):
        at = AppTest.from_file(str(ROOT / "lab.py"), default_timeout=180)
        at.session_state["model_choice"] = name
        at.run()
        at.switch_page("app_pages/patching.py")
        at.run()
        assert not at.exception, [e.message for e in at.exception]
        figs = charts(at)
        heat = [t for f in figs for t in f["data"] if t.get("type") == "heatmap"]
        assert len(heat) >= (4 if name == "translator-en-fr" else 2), name
        said = " ".join(md.value for md in at.markdown)
        assert "alone moves the answer" in said


@pytest.mark.apptest
def test_patching_page_names_why_for_the_lstm_and_for_texts_of_different_lengths():
    at = AppTest.from_file(str(ROOT / "lab.py"), default_timeout=180)
    at.session_state["model_choice"] = "lstm-lm"
    at.run()
    at.switch_page("app_pages/patching.py")
    at.run()
    assert not at.exception and any("no hook points" in i.value for i in at.info)
    with pytest.raises(model.LabError, match="same length"):
        patch(model.load("transformer-lm", "cpu"), "the key", "the keys to the")


@pytest.mark.unit
@pytest.mark.parametrize("family", slow_except(["gpt2", "llama", "qwen2", "bert", "t5", "bart"],
                                                {"gpt2", "llama", "qwen2", "bert", "bart"}))   # t5: seconds
def test_patching_a_hugging_face_family_through_its_table(family, tmp_path):
    """Patching works from the table's hook points alone: the first block's input at the changed position is
    the whole effect, and every head and position has a finite effect."""
    from devkit.hf_fixtures import make_tiny

    lab = model.load(str(make_tiny(family, tmp_path / family)), "cpu")
    base = "the bear ate the honey" + (" [MASK]" if family == "bert" else "")
    n = len(lab.tokenize(base).ids)
    others = [base.replace(" ate ", f" {w} ") for w in ("is", "on", "le", "a", "sleeps")] + \
             [base.replace("bear", w) for w in ("cat", "dog", "mouse", "keys", "table", "black")]
    other = next(o for o in others if len(lab.tokenize(o).ids) == n)   # one word for one word in this vocabulary
    words = [w for w in lab.vocab if w.isalpha()][:2]
    res = patch(lab, base, other, tuple(words))
    first = "encoder" if family in ("t5", "bart") else "self"
    row = res.positions[first]["resid_pre"][0]
    changed = res.changed[first]
    assert abs(row[changed].sum() - 1.0) < 1e-4, row
    assert all(np.isfinite(v).all() for v in res.heads.values())


@pytest.mark.apptest
@pytest.mark.parametrize("clean", ["", "   ", "the key to the \x00 cabinet", "zzz qqq", "<b>the</b> [x](http://e.invalid)"])
def test_patching_page_names_bad_texts_in_its_own_fields(clean):
    at = AppTest.from_file(str(ROOT / "lab.py"), default_timeout=180)
    at.run()
    at.switch_page("app_pages/patching.py")
    at.run()
    at.text_input(key="clean").set_value(clean).run()
    assert not at.exception, [e.message for e in at.exception]
    said = [i.value for i in at.info] + [w.value for w in at.warning]
    assert said, clean
    assert not any("<b>" in s or "](http" in s for s in said)


@pytest.mark.apptest
def test_a_lesson_on_the_patching_page_loads_its_two_texts_into_the_clean_and_corrupted_fields():
    from model.teaching.lessons import lessons_for

    paired = [(name, lsn) for name in ("transformer-lm", "translator-en-fr")
              for lsn in lessons_for("patching", name) if lsn.contrast]
    assert paired, "no lesson on the patching page compares two texts"
    name, lsn = paired[0]
    at = AppTest.from_file(str(ROOT / "lab.py"), default_timeout=180)
    at.session_state["model_choice"] = name
    at.run()
    at.switch_page("app_pages/patching.py")
    at.run()
    at.text_input(key="clean").set_value("the cat").run()
    at.text_input(key="corrupt").set_value("the dog").run()
    buttons = [b for b in at.button if b.label == "Use these two texts"]
    assert len(buttons) == len([lsn for n, lsn in paired if n == name])
    buttons[0].click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert (at.text_input(key="clean").value, at.text_input(key="corrupt").value) == (lsn.text, lsn.contrast)
    assert len([b for b in at.button if b.label == "Use these two texts"]) == len(buttons) - 1   # its pair is shown
