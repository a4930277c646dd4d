"""Hugging Face `transformers` models in the lab: GPT-2-like causal LMs, BERT-like masked LMs and
T5/BART/Marian encoder-decoders, mapped into the same `Trace` the built-in models return.

    m = model.load("gpt2")                       # hub id (only when asked), or a save_pretrained folder
    r = m.run("the bear ate the honey because it was hungry")

What is captured, and from where:
  attention weights   transformers' own `output_attentions=True`, loaded with attn_implementation="eager"
                      (the SDPA default returns no attention weights); loading fails loudly if they are empty.
  raw scores          q.k * scaling recomputed from the layer's own query/key projections (forward hooks);
                      kept only when softmax(scores + mask) reproduces transformers' weights, else None
                      (models with rotary or relative position biases).
  LayerNorm stats     forward hooks on every LayerNorm / RMSNorm, input and output.
  hidden states       `output_hidden_states=True`; the last one is taken before the final LayerNorm, so the
                      residual stream and the logit lens are comparable layer to layer.
Hooks are registered for one call and removed in `finally`; each records only for the thread that
registered it, so concurrent users of the shared model never see each other's data.
Never `trust_remote_code`; weights load through transformers (safetensors where the repo has them).
"""
from __future__ import annotations

import inspect
import os
import re
import socket
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch
from torch import Tensor, nn

from .api import InputError, LabError, LabModel, ModelLoadError, Run, Tokens
from .trace import AttentionTrace, LayerNormTrace, Trace
from .transformer import sinusoidal_encoding

MAX_LEN = 256            # longest input the lab traces for a hub model (attention grids grow with T^2)
SUPPORTED = ("causal language models (GPT-2, DistilGPT-2, OPT, ...), masked language models (BERT, DistilBERT, "
             "RoBERTa, ...) and encoder-decoders (T5, BART, Marian)")
NET_TIMEOUT = 3.0


# ----------------------------------------------------------------------------- loading
def _hub_reachable() -> bool:
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=NET_TIMEOUT).close()
        return True
    except OSError:
        return False


def _chain(e: BaseException) -> list[str]:
    names, seen = [], set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        names.append(type(e).__name__)
        e = e.__cause__ or e.__context__
    return names


def _available_bytes(device: torch.device) -> int | None:
    """Free memory on the device, or None where it cannot be told."""
    try:
        if device.type == "cuda":
            return int(torch.cuda.mem_get_info(device)[0])
        if device.type == "cpu":
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except Exception:
        return None
    return None


def _family(config) -> str:
    if getattr(config, "is_encoder_decoder", False):
        return "seq2seq"
    archs = " ".join(getattr(config, "architectures", None) or [])
    if "MaskedLM" in archs or config.model_type in ("bert", "distilbert", "roberta", "albert", "electra",
                                                     "xlm-roberta", "camembert", "deberta", "deberta-v2"):
        return "mlm"
    return "lm"


def _auto_class(family: str):
    import transformers as tf

    return {"lm": tf.AutoModelForCausalLM, "mlm": tf.AutoModelForMaskedLM, "seq2seq": tf.AutoModelForSeq2SeqLM}[family]


def _fetch(name: str, load, what: str):
    """Call load(local_files_only) for a hub id: the local cache first, the hub only if reachable."""
    try:
        return load(True)
    except Exception as first:
        if Path(name).expanduser().is_dir():
            raise
        if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
            raise ModelLoadError(f"`{name}` is not a built-in model or a local folder, and it is not in the local "
                                 "Hugging Face cache (offline mode is on, so the hub is not asked). Use a built-in "
                                 "model, or give the path of a folder saved with `save_pretrained`.") from first
        if not _hub_reachable():
            raise ModelLoadError(f"Cannot reach the Hugging Face hub (no network?) and `{name}` is not in the local "
                                 "cache. The built-in models work offline; for a hub model, download it on a machine "
                                 "with network (`save_pretrained`) and give its local folder here.") from first
    try:
        return load(False)
    except Exception as e:
        chain = _chain(e)
        if "GatedRepoError" in chain:
            raise ModelLoadError(f"`{name}` is gated on the hub: it needs a login this lab does not do.") from e
        if "RepositoryNotFoundError" in chain or "HFValidationError" in chain:
            raise ModelLoadError(f"There is no model called `{name}` on the Hugging Face hub (check the spelling, "
                                 "e.g. `gpt2`, `bert-base-uncased`, `t5-small`), and no such local folder.") from e
        if "EntryNotFoundError" in chain or "RemoteEntryNotFoundError" in chain:
            raise ModelLoadError(f"`{name}` exists but has no {what} in the layout transformers expects.") from e
        raise ModelLoadError(f"Could not fetch `{name}` from the hub: {e}") from e


