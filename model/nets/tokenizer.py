"""Word-level tokenizers for the built-in corpora, built with the Hugging Face `tokenizers` library.

One token per word; "." and "," are tokens of their own; text is lower-cased. Special tokens
have fixed ids: [PAD]=0, [UNK]=1, [BOS]=2, [EOS]=3. A word the vocabulary lacks becomes [UNK],
and `Encoded.unknown` lists it so a page can say so.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

SPECIALS = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]
PAD, UNK, BOS, EOS = SPECIALS


def build_word_tokenizer(texts: list[str]) -> Tokenizer:
    """Train a word-level tokenizer on `texts` (deterministic: same texts, same ids)."""
    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()           # words (accents kept) and punctuation apart
    tok.train_from_iterator(sorted(set(texts)), trainers.WordLevelTrainer(special_tokens=SPECIALS, min_frequency=1,
                                                                           show_progress=False))
    return tok


@dataclass
class Encoded:
    ids: list[int]
    tokens: list[str]                                   # token strings; unknown words show as [UNK]
    words: list[str]                                    # the words as typed (specials as themselves)
    unknown: list[str] = field(default_factory=list)    # words that became [UNK]


class WordTokenizer:
    """A thin wrapper adding [BOS]/[EOS] handling and unknown-word reporting."""

    def __init__(self, tok: Tokenizer) -> None:
        self.tok = tok
        self.vocab_size = tok.get_vocab_size()
        vocab = tok.get_vocab()
        self.vocab = [""] * self.vocab_size
        for w, i in vocab.items():
            self.vocab[i] = w
        self.pad_id, self.unk_id, self.bos_id, self.eos_id = (vocab[s] for s in SPECIALS)

    @classmethod
    def from_file(cls, path: str) -> "WordTokenizer":
        return cls(Tokenizer.from_file(path))

    def save(self, path: str) -> None:
        self.tok.save(path)

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = False) -> Encoded:
        enc = self.tok.encode(text, add_special_tokens=False)
        ids, tokens = list(enc.ids), list(enc.tokens)
        words = [text[a:b] for a, b in enc.offsets]
        unknown = [w for w, i in zip(words, ids) if i == self.unk_id]
        tokens = [UNK if i == self.unk_id else t for t, i in zip(tokens, ids)]
        if add_bos:
            ids, tokens, words = [self.bos_id] + ids, [BOS] + tokens, [BOS] + words
        if add_eos:
            ids, tokens, words = ids + [self.eos_id], tokens + [EOS], words + [EOS]
        return Encoded(ids, tokens, words, unknown)

    def decode(self, ids: list[int], skip_special: bool = True) -> str:
        specials = {self.pad_id, self.unk_id, self.bos_id, self.eos_id} - ({self.unk_id} if not skip_special else set())
        words = [self.vocab[i] for i in ids if not (skip_special and i in specials)]
        return " ".join(words)

    def id_to_token(self, i: int) -> str:
        return self.vocab[i]
