"""The Transformer against references: SDPA, the paper's PE formula, causality, faithful traces."""
import math
import threading

import pytest
import torch
import torch.nn.functional as F

from model.nets.transformer import (Seq2SeqTransformer, TransformerConfig, TransformerLM, attention,
                               sinusoidal_encoding, subsequent_mask)

pytestmark = pytest.mark.unit

torch.manual_seed(0)


def lm(**kw):
    cfg = TransformerConfig(vocab_size=37, d_model=32, h=4, d_ff=64, n_layers=2, max_len=24, dropout=0.0, **kw)
    return TransformerLM(cfg).eval()


def s2s(**kw):
    cfg = TransformerConfig(arch="encoder-decoder", vocab_size=41, src_vocab_size=29, d_model=32, h=4, d_ff=64,
                            n_layers=2, n_encoder_layers=2, max_len=24, dropout=0.0, **kw)
    return Seq2SeqTransformer(cfg).eval()


@pytest.mark.parametrize("causal", [False, True])
def test_attention_equals_sdpa(causal):
    q, k, v = (torch.randn(2, 4, 7, 8, dtype=torch.float64) for _ in range(3))
    allowed = subsequent_mask(7)[None, None] if causal else torch.rand(2, 1, 7, 7) > 0.3
    allowed = allowed | torch.eye(7, dtype=torch.bool)            # every row keeps at least one key
    out, scores, weights = attention(q, k, v, allowed)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(scores, q @ k.transpose(-2, -1) / math.sqrt(8))
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, 7, dtype=torch.float64))
    assert (weights[~allowed.expand_as(weights)] == 0).all()
    if causal:
        torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True))


