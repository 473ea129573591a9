# Issue 21's GPU work (and issue 20's last two runs), as it ran on the `device` tool's nvidia-h200-x2 (2 x H200),
# on one warm machine after the carries of benchmarks/gpu_env.sh (wheels, MiniLM, SmolLM2 in 3 parts, full IMDb):
#   bash benchmarks/issue21_gpu.sh [SECONDS]
# runs, side by side on both GPUs, each run in its own process:
#   - presets/grids/goemotions_multilabel.yaml: GoEmotions multi-label (28 labels, official splits), MiniLM full,
#     SmolLM2 full and SmolLM2 LoRA, 2 seeds (6 runs, 3 at a time per GPU)
#   - presets/grids/imdb_peft_real.yaml's "SmolLM2 QLoRA" setup at its min/10 rate 3.9e-4, seeds 42 and 43 (issue
#     20, part 5: the two runs its session had no device time left for)
# A second call continues: `sweep` skips the runs its registry already holds. Results: $OUT/issue21.tgz (the runs
# folder without weights or predictions, and the logs); `python -m studio report GRID --out DIR` reads it here.
set -u
export GPU_SMOL_PARTS3=1
source benchmarks/gpu_env.sh
export STUDIO_RUNS_DIR=/tmp/runs PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT" /tmp/logs
IMDB=/tmp/carried/.gpu-data/imdb
nvidia-smi -L
python3 -c "import torch, transformers, peft, bitsandbytes; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'bitsandbytes', bitsandbytes.__version__)"
python3 - <<'PY'
import yaml
data = yaml.safe_load(open("presets/grids/imdb_peft_real.yaml"))
data["axes"]["setup"] = {k: v for k, v in data["axes"]["setup"].items() if k == "SmolLM2 QLoRA"}
yaml.safe_dump(data, open("/tmp/imdb_smollm2_qlora.yaml", "w"), sort_keys=False, width=120)
PY
T=${1:-540}
timeout "$T" python3 -m studio sweep goemotions_multilabel --gpus 0,1 --workers 3 > /tmp/logs/goemotions_multilabel.log 2>&1 &
timeout "$T" python3 -m studio sweep /tmp/imdb_smollm2_qlora.yaml --set data.source=$IMDB --gpus 0,1 \
  > /tmp/logs/imdb_smollm2_qlora.log 2>&1 &
wait
tail -12 /tmp/logs/goemotions_multilabel.log /tmp/logs/imdb_smollm2_qlora.log
tar czf "$OUT/issue21.tgz" --exclude=checkpoints --exclude=model --exclude=adapter --exclude=merged --exclude=tokenizer \
  --exclude='*.safetensors' --exclude='*.pt' --exclude='*.bin' --exclude=.cache --exclude=predictions.parquet \
  -C /tmp runs logs
ls -la "$OUT"
