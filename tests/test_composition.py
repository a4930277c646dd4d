"""The translator composes: whole combinations of grammar features that training never shows
(model.teaching.corpora.HELDOUT_COMBINATIONS) are translated exactly, and the seed examples stay right.

The training set is checked with a parser of the English surface (below), written apart from the
generator's own feature tags, so a bug in the tags cannot hide a held-out combination in training.
"""
import pytest

import model
from model.teaching import corpora as C
from model.teaching import lessons

_cache: dict = {}


def _translator():
    if "t" not in _cache:
        _cache["t"] = model.load("translator-en-fr", "cpu")
    return _cache["t"]


PLACES = sorted({p for p, _ in C.FR_PLACES + C.FR_SIT_PLACES + C.FR_LOCATIONS + C.FR_FRONTED}, key=len, reverse=True)
VERBS = {"ate", "liked", "saw", "chased", "found", "likes", "like", "sees", "see", "watches", "watch", "sat",
         "is", "are", "was", "were"}
ADJECTIVES = set(C.FR_PRE) | set(C.FR_POST)


def _place_at(words: list[str], i: int) -> str | None:
    return next((p for p in PLACES if words[i:i + len(p.split())] == p.split()), None)


def surface_features(english: str) -> set[str]:
    """The features of HELDOUT_COMBINATIONS, read from the English words alone."""
    w = english.split()
    feats = set()
    first = _place_at(w, 0)
    if first:
        feats.add("fronted")
        w = w[len(first.split()):]
    if "because" in w:
        feats.add("because")
        w = w[:w.index("because")]
    if any(all(x in ADJECTIVES for x in w[i:i + 3]) for i in range(len(w) - 2)):
        feats.add("adj3")
    v = next((i for i, x in enumerate(w) if x in VERBS), None)
    if v is None:
        feats.add("bare")
        return feats | ({"obj_and"} if "and" in w else set())
    subj, rest = w[:v], w[v + 1:]
    if subj == [w[0]] and w[0] in ("he", "she", "they"):
        feats.add("subj_pronoun")
    feats |= {"subj_and"} if "and" in subj else set()
    feats |= {"subj_with"} if "with" in subj else set()
    if w[v] == "sat":
        feats.add("sit")
    elif w[v] in ("is", "are", "was", "were"):
        feats.add("progressive" if rest and rest[0].endswith("ing") else "location")
    places, i = 0, 0
    while i < len(rest):
        p = _place_at(rest, i)
        places, i = (places + 1, i + len(p.split())) if p else (places, i + 1)
    places -= 1 if feats & {"sit", "location"} else 0         # "sat on the mat", "is in the kitchen": the complement
    feats |= {"place"} if places >= 1 else set()
    feats |= {"places2"} if places >= 2 else set()
    obj = rest[:next((i for i in range(len(rest)) if _place_at(rest, i)), len(rest))]
    feats |= {"obj_and"} if "and" in obj else set()
    return feats


def _held_in(feats: set[str]) -> list[str]:
    return [name for name, (fs, _) in C.HELDOUT_COMBINATIONS.items() if fs <= feats]


@pytest.mark.unit
def test_surface_parser_finds_each_heldout_combination_in_its_test_sentences():
    assert 6 <= len(C.HELDOUT_COMBINATIONS) <= 10
    for name in C.HELDOUT_COMBINATIONS:
        pairs = C.heldout_combination_pairs(name, 200)
        assert len(pairs) == 200 and len({e for e, _ in pairs}) == 200, name
        assert all(_held_in(surface_features(e)) == [name] for e, _ in pairs), name


@pytest.mark.unit
def test_heldout_combination_sentences_are_deterministic_and_correct_french():
    a = C.heldout_combination_pairs("and-subject + because", 50)
    assert a == C.heldout_combination_pairs("and-subject + because", 50)
    pairs = dict(p for name in C.HELDOUT_COMBINATIONS for p in C.heldout_combination_pairs(name, 200))
    fr = "\n".join(pairs.values())
    assert " le ours" not in fr and " la armoire" not in fr and "que il" not in fr and " de le " not in fr
    for phrase in (" et ", " avec ", "parce qu'elles", "parce qu'ils", "se sont assis", "le matin ", "la nuit "):
        assert phrase in fr, phrase


