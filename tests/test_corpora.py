"""The built-in corpora and tokenizer: deterministic, holding the phenomena the pages teach."""
import math
from collections import defaultdict

from model import corpora as C
from model.tokenizer import SPECIALS, WordTokenizer, build_word_tokenizer


def test_deterministic_from_seed():
    assert C.english_sentences(200, seed=5) == C.english_sentences(200, seed=5)
    assert C.english_sentences(200, seed=5) != C.english_sentences(200, seed=6)
    assert C.parallel_pairs(100, seed=1) == C.parallel_pairs(100, seed=1)


def test_phenomena_present():
    s = C.english_sentences(5000, seed=0)
    text = "\n".join(s)
    assert "because it was hungry ." in text and "because it was delicious ." in text
    assert "because they were" in text
    assert any(x.startswith("the keys to the") for x in s)
    assert "the bank of the river ." in text and "the money in the bank ." in text
    assert "with the bat ." in text and "the bat flew out of the cave ." in text
    # many different words follow "the": a real choice point for sampling
    after_the = {x.split()[i + 1] for x in s for i, w in enumerate(x.split()[:-1]) if w == "the"}
    assert len(after_the) > 50
    items = C.agreement_items(300, seed=0)
    assert sum(i["attractor"] for i in items) > 150
    assert {i["correct"] for i in items} == {"is", "are", "was", "were"}
    assert all(i["correct"] != i["wrong"] for i in items)


def test_default_prompts_are_in_the_vocabulary():
    tok = WordTokenizer(build_word_tokenizer(C.english_sentences(5000)))
    for text in ("the bear ate the honey because it was hungry", "the keys to the old cabinet are on the table",
                 "the black cat ate the mouse"):
        assert tok.encode(text).unknown == []


def test_logprob_is_the_unique_derivation_probability():
    samples = C.english_sentences_with_logprob(20000, seed=3)
    seen = defaultdict(set)
    for s, lp in samples:
        assert lp <= 0
        seen[s].add(round(lp, 9))
    assert all(len(v) == 1 for v in seen.values())       # one derivation per sentence: same string, same logp
    h = C.grammar_entropy_per_token(3000, seed=1)
    assert 0.5 < h < 3.0 and math.isfinite(h)


def test_french_word_order_and_agreement():
    pairs = dict(C.parallel_pairs(40000, seed=0))
    assert pairs["the black cat ate the mouse"] == "le chat noir a mangé la souris"
    fr = "\n".join(pairs.values())
    for phrase in ("la souris noire", "les chats noirs", "le petit chat", "ont mangé"):
        assert phrase in fr, phrase
    assert all(len(e.split()) <= 12 and len(f.split()) <= 16 for e, f in pairs.items())
    many = defaultdict(set)
    for e, f in C.parallel_pairs(30000, seed=2):
        many[e].add(f)
    assert all(len(v) == 1 for v in many.values())        # one translation per English sentence


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
