"""The Hugging Face families, one class each, with the capabilities they have (model/api.py):

  HFCausalLM        GPT-2, Llama, Mistral, Qwen2, Gemma  TracedRun, NextToken, Generates, PositionTable,
                                                         PaddedBatch, LogitLens
  HFMaskedLM        BERT with its masked-LM head         MaskedFill, PositionTable, PaddedBatch
  HFEncoder         BERT without a head (BertModel)      TracedRun, PositionTable, PaddedBatch
  HFEncoderDecoder  T5, BART, Marian                     Translates, PositionTable

Attention weights are transformers' own (`output_attentions=True`, eager attention). Raw scores of a
self-attention stack (causal LMs, encoders) come from the layer's own q/k projections (capture.py) and are
kept only when softmax(scores + mask) reproduces those weights: on every layer, or on none. Encoder-decoder
stacks carry weights only (scores None).

The longest input is the model's own limit (its positions, its tokenizer's model_max_length) or the longest
whose traced run fits the server's trace budget while it runs (model.serving.store.max_tokens_for: the compact
trace's estimate and the forward pass's working memory), whichever is shorter; no constant.
Long inputs: a self-attention run of more than COMPACT_ABOVE (model.serving.store) tokens is traced compactly
(compact.py): no `output_attentions`; each layer's weights are pooled for the grid as eager attention computes them,
a query row is kept, norms keep their statistics, and one layer's or one head's weights, raw scores or a norm's
vectors are recomputed exactly on demand from the block's kept input and call. (GPT-2 small at 1,024 tokens holds
about 50 MiB instead of 475 MiB.) Encoder-decoder runs (translations, at most TRANSLATION_TOKENS long) stay full.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..api import (Architecture, Generates, Hooked, LabModel, LogitLens, MaskedFill, NextToken, PaddedBatch, PaddedRun,
                   PositionInfo, PositionTable, RawScores, Run, Tokens, TracedRun, Translates)
from ..errors import InputError, ModelLoadError
from ..serving.store import COMPACT_ABOVE
from ..trace import AttentionTrace, CompactAttentionTrace, Trace, default_query, describe_stacks
from .architectures import CAUSAL_LM, ENCODER, ENCODER_DECODER, MASKED_LM, ArchSpec, config_value
from .. import hooks
from ..hooks import HookRun
from .capture import Capture, is_norm, norm_label, raw_scores, resolve
from .compact import HFReplay
from .hookpoints import PREFIX, install, no_positions_edit

NO_LIMIT = 4096          # a model that declares no position limit (rotary, relative) is traced up to this (and the budget)
TRANSLATION_TOKENS = 48  # longest translation `translate` / `run(text)` writes


@dataclass(frozen=True)
class HFAttentionTrace(AttentionTrace):
    """An AttentionTrace that may keep the layer's verified queries and keys (compact runs), for `scores()`."""

    q: Tensor | None = None       # (B, H, T, dh) after the rotary embedding where the model has one
    k: Tensor | None = None       # (B, H_kv, T, dh)
    scaling: float = 1.0

    def head_scores(self, head: int) -> Tensor | None:
        """(B, Tq, Tk) raw scores of one head, before the mask."""
        if self.scores is not None:
            return self.scores[:, head]
        if self.q is None or self.k is None:
            return None
        kv = head // (self.q.shape[1] // self.k.shape[1])
        return raw_scores(self.q[:, head:head + 1], self.k[:, kv:kv + 1], self.scaling)[:, 0]


def display_tokens(tok, ids: list[int]) -> list[str]:
    """Token ids -> text as a person reads it: no Ġ / ▁ markers; whitespace made visible; specials as they are."""
    special = set(getattr(tok, "all_special_ids", []) or [])
    pieces = tok.convert_ids_to_tokens(ids)
    decoded = tok.batch_decode([[i] for i in ids], clean_up_tokenization_spaces=False)
    out = []
    for i, p, d in zip(ids, pieces, decoded):
        if i in special or p is None:
            out.append(p if p is not None else f"<id {i}>")
            continue
        s = d.strip()
        if not s:
            s = d.replace("\n", "⏎").replace("\t", "⇥").replace(" ", "␣") or "␣"
        elif isinstance(p, str) and p.startswith("##"):
            s = p                                   # WordPiece continuation: keep its ## (that is how BERT reads it)
        out.append(s)
    return out


