"""Reference values of the built-in Transformers' traces and interventions, saved from commit 9615489.

`tests/data/reference_9615489.json` (SHA-256 fingerprints) and `reference_weights.safetensors` (the two
random models' weights) were written by this script on 9615489, before the forward pass
was rewritten around hook points; `tests/test_reference.py` recomputes every entry with the current code
and asserts bit-identical tensors. Run it again only to extend the file (on the commit named there):

    python -m devkit.reference tests/data
"""
from __future__ import annotations

import hashlib
import json
import sys

from pathlib import Path

import torch
from safetensors.torch import save_file

TEXTS_LM = ["the bear ate the honey because it was hungry", "the keys to the old cabinet are"]
TEXT_SRC = "the black cat ate the soup because it was hot"


def _interventions(stacks: dict[str, tuple[int, int, list[str]]], pre: bool):
    """name -> Interventions: one of each kind, on every stack and sublayer."""
    from model.nets.transformer import Interventions

    out = {"none": Interventions()}
    for s, (L, H, subs) in stacks.items():
        out[f"heads_zero_{s}"] = Interventions(ablate_heads={(s, L - 1, 0), (s, 0, H - 1)})
        out[f"heads_mean_{s}"] = Interventions(ablate_heads={(s, L - 1, 0), (s, 0, H - 1)}, head_mode="mean")
        for sub in subs:
            out[f"skipln_{s}_{sub}"] = Interventions(skip_layernorm={(s, 0, sub)})
            out[f"skipres_{s}_{sub}"] = Interventions(skip_residual={(s, L - 1, sub)})
            out[f"skipboth_{s}_{sub}"] = Interventions(skip_layernorm={(s, 0, sub)}, skip_residual={(s, 0, sub)})
        if pre and subs:
            out[f"skipfinal_{s}"] = Interventions(skip_layernorm={(s, -1, "final")})
    out["positions"] = Interventions(no_positions=True)
    out["mask"] = Interventions(no_causal_mask=True)
    out["scale"] = Interventions(no_scale=True)
    out["mix"] = Interventions(no_positions=True, no_scale=True, head_mode="mean",
                               ablate_heads={(next(iter(stacks)), 0, 1)})
    return out


def _trace_tensors(prefix: str, tr, into: dict) -> None:
    for role, stack in tr.attention.items():
        for i, a in enumerate(stack):
            into[f"{prefix}.att.{role}.{i}.weights"] = a.weights
            if a.scores is not None:
                into[f"{prefix}.att.{role}.{i}.scores"] = a.scores
            if a.allowed is not None:
                into[f"{prefix}.att.{role}.{i}.allowed"] = a.allowed.to(torch.uint8)
    for i, ln in enumerate(tr.layernorms):
        into[f"{prefix}.ln.{i}.in"] = ln.x_in
        into[f"{prefix}.ln.{i}.out"] = ln.x_out
    for s, hs in tr.hidden.items():
        for i, h in enumerate(hs):
            into[f"{prefix}.hidden.{s}.{i}"] = h


def _random_lm(seed: int):
    from model.nets.transformer import TransformerConfig, TransformerLM

    torch.manual_seed(seed)
    m = TransformerLM(TransformerConfig(vocab_size=40, d_model=32, h=4, d_ff=64, n_layers=2, max_len=24,
                                        norm="pre", pos_encoding="learned", activation="gelu", dropout=0.0))
    return m.eval()


def _random_translator(seed: int):
    from model.nets.transformer import Seq2SeqTransformer, TransformerConfig

    torch.manual_seed(seed)
    m = Seq2SeqTransformer(TransformerConfig(arch="encoder-decoder", vocab_size=30, src_vocab_size=36, d_model=32,
                                             h=4, d_ff=64, n_layers=2, n_encoder_layers=2, max_len=24, norm="pre",
                                             dropout=0.0))
    return m.eval()


# the built-in checkpoints as shipped at 9615489 (the shipped ones are retrained since; these stay fixed)
REFERENCE_CHECKPOINTS = Path(__file__).resolve().parent.parent / "tests" / "data" / "reference_checkpoints"


