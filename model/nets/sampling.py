"""Choosing the next token: temperature, top-k, top-p (nucleus) and greedy, one stage at a time.

The stages run in the same order and with the same rules as Hugging Face `transformers`'
logits processors (TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper):

1. temperature: logits / T. T < 1 sharpens the distribution, T > 1 flattens it.
2. top-k: keep every token whose scaled logit is >= the k-th largest one (so tokens tied
   with the k-th are all kept); the rest get -inf.
3. top-p: on what top-k left, sort ascending, take the cumulative softmax, and remove the
   tokens whose cumulative probability is <= 1 - p. What stays is the smallest set of the
   most likely tokens whose mass reaches p; the token that crosses p is kept, and at least
   one token always stays.
4. softmax of what is left: the final distribution, from which a token is drawn.

`distribution()` returns every stage so a page can show what each one did; `sample()` draws
from the final distribution with a seeded generator, so the same seed gives the same draws.
top_k=0 and top_p=1.0 mean "off"; greedy=True puts all the mass on the argmax.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..errors import SamplingError


@dataclass(frozen=True)
class Knob:
    """One setting's range, default, step and words: what every slider, link and the browser's chart read."""

    name: str                 # the keyword of `distribution()`
    key: str                  # its name in a page's address (?t=0.7), after the panel's prefix
    label: str                # a slider's label
    lo: float
    hi: float | None          # None: the vocabulary size (top-k)
    default: float            # also the value that means "off" for top-k (0) and top-p (1)
    step: float
    hint: str                 # one line under a slider

    def top(self, vocab_size: int | None = None) -> float:
        """The upper end of the range (the vocabulary size for top-k)."""
        if self.hi is not None:
            return self.hi
        if vocab_size is None:
            raise ValueError(f"{self.name}'s range ends at the vocabulary size: give vocab_size")
        return vocab_size

    def valid(self, value: Any, vocab_size: int | None = None) -> bool:
        """Whether `value` is a finite number of the right kind inside the range (what a link may set)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.step == 1 and value != int(value):
            return False
        return self.lo <= value <= self.top(vocab_size)

    def clamp(self, value: Any, vocab_size: int | None = None) -> float | int:
        """`value` moved into the range (whole numbers for top-k); anything not a finite number is the default."""
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
        v = min(self.top(vocab_size), max(self.lo, value if ok else self.default))
        return int(round(v)) if self.step == 1 else round(float(v), 6)


@dataclass(frozen=True)
class SamplingSettings:
    """Temperature, top-k and top-p, with their ranges written once: the pages' sliders, the address and the
    live chart's browser sliders (which get `ranges()` in the component's data) all read these knobs.

        s = SamplingSettings.clamped(vocab_size=V, temperature=9.0)     # temperature 3.0, top-k 0, top-p 1.0
        distribution(logits, **s.as_kwargs())
    """

    temperature: float = 1.0
    top_k: int = 0            # 0 = off
    top_p: float = 1.0        # 1.0 = off

    TEMPERATURE: ClassVar[Knob] = Knob("temperature", "t", "Temperature", 0.05, 3.0, 1.0, 0.01,
                                       "divides the logits: < 1 sharper, > 1 flatter")
    TOP_K: ClassVar[Knob] = Knob("top_k", "k", "Top-k (0 = off)", 0, None, 0, 1,
                                 "keep the k most likely words (0 = off)")
    TOP_P: ClassVar[Knob] = Knob("top_p", "p", "Top-p (1 = off)", 0.05, 1.0, 1.0, 0.01,
                                 "keep the most likely words until their mass reaches p (1 = off)")
    KNOBS: ClassVar[tuple[Knob, ...]] = (TEMPERATURE, TOP_K, TOP_P)

    @classmethod
    def clamped(cls, vocab_size: int, temperature: Any = None, top_k: Any = None, top_p: Any = None
                ) -> "SamplingSettings":
        """Settings from any values (a link, the browser, a caller): each moved into its range, a missing or
        non-numeric one at its default."""
        got = dict(temperature=temperature, top_k=top_k, top_p=top_p)
        return cls(**{k.name: k.clamp(got[k.name], vocab_size) for k in cls.KNOBS})

    def as_kwargs(self) -> dict:
        """Keyword arguments for `distribution`."""
        return asdict(self)

    @classmethod
    def ranges(cls, vocab_size: int) -> dict[str, dict]:
        """Each knob as plain data for the browser: min, max, step, default, label, hint."""
        return {k.name: {"min": k.lo, "max": k.top(vocab_size), "step": k.step, "default": k.default,
                         "label": k.label, "hint": k.hint} for k in cls.KNOBS}