def load_hf(name: str, device: torch.device) -> "HFModel":
    import transformers as tf

    tf.utils.logging.disable_progress_bar()
    tf.utils.logging.set_verbosity_error()
    path = Path(name).expanduser()
    local = path.is_dir()
    if not local and (name.startswith(("/", ".", "~")) or os.sep + os.sep in name):
        raise ModelLoadError(f"There is no folder `{name}`.")
    if local and not (path / "config.json").is_file():
        raise ModelLoadError(f"The folder `{name}` has no config.json: give a folder saved with "
                             "`save_pretrained` (config.json, weights and tokenizer files).")
    src = str(path) if local else name
    if not local and not re.fullmatch(r"[\w.\-]+(/[\w.\-]+)?", name):
        raise ModelLoadError(f"`{name}` is not a built-in model, a local folder, or a valid Hugging Face id "
                             "(ids look like `gpt2` or `Helsinki-NLP/opus-mt-en-fr`).")
    try:
        config = _fetch(name, lambda lfo: tf.AutoConfig.from_pretrained(src, local_files_only=lfo,
                                                                        trust_remote_code=False), "config.json")
    except ModelLoadError:
        raise
    except ValueError as e:
        if "trust_remote_code" in str(e) or "model_type" in str(e):
            raise ModelLoadError(f"`{name}` needs its own custom code to run (trust_remote_code), which this lab "
                                 f"never executes. Supported: {SUPPORTED}.") from e
        raise ModelLoadError(f"Cannot read the config of `{name}`: {e}") from e
    except Exception as e:
        raise ModelLoadError(f"Cannot read the config of `{name}`: {e}") from e

    family = _family(config)
    cls = _auto_class(family)
    try:
        with torch.device("meta"):
            skeleton = cls.from_config(config, trust_remote_code=False)
        n_params = sum(p.numel() for p in skeleton.parameters())
        del skeleton
    except ValueError as e:
        raise ModelLoadError(f"`{name}` is a `{config.model_type}` model, a family this lab does not run. "
                             f"Supported: {SUPPORTED}.") from e
    free = _available_bytes(device)
    need = n_params * 4 * 1.3                      # float32 weights plus room for activations
    if free is not None and need > free:
        raise ModelLoadError(f"`{name}` has {n_params / 1e6:,.0f} M parameters and needs about {need / 2**30:.1f} GiB; "
                             f"{device.type.upper()} has {free / 2**30:.1f} GiB free. Pick a smaller model.")
    try:
        hf = _fetch(name, lambda lfo: cls.from_pretrained(src, local_files_only=lfo, attn_implementation="eager",
                                                           trust_remote_code=False, dtype=torch.float32), "weights")
        tok = _fetch(name, lambda lfo: tf.AutoTokenizer.from_pretrained(src, local_files_only=lfo,
                                                                         trust_remote_code=False), "tokenizer")
    except ModelLoadError:
        raise
    except Exception as e:
        raise ModelLoadError(f"Cannot load `{name}`: {type(e).__name__}: {e}") from e
    hf.to(device).eval()
    m = HFModel(name, hf, tok, family, device, n_params)
    m.check_attentions()
    return m


# ----------------------------------------------------------------------------- readable tokens
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


# ----------------------------------------------------------------------------- capture (hooks)
_NORM_TYPES = (nn.LayerNorm,)


def _is_norm(mod: nn.Module) -> bool:
    n = type(mod).__name__
    return isinstance(mod, _NORM_TYPES) or n.endswith(("LayerNorm", "RMSNorm"))


