#!/usr/bin/env bash
# Issue 25's last levers for 40% MFU, and the checks per-layer compilation still owed, on one H200, every
# train_speed row its own process, each lever in its own inductor cache folder (cold, then warm in a new process):
#   bash benchmarks/issue25_final_gpu.sh levers    carry [".gpu-wheels", ".gpu-sa", ".gpu-mini-a"]  ($OUT/levers.tgz)
#     0. the allocator: does `recipe._allocator_settings` (torch's newer call where it has one) turn expandable
#        segments on and off on this torch?
#     1. 16,000 x 3 compiled per layer at batch 128 with length-grouped batches (64-token buckets: less padding,
#        so more real tokens a second; 4 shapes to compile)
#     2. 16,000 x 3 compiled per layer at batch 256 with CUDA graphs (TORCHINDUCTOR_CUDAGRAPHS=1)
#   bash benchmarks/issue25_final_gpu.sh static    carry [".gpu-wheels", ".gpu-sa"]                 ($OUT/static.tgz)
#     length-grouped batches again: compiled per layer with every bucket compiled as a static shape
#     (TORCH_DYNAMO_AUTOMATIC_DYNAMIC_SHAPES=0: by default dynamo recompiles a graph with dynamic shapes at the
#     second length it sees), cold then warm; and fast not compiled, length-grouped and not, for reference
#   bash benchmarks/issue25_final_gpu.sh ungrouped carry [".gpu-wheels", ".gpu-sa"]              ($OUT/ungrouped.tgz)
#     the reference for the two above on the same host: compiled per layer as the studio does (batches not
#     grouped by length), cold then warm
#   bash benchmarks/issue25_final_gpu.sh quality   carry [".gpu-mini-b"], right after `levers` on the same warm
#     machine (MiniLM travels in two parts): the speed_quality grid (presets/grids/speed_quality.yaml), whose
#     compiled cell now compiles per layer                                                     ($OUT/quality.tgz)
set -u
MODE=${1:?levers, static, ungrouped or quality}
GPU_ENV_NO_COMPILE=1 source benchmarks/gpu_env.sh
R=/tmp/h200_final_$MODE; mkdir -p $R
pack() { tar czf $OUT/$MODE.tgz --exclude='inductor-*' --exclude=cache -C /tmp h200_final_$MODE; }
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $R/gpu.txt
if [ "$MODE" = quality ]; then
  export STUDIO_RUNS_DIR=$R/runs
  timeout ${LIMIT:-540} python3 -m studio sweep speed_quality --workers 4 > $R/sweep.log 2>&1
  find $R/runs -name '*.safetensors' -o -name '*.bin' -o -name '*.pt' | xargs -r rm -f
  pack; tail -n 5 $R/sweep.log; exit 0
fi
if [ "$MODE" = ungrouped ]; then
  TORCHINDUCTOR_CACHE_DIR=$R/inductor timeout 250 python3 benchmarks/train_speed.py --out $R/compiled --train 16000 \
    --epochs 3 --only fast-compile,fast-compile-again > $R/compiled.log 2>&1
  rm -rf $R/inductor; pack
  cut -d, -f1-3,8-10,13-16,20-21 $R/compiled/train_speed.csv; tail -n 2 $R/compiled.log; exit 0
fi
if [ "$MODE" = static ]; then
  python3 -c "import studio.training, studio.hf_trainer, peft, bitsandbytes, accelerate, datasets"
  TORCH_DYNAMO_AUTOMATIC_DYNAMIC_SHAPES=0 TORCHINDUCTOR_CACHE_DIR=$R/inductor-static timeout 250 \
    python3 benchmarks/train_speed.py --out $R/static --train 16000 --epochs 3 --only fast-compile,fast-compile-again \
    --set train.length_grouping=true > $R/static.log 2>&1; pack
  timeout 200 python3 benchmarks/train_speed.py --out $R/eager --train 16000 --epochs 3 --only fast \
    > $R/eager.log 2>&1; pack
  timeout 100 python3 benchmarks/train_speed.py --out $R/eager-grouped --train 16000 --epochs 3 --only fast \
    --set train.length_grouping=true > $R/eager-grouped.log 2>&1
  rm -rf $R/inductor-*; pack
  for f in $R/*/train_speed.csv; do echo "$f"; cut -d, -f1-3,8-10,13-16,20-21 "$f"; done; tail -n 2 $R/*.log; exit 0
fi
python3 - > $R/allocator.txt 2>&1 <<'EOF'
import torch
from studio.recipe import _allocator_settings
print("torch", torch.__version__, "newer call:", hasattr(torch._C, "_accelerator_setAllocatorSettings"))
for state in ("True", "False"):
    _allocator_settings(f"expandable_segments:{state}")
    x = torch.empty(64 << 20, dtype=torch.uint8, device="cuda")
    segment = [s for s in torch.cuda.memory._snapshot()["segments"] if s["total_size"] >= 64 << 20][-1]
    print(f"expandable_segments:{state} -> a new segment is expandable: {segment.get('is_expandable')}")
    del x
    torch.cuda.empty_cache()
EOF
cat $R/allocator.txt
python3 -c "import studio.training, studio.hf_trainer, studio.speed_plan, studio.memory, peft, bitsandbytes, \
accelerate, datasets, sklearn.model_selection; from transformers import Trainer, BertForSequenceClassification"
TORCHINDUCTOR_CACHE_DIR=$R/inductor-grouped timeout 250 python3 benchmarks/train_speed.py --out $R/grouped \
  --train 16000 --epochs 3 --only fast-compile,fast-compile-again --set train.length_grouping=true \
  > $R/grouped.log 2>&1; pack
TORCHINDUCTOR_CUDAGRAPHS=1 TORCHINDUCTOR_CACHE_DIR=$R/inductor-b256 timeout 220 python3 benchmarks/train_speed.py \
  --out $R/b256 --train 16000 --epochs 3 --only fast-compile,fast-compile-again --set train.batch_size=256 \
  --set train.grad_accum=1 > $R/b256.log 2>&1
rm -rf $R/inductor-*; pack
for f in $R/*/train_speed.csv; do echo "$f"; cut -d, -f1-3,8-10,13-16,20-21 "$f"; done; tail -n 3 $R/*.log
