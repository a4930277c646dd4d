"""One interface for every model the lab shows, by capability.

`LabModel` is what every model has: a name, a device, a vocabulary, a tokenizer and an
`Architecture` read from its config. What a model can *do* is a small capability class it
inherits, and pages ask `isinstance(m, Capability)`, never a kind string:

  TracedRun      run(text) -> Run: one traced forward pass (attention stacks, norms, hidden states)
  NextToken      next_logits(ids): the next-token distribution after a prefix (causal LMs, the LSTM)
  Generates      generate(...): step by step with a cache, each step's distribution recorded
  Translates     an encoder-decoder: run(text, target), translate(text), a traced translation
  MaskedFill     fills a [MASK] position (BERT-like masked LMs)
  PositionTable  positions(): what is added to the embeddings, tagged by kind from the config
  PaddedBatch    run_padded(texts): several texts in one batch with a padding mask
  LogitLens      logit_lens(run): each layer's residual stream read out through the vocabulary head
  Recurrent      an RNN/LSTM: its trace holds gates and states over time, no attention
  Hooked         named hook points (model/hooks.py): interventions and activation patching act through them

No class claims a capability it refuses at run time. Errors a user can cause raise `LabError`
subclasses (model/errors.py) whose message can be shown as text.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .errors import InputError, LabError, ModelLoadError, NotSupported
from .trace import Trace

__all__ = ["LabError", "InputError", "ModelLoadError", "NotSupported", "Tokens", "Run", "Step", "Generation",
           "Architecture", "PositionInfo", "LabModel", "TracedRun", "NextToken", "Generates", "Translates",
           "MaskedFill", "PositionTable", "PaddedBatch", "LogitLens", "RawScores", "Recurrent", "PaddedRun", "Hooked"]


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


@dataclass(frozen=True)
class StepChoice:
    """What a generation step keeps of its distribution: the few most likely tokens, not the whole vocabulary."""

    top_ids: tuple[int, ...]                   # most likely first, by final probability
    top_probs: tuple[float, ...]
    entropy: float                             # nats, of the final distribution
    kept: int                                  # tokens left after top-k / top-p


@dataclass
class Step:
    """One generation step: the top of the distribution the token was drawn from, and the choice."""

    choice: StepChoice
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

    @property
    def new_ids(self) -> list[int]:
        return [s.token_id for s in self.steps]


@dataclass(frozen=True)
class Architecture:
    """What a page needs to know about a model's structure, read from its config."""

    family: str                  # words for people: "decoder-only Transformer", "LSTM", "encoder-decoder Transformer" ...
    n_layers: int = 0            # decoder (or only) stack
    n_encoder_layers: int = 0    # encoder-decoder only
    n_heads: int = 0
    n_kv_heads: int = 0          # fewer than n_heads with grouped-query attention
    d_model: int = 0
    norm: str = "none"           # "pre", "post" or "none": where the normalisation sits
    norm_kind: str = ""          # "LayerNorm" or "RMSNorm"
    position: str = "none"       # "sinusoidal", "learned", "rotary", "relative" or "none"
    parameters: int = 0


@dataclass(frozen=True)
class PositionInfo:
    """One positional encoding a model uses."""

    kind: str                    # "sinusoidal", "learned", "rotary", "relative", "none"
    label: str                   # for people: "learned (decoder)", "sinusoidal (fixed, encoder)" ...
    table: np.ndarray | None     # (positions, d_model) added to the embeddings; None where no table exists
    stack: str = ""              # "", "encoder" or "decoder"
    layout: str = "interleaved"  # sinusoidal tables: "interleaved" (paper: sin, cos, sin ...) or "halves" (Marian)


@dataclass
class PaddedRun:
    """A batch of texts padded to the longest, traced with a padding mask."""

    tokens: list[Tokens]         # each padded to the batch length
    valid: list[list[bool]]      # True for real tokens, False for padding
    trace: Trace


