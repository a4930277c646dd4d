"""Tiny Hugging Face models built from configs and saved with `save_pretrained`, for tests and the
benchmark: no network. Each family gets a real tokenizer trained here with the `tokenizers` library
(byte-level BPE with Ġ markers for GPT-2, WordPiece for BERT, Metaspace ▁ for T5/BART/Marian), so the
lab's token display and the model's special tokens are exercised as with the real checkpoints.
"""
from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (AutoModelForCausalLM, AutoModelForMaskedLM, AutoModelForSeq2SeqLM, BartConfig,
                          BertConfig, BertModel, DistilBertConfig, GemmaConfig, RobertaConfig, GPT2Config, LlamaConfig, MarianConfig, MistralConfig,
                          PreTrainedTokenizerFast, Qwen2Config, T5Config)

ROTARY = ["llama", "mistral", "qwen2", "gemma"]         # grouped-query attention: 4 query heads, 2 (Gemma: 1) kv heads
FAMILIES = ["gpt2", *ROTARY, "bert", "bert-base", "roberta", "distilbert", "t5", "bart", "marian"]  # bert-base: no head
TEXT = ("the bear ate the honey because it was hungry . the keys to the old cabinet are on the table . "
        "the black cat ate the mouse . le chat noir a mangé la souris . a dog sleeps . the river bank is wet . "
        "hello world . translate English to French : the cat") * 3


