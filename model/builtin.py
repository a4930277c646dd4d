"""The built-in models: checkpoints shipped in model/checkpoints/, trained by model/train.py.

Each checkpoint is a folder: config.json (architecture, training and evaluation figures; read by a
strict loader, model/checkpoint.py), model.safetensors (weights; loading never unpickles) and the
word-level tokenizer file(s). One class per family, each with the capabilities it has:

  BuiltinTransformerLM   decoder-only Transformer LM
  BuiltinLSTMLM          LSTM LM
  BuiltinTranslator      encoder-decoder Transformer (English -> French)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from torch import Tensor

from .api import (Architecture, Generates, Hooked, LabModel, LogitLens, NextToken, PaddedBatch, PaddedRun, PositionInfo,
                  PositionTable, Recurrent, Run, Tokens, TracedRun, Translates)
from .checkpoint import CONFIG, CheckpointConfig, read_config
from .errors import ModelLoadError
from .nets.lstm import LSTMConfig, LSTMLM
from .nets.rnn import RNNConfig, RNNLM
from .nets.tokenizer import WordTokenizer
from .trace import describe_stacks
from .nets.transformer import Seq2SeqTransformer, TransformerConfig, TransformerLM

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
BUILTIN = {
    "transformer-lm": "Decoder-only Transformer language model (GPT-like) trained on the toy English corpus",
    "lstm-lm": "LSTM language model trained on the same toy English corpus",
    "translator-en-fr": "Encoder-decoder Transformer (as in the paper) translating toy English to French",
}
WEIGHTS = "model.safetensors"


def build_module(cfg: dict | CheckpointConfig) -> torch.nn.Module:
    cfg = cfg if isinstance(cfg, CheckpointConfig) else CheckpointConfig.from_dict(cfg)
    if cfg.type == "lstm-lm":
        return LSTMLM(LSTMConfig(**cfg.model))
    if cfg.type == "rnn-lm":
        return RNNLM(RNNConfig(**cfg.model))
    tc = TransformerConfig(**cfg.model)
    return TransformerLM(tc) if cfg.type == "transformer-lm" else Seq2SeqTransformer(tc)


def save_checkpoint(folder: Path, module: torch.nn.Module, cfg: dict, tokenizers: dict[str, WordTokenizer]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    CheckpointConfig.from_dict(cfg)                    # refuse to write what the loader would refuse to read
    save_model(module, str(folder / WEIGHTS))          # handles the tied embedding / output weights
    import json

    (folder / CONFIG).write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
    for fname, tok in tokenizers.items():
        tok.save(str(folder / fname))


def is_checkpoint_folder(path: Path) -> bool:
    """A folder written by `python -m model.training.train` (not a Hugging Face folder)."""
    try:
        return path.is_dir() and (path / CONFIG).is_file() and '"lab_format"' in (path / CONFIG).read_text()
    except OSError:
        return False


def load_builtin(name_or_folder: str | Path, device: torch.device) -> LabModel:
    folder = Path(name_or_folder)
    if not folder.is_dir():
        folder = CHECKPOINTS / str(name_or_folder)
    cfg = read_config(folder)
    try:
        module = build_module(cfg)
    except (ValueError, TypeError, RuntimeError, OverflowError, MemoryError) as e:   # e.g. d_model not divisible by h
        raise ModelLoadError(f"Malformed checkpoint config in {folder.name}: {e}") from e
    try:
        missing, unexpected = load_model(module, str(folder / WEIGHTS), strict=False)
    except Exception as e:                                  # corrupt file, wrong shapes ...
        raise ModelLoadError(f"Cannot load the weights of {folder.name}: {e}") from e
    if unexpected or [m for m in missing if not m.endswith("lm_head.weight")]:
        raise ModelLoadError(f"The weights of {folder.name} do not match its config "
                             f"(missing {missing}, unexpected {unexpected}).")
    module.to(device).eval()
    name = cfg.name or folder.name
    if cfg.type == "translator":
        return BuiltinTranslator(name, module, WordTokenizer.from_file(str(folder / "tokenizer_src.json")),
                                 WordTokenizer.from_file(str(folder / "tokenizer_tgt.json")), cfg, device)
    cls = {"lstm-lm": BuiltinLSTMLM, "rnn-lm": BuiltinRNNLM}.get(cfg.type, BuiltinTransformerLM)
    return cls(name, module, WordTokenizer.from_file(str(folder / "tokenizer.json")), cfg, device)


def _params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())


class _BuiltinTransformer(Hooked):
    """A built-in Transformer: its hook points (model/transformer.py) take every intervention the lab has."""

    KINDS = frozenset({"heads", "positions", "mask", "layernorm", "residual", "scale", "shuffle"})

    def intervention_kinds(self) -> frozenset[str]:
        return self.KINDS

    def hook_layout(self) -> dict[str, dict]:
        c = self.module.cfg
        pre = c.norm == "pre"
        if isinstance(self.module, Seq2SeqTransformer):
            return {"encoder": dict(layers=c.n_encoder_layers, heads=c.h, sublayers=["attn", "ffn"], final_ln=pre),
                    "decoder": dict(layers=c.n_layers, heads=c.h, sublayers=["attn", "cross", "ffn"], final_ln=pre),
                    "cross": dict(layers=c.n_layers, heads=c.h, sublayers=[], final_ln=False)}
        return {"self": dict(layers=c.n_layers, heads=c.h, sublayers=["attn", "ffn"], final_ln=pre)}


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

    def training_notes(self) -> list[str]:
        sup = self.cfg.train.get("it_attention")
        if not sup and self.cfg.type == "translator":
            tr, data = self.cfg.train, self.cfg.data
            return [f"Plain training: {self.name} was trained on the translation loss alone ({tr.get('steps')} steps on "
                    f"{data.get('n_train', 0):,} generated sentence pairs), with no extra loss term on any head: "
                    "whatever its heads attend to emerged. Some combinations of grammar features were kept out of "
                    "its training sentences, to test whether it composes."]
        if not sup:
            return []
        return [f"Planted head: encoder layer {sup['layer']}, head {sup['head']} of {self.name} was trained by an extra "
                f"loss term (weight {sup['weight']}) to point “it” at the noun it refers to. Its attention there is "
                "taught, not emerged; the page Find the cause measures what the decoder does with it."]


class BuiltinLM(_WordModel, TracedRun, NextToken, Generates):
    """A built-in language model: reads [BOS] + text, predicts the next word."""

    def __init__(self, name: str, module: torch.nn.Module, tok: WordTokenizer, cfg: CheckpointConfig,
                 device: torch.device):
        self.name, self.module, self.tok, self.cfg, self.device = name, module, tok, cfg, device
        self.description = cfg.description or BUILTIN.get(name, "")
        self.vocab, self.bos_id, self.eos_id = list(tok.vocab), tok.bos_id, tok.eos_id
        self.max_len = cfg.model["max_len"]

    def tokenize(self, text: str, side: str = "source") -> Tokens:
        return self._tokens(self.tok, text, "text", add_bos=True, add_eos=False)

    def _finish(self, t: Tokens, out) -> Run:
        tr = out.trace
        if tr.attention:
            tr.attention = describe_stacks(tr.attention, t.tokens, None, self_causal=True)
        return Run(tokens=t.tokens, ids=t.ids, trace=tr, next_logits=out.logits[0, -1].float().cpu(),
                   predict_position=len(t.ids) - 1, unknown=t.unknown)

    @torch.inference_mode()
    def run(self, text: str) -> Run:
        t = self.tokenize(text)
        return self._finish(t, self.module(self._ids(t.ids), trace=True))

    cache = "state"                  # the module's keyword and output field for what it carries between steps:
                                     # an RNN's / LSTM's state; the Transformer's key/value cache ("past")

    @torch.inference_mode()
    def _start(self, ids: list[int], use_cache: bool) -> tuple[Tensor, Any]:
        out = self.module(self._ids(ids), use_cache=use_cache)
        return out.logits[0, -1].float().cpu().clone(), (getattr(out, self.cache) if use_cache else list(ids))

    @torch.inference_mode()
    def _advance(self, state: Any, token_id: int, use_cache: bool) -> tuple[Tensor, Any]:
        if not use_cache:
            return self._start(state + [token_id], use_cache=False)
        out = self.module(self._ids([token_id]), use_cache=True, **{self.cache: state})
        return out.logits[0, -1].float().cpu().clone(), getattr(out, self.cache)


class BuiltinTransformerLM(BuiltinLM, PositionTable, PaddedBatch, LogitLens, _BuiltinTransformer):
    """The decoder-only Transformer LM (GPT-like)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        m = self.cfg.model
        self.arch = Architecture("decoder-only Transformer", n_layers=m["n_layers"], n_heads=m["h"], n_kv_heads=m["h"],
                                 d_model=m["d_model"], norm=m["norm"], norm_kind="LayerNorm",
                                 position=m["pos_encoding"], parameters=_params(self.module))

    @torch.inference_mode()
    def run_padded(self, texts: list[str]) -> PaddedRun:
        toks = [self.tokenize(t) for t in texts]
        n = max(len(t.ids) for t in toks)
        pad = self.tok.pad_id
        valid = [[True] * len(t.ids) + [False] * (n - len(t.ids)) for t in toks]
        ids = torch.tensor([t.ids + [pad] * (n - len(t.ids)) for t in toks], device=self.device)
        out = self.module(ids, pad_mask=torch.tensor(valid, device=self.device), trace=True)
        padded = [Tokens(t.ids + [pad] * (n - len(t.ids)), t.tokens + [self.vocab[pad]] * (n - len(t.ids)),
                         t.special + [True] * (n - len(t.ids)), t.unknown) for t in toks]
        out.trace.attention = describe_stacks(out.trace.attention, padded[0].tokens, None, self_causal=True)
        return PaddedRun(padded, valid, out.trace)

    cache = "past"                   # the key/value cache of every layer

    def _unembed(self, hidden: Tensor) -> Tensor:
        return self.module.unembed(hidden)

    @torch.inference_mode()
    def hooked_logits(self, ids: list[int], target: list[int] | None = None, n: int = 1) -> Tensor:
        return self.module(self._ids(ids).expand(n, -1)).logits[:, -1].float()

    def positions(self) -> list[PositionInfo]:
        table = self.module.decoder.positional_table()
        kind = self.arch.position
        return [PositionInfo(kind, f"{kind} ({self.name})",
                             None if table is None else table.detach().float().cpu().numpy())]


