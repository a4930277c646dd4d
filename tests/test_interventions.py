"""Interventions are real: each changes exactly what it claims, and nothing changes without one."""
import math

import pytest
import torch

from model import hooks
from model.hooks import HookRun
from model.teaching.interventions import Interventions, shuffle_permutation, word_order_demo
from model.nets.transformer import (MultiHeadAttention, Seq2SeqTransformer, TransformerConfig, TransformerLM,
                               ablate_heads_edit, attention)


def lm(**kw):
    torch.manual_seed(0)
    cfg = TransformerConfig(vocab_size=37, d_model=32, h=4, d_ff=64, n_layers=3, max_len=24, dropout=0.0, **kw)
    return TransformerLM(cfg).eval()


def s2s(**kw):
    torch.manual_seed(0)
    cfg = TransformerConfig(arch="encoder-decoder", vocab_size=41, src_vocab_size=29, d_model=32, h=4, d_ff=64,
                            n_layers=2, n_encoder_layers=2, max_len=24, dropout=0.0, **kw)
    return Seq2SeqTransformer(cfg).eval()


IDS = torch.tensor([[1, 5, 9, 3, 7, 12, 4, 8]])


@pytest.mark.unit
@pytest.mark.parametrize("kw", [dict(pos_encoding="learned", norm="pre"), dict()])
def test_no_intervention_is_bit_identical(kw):
    m = lm(**kw)
    with torch.no_grad():
        plain = m(IDS).logits
        for iv in (None, Interventions(), Interventions(ablate_heads=set(), skip_layernorm=[])):
            assert torch.equal(m(IDS, interventions=iv).logits, plain)
        traced = m(IDS, trace=True)
        traced2 = m(IDS, trace=True, interventions=Interventions())
        assert torch.equal(traced.logits, traced2.logits)
        for a, b in zip(traced.trace.attention["self"], traced2.trace.attention["self"]):
            assert torch.equal(a.weights, b.weights)
    t = s2s()
    src, tgt = torch.tensor([[3, 4, 5, 6, 2]]), torch.tensor([[1, 7, 8, 9]])
    with torch.no_grad():
        assert torch.equal(t(src, tgt, interventions=Interventions()).logits, t(src, tgt).logits)


def _head_contribution(mha: MultiHeadAttention, x: torch.Tensor, head: int) -> torch.Tensor:
    """What one head adds to the attention output: its weighted values through its slice of W_o."""
    q, k, v = (mha._heads(w(x)) for w in (mha.w_q, mha.w_k, mha.w_v))
    out, _, _ = attention(q, k, v)
    d = mha.d_k
    return out[:, head] @ mha.w_o.weight[:, head * d:(head + 1) * d].T


def _ablated(mha: MultiHeadAttention, x: torch.Tensor, heads: tuple[int, ...], mode: str = "zero") -> torch.Tensor:
    """The layer's output with `heads` ablated through its head_out hook point."""
    run = HookRun({"attn.head_out": ablate_heads_edit(heads, mode, None)})
    with hooks.active(run):
        return mha(x, x)


@pytest.mark.unit
def test_ablating_a_head_removes_exactly_its_contribution():
    torch.manual_seed(1)
    mha = MultiHeadAttention(32, 4, 0.0).eval()
    x = torch.randn(2, 6, 32)
    with torch.no_grad():
        full = mha(x, x)
        for h in range(4):
            abl = _ablated(mha, x, (h,))
            torch.testing.assert_close(full - abl, _head_contribution(mha, x, h), atol=1e-5, rtol=1e-5)
        # ablating head 0 as well only removes head 0's contribution more: the others are untouched
        one, two = _ablated(mha, x, (1,)), _ablated(mha, x, (0, 1))
        torch.testing.assert_close(one - two, _head_contribution(mha, x, 0), atol=1e-5, rtol=1e-5)
        # mean mode: the head's output is the same at every position
        q, k, v = (mha._heads(w(x)) for w in (mha.w_q, mha.w_k, mha.w_v))
        out, _, _ = attention(q, k, v)
        d = mha.d_k
        mean_contrib = out[:, 2].mean(1, keepdim=True) @ mha.w_o.weight[:, 2 * d:3 * d].T
        got = _ablated(mha, x, (2,), "mean")
        torch.testing.assert_close(got, full - _head_contribution(mha, x, 2) + mean_contrib, atol=1e-5, rtol=1e-5)


