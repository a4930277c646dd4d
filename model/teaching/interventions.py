"""Break the model: run the intact and the intervened model side by side and say what changed.

The interventions themselves live in the forward pass (`model.nets.transformer.Interventions`, an
argument of one call). This module adapts them for a page: it returns plain numbers and numpy
arrays (next-word probabilities, attention maps, which heads changed and by how much, held-out
figures on a fixed small slice) so pages only lay them out.

    from model.teaching.interventions import Interventions, compare, heldout
    iv = Interventions(ablate_heads={("self", 2, 0), ("self", 2, 1)})
    cmp = compare(lab, "the keys to the old cabinet", iv)
    cmp.top_words, cmp.p_intact, cmp.p_broken, cmp.head_change["self"]     # (L, H) max |delta weight|
    heldout(lab, iv)                                                        # [(figure, intact, broken), ...]

Shuffling the word order is an intervention on the input (seeded), not on the model.
Every model with hook points (the `Hooked` capability) says which interventions it supports: the built-in
Transformers all of them; Hugging Face families head ablation and no positions, at the hook points their
architecture table places (W_o's input, the position module), for the calling thread only.
"""
from __future__ import annotations

import dataclasses
import random
import threading
import time
import weakref
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from .. import hooks
from ..api import Hooked, InputError, MaskedFill, NextToken, Recurrent, Translates
from ..hooks import HookRun
from ..nets.transformer import Interventions, Seq2SeqTransformer, TransformerLM

__all__ = ["Interventions", "Comparison", "compare", "heldout", "word_order_demo", "shuffle_permutation",
           "supported", "describe", "kinds", "offers", "layout", "hooked_run", "Opening", "OPENINGS", "opening"]
N_CE, N_AGREE, N_TRANSLATE = 200, 300, 100        # the fixed evaluation slice (a few seconds on 2 CPU cores)


# ----------------------------------------------------------------------------- what applies
NEEDS = {"heads": "head ablation", "positions": "no positional encoding", "mask": "no causal mask",
         "layernorm": "skip a LayerNorm", "residual": "skip a residual connection", "scale": "no 1/sqrt(d_k) scaling",
         "shuffle": "shuffled word order"}


def _is_builtin_transformer(lab) -> bool:
    return isinstance(getattr(lab, "module", None), (TransformerLM, Seq2SeqTransformer))


def kinds(lab) -> frozenset[str]:
    """The keys of NEEDS this model supports (its `Hooked` capability says which)."""
    return lab.intervention_kinds() if isinstance(lab, Hooked) else frozenset()


def supported(lab) -> list[str] | str:
    """The interventions that apply to this model, in words, or a sentence saying why none do."""
    have = kinds(lab)
    if have:
        names = [NEEDS[k] for k in NEEDS if k in have]
        if _is_builtin_transformer(lab) and isinstance(lab.module, Seq2SeqTransformer):
            names = [n + " (decoder)" if n == NEEDS["mask"] else n for n in names]
        return names
    if not isinstance(lab, (NextToken, MaskedFill, Translates)):
        return ("This model has no prediction head, so there is no output to compare before and after an "
                "intervention. Pick a model that predicts words.")
    if isinstance(lab, Recurrent) or getattr(lab, "source", "") == "builtin":     # the LSTM and the vanilla RNN
        return ("Interventions on attention heads, positions, masks and LayerNorms apply to Transformers; "
                "a recurrent network has none of these. Pick transformer-lm or translator-en-fr.")
    return ("For this model the lab supports no interventions: its architecture table names no attention output "
            "projection or position module (see model/hf/architectures.py).")


def offers(lab, what: str, stack: str | None = None) -> bool:
    """Whether this model supports the intervention `what` (a key of NEEDS), on `stack` when one is named."""
    return what in kinds(lab) and (stack is None or stack in layout(lab))


