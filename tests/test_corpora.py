"""The built-in corpora and tokenizer: deterministic, holding the phenomena the pages teach."""
import math
from collections import defaultdict

import pytest

from model.teaching import corpora as C
from model.nets.tokenizer import SPECIALS, WordTokenizer, build_word_tokenizer

pytestmark = pytest.mark.unit

_MEMO: dict = {}


def _once(fn, *args, **kwargs):
    """fn(*args, **kwargs), computed once for this module: several tests read the same generated corpus (1-3 CPU-s
    for 40,000 sentences or pairs). They only read it; determinism itself is checked by calling the generators
    directly (test_deterministic_from_seed)."""
    key = (fn.__name__, args, tuple(sorted(kwargs.items())))
    if key not in _MEMO:
        _MEMO[key] = fn(*args, **kwargs)
    return _MEMO[key]


def test_deterministic_from_seed():
    assert C.english_sentences(200, seed=5) == C.english_sentences(200, seed=5)
    assert C.english_sentences(200, seed=5) != C.english_sentences(200, seed=6)
    assert C.parallel_pairs(100, seed=1) == C.parallel_pairs(100, seed=1)


def test_phenomena_present():
    s = C.english_sentences(5000, seed=0)
    text = "\n".join(s)
    assert "because it was hungry ." in text and "because it was delicious ." in text
    assert "because they were" in text
    assert any(" keys to the " in f" {x}" for x in s)          # the README's agreement example, as a structure
    assert "the bank of the river ." in text and "the money in the bank ." in text
    assert "with the bat ." in text and "the bat flew out of the cave ." in text
    # many different words follow "the": a real choice point for sampling
    after_the = {x.split()[i + 1] for x in s for i, w in enumerate(x.split()[:-1]) if w == "the"}
    assert len(after_the) > 50
    items = C.agreement_items(300, seed=0)
    assert sum(i["attractor"] for i in items) > 150
    assert {i["correct"] for i in items} == {"is", "are", "was", "were"}
    assert all(i["correct"] != i["wrong"] for i in items)


EXAMPLES = ("the bear ate the honey because it was hungry", "the keys to the old cabinet are on the table",
            "the black cat ate the mouse", "the cat sat on the mat", "he is reading a book",
            "the bear ate the honey because it was delicious", "the black cat", "the small black cat",
            "the cat ate the soup because it was hungry", "the cat ate the soup because it was hot")


def test_example_sentences_are_in_both_vocabularies():
    tok = WordTokenizer(build_word_tokenizer(C.english_sentences(5000)))
    src = WordTokenizer(build_word_tokenizer([e for e, _ in C.parallel_pairs(5000)]))
    for text in EXAMPLES:
        assert tok.encode(text).unknown == [], text
        assert src.encode(text).unknown == [], text


def test_lesson_structures_are_in_the_english_corpus():
    s = _once(C.english_sentences, 20000, seed=0)
    text = "\n".join(s)
    for phrase in ("the cat sat on the mat .", "he is reading a book .", "because she was", " an old ", " a small ",
                   "they are ", "the black cat .", " that the ", "in the morning , the ", " and the ", " with the "):
        assert phrase in text, phrase
    starts = [x.split()[0] for x in s]
    assert {"he", "she", "they", "a", "an"} <= set(starts)
    # two size adjectives before a noun, and two attractor phrases
    assert any(f"the {a} {b} " in text for a in C.ADJ_SIZE for b in C.ADJ_SIZE if a != b)


def test_plural_eater_leaves_only_the_food_for_it():
    """After 'the <plural> ate the <food> because it was', the grammar only allows food words;
    after a singular eater it allows both: the number shift the sampling lesson measures."""
    s = _once(C.english_sentences, 40000, seed=0)
    after_sg, after_pl = set(), set()
    for x in s:
        w = x.split()
        if "because" in w and w[w.index("because") + 1: w.index("because") + 3] == ["it", "was"]:
            eater = w[w.index("because") - 4]
            nouns = {n for pair in C.ANIMALS for n in pair}
            if eater in {p for _, p in C.ANIMALS}:
                after_pl.add(w[w.index("because") + 3])
            elif eater in nouns:
                after_sg.add(w[w.index("because") + 3])
    assert after_pl and after_pl <= set(C.FOOD_PROPS)
    assert set(C.STATES) <= after_sg and set(C.FOOD_PROPS) & after_sg


