"""Every teaching claim the app makes about a built-in model: as data, each with a check.

A page shows `lesson.claim` beside `lesson.text`; tests/test_lessons.py runs every
`lesson.check(model)` on the shipped checkpoints and fails if a claim no longer holds (after a
re-training, say). Figures written into a claim are re-measured by its check, which fails when
the model's figure no longer rounds to the one stated.

    from model.teaching import lessons
    lessons.DEFAULTS["sampling"]["transformer-lm"]      # the text a page opens on, per built-in model
    for l in lessons.lessons_for("attention", "translator-en-fr"):
        ok, measured = l.check(model.load(l.model))

Pages: "home", "attention", "positional", "masks", "layernorm", "sampling", "lstm", "translate".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..api import Recurrent

# ----------------------------------------------------------------------------- texts
CLASSIC = "the bear ate the honey because it was hungry"
CLASSIC_FOOD = "the bear ate the honey because it was delicious"
CLASSIC_PREFIX = "the bear ate the honey because it was"
CLASSIC_PLURAL_PREFIX = "the bears ate the honey because it was"
AGREEMENT = "the keys to the old cabinet are on the table"
AGREEMENT_PREFIX = "the keys to the old cabinet"
CHOICE = "the bear ate the"                                    # a choice point: many plausible next words
COMPARE = "the keys to the old cabinet"                        # LSTM vs Transformer: verb or another phrase next
TRANSLATE_IT_EATER = "the cat ate the soup because it was hungry"
TRANSLATE_IT_FOOD = "the cat ate the soup because it was hot"
TRANSLATE_DEFAULT = TRANSLATE_IT_EATER
COMPOSED = "in the morning the cat ate the soup in the garden because it was hungry"   # a held-out combination
BREAK_AGREEMENT = "the dog that the cats chased"          # Break it: the verb agrees with "dog", not "cats"

# page -> built-in model -> the text the page opens on (until the user types their own)
DEFAULTS: dict[str, dict[str, str]] = {
    "home": {"transformer-lm": CLASSIC, "lstm-lm": CLASSIC, "translator-en-fr": TRANSLATE_IT_EATER},
    "attention": {"transformer-lm": CLASSIC, "lstm-lm": CLASSIC, "translator-en-fr": TRANSLATE_IT_EATER},
    "positional": {"transformer-lm": CLASSIC, "lstm-lm": CLASSIC, "translator-en-fr": TRANSLATE_IT_EATER},
    "masks": {"transformer-lm": CLASSIC, "lstm-lm": CLASSIC, "translator-en-fr": TRANSLATE_IT_EATER},
    "layernorm": {"transformer-lm": CLASSIC, "lstm-lm": CLASSIC, "translator-en-fr": TRANSLATE_IT_EATER},
    "sampling": {"transformer-lm": CHOICE, "lstm-lm": CHOICE},
    "lstm": {"transformer-lm": COMPARE, "lstm-lm": COMPARE},
    "translate": {"translator-en-fr": TRANSLATE_DEFAULT},
    "experiments": {"transformer-lm": BREAK_AGREEMENT, "translator-en-fr": TRANSLATE_IT_EATER},
}

# Exact translations the pages and the README show.
EXACT_TRANSLATIONS: dict[str, str] = {
    "the black cat": "le chat noir",
    "the small black cat": "le petit chat noir",
    "the black cat ate the mouse": "le chat noir a mangé la souris",
    "he is reading a book": "il lit un livre",
    "the cat sat on the mat": "le chat s'est assis sur le tapis",
    TRANSLATE_IT_EATER: "le chat a mangé la soupe parce qu'il avait faim",
    TRANSLATE_IT_FOOD: "le chat a mangé la soupe parce qu'elle était chaude",
    COMPOSED: "le matin le chat a mangé la soupe dans le jardin parce qu'il avait faim",
    CLASSIC: "l'ours a mangé le miel parce qu'il avait faim",
}

# Figures measured on the shipped checkpoints (python -m model.teaching.lessons prints them again).
# The checks re-measure them; a claim fails when its figure no longer rounds the same way.
IT_HEAD = (2, 2)                        # translator encoder (layer, head), 1-based: the head whose attention from "it" is
                                        # most often highest on the referent (it_head_tables); trained with no attention loss
IT_CROSS_HEAD = (2, 4)                  # translator cross-attention (decoder layer, head): strongest in patching
IT_PATCH_LAYER = 3                      # translator: its last encoder layer, whose input is patched position by position
FIGURES: dict[str, float] = {
    "transformer_states_one": 0.5135, "transformer_states_many": 0.0086,
    "transformer_hungry_one": 0.0951, "transformer_hungry_many": 0.0012,
    "lstm_states_one": 0.5001, "lstm_states_many": 0.0052,
    "lstm_hungry_one": 0.0878, "lstm_hungry_many": 0.0010,
    "pronoun_accuracy": 1.0,
    "transformer_river_median": 0.0104, "lstm_river_median": 0.2424, "lstm_river_max": 0.5048,
    # translator, "it": attention of the best encoder head, and activation patching on IT_PATCH_PAIRS held-out pairs
    "it_head_top": 0.6667, "it_food_share": 0.6667, "it_food_or_last_word": 1.0,
    "it_head_patch_median": 0.5157, "it_head_patch_min": 0.4483, "it_head_patch_max": 0.6487,
    "it_head_patch_strongest": 1.0, "it_patch_last_word": 0.6504, "it_patch_it": 0.0961,
    "it_cross_median": 0.2949, "it_cross_min": 0.173, "it_cross_max": 0.3346, "it_cross_strongest": 0.6,
}
# translator: exact match on each held-out combination of grammar features (corpora.HELDOUT_COMBINATIONS), 200 each
COMBINATION_FIGURES: dict[str, float] = {
    "fronted place + because": 0.895, "three adjectives + place": 0.995, "and-subject + because": 0.905,
    "with-subject + fronted place": 0.98, "two places + because": 0.99, "pronoun subject + and-object": 0.97,
    "with-subject + sat": 0.73, "and-subject + progressive": 1.0,
}
MASK_FIGURES = {"agreement_masked": 1.0, "agreement_unmasked": 0.52, "ce_masked": 1.5798, "ce_unmasked": 2.2365}
AGREE_FIGURES = {"attn_out_min": 0.9181, "head_median": 0.7921, "head_min": 0.6044, "head_max": 0.9244}
AGREE_HEAD = (3, 2)                      # transformer-lm (layer, head), 1-based: found by patching, not trained
IT_PATCH_PAIRS = 20                      # held-out opposite-gender pairs the patching figures are measured on
MIN_ENTROPY = 1.0                       # nats: a real choice point


@dataclass(frozen=True)
class Lesson:
    key: str
    model: str                           # built-in model name
    pages: tuple[str, ...]               # pages that state the claim
    text: str                            # the text the claim is about (the page's input)
    claim: str                           # the sentence shown on the page
    check: Callable[..., tuple[bool, str]] = field(repr=False, compare=False)
    contrast: str | None = None          # the second text of a pair, if the claim compares two


# ----------------------------------------------------------------------------- measurements
def _probs(m, text: str) -> torch.Tensor:
    return m.run(text).next_logits.float().softmax(-1)


def _p(m, probs: torch.Tensor, words) -> float:
    v = list(m.vocab)
    return float(sum(probs[v.index(w)] for w in words))


def entropy(m, text: str) -> float:
    p = _probs(m, text)
    return float(-(p * p.clamp_min(1e-12).log()).sum())


def causal_it_difference(m, a: str = CLASSIC, b: str = CLASSIC_FOOD) -> float:
    """Largest absolute difference between the attention rows of the token 'it' (every layer and
    head, every key up to 'it') in two texts that differ only after 'it'."""
    ra, rb = m.run(a), m.run(b)
    i = ra.tokens.index("it")
    assert rb.tokens[: i + 1] == ra.tokens[: i + 1]
    diff = 0.0
    for la, lb in zip(ra.trace.attention["self"], rb.trace.attention["self"]):
        diff = max(diff, float((la.weights[0, :, i, : i + 1] - lb.weights[0, :, i, : i + 1]).abs().max()))
    return diff


def number_shift(m) -> dict[str, float]:
    """P(animal words) and P(food words) after '... because it was' with one bear and with bears."""
    from .corpora import FOOD_PROPS, STATES

    one, many = _probs(m, CLASSIC_PREFIX), _probs(m, CLASSIC_PLURAL_PREFIX)
    return {"p_hungry_one": _p(m, one, ["hungry"]), "p_hungry_many": _p(m, many, ["hungry"]),
            "p_states_one": _p(m, one, STATES), "p_states_many": _p(m, many, STATES),
            "p_food_one": _p(m, one, FOOD_PROPS), "p_food_many": _p(m, many, FOOD_PROPS)}


INSERTS = {"": "", "garden": " in the garden", "river": " near the river"}


def number_shift_family(m) -> dict[str, np.ndarray]:
    """P(animal words) after "the <animals><insert> ate the honey because it was", for every plural animal the
    model knows, with nothing, "in the garden" or "near the river" between the eater and the verb."""
    from .corpora import ANIMALS, STATES

    out = {}
    for key, ins in INSERTS.items():
        texts = [f"the {plural}{ins} ate the honey because it was" for _, plural in ANIMALS]
        out[key] = np.array([_p(m, _probs(m, t), STATES) for t in texts if not m.tokenize(t).unknown])
    return out


def agreement_ratio(m) -> float:
    p = _probs(m, AGREEMENT_PREFIX)
    return _p(m, p, ["are"]) / _p(m, p, ["is"])


def it_head_weights(m, sentence: str, head: tuple[int, int] = IT_HEAD) -> dict[str, float]:
    """Attention of the translator's encoder head from 'it' to every source token."""
    from ..training.evaluate import it_attention

    att, toks = it_attention(m, sentence)
    row = att[head[0] - 1, head[1] - 1]
    return {t: float(row[j]) for j, t in enumerate(toks)}