def describe(iv: Interventions, shuffle_seed: int | None = None) -> str:
    """A short plain-text description of what is switched off."""
    parts = []
    if iv.ablate_heads:
        by_layer: dict[tuple[str, int], list[int]] = {}
        for s, l, h in sorted(iv.ablate_heads):
            by_layer.setdefault((s, l), []).append(h + 1)
        what = {"zero": "set to 0", "mean": "replaced by their mean over this text's positions",
                "reference": "replaced by their mean output over the reference set"
                             + (f" ({iv.reference_label})" if iv.reference_label else "")}[iv.head_mode]
        parts.append("; ".join(f"{s} layer {l + 1} heads {', '.join(map(str, hs))}" for (s, l), hs in by_layer.items())
                     + f" {what}")
    if iv.no_positions:
        parts.append("no positional encoding")
    if iv.no_causal_mask:
        parts.append("no causal mask")
    stack_name = {"self": "", "encoder": "encoder ", "decoder": "decoder "}
    for s, l, sub in sorted(iv.skip_layernorm):
        parts.append(f"{stack_name.get(s, s + ' ')}final LayerNorm skipped" if l < 0 else
                     f"{stack_name.get(s, s + ' ')}layer {l + 1}: the LayerNorm of the {SUBLAYER_NAMES[sub]} skipped")
    for s, l, sub in sorted(iv.skip_residual):
        parts.append(f"{stack_name.get(s, s + ' ')}layer {l + 1}: the residual connection around the "
                     f"{SUBLAYER_NAMES[sub]} skipped")
    if iv.no_scale:
        parts.append("attention scores not divided by sqrt(d_k)")
    if shuffle_seed is not None:
        parts.append(f"input words shuffled (seed {shuffle_seed})")
    return ", ".join(parts) or "nothing (intact model)"


def layout(lab) -> dict[str, dict]:
    """What can be switched off where: stack -> {"layers", "heads", "sublayers", "final_ln"}."""
    return lab.hook_layout() if isinstance(lab, Hooked) else {}


SUBLAYER_NAMES = {"attn": "self-attention", "cross": "cross-attention", "ffn": "feed-forward", "final": "final"}


def build(what: str, *, stack: str = "self", layer=0, heads=(), head_mode: str = "zero",
          sublayer: str = "attn") -> Interventions:
    """One intervention from a page's choices. what: "heads", "positions", "mask", "layernorm",
    "residual", "scale" or "none" (shuffling is passed separately as a seed). layer, heads 0-based;
    layer -1 with sublayer "final" is the final LayerNorm."""
    if what == "heads":                                       # layer: one index or several
        layers = [layer] if isinstance(layer, int) else list(layer)
        return Interventions(ablate_heads={(stack, l, h) for l in layers for h in heads}, head_mode=head_mode)
    if what == "positions":
        return Interventions(no_positions=True)
    if what == "mask":
        return Interventions(no_causal_mask=True)
    if what == "layernorm":
        return Interventions(skip_layernorm={(stack, -1 if sublayer == "final" else layer, sublayer)})
    if what == "residual":
        return Interventions(skip_residual={(stack, layer, sublayer)})
    if what == "scale":
        return Interventions(no_scale=True)
    return Interventions()


@dataclass(frozen=True)
class Opening:
    """What Break it opens on until the user picks another intervention: a page's choices (0-based)."""

    what: str = "heads"
    stack: str | None = None                 # None: the model's first attention stack
    layer: int = 0
    heads: tuple[int, ...] | None = None     # None: every head of the layer
    head_mode: str = "reference"             # mean ablation over the reference set (zeroing leaves the model's inputs)
    why: str = ""                            # said while this intervention is chosen (tests/test_breakit_defaults.py)


# The built-in models open on an intervention with a visible effect on their Break it sentence
# (lessons.DEFAULTS["experiments"]); the figures are measured by tests/test_breakit_defaults.py.
OPENINGS: dict[str, Opening] = {
    # layer 3, head 1 carries the subject's number to the verb (activation patching: the strongest head in 40 of 40
    # generated agreement pairs); replaced by its mean over the reference set, the next word after "the dogs that the
    # cat chased" moves by TV 0.42 (zeros: 0.47; "were" 35% -> "was" 20% on top; held-out agreement 100% -> 94%)
    "transformer-lm": Opening(layer=2, heads=(0,), why=(
        "Layer 3, head 1 is the head that carries the subject's number to the verb: activation patching (Find the "
        "cause) names it the strongest head in 40 of 40 generated agreement pairs.")),
    # the translator's decoder reads "hungry" through several cross-attention heads at once (patching: no single one
    # carries more than 29% of il/elle on 20 held-out pairs); replacing all four heads of decoder layer 1's
    # cross-attention by their mean over the reference set turns "... parce qu'il avait faim" into "... parce
    # qu'elle avait faim" (TV 1.00), while any one of them alone, or any encoder layer's heads, changes nothing
    # (tests/test_breakit_defaults.py)
    "translator-en-fr": Opening(stack="cross", layer=0, heads=(0, 1, 2, 3), why=(
        "The decoder reads “hungry” through several cross-attention heads at once: replace all four heads of "
        "layer 1's cross-attention by their mean over the reference set and “qu'il” becomes “qu'elle”; any one of "
        "them alone changes nothing here.")),
}


