"""The fine-tuning methods as a table: one frozen `Method` per method, registered in `METHODS`.

Every fact the engine, the CLI and the UI decide on by method lives here (peft's style: a config per method,
looked up by name, instead of ``if method == ...`` spread across modules): whether peft wraps the model and
with which adapter type, whether the frozen base is quantized, which knobs apply, how the base is stored
while training (what the memory estimate counts), what a finished run saves and what export can do with
it, which method to offer instead when one does not fit, and the labels shown for it.

`MethodConfig.spec` (studio/config.py) returns a config's row; the peft side of each adapter type (config
builders, parameter names) is in studio/adapters.py. Imports nothing heavy: the UI reads this at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MethodName = Literal["full", "lora", "qlora", "ia3"]
"""The names `method.name` accepts; tests/test_methods.py checks they are exactly the keys of `METHODS`."""
AdapterName = Literal["lora", "ia3"]
BaseWeights = Literal["fp32", "checkpoint", "quantized"]


@dataclass(frozen=True)
class Method:
    """What the studio knows of one fine-tuning method."""

    name: MethodName
    label: str
    """How people write it: model cards, the run's description ("fine-tuned ... with LoRA")."""
    summary: str
    """What it does, in a few words (shown after the label, e.g. in the memory suggestions)."""
    adapter: AdapterName | None
    """The peft adapter type that wraps the model; None: no adapter, every weight trains."""
    quantized: bool
    """The frozen base is loaded in 4/8 bit through bitsandbytes (`method.bits`, `quant_type`, ...)."""
    rank: bool
    """LoRA's knobs apply (`method.r`, `alpha`, `dropout`): the adapter's parameters scale with r."""
    default_placement: Literal["qv", "attention+ffn"] | None
    """What `method.placement: auto` places the adapters on; None without adapters (placement must stay auto)."""
    base_weights: BaseWeights
    """How the base is stored while training (what the memory estimate counts): fp32 master weights (a 16-bit
    checkpoint is upcast, models.load_classifier), the checkpoint's dtype (a frozen bf16 base stays bf16; fp16
    is upcast), or quantized linear layers with the rest in fp32 (prepare_model_for_kbit_training)."""
    hub_tag: str
    """The Hugging Face Hub tag of an exported run."""
    color: str
    """Its colour in every plot (plots.METHOD_COLORS)."""
    usual_learning_rate: float
    """A learning rate this method usually trains well at: what a run that collapsed or diverged is advised to
    try (studio/health.py). Full fine-tuning moves every pretrained weight, so it wants the smallest; LoRA's
    low-rank update starts at zero and takes a few times more (but not 1e-3: the GoEmotions study's MiniLM LoRA
    runs at that rate collapsed onto one class on one seed in four cells); IA3's scales start at one and need
    larger steps still."""
    leaner: MethodName | None = None
    """The method offered when this one does not fit (fit.suggestions, the out-of-memory advice)."""
    quantized_variant: MethodName | None = None
    """The same adapters on a 4-bit base: what speed frugal switches to where it saves much (FRUGAL_SLACK)."""
    unquantized_variant: MethodName | None = None
    """The same adapters on a 16-bit base: what speed fast switches to where it fits."""
    safe_learning_rate: float | None = None
    """The highest rate the range test suggests on the real models the project can reach: the lowest
    min/10 suggestion (studio/lr_find.py) over all-MiniLM-L6-v2 and SmolLM2-135M on the full IMDb, batch 32,
    on an H200 (issue 20, benchmarks/results/imdb_peft_real/lr_find.csv); every run trained at these rates
    learned (none flagged). The fast speed profile never scales a rate above it (speed_plan._fast), and the
    shipped presets stay within 2x of it (tests/test_presets.py)."""
    lr_sweep: tuple[float, float] = (1e-7, 1.0)
    """The learning-rate range test's default sweep (studio/lr_find.py), 5-6 decades around where the method's
    rates usually lie: adapters train at ~10x full fine-tuning's rate (LoRA 1e-4..1e-3 where full takes
    1e-5..1e-4; IA3's learned scales higher still), so each sweep ends where its method surely diverges."""

    @property
    def trains_every_weight(self) -> bool:
        """Full fine-tuning: no adapter, the whole model trains and is saved (model/ rather than adapter/)."""
        return self.adapter is None

    @property
    def saves(self) -> Literal["adapter", "model"]:
        """What a finished run's folder holds: the adapter and head (peft) or the whole model."""
        return "model" if self.adapter is None else "adapter"

    @property
    def mergeable(self) -> bool:
        """export.merge_adapter can fold what trained into the base (a full fine-tune is already a plain model)."""
        return self.adapter is not None


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            name="full",
            label="full fine-tuning",
            summary="every weight trains",
            adapter=None,
            quantized=False,
            rank=False,
            default_placement=None,
            base_weights="fp32",
            hub_tag="full-fine-tuning",
            color="#E45756",
            usual_learning_rate=5e-5,
            leaner="qlora",
            lr_sweep=(1e-7, 1e-1),
            safe_learning_rate=5.9e-5,  # SmolLM2 5.9e-5, MiniLM 8.9e-5
        ),
        Method(
            name="lora",
            label="LoRA",
            summary="low-rank adapters on a frozen base",
            adapter="lora",
            quantized=False,
            rank=True,
            default_placement="qv",
            base_weights="checkpoint",
            hub_tag="lora",
            color="#4C78A8",
            usual_learning_rate=2e-4,
            leaner="qlora",
            quantized_variant="qlora",
            lr_sweep=(1e-6, 1.0),
            safe_learning_rate=3.9e-4,  # r8/alpha 16: SmolLM2 3.9e-4, MiniLM 5.1e-4; rank 64/alpha 128 lower: 1.6e-4
        ),
        Method(
            name="qlora",
            label="QLoRA",
            summary="LoRA on a 4-bit NF4 base",
            adapter="lora",
            quantized=True,
            rank=True,
            default_placement="qv",
            base_weights="quantized",
            hub_tag="qlora",
            color="#54A24B",
            usual_learning_rate=2e-4,
            unquantized_variant="lora",
            lr_sweep=(1e-6, 1.0),
            safe_learning_rate=2.7e-4,  # MiniLM 2.7e-4, SmolLM2 3.9e-4
        ),
        Method(
            name="ia3",
            label="IA3",
            summary="learned scales of keys, values and FFN inputs on a frozen base",
            adapter="ia3",
            quantized=False,
            rank=False,
            default_placement="attention+ffn",
            base_weights="checkpoint",
            hub_tag="ia3",
            color="#B279A2",
            lr_sweep=(1e-5, 1.0),
            safe_learning_rate=1.7e-3,  # SmolLM2 1.7e-3, MiniLM 1.6e-2
            usual_learning_rate=3e-3,
        ),
    )
}
"""Every method by name, in the order the UI and the plots list them."""
ADAPTER_METHODS: tuple[str, ...] = tuple(name for name, m in METHODS.items() if m.adapter is not None)
"""The methods that train peft adapters (the UI shows the adapter knobs for these)."""
