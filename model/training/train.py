"""Train the built-in models from the project's own corpora, deterministically, on the CPU.

    python -m model.training.train all                  # all three, a few minutes each on 2 CPU cores
    python -m model.training.train transformer-lm --steps 2000 --out /tmp/my-lm

Each run writes a checkpoint folder (config.json with the loss curve and the evaluation
figures, model.safetensors, tokenizer file(s)) that `model.load(folder)` opens.

Training uses one CPU thread (recipe "threads"), so the same recipe gives the same weights on
any machine. The shipped translator is trained on the translation loss alone. A recipe may add one
extra loss term ("it_attention": layer, head, weight): on training sentences with "because it
was ...", that encoder head is pushed to attend from "it" to the noun it refers to (the eater for
hungry/tired, the food otherwise); the earlier shipped translator had it (a planted head). Where a
recipe has it, it is stored in config.json and said on every page (model.builtin training_notes);
model.training.head_search looks for a head that does this without it.
"""
from __future__ import annotations

import argparse
import math
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

from ..teaching import corpora
from ..builtin import BUILTIN, CHECKPOINTS, build_module, save_checkpoint
from ..device import pick_device
from .evaluate import evaluate_folder, pad_batch
from ..nets.tokenizer import SPECIALS, UNK, WordTokenizer, build_word_tokenizer

# Everything that defines a built-in model. Changing a number here and re-running train changes the model.
RECIPES: dict[str, dict] = {
    "transformer-lm": dict(
        type="transformer-lm", data=dict(n_train=40000, n_heldout=2000, seed=0),
        model=dict(arch="decoder", d_model=128, h=4, d_ff=512, n_layers=3, max_len=64, dropout=0.1,
                   pos_encoding="learned", norm="pre", activation="gelu", tie_embeddings=True),
        train=dict(steps=1500, batch=32, lr=2e-3, warmup=200, weight_decay=0.01, seed=0, threads=1)),
    "lstm-lm": dict(
        type="lstm-lm", data=dict(n_train=40000, n_heldout=2000, seed=0),
        model=dict(d_embed=128, d_hidden=192, n_layers=2, dropout=0.1, max_len=64),
        train=dict(steps=1500, batch=32, lr=3e-3, warmup=100, weight_decay=0.0, seed=0, threads=1)),
    "translator-en-fr": dict(
        type="translator", data=dict(n_train=80000, n_heldout=1000, seed=0),
        model=dict(arch="encoder-decoder", d_model=128, h=4, d_ff=512, n_layers=2, n_encoder_layers=3,
                   max_len=32, dropout=0.1, pos_encoding="sinusoidal", norm="post", activation="relu",
                   tie_embeddings=True),
        train=dict(steps=3000, batch=48, lr=1e-3, warmup=300, weight_decay=0.0, seed=1, threads=1)),
}


def _lr(step: int, base: float, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to 10%."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def lm_windows(docs: list[list[int]], max_len: int, batch: int, rng: random.Random) -> torch.Tensor:
    """A batch of windows, each starting at a sentence's [BOS] and filled with the following sentences."""
    out = []
    for _ in range(batch):
        i = rng.randrange(len(docs))
        ids: list[int] = []
        while len(ids) < max_len + 1:
            ids.extend(docs[i % len(docs)])
            i += 1
        out.append(ids[: max_len + 1])
    return torch.tensor(out, dtype=torch.long)


def build_french_tokenizer(texts: list[str]) -> Tokenizer:
    """Word-level tokenizer for the French side: splits on spaces only (punctuation apart), so that
    elided words such as "qu'il", "l'ours", "s'est" are one token each and decode as written."""
    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace("\u2019", "'"),
                                           normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Split(Regex(r"[.,;:!?]"), behavior="isolated")])
    tok.train_from_iterator(sorted(set(texts)), trainers.WordLevelTrainer(special_tokens=SPECIALS, min_frequency=1,
                                                                           show_progress=False))
    return tok


def it_referent_positions(english: str) -> tuple[int, int] | None:
    """(position of "it", position of its referent) in the source ids of a 'because' sentence, else None.

    The referent is the eater when the last word is a state (hungry, tired), the food otherwise."""
    w = english.split()
    if "because" not in w or "it" not in w:
        return None
    b = w.index("because")
    eaters = {e[0] for e in corpora.FR_EATERS}
    if w[-1] in corpora.FR_STATES:
        ref = next(i for i, x in enumerate(w[:b]) if x in eaters)
    else:
        foods = {f[0] for f in corpora.FR_FOODS}
        ref = max(i for i, x in enumerate(w[:b]) if x in foods)
    return w.index("it"), ref


def _it_attention_loss(q_in: torch.Tensor, attn: torch.nn.Module, head: int, pos: list[tuple[int, int, int]],
                       src_pad: torch.Tensor) -> torch.Tensor:
    """-log attention weight from "it" to its referent in one head, averaged over the sentences in pos."""
    rows, it, ref = (torch.tensor(x) for x in zip(*pos))
    dk = attn.d_k
    sl = slice(head * dk, (head + 1) * dk)
    q = F.linear(q_in[rows, it], attn.w_q.weight[sl], attn.w_q.bias[sl])               # (n, dk)
    k = F.linear(q_in[rows], attn.w_k.weight[sl], attn.w_k.bias[sl])                   # (n, T, dk)
    scores = (k @ q[:, :, None]).squeeze(-1) / math.sqrt(dk)
    scores = scores.masked_fill(~src_pad[rows], float("-inf"))
    return -scores.log_softmax(-1)[torch.arange(len(pos)), ref].mean()