def opening(lab) -> Opening:
    """The intervention Break it opens on for this model (every head of the first layer where none is chosen)."""
    return OPENINGS.get(getattr(lab, "name", ""), Opening())


# ----------------------------------------------------------------------------- word order
def shuffle_permutation(n: int, seed: int, keep_first: int = 0, keep_last: int = 0) -> list[int]:
    """A seeded permutation of range(n) that leaves the first/last positions (special tokens) in place.

    Where more than one position moves, the permutation differs from the identity."""
    mid = list(range(keep_first, n - keep_last))
    rng = random.Random(seed)
    if len(mid) > 1:
        orig = list(mid)
        for _ in range(10):
            rng.shuffle(mid)
            if mid != orig:
                break
    return list(range(keep_first)) + mid + list(range(n - keep_last, n))


def _shuffled(ids: list[int], seed: int, keep_first: int, keep_last: int) -> list[int]:
    perm = shuffle_permutation(len(ids), seed, keep_first, keep_last)
    return [ids[i] for i in perm]


# ----------------------------------------------------------------------------- the reference set (mean ablation)
N_REFERENCE = 50                                  # texts whose mean head outputs replace an ablated head
REFERENCE_TEXTS = ("the bear ate the honey because it was hungry", "the keys to the old cabinet are on the table",
                   "the black cat ate the mouse", "the cat sat on the mat", "he is reading a book",
                   "the dog that the cats chased was tired", "a bird sat near the river")
_REFERENCE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_REFERENCE_LOCK = threading.Lock()


def reference_texts(lab) -> tuple[list[str], str]:
    """The reference set of a model and its description: held-out sentences of the built-in corpus for the
    built-in models, the lab's example sentences (those the model can read) for others."""
    if _is_builtin_transformer(lab):                 # the end of the held-out split: apart from the evaluation slice
        from . import corpora

        held = heldout_split(lab)
        texts = [e if isinstance(e, str) else e[0] for e in held[-N_REFERENCE:]]
        return texts, f"{len(texts)} held-out sentences"
    texts = [t for t in REFERENCE_TEXTS if not lab.tokenize(t).unknown] or list(REFERENCE_TEXTS[:1])
    return texts, f"{len(texts)} example sentences"


@torch.inference_mode()
def reference_means(lab) -> tuple[dict[str, torch.Tensor], str]:
    """head_out point -> (heads, d_head) mean output of every head over the model's reference set (every
    position of every text), computed once per model; and the set's description."""
    with _REFERENCE_LOCK:
        if lab in _REFERENCE:
            return _REFERENCE[lab]
    texts, label = reference_texts(lab)
    names = {f"{'' if s == 'self' else 'decoder.' if s == 'cross' else s + '.'}blocks.{l}."
             f"{'cross' if s == 'cross' else 'attn'}.head_out"
             for s, v in layout(lab).items() for l in range(v["layers"])}
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    for t in texts:
        rec = HookRun(record=names)
        with hooks.active(rec):
            lab.run(t)
        for name, x in rec.cache.items():                       # (1, H, T, d): the last (whole) pass of the run
            sums[name] = sums.get(name, 0) + x[0].float().sum(1).cpu()
            counts[name] = counts.get(name, 0) + x.shape[2]
    out = ({name: sums[name] / counts[name] for name in sums}, label)
    with _REFERENCE_LOCK:
        _REFERENCE[lab] = out
    return out


def with_reference(lab, iv: Interventions) -> Interventions:
    """`iv` with its reference means attached when it ablates heads to the reference mean."""
    if iv.head_mode != "reference" or not iv.ablate_heads or iv.reference is not None:
        return iv
    means, label = reference_means(lab)
    return dataclasses.replace(iv, reference=means, reference_label=label)


