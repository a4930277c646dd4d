"""The built-in models: checkpoints shipped in model/checkpoints/, trained by model/train.py.

Each checkpoint is a folder: config.json (architecture, training and evaluation figures),
model.safetensors (weights; loading never unpickles) and the word-level tokenizer file(s).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model
from torch import Tensor

from .api import InputError, LabModel, ModelLoadError, Run, Tokens
from .lstm import LSTMConfig, LSTMLM
from .tokenizer import WordTokenizer
from .transformer import Seq2SeqTransformer, TransformerConfig, TransformerLM, sinusoidal_encoding

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
BUILTIN = {
    "transformer-lm": "Decoder-only Transformer language model (GPT-like) trained on the toy English corpus",
    "lstm-lm": "LSTM language model trained on the same toy English corpus",
    "translator-en-fr": "Encoder-decoder Transformer (as in the paper) translating toy English to French",
}
WEIGHTS, CONFIG = "model.safetensors", "config.json"


def build_module(cfg: dict) -> torch.nn.Module:
    kind = cfg["type"]
    if kind == "lstm-lm":
        return LSTMLM(LSTMConfig.from_dict(cfg["model"]))
    tc = TransformerConfig.from_dict(cfg["model"])
    return TransformerLM(tc) if kind == "transformer-lm" else Seq2SeqTransformer(tc)


def save_checkpoint(folder: Path, module: torch.nn.Module, cfg: dict, tokenizers: dict[str, WordTokenizer]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_model(module, str(folder / WEIGHTS))          # handles the tied embedding / output weights
    (folder / CONFIG).write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
    for fname, tok in tokenizers.items():
        tok.save(str(folder / fname))


def read_config(folder: Path) -> dict:
    try:
        return json.loads((folder / CONFIG).read_text())
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"Cannot read {folder / CONFIG}: {e}") from e


def load_builtin(name_or_folder: str | Path, device: torch.device) -> LabModel:
    folder = Path(name_or_folder)
    if not folder.is_dir():
        folder = CHECKPOINTS / str(name_or_folder)
    cfg = read_config(folder)
    module = build_module(cfg)
    try:
        missing, unexpected = load_model(module, str(folder / WEIGHTS), strict=False)
    except Exception as e:                                  # corrupt file, wrong shapes ...
        raise ModelLoadError(f"Cannot load the weights in {folder / WEIGHTS}: {e}") from e
    if unexpected or [m for m in missing if not m.endswith("lm_head.weight")]:
        raise ModelLoadError(f"{folder / WEIGHTS} does not match its config (missing {missing}, unexpected {unexpected})")
    module.to(device).eval()
    name = cfg.get("name", folder.name)
    if cfg["type"] == "translator":
        return BuiltinTranslator(name, module, WordTokenizer.from_file(str(folder / "tokenizer_src.json")),
                                 WordTokenizer.from_file(str(folder / "tokenizer_tgt.json")), cfg, device)
    return BuiltinLM(name, module, WordTokenizer.from_file(str(folder / "tokenizer.json")), cfg, device)


class _WordModel(LabModel):
    source = "builtin"

    def _tokens(self, tok: WordTokenizer, text: str, what: str, add_bos: bool, add_eos: bool) -> Tokens:
        text = self.check_text(text, what)
        enc = tok.encode(text, add_bos=add_bos, add_eos=add_eos)
        special = [i in (tok.bos_id, tok.eos_id, tok.pad_id) for i in enc.ids]
        self.check_length(len(enc.ids), what)
        return Tokens(list(enc.ids), list(enc.tokens), special, list(enc.unknown))

    def _ids(self, ids: list[int]) -> Tensor:
        return torch.tensor([ids], dtype=torch.long, device=self.device)


class BuiltinLM(_WordModel):
    """The Transformer LM or the LSTM LM: reads [BOS] + text, predicts the next word."""

    def __init__(self, name: str, module: torch.nn.Module, tok: WordTokenizer, cfg: dict, device: torch.device):
        self.name, self.module, self.tok, self.cfg, self.device = name, module, tok, cfg, device
        self.description = cfg.get("description", BUILTIN.get(name, ""))
        self.vocab, self.bos_id, self.eos_id = list(tok.vocab), tok.bos_id, tok.eos_id
        m = cfg["model"]
        self.max_len = m["max_len"]
        if isinstance(module, LSTMLM):
            self.kind, self.n_layers, self.d_model, self.norm, self.pos_encoding = "lstm", m["n_layers"], m["d_hidden"], "", "none"
            self.has_scores = False
        else:
            self.kind, self.n_layers, self.n_heads, self.d_model = "lm", m["n_layers"], m["h"], m["d_model"]
            self.norm, self.pos_encoding = m["norm"], m["pos_encoding"]

    def tokenize(self, text: str, side: str = "source") -> Tokens:
        return self._tokens(self.tok, text, "text", add_bos=True, add_eos=False)

    @torch.inference_mode()
    def run(self, text: str, target: str | None = None) -> Run:
        t = self.tokenize(text)
        out = self.module(self._ids(t.ids), trace=True)
        return Run(tokens=t.tokens, ids=t.ids, trace=out.trace, next_logits=out.logits[0, -1].float().cpu(),
                   predict_position=len(t.ids) - 1, unknown=t.unknown)

    @torch.inference_mode()
    def run_padded(self, texts: list[str]) -> tuple[list[Tokens], Any]:
        if self.kind != "lm":
            return super().run_padded(texts)
        toks = [self.tokenize(t) for t in texts]
        n = max(len(t.ids) for t in toks)
        pad = self.tok.pad_id
        ids = torch.tensor([t.ids + [pad] * (n - len(t.ids)) for t in toks], device=self.device)
        mask = torch.tensor([[True] * len(t.ids) + [False] * (n - len(t.ids)) for t in toks], device=self.device)
        padded = [Tokens(t.ids + [pad] * (n - len(t.ids)), t.tokens + [self.vocab[pad]] * (n - len(t.ids)),
                         t.special + [True] * (n - len(t.ids)), t.unknown) for t in toks]
        return padded, self.module(ids, pad_mask=mask, trace=True).trace

    @torch.inference_mode()
    def _start(self, ids: list[int], use_cache: bool) -> tuple[Tensor, Any]:
        out = self.module(self._ids(ids), use_cache=use_cache)
        state = (out.past if self.kind == "lm" else out.state) if use_cache else list(ids)
        return out.logits[0, -1].float().cpu(), state

    @torch.inference_mode()
    def _advance(self, state: Any, token_id: int, use_cache: bool) -> tuple[Tensor, Any]:
        if not use_cache:
            return self._start(state + [token_id], use_cache=False)
        kw = {"past": state} if self.kind == "lm" else {"state": state}
        out = self.module(self._ids([token_id]), use_cache=True, **kw)
        return out.logits[0, -1].float().cpu(), (out.past if self.kind == "lm" else out.state)

    def _unembed(self, hidden: Tensor, stack: str) -> Tensor:
        return self.module.unembed(hidden)

    def positional_tables(self) -> dict[str, np.ndarray]:
        if self.kind != "lm":
            return {}
        tables = {"sinusoidal (paper formula)": sinusoidal_encoding(self.max_len, self.d_model).numpy()}
        if self.pos_encoding == "learned":
            tables = {"learned (this model)": self.module.decoder.pos_emb.weight.detach().float().cpu().numpy(), **tables}
        return tables


class BuiltinTranslator(_WordModel):
    """The encoder-decoder: English source in, French target out."""

    kind = "seq2seq"

    def __init__(self, name: str, module: Seq2SeqTransformer, src_tok: WordTokenizer, tgt_tok: WordTokenizer,
                 cfg: dict, device: torch.device):
        self.name, self.module, self.src_tok, self.tgt_tok, self.cfg, self.device = name, module, src_tok, tgt_tok, cfg, device
        self.description = cfg.get("description", BUILTIN.get(name, ""))
        self.vocab, self.bos_id, self.eos_id = list(tgt_tok.vocab), tgt_tok.bos_id, tgt_tok.eos_id
        self.src_vocab = list(src_tok.vocab)
        m = cfg["model"]
        self.max_len, self.n_layers, self.n_heads, self.d_model = m["max_len"], m["n_layers"], m["h"], m["d_model"]
        self.n_encoder_layers, self.norm, self.pos_encoding = m["n_encoder_layers"], m["norm"], m["pos_encoding"]

    def tokenize(self, text: str, side: str = "source") -> Tokens:
        if side == "target":
            return self._tokens(self.tgt_tok, text, "target text", add_bos=True, add_eos=False)
        return self._tokens(self.src_tok, text, "text", add_bos=False, add_eos=True)

    def _generated_start_length(self, prompt: Tokens) -> int:
        return 1                                            # the decoder starts from [BOS] alone

    @torch.inference_mode()
    def run(self, text: str, target: str | list[int] | None = None) -> Run:
        src = self.tokenize(text)
        if target is None:
            gen = self.generate(text, max_new_tokens=self.max_len - 1, greedy=True)
            tgt_ids = [self.bos_id] + [s.token_id for s in gen.steps if s.token_id != self.eos_id]
            unknown = src.unknown
        elif isinstance(target, str):
            t = self.tokenize(target, side="target")
            tgt_ids, unknown = t.ids, src.unknown + t.unknown
        else:
            tgt_ids, unknown = self._target_ids(target), src.unknown
        out = self.module(self._ids(src.ids), self._ids(tgt_ids), trace=True)
        return Run(tokens=src.tokens, ids=src.ids, trace=out.trace, target_tokens=[self.vocab[i] for i in tgt_ids],
                   target_ids=tgt_ids, next_logits=out.logits[0, -1].float().cpu(),
                   predict_position=len(tgt_ids) - 1, unknown=unknown)

    def translate(self, text: str, **kw) -> str:
        gen = self.generate(text, max_new_tokens=self.max_len - 1, **kw)
        return self.decode([s.token_id for s in gen.steps])

    def decode(self, ids: list[int]) -> str:
        return self.tgt_tok.decode(list(ids))

    @torch.inference_mode()
    def _start(self, ids: list[int], use_cache: bool) -> tuple[Tensor, Any]:
        memory = self.module.encode(self._ids(ids))
        logits, past = self.module.decode(self._ids([self.bos_id]), memory)
        return logits[0, -1].float().cpu(), (memory, past if use_cache else None, [self.bos_id])

    @torch.inference_mode()
    def _advance(self, state: Any, token_id: int, use_cache: bool) -> tuple[Tensor, Any]:
        memory, past, tgt = state
        tgt = tgt + [token_id]
        if use_cache:
            logits, past = self.module.decode(self._ids([token_id]), memory, past=past)
        else:
            logits, _ = self.module.decode(self._ids(tgt), memory)
        return logits[0, -1].float().cpu(), (memory, past, tgt)

    def next_logits(self, ids: list[int]) -> Tensor:
        raise InputError("The translator predicts from a source sentence: use run(text, target) instead.")

    def _unembed(self, hidden: Tensor, stack: str) -> Tensor:
        if stack != "decoder":
            raise InputError("The logit lens applies to the decoder of the translator.")
        return self.module.unembed(hidden)

    def positional_tables(self) -> dict[str, np.ndarray]:
        tables = {"sinusoidal (paper formula)": sinusoidal_encoding(self.max_len, self.d_model).numpy()}
        if self.pos_encoding == "learned":
            tables["learned: encoder"] = self.module.encoder.pos_emb.weight.detach().float().cpu().numpy()
            tables["learned: decoder"] = self.module.decoder.pos_emb.weight.detach().float().cpu().numpy()
        return tables
