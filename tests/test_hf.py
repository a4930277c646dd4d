"""Hugging Face models through model.load(path): tiny random models of each family, saved with
save_pretrained into a temporary folder (no network). What the lab traces must equal what
transformers itself computes."""
import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSeq2SeqLM

import model
from conftest import ROOT, charts
from devkit.hf_fixtures import FAMILIES, make_tiny
from model import ModelLoadError, sampling
from model import hf as hfmod

TEXT = {"gpt2": "the bear ate the honey because it was hungry", "bert": "the bear ate the [MASK] because it was hungry"}
SRC = "the black cat ate the mouse"
AUTO = {"gpt2": AutoModelForCausalLM, "bert": AutoModelForMaskedLM}


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {f: str(make_tiny(f, root / f)) for f in FAMILIES}


@pytest.fixture(scope="session")
def loaded(tiny):
    return {f: model.load(p, "cpu") for f, p in tiny.items()}


def reference(path, family):
    cls = AUTO.get(family, AutoModelForSeq2SeqLM)
    return cls.from_pretrained(path, attn_implementation="eager").eval()


def norm_io(ref, call):
    """Run `call` with our own hooks on every norm module of the reference model: [(input, output)]."""
    seen, handles = [], []
    for _, mod in ref.named_modules():
        if isinstance(mod, torch.nn.LayerNorm) or type(mod).__name__.endswith(("LayerNorm", "RMSNorm")):
            handles.append(mod.register_forward_hook(lambda m, i, o: seen.append((i[0].detach(), o.detach()))))
    try:
        out = call()
    finally:
        for h in handles:
            h.remove()
    return out, seen


def text_for(f):
    return TEXT.get(f, SRC)


@pytest.mark.parametrize("family", FAMILIES)
def test_attention_and_layernorm_equal_transformers(tiny, loaded, family):
    m = loaded[family]
    r = m.run(text_for(family))
    ref = reference(tiny[family], family)
    ids = torch.tensor([r.ids])
    with torch.no_grad():
        if m.kind == "seq2seq":
            out, io = norm_io(ref, lambda: ref(input_ids=ids, decoder_input_ids=torch.tensor([r.target_ids]),
                                               output_attentions=True))
            pairs = [("encoder", out.encoder_attentions), ("decoder", out.decoder_attentions),
                     ("cross", out.cross_attentions)]
        else:
            out, io = norm_io(ref, lambda: ref(input_ids=ids, output_attentions=True))
            pairs = [("self", out.attentions)]
    for stack, atts in pairs:
        assert len(r.trace.attention[stack]) == len(atts) == 2
        for ours, theirs in zip(r.trace.attention[stack], atts):
            assert ours.weights.shape[1] == 4                       # every head
            torch.testing.assert_close(ours.weights, theirs.float(), atol=1e-6, rtol=0)
    lns = r.trace.layernorms
    assert len(lns) == len(io) > 0
    for ln, (x_in, x_out) in zip(lns, io):
        torch.testing.assert_close(ln.mean_in, x_in.mean(-1), atol=1e-5, rtol=0)
        torch.testing.assert_close(ln.std_in, x_in.std(-1, unbiased=False), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ln.std_out, x_out.std(-1, unbiased=False), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["gpt2", "bert"])
def test_raw_scores_are_q_dot_k_and_reproduce_the_weights(tiny, loaded, family):
    m = loaded[family]
    r = m.run(text_for(family))
    ref = reference(tiny[family], family)
    first = r.trace.attention["self"][0]
    assert first.scores is not None
    h = ref.transformer.wte.weight[r.ids] + ref.transformer.wpe.weight[: len(r.ids)] if family == "gpt2" else None
    if family == "gpt2":                                 # our own q.k/sqrt(d_k) from GPT-2's first layer
        with torch.no_grad():
            x = ref.transformer.h[0].ln_1(h)
            q, k, _ = ref.transformer.h[0].attn.c_attn(x).split(x.shape[-1], dim=-1)
            q, k = (t.view(len(r.ids), 4, -1).transpose(0, 1) for t in (q, k))
            torch.testing.assert_close(first.scores[0], q @ k.transpose(-1, -2) / np.sqrt(q.shape[-1]), atol=1e-5, rtol=0)
        assert torch.equal(first.allowed[0], torch.ones(len(r.ids), len(r.ids), dtype=torch.bool).tril())
    else:
        assert first.allowed.all()                       # BERT: no causal mask
    for a in r.trace.attention["self"]:
        again = a.scores.masked_fill(~a.allowed[:, None], float("-inf")).softmax(-1)
        torch.testing.assert_close(again, a.weights, atol=1e-5, rtol=0)


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


