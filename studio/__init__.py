"""Fine-Tune Studio: fine-tune transformer text classifiers (full, LoRA, QLoRA, IA3).

The engine lives in this package and never imports gradio; the UI is in ``studio.ui``.
"""

__version__ = "0.1.0"