@torch.inference_mode()
def compute(modules: dict | None = None) -> dict[str, torch.Tensor]:
    """Every reference entry; `modules` gives the random models' weights (from the file) when checking."""
    from model.builtin import load_builtin

    dev = torch.device("cpu")
    out: dict[str, torch.Tensor] = {}
    lm = load_builtin(REFERENCE_CHECKPOINTS / "transformer-lm", dev).module
    tr = load_builtin(REFERENCE_CHECKPOINTS / "translator-en-fr", dev)
    rlm, rtr = _random_lm(0), _random_translator(1)
    if modules is not None:
        rlm.load_state_dict(modules["rlm"])
        rtr.load_state_dict(modules["rtr"])
    else:
        for k, v in rlm.state_dict().items():
            out[f"weights.rlm.{k}"] = v.clone()
        for k, v in rtr.state_dict().items():
            out[f"weights.rtr.{k}"] = v.clone()
    lm_ids = torch.tensor([[1, 5, 9, 12, 5, 20, 31, 7, 8, 14], [1, 5, 17, 6, 5, 22, 40, 11, 0, 0]])
    lm_pad = lm_ids != 0
    lm_pad[:, 0] = True
    r_ids = torch.randint(3, 40, (2, 9), generator=torch.Generator().manual_seed(3))
    cases = [("lm", lm, lm_ids, lm_pad, False), ("rlm", rlm, r_ids, None, True)]
    for name, m, ids, pad, pre in cases:
        ivs = _interventions({"self": (m.cfg.n_layers, m.cfg.h, ["attn", "ffn"])}, pre)
        for ivn, iv in ivs.items():
            for traced in (False, True):
                o = m(ids, pad_mask=pad, trace=traced, interventions=iv)
                out[f"{name}.{ivn}.{int(traced)}.logits"] = o.logits
                if traced:
                    _trace_tensors(f"{name}.{ivn}", o.trace, out)
        if pre is False:                                          # the key/value cache, step by step
            o = m(ids[:1, :6], use_cache=True)
            o2 = m(ids[:1, 6:8], past=o.past, use_cache=True)
            out[f"{name}.cache.logits"] = o2.logits
    a, b = tr.tokenize(TEXT_SRC).ids, tr.tokenize("the black cat").ids
    src = torch.tensor([a, b + [0] * (len(a) - len(b))])
    src_pad = src != 0
    tgt = torch.tensor([[tr.bos_id, 5, 9, 12, 7, 30, 11], [tr.bos_id, 8, 6, 4, 0, 0, 0]])
    tgt_pad = tgt != 0
    tgt_pad[:, 0] = True
    r_src = torch.randint(3, 36, (2, 8), generator=torch.Generator().manual_seed(4))
    r_tgt = torch.randint(3, 30, (2, 6), generator=torch.Generator().manual_seed(5))
    cases = [("tr", tr.module, src, src_pad, tgt, tgt_pad, False), ("rtr", rtr, r_src, None, r_tgt, None, True)]
    for name, m, s, sp, t, tp, pre in cases:
        L, E, H = m.cfg.n_layers, m.cfg.n_encoder_layers, m.cfg.h
        ivs = _interventions({"encoder": (E, H, ["attn", "ffn"]), "decoder": (L, H, ["attn", "cross", "ffn"]),
                              "cross": (L, H, [])}, pre)
        for ivn, iv in ivs.items():
            for traced in (False, True):
                o = m(s, t, src_pad=sp, tgt_pad=tp, trace=traced, interventions=iv)
                out[f"{name}.{ivn}.{int(traced)}.logits"] = o.logits
                if traced:
                    _trace_tensors(f"{name}.{ivn}", o.trace, out)
        mem = m.encode(s, sp)
        lg, past = m.decode(t[:, :3], mem, src_pad=sp)
        lg2, _ = m.decode(t[:, 3:5], mem, src_pad=sp, past=past)
        out[f"{name}.cache.logits"] = lg2
    return {k: v.detach().clone().contiguous() for k, v in out.items()}


def fingerprint(t: torch.Tensor) -> dict:
    """Bit-exact identity of a tensor (SHA-256 of its bytes), with its shape, dtype and sum for a diagnosis."""
    t = t.detach().contiguous().cpu()
    return {"sha256": hashlib.sha256(t.numpy().tobytes()).hexdigest(), "shape": list(t.shape),
            "dtype": str(t.dtype), "sum": float(t.double().sum()) if t.is_floating_point() else int(t.sum())}


def main(folder: str) -> None:
    values = compute()
    weights = {k[len("weights."):]: v for k, v in values.items() if k.startswith("weights.")}
    save_file(weights, f"{folder}/reference_weights.safetensors", metadata={"commit": "9615489"})
    prints = {k: fingerprint(v) for k, v in values.items() if not k.startswith("weights.")}
    with open(f"{folder}/reference_9615489.json", "w") as f:
        json.dump({"commit": "9615489", "tensors": prints}, f, indent=0, sort_keys=True)
    print(len(prints), "tensors fingerprinted,", len(weights), "random-model weights saved")


if __name__ == "__main__":
    main(sys.argv[1])