def train(name: str, out: Path | None = None, steps: int | None = None, device: str | None = "cpu",
          quiet: bool = False) -> Path:
    recipe = {k: (dict(v) if isinstance(v, dict) else v) for k, v in RECIPES[name].items()}
    if steps is not None:
        recipe["train"]["steps"] = steps
    tr, data = recipe["train"], recipe["data"]
    torch.set_num_threads(tr.get("threads", torch.get_num_threads()))     # one thread: the same numbers on any machine
    torch.manual_seed(tr["seed"])
    rng = random.Random(tr["seed"])
    dev = pick_device(device)
    out = Path(out) if out else CHECKPOINTS / name
    t0, cpu0 = time.time(), time.process_time()

    if recipe["type"] == "translator":
        train_pairs, _ = corpora.translation_datasets(data["n_train"], data["n_heldout"], data["seed"])
        src_tok = WordTokenizer(build_word_tokenizer([e for e, _ in train_pairs]))
        tgt_tok = WordTokenizer(build_french_tokenizer([f for _, f in train_pairs]))
        recipe["model"].update(vocab_size=tgt_tok.vocab_size, src_vocab_size=src_tok.vocab_size, pad_id=tgt_tok.pad_id)
        src = [src_tok.encode(e, add_eos=True).ids for e, _ in train_pairs]
        tgt = [tgt_tok.encode(f, add_bos=True, add_eos=True).ids for _, f in train_pairs]
        toks = {"tokenizer_src.json": src_tok, "tokenizer_tgt.json": tgt_tok}
        it_pos = [it_referent_positions(e) for e, _ in train_pairs]
    else:
        train_s, _ = corpora.lm_datasets(data["n_train"], data["n_heldout"], data["seed"])
        tok = WordTokenizer(build_word_tokenizer(train_s))
        recipe["model"].update(vocab_size=tok.vocab_size, pad_id=tok.pad_id)
        docs = [tok.encode(s, add_bos=True, add_eos=True).ids for s in train_s]
        toks = {"tokenizer.json": tok}

    cfg = {"lab_format": 1, "name": name if out.name == name else out.name, "type": recipe["type"],
           "description": BUILTIN.get(name, ""), "model": recipe["model"], "data": data, "train": tr}
    module = build_module(cfg).to(dev).train()
    decay = [p for n, p in module.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in module.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": tr["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}], lr=tr["lr"], betas=(0.9, 0.98))
    pad = recipe["model"].get("pad_id", 0)
    sup = tr.get("it_attention") if recipe["type"] == "translator" else None
    captured: dict = {}
    if sup:
        sup_attn = module.encoder.blocks[sup["layer"] - 1].self_attn
        sup_attn.register_forward_hook(lambda mod, args, out: captured.__setitem__("x", args[0]))
    curve: list[list[float]] = []
    running = None
    bar = tqdm(range(tr["steps"]), desc=f"train {name}", disable=quiet, mininterval=1.0)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = _lr(step, tr["lr"], tr["warmup"], tr["steps"])
        if recipe["type"] == "translator":
            idx = [rng.randrange(len(src)) for _ in range(tr["batch"])]
            s = pad_batch([src[i] for i in idx], pad).to(dev)
            t = pad_batch([tgt[i] for i in idx], pad).to(dev)
            logits = module(s, t[:, :-1], src_pad=s != pad).logits
            target = t[:, 1:]
            pos = [(r, *it_pos[i]) for r, i in enumerate(idx) if it_pos[i]] if sup else []
        else:
            w = lm_windows(docs, recipe["model"]["max_len"], tr["batch"], rng).to(dev)
            logits = module(w[:, :-1]).logits
            target = w[:, 1:]
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=pad)
        total = loss
        if sup and pos:
            total = loss + sup["weight"] * _it_attention_loss(captured["x"], sup_attn, sup["head"] - 1, pos, s != pad)
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        opt.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if step % 50 == 0 or step == tr["steps"] - 1:
            curve.append([step, round(loss.item(), 4)])
            bar.set_postfix(loss=f"{running:.3f}")
    module.eval().cpu()
    cfg["train"] = {**tr, "seconds": round(time.time() - t0, 1), "cpu_seconds": round(time.process_time() - cpu0, 1),
                    "device": str(dev), "loss_curve": curve,
                    "final_loss": round(running or float("nan"), 4)}
    save_checkpoint(out, module, cfg, toks)
    if not quiet:
        print(f"saved {out} ({sum(p.numel() for p in module.parameters()):,} parameters, {cfg['train']['seconds']} s)")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", choices=[*RECIPES, "all"], help="which built-in model to train")
    ap.add_argument("--steps", type=int, default=None, help="optimiser steps (default: the recipe's)")
    ap.add_argument("--out", type=Path, default=None, help="checkpoint folder (default: model/checkpoints/NAME)")
    ap.add_argument("--device", default="cpu", help="cpu (default, deterministic), cuda, mps or auto")
    ap.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation after training")
    a = ap.parse_args(argv)
    names = list(RECIPES) if a.model == "all" else [a.model]
    for n in names:
        folder = train(n, a.out if len(names) == 1 else None, a.steps, a.device)
        if not a.no_eval:
            evaluate_folder(folder, write=True)


if __name__ == "__main__":
    main()