def _ln_label(path: str, family: str) -> str:
    """'transformer.h.3.ln_1' -> 'L4 ln_1'; 'encoder.block.0.layer.1.layer_norm' -> 'enc L1 layer.1.layer_norm'."""
    prefix = ""
    if family == "seq2seq":
        prefix = "enc " if ".encoder." in f".{path}." else ("dec " if ".decoder." in f".{path}." else "")
    m = re.search(r"\.(\d+)\.", f".{path}.")
    if m:
        rest = f".{path}."[m.end():].strip(".")
        return f"{prefix}L{int(m.group(1)) + 1} {rest}"
    parts = path.split(".")
    return prefix + (".".join(parts[-2:]) if parts[-1] in ("LayerNorm", "layer_norm", "norm") else parts[-1])


def _qk_modules(hf: nn.Module) -> list[tuple[str, nn.Module]]:
    """Self-attention modules whose query/key projections we can hook, in forward order."""
    found = []
    for name, mod in hf.named_modules():
        kids = dict(mod.named_children())
        if getattr(mod, "is_cross_attention", False) or "encoder_attn" in name or "EncDecAttention" in name:
            continue
        if "c_attn" in kids or {"q_proj", "k_proj"} <= kids.keys() or {"query", "key"} <= kids.keys() \
                or {"q_lin", "k_lin"} <= kids.keys():
            found.append((name, mod))
    return found