@pytest.mark.unit
def test_head_ablation_in_the_model_leaves_earlier_computation_alone():
    m = lm(pos_encoding="learned", norm="pre")
    iv = Interventions(ablate_heads={("self", 1, 2)})
    with torch.no_grad():
        a, b = m(IDS, trace=True), m(IDS, trace=True, interventions=iv)
    for layer in (0, 1):                   # weights of layer 1 are computed before its heads' outputs are used
        assert torch.equal(a.trace.attention["self"][layer].weights, b.trace.attention["self"][layer].weights)
    assert torch.equal(a.trace.hidden["self"][1], b.trace.hidden["self"][1])      # after block 0: unchanged
    assert not torch.equal(a.trace.hidden["self"][2], b.trace.hidden["self"][2])  # after block 1: changed
    assert not torch.allclose(a.trace.attention["self"][2].weights, b.trace.attention["self"][2].weights)


@pytest.mark.unit
def test_ablating_all_heads_of_a_layer_changes_the_logits():
    m = lm()
    with torch.no_grad():
        a = m(IDS).logits
        b = m(IDS, interventions=Interventions(ablate_heads={("self", 0, h) for h in range(4)})).logits
    assert (a - b).abs().max() > 1e-3


@pytest.mark.unit
def test_no_positions_and_no_mask_make_the_model_permutation_equivariant():
    m = lm(pos_encoding="learned", norm="pre")
    perm = torch.tensor([0, 3, 1, 6, 2, 5, 4, 7])
    x, xp = IDS, IDS[:, perm]
    iv = Interventions(no_positions=True, no_causal_mask=True)
    with torch.no_grad():
        out, outp = m(x, interventions=iv).logits, m(xp, interventions=iv).logits
        torch.testing.assert_close(outp, out[:, perm], atol=1e-5, rtol=1e-5)
        intact, intactp = m(x).logits, m(xp).logits
        assert (intactp - intact[:, perm]).abs().max() > 1e-3         # with positions, order matters
        # only the mask removed: positions still tell the order
        only = Interventions(no_causal_mask=True)
        assert (m(xp, interventions=only).logits - m(x, interventions=only).logits[:, perm]).abs().max() > 1e-3


@pytest.mark.unit
def test_no_positions_self_attention_is_equivariant_at_layer_level():
    torch.manual_seed(2)
    mha = MultiHeadAttention(32, 4, 0.0).eval()
    x = torch.randn(1, 7, 32)
    perm = torch.randperm(7)
    with torch.no_grad():
        torch.testing.assert_close(mha(x[:, perm], x[:, perm]), mha(x, x)[:, perm])


@pytest.mark.unit
def test_no_causal_mask_lets_early_positions_see_later_tokens():
    m = lm()
    x2 = IDS.clone()
    x2[0, -1] = 11
    iv = Interventions(no_causal_mask=True)
    with torch.no_grad():
        assert torch.allclose(m(IDS).logits[0, 0], m(x2).logits[0, 0])
        assert not torch.allclose(m(IDS, interventions=iv).logits[0, 0], m(x2, interventions=iv).logits[0, 0])
        w = m(IDS, trace=True, interventions=iv).trace.attention["self"][0].weights
    assert (w[0, :, 0, 1:] > 0).all()                         # the first token now attends to later ones


@pytest.mark.unit
def test_no_scale_multiplies_first_layer_scores_by_sqrt_dk():
    m = lm()
    with torch.no_grad():
        a = m(IDS, trace=True).trace.attention["self"][0].scores
        b = m(IDS, trace=True, interventions=Interventions(no_scale=True)).trace.attention["self"][0].scores
        fast = m(IDS, interventions=Interventions(no_scale=True)).logits
        slow = m(IDS, trace=True, interventions=Interventions(no_scale=True)).logits
    torch.testing.assert_close(b, a * math.sqrt(8), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast, slow, atol=1e-5, rtol=1e-5)   # fused and spelled-out paths agree


@pytest.mark.unit
def test_skip_final_layernorm_and_residual():
    m = lm(norm="pre")
    with torch.no_grad():
        out = m(IDS, trace=True, interventions=Interventions(skip_layernorm={("self", -1, "final")}))
        torch.testing.assert_close(out.logits, m.lm_head(out.trace.hidden["self"][-1]))
        # no residual around block 0's attention: its output no longer contains the embeddings
        tr = m(IDS, trace=True, interventions=Interventions(skip_residual={("self", 0, "attn")})).trace
        ln_ffn_in = [t for t in tr.layernorms if t.name == "L1 feed-forward LN"][0].x_in
        emb = tr.hidden["self"][0]
        intact = m(IDS, trace=True).trace
        ln_ffn_intact = [t for t in intact.layernorms if t.name == "L1 feed-forward LN"][0].x_in
        torch.testing.assert_close(ln_ffn_intact - ln_ffn_in, emb, atol=1e-5, rtol=1e-5)