# ----------------------------------------------------------------------------- models with hook points
def hooked_run(lab, iv: Interventions) -> HookRun:
    """The edits of `iv` at the hook points of a Hugging Face model (placed from its architecture table); a
    clear message for what this model does not support."""
    asked = {"heads": bool(iv.ablate_heads), "positions": iv.no_positions, "mask": iv.no_causal_mask,
             "layernorm": bool(iv.skip_layernorm), "residual": bool(iv.skip_residual), "scale": iv.no_scale}
    missing = [NEEDS[k] for k, on in asked.items() if on and k not in kinds(lab)]
    if missing:
        applies = supported(lab)
        only = applies if isinstance(applies, str) else f"For {lab.name} the lab supports {' and '.join(applies)}"
        raise InputError(f"{only}; not: {', '.join(missing)}.")
    lay = layout(lab)
    for s, l, h in iv.ablate_heads:
        if s not in lay or not 0 <= l < lay[s]["layers"] or not 0 <= h < lay[s]["heads"]:
            raise InputError(f"No head {h + 1} in layer {l + 1} of the {s} stack of {lab.name}.")
    return lab.intervention_run(with_reference(lab, iv))


# ----------------------------------------------------------------------------- one text, side by side
@dataclass
class Comparison:
    """The intact and the intervened model on one text. Arrays are numpy; probabilities in [0, 1]."""

    tokens: list[str]                          # what the intact model read
    tokens_broken: list[str]                   # what the intervened model read (shuffled input differs)
    top_words: list[str]                       # the union of both models' top words
    p_intact: np.ndarray                       # (K,) next-word probability of each of top_words
    p_broken: np.ndarray
    kl: float                                  # KL(intact || broken) of the full next-word distributions, nats
    tv: float                                  # total variation distance between them
    attention: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)   # stack -> (L,H,Tq,Tk) x2
    head_change: dict[str, np.ndarray] = field(default_factory=dict)  # stack -> (L, H) max |weight difference|
    q_labels: dict[str, list[str]] = field(default_factory=dict)
    k_labels: dict[str, list[str]] = field(default_factory=dict)
    translation_intact: str | None = None      # translator: greedy translations
    translation_broken: str | None = None
    predicts: str = ""                         # which distribution is shown, in words
    aligned: bool = True                       # False when word orders differ (maps reordered to the original)

    def most_changed(self, stack: str) -> tuple[int, int]:
        """(layer, head), 0-based, of the head whose weights changed most (the first one if none changed)."""
        c = self.head_change[stack]
        l, h = np.unravel_index(int(np.argmax(c)), c.shape)
        return int(l), int(h)

    def changed_heads(self, stack: str, tol: float = 1e-6) -> int:
        return int((self.head_change[stack] > tol).sum())

    def head_maps(self, stack: str, layer: int, head: int) -> tuple[np.ndarray, np.ndarray]:
        """(intact, intervened) (Tq, Tk) weights of one head (intervened put back in the intact word order)."""
        a, b = self.attention[stack]
        return a[layer, head], b[layer, head]


def _probs(logits: torch.Tensor) -> torch.Tensor:
    return logits.float().log_softmax(-1)


def _dist_rows(lp_a: torch.Tensor, lp_b: torch.Tensor, vocab: list[str], k: int) -> tuple[list[str], np.ndarray, np.ndarray, float, float]:
    pa, pb = lp_a.exp(), lp_b.exp()
    top = list(dict.fromkeys(pa.topk(min(k, pa.numel())).indices.tolist() + pb.topk(min(k, pb.numel())).indices.tolist()))
    top.sort(key=lambda i: -float(pa[i]))
    kl = float((pa * (lp_a - lp_b)).sum())
    tv = float(0.5 * (pa - pb).abs().sum())
    return [vocab[i] for i in top], pa[top].numpy(), pb[top].numpy(), kl, tv


def next_word_comparison(logits_a: torch.Tensor, logits_b: torch.Tensor, vocab: list[str], k: int = 8
                         ) -> tuple[list[str], np.ndarray, np.ndarray, float, float]:
    """Two runs' next-token distributions from their logits: the words of either's top k (by the first's
    probability), both probabilities, KL(a ‖ b) and the total variation."""
    return _dist_rows(_probs(logits_a), _probs(logits_b), vocab, k)


def _stack_maps(trace) -> dict[str, np.ndarray]:
    """stack -> (L, H, Tq, Tk) weights; a compact trace's (a long Hugging Face text) recomputed layer by layer and
    kept as float16, as long traces held them before they were compact."""
    from ..trace import CompactAttentionTrace

    return {s: torch.cat([a.weights.half() if isinstance(a, CompactAttentionTrace) else a.weights for a in ats],
                         0).numpy() for s, ats in trace.attention.items()}