class _Capture:
    """Per-call recorder; hooks only record for the thread that created it."""

    def __init__(self, model: "HFModel", want_scores: bool):
        self.thread = threading.get_ident()
        self.model, self.want_scores = model, want_scores
        self.layernorms: list[LayerNormTrace] = []
        self.parts: list[dict[str, Any]] = []          # per attention layer: its module and q/k outputs
        self.norm_inputs: dict[str, Tensor] = {}
        self.handles: list[Any] = []

    def _mine(self) -> bool:
        return threading.get_ident() == self.thread

    def __enter__(self) -> "_Capture":
        m = self.model
        for path, mod in m.norm_modules:
            self.handles.append(mod.register_forward_hook(self._ln_hook(path, mod)))
        if self.want_scores:                   # the layer's own q/k projection outputs: nothing is recomputed
            for n, (_, mod) in enumerate(m.attn_modules):
                kids = dict(mod.named_children())
                names = ["c_attn"] if "c_attn" in kids else next(
                    [a, b] for a, b in (("q_proj", "k_proj"), ("query", "key"), ("q_lin", "k_lin")) if a in kids)
                self.parts.append({"mod": mod, "names": names})
                for part in names:
                    self.handles.append(kids[part].register_forward_hook(self._proj_hook(n, part)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def _ln_hook(self, path: str, mod: nn.Module):
        label = _ln_label(path, self.model.family)
        gamma = getattr(mod, "weight", None)
        beta = getattr(mod, "bias", None)

        def hook(_mod, inputs, output):
            if not self._mine():
                return
            x_in = inputs[0].detach().float().cpu()
            self.norm_inputs[path] = x_in
            self.layernorms.append(LayerNormTrace(
                label, x_in, output.detach().float().cpu(),
                None if gamma is None else gamma.detach().float().cpu(),
                None if beta is None else beta.detach().float().cpu()))
        return hook

    def _proj_hook(self, n: int, part: str):
        def hook(_mod, inputs, output):
            if self._mine():
                self.parts[n][part] = output.detach()
        return hook

    def scores(self, n_layers: int, n_heads: int) -> list[Tensor | None]:
        if len(self.parts) != n_layers:
            return [None] * n_layers
        out = []
        for p in self.parts:
            mod = p["mod"]
            if p["names"] == ["c_attn"] and "c_attn" in p:
                q, k, _ = p["c_attn"].split(mod.embed_dim, dim=2)
            else:
                if not all(n in p for n in p["names"]):
                    return [None] * n_layers
                q, k = p[p["names"][0]], p[p["names"][1]]
            b, t, _ = q.shape
            qh = q.view(b, t, n_heads, -1).transpose(1, 2).float()
            kh = k.view(b, k.shape[1], n_heads, -1).transpose(1, 2).float()
            scale = getattr(mod, "scaling", qh.shape[-1] ** -0.5)
            out.append((qh @ kh.transpose(-1, -2) * scale).cpu())
        return out


# ----------------------------------------------------------------------------- the model
class HFModel(LabModel):
    source = "hf"

    def __init__(self, name: str, hf: nn.Module, tok, family: str, device: torch.device, n_params: int):
        self.name, self.hf, self.tok, self.family, self.device, self.n_params = name, hf, tok, family, device, n_params
        self.kind = family
        self._keeps_logits = "logits_to_keep" in inspect.signature(hf.forward).parameters
        cfg = hf.config
        self.config = cfg
        self.model_type = cfg.model_type
        self.description = f"Hugging Face `{cfg.model_type}` model, {n_params / 1e6:,.1f} M parameters"
        text_cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        self.n_layers = int(getattr(text_cfg, "num_hidden_layers", 0) or getattr(text_cfg, "num_layers", 0)
                            or getattr(text_cfg, "n_layer", 0))
        self.n_heads = int(getattr(text_cfg, "num_attention_heads", 0) or getattr(text_cfg, "num_heads", 0)
                           or getattr(text_cfg, "n_head", 0))
        self.d_model = int(getattr(text_cfg, "hidden_size", 0) or getattr(text_cfg, "d_model", 0)
                           or getattr(text_cfg, "n_embd", 0))
        positions = (getattr(text_cfg, "max_position_embeddings", None) or getattr(text_cfg, "n_positions", None)
                     or MAX_LEN)
        self.max_len = int(min(positions, MAX_LEN, getattr(tok, "model_max_length", MAX_LEN) or MAX_LEN))
        n_out = hf.get_output_embeddings().weight.shape[0] if hf.get_output_embeddings() is not None else len(tok)
        ids = list(range(min(n_out, len(tok))))
        self.vocab = display_tokens(tok, ids) + [f"<id {i}>" for i in range(len(ids), n_out)]
        self.eos_id = cfg.eos_token_id if isinstance(cfg.eos_token_id, int) else None
        self.bos_id = getattr(cfg, "decoder_start_token_id", None) if family == "seq2seq" else None
        if family == "seq2seq" and self.bos_id is None:
            self.bos_id = cfg.pad_token_id if cfg.pad_token_id is not None else tok.pad_token_id
        self.mask_token = getattr(tok, "mask_token", None)
        self.norm_modules = [(p, mod) for p, mod in hf.named_modules() if _is_norm(mod)]
        self.attn_modules = _qk_modules(hf) if family != "seq2seq" else []
        self.final_norm = self._find_final_norm()
        self.norm = self._norm_placement()
        self.pos_encoding = {"t5": "relative", "mt5": "relative", "marian": "sinusoidal"}.get(
            cfg.model_type, "learned" if self._position_parameters() else "none")
        if cfg.model_type in ("llama", "mistral", "qwen2", "gemma", "phi", "gpt_neox", "gptj"):
            self.pos_encoding = "rotary"
        self.has_scores = bool(self.attn_modules)
        self.prefix = ""
        if cfg.model_type in ("t5", "mt5"):                 # T5 is told the task in words
            tsp = (getattr(cfg, "task_specific_params", None) or {}).get("translation_en_to_fr", {})
            self.prefix = tsp.get("prefix", "translate English to French: ")

    # ----------------------------------------------------------------- structure
    def _find_final_norm(self) -> nn.Module | None:
        if self.family != "lm":
            return None
        for path in ("transformer.ln_f", "model.norm", "model.decoder.final_layer_norm", "gpt_neox.final_layer_norm",
                     "transformer.norm_f", "model.final_layernorm"):
            mod = self.hf
            try:
                for part in path.split("."):
                    mod = getattr(mod, part)
                return mod
            except AttributeError:
                continue
        return None

    def _norm_placement(self) -> str:
        if not self.norm_modules:
            return ""
        if self.family == "mlm" or self.model_type in ("bart", "marian") and not getattr(self.config, "normalize_before", False):
            return "post"
        return "pre"

    def _position_parameters(self) -> dict[str, Tensor]:
        found = {}
        for name, p in list(self.hf.named_parameters()) + list(self.hf.named_buffers()):
            low = name.lower()
            if p.dim() == 2 and p.shape[1] == self.d_model and ("wpe" in low or "position" in low):
                stack = "encoder" if "encoder" in low else ("decoder" if "decoder" in low else "")
                found[stack] = p
        return found

    # ----------------------------------------------------------------- tokens
    def tokenize(self, text: str, side: str = "source") -> Tokens:
        text = self.check_text(text, "target text" if side == "target" else "text")
        if side == "source" and self.family == "mlm" and self.mask_token:
            text = text.replace("[MASK]", self.mask_token).replace("<mask>", self.mask_token)
        if side == "target":
            enc = self.tok(text_target=text, add_special_tokens=False)
            ids = [self.bos_id] + list(enc["input_ids"])
        else:
            if self.family == "seq2seq" and self.prefix and not text.startswith(self.prefix.strip()):
                text = self.prefix + text
            enc = self.tok(text, add_special_tokens=True)
            ids = list(enc["input_ids"])
        if not ids:
            raise InputError("The text gave no tokens.")
        self.check_length(len(ids), "target text" if side == "target" else "text")
        special_ids = set(self.tok.all_special_ids)
        unk = self.tok.unk_token_id
        unknown = []
        if unk is not None and unk in ids and side != "target":
            try:
                offs = self.tok(text, add_special_tokens=True, return_offsets_mapping=True)["offset_mapping"]
                unknown = [text[a:b] for i, (a, b) in zip(ids, offs) if i == unk]
            except Exception:                                  # slow tokenizers have no offsets
                unknown = ["(a character or word)"]
        return Tokens(ids, [self.vocab[i] if i < len(self.vocab) else f"<id {i}>" for i in ids],
                      [i in special_ids for i in ids], unknown)

    def _t(self, ids: list[int] | list[list[int]]) -> Tensor:
        t = torch.tensor(ids, dtype=torch.long, device=self.device)
        return t if t.dim() == 2 else t[None]

    # ----------------------------------------------------------------- traced forward
    @torch.inference_mode()
    def _forward(self, ids: Tensor, attention_mask: Tensor | None = None, decoder_ids: Tensor | None = None,
                 scores: bool = True):
        kw: dict[str, Any] = dict(output_attentions=True, output_hidden_states=True, return_dict=True)
        if decoder_ids is not None:
            kw["decoder_input_ids"] = decoder_ids
        if attention_mask is not None:
            kw["attention_mask"] = attention_mask
        if self.family == "lm":
            kw["use_cache"] = False
            if self._keeps_logits:
                kw["logits_to_keep"] = 1           # only the last position's logits are used: skip 127/128 of the LM head
        with _Capture(self, scores and self.has_scores) as cap:
            out = self.hf(input_ids=ids, **kw)
        return out, cap

    def check_attentions(self) -> None:
        ids = self.tokenize("hello world").ids if self.family != "seq2seq" else self.tokenize("hello").ids
        dec = self._t([self.bos_id]) if self.family == "seq2seq" else None
        out, _ = self._forward(self._t(ids), decoder_ids=dec, scores=False)
        att = out.encoder_attentions if self.family == "seq2seq" else out.attentions
        if not att or any(a is None for a in att):
            raise ModelLoadError(f"`{self.name}` returned no attention weights (empty `attentions`): this model "
                                 "does not support eager attention with output_attentions, so the lab cannot show it.")

    def _trace(self, out, cap: _Capture, allowed_self: Tensor, pad: Tensor | None) -> Trace:
        tr = Trace(layernorms=cap.layernorms)
        cpu = lambda x: x.detach().float().cpu()
        if self.family == "seq2seq":
            b, ts, tt = allowed_self.shape[0], out.encoder_attentions[0].shape[-1], out.decoder_attentions[0].shape[-1]
            full_src = torch.ones(b, ts, ts, dtype=torch.bool)
            causal = torch.tril(torch.ones(tt, tt, dtype=torch.bool)).expand(b, tt, tt)
            cross_ok = torch.ones(b, tt, ts, dtype=torch.bool)
            tr.attention["encoder"] = [AttentionTrace(cpu(a), None, full_src) for a in out.encoder_attentions]
            tr.attention["decoder"] = [AttentionTrace(cpu(a), None, causal) for a in out.decoder_attentions]
            tr.attention["cross"] = [AttentionTrace(cpu(a), None, cross_ok) for a in out.cross_attentions]
            tr.hidden["encoder"] = [cpu(h) for h in out.encoder_hidden_states]
            tr.hidden["decoder"] = [cpu(h) for h in out.decoder_hidden_states]
            return tr
        scores = cap.scores(len(out.attentions), self.n_heads) if cap.parts else [None] * len(out.attentions)
        atts = []
        for a, s in zip(out.attentions, scores):
            w = cpu(a)
            if s is not None:                      # keep the scores only if they reproduce transformers' weights
                check = s.masked_fill(~allowed_self[:, None], float("-inf")).softmax(-1)
                check = torch.nan_to_num(check)
                if s.shape != w.shape or (check - w).abs().max() > 1e-4:
                    s = None
            atts.append(AttentionTrace(w, s, allowed_self))
        if any(a.scores is None for a in atts):
            atts = [AttentionTrace(a.weights, None, a.allowed) for a in atts]
        tr.attention["self"] = atts
        hidden = [cpu(h) for h in out.hidden_states]
        if self.final_norm is not None:            # HF gives the last hidden state after the final norm
            path = next((p for p, mod in self.norm_modules if mod is self.final_norm), None)
            if path in cap.norm_inputs:
                hidden[-1] = cap.norm_inputs[path]
        tr.hidden["self"] = hidden
        return tr

    def _allowed(self, valid: Tensor) -> Tensor:
        """(B, T) bool of real tokens -> (B, T, T) where a query may attend to a key."""
        b, t = valid.shape
        ok = valid[:, None, :].expand(b, t, t).clone()
        if self.family == "lm":
            ok &= torch.tril(torch.ones(t, t, dtype=torch.bool))
        return ok

    def run(self, text: str, target: str | list[int] | None = None) -> Run:
        src = self.tokenize(text)
        if self.family == "seq2seq":
            return self._run_seq2seq(text, src, target)
        out, cap = self._forward(self._t(src.ids))
        valid = torch.ones(1, len(src.ids), dtype=torch.bool)
        tr = self._trace(out, cap, self._allowed(valid), None)
        logits = out.logits[0].float().cpu()
        if self.family == "mlm":
            mask_id = self.tok.mask_token_id
            pos = src.ids.index(mask_id) if mask_id in src.ids else None
            nxt = logits[pos] if pos is not None else None
        else:
            pos, nxt = len(src.ids) - 1, logits[-1]
        return Run(tokens=src.tokens, ids=src.ids, trace=tr, next_logits=nxt, predict_position=pos, unknown=src.unknown)

    def _run_seq2seq(self, text: str, src: Tokens, target) -> Run:
        if target is None:
            gen = self.generate(text, max_new_tokens=min(self.max_len - 1, 48), greedy=True)
            tgt_ids = [self.bos_id] + [s.token_id for s in gen.steps if s.token_id != self.eos_id]
        elif isinstance(target, str):
            tgt_ids = self.tokenize(target, side="target").ids
        else:
            tgt_ids = self._target_ids(target)
        out, cap = self._forward(self._t(src.ids), decoder_ids=self._t(tgt_ids), scores=False)
        tr = self._trace(out, cap, torch.ones(1, len(src.ids), len(src.ids), dtype=torch.bool), None)
        return Run(tokens=src.tokens, ids=src.ids, trace=tr, target_tokens=[self.vocab[i] for i in tgt_ids],
                   target_ids=tgt_ids, next_logits=out.logits[0, -1].float().cpu(),
                   predict_position=len(tgt_ids) - 1, unknown=src.unknown)

    def run_padded(self, texts: list[str]) -> tuple[list[Tokens], Trace]:
        if self.family == "seq2seq":
            return super().run_padded(texts)
        toks = [self.tokenize(t) for t in texts]
        n = max(len(t.ids) for t in toks)
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else (self.eos_id or 0)
        right = [t.ids + [pad] * (n - len(t.ids)) for t in toks]
        valid = torch.tensor([[True] * len(t.ids) + [False] * (n - len(t.ids)) for t in toks])
        out, cap = self._forward(self._t(right), attention_mask=valid.long().to(self.device))
        allowed = self._allowed(valid)
        tr = self._trace(out, cap, allowed, valid)
        padded = [Tokens(r, t.tokens + ["[PAD]"] * (n - len(t.ids)), t.special + [True] * (n - len(t.ids)), t.unknown)
                  for r, t in zip(right, toks)]
        return padded, tr

    # ----------------------------------------------------------------- generation
    @torch.inference_mode()
    def _start(self, ids: list[int], use_cache: bool) -> tuple[Tensor, Any]:
        if self.family == "mlm":
            raise InputError(f"{self.name} is a masked language model: it fills in a [MASK], it does not write text.")
        if self.family == "seq2seq":
            enc = self.hf.get_encoder()(input_ids=self._t(ids), return_dict=True)
            out = self.hf(encoder_outputs=enc, decoder_input_ids=self._t([self.bos_id]), use_cache=use_cache,
                          return_dict=True)
            return out.logits[0, -1].float().cpu(), (enc, out.past_key_values if use_cache else None, [self.bos_id])
        out = self.hf(input_ids=self._t(ids), use_cache=use_cache, return_dict=True)
        return out.logits[0, -1].float().cpu(), (out.past_key_values, list(ids)) if use_cache else list(ids)

    @torch.inference_mode()
    def _advance(self, state: Any, token_id: int, use_cache: bool) -> tuple[Tensor, Any]:
        if self.family == "seq2seq":
            enc, past, tgt = state
            tgt = tgt + [token_id]
            if use_cache:
                out = self.hf(encoder_outputs=enc, decoder_input_ids=self._t([token_id]), past_key_values=past,
                              use_cache=True, return_dict=True)
                past = out.past_key_values
            else:
                out = self.hf(encoder_outputs=enc, decoder_input_ids=self._t(tgt), use_cache=False, return_dict=True)
            return out.logits[0, -1].float().cpu(), (enc, past, tgt)
        if not use_cache:
            return self._start(state + [token_id], use_cache=False)
        past, ids = state
        out = self.hf(input_ids=self._t([token_id]), past_key_values=past, use_cache=True, return_dict=True)
        return out.logits[0, -1].float().cpu(), (out.past_key_values, ids + [token_id])

    def _generated_start_length(self, prompt: Tokens) -> int:
        return 1 if self.family == "seq2seq" else len(prompt.ids)

    def translate(self, text: str, **kw) -> str:
        gen = self.generate(text, max_new_tokens=min(self.max_len - 1, 48), **kw)
        return self.decode([s.token_id for s in gen.steps])

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=True)

    def next_logits(self, ids: list[int]) -> Tensor:
        if self.family != "lm":
            raise InputError(f"{self.name} does not predict a next token from a prefix on its own.")
        return super().next_logits(ids)

    @torch.inference_mode()
    def _unembed(self, hidden: Tensor, stack: str) -> Tensor:
        if self.family == "lm":
            h = self.final_norm(hidden) if self.final_norm is not None else hidden
            return self.hf.get_output_embeddings()(h)
        if self.family == "mlm" and hasattr(self.hf, "cls"):
            return self.hf.cls(hidden)
        raise LabError(f"The logit lens is shown for decoder-only models; {self.name} is a {self.family} model.")

    def positional_tables(self) -> dict[str, np.ndarray]:
        tables = {"sinusoidal (paper formula)": sinusoidal_encoding(self.max_len, self.d_model).numpy()}
        for stack, p in self._position_parameters().items():
            arr = p.detach().float().cpu().numpy()
            if self.model_type in ("bart", "mbart") and arr.shape[0] > 2:
                arr = arr[2:]                      # BART's learned positions start at offset 2
            label = f"{'sinusoidal' if self.model_type == 'marian' else 'learned'}: {self.name}"
            label += f" {stack}" if stack else ""
            if self.model_type == "marian":
                label = f"Marian's table ({stack or 'shared'}; sin half, then cos half)"
            tables[label] = arr[: self.max_len]
        return tables

    def info(self) -> dict:
        d = super().info()
        d.update(parameters=self.n_params, model_type=self.model_type)
        return d