@dataclass(frozen=True)
class Distribution:
    logits: Tensor          # (V,) raw logits, float32, CPU
    raw_probs: Tensor       # softmax(logits)
    scaled_probs: Tensor    # softmax(logits / temperature)
    topk_keep: Tensor       # bool (V,): survives top-k (all True when off)
    topp_keep: Tensor       # bool (V,): survives top-p, applied after top-k (all True when off)
    keep: Tensor            # bool (V,): the final support
    probs: Tensor           # (V,) final renormalised distribution, zero outside `keep`
    temperature: float
    top_k: int
    top_p: float
    greedy: bool
    entropy: float          # nats, of probs
    raw_entropy: float      # nats, of raw_probs
    removed_mass: float     # mass of scaled_probs cut by top-k and top-p together
    removed_by_topk: float
    removed_by_topp: float

    def top(self, n: int = 10) -> list[tuple[int, float]]:
        """The n most likely tokens of the final distribution (ties broken by the scaled probability)."""
        order = torch.argsort(self.probs * 2 + self.scaled_probs, descending=True)[:n]
        return [(int(i), float(self.probs[i])) for i in order]


def _entropy(p: Tensor) -> float:
    nz = p[p > 0]
    return float(-(nz * nz.log()).sum())


def _validate(logits, temperature, top_k, top_p) -> Tensor:
    try:
        x = torch.as_tensor(logits).detach()
    except (TypeError, ValueError, RuntimeError) as e:
        raise SamplingError(f"logits must be a 1-D list of numbers ({e})") from e
    if x.dim() != 1:
        raise SamplingError(f"logits must be 1-D (one score per vocabulary word); got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise SamplingError("logits are empty: the vocabulary has no words")
    x = x.float().cpu()
    if torch.isnan(x).any() or (x == float("inf")).any():
        raise SamplingError("logits contain NaN or +inf")
    if not torch.isfinite(x).any():
        raise SamplingError("every logit is -inf: no token can be chosen")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not math.isfinite(temperature) \
            or temperature <= 0:
        raise SamplingError(f"temperature must be a number > 0 (got {temperature!r}). "
                            "For always picking the most likely token, use greedy decoding.")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise SamplingError(f"top_k must be a whole number >= 0, where 0 means off (got {top_k!r})")
    if isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not (0 < top_p <= 1):
        raise SamplingError(f"top_p must be in (0, 1], where 1 means off (got {top_p!r})")
    return x


def _nucleus_exact(after_k: Tensor, top_p: float) -> Tensor:
    """TopPLogitsWarper, step for step: a full ascending sort and cumulative softmax."""
    sorted_logits, sorted_idx = torch.sort(after_k, descending=False)
    cum = sorted_logits.softmax(-1).cumsum(-1)
    remove_sorted = cum <= (1 - top_p)
    remove_sorted[-1:] = False                                      # always keep the most likely token
    return ~torch.zeros_like(remove_sorted).scatter(0, sorted_idx, remove_sorted)


def _nucleus_fast(after_k: Tensor, top_p: float) -> Tensor | None:
    """The same keep-set from a partial sort of the most likely tokens (the nucleus is usually small).

    A token is kept when the mass of the tokens more likely than it is < p (the ascending form
    above says: cumulative mass up to and including it > 1 - p). Returns None, so the exact
    path runs, when a tie straddles the cut (which tied token survives is then the sort's choice).
    """
    V = after_k.numel()
    # In float64: at a low temperature the scaled logits are huge (x / 1e-6 ~ 1e7), and float32's
    # `vals - lse` there loses whole units, so the masses would no longer add up to 1 (tokens kept
    # that transformers drops). float64 keeps ~1e-8 absolute error on that difference.
    lse = torch.logsumexp(after_k.double(), 0)
    m = min(V, 256)
    while True:
        vals, idx = torch.topk(after_k, m)                          # descending
        pr = (vals.double() - lse).exp()
        before = pr.cumsum(0) - pr                                  # mass strictly ahead of each token
        n_keep = int(((before < top_p) & torch.isfinite(vals)).sum())
        if n_keep < m or m == V:
            break
        m = min(V, m * 4)
    if n_keep < m and vals[n_keep - 1] == vals[n_keep]:
        return None
    edge = before[max(n_keep - 1, 0): n_keep + 1]
    if (edge - top_p).abs().min() < 1e-5:                         # too close to call in float32: be exact
        return None
    return torch.zeros(V, dtype=torch.bool).index_fill_(0, idx[:n_keep], True)


def distribution(logits, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                 greedy: bool = False) -> Distribution:
    """Every stage from raw logits to the final distribution. See the module docstring."""
    x = _validate(logits, temperature, top_k, top_p)
    V = x.numel()
    scaled = x / temperature
    raw_probs = x.softmax(-1)
    scaled_probs = scaled.softmax(-1)
    ninf = torch.tensor(float("-inf"))

    topk_keep = torch.ones(V, dtype=torch.bool)
    if 0 < top_k < V:
        kth = torch.topk(scaled, top_k).values[-1]
        topk_keep = scaled >= kth                                   # ties with the k-th are kept
    after_k = torch.where(topk_keep, scaled, ninf)

    topp_keep = torch.ones(V, dtype=torch.bool)
    if top_p < 1.0:
        topp_keep = _nucleus_fast(after_k, top_p)
        if topp_keep is None:
            topp_keep = _nucleus_exact(after_k, top_p)
    keep = topk_keep & topp_keep

    if greedy:
        best = int(torch.argmax(scaled))
        probs = torch.zeros(V)
        probs[best] = 1.0
    else:
        probs = torch.where(keep, after_k, ninf).softmax(-1)
    by_k = float(scaled_probs[~topk_keep].sum())
    by_p = float(scaled_probs[topk_keep & ~topp_keep].sum())
    return Distribution(logits=x, raw_probs=raw_probs, scaled_probs=scaled_probs, topk_keep=topk_keep,
                        topp_keep=topp_keep, keep=probs > 0 if greedy else keep, probs=probs,
                        temperature=float(temperature), top_k=int(top_k), top_p=float(top_p), greedy=bool(greedy),
                        entropy=_entropy(probs), raw_entropy=_entropy(raw_probs), removed_mass=by_k + by_p,
                        removed_by_topk=by_k, removed_by_topp=by_p)


def sample(dist, n: int = 1, seed: int | None = None) -> Tensor:
    """n token ids (with replacement) from a Distribution's final probabilities, or from a (V,) vector of
    probabilities (torch or numpy) as a view holds them; the same seed gives the same draws."""
    if n < 1:
        raise SamplingError(f"the number of draws must be at least 1 (got {n})")
    probs = torch.as_tensor(dist.probs if isinstance(dist, Distribution) else dist)
    if isinstance(dist, Distribution) and dist.greedy:
        return torch.full((n,), int(torch.argmax(probs)), dtype=torch.long)
    g = torch.Generator().manual_seed(int(seed)) if seed is not None else None
    return torch.multinomial(probs, n, replacement=True, generator=g)


def sample_counts(dist, n: int, seed: int | None = None) -> Tensor:
    """(V,) how many of n seeded draws fell on each token (from a Distribution or a probability vector)."""
    probs = dist.probs if isinstance(dist, Distribution) else dist
    return torch.bincount(sample(dist, n, seed), minlength=len(probs))