@pytest.mark.slow                                  # generates the whole training set (80,000 pairs)
@pytest.mark.unit
def test_training_set_never_has_a_heldout_combination_but_has_each_part():
    from model.training.train import RECIPES

    d = RECIPES["translator-en-fr"]["data"]
    train, held = C.translation_datasets(d["n_train"], d["n_heldout"], d["seed"])
    counts: dict[str, int] = {}
    for e, _ in train + held:
        feats = surface_features(e)
        assert not _held_in(feats), (e, _held_in(feats))
        for f in feats:
            counts[f] = counts.get(f, 0) + 1
    for name, (fs, _) in C.HELDOUT_COMBINATIONS.items():
        assert all(counts.get(f, 0) >= 500 for f in fs), (name, {f: counts.get(f, 0) for f in fs})


@pytest.mark.unit
def test_training_grammar_combines_places_with_because_and_agrees_with_coordinated_subjects():
    pairs = dict(C.parallel_pairs(20000, seed=0))
    fr = "\n".join(pairs.values())
    because_place = [e for e in pairs if "because" in e and "in the garden" in e]
    assert because_place and all("dans le jardin parce" in pairs[e] for e in because_place)
    feminine = {x[0] for x in C.FR_ANIMATE if x[4] == "f"} | {x[1] for x in C.FR_ANIMATE if x[4] == "f"}
    both_f = [e for e in pairs if e.endswith("sat on the mat") and " and " in e and " with " not in e
              and {e.split()[e.split().index("and") - 1], e.split()[e.split().index("sat") - 1]} <= feminine]
    assert both_f and all(pairs[e].endswith("se sont assises sur le tapis") for e in both_f)
    for phrase in ("grande vieille", "le vieil ours", " et ", " avec "):
        assert phrase in fr, phrase
    two_eat = [e for e in pairs if " and " in e.split(" ate ")[0] and " ate " in e]
    assert two_eat and all(" ont mangé " in pairs[e] for e in two_eat)


def _combination_params():
    """Every held-out combination; those whose measured figure (lessons.COMBINATION_FIGURES, checked by the
    translate.compose lesson) is under the 95% goal are strict xfails that name the figure."""
    out = []
    for name in C.HELDOUT_COMBINATIONS:
        got = lessons.COMBINATION_FIGURES[name]
        marks = [pytest.mark.xfail(strict=True, reason=f"goal not reached: {100 * got:.1f}% on the shipped checkpoint")
                 ] if got < 0.95 else []
        out.append(pytest.param(name, marks=marks, id=name))
    return out


@pytest.mark.slow                                  # 200 greedy translations each
@pytest.mark.unit
@pytest.mark.parametrize("name", _combination_params())
def test_shipped_translator_translates_heldout_combination_exactly_95_percent(name):
    from model.training.evaluate import greedy_translate_batch

    pairs = C.heldout_combination_pairs(name, 200)
    hyp = greedy_translate_batch(_translator(), [e for e, _ in pairs])
    wrong = [(e, f, h) for (e, f), h in zip(pairs, hyp) if h.split() != f.split()]
    assert len(wrong) <= 0.05 * len(pairs), (name, len(wrong), wrong[:5])


@pytest.mark.slow                                  # ~11 s; the translate.exact.* lessons check them in the fast loop
@pytest.mark.unit
def test_shipped_translator_translates_seed_examples_exactly():
    t = _translator()
    for en, fr in lessons.EXACT_TRANSLATIONS.items():
        assert t.translate(en, greedy=True) == fr, en


@pytest.mark.slow                                  # 264 greedy translations
@pytest.mark.unit
def test_shipped_translator_resolves_it_on_heldout_pronoun_pairs_95_percent():
    from model.training.evaluate import pronoun_accuracy

    acc = pronoun_accuracy(_translator())
    assert acc["pronoun_accuracy"] >= 0.95 and acc["pronoun_exact_match"] >= 0.95, acc