class HFModel(LabModel, Hooked):
    """What every Hugging Face family shares: tokens, the traced forward, positions, raw scores on demand, and
    the lab's hook points placed from the architecture table (hookpoints.py)."""

    source = "hf"
    family_words = "Transformer"
    causal = False           # queries see only earlier keys (and only the last position's logits are computed)
    seq2seq = False          # an encoder and a decoder
    headless = False         # no head on top of the base model: no predictions

    def __init__(self, name: str, hf: nn.Module, tok, spec: ArchSpec, head: str, device: torch.device,
                 n_params: int):
        self.name, self.hf, self.tok, self.spec, self.head, self.device = name, hf, tok, spec, head, device
        cfg = hf.config
        self.config, self.model_type, self.n_params = cfg, cfg.model_type, n_params
        self.base = hf.base_model
        self.description = f"Hugging Face `{cfg.model_type}` {head} ({spec.label}), {n_params / 1e6:,.1f} M parameters"
        n_heads = int(config_value(cfg, spec.n_heads))
        self.n_heads = n_heads
        positions = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None) or NO_LIMIT
        tok_max = getattr(tok, "model_max_length", None)
        tok_max = tok_max if isinstance(tok_max, int) and 0 < tok_max < 10**6 else positions   # "no limit" is 1e30
        self.max_len = int(min(positions, tok_max))
        out_emb = None if self.headless else hf.get_output_embeddings()
        n_out = out_emb.weight.shape[0] if out_emb is not None else len(tok)
        ids = list(range(min(n_out, len(tok))))
        self.vocab = display_tokens(tok, ids) + [f"<id {i}>" for i in range(len(ids), n_out)]
        self.eos_id = cfg.eos_token_id if isinstance(cfg.eos_token_id, int) else tok.eos_token_id
        for _, path in spec.position.tables:              # a learned table has as many positions as rows past the offset
            self.max_len = min(self.max_len, resolve(self.base, path).shape[0] - spec.position.offset)
        self.final_norm = resolve(self.base, spec.final_norm) if spec.final_norm else None
        base_prefix = getattr(hf, "base_model_prefix", "")
        self.norms = []                              # (label, stack, path, module) in module order
        for path, mod in hf.named_modules():
            if not is_norm(mod):
                continue
            in_base = self.base is hf or path.startswith(base_prefix + ".") or self.headless
            rel = path[len(base_prefix) + 1:] if self.base is not hf and path.startswith(base_prefix + ".") else path
            label, stack = norm_label(rel, in_base, self.seq2seq)
            self.norms.append((label, stack, path, mod))
        self.arch = Architecture(
            f"{self.family_words} ({spec.label})",
            n_layers=int(config_value(cfg, spec.n_layers)),
            n_encoder_layers=int(config_value(cfg, spec.n_encoder_layers)) if spec.n_encoder_layers else 0,
            n_heads=n_heads, n_kv_heads=int(config_value(cfg, spec.n_kv_heads, n_heads) or n_heads),
            d_model=int(config_value(cfg, spec.d_model)), norm=spec.norm, norm_kind=spec.norm_kind,
            position=self.position_kind(), parameters=n_params)
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else (self.eos_id or 0)
        self.hook_names = frozenset(install(hf, spec, n_heads, [path for _, _, path, _ in self.norms]))
        from ..serving.store import max_tokens_for, trace_budget_bytes   # (store imports nothing of hf at load)

        self.max_len = max(1, min(self.max_len, max_tokens_for(self, trace_budget_bytes(), self.max_len)))
        self.check_attentions()

    # ----------------------------------------------------------------- hook points (from the table)
    def hook_layout(self) -> dict[str, dict]:
        """Stacks whose heads can be switched off: every one whose W_o the table names."""
        out = {}
        for stack in self.spec.attention:
            n = self.arch.n_encoder_layers if stack == "encoder" else self.arch.n_layers
            p, sub = PREFIX[stack], "cross" if stack == "cross" else "attn"
            if n and f"{p}blocks.0.{sub}.head_out" in self.hook_names:
                out[stack] = dict(layers=n, heads=self.n_heads, sublayers=[], final_ln=False)
        return out

    def intervention_kinds(self) -> frozenset[str]:
        kinds = set()
        if self.hook_layout():
            kinds.add("heads")
        if any(name.endswith("pos") for name in self.hook_names):
            kinds.add("positions")
        return frozenset(kinds)

    def intervention_run(self, iv) -> HookRun:
        """The edits of `iv` (model.nets.transformer.Interventions) at this model's hook points."""
        return iv.run({s: None for s in self.hook_layout()} or {"self": None},
                      pos_edit=no_positions_edit(self.position_kind()))

    # ----------------------------------------------------------------- tokens
    def tokenize(self, text: str, side: str = "source") -> Tokens:
        what = "target text" if side == "target" else "text"
        text = self.prepare(self.check_text(text, what), side)
        if side == "target":
            ids = [self.bos_id] + list(self.tok(text_target=text, add_special_tokens=False)["input_ids"])
        else:
            ids = list(self.tok(text, add_special_tokens=True)["input_ids"])
        if not ids:
            raise InputError("The text gave no tokens.")
        self.check_length(len(ids), what)
        special_ids = set(self.tok.all_special_ids)
        unk = self.tok.unk_token_id
        unknown = []
        if unk is not None and unk in ids and side != "target" and unk not in (self.eos_id, self.bos_id):
            try:
                offs = self.tok(text, add_special_tokens=True, return_offsets_mapping=True)["offset_mapping"]
                unknown = [text[a:b] for i, (a, b) in zip(ids, offs) if i == unk]
            except Exception:                                  # slow tokenizers have no offsets
                unknown = ["(a character or word)"]
        return Tokens(ids, [self.vocab[i] if i < len(self.vocab) else f"<id {i}>" for i in ids],
                      [i in special_ids for i in ids], unknown)

    def prepare(self, text: str, side: str) -> str:
        return text

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=True)

    def _t(self, ids) -> Tensor:
        t = torch.tensor(ids, dtype=torch.long, device=self.device)
        return t if t.dim() == 2 else t[None]

    # ----------------------------------------------------------------- traced forward
    def _capture(self, want_qk: bool, half: bool, replay: HFReplay | None = None) -> Capture:
        return Capture(self.hf, self.spec, self.norms, self.final_norm, want_qk, half, replay)

    @torch.inference_mode()
    def _forward(self, ids: Tensor, attention_mask: Tensor | None = None, decoder_ids: Tensor | None = None,
                 want_qk: bool = True, half: bool = False, replay: HFReplay | None = None):
        """One traced call. With `replay` (a compact run) transformers keeps no attentions: each layer's weights go to
        the replay as they are computed."""
        kw: dict[str, Any] = dict(output_attentions=replay is None, output_hidden_states=True, return_dict=True)
        if decoder_ids is not None:
            kw["decoder_input_ids"] = decoder_ids
        if attention_mask is not None:
            kw["attention_mask"] = attention_mask
        if self.causal:
            kw["use_cache"] = False
            kw["logits_to_keep"] = 1             # only the last position's logits are used
        cap = self._capture(want_qk, half, replay)
        if replay is not None:
            replay.ambient, replay.ids, replay.attention_mask = hooks.current(), ids, attention_mask
        with hooks.active(hooks.merged(hooks.current(), cap)):   # an intervention active edits first
            out = self.hf(input_ids=ids, **kw)
        return out, cap

    def _self_run(self, ids: Tensor, valid: Tensor, causal: bool, tokens: list[str],
                  attention_mask: Tensor | None = None):
        """(transformers' output, Trace) of a self-attention model: compact above COMPACT_ABOVE tokens."""
        t = valid.shape[1]
        if t > COMPACT_ABOVE and "self" in self.spec.stacks:
            replay = HFReplay(self, self.arch.n_layers, self.n_heads, valid, causal,
                              keep_rows=(default_query(tokens),))
            out, cap = self._forward(ids, attention_mask, replay=replay)
            layers = replay.finish(cap)
            if layers is not None:
                return out, self._compact_trace(out, cap, replay, layers, causal, tokens)
        out, cap = self._forward(ids, attention_mask, half=t > COMPACT_ABOVE)
        return out, self._self_trace(out, cap, valid, causal, tokens)

    def _compact_trace(self, out, cap: Capture, replay: HFReplay, layers: list[CompactAttentionTrace], causal: bool,
                       tokens: list[str]) -> Trace:
        tr = Trace(layernorms=cap.layernorms)
        tr.attention = describe_stacks({"self": layers}, tokens, None, self_causal=causal)
        hidden = [replay.block_input(i).detach().float().cpu() for i in range(replay.n_layers)]  # the kept inputs
        if self.final_norm is not None and cap.final_norm_input is not None:
            replay.final_input = cap.final_norm_input
            hidden.append(cap.final_norm_input)      # the lab's last hidden state is before the final norm
        else:
            hidden.append(out.hidden_states[-1].detach().float().cpu())
        out["hidden_states"] = None
        tr.hidden["self"] = hidden
        return tr

    def check_attentions(self) -> None:
        ids = self.tokenize("hello world").ids
        dec = self._t([self.bos_id]) if self.seq2seq else None
        out, _ = self._forward(self._t(ids), decoder_ids=dec, want_qk=False)
        att = out.encoder_attentions if self.seq2seq else out.attentions
        if not att or any(a is None for a in att):
            raise ModelLoadError(f"`{self.name}` returned no attention weights (empty `attentions`): this model "
                                 "does not support eager attention with output_attentions, so the lab cannot show it.")

    def _window(self, i: int) -> int | None:
        if not self.spec.sliding_window:
            return None
        a = self.spec.attention["self"]
        mod = resolve(self.base, a.path.format(i=i))
        if hasattr(mod, "sliding_window"):
            return mod.sliding_window
        return getattr(self.config, "sliding_window", None)

    def _allowed(self, valid: Tensor, causal: bool, window: int | None = None) -> Tensor:
        """(B, T) bool of real tokens -> (B, T, T) where a query may attend to a key."""
        b, t = valid.shape
        ok = valid[:, None, :].expand(b, t, t).clone()
        if causal:
            q = torch.arange(t)[:, None]
            k = torch.arange(t)[None, :]
            rule = k <= q
            if window:
                rule &= k > q - window
            ok &= rule
        return ok

    def _self_trace(self, out, cap: Capture, valid: Tensor, causal: bool, tokens: list[str]) -> Trace:
        """The single self-attention stack of a decoder-only or encoder-only model, as a Trace."""
        t = valid.shape[1]
        compact = t > COMPACT_ABOVE
        atts = list(out.attentions)
        out["attentions"] = None                   # each float32 layer is freed once converted (compact runs)
        n = len(atts)
        shared: dict[int | None, Tensor] = {}
        layers, verified = [], True
        for i in range(n):
            win = self._window(i) if causal else None
            win = None if win is not None and win >= t else win
            if win not in shared:
                shared[win] = self._allowed(valid, causal, win)
            ok = shared[win]
            w = atts[i].detach().float().cpu()
            atts[i] = None
            qk = cap.verified_qk(i, w, ok, self.n_heads, n) if verified else None
            verified = qk is not None
            if not verified:
                layers.append(HFAttentionTrace(w.half() if compact else w, None, ok))
            elif compact:
                q, k, scaling = qk
                layers.append(HFAttentionTrace(w.half(), None, ok, q=q, k=k, scaling=scaling))
            else:
                layers.append(HFAttentionTrace(w, raw_scores(*qk), ok))
            del w
        if not verified:                           # scores on every layer or on none
            layers = [HFAttentionTrace(a.weights, None, a.allowed) for a in layers]
        tr = Trace(layernorms=cap.layernorms)
        tr.attention = describe_stacks({"self": layers}, tokens, None, self_causal=causal)
        hidden = [h.detach().float().cpu() for h in out.hidden_states]
        if self.final_norm is not None and cap.final_norm_input is not None:
            hidden[-1] = cap.final_norm_input      # HF gives the last one after the final norm; the lab's is before
        tr.hidden["self"] = hidden
        return tr

    def scores(self, run: Run | PaddedRun | Trace, layer: int, head: int, stack: str = "self") -> Tensor | None:
        """(B, Tq, Tk) raw scores q.k * scaling of one head, before the mask; None where the model has none
        (encoder-decoders, or a model whose recomputed scores did not reproduce transformers' weights)."""
        trace = run if isinstance(run, Trace) else run.trace
        att = trace.attention.get(stack)
        if att is None or not 0 <= layer < len(att) or not 0 <= head < self.n_heads:
            raise InputError(f"No attention layer {layer} / head {head} in the {stack!r} stack of {self.name}.")
        a = att[layer]
        if isinstance(a, CompactAttentionTrace):
            return a.source.scores(layer, head)
        if isinstance(a, HFAttentionTrace):
            return a.head_scores(head)
        return None if a.scores is None else a.scores[:, head]

    # ----------------------------------------------------------------- padded batches (self-attention models)
    @torch.inference_mode()
    def run_padded(self, texts: list[str]) -> PaddedRun:
        if not texts:
            raise InputError("Give at least one text.")
        toks = [self.tokenize(t) for t in texts]
        n = max(len(t.ids) for t in toks)
        right = [t.ids + [self.pad_id] * (n - len(t.ids)) for t in toks]
        valid = torch.tensor([[True] * len(t.ids) + [False] * (n - len(t.ids)) for t in toks])
        padded = [Tokens(r, t.tokens + ["[PAD]"] * (n - len(t.ids)), t.special + [True] * (n - len(t.ids)), t.unknown)
                  for r, t in zip(right, toks)]
        _, tr = self._self_run(self._t(right), valid, self.causal, padded[0].tokens,
                               attention_mask=valid.long().to(self.device))
        return PaddedRun(padded, [v.tolist() for v in valid], tr)

    def _traced(self, ids: list[int], tokens: list[str]):
        return self._self_run(self._t(ids), torch.ones(1, len(ids), dtype=torch.bool), self.causal, tokens)

    # ----------------------------------------------------------------- positions
    def position_kind(self) -> str:
        p = self.spec.position
        return "sinusoidal" if p.sinusoidal_if and getattr(self.hf.config, p.sinusoidal_if, False) else p.kind

    def positions(self) -> list[PositionInfo]:
        p = self.spec.position
        kind = self.position_kind()
        if not p.tables:
            what = {"rotary": "rotary (q and k rotated by position; nothing added to the embeddings)",
                    "relative": "relative (a learned bias per distance bucket, added to the scores)"}.get(p.kind, p.kind)
            return [PositionInfo(p.kind, what, None)]
        out = []
        for stack, path in p.tables:
            table = resolve(self.base, path).detach().float().cpu().numpy()[p.offset:p.offset + self.max_len]
            if kind == "sinusoidal":
                label = "sinusoidal (fixed, both stacks)" if self.seq2seq else "sinusoidal (fixed)"
            else:
                label = f"learned ({stack or self.spec.label})"
            out.append(PositionInfo(kind, label, table, stack=stack, layout=p.layout))
        return out

    def info(self) -> dict:
        d = super().info()
        d.update(model_type=self.model_type, head=self.head)
        return d


