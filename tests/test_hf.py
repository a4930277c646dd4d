"""Hugging Face models through model.load(path): tiny random models of each family, saved with
save_pretrained into a temporary folder (no network). What the lab traces must equal what
transformers itself computes, and the raw scores must equal an independent recomputation."""
import json
import math

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest
from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSeq2SeqLM

import model
from conftest import ROOT, charts, run_page, slow_except
from devkit.hf_fixtures import FAMILIES, ROTARY, make_tiny
from model import (Generates, LogitLens, MaskedFill, ModelLoadError, NextToken, PaddedBatch, PositionTable,
                   TracedRun, Translates)
from model.nets import sampling
from model.hf import COMPACT_ABOVE, HFCausalLM, HFEncoder, HFEncoderDecoder, HFMaskedLM
from model.hf import loading as hfload

CAUSAL = ["gpt2", *ROTARY]
MLM = ["bert", "roberta", "distilbert"]
SELF = [*CAUSAL, *MLM, "bert-base"]                   # one self-attention stack
SEQ2SEQ = ["t5", "bart", "marian"]
TEXT = {f: "the bear ate the [MASK] because it was hungry" for f in ("bert", "roberta", "distilbert", "bert-base")}
LM_TEXT = "the bear ate the honey because it was hungry"
SRC = "the black cat ate the mouse"


def text_for(f):
    return TEXT.get(f, SRC if f in SEQ2SEQ else LM_TEXT)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {f: str(make_tiny(f, root / f)) for f in FAMILIES}


@pytest.fixture(scope="session")
def loaded(tiny):
    return {f: model.load(p, "cpu") for f, p in tiny.items()}


def reference(path, family):
    cls = (AutoModelForCausalLM if family in CAUSAL else AutoModelForMaskedLM if family in MLM
           else AutoModel if family == "bert-base" else AutoModelForSeq2SeqLM)
    return cls.from_pretrained(path, attn_implementation="eager").eval()


def norm_io(ref, call):
    """Run `call` with our own hooks on every norm module of the reference model: [(module, input, output)]."""
    seen, handles = [], []
    for _, mod in ref.named_modules():
        if isinstance(mod, torch.nn.LayerNorm) or type(mod).__name__.endswith(("LayerNorm", "RMSNorm")):
            handles.append(mod.register_forward_hook(lambda m, i, o: seen.append((m, i[0].detach(), o.detach()))))
    try:
        out = call()
    finally:
        for h in handles:
            h.remove()
    return out, seen


def norm_formula(mod, x):
    """The norm's output recomputed from its input and parameters, by the textbook formula."""
    if isinstance(mod, torch.nn.LayerNorm):
        mu, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
        return (x - mu) / torch.sqrt(var + mod.eps) * mod.weight + mod.bias
    eps = getattr(mod, "variance_epsilon", None) or getattr(mod, "eps")
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y * ((1 + mod.weight) if type(mod).__name__.startswith("Gemma") else mod.weight)


# ----------------------------------------------------------------------------- families and capabilities
@pytest.mark.unit
def test_each_family_loads_as_its_class_with_its_capabilities(loaded):
    want = {"gpt2": HFCausalLM, "llama": HFCausalLM, "mistral": HFCausalLM, "qwen2": HFCausalLM,
            "gemma": HFCausalLM, "bert": HFMaskedLM, "roberta": HFMaskedLM, "distilbert": HFMaskedLM,
            "bert-base": HFEncoder, "t5": HFEncoderDecoder,
            "bart": HFEncoderDecoder, "marian": HFEncoderDecoder}
    assert set(want) == set(FAMILIES)
    for f, cls in want.items():
        assert type(loaded[f]) is cls, f
    for f in CAUSAL:
        assert set(loaded[f].capabilities()) == {"TracedRun", "NextToken", "Generates", "PositionTable",
                                                 "PaddedBatch", "LogitLens", "RawScores"}, f
    for f in MLM:
        assert set(loaded[f].capabilities()) == {"TracedRun", "MaskedFill", "PositionTable", "PaddedBatch",
                                                 "RawScores"}, f
    assert set(loaded["bert-base"].capabilities()) == {"TracedRun", "PositionTable", "PaddedBatch", "RawScores"}
    for f in SEQ2SEQ:
        assert set(loaded[f].capabilities()) == {"TracedRun", "Generates", "Translates", "PositionTable"}, f
    for f in FAMILIES:                                      # pages ask isinstance, never a kind string
        m = loaded[f]
        assert isinstance(m, (TracedRun, PositionTable)) and isinstance(m, Translates) == (f in SEQ2SEQ)
        assert isinstance(m, PaddedBatch) == (f in SELF) and isinstance(m, MaskedFill) == (f in MLM)


