"""Why RNNs forget: three measurements, computed here and drawn by viz/experiments.py.

1. `gradient_profile`: the norm of the gradient of the loss at the last word with respect to the
   hidden state at each earlier position, averaged over long texts. In a tanh RNN it is a product
   of one Jacobian W_hh^T diag(1 - h_t^2) per step, so it shrinks (or blows up) geometrically with
   distance; the LSTM's additive cell path and the Transformer's direct attention paths do not
   have to.
2. `agreement_by_distance`: "the keys to the box near the cups ... are": subject-verb agreement
   with a growing number of words in between, for any language models sharing the built-in
   vocabulary.
3. `time_per_token`: training time per token (forward, backward, optimiser step) against the
   sequence length.

All functions take modules (TransformerLM, LSTMLM, RNNLM) and the word tokenizer; nothing is
stored on a module.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..nets.lstm import LSTMLM
from ..nets.rnn import RNNLM
from ..hooks import HookRun
from ..nets.transformer import TransformerLM


# ----------------------------------------------------------------------------- 1. gradients
def _unroll_rnn(module: RNNLM, x: Tensor, layer: int) -> tuple[Tensor, list[Tensor]]:
    """Top-layer outputs (B, T, U) and the chosen layer's h_t as separate graph nodes."""
    inp, chosen = x, []
    for k in range(module.cfg.n_layers):
        w_ih, w_hh, b_ih, b_hh = module.layer_weights(k)
        xs = inp @ w_ih.T + b_ih
        h = x.new_zeros(x.size(0), module.cfg.d_hidden)
        hs = []
        for t in range(x.size(1)):
            h = torch.tanh(xs[:, t] + h @ w_hh.T + b_hh)
            hs.append(h)
        if k == layer:
            chosen = hs
        inp = torch.stack(hs, 1)
    return inp, chosen


def _unroll_lstm(module: LSTMLM, x: Tensor, layer: int) -> tuple[Tensor, list[Tensor]]:
    lstm, U = module.lstm, module.cfg.d_hidden
    inp, chosen = x, []
    for k in range(module.cfg.n_layers):
        w_ih, w_hh = getattr(lstm, f"weight_ih_l{k}"), getattr(lstm, f"weight_hh_l{k}")
        b = getattr(lstm, f"bias_ih_l{k}") + getattr(lstm, f"bias_hh_l{k}")
        xs = inp @ w_ih.T + b
        h = c = x.new_zeros(x.size(0), U)
        hs = []
        for t in range(x.size(1)):
            z = xs[:, t] + h @ w_hh.T
            i, f, g, o = (z[:, j * U:(j + 1) * U] for j in range(4))
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            hs.append(h)
        if k == layer:
            chosen = hs
        inp = torch.stack(hs, 1)
    return inp, chosen


def hidden_gradients(module: nn.Module, ids: Tensor, layer: int = 0) -> np.ndarray:
    """(B, T-1): ||d loss / d h_t|| for t = 0 .. T-2, where the loss is the cross-entropy of the
    last token ids[:, -1] predicted at position T-2. h_t is the chosen layer's hidden state
    (RNN, LSTM) or, for a Transformer, the residual stream after the embeddings."""
    module = module.eval()
    ids = ids.to(next(module.parameters()).device)
    x_ids, target = ids[:, :-1], ids[:, -1]
    with torch.enable_grad():
        if isinstance(module, RNNLM):
            top, hs = _unroll_rnn(module, module.embed(x_ids), layer)
            logits = module.head(top[:, -1])
        elif isinstance(module, LSTMLM):
            top, hs = _unroll_lstm(module, module.embed(x_ids), layer)
            logits = module.head(top[:, -1])
        elif isinstance(module, TransformerLM):
            run = HookRun(record={"blocks.0.resid_pre"})               # the residual stream after the embeddings
            logits = module(x_ids, hooks=run).logits[:, -1]
            hs = [run.cache["blocks.0.resid_pre"]]
        else:
            raise TypeError(f"no gradient profile for {type(module).__name__}")
        loss = F.cross_entropy(logits.float(), target, reduction="sum")   # sentences independent: per-row grads
        grads = torch.autograd.grad(loss, hs)
    if isinstance(module, TransformerLM):
        return grads[0].norm(dim=-1).detach().cpu().numpy()
    return torch.stack([g.norm(dim=-1) for g in grads], 1).detach().cpu().numpy()


@dataclass
class GradientProfile:
    distance: np.ndarray        # (D,) words back from the position that predicts the last word (0 = that one)
    norm: np.ndarray            # (D,) mean over the texts of ||d loss / d h||, > 0
    texts: int
    length: int