class HFCausalLM(HFModel, RawScores, TracedRun, NextToken, Generates, PositionTable, PaddedBatch, LogitLens):
    """A decoder-only causal LM: GPT-2, Llama, Mistral, Qwen2, Gemma."""

    family_words = "decoder-only Transformer"
    causal = True

    def run(self, text: str) -> Run:
        t = self.tokenize(text)
        out, tr = self._traced(t.ids, t.tokens)
        return Run(tokens=t.tokens, ids=t.ids, trace=tr, next_logits=out.logits[0, -1].float().cpu(),
                   predict_position=len(t.ids) - 1, unknown=t.unknown)

    @torch.inference_mode()
    def _start(self, ids: list[int], use_cache: bool) -> tuple[Tensor, Any]:
        out = self.hf(input_ids=self._t(ids), use_cache=use_cache, logits_to_keep=1, return_dict=True)
        return out.logits[0, -1].float().cpu(), (out.past_key_values, list(ids)) if use_cache else list(ids)

    @torch.inference_mode()
    def _advance(self, state: Any, token_id: int, use_cache: bool) -> tuple[Tensor, Any]:
        if not use_cache:
            return self._start(state + [token_id], use_cache=False)
        past, ids = state
        out = self.hf(input_ids=self._t([token_id]), past_key_values=past, use_cache=True, logits_to_keep=1,
                      return_dict=True)
        return out.logits[0, -1].float().cpu(), (out.past_key_values, ids + [token_id])

    @torch.inference_mode()
    def hooked_logits(self, ids: list[int], target: list[int] | None = None, n: int = 1) -> Tensor:
        out = self.hf(input_ids=self._t(ids).expand(n, -1), use_cache=False, logits_to_keep=1, return_dict=True)
        return out.logits[:, -1].float()

    @torch.inference_mode()
    def _unembed(self, hidden: Tensor) -> Tensor:
        h = self.final_norm(hidden) if self.final_norm is not None else hidden
        return self.hf.get_output_embeddings()(h)