def _unpermute(a: np.ndarray, perm_q: list[int] | None, perm_k: list[int] | None) -> np.ndarray:
    """Broken maps (in the shuffled order) put back into the intact order: row i of the result is the
    query that was at original position i."""
    if perm_q is not None:
        inv = np.argsort(perm_q)
        a = a[:, :, inv]
    if perm_k is not None:
        inv = np.argsort(perm_k)
        a = a[:, :, :, inv]
    return a


@torch.inference_mode()
def compare(lab, text: str, iv: Interventions, shuffle_seed: int | None = None, top_k: int = 8) -> Comparison:
    """Intact vs intervened on one text: next-word distribution, attention maps, per-head change."""
    if not kinds(lab):
        raise InputError(supported(lab))
    iv = with_reference(lab, iv)
    if not _is_builtin_transformer(lab):
        return _compare_hf(lab, text, iv, shuffle_seed, top_k)
    module, dev = lab.module, lab.device
    if isinstance(module, Seq2SeqTransformer):
        return _compare_translator(lab, text, iv, shuffle_seed, top_k)
    t = lab.tokenize(text)
    ids = t.ids
    perm = shuffle_permutation(len(ids), shuffle_seed, keep_first=1) if shuffle_seed is not None else None
    ids_b = [ids[i] for i in perm] if perm else ids
    x_a = torch.tensor([ids], device=dev)
    x_b = torch.tensor([ids_b], device=dev)
    out_a = module(x_a, trace=True)
    out_b = module(x_b, trace=True, interventions=iv)
    words, pa, pb, kl, tv = _dist_rows(_probs(out_a.logits[0, -1].cpu()), _probs(out_b.logits[0, -1].cpu()),
                                       lab.vocab, top_k)
    maps_a, maps_b = _stack_maps(out_a.trace), _stack_maps(out_b.trace)
    att, change = {}, {}
    for s in maps_a:
        b = _unpermute(maps_b[s], perm, perm) if perm else maps_b[s]
        att[s] = (maps_a[s], b)
        change[s] = np.abs(maps_a[s] - b).max(axis=(2, 3))
    tokens_b = [lab.vocab[i] for i in ids_b]
    predicts = f"the word after “{t.tokens[-1]}”"
    if tokens_b[-1] != t.tokens[-1]:                        # shuffled: the intervened run predicts after another word
        predicts += f" (intact) and after “{tokens_b[-1]}” (shuffled)"
    return Comparison(t.tokens, tokens_b, words, pa, pb, kl, tv, att, change, {"self": t.tokens}, {"self": t.tokens},
                      predicts=predicts, aligned=perm is None)


def _greedy(lab, src_ids: list[int], iv: Interventions | None) -> list[int]:
    """Greedy translation recomputing the whole decoder input each step (no cache), so that every
    intervention, the causal mask's removal included, acts as it would with teacher forcing."""
    m, dev = lab.module, lab.device
    src = torch.tensor([src_ids], device=dev)
    memory = m.encode(src, interventions=iv)
    tgt = [lab.bos_id]
    for _ in range(lab.max_len - 1):
        logits, _ = m.decode(torch.tensor([tgt], device=dev), memory, interventions=iv)
        nxt = int(logits[0, -1].argmax())
        if nxt == lab.eos_id:
            break
        tgt.append(nxt)
    return tgt


def _compare_translator(lab, text, iv, shuffle_seed, top_k) -> Comparison:
    m, dev = lab.module, lab.device
    src = lab.tokenize(text)
    ids = src.ids
    perm = shuffle_permutation(len(ids), shuffle_seed, keep_last=1) if shuffle_seed is not None else None
    ids_b = [ids[i] for i in perm] if perm else ids
    tgt_a = _greedy(lab, ids, None)
    tgt_b = _greedy(lab, ids_b, iv)
    # teacher-forced on the intact translation, both models: attention maps of the same decoder input
    x_a, x_b, y = (torch.tensor([v], device=dev) for v in (ids, ids_b, tgt_a))
    out_a = m(x_a, y, trace=True)
    out_b = m(x_b, y, trace=True, interventions=iv)
    # the step drawn: where the intervened translation first departs from the intact one, else the step whose
    # next-word distribution moved most (both teacher-forced on the intact translation)
    lp_a, lp_b = _probs(out_a.logits[0].cpu()), _probs(out_b.logits[0].cpu())          # (T, V)
    part = next((t for t in range(len(tgt_a) - 1) if t + 1 >= len(tgt_b) or tgt_a[t + 1] != tgt_b[t + 1]), None)
    step = part if part is not None else int((lp_a.exp() - lp_b.exp()).abs().sum(-1).argmax())
    words, pa, pb, kl, tv = _dist_rows(lp_a[step], lp_b[step], lab.vocab, top_k)
    maps_a, maps_b = _stack_maps(out_a.trace), _stack_maps(out_b.trace)
    tgt_tokens = [lab.vocab[i] for i in tgt_a]
    prefix = " ".join(tgt_tokens[1:step + 1])
    predicts = f"the French word after “{prefix}”" if step else "the first French word"
    att, change, ql, kl_ = {}, {}, {}, {}
    for s in maps_a:
        pq = perm if s == "encoder" else None
        pk = perm if s in ("encoder", "cross") else None
        b = _unpermute(maps_b[s], pq, pk) if perm else maps_b[s]
        att[s] = (maps_a[s], b)
        change[s] = np.abs(maps_a[s] - b).max(axis=(2, 3))
        ql[s] = src.tokens if s == "encoder" else tgt_tokens
        kl_[s] = tgt_tokens if s == "decoder" else src.tokens
    return Comparison(src.tokens, [lab.src_vocab[i] for i in ids_b], words, pa, pb, kl, tv, att, change, ql, kl_,
                      translation_intact=lab.decode(tgt_a[1:]), translation_broken=lab.decode(tgt_b[1:]),
                      predicts=predicts, aligned=perm is None)