def long_texts(tok, n: int = 8, length: int = 40, seed: int = 0) -> Tensor:
    """(n, length) ids: held-out sentences of the built-in corpus run together, each from a [BOS]."""
    from . import corpora

    _, held = corpora.lm_datasets(30000, 2000, 0)
    docs = [tok.encode(s, add_bos=True, add_eos=True).ids for s in held]
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        i, ids = rng.randrange(len(docs)), []
        while len(ids) < length:
            ids += docs[i % len(docs)]
            i += 1
        rows.append(ids[:length])
    return torch.tensor(rows)


def gradient_profile(module: nn.Module, ids: Tensor, layer: int = 0) -> GradientProfile:
    g = hidden_gradients(module, ids, layer)                         # (B, T-1), position t
    norm = g.mean(0)[::-1].copy()                                    # distance 0 = position T-2
    return GradientProfile(np.arange(len(norm)), norm, ids.size(0), ids.size(1))


def gradient_profiles(models: dict[str, nn.Module], tok, n: int = 8, length: int = 48, seed: int = 0
                      ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (distance, mean gradient norm) on the same n held-out texts of `length` tokens."""
    ids = long_texts(tok, n, length, seed)
    out = {}
    for name, m in models.items():
        p = gradient_profile(m, ids)
        out[name] = (p.distance, p.norm)
    return out


def decay_per_word(profiles: dict[str, tuple[np.ndarray, np.ndarray]], start: int = 1) -> dict[str, float]:
    """name -> the factor by which the gradient norm shrinks per word back: exp of the least-squares slope of
    log(norm) against distance, from `start` words back (1: after the word right before the prediction). Below 1
    the gradient vanishes geometrically; after d words it is about factor ** d of what it was."""
    out = {}
    for name, (d, norm) in profiles.items():
        keep = (d >= start) & (norm > 0)
        out[name] = float(np.exp(np.polyfit(d[keep], np.log(norm[keep]), 1)[0]))
    return out


# ----------------------------------------------------------------------------- 1b. the same over training seeds
SEEDS_FILE = Path(__file__).with_name("forgetting_seeds.json")
SEED_KINDS = ("rnn", "lstm")


def corpus_fingerprint() -> str:
    """A short hash of what a seed's training and profile depend on besides the code's numbers: the tokenizer and
    the corpus (if either changes, the stored seeds are stale and `python -m model.teaching.forgetting` remakes them)."""
    import hashlib

    from ..training.jobs import corpus, tokenizer

    train, held = corpus()
    h = hashlib.sha256(str(tokenizer().vocab_size).encode())
    for doc in (*train[:2000], *held):
        h.update(bytes(str(doc), "ascii"))
    return h.hexdigest()[:16]


def train_lm(kind: str, seed: int, preset: str = "quick") -> nn.Module:
    """A model of the Train page's preset, trained in this process as a training job trains it (the same batches of
    windows, learning-rate warm-up, AdamW, gradient clipping), on one CPU thread so that a seed gives the same
    weights every time. Seconds for the quick preset."""
    from ..training.jobs import PRESETS, build_model, corpus, tokenizer, train_step, windows

    p, tok = PRESETS[preset], tokenizer()
    train_docs, _ = corpus()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        m, _ = build_model(kind, p, tok.vocab_size, tok.pad_id)
        m.train()
        opt = torch.optim.AdamW(m.parameters(), lr=p.lr[kind], betas=(0.9, 0.98), weight_decay=0.0)
        rng = random.Random(seed)
        for step in range(p.steps):
            for g in opt.param_groups:
                g["lr"] = p.lr[kind] * min(1.0, (step + 1) / p.warmup)
            train_step(m, opt, windows(train_docs, p.seq_len, p.batch, rng), tok.pad_id)
    finally:
        torch.set_num_threads(threads)
    return m.eval()


def seed_profiles(seeds=tuple(range(9)), preset: str = "quick", kinds=SEED_KINDS, n: int = 8, length: int = 48,
                  text_seed: int = 0, log=None) -> dict:
    """Train each kind once per seed and measure its gradient profile on the same n held-out texts.
    -> a JSON-able dict (what SEEDS_FILE holds): the settings, and kind -> one list of norms per seed."""
    from ..training.jobs import tokenizer

    tok = tokenizer()
    ids = long_texts(tok, n, length, text_seed)
    norms: dict[str, list[list[float]]] = {k: [] for k in kinds}
    distance = None
    for s in seeds:
        for k in kinds:
            t0 = time.perf_counter()
            p = gradient_profile(train_lm(k, s, preset), ids)
            distance = p.distance
            norms[k].append([float(v) for v in p.norm])
            if log:
                log(f"seed {s} {k}: {time.perf_counter() - t0:.1f} s")
    return {"preset": preset, "seeds": list(seeds), "texts": n, "length": length, "text_seed": text_seed,
            "fingerprint": corpus_fingerprint(), "torch": torch.__version__,
            "distance": [int(d) for d in distance], "norm": norms}


def load_seed_profiles(path: Path | str = SEEDS_FILE) -> dict:
    import json

    return json.loads(Path(path).read_text())


def _first_for_good(below: np.ndarray) -> float:
    """The smallest index from which `below` is True to the end; nan if its last value is False."""
    if not below[-1]:
        return float("nan")
    i = len(below)
    while i > 0 and below[i - 1]:
        i -= 1
    return float(i)


@dataclass
class SeedBands:
    """RNN against LSTM over training seeds, from stored or fresh `seed_profiles`."""
    distance: np.ndarray               # (D,) words back from the position that predicts the last word
    seeds: list[int]
    rel: dict[str, np.ndarray]         # kind -> (S, D) gradient norm / its value at distance 0: what is left
    slope: dict[str, np.ndarray]       # kind -> (S,) least-squares slope of ln(norm) per word back, from 1 word back
    separation: np.ndarray             # (S,) from how many words back the RNN's rel stays below the LSTM's (nan: never)

    def band(self, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(min, median, max) over seeds at each distance of what is left of the gradient."""
        r = self.rel[kind]
        return r.min(0), np.median(r, 0), r.max(0)

    def left_at(self, kind: str, distance: int) -> float:
        """The median over seeds of what is left of the gradient `distance` words back."""
        return float(np.median(self.rel[kind][:, int(np.flatnonzero(self.distance == distance)[0])]))

    def slope_range(self, kind: str) -> tuple[float, float, float]:
        """(min, median, max) over seeds of the slope of ln(gradient norm) per word back."""
        v = self.slope[kind]
        return float(v.min()), float(np.median(v)), float(v.max())

    def fall_range(self, kind: str) -> tuple[float, float, float]:
        """(min, median, max) over seeds of how much ln(gradient norm) falls per word back (minus the slope)."""
        lo, mid, hi = self.slope_range(kind)
        return -hi, -mid, -lo

    @property
    def separated(self) -> bool:
        """Whether the RNN ends below the LSTM for good in at least one seed."""
        return bool(np.isfinite(self.separation).any())

    def mostly_below(self, kind: str, other: str, lo: int, hi: int | None = None) -> bool:
        """Whether in more than half of the seeds `kind` keeps less than `other` at every distance lo..hi."""
        return 2 * self.below(kind, other, lo, hi) > len(self.seeds)

    def separation_range(self) -> tuple[float, float, float]:
        """(min, median, max) over the seeds where the RNN ends below the LSTM of the distance from which it stays
        below (nan, nan, nan if it never does)."""
        v = self.separation[np.isfinite(self.separation)]
        return (float(v.min()), float(np.median(v)), float(v.max())) if len(v) else (float("nan"),) * 3

    def below(self, kind: str, other: str, lo: int, hi: int | None = None) -> int:
        """In how many seeds `kind` has less of its gradient left than `other` at every distance lo..hi (to the
        farthest measured if hi is None)."""
        keep = (self.distance >= lo) & (self.distance <= (self.distance.max() if hi is None else hi))
        return int(((self.rel[kind] < self.rel[other])[:, keep]).all(1).sum())