class HFMaskedLM(HFModel, RawScores, MaskedFill, PositionTable, PaddedBatch):
    """A BERT-like masked LM: `run(text).next_logits` is the prediction at the first mask (None without one)."""

    family_words = "encoder-only Transformer with a masked-LM head"

    def __init__(self, *a, **kw):
        self.mask_token = "[MASK]"
        super().__init__(*a, **kw)
        self.mask_token = self.tok.mask_token or "[MASK]"

    def prepare(self, text: str, side: str) -> str:
        return text.replace("[MASK]", self.mask_token).replace("<mask>", self.mask_token)

    @torch.inference_mode()
    def run(self, text: str) -> Run:
        t = self.tokenize(text)
        out, tr = self._self_run(self._t(t.ids), torch.ones(1, len(t.ids), dtype=torch.bool), False, t.tokens)
        mask_id = self.tok.mask_token_id
        pos = t.ids.index(mask_id) if mask_id in t.ids else None
        nxt = out.logits[0, pos].float().cpu() if pos is not None else None
        return Run(tokens=t.tokens, ids=t.ids, trace=tr, next_logits=nxt, predict_position=pos, unknown=t.unknown)

    @torch.inference_mode()
    def hooked_logits(self, ids: list[int], target: list[int] | None = None, n: int = 1) -> Tensor:
        if self.tok.mask_token_id not in ids:
            raise InputError(f"Put {self.mask_token} where {self.name} should fill in a word.")
        pos = ids.index(self.tok.mask_token_id)
        return self.hf(input_ids=self._t(ids).expand(n, -1), return_dict=True).logits[:, pos].float()


