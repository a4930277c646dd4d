"""One declarative entry per supported Hugging Face architecture (in the spirit of TransformerLens'
architecture adapters): where each piece sits in the module tree and what kind it is. Nothing here is
guessed from module names at run time; a model_type missing from ARCHITECTURES is refused at load.

Paths are relative to the checkpoint's base model (`hf.base_model`: `transformer` for GPT-2, `model` for
Llama/BART/Marian, `bert` for BERT, the whole model for T5), so a head-less checkpoint (BertModel) and one
with a head (BertForMaskedLM) share an entry. `{i}` in a path is the layer index.
"""
from __future__ import annotations

from dataclasses import dataclass, field

CAUSAL_LM, MASKED_LM, ENCODER_DECODER, ENCODER = "causal LM", "masked LM", "encoder-decoder", "encoder"


@dataclass(frozen=True)
class AttentionSpec:
    """Where one stack's attention modules are and how their projections are named."""

    path: str                    # e.g. "h.{i}.attn"
    q: str = ""                  # query projection child ("q_proj", "query", "q") ...
    k: str = ""                  # ... and key projection child
    qkv: str = ""                # or one fused projection whose output splits into q, k, v (GPT-2's c_attn)
    o: str = ""                  # the output projection W_o (full path): its input is every head's output,
                                 # concatenated -> the hook point `head_out`; its output -> `attn.out` / `cross.out`


@dataclass(frozen=True)
class StackSpec:
    """Where one stack's blocks and feed-forward sublayers are (full paths with {i}), for hook points."""

    block: str                   # its input -> `resid_pre`, its output -> `resid_post`
    ffn: str                     # the feed-forward sublayer's output before the residual -> `ffn.out`


@dataclass(frozen=True)
class PositionSpec:
    kind: str                    # "sinusoidal", "learned", "rotary", "relative", "none"
    tables: tuple[tuple[str, str], ...] = ()   # (stack, parameter path) of tables added to the embeddings
    offset: int = 0              # rows before position 0 (BART's learned table starts at row 2)
    layout: str = "interleaved"  # sinusoidal tables: "interleaved" or "halves" (sin half, then cos half: Marian)
    rotary: str = ""             # rotary models: the module whose forward returns (cos, sin) for the positions
    rotary_style: str = ""       # "half": q*cos + rotate_half(q)*sin, rotate_half = cat(-x2, x1) (Llama and kin)
    sinusoidal_if: str = ""      # a config flag that makes the table fixed sinusoidal (DistilBERT's sinusoidal_pos_embds)
    modules: tuple[tuple[str, str], ...] = ()  # (stack, module path) whose output carries the positions -> `pos`:
                                 # the table's embedding, the rotary module's (cos, sin), T5's relative bias


@dataclass(frozen=True)
class ArchSpec:
    model_type: str
    label: str                   # for people
    head: str                    # CAUSAL_LM, MASKED_LM or ENCODER_DECODER (a head-less checkpoint becomes ENCODER)
    attention: dict[str, AttentionSpec] = field(default_factory=dict)   # stack -> spec ("self"; or encoder/decoder)
    stacks: dict[str, StackSpec] = field(default_factory=dict)          # "self", or "encoder" and "decoder"
    head_keys: tuple[str, ...] = ()        # weight-name prefixes of the head (absent: a head-less checkpoint)
    base_classes: tuple[str, ...] = ()     # `architectures` entries that name the head-less base model
    n_layers: tuple[str, ...] = ("num_hidden_layers",)          # config attributes, first present wins
    n_encoder_layers: tuple[str, ...] = ()
    n_heads: tuple[str, ...] = ("num_attention_heads",)
    n_kv_heads: tuple[str, ...] = ()       # grouped-query attention; empty: as many as query heads
    d_model: tuple[str, ...] = ("hidden_size",)
    final_norm: str = ""                   # decoder-only: the norm before the vocabulary head
    norm: str = "pre"                      # "pre" or "post"
    norm_kind: str = "LayerNorm"           # "LayerNorm" or "RMSNorm"
    position: PositionSpec = PositionSpec("none")
    sliding_window: bool = False           # config.sliding_window (per layer `sliding_window` on the module if set)
    task_prefix: str = ""                  # text the encoder is told the task with (T5)


_ROTARY = PositionSpec("rotary", rotary="rotary_emb", rotary_style="half", modules=(("self", "rotary_emb"),))
_LLAMA_ATTN = {"self": AttentionSpec("layers.{i}.self_attn", q="q_proj", k="k_proj", o="layers.{i}.self_attn.o_proj")}
_LLAMA_STACK = {"self": StackSpec("layers.{i}", ffn="layers.{i}.mlp")}


def _decoder(model_type: str, label: str, **kw) -> ArchSpec:
    """A Llama-like decoder: rotary positions, grouped-query attention, RMSNorm before each sub-layer."""
    return ArchSpec(model_type, label, CAUSAL_LM, dict(_LLAMA_ATTN), dict(_LLAMA_STACK), head_keys=("lm_head.",),
                    base_classes=(f"{label}Model",), n_kv_heads=("num_key_value_heads",), final_norm="norm",
                    norm="pre", norm_kind="RMSNorm", position=_ROTARY, **kw)


def _bert_like(model_type: str, label: str, **kw) -> ArchSpec:
    """BERT and RoBERTa: post-LN encoder, learned positions; W_o is attention.output.dense."""
    return ArchSpec(model_type, label, MASKED_LM,
                    {"self": AttentionSpec("encoder.layer.{i}.attention.self", q="query", k="key",
                                           o="encoder.layer.{i}.attention.output.dense")},
                    {"self": StackSpec("encoder.layer.{i}", ffn="encoder.layer.{i}.output.dense")},
                    norm="post", norm_kind="LayerNorm", **kw)