def _compare_hf(lab, text, iv, shuffle_seed, top_k) -> Comparison:
    """A Hugging Face model run intact and with the intervention's edits at its hook points. An encoder-decoder
    translates under the intervention too; its maps are of each run's own translation where they have the same
    length, else only the distributions and translations are compared."""
    if shuffle_seed is not None:
        raise InputError(f"For {lab.name} the lab supports only {' and '.join(supported(lab))}.")
    run = hooked_run(lab, iv)
    r_a = lab.run(text)
    with hooks.active(run):
        r_b = lab.run(text, r_a.target_ids) if isinstance(lab, Translates) else lab.run(text)
    if r_a.next_logits is None:
        raise InputError(f"{lab.name} predicts nothing for this text: put [MASK] where it should fill in a word.")
    words, pa, pb, kl, tv = _dist_rows(_probs(r_a.next_logits), _probs(r_b.next_logits), lab.vocab, top_k)
    maps_a, maps_b = _stack_maps(r_a.trace), _stack_maps(r_b.trace)
    att = {s: (maps_a[s], maps_b[s]) for s in maps_a}
    change = {s: np.abs(maps_a[s] - maps_b[s]).max(axis=(2, 3)) for s in maps_a}
    stacks = r_a.trace.attention
    extra = {}
    if isinstance(lab, Translates):
        with hooks.active(run):
            broken = lab.translate(text, greedy=True)
        extra = dict(translation_intact=lab.decode(r_a.target_ids[1:]), translation_broken=broken,
                     predicts="the last word of the intact translation, teacher-forced")
    return Comparison(r_a.tokens, r_b.tokens, words, pa, pb, kl, tv, att, change,
                      {s: list(stacks[s].query_tokens) for s in stacks}, {s: list(stacks[s].key_tokens) for s in stacks},
                      **({"predicts": "the next token"} | extra))


# ----------------------------------------------------------------------------- held-out figures
@lru_cache(maxsize=4)
def _split(kind: str, n_train: int, n_heldout: int, seed: int) -> tuple:
    from . import corpora

    if kind == "translation":
        return tuple(corpora.translation_datasets(n_train, n_heldout, seed)[1])
    return tuple(corpora.lm_datasets(n_train, n_heldout, seed)[1])


def heldout_split(lab) -> tuple:
    """The held-out split of the corpus this built-in model was trained on, from its checkpoint's recipe
    (`data`: n_train, n_heldout, seed), so that no held-out sentence is one of its training sentences: English
    sentences for a language model, (English, French) pairs for the translator."""
    d = dict(getattr(lab.cfg, "data", None) or {})
    kind = "translation" if isinstance(lab.module, Seq2SeqTransformer) else "lm"
    return _split(kind, int(d.get("n_train", 30000)), int(d.get("n_heldout", 1000 if kind == "translation" else 2000)),
                  int(d.get("seed", 0)))


def _lm_slice(lab) -> tuple[tuple[str, ...], tuple[dict, ...]]:
    from . import corpora

    items = corpora.agreement_items(1000, seed=777)
    return tuple(heldout_split(lab)[:N_CE]), tuple(items[:N_AGREE])