class HFEncoder(HFModel, RawScores, TracedRun, PositionTable, PaddedBatch):
    """An encoder-only checkpoint without a head (e.g. a BertModel sentence encoder): attention, norms and
    hidden states; no predictions (`Run.next_logits` is None)."""

    family_words = "encoder-only Transformer without a head"
    headless = True

    def intervention_kinds(self) -> frozenset[str]:
        return frozenset()                     # no prediction to compare before and after

    def run(self, text: str) -> Run:
        t = self.tokenize(text)
        _, tr = self._traced(t.ids, t.tokens)
        return Run(tokens=t.tokens, ids=t.ids, trace=tr, unknown=t.unknown)


class HFEncoderDecoder(HFModel, Translates, PositionTable):
    """T5, BART, Marian: the encoder reads the source, the decoder writes the target. Weights only (no scores)."""

    family_words = "encoder-decoder Transformer"
    seq2seq = True

    def __init__(self, name, hf, tok, spec, head, device, n_params):
        cfg = hf.config
        self.bos_id = getattr(cfg, "decoder_start_token_id", None)
        if self.bos_id is None:
            self.bos_id = cfg.pad_token_id if cfg.pad_token_id is not None else tok.pad_token_id
        tsp = (getattr(cfg, "task_specific_params", None) or {}).get("translation_en_to_fr", {})
        self.prefix = tsp.get("prefix", spec.task_prefix) if spec.task_prefix else ""
        super().__init__(name, hf, tok, spec, head, device, n_params)
        self.src_vocab = self.vocab

    def prepare(self, text: str, side: str) -> str:
        if side == "source" and self.prefix and not text.startswith(self.prefix.strip()):
            return self.prefix + text
        return text

    def max_new_tokens(self) -> int:
        return min(self.max_len - 1, TRANSLATION_TOKENS)

    @torch.inference_mode()
    def run(self, text: str, target: str | list[int] | None = None) -> Run:
        src = self.tokenize(text)
        if target is None:
            tgt_ids = self.target_ids(self.generate(text, self.max_new_tokens(), greedy=True))
        elif isinstance(target, str):
            tgt_ids = self.tokenize(target, side="target").ids
        else:
            tgt_ids = self._target_ids(target)
        half = max(len(src.ids), len(tgt_ids)) > COMPACT_ABOVE
        out, cap = self._forward(self._t(src.ids), decoder_ids=self._t(tgt_ids), want_qk=False, half=half)
        dt = torch.float16 if half else torch.float32
        ts, tt = len(src.ids), len(tgt_ids)
        full_src = torch.ones(1, ts, ts, dtype=torch.bool)
        causal = torch.tril(torch.ones(tt, tt, dtype=torch.bool))[None]
        cross_ok = torch.ones(1, tt, ts, dtype=torch.bool)
        w = lambda a: a.detach().cpu().to(dt)
        raw = {"encoder": [AttentionTrace(w(a), None, full_src) for a in out.encoder_attentions],
               "decoder": [AttentionTrace(w(a), None, causal) for a in out.decoder_attentions],
               "cross": [AttentionTrace(w(a), None, cross_ok) for a in out.cross_attentions]}
        tgt_tokens = [self.vocab[i] for i in tgt_ids]
        tr = Trace(layernorms=cap.layernorms)
        tr.attention = describe_stacks(raw, src.tokens, tgt_tokens, self_causal=False)
        tr.hidden["encoder"] = [h.detach().float().cpu() for h in out.encoder_hidden_states]
        tr.hidden["decoder"] = [h.detach().float().cpu() for h in out.decoder_hidden_states]
        return Run(tokens=src.tokens, ids=src.ids, trace=tr, target_tokens=tgt_tokens, target_ids=tgt_ids,
                   next_logits=out.logits[0, -1].float().cpu(), predict_position=tt - 1, unknown=src.unknown)

    @torch.inference_mode()
    def hooked_logits(self, ids: list[int], target: list[int] | None = None, n: int = 1) -> Tensor:
        out = self.hf(input_ids=self._t(ids).expand(n, -1),
                      decoder_input_ids=self._t(self._target_ids(target or [])).expand(n, -1), use_cache=False,
                      return_dict=True)
        return out.logits[:, -1].float()

    @torch.inference_mode()
    def _start(self, ids: list[int], use_cache: bool) -> tuple[Tensor, Any]:
        enc = self.hf.get_encoder()(input_ids=self._t(ids), return_dict=True)
        out = self.hf(encoder_outputs=enc, decoder_input_ids=self._t([self.bos_id]), use_cache=use_cache,
                      return_dict=True)
        return out.logits[0, -1].float().cpu(), (enc, out.past_key_values if use_cache else None, [self.bos_id])

    @torch.inference_mode()
    def _advance(self, state: Any, token_id: int, use_cache: bool) -> tuple[Tensor, Any]:
        enc, past, tgt = state
        tgt = tgt + [token_id]
        if use_cache:
            out = self.hf(encoder_outputs=enc, decoder_input_ids=self._t([token_id]), past_key_values=past,
                          use_cache=True, return_dict=True)
            past = out.past_key_values
        else:
            out = self.hf(encoder_outputs=enc, decoder_input_ids=self._t(tgt), use_cache=False, return_dict=True)
        return out.logits[0, -1].float().cpu(), (enc, past, tgt)


FAMILY_CLASSES = {CAUSAL_LM: HFCausalLM, MASKED_LM: HFMaskedLM, ENCODER: HFEncoder, ENCODER_DECODER: HFEncoderDecoder}
