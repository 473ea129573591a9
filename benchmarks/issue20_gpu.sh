# Issue 20's GPU work, as it ran on the `device` tool's nvidia-h200-x2 (2 x H200), stage by stage on one warm
# machine (the carried files arrive over several calls: see benchmarks/gpu_env.sh):
#   bash benchmarks/issue20_gpu.sh goemotions     GoEmotions: the MiniLM half of goemotions_real again (120-run
#                                                  grid, its 72 MiniLM runs) + goemotions_seed_recipe_check
#   bash benchmarks/issue20_gpu.sh imdb MiniLM     study 3 on the full IMDb: range tests, then the grid's runs,
#   bash benchmarks/issue20_gpu.sh imdb SmolLM2    for the setups whose name starts with the model's name
#   bash benchmarks/issue20_gpu.sh bert-cost       lr-find's cost on bert-base (random weights, real config)
# Every run trains in its own process; runs share a GPU (--workers), so a run's seconds include the sharing.
# Results: $OUT/<stage>.tgz holds the runs folder (registry + each run's config, events, metrics, eval.json,
# predictions; no weights) and the logs; `python -m studio report GRID --set ... --out DIR` reads it here.
set -u
export GPU_SMOL_PARTS3=1
source benchmarks/gpu_env.sh
export STUDIO_RUNS_DIR=/tmp/runs PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT" /tmp/logs
IMDB=/tmp/carried/.gpu-data/imdb
nvidia-smi -L
python3 -c "import torch, transformers, peft, bitsandbytes; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, 'bitsandbytes', bitsandbytes.__version__)"

pack() {  # the runs folder without weights, and the logs
  tar czf "$OUT/$1.tgz" --exclude=checkpoints --exclude=model --exclude=adapter --exclude=merged --exclude=tokenizer \
    --exclude='*.safetensors' --exclude='*.pt' --exclude='*.bin' --exclude=.cache --exclude=predictions.parquet \
    -C /tmp runs logs
  ls -la "$OUT"
}

only_setups() {  # GRID PREFIX OUTFILE: the grid with only the setups whose name starts with PREFIX
  python3 - "$@" <<'EOF'
import sys, yaml
src, prefix, out = sys.argv[1:]
data = yaml.safe_load(open(src))
data["axes"]["setup"] = {k: v for k, v in data["axes"]["setup"].items() if k.startswith(prefix)}
yaml.safe_dump(data, open(out, "w"), sort_keys=False, width=120)
EOF
}

case "$1" in
  goemotions)
    only_setups presets/grids/goemotions_real.yaml MiniLM /tmp/goemotions_real_minilm.yaml
    timeout 480 python3 -m studio sweep /tmp/goemotions_real_minilm.yaml --gpus 0,1 --workers 6 > /tmp/logs/goemotions_real.log 2>&1 &
    timeout 480 python3 -m studio sweep goemotions_seed_recipe_check --gpus 0,1 --workers 2 > /tmp/logs/seed_recipe_check.log 2>&1 &
    wait
    tail -3 /tmp/logs/goemotions_real.log /tmp/logs/seed_recipe_check.log
    pack goemotions ;;
  imdb)
    # RULE=lower: the lower of lr-find's suggestion and min/10; REUSE=1: the range tests of the steepest round
    only_setups presets/grids/imdb_peft_real.yaml "$2" "/tmp/imdb_peft_real_$2.yaml"
    D="/tmp/logs/imdb-$2${RULE:+-$RULE}"
    [ -n "${REUSE:-}" ] && mkdir -p "$D" && cp -r "/tmp/logs/imdb-$2/lr" "$D/"
    timeout "${3:-540}" python3 benchmarks/lr_then_sweep.py "/tmp/imdb_peft_real_$2.yaml" --out "$D" \
      --rule "${RULE:-steepest}" ${REUSE:+--reuse} --set data.source=$IMDB --gpus 0,1 --lr-workers 3 --workers 3 \
      --steps 200 > "$D.log" 2>&1
    tail -40 "$D.log"
    pack "imdb-$2${RULE:+-$RULE}" ;;
  bert-cost)
    python3 -c "
import sys; sys.path.insert(0, 'benchmarks'); from pathlib import Path
from memory_validation import model_folder; print(model_folder('bert-base', Path('/tmp/models')))"
    CUDA_VISIBLE_DEVICES=0 python3 -m studio lr-find presets/imdb_bert_qlora.yaml --set model.name=/tmp/models/bert-base \
      --set data.source=$IMDB --json /tmp/logs/lr_find_bert_base_qlora.json > /tmp/logs/lr_find_bert_base.log 2>&1
    tail -30 /tmp/logs/lr_find_bert_base.log ;;
esac