@pytest.mark.unit
def test_grouped_query_fixtures_have_fewer_kv_heads_than_query_heads(loaded):
    for f in ROTARY:
        a = loaded[f].arch
        assert a.n_kv_heads < a.n_heads == 4, (f, a)
        assert a.norm_kind == "RMSNorm" and a.position == "rotary" and a.norm == "pre"
        assert loaded[f].hf.config.num_key_value_heads == a.n_kv_heads
    assert loaded["gemma"].arch.n_kv_heads == 1                     # multi-query: one key head for all four


@pytest.mark.unit
def test_headless_bert_is_an_encoder_without_predictions(tiny, loaded):
    m = loaded["bert-base"]
    assert json.loads(open(f"{tiny['bert-base']}/config.json").read())["architectures"] == ["BertModel"]
    assert not isinstance(m, (NextToken, MaskedFill, Generates, LogitLens))
    r = m.run(TEXT["bert"])
    assert r.next_logits is None and r.predict_position is None
    assert len(r.trace.attention["self"]) == 2 and len(r.trace.layernorms) == 5
    assert not any(n.name.startswith("head") for n in r.trace.layernorms)


@pytest.mark.unit
def test_masked_lm_config_whose_weights_lack_the_head_loads_as_encoder(tiny, tmp_path):
    """architectures says BertForMaskedLM but the weights have no cls.* keys: never a random head."""
    import shutil

    shutil.copytree(tiny["bert-base"], tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    cfg["architectures"] = ["BertForMaskedLM"]
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    m = model.load(str(tmp_path / "m"), "cpu")
    assert type(m) is HFEncoder and m.run(LM_TEXT).next_logits is None


# ----------------------------------------------------------------------------- attention and norms
@pytest.mark.unit
@pytest.mark.parametrize("family", slow_except(FAMILIES, {"gpt2", "llama", "bert", "t5"}))
def test_attention_and_norms_equal_transformers(tiny, loaded, family):
    m = loaded[family]
    r = m.run(text_for(family))
    ref = reference(tiny[family], family)
    ids = torch.tensor([r.ids])
    with torch.no_grad():
        if family in SEQ2SEQ:
            out, io = norm_io(ref, lambda: ref(input_ids=ids, decoder_input_ids=torch.tensor([r.target_ids]),
                                               output_attentions=True))
            pairs = [("encoder", out.encoder_attentions), ("decoder", out.decoder_attentions),
                     ("cross", out.cross_attentions)]
        else:
            out, io = norm_io(ref, lambda: ref(input_ids=ids, output_attentions=True))
            pairs = [("self", out.attentions)]
    assert set(r.trace.attention) == {p for p, _ in pairs}
    for stack, atts in pairs:
        st = r.trace.attention[stack]
        assert st.role == stack and st.causal == (stack == "decoder" or family in CAUSAL)
        want_q = r.target_tokens if stack in ("decoder", "cross") else r.tokens
        assert list(st.query_tokens) == want_q and list(st.key_tokens) == (r.tokens if stack == "cross" else want_q)
        assert len(st) == len(atts) == 2
        for ours, theirs in zip(st, atts):
            assert ours.weights.shape[1] == 4 and ours.weights.dtype == torch.float32     # every head
            torch.testing.assert_close(ours.weights, theirs.float(), atol=1e-6, rtol=0)
    lns = r.trace.layernorms
    assert len(lns) == len(io) > 0
    for ln, (mod, x_in, x_out) in zip(lns, io):
        torch.testing.assert_close(ln.x_in, x_in, atol=1e-6, rtol=0)
        torch.testing.assert_close(ln.x_out, norm_formula(mod, x_in), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ln.mean_in, x_in.mean(-1), atol=1e-5, rtol=0)
        torch.testing.assert_close(ln.std_in, x_in.std(-1, unbiased=False), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ln.std_out, x_out.std(-1, unbiased=False), atol=1e-5, rtol=1e-5)
        assert ln.stack == ("self" if family in SELF else ("encoder" if ln.name.startswith("enc ") else "decoder"))
        assert ln.stack != "decoder" or ln.name.startswith("dec ")


@pytest.mark.unit
@pytest.mark.parametrize("family", slow_except(FAMILIES, {"gpt2", "llama", "bert", "t5"}))
def test_scores_on_every_layer_or_none_and_they_reproduce_the_weights(loaded, family):
    r = loaded[family].run(text_for(family))
    for stack in r.trace.attention.values():
        have = [a.scores is not None for a in stack]
        assert all(have) or not any(have)
        if family in SELF:                     # every self-attention family here gets verified scores
            assert all(have), family
            for a in stack:
                again = a.scores.masked_fill(~a.allowed[:, None], float("-inf")).softmax(-1)
                torch.testing.assert_close(again, a.weights, atol=1e-5, rtol=0)
        else:
            assert not any(have)               # encoder-decoders: weights only


@pytest.mark.unit
def test_gpt2_scores_equal_q_dot_k_recomputed_from_the_weights(tiny, loaded):
    m = loaded["gpt2"]
    r = m.run(LM_TEXT)
    ref = reference(tiny["gpt2"], "gpt2")
    T = len(r.ids)
    with torch.no_grad():
        out = ref(input_ids=torch.tensor([r.ids]), output_attentions=True, output_hidden_states=True)
        for i, block in enumerate(ref.transformer.h):
            x = block.ln_1(out.hidden_states[i][0])
            q, k, _ = block.attn.c_attn(x).split(x.shape[-1], dim=-1)
            q, k = (t.view(T, 4, -1).transpose(0, 1) for t in (q, k))
            s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
            torch.testing.assert_close(r.trace.attention["self"][i].scores[0], s, atol=1e-5, rtol=0)
            causal = torch.ones(T, T, dtype=torch.bool).tril()
            assert torch.equal(r.trace.attention["self"][i].allowed[0], causal)
            w = s.masked_fill(~causal, float("-inf")).softmax(-1)
            torch.testing.assert_close(w, out.attentions[i][0], atol=1e-5, rtol=0)


@pytest.mark.unit
@pytest.mark.parametrize("family", ROTARY)
def test_rotary_scores_equal_q_dot_k_recomputed_from_the_weights(tiny, loaded, family):
    """q/k projections, rotary embedding from the config's theta, K repeated over the query heads (GQA),
    q.k / sqrt(d_head), causal softmax: equal to the lab's scores and to transformers' weights."""
    m = loaded[family]
    r = m.run(LM_TEXT)
    ref = reference(tiny[family], family)
    cfg = ref.config
    T, H, Hkv = len(r.ids), cfg.num_attention_heads, cfg.num_key_value_heads
    dh = getattr(cfg, "head_dim", None) or cfg.hidden_size // H
    theta = cfg.rope_parameters["rope_theta"]
    inv = 1.0 / theta ** (torch.arange(0, dh, 2).float() / dh)
    ang = torch.arange(T).float()[:, None] * inv[None]                      # (T, dh/2)
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)

    def rope(x):                                                             # (heads, T, dh)
        x1, x2 = x[..., : dh // 2], x[..., dh // 2:]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    with torch.no_grad():
        out = ref(input_ids=torch.tensor([r.ids]), output_attentions=True, output_hidden_states=True)
        for i, layer in enumerate(ref.model.layers):
            x = layer.input_layernorm(out.hidden_states[i][0])
            q = rope(layer.self_attn.q_proj(x).view(T, H, dh).transpose(0, 1))
            k = rope(layer.self_attn.k_proj(x).view(T, Hkv, dh).transpose(0, 1))
            k = k.repeat_interleave(H // Hkv, dim=0)                         # query head h reads key head h // (H/Hkv)
            s = q @ k.transpose(-1, -2) / math.sqrt(dh)
            torch.testing.assert_close(r.trace.attention["self"][i].scores[0], s, atol=1e-5, rtol=0)
            w = s.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf")).softmax(-1)
            torch.testing.assert_close(w, out.attentions[i][0], atol=1e-5, rtol=0)


@pytest.mark.unit
def test_mistral_sliding_window_is_in_the_mask_and_the_scores_still_verify(loaded):
    m = loaded["mistral"]                                    # fixture: sliding_window 48, 64 positions
    words = (LM_TEXT + " ") * 10
    r = m.run(" ".join(words.split()[:58]))
    T = len(r.ids)
    assert T > 48
    q, k = torch.arange(T)[:, None], torch.arange(T)[None]
    for a in r.trace.attention["self"]:
        assert torch.equal(a.allowed[0], (k <= q) & (k > q - 48))
        assert a.weights[0, :, -1, : T - 48].abs().max() == 0
        again = a.scores.masked_fill(~a.allowed[:, None], float("-inf")).softmax(-1)
        torch.testing.assert_close(again, a.weights, atol=1e-5, rtol=0)


@pytest.mark.unit
def test_concurrent_runs_do_not_see_each_others_hooks(loaded):
    from concurrent.futures import ThreadPoolExecutor

    m = loaded["llama"]
    texts = [LM_TEXT, "a dog sleeps", "the river bank is wet . the black cat", "hello world"] * 3
    alone = {t: m.run(t) for t in set(texts)}
    with ThreadPoolExecutor(4) as pool:
        runs = list(pool.map(m.run, texts))
    for t, r in zip(texts, runs):
        assert len(r.trace.layernorms) == len(alone[t].trace.layernorms) == 5
        for x, y in zip(r.trace.attention["self"], alone[t].trace.attention["self"]):
            torch.testing.assert_close(x.scores, y.scores)
        for x, y in zip(r.trace.layernorms, alone[t].trace.layernorms):
            torch.testing.assert_close(x.x_in, y.x_in)


# ----------------------------------------------------------------------------- positions
@pytest.mark.unit
def test_positions_are_tagged_by_kind_from_the_architecture_table(tiny, loaded):
    kinds = {f: [(p.kind, p.stack, p.layout, p.table is None) for p in loaded[f].positions()] for f in FAMILIES}
    assert kinds["gpt2"] == [("learned", "", "interleaved", False)]
    for f in ROTARY:
        assert kinds[f] == [("rotary", "", "interleaved", True)], f
    for f in (*MLM, "bert-base"):
        assert kinds[f] == [("learned", "", "interleaved", False)], f
    roberta = reference(tiny["roberta"], "roberta")                 # RoBERTa's positions start at row 2 too
    np.testing.assert_array_equal(loaded["roberta"].positions()[0].table,
                                  roberta.roberta.embeddings.position_embeddings.weight.detach().numpy()[2:])
    assert loaded["roberta"].max_len == 64
    assert kinds["t5"] == [("relative", "", "interleaved", True)]
    assert kinds["bart"] == [("learned", "encoder", "interleaved", False), ("learned", "decoder", "interleaved", False)]
    assert kinds["marian"] == [("sinusoidal", "", "halves", False)]
    gpt2 = reference(tiny["gpt2"], "gpt2")
    np.testing.assert_array_equal(loaded["gpt2"].positions()[0].table, gpt2.transformer.wpe.weight.detach().numpy()[:64])
    bart = reference(tiny["bart"], "bart")
    np.testing.assert_array_equal(loaded["bart"].positions()[0].table,
                                  bart.model.encoder.embed_positions.weight.detach().numpy()[2:66])   # offset 2
    table = loaded["marian"].positions()[0].table                   # sin half, then cos half
    pos, d = np.arange(table.shape[0])[:, None], table.shape[1]
    ang = pos / 10000 ** (2 * np.arange(d // 2)[None] / d)
    np.testing.assert_allclose(table, np.concatenate([np.sin(ang), np.cos(ang)], 1), atol=1e-5)


# ----------------------------------------------------------------------------- tokens, predictions, generation
@pytest.mark.unit
def test_tokens_are_readable_and_specials_marked(loaded):
    for f, m in loaded.items():
        toks = m.tokenize(text_for(f))
        assert not any(("Ġ" in t or "▁" in t) for t in toks.tokens), (f, toks.tokens)
        assert all(t.strip() for t in toks.tokens)
    b = loaded["bert"].tokenize(TEXT["bert"])
    assert b.tokens[0] == "[CLS]" and b.tokens[-1] == "[SEP]" and b.special[0] and b.special[-1]
    assert "[MASK]" in b.tokens and b.special[b.tokens.index("[MASK]")]
    t5 = loaded["t5"].tokenize(SRC)
    assert t5.tokens[-1] == "</s>" and t5.special[-1] and not any(t5.special[:-1])
    ll = loaded["llama"].tokenize(LM_TEXT)
    assert ll.tokens[0] == "<s>" and ll.special[0] and not any(ll.special[1:])


@pytest.mark.unit
@pytest.mark.parametrize("family", slow_except([*CAUSAL, *SEQ2SEQ], {"gpt2", "llama", "t5"}))
def test_generation_with_cache_equals_without(loaded, family):
    m = loaded[family]
    a = m.generate(text_for(family), 6, greedy=True, use_cache=True, stop_at_eos=False)
    b = m.generate(text_for(family), 6, greedy=True, use_cache=False, stop_at_eos=False)
    assert a.new_ids == b.new_ids and len(a.steps) >= 2
    for sa, sb in zip(a.steps, b.steps):
        assert sa.choice.top_ids == sb.choice.top_ids
        np.testing.assert_allclose(sa.choice.top_probs, sb.choice.top_probs, atol=1e-5)
        assert len(sa.choice.top_ids) == min(m.TOP_KEPT, len(m.vocab))
    c = m.generate(text_for(family), 6, temperature=1.5, seed=3)
    d = m.generate(text_for(family), 6, temperature=1.5, seed=3)
    assert c.new_tokens == d.new_tokens


@pytest.mark.unit
@pytest.mark.parametrize("family", CAUSAL)
def test_causal_next_logits_hidden_states_and_logit_lens(tiny, loaded, family):
    m = loaded[family]
    r = m.run(LM_TEXT)
    ref = reference(tiny[family], family)
    with torch.no_grad():
        out = ref(input_ids=torch.tensor([r.ids]), output_hidden_states=True)
    torch.testing.assert_close(r.next_logits, out.logits[0, -1], atol=1e-5, rtol=0)
    torch.testing.assert_close(m.next_logits(r.ids), out.logits[0, -1], atol=1e-5, rtol=0)
    hidden = r.trace.hidden["self"]
    assert len(hidden) == 3                               # embeddings + 2 blocks
    final = ref.transformer.ln_f if family == "gpt2" else ref.model.norm
    with torch.no_grad():                                 # the last one is before the final norm, as for every layer
        torch.testing.assert_close(final(hidden[-1]), out.hidden_states[-1], atol=1e-5, rtol=0)
    toks, probs = m.logit_lens(r)
    assert probs.shape == (3, len(r.ids))
    assert toks[-1][-1] == m.vocab[int(out.logits[0, -1].argmax())]


@pytest.mark.unit
@pytest.mark.parametrize("family", MLM)
def test_masked_lm_predicts_at_the_mask(tiny, loaded, family):
    m = loaded[family]
    r = m.run(TEXT[family])                                        # "[MASK]" typed; RoBERTa's is <mask>
    assert r.tokens[r.predict_position] == m.mask_token and r.ids[r.predict_position] == m.tok.mask_token_id
    ref = reference(tiny[family], family)
    with torch.no_grad():
        logits = ref(input_ids=torch.tensor([r.ids])).logits[0, r.predict_position]
    torch.testing.assert_close(r.next_logits, logits, atol=1e-5, rtol=0)
    d = sampling.distribution(r.next_logits, top_k=5)
    assert int(d.keep.sum()) == 5
    assert m.run("the bear ate the honey").next_logits is None     # no mask: nothing to predict


@pytest.mark.unit
@pytest.mark.parametrize("family", ["gpt2", "llama", "bert"])
def test_padding_mask(loaded, family):
    m = loaded[family]
    pr = m.run_padded([text_for(family), "a dog"])
    short, valid = pr.tokens[1], pr.valid[1]
    n_pad = valid.count(False)
    assert n_pad > 0 and short.tokens[-n_pad:] == ["[PAD]"] * n_pad
    a = pr.trace.attention["self"][0]
    assert a.weights[1, :, :, -n_pad:].abs().max() == 0
    k = len(short.ids) - n_pad
    alone = m.run("a dog").trace.attention["self"][0]
    torch.testing.assert_close(a.weights[1, :, :k, :k], alone.weights[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(a.scores[1, :, :k, :k], alone.scores[0], atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- long inputs
@pytest.mark.unit
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_long_runs_are_compact_with_scores_on_demand(tmp_path, family):
    m = model.load(str(make_tiny(family, tmp_path / family, positions=2048)), "cpu")
    assert m.max_len == 2048                                          # the config's positions (the budget allows them)
    words = " ".join([LM_TEXT] * 60).split()
    long_run = m.run(" ".join(words[:300]))
    short = m.run(" ".join(words[:40])).trace
    n, k = len(long_run.ids), len(short.attention["self"][0].weights[0, 0])
    assert COMPACT_ABOVE < n <= 2048 and k < COMPACT_ABOVE
    assert long_run.ids[:k] == m.run(" ".join(words[:40])).ids       # whole words: the short text's tokens are a prefix
    tr = long_run.trace                       # a causal model's first k positions do not depend on what follows
    assert tr.attention["self"].compact                                 # model/hf/compact.py; test_compact.py
    for i, (a, b) in enumerate(zip(tr.attention["self"], short.attention["self"])):
        assert a.scores is None and a.pooled.dtype == torch.float16
        assert b.weights.dtype == torch.float32 and b.scores is not None
        for h in range(4):
            w = a.head_weights(h)                                        # recomputed on demand, float32
            assert w.shape == (1, n, n) and w.dtype == torch.float32
            torch.testing.assert_close(w[:, :k, :k], b.weights[:, h], atol=1e-5, rtol=0)
            s = m.scores(tr, i, h)
            assert s.shape == (1, n, n)
            torch.testing.assert_close(s[:, :k, :k], b.scores[:, h], atol=1e-5, rtol=0)
    assert all(ln.x_in is not None and ln.mean_in.shape == (1, n) for ln in tr.layernorms[:2])
    with pytest.raises(model.InputError):
        m.tokenize(" ".join([LM_TEXT] * 400))                         # past 2048 tokens: refused in words


@pytest.mark.unit
def test_scores_on_demand_equal_the_stored_scores_for_short_runs(loaded):
    m = loaded["mistral"]
    r = m.run(LM_TEXT)
    for i in range(2):
        for h in range(4):
            torch.testing.assert_close(m.scores(r, i, h), r.trace.attention["self"][i].scores[:, h])
    assert loaded["t5"].scores(loaded["t5"].run(SRC), 0, 0, "encoder") is None


# ----------------------------------------------------------------------------- failures, in words
@pytest.mark.unit
def test_empty_attentions_fail_loudly(tiny):
    m = model.load(tiny["gpt2"], "cpu")
    m.hf.set_attn_implementation("sdpa")
    with pytest.raises(ModelLoadError, match="no attention weights"):
        m.check_attentions()


@pytest.mark.unit
def test_clear_messages_for_bad_names(tmp_path, monkeypatch, tiny):
    with pytest.raises(ModelLoadError, match="not in the local Hugging Face cache"):
        model.load("no-such-user/no-such-model-xyz", "cpu")
    with pytest.raises(ModelLoadError, match="valid Hugging Face id"):
        model.load("no such model!!", "cpu")
    with pytest.raises(ModelLoadError, match="There is no folder"):
        model.load("/nonexistent/folder", "cpu")
    with pytest.raises(ModelLoadError, match="no config.json"):
        model.load(str(tmp_path), "cpu")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")             # an unreachable hub: refused at once, no long retries
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(ModelLoadError, match=r"Cannot reach the Hugging Face hub \(127.0.0.1:9"):
        model.load("surely-not-cached-model", "cpu")
    monkeypatch.setattr(hfload, "_available_bytes", lambda device: 10_000)
    with pytest.raises(ModelLoadError, match="Pick a smaller model"):
        model.load(tiny["gpt2"], "cpu")


@pytest.mark.unit
def test_hub_probe_uses_the_endpoint_host_and_port(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.local:8080/hf")
    assert hfload.hub_address() == ("mirror.local", 8080)
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.example")
    assert hfload.hub_address() == ("hf-mirror.example", 443)
    monkeypatch.setenv("HF_ENDPOINT", "http://plain.example")
    assert hfload.hub_address() == ("plain.example", 80)


@pytest.mark.unit
def test_unknown_architecture_gets_one_message_naming_the_supported_families(tmp_path):
    from transformers import ViTConfig

    ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError) as e:
        model.load(str(tmp_path), "cpu")
    msg = str(e.value)
    assert "“vit” model, a family this lab does not run" in msg
    for fam in ("GPT-2", "Llama", "Mistral", "Qwen2", "Gemma", "BERT", "T5", "BART", "Marian"):
        assert fam in msg


@pytest.mark.unit
def test_config_without_model_type_is_not_called_custom_code(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 32, "num_attention_heads": 2}))
    with pytest.raises(ModelLoadError, match="not a transformers model folder: its config.json lacks model_type") as e:
        model.load(str(tmp_path), "cpu")
    assert "trust_remote_code" not in str(e.value)


from app_pages.registry import KEYS as PAGES


@pytest.mark.apptest
@pytest.mark.parametrize("family", slow_except(FAMILIES, {"llama"}))   # rotary, grouped-query heads
def test_every_page_runs_on_each_family(tiny, family, monkeypatch):
    monkeypatch.setenv("LAB_ALLOW_FOLDERS", "1")             # the fixtures are folders on this machine
    for page in PAGES:
        at = AppTest.from_file(str(ROOT / "lab.py"), default_timeout=120)
        at.session_state["model_choice"] = "Other Hugging Face id or local folder…"
        at.session_state["model_custom"] = tiny[family]
        at.session_state["text"] = text_for(family)
        run_page(at, page)                               # opened by its link
        assert not at.exception, (family, page, [e.message for e in at.exception])
        assert not at.error, (family, page, [e.value for e in at.error])
        if page == "translate" and not charts(at):       # a random tiny model may stop at once: said plainly
            assert any("produced no words" in i.value for i in at.info), (family, [i.value for i in at.info])
        if page == "positional":                         # the words come from the position kind in the config
            said = " ".join(md.value for md in at.markdown)
            want = {"marian": "fixed sinusoidal table", "gpt2": "learned its own position vectors",
                    "llama": "rotary", "t5": "relative"}.get(family)
            assert want is None or want in said, (family, said[-400:])
            assert family != "marian" or "learned its own" not in said
        if family == "bert-base" and page == "sampling":  # no masked-LM head: says so, shows no made-up words
            assert any("no prediction head" in i.value for i in at.info), [i.value for i in at.info]
            assert not charts(at)
        elif page == "patching":                         # random weights may predict the same word for both texts
            assert charts(at) or at.info, (family, page)
        elif page == "experiments":                      # head ablation and no positions from the table, every family
            if family == "bert-base":
                assert any("no prediction head" in i.value for i in at.info), [i.value for i in at.info]
            else:
                assert len(charts(at)) >= 2, (family, page)
        elif page not in ("lstm", "train", "translate"):  # lstm and train show the built-in models
            assert charts(at), (family, page)


@pytest.mark.apptest
def test_break_it_ablates_heads_of_a_grouped_query_llama(tiny, monkeypatch):
    """Break it on the Llama fixture (4 query heads, 2 kv heads): every head of layer 1 off changes the
    next-token distribution the page draws."""
    monkeypatch.setenv("LAB_ALLOW_FOLDERS", "1")
    at = AppTest.from_file(str(ROOT / "lab.py"), default_timeout=120)
    at.session_state["model_choice"] = "Other Hugging Face id or local folder…"
    at.session_state["model_custom"] = tiny["llama"]
    at.session_state["text"] = LM_TEXT
    run_page(at, "experiments")
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.selectbox(key="break").options == ["Ablate attention heads", "Remove the positional encoding"]
    bars = [t for ch in charts(at) for t in ch["data"] if t.get("type") == "bar"]
    intact, broken = (np.asarray(t["x"] if t.get("orientation") == "h" else t["y"], float) for t in bars[:2])
    assert np.abs(intact - broken).max() > 1e-4                     # the ablation is visible in the chart


@pytest.mark.unit
def test_token_limit_comes_from_positions_and_the_trace_budget(tmp_path, monkeypatch):
    """No constant: a model with 4,096 positions is traced as far as the server's trace budget allows, and the
    message for a longer text names that limit."""
    from model.serving.store import max_tokens_for, run_need

    big = model.load(str(make_tiny("gpt2", tmp_path / "big", positions=4096)), "cpu")
    assert big.max_len == 4096                                        # a tiny model fits its positions
    monkeypatch.setenv("LAB_TRACE_BUDGET_MB", "2")
    small = model.load(str(make_tiny("gpt2", tmp_path / "small", positions=4096)), "cpu")
    budget = 2 * 2**20
    assert 1 < small.max_len < 4096
    assert run_need(small.arch, small.max_len, None, COMPACT_ABOVE) <= budget      # what it keeps and its working
    assert run_need(small.arch, small.max_len + 1, None, COMPACT_ABOVE) > budget   # memory, together
    assert small.max_len == max_tokens_for(small, budget, 4096)
    with pytest.raises(model.LabError, match=str(small.max_len)):
        small.tokenize("the bear ate the honey " * 200)
