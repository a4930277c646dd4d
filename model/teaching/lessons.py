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
COMPARE = "the keys to the old cabinet"                        # LSTM vs Transformer: sure of the number, not the tense
AND_PREFIX = "the cat and the dog"                             # coordination: plural verb, though both nouns are singular
WITH_PREFIX = "the dog with the cats"                          # "with" as an attractor: the verb agrees with "dog"
TRANSLATE_IT_EATER = "the cat ate the soup because it was hungry"
TRANSLATE_IT_FOOD = "the cat ate the soup because it was hot"
TRANSLATE_DEFAULT = TRANSLATE_IT_EATER
COMPOSED = "in the morning the cat ate the soup in the garden because it was hungry"   # a held-out combination
BREAK_AGREEMENT = "the dogs that the cat chased"          # Break it: the verb agrees with "dogs", not "cat"

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
IT_HEAD = (2, 3)                        # translator encoder (layer, head), 1-based: the head whose attention from "it" is
                                        # most often highest on the referent (it_head_tables); trained with no attention loss
IT_CROSS_HEAD = (1, 4)                  # translator cross-attention (decoder layer, head): strongest in patching
IT_PATCH_LAYER = 3                      # translator: its last encoder layer, whose input is patched position by position
FIGURES: dict[str, float] = {
    # LM: medians over the 26 texts of `eater_texts`; *_max and *_still_max are stated upper bounds, *_cat_min a
    # stated lower bound (measured: transformer many max 0.0121, river/garden max 0.0147/0.0154, cat min 0.1429;
    # lstm many max 0.0115, river/garden max 0.0157/0.0241, cat min 0.0713)
    "transformer_states_one": 0.521, "transformer_states_many": 0.009, "transformer_states_many_max": 0.013,
    "lstm_states_one": 0.502, "lstm_states_many": 0.0089, "lstm_states_many_max": 0.012,
    "transformer_river_median": 0.0107, "transformer_garden_median": 0.0105, "transformer_still_max": 0.02,
    "transformer_cat_median": 0.1893, "transformer_cat_min": 0.14,
    "lstm_river_median": 0.0136, "lstm_garden_median": 0.0192, "lstm_still_max": 0.025,
    "lstm_cat_median": 0.171, "lstm_cat_min": 0.07,
    "pronoun_accuracy": 1.0,
    # translator, "it": attention of the best encoder head, and activation patching on IT_PATCH_PAIRS held-out pairs
    "it_head_top": 0.6667, "it_food_share": 0.6667, "it_food_or_last_word": 0.9318,
    "it_head_patch_median": 0.033, "it_head_patch_min": 0.0269, "it_head_patch_max": 0.041,
    "it_head_patch_strongest": 1.0, "it_patch_last_word": 0.9583, "it_patch_it": 0.0036,
    "it_cross_median": 0.0784, "it_cross_min": 0.0514, "it_cross_max": 0.2886, "it_cross_strongest": 0.6,
}
# translator: exact match on each held-out combination of grammar features (corpora.HELDOUT_COMBINATIONS), 200 each
COMBINATION_FIGURES: dict[str, float] = {
    "fronted place + because": 1.0, "three adjectives + place": 1.0, "and-subject + because": 0.995,
    "with-subject + fronted place": 0.99, "two places + because": 1.0, "pronoun subject + and-object": 0.99,
    "with-subject + sat": 0.955, "and-subject + progressive": 1.0,
}
MASK_FIGURES = {"agreement_masked": 1.0, "agreement_unmasked": 0.5733, "ce_masked": 1.6368, "ce_unmasked": 2.3468}
AGREE_FIGURES = {"attn_out_min": 0.9435, "head_median": 0.5464, "head_min": 0.4219, "head_max": 0.9643}
AGREE_HEAD = (3, 1)                      # transformer-lm (layer, head), 1-based: found by patching, not trained
IT_PATCH_PAIRS = 20                      # held-out opposite-gender pairs the patching figures are measured on
MIN_ENTROPY = 1.0                       # nats: a real choice point
FAMILY = 24                             # generated variants each LM lesson's check runs over (issue 20: at least 20)
FAMILY_SEED = 2027                      # the seed of the generated agreement families
MIN_MARGIN = 3.0                        # nats (20 times as likely): log P(right verb) - log P(wrong verb), every variant


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