def it_patch_summary(m, n: int = None) -> dict[str, float]:
    """Activation patching on `n` held-out pronoun pairs ("...because it was hungry" / "...hot", il vs elle):
    the effect of the encoder head IT_HEAD (median, min, max, share of pairs where it is the strongest encoder head),
    medians of the last encoder layer's input at the last word and at "it", and the effect of IT_CROSS_HEAD (median,
    min, max, and the share of pairs where it is the strongest cross-attention head)."""
    from .patching import patch, pronoun_pairs

    pairs = pronoun_pairs(n or IT_PATCH_PAIRS)
    last, it, cross, strongest, head, head_top = [], [], [], [], [], []
    for a, b in pairs:
        r = patch(m, a, b)
        head.append(float(r.heads["encoder"][IT_HEAD[0] - 1, IT_HEAD[1] - 1]))
        head_top.append(r.strongest_head("encoder")[:2] == (IT_HEAD[0] - 1, IT_HEAD[1] - 1))
        toks = r.tokens["encoder"]
        resid = r.positions["encoder"]["resid_pre"]
        layer = IT_PATCH_LAYER - 1                                  # the input of the last encoder layer
        last.append(float(resid[layer, len(toks) - 2]))          # the last word, before [EOS]
        it.append(float(resid[layer, toks.index("it")]))
        cross.append(float(r.heads["cross"][IT_CROSS_HEAD[0] - 1, IT_CROSS_HEAD[1] - 1]))
        strongest.append(r.strongest_head("cross")[:2] == (IT_CROSS_HEAD[0] - 1, IT_CROSS_HEAD[1] - 1))
    return {"pairs": len(pairs), "it_patch_last_word": float(np.median(last)), "it_patch_it": float(np.median(it)),
            "it_cross_median": float(np.median(cross)), "it_cross_min": min(cross), "it_cross_max": max(cross),
            "it_cross_strongest": float(np.mean(strongest)), "it_head_patch_median": float(np.median(head)),
            "it_head_patch_min": min(head), "it_head_patch_max": max(head), "it_head_patch_strongest": float(np.mean(head_top))}


