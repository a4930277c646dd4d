"""Look inside a model from the command line, or export what it computed as JSON.

    python -m model.inspect --list
    python -m model.inspect --model transformer-lm --text "the bear ate the honey because it was hungry" --json
    python -m model.inspect --model translator-en-fr --text "the black cat ate the mouse" --json
    python -m model.inspect --model translator-en-fr --text "the black cat ate the mouse" --target "le chat noir" --json

The JSON object holds: tokens; attention (keys "self", or "encoder"/"decoder"/"cross"), each a
list over layers of a list over heads of the [query][key] weight matrix; layernorm (per LayerNorm,
per token: mean and std of its input and output); next_token (top candidates) where the model
predicts one; lstm gates for the LSTM.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch

from . import LabError, builtin_names, load


def _r(t: torch.Tensor, nd: int = 5):
    return torch.round(t.float(), decimals=nd).tolist()


def inspect_json(m, text: str, target: str | None = None, top: int = 10) -> dict:
    run = m.run(text, target) if target is not None else m.run(text)
    out: dict = {"model": m.name, "family": m.arch.family, "tokens": run.tokens}
    if run.target_tokens is not None:
        out["target_tokens"] = run.target_tokens
    if run.unknown:
        out["unknown_words"] = run.unknown
    out["attention"] = {k: [_r(a.weights[0]) for a in layers] for k, layers in run.trace.attention.items()}
    out["layernorm"] = [{"name": ln.name, "mean_in": _r(ln.mean_in[0]), "std_in": _r(ln.std_in[0]),
                         "mean_out": _r(ln.mean_out[0]), "std_out": _r(ln.std_out[0])} for ln in run.trace.layernorms]
    if run.trace.lstm:
        out["lstm"] = [{g: _r(getattr(lt, g)[0]) for g in ("input_gate", "forget_gate", "output_gate", "candidate",
                                                         "cell", "hidden")} for lt in run.trace.lstm]
    if run.next_logits is not None:
        p = run.next_logits.float().softmax(-1)
        vals, idx = p.topk(min(top, p.numel()))
        out["next_token"] = [{"token": m.vocab[i], "id": i, "prob": round(v, 6)} for v, i in zip(vals.tolist(), idx.tolist())]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--list", action="store_true", help="print the built-in model names, one a line")
    ap.add_argument("--model", default="transformer-lm", help="built-in name, Hugging Face id or local folder")
    ap.add_argument("--text", help="input text (the source sentence for a translator)")
    ap.add_argument("--target", help="decoder-side text for an encoder-decoder (default: its own greedy output)")
    ap.add_argument("--device", default=None, help="auto (default), cpu, cuda or mps")
    ap.add_argument("--top", type=int, default=10, help="how many next-token candidates to list")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    a = ap.parse_args(argv)
    if a.list:
        print("\n".join(builtin_names()))
        return 0
    if a.text is None:
        ap.error("--text is required (or use --list)")
    try:
        m = load(a.model, a.device)
        data = inspect_json(m, a.text, a.target, a.top)
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.json:
        json.dump(data, sys.stdout, ensure_ascii=False)
        print()
        return 0
    print(f"{m.name} ({m.arch.family}) on {m.device}")
    print("tokens:", " | ".join(data["tokens"]))
    if "target_tokens" in data:
        print("target:", " | ".join(data["target_tokens"]))
    for k, layers in data["attention"].items():
        print(f"{k} attention: {len(layers)} layers x {len(layers[0])} heads")
    for c in data.get("next_token", []):
        print(f"  {c['prob']:.3f}  {c['token']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