class LabModel:
    """What every model has. Capabilities are the classes below; subclasses inherit the ones they have."""

    name: str = ""
    description: str = ""
    source: str = "builtin"      # or "hf"
    device: torch.device = torch.device("cpu")
    max_len: int = 64            # longest input, in tokens
    vocab: list[str] = []        # token id -> display string (target side for a translator)
    bos_id: int | None = None
    eos_id: int | None = None
    arch: Architecture = Architecture("model")

    def tokenize(self, text: str, side: str = "source") -> Tokens:
        raise NotImplementedError

    def decode(self, ids: list[int]) -> str:
        """Generated token ids -> text as a person reads it (special tokens left out)."""
        return " ".join(self.vocab[i] for i in ids if i not in (self.bos_id, self.eos_id))

    def check_text(self, text: str | None, what: str = "text") -> str:
        if text is None or not str(text).strip():
            raise InputError(f"The {what} is empty: type a few words first.")
        text = str(text).strip()
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(f"The {what} contains a character that is not valid Unicode text "
                             "(a lone surrogate). Retype it.") from None
        if "\x00" in text:
            raise InputError(f"The {what} contains a NUL character. Remove it.")
        return text

    def check_length(self, n: int, what: str = "text") -> None:
        if n > self.max_len:
            raise InputError(f"The {what} is {n} tokens long, but {self.name} reads at most {self.max_len} "
                             f"tokens. Shorten it.")

    def capabilities(self) -> list[str]:
        return [c.__name__ for c in CAPABILITIES if isinstance(self, c)]

    def training_notes(self) -> list[str]:
        """What this model was trained to show beyond its task (an extra loss, a planted head), said in visible text
        wherever it is shown."""
        return []

    def info(self) -> dict:
        a = self.arch
        return {"name": self.name, "family": a.family, "source": self.source, "device": str(self.device),
                "layers": a.n_layers, "encoder_layers": a.n_encoder_layers, "heads": a.n_heads,
                "kv_heads": a.n_kv_heads, "d_model": a.d_model, "max_len": self.max_len,
                "vocab_size": len(self.vocab), "norm": a.norm, "norm_kind": a.norm_kind,
                "positional_encoding": a.position, "parameters": a.parameters, "can": self.capabilities()}


# ----------------------------------------------------------------------------- capabilities
class TracedRun:
    """A traced forward pass over a text: attention stacks (by role), norms, hidden states or gates."""

    def run(self, text: str) -> Run:
        raise NotImplementedError


class NextToken:
    """The next-token logits after a prefix of token ids."""

    def next_logits(self, ids: list[int]) -> Tensor:
        self.check_length(len(ids))
        logits, _ = self._start(list(ids), use_cache=False)
        return logits


class Generates:
    """Step-by-step generation with a cache (or carried recurrent state), each step's choice recorded.

    Subclasses implement `_start(ids, use_cache) -> (logits (V,), state)` and `_advance(state, token_id,
    use_cache) -> (logits, state)`; a step keeps only the top of its distribution, never the full logits.
    """

    TOP_KEPT = 20                                  # tokens of each step's distribution kept for display

    def _start(self, ids: list[int], use_cache: bool) -> tuple[Tensor, Any]:
        raise NotImplementedError

    def _advance(self, state: Any, token_id: int, use_cache: bool) -> tuple[Tensor, Any]:
        raise NotImplementedError

    def _prompt(self, text: str | list[int]) -> Tokens:
        if isinstance(text, str):
            return self.tokenize(text)
        ids = [int(i) for i in text]
        if any(not 0 <= i < len(self.vocab) for i in ids):
            raise InputError("The prompt contains token ids outside the vocabulary.")
        return Tokens(ids, [self.vocab[i] for i in ids], [False] * len(ids))

    def _generated_start_length(self, prompt: Tokens) -> int:
        return len(prompt.ids)

    def generate(self, text: str | list[int], max_new_tokens: int = 20, *, temperature: float = 1.0, top_k: int = 0,
                 top_p: float = 1.0, greedy: bool = False, seed: int | None = 0, use_cache: bool = True,
                 stop_at_eos: bool = True) -> Generation:
        """Generate step by step, recording each step's choice and the top of its distribution.

        Stops at the end-of-sequence token (unless stop_at_eos=False), after max_new_tokens, or when the
        context is full. The same seed gives the same tokens.
        """
        from .nets import sampling

        prompt = self._prompt(text)
        sampling.distribution(torch.zeros(2), temperature, top_k, top_p)      # validate settings before any work
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise InputError("max_new_tokens must be a whole number of at least 1.")
        t0 = time.perf_counter()
        logits, state = self._start(prompt.ids, use_cache)
        steps: list[Step] = []
        stopped, length = "max_new_tokens", self._generated_start_length(prompt)
        for i in range(max_new_tokens):
            dist = sampling.distribution(logits, temperature, top_k, top_p, greedy=greedy)
            tok = int(sampling.sample(dist, 1, seed=None if seed is None else seed + i)[0])
            top = dist.top(self.TOP_KEPT)
            choice = StepChoice(tuple(j for j, _ in top), tuple(p for _, p in top), float(dist.entropy),
                                int(dist.keep.sum()))
            steps.append(Step(choice, tok, self.vocab[tok], float(dist.probs[tok])))
            del dist
            length += 1
            if stop_at_eos and self.eos_id is not None and tok == self.eos_id:
                stopped = "eos"
                break
            if length >= self.max_len:
                stopped = "context"
                break
            if i + 1 < max_new_tokens:
                logits, state = self._advance(state, tok, use_cache)
        return Generation(prompt, steps, stopped, time.perf_counter() - t0)