def it_attention_summary(m) -> dict[str, float]:
    """it_head_tables on the held-out pronoun sentences: the best head's share of sentences where "it" attends most
    to its referent, and the share of those sentences whose referent is the food (what a head always looking at
    the food would score)."""
    from ..training.evaluate import it_head_tables
    from .corpora import pronoun_heldout_pairs

    from ..training.evaluate import it_attention

    t = it_head_tables(m)
    items = pronoun_heldout_pairs()
    l, h = t["it_heads_best"]
    split = 0                               # food on top when "it" is the food, the last word when it is the eater
    for en, _, info in items:
        att, toks = it_attention(m, en)
        j = int(att[l - 1, h - 1].argmax())
        split += j == (toks.index(info["food"]) if info["referent"] == "food" else len(toks) - 2)
    return {"best": (l, h), "top": t["it_heads_best_top"], "table": t["it_heads_top_table"],
            "food_or_last_word": split / len(items),
            "food_share": sum(i["referent"] == "food" for _, _, i in items) / len(items),
            "sentences": t["it_heads_sentences"]}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%" if x < 0.1 else f"{100 * x:.0f}%"


def _same(stated: float, measured: float, tol: float) -> bool:
    return abs(stated - measured) <= tol


# ----------------------------------------------------------------------------- checks
def _check_translation(src: str, want: str):
    def check(m) -> tuple[bool, str]:
        got = m.translate(src, greedy=True)
        return got == want, f"{src!r} -> {got!r}"
    return check