@pytest.mark.parametrize("family", ["gpt2", "t5", "bart", "marian"])
def test_generation_with_cache_equals_without(loaded, family):
    m = loaded[family]
    a = m.generate(text_for(family), 6, greedy=True, use_cache=True)
    b = m.generate(text_for(family), 6, greedy=True, use_cache=False)
    assert [s.token_id for s in a.steps] == [s.token_id for s in b.steps]
    for sa, sb in zip(a.steps, b.steps):
        torch.testing.assert_close(sa.dist.probs, sb.dist.probs, atol=1e-5, rtol=0)
    c = m.generate(text_for(family), 6, temperature=1.5, seed=3)
    d = m.generate(text_for(family), 6, temperature=1.5, seed=3)
    assert c.new_tokens == d.new_tokens


def test_gpt2_next_logits_hidden_states_and_positions(tiny, loaded):
    m = loaded["gpt2"]
    r = m.run(TEXT["gpt2"])
    ref = reference(tiny["gpt2"], "gpt2")
    with torch.no_grad():
        out = ref(input_ids=torch.tensor([r.ids]), output_hidden_states=True)
    torch.testing.assert_close(r.next_logits, out.logits[0, -1], atol=1e-5, rtol=0)
    hidden = r.trace.hidden["self"]
    assert len(hidden) == 3                               # embeddings + 2 blocks
    with torch.no_grad():                                 # the last one is before ln_f, as for every other layer
        torch.testing.assert_close(ref.transformer.ln_f(hidden[-1]), out.hidden_states[-1], atol=1e-5, rtol=0)
    toks, probs = m.logit_lens(r)
    assert probs.shape == (3, len(r.ids))
    assert toks[-1][-1] == m.vocab[int(out.logits[0, -1].argmax())]
    learned = [v for k, v in m.positional_tables().items() if "sinusoidal" not in k]
    np.testing.assert_allclose(learned[0], ref.transformer.wpe.weight.detach().numpy()[: m.max_len])


def test_masked_lm_predicts_at_the_mask(tiny, loaded):
    m = loaded["bert"]
    r = m.run(TEXT["bert"])
    assert r.tokens[r.predict_position] == "[MASK]"
    ref = reference(tiny["bert"], "bert")
    with torch.no_grad():
        logits = ref(input_ids=torch.tensor([r.ids])).logits[0, r.predict_position]
    torch.testing.assert_close(r.next_logits, logits, atol=1e-5, rtol=0)
    d = sampling.distribution(r.next_logits, top_k=5)
    assert int(d.keep.sum()) == 5
    assert m.run("the bear ate the honey").next_logits is None     # no mask: nothing to predict
    with pytest.raises(model.InputError):
        m.generate("the bear", 3)


def test_padding_mask_on_gpt2(loaded):
    toks, tr = loaded["gpt2"].run_padded([TEXT["gpt2"], "a dog"])
    short = toks[1]
    n_pad = short.tokens.count("[PAD]")
    assert n_pad > 0
    a = tr.attention["self"][0]
    assert a.weights[1, :, :, -n_pad:].abs().max() == 0 or n_pad == 0
    alone = loaded["gpt2"].run("a dog").trace.attention["self"][0].weights[0]
    k = len(short.ids) - n_pad
    torch.testing.assert_close(a.weights[1, :, :k, :k], alone, atol=1e-5, rtol=0)


def test_empty_attentions_fail_loudly(tiny):
    m = model.load(tiny["gpt2"], "cpu")
    m.hf.set_attn_implementation("sdpa")
    with pytest.raises(ModelLoadError, match="no attention weights"):
        m.check_attentions()


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
    with pytest.raises(ModelLoadError, match="Cannot reach the Hugging Face hub"):
        model.load("surely-not-cached-model", "cpu")
    monkeypatch.setattr(hfmod, "_available_bytes", lambda device: 10_000)
    with pytest.raises(ModelLoadError, match="Pick a smaller model"):
        model.load(tiny["gpt2"], "cpu")


def test_unsupported_family_is_named(tmp_path):
    from transformers import ViTConfig

    ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(tmp_path)
    with pytest.raises(ModelLoadError, match="family this lab does not run"):
        model.load(str(tmp_path), "cpu")


from app_pages.registry import KEYS as PAGES


@pytest.mark.parametrize("family", FAMILIES)
def test_every_page_runs_on_each_family(tiny, family):
    for page in PAGES:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
        at.session_state["model_choice"] = "Other Hugging Face id or local folder…"
        at.session_state["model_custom"] = tiny[family]
        at.session_state["text"] = text_for(family)
        at.run()
        at.switch_page(f"app_pages/{page}.py")
        at.run()
        assert not at.exception, (family, page, [e.message for e in at.exception])
        assert not at.error, (family, page, [e.value for e in at.error])
        if page == "translate" and not charts(at):       # a random tiny model may stop at once: said plainly
            assert any("produced no words" in i.value for i in at.info), (family, [i.value for i in at.info])
        elif page != "lstm":
            assert charts(at), (family, page)