@torch.inference_mode()
def next_probs(m, texts: list[str]) -> list[torch.Tensor]:
    """The next-word distribution after each text, as `m.run(text)` gives it, in one batch per token length."""
    toks = [m.tokenize(t) for t in texts]
    out: list = [None] * len(texts)
    by_len: dict[int, list[int]] = {}
    for i, t in enumerate(toks):
        by_len.setdefault(len(t.ids), []).append(i)
    for idx in by_len.values():
        ids = torch.tensor([toks[i].ids for i in idx], dtype=torch.long, device=m.device)
        probs = m.module(ids).logits[:, -1].float().softmax(-1).cpu()
        for j, i in enumerate(idx):
            out[i] = probs[j]
    return out


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


FAMILY_FOODS = ("honey", "soup")
INSERTS = {"": "", "garden": " in the garden", "river": " near the river", "cat": " with the cat"}


def eater_texts(plural: bool, insert: str = "", end: str = "") -> list[str]:
    """'the bear(s)<insert> ate the honey because it was<end>' for every animal of the grammar and two foods
    (26 texts): the family the number lessons are checked on."""
    from .corpora import ANIMALS

    return [f"the {a[int(plural)]}{insert} ate the {food} because it was{end}" for a in ANIMALS for food in FAMILY_FOODS]


def eater_family(m, plural: bool, insert: str = "") -> np.ndarray:
    """P(animal words: hungry, tired, ...) after each text of `eater_texts` the model knows every word of."""
    from .corpora import STATES

    texts = [t for t in eater_texts(plural, insert) if not m.tokenize(t).unknown]
    return np.array([_p(m, p, STATES) for p in next_probs(m, texts)])


def number_shift_family(m) -> dict[str, np.ndarray]:
    """P(animal words) after "the <animals><insert> ate the <food> because it was", for every plural animal and two
    foods, with nothing, "in the garden", "near the river" or "with the cat" between the eater and the verb."""
    return {key: eater_family(m, True, ins) for key, ins in INSERTS.items()}


def agreement_family(m, form: str = "plain", n: int = FAMILY, seed: int = FAMILY_SEED) -> list[dict]:
    """n generated agreement items (corpora.agreement_items) where the noun right before the verb has the other
    number than the verb needs: form "plain" ("the lamp to the old boxes"), "and" ("the cat and the dog": plural verb,
    singular last noun), "with" ("the dog with the cats": one "with" phrase, its noun of the other number)."""
    from . import corpora

    if form == "and":
        pool = corpora.coordination_items(4 * n, seed=seed)
    elif form == "with":
        pool = [it for it in corpora.with_items(6 * n, seed=seed)
                if len(it["prefix"].split()[it["prefix"].split().index("with"):]) <= 5
                and "that" not in it["prefix"].split()[it["prefix"].split().index("with"):]]
    else:
        pool = corpora.agreement_items(4 * n, seed=seed)
    return [it for it in pool if it["attractor"] and not m.tokenize(it["prefix"]).unknown][:n]


def agreement_margins(m, items: list[dict]) -> np.ndarray:
    """log P(right verb) - log P(wrong verb) after each prefix, in nats (> 0: the right form is more likely)."""
    v = list(m.vocab)
    probs = next_probs(m, [it["prefix"] for it in items])
    return np.array([float(p[v.index(it["correct"])].log() - p[v.index(it["wrong"])].log()) for p, it in zip(probs, items)])


VERB_FORMS = {0: ("is", "was"), 1: ("are", "were")}