def _check_it_head(m) -> tuple[bool, str]:
    """No encoder head tracks "it" (the best is below 90% and is the one named); patching finds the deciding word's
    own position and IT_CROSS_HEAD carrying il/elle, with the stated figures, on IT_PATCH_PAIRS held-out pairs."""
    att = it_attention_summary(m)
    pat = it_patch_summary(m)
    ok = att["best"] == IT_HEAD and att["top"] < 0.9 and _same(FIGURES["it_head_top"], att["top"], 0.005)
    ok = ok and _same(FIGURES["it_food_share"], att["food_share"], 0.005)
    ok = ok and _same(FIGURES["it_food_or_last_word"], att["food_or_last_word"], 0.005)
    ok = ok and pat["it_cross_max"] < 0.5
    ok = ok and m.cfg.model["n_encoder_layers"] == IT_PATCH_LAYER
    ok = ok and all(_same(FIGURES[k], pat[k], 0.005) for k in (
        "it_patch_last_word", "it_patch_it", "it_cross_median", "it_cross_min", "it_cross_max", "it_cross_strongest",
        "it_head_patch_median", "it_head_patch_min", "it_head_patch_max", "it_head_patch_strongest"))
    return ok, (f"best encoder head from 'it': layer {att['best'][0]} head {att['best'][1]}, referent on top in "
                f"{att['top']:.4f} of {att['sentences']} held-out sentences (food is the referent in "
                f"{att['food_share']:.4f}; food or last word on top as said: {att['food_or_last_word']:.4f}); patching on {pat['pairs']} held-out pairs: that head median "
                f"{pat['it_head_patch_median']:.3f} ({pat['it_head_patch_min']:.3f}-{pat['it_head_patch_max']:.3f}), "
                f"strongest encoder head in {pat['it_head_patch_strongest']:.2f}; encoder layer-{IT_PATCH_LAYER} input at the last "
                f"word {pat['it_patch_last_word']:.3f}, at 'it' {pat['it_patch_it']:.3f} (medians); cross-attention "
                f"layer {IT_CROSS_HEAD[0]} head {IT_CROSS_HEAD[1]}: median {pat['it_cross_median']:.3f} "
                f"({pat['it_cross_min']:.3f}-{pat['it_cross_max']:.3f}), strongest in {pat['it_cross_strongest']:.2f}")


def _check_combinations(m) -> tuple[bool, str]:
    """Exact match on each held-out combination (200 generated sentences each) is as stated, and the example is right."""
    from ..training.evaluate import combination_exact_match

    got = combination_exact_match(m, 200)
    ok = set(got) == set(COMBINATION_FIGURES) and all(_same(COMBINATION_FIGURES[k], v, 0.005) for k, v in got.items())
    ok = ok and m.translate(COMPOSED, greedy=True) == EXACT_TRANSLATIONS[COMPOSED]
    return ok, "; ".join(f"{k}: {v:.3f}" for k, v in got.items())