@pytest.mark.unit
def test_seq2seq_without_positions_ignores_source_order():
    t = s2s()
    src = torch.tensor([[3, 4, 5, 6, 7, 2]])
    perm = torch.tensor([4, 1, 0, 3, 2, 5])
    tgt = torch.tensor([[1, 7, 8, 9]])
    iv = Interventions(no_positions=True)
    with torch.no_grad():
        torch.testing.assert_close(t(src[:, perm], tgt, interventions=iv).logits, t(src, tgt, interventions=iv).logits,
                                   atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(t.encode(src[:, perm], interventions=iv), t.encode(src, interventions=iv)[:, perm],
                                   atol=1e-5, rtol=1e-5)
        assert (t(src[:, perm], tgt).logits - t(src, tgt).logits).abs().max() > 1e-3


@pytest.mark.unit
def test_shuffle_permutation():
    p = shuffle_permutation(8, seed=3, keep_first=1)
    assert sorted(p) == list(range(8)) and p[0] == 0 and p != list(range(8))
    assert p == shuffle_permutation(8, seed=3, keep_first=1)
    q = shuffle_permutation(6, seed=1, keep_last=1)
    assert q[-1] == 5 and sorted(q) == list(range(6))


@pytest.mark.slow
@pytest.mark.unit
def test_word_order_demo_on_builtin_models():
    import model

    d = word_order_demo(model.load("transformer-lm", "cpu"))
    rows = {r[0]: r for r in d.rows}
    assert not rows["intact"][3] and rows["no positions and no causal mask"][3]
    tr = model.load("translator-en-fr", "cpu")
    d = word_order_demo(tr, "the dog chased the cat", "the cat chased the dog")
    trans = {n: (a, b) for n, a, b in d.translations}
    assert trans["intact"][0] != trans["intact"][1]
    assert trans["no positional encoding"][0] == trans["no positional encoding"][1]


@pytest.mark.unit
def test_hf_gpt2_head_ablation_and_no_positions(tmp_path):
    pytest.importorskip("transformers")
    from devkit.hf_fixtures import make_tiny

    import model
    from model.teaching.interventions import compare, supported

    lab = model.load(str(make_tiny("gpt2", tmp_path / "gpt2")), "cpu")
    assert supported(lab) == ["head ablation", "no positional encoding"]
    c = compare(lab, "the bear ate the honey", Interventions(ablate_heads={("self", 0, h) for h in range(4)}))
    assert c.tv > 0
    assert (c.head_change["self"][0] == 0).all() and (c.head_change["self"][1] > 0).any()
    c0 = compare(lab, "the bear ate the honey", Interventions())
    assert c0.tv == 0
    c = compare(lab, "the bear ate the honey", Interventions(no_positions=True))
    assert c.tv > 0
    with pytest.raises(model.LabError):
        compare(lab, "the bear", Interventions(no_causal_mask=True))


@pytest.mark.slow
@pytest.mark.unit
def test_comparison_and_figures_for_the_builtin_lm():
    import model
    from model.teaching.interventions import build, compare, heldout, layout
    from viz.experiments import attention_pair, distribution_pair, head_change_grid

    lab = model.load("transformer-lm", "cpu")
    assert layout(lab)["self"]["layers"] == lab.arch.n_layers
    iv = build("heads", stack="self", layer=0, heads=range(lab.arch.n_heads))
    cmp = compare(lab, "the keys to the old cabinet", iv)
    assert (cmp.head_change["self"][0] == 0).all()               # ablated heads keep their own weights
    assert (cmp.head_change["self"][1:] > 0).any() and cmp.tv > 0
    l, h = cmp.most_changed("self")
    a, b = cmp.head_maps("self", l, h)
    assert attention_pair(a, b, cmp.tokens, cmp.tokens).data[2].z.shape == a.shape
    assert len(distribution_pair(cmp.top_words, cmp.p_intact, cmp.p_broken).data) == 2
    assert head_change_grid(cmp.head_change["self"]).data[0].z.shape == (lab.arch.n_layers, lab.arch.n_heads)
    none = compare(lab, "the keys to the old cabinet", build("none"))
    assert none.tv == 0 and none.kl == 0 and (none.head_change["self"] == 0).all()
    rows, what, secs = heldout(lab, build("mask"))
    figures = {name: (a, b) for name, a, b in rows}
    assert figures["cross-entropy (nats/token)"][1] > figures["cross-entropy (nats/token)"][0]
    every = build("heads", stack="self", layer=range(lab.arch.n_layers), heads=range(lab.arch.n_heads))
    assert len(every.ablate_heads) == lab.arch.n_layers * lab.arch.n_heads
    figures = {name: (a, b) for name, a, b in heldout(lab, every)[0]}
    assert figures["agreement accuracy"][1] < 0.9 * figures["agreement accuracy"][0]   # no attention: no agreement


def _page(page: str, **state):
    from streamlit.testing.v1 import AppTest

    from conftest import ROOT

    at = AppTest.from_file(str(ROOT / "lab.py"), default_timeout=180)
    for k, v in state.items():
        at.session_state[k] = v
    at.run()
    at.switch_page(f"app_pages/{page}.py")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


@pytest.mark.apptest
def test_experiments_page_shows_real_differences():
    from conftest import charts

    at = _page("experiments")
    assert len(charts(at)) >= 3 and not at.error
    at.selectbox(key="break").set_value("mask").run()
    assert not at.exception
    rows = {r[0]: (float(r[1]), float(r[2])) for r in at.table[0].value.values.tolist()}
    ce = rows["cross-entropy (nats/token)"]
    assert ce[1] > ce[0]                                              # removing the mask hurts, measured
    order = at.table[1].value.values.tolist()
    assert order[-1][0] == "no positions and no causal mask" and order[-1][-1] == "yes" and order[0][-1] == "no"


@pytest.mark.slow
@pytest.mark.apptest
def test_experiments_page_on_the_translator_and_the_lstm():
    at = _page("experiments", model_choice="translator-en-fr", text="the black cat ate the mouse")
    assert not at.error
    at.selectbox(key="break").set_value("positions").run()
    assert not at.exception
    trans = at.table[2].value.values.tolist()
    assert trans[1][1] == trans[1][2] and trans[0][1] != trans[0][2]   # no positions: A and B translate alike
    at = _page("experiments", model_choice="lstm-lm")
    assert "Transformers" in at.info[0].value


@pytest.mark.slow
@pytest.mark.unit
def test_break_it_hint_no_causal_mask_lowers_agreement_on_transformer_lm():
    """The page's hint 'remove the causal mask and watch agreement accuracy fall' holds on the shipped model."""
    import model
    from model.teaching.interventions import build, heldout

    rows, _, _ = heldout(model.load("transformer-lm", "cpu"), build("mask"), None)
    acc = dict((r[0], r[1:]) for r in rows)["agreement accuracy"]
    assert acc[1] < acc[0] - 0.2, acc


@pytest.mark.slow
def test_reference_mean_ablation_puts_the_heads_mean_over_the_reference_set_in_its_place():
    """Mode "reference": the head's output at every position becomes its mean output over the reference set,
    which is the average of what the head output on those texts (recomputed here, text by text)."""
    import model
    from model.teaching.interventions import reference_means, reference_texts, with_reference

    lab = model.load("transformer-lm", "cpu")
    means, label = reference_means(lab)
    texts, _ = reference_texts(lab)
    assert label == "50 held-out sentences" and len(texts) == 50
    name = "blocks.2.attn.head_out"
    total, n = 0, 0
    for t in texts[:50]:
        rec = HookRun(record={name})
        with hooks.active(rec), torch.no_grad():
            lab.module(torch.tensor([lab.tokenize(t).ids]))
        total, n = total + rec.cache[name][0].sum(1), n + rec.cache[name].shape[2]
    torch.testing.assert_close(means[name], total / n, atol=1e-5, rtol=1e-5)
    iv = with_reference(lab, Interventions(ablate_heads={("self", 2, 1)}, head_mode="reference"))
    ids = torch.tensor([lab.tokenize("the dog that the cats chased").ids])

    def by_hand(x):
        x = x.clone()
        x[:, 1] = means[name][1]
        return x
    with torch.no_grad():
        got = lab.module(ids, interventions=iv).logits
        with hooks.active(HookRun({name: by_hand})):
            want = lab.module(ids).logits
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)


@pytest.mark.slow                                  # generates each model's whole training set (40,000 / 80,000)
@pytest.mark.unit
@pytest.mark.parametrize("name", ["transformer-lm", "translator-en-fr"])
def test_break_it_held_out_slice_and_reference_set_are_never_training_sentences_of_the_model(name):
    """Break it's held-out figures and its reference means come from the split of the corpus the checkpoint's own
    recipe trained on (its config's `data`), so none of their sentences was seen in training."""
    import model
    from model.teaching import corpora
    from model.teaching.interventions import N_CE, N_TRANSLATE, heldout_split, reference_texts

    lab = model.load(name, "cpu")
    d = lab.cfg.data
    if name == "translator-en-fr":
        train = {e for e, _ in corpora.translation_datasets(d["n_train"], d["n_heldout"], d["seed"])[0]}
        used = [e for e, _ in heldout_split(lab)[:N_TRANSLATE]]
    else:
        train = set(corpora.lm_datasets(d["n_train"], d["n_heldout"], d["seed"])[0])
        used = list(heldout_split(lab)[:N_CE])
    texts, _ = reference_texts(lab)
    assert len(used) in (N_CE, N_TRANSLATE) and len(texts) == 50
    assert not [t for t in used + texts if t in train]
