"""How good are the built-in models? Held-out figures, printed and stored in each config.json.

    python -m model.training.evaluate                 # all built-ins
    python -m model.training.evaluate lstm-lm --n 500

Language models: cross-entropy per token on held-out sentences (never seen in training)
against the grammar's own entropy rate (the best any model can do on this corpus), and
subject-verb agreement accuracy ("the keys to the old cabinet" -> are, not is), on items
from the grammar (also with "and" subjects, "the cat and the dog" -> are, and "with" attractors,
"the dog with the cats" -> is) and on the hand-written probes of model.teaching.probes.
Translator: exact-match of greedy translations of held-out sentences, of the hand-written
probes, and of 200 sentences for each held-out combination of grammar features (kinds of sentence
the training generator never produces, corpora.HELDOUT_COMBINATIONS); on "because" sentences over
eater / food pairs never seen together in training, how often "it" becomes the right qu'il /
qu'elle; and, for every encoder head, how often its attention from "it" lands on the word "it"
refers to (it_head_tables, the head search of model.training.head_search).
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from ..teaching import corpora
from ..teaching import probes
from ..builtin import BUILTIN, CHECKPOINTS, CONFIG, BuiltinLM, BuiltinTranslator, load_builtin
from ..device import pick_device


def pad_batch(seqs: list[list[int]], pad: int) -> torch.Tensor:
    """Right-pad token id lists into one (B, T) tensor (shared with model.training.train)."""
    n = max(len(s) for s in seqs)
    return torch.tensor([s + [pad] * (n - len(s)) for s in seqs], dtype=torch.long)


@torch.inference_mode()
def lm_cross_entropy(lab: BuiltinLM, sentences: list[str], batch: int = 256) -> float:
    """Mean nats per predicted token (every word, the '.', and [EOS]) of [BOS] sentence [EOS]."""
    pad = lab.tok.pad_id
    total, count = 0.0, 0
    for i in range(0, len(sentences), batch):
        seqs = [lab.tok.encode(s, add_bos=True, add_eos=True).ids for s in sentences[i:i + batch]]
        x = pad_batch(seqs, pad).to(lab.device)
        logits = lab.module(x[:, :-1]).logits
        nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), x[:, 1:].reshape(-1),
                              ignore_index=pad, reduction="sum")
        total += nll.item()
        count += int((x[:, 1:] != pad).sum())
    return total / count


@torch.inference_mode()
def agreement_accuracy(lab: BuiltinLM, items: list[dict], batch: int = 256) -> float:
    """Share of items where P(correct verb) > P(wrong verb) after the prefix."""
    ok = 0
    for i in range(0, len(items), batch):
        chunk = items[i:i + batch]
        seqs = [lab.tok.encode(it["prefix"], add_bos=True).ids for it in chunk]
        x = pad_batch(seqs, lab.tok.pad_id).to(lab.device)
        logits = lab.module(x).logits
        last = torch.tensor([len(s) - 1 for s in seqs], device=lab.device)
        row = logits[torch.arange(len(seqs), device=lab.device), last]            # (B, V)
        good = torch.tensor([lab.tok.encode(it["correct"]).ids[0] for it in chunk], device=lab.device)
        bad = torch.tensor([lab.tok.encode(it["wrong"]).ids[0] for it in chunk], device=lab.device)
        ok += int((row.gather(1, good[:, None]) > row.gather(1, bad[:, None])).sum())
    return ok / len(items)


@torch.inference_mode()
def greedy_translate_batch(lab: BuiltinTranslator, sentences: list[str], batch: int = 256) -> list[str]:
    out: list[str] = []
    m, pad = lab.module, lab.src_tok.pad_id
    for i in range(0, len(sentences), batch):
        src = pad_batch([lab.src_tok.encode(s, add_eos=True).ids for s in sentences[i:i + batch]], pad).to(lab.device)
        src_pad = src != pad
        memory = m.encode(src, src_pad)
        cur = torch.full((src.size(0), 1), lab.bos_id, dtype=torch.long, device=lab.device)
        past, rows = None, [cur]
        done = torch.zeros(src.size(0), dtype=torch.bool, device=lab.device)
        for _ in range(lab.max_len - 1):
            logits, past = m.decode(cur, memory, src_pad=src_pad, past=past)
            cur = logits[:, -1].argmax(-1, keepdim=True)
            rows.append(cur)
            done |= cur[:, 0] == lab.eos_id
            if bool(done.all()):
                break
        ids = torch.cat(rows, 1)[:, 1:].tolist()
        for seq in ids:
            seq = seq[: seq.index(lab.eos_id)] if lab.eos_id in seq else seq
            out.append(lab.tgt_tok.decode(seq))
    return out


def _norm(s: str) -> str:
    return " ".join(s.split())


def translator_exact_match(lab: BuiltinTranslator, pairs: list[tuple[str, str]]) -> float:
    hyp = greedy_translate_batch(lab, [e for e, _ in pairs])
    return sum(_norm(h) == _norm(f) for h, (_, f) in zip(hyp, pairs)) / len(pairs)


def _pronoun_after_parce(translation: str) -> str | None:
    words = translation.split()
    return words[words.index("parce") + 1] if "parce" in words and words.index("parce") + 1 < len(words) else None


def pronoun_accuracy(lab: BuiltinTranslator) -> dict:
    """Greedy translations of every held-out-pair 'because' sentence (corpora.pronoun_heldout_pairs):
    share with the right qu'il / qu'elle, overall and where eater and food differ in gender, and exact match."""
    items = corpora.pronoun_heldout_pairs()
    hyp = greedy_translate_batch(lab, [e for e, _, _ in items])
    right = [_pronoun_after_parce(h) == info["pronoun"] for h, (_, _, info) in zip(hyp, items)]
    opp = [r for r, (_, _, info) in zip(right, items) if info["opposite_gender"]]
    return {"pronoun_heldout_pairs": len(corpora.PRONOUN_HELDOUT_PAIRS), "pronoun_sentences": len(items),
            "pronoun_accuracy": round(sum(right) / len(right), 4),
            "pronoun_accuracy_opposite_gender": round(sum(opp) / len(opp), 4),
            "pronoun_exact_match": round(sum(_norm(h) == _norm(f) for h, (_, f, _) in zip(hyp, items)) / len(items), 4)}


def pronoun_accuracy_without_head(lab: BuiltinTranslator, layer: int, head: int) -> dict:
    """pronoun_accuracy with one encoder self-attention head switched off (its output zeroed before W_o):
    how much the translation of "it" depends on that head."""
    attn = lab.module.encoder.blocks[layer - 1].self_attn
    sl = slice((head - 1) * attn.d_k, head * attn.d_k)

    def zero_head(mod, args):
        x = args[0].clone()
        x[..., sl] = 0
        return (x,)

    handle = attn.w_o.register_forward_pre_hook(zero_head)
    try:
        return pronoun_accuracy(lab)
    finally:
        handle.remove()


@torch.inference_mode()
def it_attention(lab: BuiltinTranslator, sentence: str) -> tuple[torch.Tensor, list[str]]:
    """Encoder attention from the token "it" in every layer and head: (layers, heads, source tokens)."""
    run = lab.run(sentence, target=[lab.bos_id])            # one decoder step: the encoder is what matters here
    toks = run.tokens
    i = toks.index("it")
    return torch.stack([a.weights[0, :, i, :] for a in run.trace.attention["encoder"]]), toks


def it_head_stats(lab: BuiltinTranslator, items: list[tuple[str, str, dict]] | None = None) -> dict:
    """For every encoder head: how often its attention from "it" puts more weight on the referent
    (the eater when the last word is hungry/tired, the food when it is delicious/fresh/hot/sweet)
    than on the other noun ("lands"), and how often that holds for both sentences of a contrast
    pair that differ only in the last word (a state and a food property), i.e. it switches.
    Measured on the held-out eater / food pairs. Returns the best head and the table."""
    items = items if items is not None else corpora.pronoun_heldout_pairs()
    lands: dict[tuple, list[bool]] = {}
    by_key: dict[tuple, dict] = {}
    for en, _, info in items:
        att, toks = it_attention(lab, en)
        e_pos, f_pos = toks.index(info["eater"]), toks.index(info["food"])
        ref, other = (e_pos, f_pos) if info["referent"] == "eater" else (f_pos, e_pos)
        ok = att[:, :, ref] > att[:, :, other]                     # (layers, heads)
        lands.setdefault("argmax", []).append(att.argmax(-1) == ref)
        by_key.setdefault((info["eater"], info["food"], en.split()[en.split().index(info["eater"]) + 1]),
                          {})[info["word"]] = ok
        lands.setdefault("all", []).append(ok)
    land = torch.stack(lands["all"]).float().mean(0)                # (layers, heads)
    top = torch.stack(lands["argmax"]).float().mean(0)
    sw, n_pairs = None, 0
    for words in by_key.values():
        for s in corpora.FR_STATES:
            for p in corpora.FR_FOOD_PROPS:
                both = (words[s] & words[p]).float()
                sw = both if sw is None else sw + both
                n_pairs += 1
    switch = sw / n_pairs
    L, H = switch.shape
    best = max(((l, h) for l in range(L) for h in range(H)), key=lambda lh: (switch[lh].item(), land[lh].item()))
    return {"it_head_layer": best[0] + 1, "it_head_head": best[1] + 1,
            "it_head_lands": round(land[best].item(), 4), "it_head_switches": round(switch[best].item(), 4),
            "it_head_referent_is_top": round(top[best].item(), 4),
            "it_head_sentences": len(items), "it_head_contrast_pairs": n_pairs,
            "it_heads_switch_table": [[round(switch[l, h].item(), 4) for h in range(H)] for l in range(L)]}


@torch.inference_mode()
def it_head_tables(lab: BuiltinTranslator, items: list[tuple[str, str, dict]] | None = None) -> dict:
    """For every encoder head (layers x heads tables): the share of held-out pronoun sentences where
    the attention from "it" is highest on the word "it" refers to ("top"), and where it is higher on
    the referent than on the other noun ("lands"). The head search of model.training.head_search."""
    items = items if items is not None else corpora.pronoun_heldout_pairs()
    top, land = [], []
    for en, _, info in items:
        att, toks = it_attention(lab, en)
        e_pos, f_pos = toks.index(info["eater"]), toks.index(info["food"])
        ref, other = (e_pos, f_pos) if info["referent"] == "eater" else (f_pos, e_pos)
        top.append(att.argmax(-1) == ref)
        land.append(att[:, :, ref] > att[:, :, other])
    t, la = torch.stack(top).float().mean(0), torch.stack(land).float().mean(0)
    L, H = t.shape
    best = max(((l, h) for l in range(L) for h in range(H)), key=lambda lh: t[lh].item())
    return {"it_heads_sentences": len(items),
            "it_heads_top_table": [[round(t[l, h].item(), 4) for h in range(H)] for l in range(L)],
            "it_heads_lands_table": [[round(la[l, h].item(), 4) for h in range(H)] for l in range(L)],
            "it_heads_best_top": round(t[best].item(), 4), "it_heads_best": [best[0] + 1, best[1] + 1]}


def combination_exact_match(lab: BuiltinTranslator, n: int = 200) -> dict[str, float]:
    """Exact match of greedy translations on each held-out combination (corpora.HELDOUT_COMBINATIONS):
    n sentences each, of kinds the training generator never produces."""
    out = {}
    for name in corpora.HELDOUT_COMBINATIONS:
        pairs = corpora.heldout_combination_pairs(name, n)
        out[name] = round(translator_exact_match(lab, pairs), 4)
    return out


def evaluate(lab, n: int | None = None, seed: int = 0) -> dict:
    """Held-out figures for a loaded built-in model (n: how many held-out items; None = all)."""
    recipe = lab.cfg.data
    if isinstance(lab, BuiltinTranslator):
        _, held = corpora.translation_datasets(recipe.get("n_train", 30000), recipe.get("n_heldout", 1000),
                                               recipe.get("seed", seed))
        held = held[:n] if n else held
        res = {"heldout_sentences": len(held), "exact_match": round(translator_exact_match(lab, held), 4)}
        pr = probes.translation_probe_pairs()
        res.update({"probe_sentences": len(pr), "probe_exact_match": round(translator_exact_match(lab, pr), 4)})
        res.update({"combination_sentences_each": 200, "combination_exact_match": combination_exact_match(lab, 200)})
        res.update(pronoun_accuracy(lab))
        res.update(it_head_stats(lab))
        res.update(it_head_tables(lab))
        off = pronoun_accuracy_without_head(lab, res["it_head_layer"], res["it_head_head"])
        res.update({"pronoun_accuracy_it_head_off": off["pronoun_accuracy"],
                    "pronoun_accuracy_opposite_gender_it_head_off": off["pronoun_accuracy_opposite_gender"]})
        return res
    _, held = corpora.lm_datasets(recipe.get("n_train", 30000), recipe.get("n_heldout", 2000), recipe.get("seed", seed))
    held = held[:n] if n else held
    ce = lm_cross_entropy(lab, held)
    items = corpora.agreement_items(n or 1000, seed=seed + 777)
    and_items = corpora.coordination_items(n or 1000, seed=seed + 778)     # "the cat and the dog" -> are
    with_items = corpora.with_items(n or 1000, seed=seed + 779)            # "the dog with the cats" -> is
    h = corpora.grammar_entropy_per_token()
    return {"heldout_sentences": len(held), "cross_entropy_nats": round(ce, 4), "perplexity": round(math.exp(ce), 3),
            "grammar_entropy_nats": round(h, 4), "grammar_perplexity": round(math.exp(h), 3),
            "agreement_items": len(items), "agreement_accuracy": round(agreement_accuracy(lab, items), 4),
            "coordination_items": len(and_items), "coordination_accuracy": round(agreement_accuracy(lab, and_items), 4),
            "with_items": len(with_items), "with_accuracy": round(agreement_accuracy(lab, with_items), 4),
            "probe_agreement_items": len(probes.AGREEMENT_PROBES),
            "probe_agreement_accuracy": round(agreement_accuracy(lab, probes.agreement_probe_items()), 4)}


def evaluate_folder(folder: Path, write: bool = False, n: int | None = None, device: str | None = "cpu") -> dict:
    lab = load_builtin(folder, pick_device(device))
    res = evaluate(lab, n)
    print(f"{lab.name}: " + ", ".join(f"{k}={v}" for k, v in res.items()))
    if write:
        cfg = json.loads((Path(folder) / CONFIG).read_text())
        cfg["eval"] = res
        (Path(folder) / CONFIG).write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", default=list(BUILTIN), help="built-in names or checkpoint folders")
    ap.add_argument("--n", type=int, default=None, help="held-out items per model (default: all)")
    ap.add_argument("--write", action="store_true", help="store the figures in each config.json")
    ap.add_argument("--no-write", action="store_true", help="only print (default for --n or folders other than the built-ins)")
    a = ap.parse_args(argv)
    for name in a.models:
        folder = CHECKPOINTS / name if name in BUILTIN else Path(name)
        evaluate_folder(folder, write=(a.write or (name in BUILTIN and a.n is None)) and not a.no_write, n=a.n)


if __name__ == "__main__":
    main()