def _check_no_mask(m) -> tuple[bool, str]:
    """Without the causal mask the last word's own view is unchanged (layer 1, 20 generated sentences), later
    layers' views of it change, and held-out agreement falls as stated."""
    from .interventions import Interventions, lm_figures
    from .patching import agreement_pairs

    iv = Interventions(no_causal_mask=True)
    first, second = [], []
    for text, _, _ in agreement_pairs(m, 20):
        ids = torch.tensor([m.tokenize(text).ids], device=m.device)
        with torch.inference_mode():
            a = m.module(ids, trace=True).trace.attention["self"]
            b = m.module(ids, trace=True, interventions=iv).trace.attention["self"]
        first.append(float((a[0].weights[0, :, -1] - b[0].weights[0, :, -1]).abs().max()))
        second.append(float((a[1].weights[0, :, -1] - b[1].weights[0, :, -1]).abs().max()))
    on, off = lm_figures(m, None), lm_figures(m, iv)
    acc = (on["agreement accuracy"], off["agreement accuracy"])
    ok = max(first) == 0.0 and min(second) > 0.01 and _same(MASK_FIGURES["agreement_masked"], acc[0], 0.005)
    ok = ok and _same(MASK_FIGURES["agreement_unmasked"], acc[1], 0.005)
    return ok, (f"layer 1, last word's row: largest change {max(first):.1e} over {len(first)} sentences; layer 2: "
                f"smallest largest change {min(second):.3f}; agreement {acc[0]:.2f} -> {acc[1]:.2f}")


def _check_number_family(m) -> tuple[bool, str]:
    fam = number_shift_family(m)
    key = "lstm" if isinstance(m, Recurrent) else "transformer"
    med = {k: float(np.median(v)) for k, v in fam.items()}
    ok = len(fam[""]) >= 10 and all(len(v) == len(fam[""]) for v in fam.values())
    ok = ok and med[""] < 0.05 and med["garden"] < 0.05
    ok = ok and _same(FIGURES[f"{key}_river_median"], med["river"], 0.005)
    ok = ok and (med["river"] > 0.1 if key == "lstm" else med["river"] < 0.05)
    return ok, (f"P(animal words) after 'the <animals>... because it was', median over {len(fam[''])} animals: "
                + ", ".join(f"{k or 'nothing'} {v:.3f}" for k, v in med.items())
                + f"; near the river max {fam['river'].max():.3f}")


def _check_agreement_head(m) -> tuple[bool, str]:
    """On 20 generated subject-attractor pairs (subject's number flipped): the last layer's attention output at the
    last word carries the number (patching effect >= the stated minimum), and AGREE_HEAD is the strongest head in
    every pair, with the stated median and range."""
    from .patching import agreement_pairs, patch

    att, head, strongest = [], [], set()
    for a, b, answers in agreement_pairs(m, 20):
        r = patch(m, a, b, answers)
        att.append(float(r.positions["self"]["attn.out"][-1, -1]))
        head.append(float(r.heads["self"][AGREE_HEAD[0] - 1, AGREE_HEAD[1] - 1]))
        strongest.add(r.strongest_head("self")[:2])
    ok = strongest == {(AGREE_HEAD[0] - 1, AGREE_HEAD[1] - 1)} and len(att) == 20
    ok = ok and all(_same(AGREE_FIGURES[k], v, 0.005) for k, v in (
        ("attn_out_min", min(att)), ("head_median", float(np.median(head))), ("head_min", min(head)),
        ("head_max", max(head))))
    return ok, (f"attention output of the last layer at the last word: min effect {min(att):.3f}; layer "
                f"{AGREE_HEAD[0]} head {AGREE_HEAD[1]}: median {np.median(head):.3f} ({min(head):.3f}-{max(head):.3f}); "
                f"strongest heads seen: {sorted(strongest)}")


def _check_causal(m) -> tuple[bool, str]:
    d = causal_it_difference(m)
    return d < 1e-6, f"largest difference between the two attention rows of 'it': {d:.2e}"


def _check_number(m) -> tuple[bool, str]:
    s = number_shift(m)
    key = "lstm" if isinstance(m, Recurrent) else "transformer"
    ok = (s["p_states_one"] > 0.2 and s["p_states_many"] < 0.05 and s["p_food_many"] > 0.9
          and s["p_hungry_one"] > 10 * s["p_hungry_many"]
          and _same(FIGURES[f"{key}_states_one"], s["p_states_one"], 0.005)
          and _same(FIGURES[f"{key}_states_many"], s["p_states_many"], 0.0005)
          and _same(FIGURES[f"{key}_hungry_one"], s["p_hungry_one"], 0.0005)
          and _same(FIGURES[f"{key}_hungry_many"], s["p_hungry_many"], 0.0005))
    return ok, (f"one bear: P(hungry) {s['p_hungry_one']:.3f}, P(animal words) {s['p_states_one']:.3f}, "
                f"P(food words) {s['p_food_one']:.3f}; bears: P(hungry) {s['p_hungry_many']:.4f}, "
                f"P(animal words) {s['p_states_many']:.4f}, P(food words) {s['p_food_many']:.3f}")