def test_positional_encoding_matches_paper_formula():
    P, D = 50, 16
    pe = sinusoidal_encoding(P, D)
    for pos in (0, 1, 7, 49):
        for i in range(D // 2):
            angle = pos / 10000 ** (2 * i / D)
            assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    assert sinusoidal_encoding(5, 7).shape == (5, 7)               # odd width works


@pytest.mark.parametrize("norm,pos", [("pre", "learned"), ("post", "sinusoidal"), ("post", "none")])
def test_trace_changes_nothing_and_is_complete(norm, pos):
    m = lm(norm=norm, pos_encoding=pos)
    ids = torch.randint(0, 37, (2, 9))
    plain, traced = m(ids), m(ids, trace=True)
    torch.testing.assert_close(plain.logits, traced.logits, atol=1e-4, rtol=1e-4)
    tr = traced.trace
    assert len(tr.attention["self"]) == 2 and tr.attention["self"][0].weights.shape == (2, 4, 9, 9)
    assert len(tr.hidden["self"]) == 3                             # embeddings + after each block
    assert len(tr.layernorms) == 4 + (norm == "pre")               # 2 per block (+ final LN for pre-LN)
    for a in tr.attention["self"]:
        assert torch.allclose(a.weights.sum(-1), torch.ones(2, 4, 9), atol=1e-5)
        assert (a.weights.triu(1) == 0).all()                      # causal: nothing above the diagonal
        assert not a.weights.requires_grad and a.weights.device.type == "cpu"


def _changed_later_token(ids, t):
    other = ids.clone()
    other[:, t:] = (other[:, t:] + 1) % 29
    return other


def test_causality_decoder_only():
    m = lm()
    ids = torch.randint(0, 37, (1, 12))
    for t in (3, 8, 11):
        a, b = m(ids, trace=True).logits, m(_changed_later_token(ids, t), trace=True).logits
        torch.testing.assert_close(a[:, :t], b[:, :t])
        assert not torch.allclose(a[:, t:], b[:, t:])
        torch.testing.assert_close(m(ids).logits[:, :t], m(_changed_later_token(ids, t)).logits[:, :t])


def test_causality_translator_decoder_side():
    m = s2s()
    src, tgt = torch.randint(0, 29, (1, 8)), torch.randint(0, 41, (1, 10))
    for t in (2, 6):
        a = m(src, tgt, trace=True).logits
        b = m(src, _changed_later_token(tgt, t), trace=True).logits
        torch.testing.assert_close(a[:, :t], b[:, :t])
        assert not torch.allclose(a[:, t:], b[:, t:])


def _recompute_attention(mha, x_in, weights):
    B, T, D = x_in.shape
    v = mha.w_v(x_in).view(B, T, mha.h, mha.d_k).transpose(1, 2)   # (B, h, T, d_k)
    out = (weights @ v).transpose(1, 2).reshape(B, -1, D)
    return mha.w_o(out)


def test_faithful_pre_ln_layer():
    """x + Attention(LN(x)) recomputed from the traced weights equals the input of the next LayerNorm."""
    m = lm(norm="pre")
    ids = torch.randint(0, 37, (1, 10))
    with torch.no_grad():
        tr = m(ids, trace=True).trace
        for i, block in enumerate(m.decoder.blocks):
            x = tr.hidden["self"][i]
            ln_attn = next(l for l in tr.layernorms if l.name == f"L{i + 1} attention LN")
            ln_ffn = next(l for l in tr.layernorms if l.name == f"L{i + 1} feed-forward LN")
            torch.testing.assert_close(ln_attn.x_in, x)
            attn_out = _recompute_attention(block.self_attn, ln_attn.x_out, tr.attention["self"][i].weights)
            torch.testing.assert_close(x + attn_out, ln_ffn.x_in, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(ln_ffn.x_in + block.ffn(ln_ffn.x_out), tr.hidden["self"][i + 1],
                                       atol=1e-5, rtol=1e-5)


def test_faithful_post_ln_translator_cross_attention():
    """LN(x + CrossAttention(x, memory)) recomputed from traced cross weights matches the trace."""
    m = s2s(norm="post")
    src, tgt = torch.randint(0, 29, (1, 7)), torch.randint(0, 41, (1, 5))
    with torch.no_grad():
        tr = m(src, tgt, trace=True).trace
        memory = tr.hidden["encoder"][-1]
        block = m.decoder.blocks[0]
        x = next(l for l in tr.layernorms if l.name == "dec L1 attention LN").x_out       # after self-attn sub-layer
        B, Tk, D = memory.shape
        v = block.cross_attn.w_v(memory).view(B, Tk, 4, 8).transpose(1, 2)
        cross = block.cross_attn.w_o((tr.attention["cross"][0].weights @ v).transpose(1, 2).reshape(B, -1, D))
        ln = next(l for l in tr.layernorms if l.name == "dec L1 cross-attention LN")
        torch.testing.assert_close(x + cross, ln.x_in, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(block.ln_cross(x + cross), ln.x_out, atol=1e-5, rtol=1e-5)
        assert tr.attention["cross"][0].weights.shape == (1, 4, 5, 7)


def test_scores_are_pre_mask_and_weights_their_masked_softmax():
    m = lm()
    tr = m(torch.randint(0, 37, (1, 6)), trace=True).trace
    a = tr.attention["self"][1]
    assert torch.isfinite(a.scores).all()                          # raw scores: nothing masked yet
    expected = a.scores.masked_fill(~a.allowed[:, None], float("-inf")).softmax(-1)
    torch.testing.assert_close(a.weights, expected)


def test_padding_mask_ignores_pad_keys():
    m = lm()
    ids = torch.tensor([[5, 6, 7, 8, 9], [5, 6, 7, 0, 0]])
    pad = ids != 0
    out = m(ids, pad_mask=pad, trace=True)
    w = out.trace.attention["self"][0].weights
    assert (w[1, :, :, 3:] == 0).all()
    torch.testing.assert_close(out.logits[1, :3], m(ids[1:, :3]).logits[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(m(ids, pad_mask=pad).logits[1, :3], out.logits[1, :3], atol=1e-5, rtol=1e-5)


def test_kv_cache_matches_full_pass():
    m = lm()
    ids = torch.randint(0, 37, (1, 10))
    full = m(ids).logits
    out = m(ids[:, :4], use_cache=True)
    steps = [out.logits[:, -1]]
    for t in range(4, 10):
        out = m(ids[:, t:t + 1], past=out.past, use_cache=True)
        steps.append(out.logits[:, -1])
    torch.testing.assert_close(torch.stack(steps[:-1], 1), full[:, 3:9], atol=1e-5, rtol=1e-5)


def test_too_long_raises_clear_error():
    with pytest.raises(ValueError, match="longer than the model's context of 24"):
        lm()(torch.zeros(1, 30, dtype=torch.long))


def test_shared_model_serves_concurrent_callers():
    """No state on the module: traces from parallel threads equal the ones from single calls."""
    m = lm()
    inputs = [torch.randint(0, 37, (1, n)) for n in (5, 9, 13, 7)]
    expected = [m(x, trace=True).trace.attention["self"][1].weights for x in inputs]
    got = [None] * len(inputs)

    def work(i):
        for _ in range(5):
            got[i] = m(inputs[i], trace=True).trace.attention["self"][1].weights

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    [t.start() for t in threads]
    [t.join() for t in threads]
    for e, g in zip(expected, got):
        torch.testing.assert_close(e, g)