def _translation_slice(lab) -> tuple[tuple[str, str], ...]:
    return tuple(heldout_split(lab)[:N_TRANSLATE])


def _pad(seqs: list[list[int]], pad: int, dev) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(len(s) for s in seqs)
    x = torch.tensor([s + [pad] * (n - len(s)) for s in seqs], device=dev)
    return x, torch.tensor([[True] * len(s) + [False] * (n - len(s)) for s in seqs], device=dev)


@torch.inference_mode()
def lm_figures(lab, iv: Interventions | None, shuffle_seed: int | None = None) -> dict[str, float]:
    """Cross-entropy (nats/token) on N_CE held-out sentences and agreement accuracy on N_AGREE items.

    With shuffle_seed each sentence's words (and each agreement prefix) are shuffled, seeded per item."""
    sentences, items = _lm_slice(lab)
    tok, m, dev = lab.tok, lab.module, lab.device
    pad = tok.pad_id
    seqs = [tok.encode(s, add_bos=True, add_eos=True).ids for s in sentences]
    if shuffle_seed is not None:
        seqs = [_shuffled(s, shuffle_seed + i, 1, 1) for i, s in enumerate(seqs)]
    x, valid = _pad(seqs, pad, dev)
    logits = m(x[:, :-1], pad_mask=valid[:, :-1], interventions=iv).logits
    nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), x[:, 1:].reshape(-1), ignore_index=pad,
                          reduction="sum")
    ce = float(nll) / int((x[:, 1:] != pad).sum())
    pref = [tok.encode(it["prefix"], add_bos=True).ids for it in items]
    if shuffle_seed is not None:
        pref = [_shuffled(s, shuffle_seed + i, 1, 0) for i, s in enumerate(pref)]
    x, valid = _pad(pref, pad, dev)
    logits = m(x, pad_mask=valid, interventions=iv).logits
    last = torch.tensor([len(s) - 1 for s in pref], device=dev)
    row = logits[torch.arange(len(pref), device=dev), last]
    good = torch.tensor([tok.encode(it["correct"]).ids[0] for it in items], device=dev)
    bad = torch.tensor([tok.encode(it["wrong"]).ids[0] for it in items], device=dev)
    acc = float((row.gather(1, good[:, None]) > row.gather(1, bad[:, None])).float().mean())
    return {"cross-entropy (nats/token)": ce, "agreement accuracy": acc}


@torch.inference_mode()
def translator_figures(lab, iv: Interventions | None, shuffle_seed: int | None = None) -> dict[str, float]:
    """Exact match of greedy translations of N_TRANSLATE held-out sentences (batched, no cache)."""
    pairs = _translation_slice(lab)
    m, dev = lab.module, lab.device
    pad = lab.src_tok.pad_id
    srcs = [lab.src_tok.encode(e, add_eos=True).ids for e, _ in pairs]
    if shuffle_seed is not None:
        srcs = [_shuffled(s, shuffle_seed + i, 0, 1) for i, s in enumerate(srcs)]
    x, valid = _pad(srcs, pad, dev)
    memory = m.encode(x, valid, interventions=iv)
    tgt = torch.full((len(srcs), 1), lab.bos_id, device=dev)
    done = torch.zeros(len(srcs), dtype=torch.bool, device=dev)
    for _ in range(lab.max_len - 1):
        logits, _ = m.decode(tgt, memory, src_pad=valid, interventions=iv)
        nxt = logits[:, -1].argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, lab.eos_id), nxt)
        tgt = torch.cat([tgt, nxt[:, None]], 1)
        done |= nxt == lab.eos_id
        if bool(done.all()):
            break
    ok = 0
    for row, (_, ref) in zip(tgt[:, 1:].tolist(), pairs):
        row = row[: row.index(lab.eos_id)] if lab.eos_id in row else row
        ok += " ".join(lab.decode(row).split()) == " ".join(ref.split())
    return {"exact match": ok / len(pairs)}


def heldout(lab, iv: Interventions, shuffle_seed: int | None = None) -> tuple[list[tuple[str, float, float]], str, float]:
    """[(figure, intact, intervened)], a sentence saying what slice was used, and the seconds it took."""
    if not _is_builtin_transformer(lab):
        raise InputError("Held-out figures are computed for the built-in models only.")
    iv = with_reference(lab, iv)
    t0 = time.perf_counter()
    if isinstance(lab.module, Seq2SeqTransformer):
        a, b = translator_figures(lab, None), translator_figures(lab, iv, shuffle_seed)
        what = f"exact match of greedy translations of {N_TRANSLATE} held-out sentences"
    else:
        a, b = lm_figures(lab, None), lm_figures(lab, iv, shuffle_seed)
        what = f"cross-entropy on {N_CE} held-out sentences, agreement on {N_AGREE} items"
    return [(k, a[k], b[k]) for k in a], what, time.perf_counter() - t0