class BuiltinLSTMLM(BuiltinLM, Recurrent):
    """The LSTM language model: no attention, no positions; gates and states over time."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        m = self.cfg.model
        self.arch = Architecture("LSTM", n_layers=m["n_layers"], d_model=m["d_hidden"],
                                 parameters=_params(self.module))



class BuiltinRNNLM(BuiltinLM):
    """A vanilla (tanh) RNN language model, trained live in the lab: no attention, no gates, no positions."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        m = self.cfg.model
        self.arch = Architecture("vanilla RNN", n_layers=m["n_layers"], d_model=m["d_hidden"],
                                 parameters=_params(self.module))


class BuiltinTranslator(_WordModel, Translates, PositionTable, LogitLens, _BuiltinTransformer):
    """The encoder-decoder: English source in, French target out."""

    lens_stack = "decoder"

    def __init__(self, name: str, module: Seq2SeqTransformer, src_tok: WordTokenizer, tgt_tok: WordTokenizer,
                 cfg: CheckpointConfig, device: torch.device):
        self.name, self.module, self.src_tok, self.tgt_tok, self.cfg, self.device = name, module, src_tok, tgt_tok, cfg, device
        self.description = cfg.description or BUILTIN.get(name, "")
        self.vocab, self.bos_id, self.eos_id = list(tgt_tok.vocab), tgt_tok.bos_id, tgt_tok.eos_id
        self.src_vocab = list(src_tok.vocab)
        m = cfg.model
        self.max_len = m["max_len"]
        self.arch = Architecture("encoder-decoder Transformer", n_layers=m["n_layers"],
                                 n_encoder_layers=m["n_encoder_layers"], n_heads=m["h"], n_kv_heads=m["h"],
                                 d_model=m["d_model"], norm=m["norm"], norm_kind="LayerNorm",
                                 position=m["pos_encoding"], parameters=_params(module))

    def tokenize(self, text: str, side: str = "source") -> Tokens:
        if side == "target":
            return self._tokens(self.tgt_tok, text, "target text", add_bos=True, add_eos=False)
        return self._tokens(self.src_tok, text, "text", add_bos=False, add_eos=True)

    @torch.inference_mode()
    def run(self, text: str, target: str | list[int] | None = None) -> Run:
        src = self.tokenize(text)
        if target is None:
            tgt_ids, unknown = self.target_ids(self.generate(text, self.max_new_tokens(), greedy=True)), src.unknown
        elif isinstance(target, str):
            t = self.tokenize(target, side="target")
            tgt_ids, unknown = t.ids, src.unknown + t.unknown
        else:
            tgt_ids, unknown = self._target_ids(target), src.unknown
        out = self.module(self._ids(src.ids), self._ids(tgt_ids), trace=True)
        tgt_tokens = [self.vocab[i] for i in tgt_ids]
        out.trace.attention = describe_stacks(out.trace.attention, src.tokens, tgt_tokens, self_causal=False)
        return Run(tokens=src.tokens, ids=src.ids, trace=out.trace, target_tokens=tgt_tokens,
                   target_ids=tgt_ids, next_logits=out.logits[0, -1].float().cpu(),
                   predict_position=len(tgt_ids) - 1, unknown=unknown)

    def decode(self, ids: list[int]) -> str:
        return self.tgt_tok.decode(list(ids))

    @torch.inference_mode()
    def _start(self, ids: list[int], use_cache: bool) -> tuple[Tensor, Any]:
        memory = self.module.encode(self._ids(ids))
        logits, past = self.module.decode(self._ids([self.bos_id]), memory)
        return logits[0, -1].float().cpu().clone(), (memory, past if use_cache else None, [self.bos_id])

    @torch.inference_mode()
    def _advance(self, state: Any, token_id: int, use_cache: bool) -> tuple[Tensor, Any]:
        memory, past, tgt = state
        tgt = tgt + [token_id]
        if use_cache:
            logits, past = self.module.decode(self._ids([token_id]), memory, past=past)
        else:
            logits, _ = self.module.decode(self._ids(tgt), memory)
        return logits[0, -1].float().cpu().clone(), (memory, past, tgt)

    def _unembed(self, hidden: Tensor) -> Tensor:
        return self.module.unembed(hidden)

    @torch.inference_mode()
    def hooked_logits(self, ids: list[int], target: list[int] | None = None, n: int = 1) -> Tensor:
        memory = self.module.encode(self._ids(ids).expand(n, -1))
        logits, _ = self.module.decode(self._ids(self._target_ids(target or [])).expand(n, -1), memory)
        return logits[:, -1].float()

    def positions(self) -> list[PositionInfo]:
        kind = self.arch.position
        out = []
        for stack, mod in (("encoder", self.module.encoder), ("decoder", self.module.decoder)):
            table = mod.positional_table()
            out.append(PositionInfo(kind, f"{kind} ({stack})", None if table is None else
                                    table.detach().float().cpu().numpy(), stack=stack))
        if kind == "sinusoidal":             # one fixed table serves both stacks
            out = [PositionInfo(kind, "sinusoidal (fixed, both stacks)", out[0].table)]
        return out
