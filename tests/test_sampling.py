"""Sampling against transformers' logits processors, plus the invariants a page relies on."""
import math

import pytest
import torch
from transformers import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from model.nets.sampling import SamplingError, distribution, sample, sample_counts

pytestmark = pytest.mark.unit


def hf_processed(logits, t, k, p):
    """What transformers does: temperature, then top-k, then top-p (each only when active)."""
    x = logits[None].clone()
    ids = torch.zeros(1, 1, dtype=torch.long)
    x = TemperatureLogitsWarper(t)(ids, x)
    if k > 0:
        x = TopKLogitsWarper(k)(ids, x)
    if p < 1.0:
        x = TopPLogitsWarper(p)(ids, x)
    return x[0]


def cases():
    g = torch.Generator().manual_seed(0)
    for i in range(150):
        V = int(torch.randint(2, 400, (1,), generator=g))
        scale = float(torch.rand(1, generator=g)) * 6
        logits = torch.randn(V, generator=g) * scale
        if i % 3 == 0:                                   # many exact ties
            logits = torch.round(logits)
        t = [0.3, 0.7, 1.0, 1.8][i % 4]
        k = [0, 1, 3, 10, V + 5][i % 5]
        p = [1.0, 0.95, 0.6, 0.1, 0.999][(i // 5) % 5]
        yield logits, t, k, p


@pytest.mark.parametrize("logits,t,k,p", list(cases()))
def test_keep_sets_and_probs_match_transformers(logits, t, k, p):
    d = distribution(logits, temperature=t, top_k=k, top_p=p)
    ref = hf_processed(logits, t, k, p)
    assert torch.equal(d.keep, torch.isfinite(ref)), "keep-set differs from transformers'"
    torch.testing.assert_close(d.probs, ref.softmax(-1), atol=1e-6, rtol=1e-5)
    assert d.probs.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert (d.probs[~d.keep] == 0).all()
    assert d.removed_mass == pytest.approx(1 - d.scaled_probs[d.keep].sum().item(), abs=1e-5)
    assert d.removed_mass == pytest.approx(d.removed_by_topk + d.removed_by_topp, abs=1e-6)


def low_temperature_cases():
    """Temperatures down to the smallest the lab offers through the API (1e-6), logits with many exact ties."""
    g = torch.Generator().manual_seed(1)
    for i in range(160):
        V = 50257 if i % 40 == 0 else int(torch.randint(2, 500, (1,), generator=g))
        logits = torch.round(torch.randn(V, generator=g) * (1 + float(torch.rand(1, generator=g)) * 7) * 2) / 2
        t = [1e-3, 3e-4, 1e-4, 1e-5, 1e-6][i % 5]
        k = [0, 1, 2, 3, V + 5][(i // 5) % 5]
        p = [0.95, 0.5, 0.34, 0.1, 0.999, 0.67][(i // 25) % 6]
        yield logits, t, k, p


@pytest.mark.parametrize("logits,t,k,p", list(low_temperature_cases()))
def test_keep_sets_and_probs_match_transformers_at_low_temperature_with_ties(logits, t, k, p):
    d = distribution(logits, temperature=t, top_k=k, top_p=p)
    ref = hf_processed(logits, t, k, p)
    assert torch.equal(d.keep, torch.isfinite(ref)), "keep-set differs from transformers'"
    torch.testing.assert_close(d.probs, ref.softmax(-1), atol=1e-6, rtol=1e-5)


def test_tied_top_words_at_temperature_1e_6_keep_only_the_ties():
    # 9 words tied at the top, the rest far below: at T = 1e-6 the others have probability 0 and
    # top-p 0.95 must keep exactly the 9 (a float32 log-sum-exp at logits / 1e-6 ~ 2e6 used to make
    # the 9 masses add up to < 0.95, so every word of the vocabulary was kept).
    logits = torch.cat([torch.full((9,), 2.0), torch.linspace(-3.0, 1.0, 100)])
    d = distribution(logits, temperature=1e-6, top_p=0.95)
    assert d.keep.tolist() == [True] * 9 + [False] * 100
    assert torch.equal(d.keep, torch.isfinite(hf_processed(logits, 1e-6, 0, 0.95)))


def test_two_tied_words_at_temperature_1e_3_and_top_p_half_keep_one_as_transformers_does():
    # Two tied words hold 0.5 each: transformers removes the first of them in its ascending sort.
    logits = torch.tensor([1.0, 3.0, 0.5, 3.0, -2.0])
    d = distribution(logits, temperature=1e-3, top_k=2, top_p=0.5)
    ref = hf_processed(logits, 1e-3, 2, 0.5)
    assert int(d.keep.sum()) == 1 and torch.equal(d.keep, torch.isfinite(ref))
    torch.testing.assert_close(d.probs, ref.softmax(-1), atol=1e-6, rtol=0)


def test_top_k_keeps_ties_at_cutoff():
    logits = torch.tensor([3.0, 2.0, 2.0, 2.0, 1.0, 0.0])
    d = distribution(logits, top_k=2)
    assert d.keep.tolist() == [True, True, True, True, False, False]      # the k-th value is tied 3 ways
    assert torch.equal(d.keep, torch.isfinite(hf_processed(logits, 1.0, 2, 1.0)))


def test_top_p_keeps_the_token_that_crosses_p():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    d = distribution(probs.log(), top_p=0.6)
    assert d.keep.tolist() == [True, True, False, False]    # 0.5 < 0.6, so the 0.3 token (crossing) stays
    d = distribution(probs.log(), top_p=0.45)
    assert d.keep.tolist() == [True, False, False, False]   # 0.5 reaches p alone
    d = distribution(probs.log(), top_p=0.5)                # exactly on the edge: whatever transformers does
    assert torch.equal(d.keep, torch.isfinite(hf_processed(probs.log(), 1.0, 0, 0.5)))
    d = distribution(probs.log(), top_p=0.05)
    assert d.keep.tolist() == [True, False, False, False]   # at least one token always stays


def test_large_vocabulary_fast_path_matches_transformers():
    g = torch.Generator().manual_seed(3)
    for p in (0.5, 0.9, 0.99):
        logits = torch.randn(50257, generator=g) * 3
        d = distribution(logits, temperature=0.8, top_p=p)
        assert torch.equal(d.keep, torch.isfinite(hf_processed(logits, 0.8, 0, p)))


def test_low_temperature_tends_to_argmax_and_greedy_is_exact():
    logits = torch.tensor([1.0, 2.5, 2.4, -1.0])
    d = distribution(logits, temperature=1e-3)
    assert d.probs[1].item() > 0.999
    g = distribution(logits, greedy=True)
    assert g.probs.tolist() == [0.0, 1.0, 0.0, 0.0] and g.entropy == 0.0
    assert sample(g, 5, seed=1).tolist() == [1] * 5


def test_entropy_and_off_settings():
    logits = torch.zeros(8)
    d = distribution(logits)
    assert d.entropy == pytest.approx(math.log(8), abs=1e-5) and d.raw_entropy == pytest.approx(math.log(8), abs=1e-5)
    assert d.keep.all() and d.removed_mass == pytest.approx(0.0, abs=1e-7)


def test_seeded_draws_repeat_and_follow_probs():
    d = distribution(torch.tensor([0.0, 1.0, 2.0, -5.0]), temperature=1.0)
    assert torch.equal(sample(d, 50, seed=7), sample(d, 50, seed=7))
    assert not torch.equal(sample(d, 50, seed=7), sample(d, 50, seed=8))
    counts = sample_counts(d, 20000, seed=0)
    assert counts.sum().item() == 20000
    freq = counts.float() / 20000
    assert (freq - d.probs).abs().max().item() < 0.015
    cut = distribution(torch.tensor([0.0, 1.0, 2.0, -5.0]), top_k=2)
    assert sample_counts(cut, 1000, seed=0)[:1].sum().item() == 0 and sample_counts(cut, 1000, seed=0)[3] == 0


@pytest.mark.parametrize("kw,msg", [
    (dict(temperature=0), "temperature must be"), (dict(temperature=-1.0), "temperature must be"),
    (dict(temperature=float("nan")), "temperature must be"), (dict(top_p=0), "top_p must be in"),
    (dict(top_p=1.5), "top_p must be in"), (dict(top_k=-1), "top_k must be"), (dict(top_k=2.5), "top_k must be"),
])
def test_bad_settings_raise_clear_errors(kw, msg):
    with pytest.raises(SamplingError, match=msg):
        distribution(torch.randn(10), **kw)


@pytest.mark.parametrize("logits,msg", [
    (torch.randn(2, 5), "must be 1-D"), (torch.tensor([]), "empty"),
    (torch.full((4,), float("-inf")), "every logit is -inf"), (torch.tensor([1.0, float("nan")]), "NaN"),
])
def test_bad_logits_raise_clear_errors(logits, msg):
    with pytest.raises(SamplingError, match=msg):
        distribution(logits)


# ----------------------------------------------------------------------------- SamplingSettings: the ranges, once
def test_sampling_settings_defaults_are_off_for_top_k_and_top_p_and_temperature_one():
    from model.nets.sampling import SamplingSettings

    s = SamplingSettings()
    assert s.as_kwargs() == {"temperature": 1.0, "top_k": 0, "top_p": 1.0}
    assert [k.default for k in SamplingSettings.KNOBS] == [1.0, 0, 1.0]
    assert torch.equal(distribution(torch.randn(8, generator=torch.Generator().manual_seed(1)), **s.as_kwargs()).keep,
                       torch.ones(8, dtype=torch.bool))                     # the defaults cut nothing


@pytest.mark.parametrize("given,want", [
    (dict(temperature=9.0, top_k=99, top_p=0.01), dict(temperature=3.0, top_k=10, top_p=0.05)),     # above / below
    (dict(temperature=0.0, top_k=-3, top_p=2.0), dict(temperature=0.05, top_k=0, top_p=1.0)),
    (dict(temperature=0.7, top_k=4.6, top_p=0.9), dict(temperature=0.7, top_k=5, top_p=0.9)),       # k: whole
    (dict(temperature=float("nan"), top_k="x", top_p=None), dict(temperature=1.0, top_k=0, top_p=1.0)),
    (dict(temperature=True, top_k=float("inf"), top_p=float("-inf")), dict(temperature=1.0, top_k=0, top_p=1.0)),
])
def test_sampling_settings_clamp_into_the_ranges_and_fall_back_to_defaults(given, want):
    from model.nets.sampling import SamplingSettings

    assert SamplingSettings.clamped(10, **given).as_kwargs() == want


def test_sampling_settings_ranges_are_the_knobs_with_top_k_up_to_the_vocabulary():
    from model.nets.sampling import SamplingSettings

    r = SamplingSettings.ranges(50257)
    assert list(r) == ["temperature", "top_k", "top_p"]
    assert (r["temperature"]["min"], r["temperature"]["max"]) == (0.05, 3.0)
    assert (r["top_k"]["min"], r["top_k"]["max"], r["top_k"]["step"]) == (0, 50257, 1)
    assert (r["top_p"]["min"], r["top_p"]["max"]) == (0.05, 1.0)
    assert all(r[k.name]["label"] == k.label and r[k.name]["default"] == k.default for k in SamplingSettings.KNOBS)
    T = SamplingSettings.TEMPERATURE
    assert T.valid(0.05) and T.valid(3.0) and not T.valid(3.01) and not T.valid(float("nan")) and not T.valid("1")
    assert SamplingSettings.TOP_K.valid(7, 10) and not SamplingSettings.TOP_K.valid(7.5, 10)


def test_every_clamped_setting_is_accepted_by_distribution():
    from model.nets.sampling import SamplingSettings

    x = torch.randn(10, generator=torch.Generator().manual_seed(0))
    for t in (-1.0, 0.0, 0.05, 1.0, 3.0, 100.0):
        for k in (-1, 0, 3, 10, 11):
            for p in (0.0, 0.05, 0.5, 1.0, 2.0):
                d = distribution(x, **SamplingSettings.clamped(10, t, k, p).as_kwargs())
                assert float(d.probs.sum()) == pytest.approx(1.0, abs=1e-6)
