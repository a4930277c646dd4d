"""Hook points: the same names on every model, and each intervention at a Hugging Face hook point equals the
same change made independently in a copy of the weights (W_o's columns of a head zeroed, the position
module's output removed)."""
import copy

import pytest
import torch

import model
from devkit.hf_fixtures import FAMILIES, ROTARY, make_tiny
from model import hooks
from model.hooks import HookRun, hook_points
from model.teaching.interventions import Interventions, hooked_run, kinds, layout
from model.nets.transformer import Seq2SeqTransformer, TransformerConfig, TransformerLM

from conftest import slow_except

pytestmark = pytest.mark.unit
PREDICTING = [f for f in FAMILIES if f != "bert-base"]
SEQ2SEQ = ("t5", "bart", "marian")


def test_builtin_hook_points_are_named_like_the_trace():
    lm = TransformerLM(TransformerConfig(vocab_size=20, d_model=16, h=2, d_ff=32, n_layers=2, norm="pre"))
    names = set(hook_points(lm))
    for want in ("pos", "blocks.0.resid_pre", "blocks.0.attn.scores", "blocks.0.attn.weights", "blocks.0.attn.head_out",
                 "blocks.0.attn.out", "blocks.1.ffn.out", "blocks.1.ln_attn.in", "blocks.1.ln_ffn.out",
                 "blocks.1.attn.skip", "blocks.1.resid_post", "ln_final.out"):
        assert want in names, want
    tr = Seq2SeqTransformer(TransformerConfig(arch="encoder-decoder", vocab_size=20, src_vocab_size=20, d_model=16,
                                              h=2, d_ff=32, n_layers=1, n_encoder_layers=1))
    names = set(hook_points(tr))
    assert {"encoder.pos", "encoder.blocks.0.attn.weights", "decoder.blocks.0.cross.head_out",
            "decoder.blocks.0.ln_cross.out", "decoder.pos"} <= names


def test_a_run_records_only_in_its_own_thread():
    import threading

    torch.manual_seed(0)
    lm = TransformerLM(TransformerConfig(vocab_size=20, d_model=16, h=2, d_ff=32, n_layers=1, dropout=0.0)).eval()
    ids = torch.tensor([[1, 2, 3]])
    run = HookRun(record={"blocks.0.attn.head_out"})
    other: list = []
    with hooks.active(run):
        t = threading.Thread(target=lambda: other.append(lm(ids).logits))
        t.start()
        t.join(timeout=60)
        lm(ids)
    assert list(run.cache) == ["blocks.0.attn.head_out"]            # one call recorded: this thread's
    assert hooks.current() is None and len(other) == 1


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("hooks")
    return {f: model.load(str(make_tiny(f, root / f)), "cpu") for f in FAMILIES}


def _inputs(lab, family):
    ids = torch.tensor([lab.tokenize("the bear ate the honey because it was hungry").ids])
    kw = {"input_ids": ids}
    if family in SEQ2SEQ:
        kw["decoder_input_ids"] = torch.tensor([[lab.bos_id, 5, 7, 9]])
    return kw


def _logits(hf, kw):
    with torch.inference_mode():
        return hf(**kw).logits


def _zero_head_columns(hf, lab, stack, layer, head):
    """Independent path: W_o's input columns of one head set to zero in a copy of the model."""
    from model.hf.capture import resolve

    spec = lab.spec.attention[stack]
    o = resolve(hf.base_model, spec.o.format(i=layer))
    w = o.weight
    d_in = w.shape[0] if type(o).__name__ == "Conv1D" else w.shape[1]
    dh = d_in // lab.n_heads
    with torch.no_grad():
        if type(o).__name__ == "Conv1D":                              # GPT-2: weight (in, out)
            w[head * dh:(head + 1) * dh] = 0
        else:                                                         # nn.Linear: weight (out, in)
            w[:, head * dh:(head + 1) * dh] = 0


@pytest.mark.parametrize("family", slow_except(PREDICTING, {"gpt2", "llama", "bert", "t5"}))
def test_head_ablation_at_the_hook_point_equals_zeroing_its_columns_of_w_o(tiny, family):
    lab = tiny[family]
    kw = _inputs(lab, family)
    assert "heads" in kinds(lab)
    stacks = list(layout(lab))
    assert stacks == (["encoder", "decoder", "cross"] if family in SEQ2SEQ else ["self"])
    for stack in stacks:
        iv = Interventions(ablate_heads={(stack, 1, 2)})
        with hooks.active(hooked_run(lab, iv)):
            got = _logits(lab.hf, kw)
        ref = copy.deepcopy(lab.hf)
        _zero_head_columns(ref, lab, stack, 1, 2)
        want = _logits(ref, kw)
        assert not torch.allclose(got, _logits(lab.hf, kw)), (family, stack)   # it changed something
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", slow_except(PREDICTING, {"gpt2", "llama", "bert", "t5"}))
def test_no_positions_at_the_hook_point_equals_removing_them_from_the_weights(tiny, family):
    from model.hf.capture import resolve

    lab = tiny[family]
    kw = _inputs(lab, family)
    assert "positions" in kinds(lab)
    with hooks.active(hooked_run(lab, Interventions(no_positions=True))):
        got = _logits(lab.hf, kw)
    ref = copy.deepcopy(lab.hf)
    with torch.no_grad():
        for _, path in lab.spec.position.modules:
            mod = resolve(ref.base_model, path)
            if family in ROTARY:                                      # angle 0 everywhere: cos 1, sin 0
                mod.inv_freq.zero_()
                mod.original_inv_freq = mod.inv_freq
            else:
                mod.weight.zero_()
    want = _logits(ref, kw)
    assert not torch.allclose(got, _logits(lab.hf, kw)), family
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_unsupported_interventions_on_a_hugging_face_model_are_named(tiny):
    lab = tiny["llama"]
    with pytest.raises(model.LabError, match="not: no causal mask"):
        hooked_run(lab, Interventions(no_causal_mask=True))
    with pytest.raises(model.LabError, match="No head 9 in layer 1"):
        hooked_run(lab, Interventions(ablate_heads={("self", 0, 8)}))
    assert kinds(tiny["bert-base"]) == frozenset()