def _bpe_bytelevel() -> Tokenizer:
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    tk.train_from_iterator([TEXT], trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tk


def _wordpiece() -> Tokenizer:
    tk = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tk.normalizer = normalizers.BertNormalizer(lowercase=True)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.decoder = decoders.WordPiece()
    tk.train_from_iterator([TEXT], trainers.WordPieceTrainer(vocab_size=200, special_tokens=[
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    cls, sep = tk.token_to_id("[CLS]"), tk.token_to_id("[SEP]")
    tk.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                      special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return tk


def _metaspace(specials: list[str], eos: str) -> Tokenizer:
    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Metaspace()
    tk.decoder = decoders.Metaspace()
    tk.train_from_iterator([TEXT], trainers.BpeTrainer(vocab_size=250, special_tokens=specials))
    tk.post_processor = processors.TemplateProcessing(single=f"$A {eos}", special_tokens=[(eos, tk.token_to_id(eos))])
    return tk


def _metaspace_bos() -> Tokenizer:
    """Llama-style: ▁ markers, <s> before every text, <unk> for unknown pieces."""
    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Metaspace()
    tk.decoder = decoders.Metaspace()
    tk.train_from_iterator([TEXT], trainers.BpeTrainer(vocab_size=250, special_tokens=["<unk>", "<s>", "</s>"]))
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tk.token_to_id("<s>"))])
    return tk


def make_tiny(family: str, folder: str | Path, layers: int = 2, heads: int = 4, d: int = 32, seed: int = 0,
              positions: int = 64) -> Path:
    """Build a tiny random model of the family with a trained tokenizer; save both into `folder`.

    `positions`: the longest input the config allows (max_position_embeddings / n_positions)."""
    folder = Path(folder)
    torch.manual_seed(seed)
    if family == "gpt2":
        tk = _bpe_bytelevel()
        tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                      unk_token="<|endoftext|>")
        cfg = GPT2Config(vocab_size=len(tok), n_positions=positions, n_embd=d, n_layer=layers, n_head=heads,
                         bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
        m = AutoModelForCausalLM.from_config(cfg)
    elif family in ROTARY:
        if family == "qwen2":                          # Qwen2: byte-level BPE, no BOS, <|endoftext|> ends
            tok = PreTrainedTokenizerFast(tokenizer_object=_bpe_bytelevel(), eos_token="<|endoftext|>",
                                          pad_token="<|endoftext|>", unk_token="<|endoftext|>")
            ids = dict(bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id)
        else:
            tok = PreTrainedTokenizerFast(tokenizer_object=_metaspace_bos(), bos_token="<s>", eos_token="</s>",
                                          unk_token="<unk>")
            ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=None)
        common = dict(vocab_size=len(tok), hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads,
                      num_key_value_heads=1 if family == "gemma" else heads // 2, intermediate_size=2 * d,
                      max_position_embeddings=positions, tie_word_embeddings=family == "gemma", **ids)
        cfg = {"llama": LlamaConfig, "mistral": MistralConfig, "qwen2": Qwen2Config,
               "gemma": GemmaConfig}[family](**common, **({"head_dim": d // heads} if family == "gemma" else {}),
                                             **({"sliding_window": 48} if family == "mistral" else {}))
        m = AutoModelForCausalLM.from_config(cfg)
    elif family == "roberta":                          # byte-level BPE, <s> ... </s>, <mask>; positions from row 2
        tk = Tokenizer(models.BPE())
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tk.decoder = decoders.ByteLevel()
        tk.train_from_iterator([TEXT], trainers.BpeTrainer(vocab_size=300, special_tokens=[
            "<s>", "<pad>", "</s>", "<unk>", "<mask>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
        tk.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
        tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                      unk_token="<unk>", mask_token="<mask>", cls_token="<s>", sep_token="</s>")
        cfg = RobertaConfig(vocab_size=len(tok), hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads,
                            intermediate_size=4 * d, max_position_embeddings=positions + 2, pad_token_id=1,
                            bos_token_id=0, eos_token_id=2)
        m = AutoModelForMaskedLM.from_config(cfg)
    elif family == "distilbert":
        tok = PreTrainedTokenizerFast(tokenizer_object=_wordpiece(), unk_token="[UNK]", pad_token="[PAD]",
                                      cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
        cfg = DistilBertConfig(vocab_size=len(tok), dim=d, n_layers=layers, n_heads=heads, hidden_dim=4 * d,
                               max_position_embeddings=positions, pad_token_id=tok.pad_token_id)
        m = AutoModelForMaskedLM.from_config(cfg)
    elif family in ("bert", "bert-base"):
        tok = PreTrainedTokenizerFast(tokenizer_object=_wordpiece(), unk_token="[UNK]", pad_token="[PAD]",
                                      cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
        cfg = BertConfig(vocab_size=len(tok), hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads,
                         intermediate_size=4 * d, max_position_embeddings=positions, pad_token_id=tok.pad_token_id)
        m = AutoModelForMaskedLM.from_config(cfg) if family == "bert" else BertModel(cfg, add_pooling_layer=False)
    else:
        specials = ["<pad>", "</s>", "<unk>"] if family in ("t5", "marian") else ["<s>", "<pad>", "</s>", "<unk>"]
        tok = PreTrainedTokenizerFast(tokenizer_object=_metaspace(specials, "</s>"), pad_token="<pad>",
                                      eos_token="</s>", unk_token="<unk>",
                                      **({"bos_token": "<s>"} if family == "bart" else {}))
        common = dict(vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        if family == "t5":
            cfg = T5Config(d_model=d, d_kv=d // heads, d_ff=4 * d, num_layers=layers, num_heads=heads,
                           decoder_start_token_id=tok.pad_token_id, **common)
        elif family == "bart":
            cfg = BartConfig(d_model=d, encoder_layers=layers, decoder_layers=layers, encoder_attention_heads=heads,
                             decoder_attention_heads=heads, encoder_ffn_dim=4 * d, decoder_ffn_dim=4 * d,
                             max_position_embeddings=positions, bos_token_id=tok.bos_token_id,
                             decoder_start_token_id=tok.eos_token_id, forced_eos_token_id=None, **common)
        else:
            cfg = MarianConfig(d_model=d, encoder_layers=layers, decoder_layers=layers, encoder_attention_heads=heads,
                               decoder_attention_heads=heads, encoder_ffn_dim=4 * d, decoder_ffn_dim=4 * d,
                               max_position_embeddings=positions, decoder_start_token_id=tok.pad_token_id,
                               decoder_vocab_size=len(tok), **common)
        m = AutoModelForSeq2SeqLM.from_config(cfg)
    m.eval()
    m.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def save_word_tokenizer(folder: str | Path, vocab_size: int) -> None:
    """A word-level tokenizer 'w0' ... 'w{n-2}' plus <|endoftext|>: n ids, one token per word (for benchmarks
    that need a full-size vocabulary without downloading one)."""
    vocab = {f"w{i}": i for i in range(vocab_size - 1)}
    vocab["<|endoftext|>"] = vocab_size - 1
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.decoder = decoders.WordPiece()
    PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="<|endoftext|>", unk_token="<|endoftext|>",
                            bos_token="<|endoftext|>").save_pretrained(folder)
