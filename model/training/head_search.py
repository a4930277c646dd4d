"""Look for an encoder head that tracks "it" in translators trained WITHOUT any attention loss.

    python -m model.training.head_search --out /tmp/heads seed1 enc3      # train and measure variants
    python -m model.training.head_search --measure model/checkpoints/translator-en-fr

Each variant is the shipped translator recipe with one thing changed (seed, encoder depth, heads,
data size); it is trained with the same code (model.training.train) and measured with
model.training.evaluate.it_head_tables on the held-out pronoun sentences
(corpora.pronoun_heldout_pairs: eater / food pairs never seen together in training): for every
encoder head, the share of sentences where the attention from "it" is highest on its referent.
"""
from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

from ..builtin import load_builtin
from ..device import pick_device
from . import train as T
from .evaluate import it_head_tables, pronoun_accuracy

BASE = "translator-en-fr"
VARIANTS: dict[str, dict] = {
    "enc2": dict(model=dict(n_encoder_layers=2)),                                   # 2 + 2 layers, 3000 steps
    "short": dict(train=dict(steps=1200)),                                          # 3 + 2 layers, 1200 steps
    "seed1-enc2-short": dict(model=dict(n_encoder_layers=2), train=dict(seed=1, steps=1200)),
}


def measure(folder: Path) -> dict:
    lab = load_builtin(folder, pick_device("cpu"))
    tab = it_head_tables(lab)
    cfg = json.loads((Path(folder) / "config.json").read_text())
    return {"folder": str(folder), "seed": cfg["train"]["seed"], "steps": cfg["train"]["steps"],
            "encoder_layers": cfg["model"]["n_encoder_layers"], "heads": cfg["model"]["h"],
            "seconds": cfg["train"].get("seconds"), **tab,
            "pronoun_accuracy": pronoun_accuracy(lab)["pronoun_accuracy"]}


def run_variant(name: str, out: Path) -> dict:
    recipe = copy.deepcopy(T.RECIPES[BASE])
    for part, changes in VARIANTS[name].items():
        recipe[part].update(changes)
    T.RECIPES[f"{BASE}-{name}"] = recipe
    folder = T.train(f"{BASE}-{name}", out / name, quiet=True)
    return measure(folder)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="*", help=f"any of {', '.join(VARIANTS)}")
    ap.add_argument("--out", type=Path, default=Path("/tmp/head-search"))
    ap.add_argument("--measure", type=Path, nargs="*", default=[])
    a = ap.parse_args(argv)
    unknown = [v for v in a.variants if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    for folder in a.measure:
        print(json.dumps(measure(folder)))
    for v in a.variants:
        res = run_variant(v, a.out)
        (a.out / v / "head_search.json").write_text(json.dumps(res, indent=1) + "\n")
        print(json.dumps(res))


if __name__ == "__main__":
    main()