def _bart_like(model_type: str, label: str, position: PositionSpec) -> ArchSpec:
    """BART and Marian: post-LN encoder-decoder with q/k/v/out projections and fc1/fc2 feed-forward."""
    att = lambda stack, name: AttentionSpec(f"{stack}.layers.{{i}}.{name}", q="q_proj", k="k_proj",
                                            o=f"{stack}.layers.{{i}}.{name}.out_proj")
    return ArchSpec(model_type, label, ENCODER_DECODER,
                    {"encoder": att("encoder", "self_attn"), "decoder": att("decoder", "self_attn"),
                     "cross": att("decoder", "encoder_attn")},
                    {s: StackSpec(f"{s}.layers.{{i}}", ffn=f"{s}.layers.{{i}}.fc2") for s in ("encoder", "decoder")},
                    n_layers=("decoder_layers",), n_encoder_layers=("encoder_layers",),
                    n_heads=("decoder_attention_heads",), d_model=("d_model",), norm="post", norm_kind="LayerNorm",
                    position=position)


ARCHITECTURES: dict[str, ArchSpec] = {s.model_type: s for s in (
    ArchSpec("gpt2", "GPT-2", CAUSAL_LM, {"self": AttentionSpec("h.{i}.attn", qkv="c_attn", o="h.{i}.attn.c_proj")},
             {"self": StackSpec("h.{i}", ffn="h.{i}.mlp")},
             head_keys=("lm_head.",), base_classes=("GPT2Model",), n_layers=("n_layer",), n_heads=("n_head",),
             d_model=("n_embd",), final_norm="ln_f", norm="pre", norm_kind="LayerNorm",
             position=PositionSpec("learned", (("", "wpe.weight"),), modules=(("self", "wpe"),))),
    _decoder("llama", "Llama"),
    _decoder("mistral", "Mistral", sliding_window=True),
    _decoder("qwen2", "Qwen2", sliding_window=True),
    _decoder("gemma", "Gemma"),
    _bert_like("bert", "BERT", head_keys=("cls.",), base_classes=("BertModel",),
               position=PositionSpec("learned", (("", "embeddings.position_embeddings.weight"),),
                                     modules=(("self", "embeddings.position_embeddings"),))),
    _bert_like("roberta", "RoBERTa", head_keys=("lm_head.",), base_classes=("RobertaModel",),
               position=PositionSpec("learned", (("", "embeddings.position_embeddings.weight"),), offset=2,
                                     modules=(("self", "embeddings.position_embeddings"),))),
    ArchSpec("distilbert", "DistilBERT", MASKED_LM,
             {"self": AttentionSpec("transformer.layer.{i}.attention", q="q_lin", k="k_lin",
                                    o="transformer.layer.{i}.attention.out_lin")},
             {"self": StackSpec("transformer.layer.{i}", ffn="transformer.layer.{i}.ffn")},
             head_keys=("vocab_transform.", "vocab_layer_norm.", "vocab_projector."), base_classes=("DistilBertModel",),
             n_layers=("n_layers",), n_heads=("n_heads",), d_model=("dim",), norm="post", norm_kind="LayerNorm",
             position=PositionSpec("learned", (("", "embeddings.position_embeddings.weight"),),
                                   sinusoidal_if="sinusoidal_pos_embds",
                                   modules=(("self", "embeddings.position_embeddings"),))),
    ArchSpec("t5", "T5", ENCODER_DECODER,
             {"encoder": AttentionSpec("encoder.block.{i}.layer.0.SelfAttention", q="q", k="k",
                                       o="encoder.block.{i}.layer.0.SelfAttention.o"),
              "decoder": AttentionSpec("decoder.block.{i}.layer.0.SelfAttention", q="q", k="k",
                                       o="decoder.block.{i}.layer.0.SelfAttention.o"),
              "cross": AttentionSpec("decoder.block.{i}.layer.1.EncDecAttention", q="q", k="k",
                                     o="decoder.block.{i}.layer.1.EncDecAttention.o")},
             {"encoder": StackSpec("encoder.block.{i}", ffn="encoder.block.{i}.layer.1.DenseReluDense"),
              "decoder": StackSpec("decoder.block.{i}", ffn="decoder.block.{i}.layer.2.DenseReluDense")},
             n_layers=("num_decoder_layers", "num_layers"), n_encoder_layers=("num_layers",), n_heads=("num_heads",),
             d_model=("d_model",), norm="pre", norm_kind="RMSNorm",
             position=PositionSpec("relative", modules=(
                 ("encoder", "encoder.block.0.layer.0.SelfAttention.relative_attention_bias"),
                 ("decoder", "decoder.block.0.layer.0.SelfAttention.relative_attention_bias"))),
             task_prefix="translate English to French: "),
    _bart_like("bart", "BART", PositionSpec("learned", (("encoder", "encoder.embed_positions.weight"),
                                                        ("decoder", "decoder.embed_positions.weight")), offset=2,
                                            modules=(("encoder", "encoder.embed_positions"),
                                                     ("decoder", "decoder.embed_positions")))),
    _bart_like("marian", "Marian", PositionSpec("sinusoidal", (("", "encoder.embed_positions.weight"),),
                                                layout="halves", modules=(("encoder", "encoder.embed_positions"),
                                                                          ("decoder", "decoder.embed_positions")))),
)}

SUPPORTED = ", ".join(s.label for s in ARCHITECTURES.values())


def spec_for(model_type: str) -> ArchSpec | None:
    return ARCHITECTURES.get(model_type)


def config_value(config, names: tuple[str, ...], default=0):
    for n in names:
        v = getattr(config, n, None)
        if v is not None:
            return v
    return default
