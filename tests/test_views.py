"""The views layer: traces turned into numpy objects ready to draw, checked against the traces they come from."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import model
from model import views
from model.api import NextToken, PaddedBatch, PositionTable, Recurrent, Translates

pytestmark = pytest.mark.unit

TEXT = "the bear ate the honey because it was hungry"


def test_capabilities_are_what_each_family_can_do(lm, tr, lstm):
    assert isinstance(lm, (NextToken, PositionTable, PaddedBatch)) and not isinstance(lm, (Translates, Recurrent))
    assert isinstance(tr, Translates) and not isinstance(tr, NextToken) and not isinstance(tr, PaddedBatch)
    assert isinstance(lstm, Recurrent) and isinstance(lstm, NextToken) and not isinstance(lstm, PositionTable)


def test_attention_view_is_the_trace_as_numpy_with_labels_and_roles(lm, tr):
    r = lm.run(TEXT)
    v = views.attention_views(r)
    assert list(v) == ["self"] and v["self"].causal and v["self"].title == "Masked self-attention"
    a = v["self"]
    assert a.weights.dtype == np.float32 and a.weights.shape == (3, 4, 10, 10)
    np.testing.assert_array_equal(a.weights[1, 2], r.trace.attention["self"][1].weights[0, 2].numpy())
    assert a.query_tokens == a.key_tokens == r.tokens
    rt = tr.run("the black cat")
    vt = views.attention_views(rt)
    assert list(vt) == ["encoder", "decoder", "cross"]
    assert [vt[k].causal for k in vt] == [False, True, False]
    assert vt["cross"].query_tokens == rt.target_tokens and vt["cross"].key_tokens == rt.tokens
    assert vt["cross"].weights.shape[2:] == (len(rt.target_tokens), len(rt.tokens))


def test_an_attention_view_copies_no_weight_of_its_run(lm):
    """A view is made from the (cached) run on every page run, so it must not hold a second copy of the run's weights:
    a copy cached beside the run was counted twice and outlived the run's eviction (issue 19)."""
    r = lm.run(TEXT)
    a = views.attention_views(r)["self"]
    for layer, tensor in zip(a.layers, r.trace.attention["self"]):
        assert np.shares_memory(layer, tensor.weights.numpy())
    assert np.shares_memory(a.head(1, 2), r.trace.attention["self"][1].weights.numpy())
    np.testing.assert_array_equal(a.query_rows(4), a.weights[:, :, 4, :])


def test_masking_view_masks_exactly_the_disallowed_cells_and_softmax_matches(lm):
    r = lm.run(TEXT)
    v = views.masking_view(r, views.masked_role(r), 2, 1)
    assert v.allowed.dtype == bool and np.array_equal(v.allowed, np.tril(np.ones((10, 10), bool)))
    assert np.isneginf(v.masked[~v.allowed]).all() and np.array_equal(v.masked[v.allowed], v.scores[v.allowed])
    e = np.exp(v.masked - v.masked.max(1, keepdims=True))
    np.testing.assert_allclose(e / e.sum(1, keepdims=True), v.weights, atol=1e-6)


def test_padded_view_marks_padding_and_pad_keys_get_zero_weight(lm):
    pv = views.padded_view(lm, [TEXT, "the cat slept"])
    assert pv.valid.shape == (2, 10) and pv.padded_row == 1 and pv.valid[1].sum() == 4
    s = pv.stages
    assert np.all(s.weights[:, ~pv.valid[1]] == 0)


def test_positions_are_tagged_by_kind_from_the_config(lm, tr, lstm):
    p = views.position_tables(lm)
    assert [x.kind for x in p] == ["learned"] and p[0].table.shape == (64, 128)
    np.testing.assert_array_equal(p[0].table, lm.module.decoder.pos_emb.weight.detach().numpy())
    q = views.position_tables(tr)
    assert [x.kind for x in q] == ["sinusoidal"]
    np.testing.assert_allclose(q[0].table, views.sinusoidal_table(32, 128))
    assert views.position_tables(lstm) == []


def test_sinusoidal_curve_passes_through_the_table_at_whole_positions():
    x, curve = views.sinusoidal_curve(16, 32, per_step=4)
    np.testing.assert_allclose(curve[::4], views.sinusoidal_table(16, 32), atol=1e-6)
    assert x[1] == pytest.approx(0.25)


def test_norm_groups_follow_the_stack_not_the_name(tr):
    r = tr.run("the black cat")
    g = views.norm_groups(r)
    assert list(g) == ["encoder", "decoder"]
    assert g["decoder"].tokens == r.target_tokens and g["encoder"].tokens == r.tokens
    ln0 = r.trace.layernorms[0]
    np.testing.assert_allclose(g["encoder"].x_in[0], ln0.x_in[0].numpy())