def number_and_tense(m, items: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Over the four forms is / are / was / were after each prefix: the share of the right number, the share of the
    less likely tense within the right number (0.5 = a coin toss), and the total probability of the four forms."""
    number, tense, verb = [], [], []
    for it, p in zip(items, next_probs(m, [it["prefix"] for it in items])):
        right = VERB_FORMS[int(it["correct"] in VERB_FORMS[1])]
        pr = np.array([_p(m, p, [w]) for w in right])
        pw = _p(m, p, VERB_FORMS[int(it["correct"] not in VERB_FORMS[1])])
        number.append(pr.sum() / (pr.sum() + pw))
        tense.append(pr.min() / pr.sum())
        verb.append(pr.sum() + pw)
    return np.array(number), np.array(tense), np.array(verb)


def choice_texts() -> list[str]:
    """'the bear ate the', 'the fox liked the', ...: every animal of the grammar with two eating and two seeing verbs
    (52 texts), the family the choice-point lesson is checked on."""
    from .corpora import ANIMALS

    return [f"the {a[0]} {v} the" for a in ANIMALS for v in ("ate", "liked", "saw", "chased")]


def family_texts() -> list[str]:
    """Every fixed text of the language-model lessons' families (the agreement families are generated items)."""
    eaters = [t for plural in (False, True) for ins in INSERTS.values() for t in eater_texts(plural, ins)]
    return eaters + choice_texts() + [t for pair in causal_pairs() for t in pair]


def causal_pairs() -> list[tuple[str, str]]:
    """24 pairs 'the <animal> ate the <food> because it was hungry' / '... delicious': they differ only after 'it'."""
    from .corpora import ANIMALS, FOODS

    pairs = [(f"the {a[0]} ate the {f} because it was hungry", f"the {a[0]} ate the {f} because it was delicious")
             for a in ANIMALS for f in FOODS[:2]]
    return pairs[:FAMILY]


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
    ok = ok and pat["it_cross_max"] < 0.5 and pat["it_head_patch_max"] < 0.1 and pat["it_patch_last_word"] > 0.9
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
    """Over the plural eater family: with nothing or a place in between ("near the river", "in the garden") animal
    words stay below the stated bound in every text; with "with the cat" (a singular animal in between) they rise above the
    stated lower bound in every text; the stated medians hold."""
    fam = number_shift_family(m)
    key = "lstm" if isinstance(m, Recurrent) else "transformer"
    med = {k: float(np.median(v)) for k, v in fam.items()}
    ok = len(fam[""]) >= 20 and all(len(v) == len(fam[""]) for v in fam.values())
    ok = ok and max(float(fam[k].max()) for k in ("", "river", "garden")) <= FIGURES[f"{key}_still_max"]
    ok = ok and float(fam["cat"].min()) >= FIGURES[f"{key}_cat_min"]
    ok = ok and all(_same(FIGURES[f"{key}_{k}_median"], med[k], 0.005) for k in ("river", "garden", "cat"))
    return ok, (f"P(animal words) after 'the <animals>... ate the <food> because it was', median over {len(fam[''])} "
                "texts: " + ", ".join(f"{k or 'nothing'} {v:.3f}" for k, v in med.items())
                + "; max: " + ", ".join(f"{k or 'nothing'} {float(v.max()):.3f}" for k, v in fam.items())
                + f"; with the cat min {float(fam['cat'].min()):.3f}")


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


@torch.inference_mode()
def causal_family_differences(m, pairs: list[tuple[str, str]]) -> list[float]:
    """causal_it_difference for each pair (texts of one token length), in one traced batch."""
    toks = [m.tokenize(t) for pair in pairs for t in pair]
    ids = torch.tensor([t.ids for t in toks], dtype=torch.long, device=m.device)
    att = m.module(ids, trace=True).trace.attention["self"]
    out = []
    for k in range(len(pairs)):
        i = toks[2 * k].tokens.index("it")
        assert toks[2 * k + 1].tokens[: i + 1] == toks[2 * k].tokens[: i + 1]
        out.append(max(float((a.weights[2 * k, :, i, : i + 1] - a.weights[2 * k + 1, :, i, : i + 1]).abs().max())
                       for a in att))
    return out


def _check_causal(m) -> tuple[bool, str]:
    diffs = causal_family_differences(m, causal_pairs())
    return len(diffs) >= 20 and max(diffs) < 1e-6, (
        f"largest difference between the attention rows of 'it' in {len(diffs)} pairs (hungry / delicious): "
        f"{max(diffs):.2e}")


def _check_number(m) -> tuple[bool, str]:
    """Over the eater family: with one animal, animal words keep a large share; with several, 'it' can only be the
    food, in every text (the margin: the largest plural figure, and the smallest ratio singular / plural)."""
    key = "lstm" if isinstance(m, Recurrent) else "transformer"
    one, many = eater_family(m, False), eater_family(m, True)
    ratio = one / many
    ok = len(one) >= 20 and len(one) == len(many) and float(np.median(one)) > 0.2 and float(many.max()) < 0.05
    ok = ok and float(many.max()) <= FIGURES[f"{key}_states_many_max"] and float(ratio.min()) > 5
    ok = ok and _same(FIGURES[f"{key}_states_one"], float(np.median(one)), 0.005)
    ok = ok and _same(FIGURES[f"{key}_states_many"], float(np.median(many)), 0.0005)
    return ok, (f"P(animal words) over {len(one)} eater/food texts: one animal median {np.median(one):.3f} "
                f"(min {one.min():.3f}); several: median {np.median(many):.4f}, max {many.max():.4f}; "
                f"smallest ratio one / several in a pair {ratio.min():.1f}")


def _check_agreement_form(form: str, prefix: str, correct: str, wrong: str):
    """The lesson's own prefix and every item of the generated family (noun before the verb of the other number) put
    the right verb form ahead by at least MIN_MARGIN nats."""
    def check(m) -> tuple[bool, str]:
        items = [{"prefix": prefix, "correct": correct, "wrong": wrong}] + agreement_family(m, form)
        mg = agreement_margins(m, items)
        worst = items[int(mg.argmin())]
        return len(items) > FAMILY and float(mg.min()) >= MIN_MARGIN, (
            f"log P(right verb) - log P(wrong verb) on {prefix!r}: {mg[0]:.2f}; over it and {len(items) - 1} generated "
            f"subjects ({form}): min {mg.min():.2f}, "
            f"median {np.median(mg):.2f} nats; right form ahead in {int((mg > 0).sum())} of {len(items)}; "
            f"hardest: {worst['prefix']!r} -> {worst['correct']}")
    return check


def _check_choice(m) -> tuple[bool, str]:
    texts = [t for t in choice_texts() if not m.tokenize(t).unknown]
    h = np.array([float(-(p * p.clamp_min(1e-12).log()).sum()) for p in next_probs(m, texts)])
    top = _probs(m, CHOICE).topk(5)
    words = ", ".join(f"{m.vocab[i]} {float(p):.2f}" for p, i in zip(top.values, top.indices))
    return len(texts) >= 20 and float(h.min()) >= MIN_ENTROPY, (
        f"next-word entropy over {len(texts)} texts like {CHOICE!r}: min {h.min():.2f}, median {np.median(h):.2f} nats "
        f"(threshold {MIN_ENTROPY:g}); after {CHOICE!r}: {entropy(m, CHOICE):.2f} (top: {words})")


MIN_NUMBER_SHARE, MIN_TENSE_SHARE = 0.95, 0.15


def _check_compare(m) -> tuple[bool, str]:
    """Over the agreement family: the right number takes at least MIN_NUMBER_SHARE of is/are/was/were, and the
    less likely tense at least MIN_TENSE_SHARE of the right number's two forms."""
    items = agreement_family(m, "plain")
    number, tense, verb = number_and_tense(m, items)
    ok = len(items) >= 20 and float(number.min()) >= MIN_NUMBER_SHARE and float(tense.min()) >= MIN_TENSE_SHARE
    return ok, (f"over {len(items)} generated subjects with an attractor: share of the right number among "
                f"is/are/was/were min {number.min():.3f} (median {np.median(number):.3f}); share of the less likely "
                f"tense min {tense.min():.2f} (median {np.median(tense):.2f}); the four forms together median "
                f"{np.median(verb):.2f} (min {verb.min():.2f})")


def _check_known(texts: list[str]):
    def check(m) -> tuple[bool, str]:
        unknown = sorted({w for t in texts for w in m.tokenize(t).unknown})
        return not unknown, f"{len(texts)} sentences; unknown words: {unknown}"
    return check


EXAMPLES = ["the keys to the old cabinet are on the table", "the black cat ate the mouse", CLASSIC,
            "the cat sat on the mat", "he is reading a book"]
# the language models' lesson texts besides EXAMPLES (checked by vocabulary.examples.lm / .lstm)
LM_EXAMPLES = [CLASSIC_FOOD, CLASSIC_PREFIX, CLASSIC_PLURAL_PREFIX, AGREEMENT_PREFIX, CHOICE, COMPARE, AND_PREFIX,
               WITH_PREFIX, BREAK_AGREEMENT, "the cat and the dog are hungry", "the dog with the cats is hungry",
               "the key and the box were on the table", "the bears near the river ate the honey because it was",
               "the bears in the garden ate the honey because it was"]


def _build() -> list[Lesson]:
    F = FIGURES
    out = [
        Lesson("attention.translator_it", "translator-en-fr", ("attention", "translate", "patching"), TRANSLATE_IT_EATER,
               f"French needs to know what “it” refers to (il or elle). This translator was trained on translations "
               f"alone, and no encoder head learned to point from “it” to its referent: the closest, layer {IT_HEAD[0]}, "
               f"head {IT_HEAD[1]}, puts its largest weight on the referent in {_pct(F['it_head_top'])} of held-out "
               f"sentences (a head that always looked at the food would score {_pct(F['it_food_share'])}): it looks "
               f"at the food when “it” is the food, and at “hungry” or “tired” itself, not at the eater, when “it” is "
               f"the eater, in {_pct(F['it_food_or_last_word'])} of the sentences. Activation patching (page “Find "
               f"the cause”) shows where the answer travels instead, on {IT_PATCH_PAIRS} held-out pairs (“…hungry” "
               f"against “…hot”): at the input of the last encoder layer ({IT_PATCH_LAYER}) the position of “hungry” "
               f"still carries {_pct(F['it_patch_last_word'])} of the difference and “it” {_pct(F['it_patch_it'])} "
               f"(medians). The encoder leaves the deciding word where it is: that same head is the strongest encoder "
               f"head in {_pct(F['it_head_patch_strongest'])} of the pairs, yet it moves il/elle only "
               f"{_pct(F['it_head_patch_median'])} of the way (median, {_pct(F['it_head_patch_min'])}–"
               f"{_pct(F['it_head_patch_max'])}). The decoder reads “hungry” through several cross-attention heads at "
               f"once: the strongest, head {IT_CROSS_HEAD[1]} of decoder layer {IT_CROSS_HEAD[0]}, carries "
               f"{_pct(F['it_cross_median'])} alone ({_pct(F['it_cross_min'])}–{_pct(F['it_cross_max'])}). Where a "
               f"head looks from “it” is not what it does.",
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
               f"(“the lamp behind the cups with the black cabinets” against “the lamps behind …”), the last layer's attention "
               f"output at the last word carries at least {_pct(AGREE_FIGURES['attn_out_min'])} of the subject's "
               f"number, and layer {AGREE_HEAD[0]} head {AGREE_HEAD[1]} alone moves the verb "
               f"{_pct(AGREE_FIGURES['head_median'])} of the way (median, {_pct(AGREE_FIGURES['head_min'])}–"
               f"{_pct(AGREE_FIGURES['head_max'])}), the strongest head in every one. No extra loss trained it: "
               "it emerged, and the model uses it.",
               _check_agreement_head),
        Lesson("attention.causal_it", "transformer-lm", ("attention", "masks"), CLASSIC,
               "A decoder-only model reads left to right: at “it” it cannot see “hungry” or “delicious” yet. The "
               "causal mask guarantees this; it is not something the model learned. So the attention rows of “it” "
               f"are identical in “…because it was hungry” and “…because it was delicious”, in every layer and head "
               f"(checked on {FAMILY} pairs with other animals and foods). Only the translator's encoder, which sees "
               "the whole sentence, can use the last word to resolve “it”.",
               _check_causal, contrast=CLASSIC_FOOD),
        Lesson("sampling.number_shift", "transformer-lm", ("sampling", "attention"), CLASSIC_PREFIX,
               f"What comes after “because it was” depends on the eater's number. After “the bear ate the honey "
               f"because it was”, “it” may be the bear or the honey: animal words (hungry, tired, …) get "
               f"{_pct(F['transformer_states_one'])} of the probability. After “the bears ate the honey because it "
               f"was”, “it” can only be the honey: animal words get {_pct(F['transformer_states_many'])}, at most "
               f"{_pct(F['transformer_states_many_max'])}. Medians over 26 sentences: every animal of the corpus, "
               "with honey and with soup.",
               _check_number, contrast=CLASSIC_PLURAL_PREFIX),
        Lesson("lstm.number_shift", "lstm-lm", ("lstm",), CLASSIC_PREFIX,
               f"When the verb follows the eater directly, the LSTM learned the same: animal words get "
               f"{_pct(F['lstm_states_one'])} of the probability after “the bear ate the honey because it was” and "
               f"{_pct(F['lstm_states_many'])} (at most {_pct(F['lstm_states_many_max'])}) after “the bears ate the "
               "honey because it was” (medians over 26 sentences: every animal, with honey and with soup). The next "
               "lesson puts a phrase between the eater and the verb.",
               _check_number, contrast=CLASSIC_PLURAL_PREFIX),
        Lesson("lstm.number_holds", "lstm-lm", ("lstm",), "the bears near the river ate the honey because it was",
               "Its memory of the number survives a phrase in between: with “near the river” or “in the garden” "
               "between “the bears” and “ate” (a place never stands there in training), animal words get "
               f"{_pct(F['lstm_river_median'])} and {_pct(F['lstm_garden_median'])} (medians over 26 sentences, "
               f"never above {_pct(F['lstm_still_max'])}). With “with the cat” there they rise to "
               f"{_pct(F['lstm_cat_median'])} (median, at least {_pct(F['lstm_cat_min'])}): a singular animal is "
               "back in the sentence, so “it” could be the cat.",
               _check_number_family),
        Lesson("attention.number_family", "transformer-lm", ("attention",),
               "the bears near the river ate the honey because it was",
               "The number survives a phrase in between: with “near the river” or “in the garden” between “the bears” "
               f"and “ate”, animal words get {_pct(F['transformer_river_median'])} and "
               f"{_pct(F['transformer_garden_median'])} (medians over 26 sentences, every animal with honey and with "
               f"soup; never above {_pct(F['transformer_still_max'])}), as without the phrase. With “with the cat” "
               f"there they rise to {_pct(F['transformer_cat_median'])} (median, at least "
               f"{_pct(F['transformer_cat_min'])}): a singular animal is back, so “it” could be the cat.",
               _check_number_family),
    ]
    for name in ("transformer-lm", "lstm-lm"):
        kind = "lm" if name == "transformer-lm" else "lstm"
        out += [
            Lesson(f"attention.agreement.{kind}", name, ("attention", "lstm", "home"), AGREEMENT_PREFIX,
                   "The verb agrees with “keys”, not with the nearer “cabinet”: the model prefers “are” to “is”. The "
                   f"same holds on {FAMILY} generated subjects whose last noun has the other number (“the lamp to the "
                   f"old boxes …”): the right form leads by at least {MIN_MARGIN:g} nats (20 times as likely) in every one.",
                   _check_agreement_form("plain", AGREEMENT_PREFIX, "are", "is")),
            Lesson(f"agreement.and.{kind}", name, ("attention", "lstm"), AND_PREFIX,
                   "“and” makes a plural subject: after “the cat and the dog” the model prefers “are” to “is”, though "
                   f"both nouns are singular. So it does on {FAMILY} generated coordinated subjects whose last noun is "
                   f"singular (“the key and the box”, “the cats and the dog near the door”): the plural verb leads by "
                   f"at least {MIN_MARGIN:g} nats (20 times as likely) in every one.",
                   _check_agreement_form("and", AND_PREFIX, "are", "is")),
            Lesson(f"agreement.with.{kind}", name, ("attention", "lstm"), WITH_PREFIX,
                   "“with” adds a noun, not a subject: after “the dog with the cats” the model prefers “is” to “are”. "
                   f"So it does on {FAMILY} generated subjects with a “with” phrase whose noun has the other number "
                   f"(“the boxes with the key”): the verb agrees with the head noun by at least {MIN_MARGIN:g} nats in "
                   "every one.",
                   _check_agreement_form("with", WITH_PREFIX, "is", "are")),
            Lesson(f"sampling.choice_point.{kind}", name, ("sampling",), CHOICE,
                   f"“{CHOICE}” is a choice point: after it, and after each of 52 texts like it (“the fox liked the”, "
                   f"“the cow saw the”), many words can come next (entropy at least {MIN_ENTROPY:g} nat), so "
                   "temperature, top-k and top-p change what is drawn.", _check_choice),
            Lesson(f"lstm.compare.{kind}", name, ("lstm",), COMPARE,
                   f"After a subject such as “{COMPARE}” the model is sure of the verb's number but not of its "
                   f"tense: on {FAMILY} generated subjects whose last noun has the other number, the right number "
                   f"takes at least {_pct(MIN_NUMBER_SHARE)} of is/are/was/were, and the less likely tense still at "
                   f"least {_pct(MIN_TENSE_SHARE)} of it, as the training sentences toss a coin between present and "
                   "past. Compare how the two models split it.", _check_compare),
            Lesson(f"vocabulary.examples.{kind}", name, ("home",), CLASSIC,
                   "Every example sentence of the README and the sidebar, every sentence a lesson opens on and every "
                   "sentence of the lessons' families uses only words this model knows.",
                   _check_known(EXAMPLES + LM_EXAMPLES + family_texts())),
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
                      + (f"for {len(good)} of them, but not for " + ", ".join(f"{k} ({100 * v:.1f}%)" for v, k in weak)
                         if weak else f"for every one ({100 * min(COMBINATION_FIGURES.values()):.1f}% at worst)")
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
