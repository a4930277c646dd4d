"""Activation patching: which part of the model carries the difference between two inputs.

Two texts that differ in one word ("... because it was hungry" / "... because it was hot", "the key to the
cabinets" / "the keys to the cabinets") make the model prefer two different answers (il / elle, is / are).
The logit difference LD = logit(answer A) - logit(answer B) measures that preference. Run both texts, then
run the first ("clean") again with ONE activation copied from the second ("corrupted") run and see how far LD
moves towards the corrupted run's:

    effect = (LD_patched - LD_clean) / (LD_corrupted - LD_clean)       0 = no effect, 1 = the whole effect

An activation whose patch moves LD all the way carries, on its own, the information that decides the answer;
this is causal evidence (what the model *uses*), where attention weights only say where a head *looks*.

Patched sites, through the hook points every model shares (model/hooks.py): each head's output
(`blocks.{i}.attn.head_out`, one head at a time), and per position the residual stream entering each block,
the attention sublayer's output and the feed-forward sublayer's output. Every patch of one kind runs in one
batched call: row r of the batch carries patch r (`Hooked.hooked_logits`).

Exactness (tests/test_patching.py): patching nothing gives the clean run exactly; patching the residual
stream entering the first block at every position gives the corrupted run; a head's batched effect equals a
separate run with that head's output replaced.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from .. import hooks
from ..api import Hooked, InputError, MaskedFill, NextToken, Translates
from ..hooks import HookRun

PREFIX = {"self": "", "encoder": "encoder.", "decoder": "decoder.", "cross": "decoder."}
POSITION_SITES = ("resid_pre", "attn.out", "ffn.out")          # per position, per layer
SITE_NAMES = {"resid_pre": "residual stream (block input)", "attn.out": "attention output",
              "ffn.out": "feed-forward output"}
BATCH = 64                                                     # patched copies per forward call


@dataclass
class Patching:
    """What patching found. Effects are normalised: 0 = no effect, 1 = the whole difference."""

    clean: str
    corrupted: str
    answers: tuple[str, str]                       # (the clean run's answer, the corrupted run's answer)
    clean_diff: float                              # LD = logit(A) - logit(B) of the clean run
    corrupted_diff: float                          # ... of the corrupted run
    predicts: str                                  # which prediction the answers are, in words
    heads: dict[str, np.ndarray] = field(default_factory=dict)            # stack -> (L, H)
    positions: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # stack -> site -> (L, T)
    tokens: dict[str, list[str]] = field(default_factory=dict)            # stack -> position labels (clean)
    changed: dict[str, list[int]] = field(default_factory=dict)           # stack -> positions where inputs differ
    target: list[str] = field(default_factory=list)                       # translator: the decoder's prefix

    def strongest_head(self, stack: str) -> tuple[int, int, float]:
        """(layer, head, effect) of the head whose patch moves LD most (largest |effect|), 0-based."""
        e = self.heads[stack]
        l, h = np.unravel_index(int(np.argmax(np.abs(e))), e.shape)
        return int(l), int(h), float(e[l, h])


def _logit_diff(logits: Tensor, a: int, b: int) -> Tensor:
    return logits[:, a] - logits[:, b]


def _position_stacks(lab) -> dict[str, int]:
    """Stacks with per-position sites -> their number of layers."""
    lay = lab.hook_layout()
    return {s: v["layers"] for s, v in lay.items() if s != "cross"}


def _inputs(lab, clean: str, corrupted: str, given: bool) -> tuple[list[int], list[int], list[int] | None, list[int] | None,
                                                         list[str], str]:
    a, b = lab.tokenize(clean), lab.tokenize(corrupted)
    if a.unknown or b.unknown:
        words = ", ".join(dict.fromkeys(a.unknown + b.unknown))
        raise InputError(f"{lab.name} does not know: {words}. Patching needs two texts it can read.")
    if len(a.ids) != len(b.ids):
        raise InputError(f"The two texts have {len(a.ids)} and {len(b.ids)} tokens: patching copies activations "
                         "position by position, so they must have the same length (change one word for one word).")
    if a.ids == b.ids:
        raise InputError("The two texts are the same: change one word in the second.")
    if isinstance(lab, Translates):                  # the first word where the two translations part
        ta = lab.target_ids(lab.generate(clean, lab.max_new_tokens(), greedy=True))
        tb = lab.target_ids(lab.generate(corrupted, lab.max_new_tokens(), greedy=True))
        i = next((i for i, (x, y) in enumerate(zip(ta, tb)) if x != y), None)
        if i is None and given:                    # the answers are given: the next word after the whole translation
            return a.ids, b.ids, ta, None, a.tokens, "the word after the clean translation"
        if i is None:
            raise InputError("Both texts translate to the same words, so there is no difference to explain. "
                             "Pick two texts whose translations differ (e.g. il / elle).")
        return a.ids, b.ids, ta[:i], [ta[i], tb[i]], a.tokens, "the first French word where the translations differ"
    return a.ids, b.ids, None, None, a.tokens, "the next token"


def _batched(lab, ids: list[int], target: list[int] | None, patches: list[tuple[str, int]],
             corrupt: dict[str, Tensor]) -> Tensor:
    """Logits (len(patches), V): row r runs the clean input with the corrupted activation at patches[r] =
    (hook name, index along dim 1: a head of a (B, H, T, d) head_out, a position of a (B, T, D) point)."""
    out = []
    for start in range(0, len(patches), BATCH):
        chunk = patches[start:start + BATCH]
        rows: dict[str, list[tuple[int, int]]] = {}
        for r, (name, idx) in enumerate(chunk):
            rows.setdefault(name, []).append((r, idx))

        def edit_for(name: str):
            src = corrupt[name]
            def edit(x: Tensor) -> Tensor:
                x = x.clone()
                for r, idx in rows[name]:
                    x[r, idx] = src[0, idx]
                return x
            return edit
        run = HookRun({name: edit_for(name) for name in rows})
        with hooks.active(run):
            out.append(lab.hooked_logits(ids, target, n=len(chunk)))
    return torch.cat(out)


@torch.inference_mode()
def patch(lab, clean: str, corrupted: str, answers: tuple[str, str] | None = None, *,
          heads: bool = True, positions: bool = True) -> Patching:
    """Patch every head and every (layer, position, site) of `lab` from the corrupted run into the clean one."""
    if not isinstance(lab, Hooked) or not lab.hook_layout():
        raise InputError(f"{lab.name} has no hook points to patch (the lab patches Transformers: the built-in "
                         "ones and the Hugging Face families of its architecture table).")
    if not isinstance(lab, (NextToken, MaskedFill, Translates)):
        raise InputError(f"{lab.name} has no prediction head, so there is no answer whose change patching could "
                         "explain. Pick a model that predicts words.")
    ids_a, ids_b, target, pair, tokens, predicts = _inputs(lab, clean, corrupted, answers is not None)
    layout = lab.hook_layout()
    pstacks = _position_stacks(lab)
    names = set()
    for s, v in layout.items():
        sub = "cross" if s == "cross" else "attn"
        names |= {f"{PREFIX[s]}blocks.{l}.{sub}.head_out" for l in range(v["layers"])}
    for s, n in pstacks.items():
        names |= {f"{PREFIX[s]}blocks.{l}.{site}" for l in range(n) for site in POSITION_SITES}
    rec_a, rec_b = HookRun(record=names), HookRun(record=names)
    with hooks.active(rec_a):
        la = lab.hooked_logits(ids_a, target)
    with hooks.active(rec_b):
        lb = lab.hooked_logits(ids_b, target)
    vocab = lab.vocab
    if answers is not None:
        pair = []
        for w in answers:
            hits = [i for i, v in enumerate(vocab) if v == w.strip()]
            if not hits:
                raise InputError(f"{w.strip()!r} is not one token of {lab.name}'s vocabulary.")
            pair.append(hits[0])
    elif pair is None:
        pair = [int(la[0].argmax()), int(lb[0].argmax())]
        if pair[0] == pair[1]:
            raise InputError(f"Both texts make {lab.name} predict {vocab[pair[0]]!r} first, so there is no "
                             "difference to explain: give two answers, or change the word that matters.")
    a, b = pair
    d_clean, d_corrupt = float(_logit_diff(la, a, b)), float(_logit_diff(lb, a, b))
    if abs(d_corrupt - d_clean) < 1e-6:
        raise InputError("The two texts give the same logit difference between the answers: nothing to explain.")
    norm = lambda ld: ((ld - d_clean) / (d_corrupt - d_clean)).cpu().numpy()
    res = Patching(clean, corrupted, (vocab[a], vocab[b]), d_clean, d_corrupt, predicts,
                   target=[vocab[i] for i in target] if target else [])
    if heads:
        for s, v in layout.items():
            sub = "cross" if s == "cross" else "attn"
            sites = [(f"{PREFIX[s]}blocks.{l}.{sub}.head_out", h) for l in range(v["layers"]) for h in range(v["heads"])]
            ld = _logit_diff(_batched(lab, ids_a, target, sites, rec_b.cache), a, b)
            res.heads[s] = norm(ld).reshape(v["layers"], v["heads"])
    dec_tokens = [vocab[i] for i in target] if target else []
    for s, n in pstacks.items():
        T = rec_a.cache[f"{PREFIX[s]}blocks.0.resid_pre"].shape[1]
        res.tokens[s] = dec_tokens if s == "decoder" else tokens
        src_a, src_b = (ids_a, ids_b) if s != "decoder" else (target, target)
        res.changed[s] = [i for i, (x, y) in enumerate(zip(src_a, src_b)) if x != y]
        if not positions:
            continue
        res.positions[s] = {}
        for site in POSITION_SITES:
            sites = [(f"{PREFIX[s]}blocks.{l}.{site}", t) for l in range(n) for t in range(T)]
            ld = _logit_diff(_batched(lab, ids_a, target, sites, rec_b.cache), a, b)
            res.positions[s][site] = norm(ld).reshape(n, T)
    return res


@torch.inference_mode()
def single_patch(lab, clean: str, corrupted: str, name: str, index: int, answers: tuple[int, int],
                 target: list[int] | None = None) -> float:
    """LD of one clean run with the corrupted activation `name` replaced at `index` (a head of head_out, or a
    position), unbatched: the second code path the batched `patch` is checked against."""
    ids_a, ids_b = lab.tokenize(clean).ids, lab.tokenize(corrupted).ids
    rec = HookRun(record={name})
    with hooks.active(rec):
        lab.hooked_logits(ids_b, target)
    src = rec.cache[name]

    def edit(x: Tensor) -> Tensor:
        x = x.clone()
        x[:, index] = src[:, index]
        return x
    with hooks.active(HookRun({name: edit})):
        la = lab.hooked_logits(ids_a, target)
    return float(_logit_diff(la, *answers))


ADJECTIVES = {"little", "big", "old", "small", "black", "brown", "red", "white", "young"}


def agreement_pairs(lab, n: int = 40, seed: int = 778) -> list[tuple[str, str, tuple[str, str]]]:
    """A family of (clean, corrupted, (right verb, wrong verb)) pairs from the agreement generator: the clean text
    is a generated subject with attractors ("the lamp to the old red lamps under the brown books"), the corrupted
    one flips the subject's number ("the lamps to ..."), the answers are the clean subject's verb and the other."""
    from .corpora import agreement_items

    vocab = set(lab.vocab)
    out = []
    for it in agreement_items(20 * n, seed=seed):
        w = it["prefix"].split()
        if w[0] != "the" or w[1] in ADJECTIVES or w[1] not in vocab:
            continue
        alt = w[1][:-1] if w[1].endswith("s") and w[1][:-1] in vocab else w[1] + "s"
        if alt not in vocab:
            continue
        out.append((it["prefix"], " ".join([w[0], alt, *w[2:]]), (it["correct"], it["wrong"])))
        if len(out) == n:
            break
    return out


def pronoun_pairs(n: int = 20) -> list[tuple[str, str]]:
    """(clean, corrupted) held-out sentence pairs whose "it" changes gender with the last word: the clean text ends
    in an eater's state ("...because it was hungry": il for a masculine eater), the corrupted one in a food's
    property ("...because it was hot": elle for a feminine food). Eater and food never met in training."""
    from collections import defaultdict

    from .corpora import pronoun_heldout_pairs

    groups: dict = defaultdict(lambda: {"eater": [], "food": []})
    for en, _fr, info in pronoun_heldout_pairs():
        if info["opposite_gender"]:
            groups[(info["eater"], info["food"], en.split()[2])][info["referent"]].append(en)
    both = [(k, g) for k, g in groups.items() if g["eater"] and g["food"]]
    seen, first, rest = set(), [], []
    for (eater, food, _verb), g in both:           # one pair per eater and food first, then the other verbs
        (rest if (eater, food) in seen else first).append((g["eater"][0], g["food"][0]))
        seen.add((eater, food))
    return (first + rest)[:n]


def head_effects_on(lab, pairs: list[tuple[str, str]], stack: str = "encoder") -> np.ndarray:
    """(len(pairs), L, H): each head's patching effect on each pair (heads only)."""
    return np.stack([patch(lab, a, b, heads=True, positions=False).heads[stack] for a, b in pairs])