def test_logprob_is_the_unique_derivation_probability():
    samples = C.english_sentences_with_logprob(20000, seed=3)
    seen = defaultdict(set)
    for s, lp in samples:
        assert lp <= 0
        seen[s].add(round(lp, 9))
    assert all(len(v) == 1 for v in seen.values())       # one derivation per sentence: same string, same logp
    h = C.grammar_entropy_per_token(3000, seed=1)
    assert 0.5 < h < 3.0 and math.isfinite(h)


BE = {"is": 0, "was": 0, "are": 1, "were": 1}
NOUN_NUMBER = {w: k for pair in C.ANIMALS + C.PEOPLE + C.OBJECTS for k, w in enumerate(pair)}


def _subject_and_verb(sentence: str) -> tuple[list[str], int]:
    """The words before the first is/are/was/were (after a fronted place's comma) and that verb's number."""
    w = sentence.split()
    if "," in w:
        w = w[w.index(",") + 1:]
    i = next(k for k, x in enumerate(w) if x in BE)
    return w[:i], BE[w[i]]


def test_and_subjects_always_take_a_plural_verb():
    s = _once(C.english_sentences, 20000, seed=0)
    coordinated = [x for x in s if " and " in x]
    assert len(coordinated) > 800                                   # about 6% of all sentences (measured 6.3%)
    both_singular = 0
    for x in coordinated:
        subject, num = _subject_and_verb(x)
        assert num == 1, x
        k = subject.index("and")
        first = [w for w in subject[:k] if w in NOUN_NUMBER][-1]
        second = next(w for w in subject[k:] if w in NOUN_NUMBER)
        both_singular += NOUN_NUMBER[first] == 0 and NOUN_NUMBER[second] == 0
    assert both_singular > 150                                      # "the key and the box were ...": the hard case
    items = C.coordination_items(300, seed=1)
    assert all(i["correct"] in ("are", "were") and i["wrong"] in ("is", "was") for i in items)
    # the attractor case: the noun right before the verb is singular
    for i in items:
        last = [w for w in i["prefix"].split() if w in NOUN_NUMBER][-1]
        assert NOUN_NUMBER[last] == (0 if i["attractor"] else 1), i
    assert 150 < sum(i["attractor"] for i in items) < 250


def test_with_never_changes_the_verbs_number():
    s = [x for x in _once(C.english_sentences, 20000, seed=0) if " with " in x and "with the bat" not in x]
    assert len(s) > 600                                             # "with" phrases: about 5% of all sentences
    opposite = 0
    for x in s:
        subject, num = _subject_and_verb(x)
        nouns = [w for w in subject if w in NOUN_NUMBER]
        assert NOUN_NUMBER[nouns[0]] == num or "and" in subject, x    # the head noun decides (or "and": plural)
        after_with = [w for w in subject[subject.index("with"):] if w in NOUN_NUMBER]
        opposite += NOUN_NUMBER[after_with[0]] != num
    assert opposite > 200                                           # the noun after "with" often has the other number
    items = C.with_items(300, seed=2)
    for i in items:
        head = next(w for w in i["prefix"].split(", ")[-1].split() if w in NOUN_NUMBER)
        assert BE[i["correct"]] == NOUN_NUMBER[head] and "with" in i["prefix"].split(), i


def test_and_and_with_items_are_deterministic():
    assert C.coordination_items(50, seed=4) == C.coordination_items(50, seed=4)
    assert C.with_items(50, seed=4) == C.with_items(50, seed=4)
    assert C.coordination_items(50, seed=4) != C.coordination_items(50, seed=5)


@pytest.mark.slow                                  # 4-5 s: many generated pairs
def test_french_word_order_and_agreement():
    pairs = dict(C.parallel_pairs(40000, seed=0))
    cat = {e: f for e, f in pairs.items() if e.startswith("the black cat ate the ")}
    assert cat and all(f.startswith("le chat noir a mangé ") for f in cat.values())
    assert pairs["the black cat"] == "le chat noir"
    fr = "\n".join(pairs.values())
    for phrase in ("la souris noire", "les chats noirs", "le petit chat", "ont mangé"):
        assert phrase in fr, phrase
    assert all(len(e.split()) + 1 <= 32 and len(f.split()) + 2 <= 32 for e, f in pairs.items())  # max_len 32 with [BOS]/[EOS]
    many = defaultdict(set)
    for e, f in C.parallel_pairs(30000, seed=2):
        many[e].add(f)
    assert all(len(v) == 1 for v in many.values())        # one translation per English sentence