def _hidden_with_norms(norms_per_layer):
    """A stand-in run whose residual stream has these exact L2 norms: layer l, token t is norms[l][t] * e_t."""
    hidden = []
    for row in norms_per_layer:
        h = torch.zeros(1, len(row), 8)
        for t, n in enumerate(row):
            h[0, t, t % 8] = n
        hidden.append(h)
    trace = SimpleNamespace(hidden={"self": hidden})
    return SimpleNamespace(trace=trace, tokens=[f"w{t}" for t in range(len(norms_per_layer[0]))], target_tokens=None)


@pytest.mark.parametrize("norms,trend", [
    ([[5, 5], [1, 1], [2, 2], [3, 4]], "grows"),       # the embeddings' size does not count: blocks 1 -> 3 grow
    ([[1, 1], [3, 3], [2, 2], [1, 1]], "shrinks"),
    ([[1, 1], [1, 1], [3, 3], [2, 2]], "mixed"),
    ([[1, 1], [1, 1], [1, 1], [1, 1]], "mixed"),       # flat is neither
    ([[1, 1], [2, 2]], "grows"),                       # one block: embeddings -> block 1
    ([[2, 2], [1, 1]], "shrinks"),
])
def test_residual_trend_on_hand_made_streams_of_known_norms(norms, trend):
    rv = views.residual_view(_hidden_with_norms(norms), "self")
    np.testing.assert_allclose(rv.norms, np.array(norms, dtype=np.float32))
    assert rv.trend == trend
    assert rv.layer_names == ["embeddings"] + [f"after block {i}" for i in range(1, len(norms))]
    assert rv.heading == {"grows": "The residual stream grows through the layers",
                          "shrinks": "The residual stream shrinks through the layers"}.get(
        trend, "The size of the residual stream through the layers")


def test_residual_view_norms_are_the_traced_stream_and_transformer_lm_grows(lm, tr):
    r = lm.run(TEXT)
    rv = views.residual_view(r, "self")
    want = np.stack([np.linalg.norm(h[0].double().numpy(), axis=-1) for h in r.trace.hidden["self"]])
    np.testing.assert_allclose(rv.norms, want, rtol=1e-5)
    assert rv.trend == "grows"                         # measured: mean norm 13.5, 25.4, 41.4, 73.3 on this text
    rt = tr.run("the black cat")
    assert views.residual_view(rt, "encoder").norms.shape[0] == tr.arch.n_encoder_layers + 1   # embeddings + each layer


def test_sampling_view_equals_the_sampling_module():
    from model.nets import sampling

    logits = torch.randn(300, generator=torch.Generator().manual_seed(0))
    v = views.sampling_view(logits.numpy(), temperature=0.7, top_k=40, top_p=0.8)
    d = sampling.distribution(logits, 0.7, 40, 0.8)
    np.testing.assert_array_equal(v.probs, d.probs.numpy())
    assert v.kept == int(d.keep.sum()) and v.entropy == pytest.approx(d.entropy)
    counts = views.draw_counts(v, 2000, 0)
    assert counts.sum() == 2000 and np.all(counts[~d.keep.numpy()] == 0)


def test_translation_view_is_generation_and_its_traced_run(tr):
    tv = views.translation_view(tr, "the black cat ate the mouse")
    assert tv.text == tr.translate("the black cat ate the mouse")
    assert tv.run.target_ids == tr.target_ids(tv.generation)
    assert len(tv.steps) == len(tv.generation.steps)
    s = tv.steps[2]
    assert s.written == [tr.vocab[i] for i in tv.run.target_ids[:3]]
    np.testing.assert_array_equal(s.cross, np.stack([a.weights[0, :, 2].numpy() for a in tv.run.trace.attention["cross"]]))
    assert s.probs[tv.generation.steps[2].token_id] == pytest.approx(s.prob)


def test_generation_keeps_only_the_top_of_each_step(lm):
    g = lm.generate("the bear", 5, seed=0)
    for s in g.steps:
        assert len(s.choice.top_ids) <= lm.TOP_KEPT and not hasattr(s, "dist")
        assert list(s.choice.top_probs) == sorted(s.choice.top_probs, reverse=True)


def test_lstm_layers_are_time_by_units(lstm):
    r = lstm.run(TEXT)
    layers = views.lstm_layers(r)
    assert len(layers) == 2 and set(layers[0]) == set(views.GATES)
    np.testing.assert_array_equal(layers[1]["cell state"], r.trace.lstm[1].cell[0].numpy())