def _check_agreement(m) -> tuple[bool, str]:
    r = agreement_ratio(m)
    return r > 5, f"P(are) / P(is) after {AGREEMENT_PREFIX!r}: {r:.1f}"


def _check_entropy(text: str):
    def check(m) -> tuple[bool, str]:
        h = entropy(m, text)
        top = _probs(m, text).topk(5)
        words = ", ".join(f"{m.vocab[i]} {float(p):.2f}" for p, i in zip(top.values, top.indices))
        return h >= MIN_ENTROPY, f"next-word entropy after {text!r}: {h:.2f} nats (top: {words})"
    return check


def _check_known(texts: list[str]):
    def check(m) -> tuple[bool, str]:
        unknown = sorted({w for t in texts for w in m.tokenize(t).unknown})
        return not unknown, f"unknown words: {unknown}"
    return check


EXAMPLES = ["the keys to the old cabinet are on the table", "the black cat ate the mouse", CLASSIC,
            "the cat sat on the mat", "he is reading a book"]


def _build() -> list[Lesson]:
    F = FIGURES
    out = [
        Lesson("attention.translator_it", "translator-en-fr", ("attention", "translate", "patching"), TRANSLATE_IT_EATER,
               f"French needs to know what “it” refers to (il or elle). This translator was trained on translations "
               f"alone, and no encoder head learned to point from “it” to its referent: the closest, layer {IT_HEAD[0]}, "
               f"head {IT_HEAD[1]}, puts its largest weight on the referent in {_pct(F['it_head_top'])} of held-out "
               f"sentences (a head that always looked at the food would score {_pct(F['it_food_share'])}): it looks "
               f"at the food when “it” is the food, and at “hungry” or “tired” itself, not at the eater, when “it” is "
               f"the eater ({_pct(F['it_food_or_last_word'])} of the sentences). Yet "
               f"activation patching (page “Find the cause”) finds that this same head carries much of the answer: "
               f"copying its output from “…hot” into “…hungry” moves il/elle {_pct(F['it_head_patch_median'])} of the "
               f"way (median over {IT_PATCH_PAIRS} held-out pairs, {_pct(F['it_head_patch_min'])}–"
               f"{_pct(F['it_head_patch_max'])}), more than any other encoder head in {_pct(F['it_head_patch_strongest'])} "
               f"of them. Where a head looks from “it” is not what it does. At the input of the last encoder layer "
               f"({IT_PATCH_LAYER}) the position of “hungry” still carries {_pct(F['it_patch_last_word'])} and “it” "
               f"{_pct(F['it_patch_it'])} (medians), and the decoder reads the difference through several "
               f"cross-attention heads: the strongest, head {IT_CROSS_HEAD[1]} of decoder layer {IT_CROSS_HEAD[0]}, "
               f"carries {_pct(F['it_cross_median'])} alone ({_pct(F['it_cross_min'])}–{_pct(F['it_cross_max'])}).",
               _check_it_head, contrast=TRANSLATE_IT_FOOD),
        Lesson("translate.it_gender", "translator-en-fr", ("translate",), TRANSLATE_IT_EATER,
               "“it” becomes “qu'il” when it is the cat (masculine) and “qu'elle” when it is the soup (feminine): "
               "“…parce qu'il avait faim” but “…parce qu'elle était chaude”. On eater–food pairs never seen "
               f"together in training the pronoun is right in {_pct(F.get('pronoun_accuracy', 0))} of sentences.",
               lambda m: _check_pronoun(m), contrast=TRANSLATE_IT_FOOD),
        Lesson("break.no_mask", "transformer-lm", ("experiments", "masks"), CLASSIC,
               "Removing the causal mask hides nothing from the last word: in layer 1 its attention row is exactly the "
               "same with and without the mask (checked on 20 generated sentences), because it may look at every "
               "word before it either way. What changes is that every earlier word now also looks at later ones, so "
               "from layer 2 on the last word reads states the model never met in training. That train/test "
               f"mismatch, not lost information, is why agreement accuracy falls from "
               f"{_pct(MASK_FIGURES['agreement_masked'])} to {_pct(MASK_FIGURES['agreement_unmasked'])} on held-out "
               "items.",
               _check_no_mask),
        Lesson("patching.agreement_head", "transformer-lm", ("patching", "attention"), AGREEMENT_PREFIX,
               f"Which part makes the verb agree with its subject? Patching answers: on 20 generated sentences "
               f"(“the lamp to the old red lamps under …” against “the lamps to …”), the last layer's attention "
               f"output at the last word carries at least {_pct(AGREE_FIGURES['attn_out_min'])} of the subject's "
               f"number, and layer {AGREE_HEAD[0]} head {AGREE_HEAD[1]} alone moves the verb "
               f"{_pct(AGREE_FIGURES['head_median'])} of the way (median, {_pct(AGREE_FIGURES['head_min'])}–"
               f"{_pct(AGREE_FIGURES['head_max'])}), the strongest head in every one. No extra loss trained it: "
               "it emerged, and the model uses it.",
               _check_agreement_head),
        Lesson("attention.causal_it", "transformer-lm", ("attention", "masks"), CLASSIC,
               "A decoder-only model reads left to right: at “it” it cannot see “hungry” or “delicious” yet. This "
               "is what the causal mask guarantees, not something the model learned: its attention rows for “it” are "
               "identical in “…because it was hungry” and “…because it was delicious”, in every layer and head. Only "
               "the translator's encoder, which sees the whole sentence, can use the last word to resolve “it”.",
               _check_causal, contrast=CLASSIC_FOOD),
        Lesson("sampling.number_shift", "transformer-lm", ("sampling", "attention"), CLASSIC_PREFIX,
               f"What comes after “because it was” depends on the eater's number. After “the bear ate the honey "
               f"because it was”, “it” may be the bear or the honey: animal words (hungry, tired, …) get "
               f"{_pct(F.get('transformer_states_one', 0))} of the probability (“hungry” alone "
               f"{_pct(F.get('transformer_hungry_one', 0))}). After “the bears ate the honey because it was”, “it” can "
               f"only be the honey: animal words get {_pct(F.get('transformer_states_many', 0))} (“hungry” "
               f"{_pct(F.get('transformer_hungry_many', 0))}) and food words (delicious, sweet, …) the rest.",
               _check_number, contrast=CLASSIC_PLURAL_PREFIX),
        Lesson("lstm.number_shift", "lstm-lm", ("lstm",), CLASSIC_PREFIX,
               f"On this sentence the LSTM learned the same: animal words get {_pct(F.get('lstm_states_one', 0))} of "
               f"the probability (“hungry” {_pct(F.get('lstm_hungry_one', 0))}) after “the bear ate the honey because "
               f"it was” and {_pct(F.get('lstm_states_many', 0))} (“hungry” {_pct(F.get('lstm_hungry_many', 0))}) "
               "after “the bears ate the honey because it was”.",
               _check_number, contrast=CLASSIC_PLURAL_PREFIX),
        Lesson("lstm.number_fades", "lstm-lm", ("lstm",), CLASSIC_PLURAL_PREFIX,
               "But its memory of the number is fragile: put “near the river” between “the bears” and “ate” and the "
               f"LSTM again gives animal words {_pct(F['lstm_river_median'])} (median over the animals it knows, up to "
               f"{_pct(F['lstm_river_max'])}), while the Transformer stays at "
               f"{_pct(F['transformer_river_median'])}; with “in the garden” both stay sure.",
               _check_number_family),
        Lesson("attention.number_family", "transformer-lm", ("attention",), CLASSIC_PLURAL_PREFIX,
               "The number survives a phrase in between: after “the bears near the river ate the honey because it was” "
               f"animal words get {_pct(F['transformer_river_median'])} (median over the animals it knows), as without "
               "the phrase.",
               _check_number_family),
    ]
    for name in ("transformer-lm", "lstm-lm"):
        kind = "lm" if name == "transformer-lm" else "lstm"
        out += [
            Lesson(f"attention.agreement.{kind}", name, ("attention", "lstm", "home"), AGREEMENT_PREFIX,
                   "The verb agrees with “keys”, not with the nearer “cabinet”: the model gives “are” far more "
                   "probability than “is”.", _check_agreement),
            Lesson(f"sampling.choice_point.{kind}", name, ("sampling",), CHOICE,
                   f"“{CHOICE}” is a choice point: many words can come next (entropy at least {MIN_ENTROPY:g} nat), so "
                   "temperature, top-k and top-p change what is drawn.", _check_entropy(CHOICE)),
            Lesson(f"lstm.compare.{kind}", name, ("lstm",), COMPARE,
                   f"After “{COMPARE}” both models spread their guess over several words (entropy at least "
                   f"{MIN_ENTROPY:g} nat): compare which words each one considers.", _check_entropy(COMPARE)),
            Lesson(f"vocabulary.examples.{kind}", name, ("home",), CLASSIC,
                   "Every example sentence of the README and the sidebar uses only words this model knows.",
                   _check_known(EXAMPLES)),
        ]
    out.append(Lesson("vocabulary.examples.seq2seq", "translator-en-fr", ("home", "translate"), TRANSLATE_DEFAULT,
                      "Every example sentence of the README and the sidebar uses only words this model knows.",
                      _check_known(EXAMPLES)))
    good = [k for k, v in COMBINATION_FIGURES.items() if v >= 0.95]
    weak = sorted(((v, k) for k, v in COMBINATION_FIGURES.items() if v < 0.95))
    out.append(Lesson("translate.compose", "translator-en-fr", ("translate",), COMPOSED,
                      f"Does the translator compose, or only know its templates? {len(COMBINATION_FIGURES)} whole "
                      f"combinations of grammar features never occur together in its training sentences, though each "
                      f"part is frequent there. On 200 generated sentences of each, it is exactly right in at least 95% "
                      f"for {len(good)} of them, but not for "
                      + ", ".join(f"{k} ({100 * v:.1f}%)" for v, k in weak)
                      + f". “{COMPOSED}” (a fronted place with a because-clause) comes out right.",
                      _check_combinations))
    for src, fr in EXACT_TRANSLATIONS.items():
        out.append(Lesson(f"translate.exact.{src.replace(' ', '_')}", "translator-en-fr", ("translate",), src,
                          f"“{src}” → “{fr}”", _check_translation(src, fr)))
    return out