@pytest.mark.slow                                  # 4-5 s: many generated pairs
def test_french_it_follows_the_referent_gender_and_elides():
    pairs = dict(C.parallel_pairs(80000, seed=0))                  # the translator's training set size
    assert pairs["the cat ate the soup because it was hungry"] == "le chat a mangé la soupe parce qu'il avait faim"
    assert pairs["the cat ate the soup because it was hot"] == "le chat a mangé la soupe parce qu'elle était chaude"
    assert pairs["he is reading a book"] == "il lit un livre"
    assert pairs["the cat sat on the mat"] == "le chat s'est assis sur le tapis"
    fr = "\n".join(pairs.values())
    for phrase in ("le petit chat noir", "qu'elles étaient fatiguées", "qu'ils avaient faim", "l'ours", "fraîche",
                   "délicieuse", "sucrée",
                   "un vieil ours", "des ", "une "):
        assert phrase in fr, phrase
    assert " le ours" not in fr and " la armoire" not in fr and "que il" not in fr and " de le " not in fr
    eaters = {e[0] for e in C.FR_EATERS}
    foods = {f[0] for f in C.FR_FOODS}
    assert {"cat", "dog", "wolf", "duck", "horse", "mouse", "cow", "goat", "bear"} <= eaters
    assert {"apple", "pear", "soup", "pie", "cake", "cheese", "bread", "fish", "honey"} <= foods


def test_french_tokenizer_keeps_elisions_whole():
    from model.training.train import build_french_tokenizer

    tok = WordTokenizer(build_french_tokenizer([f for _, f in C.parallel_pairs(3000)]))
    enc = tok.encode("l'ours a mangé le miel parce qu'il avait faim")
    assert enc.unknown == [] and enc.tokens == ["l'ours", "a", "mangé", "le", "miel", "parce", "qu'il", "avait", "faim"]
    assert tok.decode(enc.ids) == "l'ours a mangé le miel parce qu'il avait faim"
    assert tok.encode("parce qu’elle").tokens == ["parce", "qu'elle"]


@pytest.mark.slow                                  # 2-3 s: the whole training set
def test_heldout_pronoun_pairs_never_meet_in_training():
    train, _ = _once(C.translation_datasets, 40000, 1000, 0)
    held = C.PRONOUN_HELDOUT_PAIRS
    assert len(held) >= 20
    genders = {(e[4], f[4]) for e in C.FR_EATERS for f in C.FR_FOODS if (e[0], f[0]) in held}
    assert genders == {("m", "m"), ("m", "f"), ("f", "m"), ("f", "f")}
    seen = set()
    singular = {a[0]: a[0] for a in C.FR_EATERS} | {a[1]: a[0] for a in C.FR_EATERS}
    for e, _ in train:
        w = e.split()
        if "because" in w:                  # every eater (one, or two joined by "and") with the food
            v = next(i for i, x in enumerate(w) if x in ("ate", "liked"))
            food = next(x for x in w[v:] if x in {f[0] for f in C.FR_FOODS})
            seen |= {(singular[x], food) for x in w[:v] if x in singular}
    assert len(seen) > 50 and not seen & held
    items = C.pronoun_heldout_pairs()
    assert sum(i["opposite_gender"] for _, _, i in items) >= 100
    assert {i["pronoun"] for _, _, i in items} == {"qu'il", "qu'elle"}


@pytest.mark.slow                                  # generates whole corpora
def test_probes_are_never_in_training_data():
    from model.teaching import probes

    prefixes = probes.agreement_probe_prefixes()
    assert len(prefixes) >= 40 and len(probes.TRANSLATION_PROBES) >= 30
    raw = _once(C.english_sentences, 40000, seed=0)
    train, _ = _once(C.lm_datasets, 40000, 2000, 0)
    assert not [s for s in train if s.startswith(tuple(prefixes))]
    assert len(train) >= len(raw) - 200                                 # the filter drops only a handful
    ptrain, _ = _once(C.translation_datasets, 40000, 1000, 0)
    assert not {e for e, _ in ptrain} & set(probes.translation_probe_sources())


