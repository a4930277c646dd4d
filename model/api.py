"""One interface for every model the lab shows: built-in Transformer LM, LSTM LM, translator,
and Hugging Face models (model/hf.py). Pages, the CLI and tests talk only to `LabModel`.

A `LabModel` turns text into tokens, runs a traced forward pass (`run`), gives next-token
logits, generates step by step with a key/value cache (or LSTM state), projects hidden
states to the vocabulary (logit lens) and lists its positional encodings. Errors a user can
cause raise `LabError` subclasses whose message can be shown as it is.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from .trace import Trace

if TYPE_CHECKING:
    from . import sampling


class LabError(ValueError):
    """A problem the user can fix. The message is written to be shown on the page as it is."""


class InputError(LabError):
    """Bad text: empty, too long for the model, or not usable by this model."""


class ModelLoadError(LabError):
    """The model could not be found or loaded."""


@dataclass
class Tokens:
    ids: list[int]
    tokens: list[str]                                   # as a person reads them; unknown words show as [UNK]
    special: list[bool]                                 # True for [BOS], [EOS], [PAD], [CLS], ...
    unknown: list[str] = field(default_factory=list)    # input words the vocabulary lacks


@dataclass
class Run:
    """One traced forward pass over the user's text."""

    tokens: list[str]                          # what the model read (the source, for a translator)
    trace: Trace
    ids: list[int] = field(default_factory=list)
    target_tokens: list[str] | None = None     # decoder input of an encoder-decoder ([BOS] + target)
    target_ids: list[int] | None = None
    next_logits: Tensor | None = None          # (V,) float32 CPU: the next token after the text (after the
                                               # target, for a translator; at the [MASK], for a masked LM)
    predict_position: int | None = None        # index in `tokens` (or target_tokens) whose prediction that is
    unknown: list[str] = field(default_factory=list)


@dataclass
class Step:
    """One generation step: the distribution the token was drawn from, and the choice."""

    dist: "sampling.Distribution"
    token_id: int
    token: str
    prob: float                                # probability of the chosen token in the final distribution


@dataclass
class Generation:
    prompt: Tokens
    steps: list[Step]
    stopped: str                               # "eos", "max_new_tokens" or "context"
    seconds: float

    @property
    def new_tokens(self) -> list[str]:
        return [s.token for s in self.steps]