def _check_pronoun(m) -> tuple[bool, str]:
    from ..training.evaluate import pronoun_accuracy

    a, b = m.translate(TRANSLATE_IT_EATER, greedy=True), m.translate(TRANSLATE_IT_FOOD, greedy=True)
    acc = pronoun_accuracy(m)
    ok = (a == EXACT_TRANSLATIONS[TRANSLATE_IT_EATER] and b == EXACT_TRANSLATIONS[TRANSLATE_IT_FOOD]
          and acc["pronoun_accuracy"] >= 0.95 and _same(FIGURES["pronoun_accuracy"], acc["pronoun_accuracy"], 0.005))
    return ok, f"{a!r}; {b!r}; held-out pronoun accuracy {acc['pronoun_accuracy']:.4f} ({acc['pronoun_sentences']} sentences)"


LESSONS: list[Lesson] = _build()


def lessons_for(page: str, model_name: str) -> list[Lesson]:
    """The lessons a page states about a model (empty for models without lessons, e.g. Hugging Face ones)."""
    return [lsn for lsn in LESSONS if page in lsn.pages and lsn.model == model_name]


def default_text(page: str, model_name: str) -> str | None:
    """The text a page opens on for a built-in model (None for other models: they keep the sidebar's text)."""
    return DEFAULTS.get(page, {}).get(model_name) or DEFAULTS["home"].get(model_name)


def main() -> None:
    import model

    cache: dict = {}
    for lsn in LESSONS:
        m = cache.setdefault(lsn.model, model.load(lsn.model, "cpu"))
        ok, measured = lsn.check(m)
        print(f"{'PASS' if ok else 'FAIL'} {lsn.key} [{lsn.model}] {measured}\n    {lsn.claim}")


if __name__ == "__main__":
    main()