# ----------------------------------------------------------------------------- the word-order demonstration
@dataclass
class OrderDemo:
    a: str
    b: str
    rows: list[tuple[str, float, float, bool]]   # (condition, max |logit difference| at the last position,
                                                 #  max |attention difference| after reordering, equal within tol)
    translations: list[tuple[str, str, str]] = field(default_factory=list)   # translator: (condition, a, b)
    tol: float = 1e-4


@torch.inference_mode()
def word_order_demo(lab, a: str = "the dog chased the cat .", b: str = "the cat chased the dog .") -> OrderDemo:
    """Run two texts with the same words in another order, intact and without positions, and measure
    how different the model's outputs are once the second run is put back in the first's order.

    For the LM the two texts must end with the same token (so the last position predicts from the same
    word); the comparison is made with the causal mask (as the model runs) and without it (then the
    self-attention sees a set, and identical outputs are expected without positions)."""
    if not _is_builtin_transformer(lab):
        raise InputError(supported(lab) if isinstance(supported(lab), str) else "Built-in Transformers only.")
    m, dev = lab.module, lab.device
    seq2seq = isinstance(m, Seq2SeqTransformer)
    ta, tb = lab.tokenize(a), lab.tokenize(b)
    if sorted(ta.ids) != sorted(tb.ids):
        raise InputError("The two texts must contain the same words in a different order.")
    perm = _matching_perm(ta.ids, tb.ids)                     # tb.ids[i] == ta.ids[perm[i]]
    xa, xb = torch.tensor([ta.ids], device=dev), torch.tensor([tb.ids], device=dev)
    rows, trans = [], []
    conds = [("intact", Interventions()), ("no positional encoding", Interventions(no_positions=True))]
    if not seq2seq:
        conds += [("no causal mask", Interventions(no_causal_mask=True)),
                  ("no positions and no causal mask", Interventions(no_positions=True, no_causal_mask=True))]
    for name, iv in conds:
        if seq2seq:
            ma = m.encode(xa, interventions=iv)
            mb = m.encode(xb, interventions=iv)
            diff_h = float((mb[0] - ma[0][perm]).abs().max())            # encoder output, reordered
            ya, yb = _greedy(lab, ta.ids, iv), _greedy(lab, tb.ids, iv)
            trans.append((name, lab.decode(ya[1:]), lab.decode(yb[1:])))
            oa = m(xa, torch.tensor([ya], device=dev), trace=True, interventions=iv)
            ob = m(xb, torch.tensor([ya], device=dev), trace=True, interventions=iv)
            att_a = torch.cat([t.weights for t in oa.trace.attention["encoder"]])
            att_b = torch.cat([t.weights for t in ob.trace.attention["encoder"]])[:, :, perm][:, :, :, perm]
            diff_att = float((att_a - att_b).abs().max())
            diff_logit = float((oa.logits - ob.logits).abs().max())       # decoder: same target, reordered source
            diff_att = max(diff_att, diff_h)                              # encoder states count too
            rows.append((name, diff_logit, diff_att, diff_logit < 1e-4 and diff_att < 1e-4))
        else:
            oa = m(xa, trace=True, interventions=iv)
            ob = m(xb, trace=True, interventions=iv)
            diff_logit = float((oa.logits[0, -1] - ob.logits[0, -1]).abs().max())
            att_a = torch.cat([t.weights for t in oa.trace.attention["self"]])
            att_b = torch.cat([t.weights for t in ob.trace.attention["self"]])[:, :, perm][:, :, :, perm]
            diff_att = float((att_a - att_b).abs().max())
            rows.append((name, diff_logit, diff_att, diff_logit < 1e-4 and diff_att < 1e-4))
    return OrderDemo(a, b, rows, trans)


def _matching_perm(a: list[int], b: list[int]) -> list[int]:
    """perm with b[i] == a[perm[i]]; equal tokens matched in order."""
    used, perm = set(), []
    for t in b:
        j = next(j for j, s in enumerate(a) if s == t and j not in used)
        used.add(j)
        perm.append(j)
    return perm
