"""Tiny random models of each supported family, saved as real model folders (config, safetensors, tokenizer).

They load through the same code path as a Hub model or a user's folder, so tests exercise the product's
real loading code without network. Encoders use the real bert-base-uncased WordPiece vocab; RoBERTa and
the decoders the real GPT-2 byte-level BPE (so embeddings are vocab-sized: ~1-2M parameters each).
"""

from __future__ import annotations

from pathlib import Path

import torch

ASSETS = Path(__file__).parent / "assets" / "tokenizers"
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def _configs() -> dict[str, tuple[object, str]]:
    from transformers import (
        BertConfig,
        DebertaV2Config,
        DistilBertConfig,
        Gemma3TextConfig,
        GPT2Config,
        LlamaConfig,
        Qwen2Config,
        RobertaConfig,
    )

    bert_vocab, gpt2_vocab = 30522, 50257
    decoder = dict(TINY, num_key_value_heads=1, max_position_embeddings=512, vocab_size=gpt2_vocab)
    decoder_tokens = dict(bos_token_id=50256, eos_token_id=50256, pad_token_id=None)
    return {
        "bert": (BertConfig(vocab_size=bert_vocab, max_position_embeddings=512, **TINY), "bert-base-uncased"),
        "distilbert": (
            DistilBertConfig(vocab_size=bert_vocab, dim=32, n_layers=2, n_heads=2, hidden_dim=64),
            "bert-base-uncased",
        ),
        "roberta": (
            RobertaConfig(vocab_size=gpt2_vocab, max_position_embeddings=514, pad_token_id=1, **TINY),
            "gpt2",
        ),
        "deberta-v2": (
            DebertaV2Config(
                vocab_size=bert_vocab,
                max_position_embeddings=512,
                relative_attention=True,
                pos_att_type=["p2c", "c2p"],
                position_buckets=32,
                **TINY,
            ),
            "bert-base-uncased",
        ),
        "gpt2": (
            GPT2Config(vocab_size=gpt2_vocab, n_embd=32, n_layer=2, n_head=2, n_positions=512, pad_token_id=None),
            "gpt2",
        ),
        "qwen2": (Qwen2Config(**decoder, **decoder_tokens), "gpt2"),
        "llama": (LlamaConfig(**decoder, **decoder_tokens), "gpt2"),
        "gemma3": (Gemma3TextConfig(**decoder, head_dim=16, **decoder_tokens), "gpt2"),
    }


FAMILIES = ("bert", "distilbert", "roberta", "deberta-v2", "gpt2", "qwen2", "llama", "gemma3")


def make_tiny_model(family: str, folder: Path, seed: int = 0) -> Path:
    """Write a tiny random `family` model (base model + tokenizer) to `folder` and return it."""
    from transformers import AutoModel, AutoTokenizer

    config, tokenizer_name = _configs()[family]
    torch.manual_seed(seed)
    model = AutoModel.from_config(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(ASSETS / tokenizer_name)
    if family == "roberta":  # RoBERTa's position ids skip padding_idx: the tokenizer's pad must be that id
        tokenizer.pad_token = tokenizer.convert_ids_to_tokens(config.pad_token_id)
    tokenizer.save_pretrained(folder)
    return folder