def seed_bands(data: dict) -> SeedBands:
    d = np.asarray(data["distance"])
    norm = {k: np.asarray(v, dtype=float) for k, v in data["norm"].items()}
    rel = {k: v / v[:, :1] for k, v in norm.items()}
    slope = {k: np.array([np.log(decay_per_word({k: (d, row)})[k]) for row in v]) for k, v in norm.items()}
    sep = np.array([_first_for_good(r < l) for r, l in zip(rel["rnn"], rel["lstm"])])
    return SeedBands(d, list(data["seeds"]), rel, slope, sep)


# ----------------------------------------------------------------------------- 2. agreement by distance
def distance_items(distance: int, n: int, seed: int = 0) -> list[dict]:
    """Agreement prefixes with exactly `distance` words between the subject noun and the verb.

    "the keys" + distance/3 phrases "PREP the NOUN" (each noun singular or plural at random, so about
    half are attractors of the opposite number) ; distance must be a multiple of 3."""
    from .corpora import OBJECTS, PREPS

    if distance % 3:
        raise ValueError("distance must be a multiple of 3 (phrases of three words)")
    rng = random.Random(seed * 1009 + distance)
    items = []
    for _ in range(n):
        num = rng.randrange(2)
        words = ["the", rng.choice(OBJECTS)[num]]
        for _ in range(distance // 3):
            words += [rng.choice(PREPS), "the", rng.choice(OBJECTS)[rng.randrange(2)]]
        forms = rng.choice([("is", "are"), ("was", "were")])
        items.append({"prefix": " ".join(words), "correct": forms[num], "wrong": forms[1 - num]})
    return items


@torch.inference_mode()
def agreement_accuracy(module: nn.Module, tok, items: list[dict]) -> float:
    """Share of items where the model gives the correct verb more probability than the wrong one."""
    module = module.eval()
    dev = next(module.parameters()).device
    seqs = [tok.encode(it["prefix"], add_bos=True).ids for it in items]
    n = max(len(s) for s in seqs)
    x = torch.tensor([s + [tok.pad_id] * (n - len(s)) for s in seqs], device=dev)   # right padding: causal, harmless
    logits = module(x).logits
    row = logits[torch.arange(len(seqs), device=dev), torch.tensor([len(s) - 1 for s in seqs], device=dev)]
    good = torch.tensor([tok.encode(it["correct"]).ids[0] for it in items], device=dev)
    bad = torch.tensor([tok.encode(it["wrong"]).ids[0] for it in items], device=dev)
    return float((row.gather(1, good[:, None]) > row.gather(1, bad[:, None])).float().mean())


def agreement_by_distance(models: dict[str, nn.Module], tok, distances=tuple(range(0, 25, 3)), n: int = 100,
                          seed: int = 0) -> dict[str, np.ndarray]:
    """name -> accuracy at each distance (the same items for every model)."""
    items = {d: distance_items(d, n, seed) for d in distances}
    return {name: np.array([agreement_accuracy(m, tok, items[d]) for d in distances]) for name, m in models.items()}


# ----------------------------------------------------------------------------- 3. time per token
def time_per_token(lengths=(16, 32, 64, 128), preset: str = "quick", batch: int = 8, reps: int = 3,
                   kinds=("transformer", "lstm", "rnn")) -> dict[str, np.ndarray]:
    """model label -> seconds per token of one training step (forward, backward, AdamW) at each length.

    Fresh models of the preset's sizes (time does not depend on the weights' values), random ids,
    one warm-up step, then the fastest of `reps` timed steps."""
    from ..training.jobs import LABELS, build_model, tokenizer, train_step

    tok = tokenizer()
    models, opts = {}, {}
    for k in kinds:
        torch.manual_seed(0)
        models[k], _ = build_model(k, preset, tok.vocab_size, tok.pad_id, max_len=max(lengths) + 1)
        models[k].train()
        opts[k] = torch.optim.AdamW(models[k].parameters(), lr=1e-4)
    best = {k: [float("inf")] * len(lengths) for k in kinds}
    for j, T in enumerate(lengths):
        x = torch.randint(4, tok.vocab_size, (batch, T + 1))
        for k in kinds:                                   # warm-up at this length
            train_step(models[k], opts[k], x, tok.pad_id)
        for _ in range(reps):                             # interleaved, so a busy machine slows all alike
            for k in kinds:
                t0 = time.perf_counter()
                train_step(models[k], opts[k], x, tok.pad_id)
                best[k][j] = min(best[k][j], time.perf_counter() - t0)
    return {LABELS[k]: np.array(v) / (batch * np.array(lengths)) for k, v in best.items()}


# ----------------------------------------------------------------------------- the stored seeds
if __name__ == "__main__":                  # python -m model.teaching.forgetting [--seeds 9]: remake SEEDS_FILE
    import argparse
    import json

    ap = argparse.ArgumentParser(description="Train the quick preset's RNN and LSTM once per seed and store their "
                                             "gradient profiles for the Train page.")
    ap.add_argument("--seeds", type=int, default=9)
    ap.add_argument("--out", default=str(SEEDS_FILE))
    a = ap.parse_args()
    t0 = time.perf_counter()
    data = seed_profiles(tuple(range(a.seeds)), log=print)
    Path(a.out).write_text(json.dumps(data, indent=1) + "\n")
    b = seed_bands(data)
    print(f"{time.perf_counter() - t0:.0f} s; slopes " + ", ".join(f"{k} {np.median(v):.3f}" for k, v in b.slope.items())
          + f"; separation {b.separation}")