@pytest.mark.slow                                  # generates whole corpora
def test_probe_words_are_known_and_french_is_consistent():
    from model.teaching import probes
    from model.training.train import build_french_tokenizer

    # the same 40,000-sentence corpora as the test above (generated once per module)
    tok = WordTokenizer(build_word_tokenizer(_once(C.lm_datasets, 40000, 2000, 0)[0]))
    for p, c, w, _ in probes.AGREEMENT_PROBES:
        assert tok.encode(f"{p} {c} {w}").unknown == [], p
        assert {c, w} in ({"is", "are"}, {"was", "were"})
    ptrain = _once(C.translation_datasets, 40000, 1000, 0)[0]
    src = WordTokenizer(build_word_tokenizer([e for e, _ in ptrain]))
    tgt = WordTokenizer(build_french_tokenizer([f for _, f in ptrain]))
    for e, f, _ in probes.TRANSLATION_PROBES:
        assert src.encode(e).unknown == [] and tgt.encode(f).unknown == [], e


def test_held_out_is_disjoint_from_train():
    tr, he = C.lm_datasets(3000, 300, seed=0)
    assert len(he) == 300 and not set(he) & set(tr)
    ptr, phe = C.translation_datasets(3000, 300, seed=0)
    assert len(phe) == 300 and not {e for e, _ in phe} & {e for e, _ in ptr}


def test_tokenizer(tmp_path):
    tok = WordTokenizer(build_word_tokenizer(C.english_sentences(2000)))
    assert tok.vocab[:4] == SPECIALS and (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)
    enc = tok.encode("The bear ate the zebra.", add_bos=True, add_eos=True)
    assert enc.tokens == ["[BOS]", "the", "bear", "ate", "the", "[UNK]", ".", "[EOS]"]
    assert enc.unknown == ["zebra"] and enc.words[5] == "zebra"
    assert tok.decode(enc.ids) == "the bear ate the ."
    tok.save(str(tmp_path / "t.json"))
    again = WordTokenizer.from_file(str(tmp_path / "t.json"))
    assert again.vocab == tok.vocab and again.encode("the bear").ids == tok.encode("the bear").ids
    assert WordTokenizer(build_word_tokenizer(C.english_sentences(2000))).vocab == tok.vocab   # deterministic ids


# Words the built-in models knew before the lesson corpora (kept: old links and texts keep working).
OLD_LM_WORDS = '. angry apple are asleep at ate bag ball bank bark bat bear bears because bed began behind beside big bird birds black boat book books box boxes boy boys bread bright broken brown cabinet cabinets cake cat cats cave chair chairs chased cheese child children cup cups delicious dog dogs door doors duck ducks dusty empty farmer farmers fish flew followed for found fox foxes fresh from garden girl girls grey happy heavy hit honey horse horses hungry in is it key keys kitchen lamp lamps left light liked little man meat men mice money morning mouse near new night of old on open out pie porridge put rabbit rabbits reached red river rough salty saw scared sleepy slept small smelled soup sweet table tables tasty that the they tired to took tree under wanted warm was watched were white window windows with wolf wolves woman women young'.split()
OLD_SRC_WORDS = 'apple apples ate ball balls big black book books box boxes boy boys brown cake cakes cat cats chair chairs chased cheese cheeses cow cows dog dogs duck ducks found garden girl girls goat goats green grey horse horses house in like likes mice morning mouse near old on pear pears rabbit rabbits red saw see sees small soup soups table tables the watch watches white wolf wolves woman women young'.split()
OLD_TGT_WORDS = 'a aime aiment balle balles blanc blanche blanches blancs boîte boîtes brun brune brunes bruns canard canards chaise chaises chassé chat chats cheval chevaux chien chiens chèvre chèvres dans de femme femmes fille filles fromage fromages garçon garçons grand grande grandes grands gris grise grises gâteau gâteaux jardin jeune jeunes la lapin lapins le les livre livres loup loups maison mangé matin noir noire noires noirs ont petit petite petites petits poire poires pomme pommes près regarde regardent rouge rouges soupe soupes souris sur table tables trouvé vache vaches vert verte vertes verts vieille vieilles vieux voient voit vu'.split()


@pytest.mark.slow                                  # generates whole corpora
def test_every_word_known_before_is_still_known():
    from model.training.train import build_french_tokenizer

    lm = set(WordTokenizer(build_word_tokenizer(_once(C.lm_datasets, 40000, 10, 0)[0])).vocab)
    pairs = _once(C.translation_datasets, 40000, 10, 0)[0]
    src = set(WordTokenizer(build_word_tokenizer([e for e, _ in pairs])).vocab)
    tgt = set(WordTokenizer(build_french_tokenizer([f for _, f in pairs])).vocab)
    assert set(OLD_LM_WORDS) <= lm and set(OLD_SRC_WORDS) <= src and set(OLD_TGT_WORDS) <= tgt