class LabModel:
    """Base class. Subclasses set the attributes and implement the underscored methods."""

    name: str = ""
    kind: str = ""            # "lm" (decoder-only Transformer), "lstm", "seq2seq" (encoder-decoder), "mlm" (BERT-like)
    source: str = "builtin"   # or "hf"
    description: str = ""
    device: torch.device = torch.device("cpu")
    max_len: int = 64         # longest input, in tokens
    vocab: list[str] = []     # token id -> display string (target side for seq2seq)
    bos_id: int | None = None
    eos_id: int | None = None
    n_layers: int = 0
    n_heads: int = 0
    d_model: int = 0
    norm: str = "post"        # "post" or "pre" LayerNorm placement; "" if none
    pos_encoding: str = ""    # "sinusoidal", "learned", "relative", "none"
    has_scores: bool = True   # whether traces hold raw pre-mask scores

    # ------------------------------------------------------------------ to implement
    def tokenize(self, text: str, side: str = "source") -> Tokens:
        raise NotImplementedError

    def run(self, text: str, target: str | list[int] | None = None) -> Run:
        """Traced forward pass. For an encoder-decoder, `target` is the decoder side: text, or token ids
        starting with the decoder's start token; None means the model's own greedy translation."""
        raise NotImplementedError

    def _start(self, ids: list[int], use_cache: bool) -> tuple[Tensor, Any]:
        """Logits (V,) for the next token after `ids`, and the state needed to go on."""
        raise NotImplementedError

    def _advance(self, state: Any, token_id: int, use_cache: bool) -> tuple[Tensor, Any]:
        raise NotImplementedError

    def _unembed(self, hidden: Tensor, stack: str) -> Tensor:
        """(T, D) residual-stream vectors -> (T, V) logits (applying the final LayerNorm where the model has one)."""
        raise NotImplementedError

    def decode(self, ids: list[int]) -> str:
        """Generated token ids -> text as a person reads it (special tokens left out)."""
        return " ".join(self.vocab[i] for i in ids if i not in (self.bos_id, self.eos_id))

    def positional_tables(self) -> dict[str, np.ndarray]:
        """Name -> (positions, d_model) table that is added to the embeddings."""
        return {}

    def run_padded(self, texts: list[str]) -> tuple[list[Tokens], Trace]:
        """Several texts in one batch, padded to the longest, with a padding mask (where supported)."""
        raise InputError(f"{self.name} does not support batched runs with padding in this lab.")

    # ------------------------------------------------------------------ shared behaviour
    @property
    def stacks(self) -> list[str]:
        return ["encoder", "decoder", "cross"] if self.kind == "seq2seq" else (["lstm"] if self.kind == "lstm" else ["self"])

    def check_text(self, text: str | None, what: str = "text") -> str:
        if text is None or not str(text).strip():
            raise InputError(f"The {what} is empty: type a few words first.")
        return str(text).strip()

    def check_length(self, n: int, what: str = "text") -> None:
        if n > self.max_len:
            raise InputError(f"The {what} is {n} tokens long, but {self.name} reads at most {self.max_len} "
                             f"tokens. Shorten it.")

    def next_logits(self, ids: list[int]) -> Tensor:
        """Next-token logits (V,) after the given token ids, without tracing."""
        self.check_length(len(ids))
        logits, _ = self._start(list(ids), use_cache=False)
        return logits

    def generate(self, text: str | list[int], max_new_tokens: int = 20, *, temperature: float = 1.0, top_k: int = 0,
                 top_p: float = 1.0, greedy: bool = False, seed: int | None = 0, use_cache: bool = True) -> Generation:
        """Generate step by step, recording each step's distribution and choice.

        Stops at the end-of-sequence token, after max_new_tokens, or when the context is full.
        The same seed gives the same tokens.
        """
        from . import sampling

        prompt = self.tokenize(text) if isinstance(text, str) else Tokens(list(text), [self.vocab[i] for i in text],
                                                                           [False] * len(text))
        sampling.distribution(torch.zeros(2), temperature, top_k, top_p)      # validate settings before any work
        if max_new_tokens < 1:
            raise InputError("max_new_tokens must be at least 1.")
        t0 = time.perf_counter()
        logits, state = self._start(prompt.ids, use_cache)
        steps: list[Step] = []
        stopped, length = "max_new_tokens", self._generated_start_length(prompt)
        for i in range(max_new_tokens):
            dist = sampling.distribution(logits, temperature, top_k, top_p, greedy=greedy)
            tok = int(sampling.sample(dist, 1, seed=None if seed is None else seed + i)[0])
            steps.append(Step(dist, tok, self.vocab[tok], float(dist.probs[tok])))
            length += 1
            if self.eos_id is not None and tok == self.eos_id:
                stopped = "eos"
                break
            if length >= self.max_len:
                stopped = "context"
                break
            if i + 1 < max_new_tokens:
                logits, state = self._advance(state, tok, use_cache)
        return Generation(prompt, steps, stopped, time.perf_counter() - t0)

    def _generated_start_length(self, prompt: Tokens) -> int:
        return len(prompt.ids)

    def logit_lens(self, run: Run, stack: str | None = None) -> tuple[list[list[str]], np.ndarray]:
        """Top token and its probability when each layer's residual stream is projected to the vocabulary.

        Returns (tokens, probs): (L+1) rows (embeddings, then after each block) x T positions.
        """
        stack = stack or ("decoder" if self.kind == "seq2seq" else "self")
        hidden = run.trace.hidden.get(stack)
        if not hidden:
            raise LabError(f"{self.name} has no hidden states for the logit lens.")
        toks, probs = [], []
        with torch.inference_mode():
            for h in hidden:                                               # (1, T, D) each: one layer at a time
                p = self._unembed(h[0].to(self.device), stack).float().softmax(-1)
                best = p.max(-1)
                probs.append(best.values.cpu().numpy())
                toks.append([self.vocab[i] for i in best.indices.tolist()])
        return toks, np.stack(probs)

    def _target_ids(self, ids) -> list[int]:
        """Decoder input given as ids: checked, and started with the decoder's start token."""
        ids = [int(i) for i in ids]
        if not ids or ids[0] != self.bos_id:
            ids = [self.bos_id] + ids
        if any(not 0 <= i < len(self.vocab) for i in ids):
            raise InputError("The target contains token ids outside the vocabulary.")
        self.check_length(len(ids), "target")
        return ids

    def info(self) -> dict:
        return {"name": self.name, "kind": self.kind, "source": self.source, "device": str(self.device),
                "layers": self.n_layers, "heads": self.n_heads, "d_model": self.d_model, "max_len": self.max_len,
                "vocab_size": len(self.vocab), "norm": self.norm, "positional_encoding": self.pos_encoding}