class Translates(TracedRun, Generates):
    """An encoder-decoder: the encoder reads the source, the decoder writes the target."""

    src_vocab: list[str] = []

    def run(self, text: str, target: str | list[int] | None = None) -> Run:
        """Traced pass; `target` is the decoder side (text, or ids starting with the decoder's start token);
        None means the model's own greedy translation."""
        raise NotImplementedError

    def _generated_start_length(self, prompt: Tokens) -> int:
        return 1                                             # the decoder starts from its start token alone

    def max_new_tokens(self) -> int:
        return self.max_len - 1

    def translate(self, text: str, **kw) -> str:
        gen = self.generate(text, max_new_tokens=self.max_new_tokens(), **kw)
        return self.decode(gen.new_ids)

    def target_ids(self, gen: Generation) -> list[int]:
        """The decoder's input for a traced run of a generation: start token + the words, without the end token."""
        return [self.bos_id] + [i for i in gen.new_ids if i != self.eos_id]

    def _target_ids(self, ids) -> list[int]:
        """Decoder input given as ids: checked, and started with the decoder's start token."""
        ids = [int(i) for i in ids]
        if not ids or ids[0] != self.bos_id:
            ids = [self.bos_id] + ids
        if any(not 0 <= i < len(self.vocab) for i in ids):
            raise InputError("The target contains token ids outside the vocabulary.")
        self.check_length(len(ids), "target")
        return ids


class MaskedFill(TracedRun):
    """Predicts the word at a mask position; `run(text).next_logits` is that prediction (None without a mask)."""

    mask_token: str = "[MASK]"


class PositionTable:
    """What is added to the embeddings to tell positions apart, tagged by kind from the model's config."""

    def positions(self) -> list[PositionInfo]:
        raise NotImplementedError


class PaddedBatch:
    """Several texts in one batch, padded to the longest, with a padding mask."""

    def run_padded(self, texts: list[str]) -> PaddedRun:
        raise NotImplementedError


class LogitLens:
    """Residual-stream vectors read out through the final norm and the vocabulary head."""

    lens_stack: str = "self"                      # the stack whose hidden states the head reads

    def _unembed(self, hidden: Tensor) -> Tensor:
        """(T, D) residual-stream vectors -> (T, V) logits (applying the final norm where the model has one)."""
        raise NotImplementedError

    def logit_lens(self, run: Run) -> tuple[list[list[str]], np.ndarray]:
        """Top token and its probability when each layer's residual stream is projected to the vocabulary.

        Returns (tokens, probs): (L+1) rows (embeddings, then after each block) x T positions.
        """
        hidden = run.trace.hidden.get(self.lens_stack)
        if not hidden:
            raise LabError(f"{self.name} returned no hidden states for the logit lens.")
        toks, probs = [], []
        with torch.inference_mode():
            for h in hidden:                                               # (1, T, D) each: one layer at a time
                p = self._unembed(h[0].to(self.device)).float().softmax(-1)
                best = p.max(-1)
                probs.append(best.values.cpu().numpy())
                toks.append([self.vocab[i] for i in best.indices.tolist()])
        return toks, np.stack(probs)


class RawScores:
    """Raw scores computed on demand for one head (a long run keeps only what is needed to compute them)."""

    def scores(self, run: Run, layer: int, head: int, stack: str = "self") -> Tensor | None:
        raise NotImplementedError


class Recurrent(TracedRun):
    """A recurrent network: its trace holds gates and states per layer over time, and no attention."""


CAPABILITIES = (TracedRun, NextToken, Generates, Translates, MaskedFill, PositionTable, PaddedBatch, LogitLens,
                RawScores, Recurrent)


class Hooked:
    """A model whose activations pass through named hook points (model/hooks.py), so that one call may record
    or replace them: Break it's interventions and activation patching act through these names.

    hook_layout(): stack -> {"layers", "heads", "sublayers" (whose LayerNorm / residual can be skipped),
    "final_ln"}; intervention_kinds(): the keys of model.teaching.interventions.NEEDS this model supports."""

    def hook_layout(self) -> dict[str, dict]:
        raise NotImplementedError

    def intervention_kinds(self) -> frozenset[str]:
        raise NotImplementedError

    def hooked_logits(self, ids: list[int], target: list[int] | None = None, n: int = 1) -> Tensor:
        """(n, V) float32: the prediction the lab shows (next token; the decoder's next token after `target` for
        a translator; the first [MASK] for a masked LM) for n copies of one input, under the calling thread's
        hook run: row r of every hook point belongs to copy r, so one batched call can patch n things."""
        raise NotImplementedError
