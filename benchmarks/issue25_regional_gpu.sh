#!/usr/bin/env bash
# Issue 25: compiling fast per layer (accelerate's regional compilation) and CUDA's initialisation in a thread,
# on one H200 (carry [".gpu-wheels", ".gpu-sa"]), every train_speed row its own process:
#   bash benchmarks/issue25_regional_gpu.sh explore    ($OUT/regional.tgz, refreshed after every step)
#     1. cuda_init_overlap.py: does CUDA's initialisation release the GIL (so a thread could hide it in setup)?
#     2. 16,000 x 3 (the seed study's workload): fast; fast + torch.compile of the whole model, inductor's cache
#        cold then warm; the same compiled per layer (ACCELERATE_DYNAMO_USE_REGIONAL_COMPILATION=1), cold, warm
#     3. 16,000 x 1: per-layer compile with autotuned matmuls (TORCHINDUCTOR_MAX_AUTOTUNE_GEMM=1; it failed before
#        hf_trainer.agree_tf32), for MFU
#   bash benchmarks/issue25_regional_gpu.sh headline   ($OUT/headline.tgz) 16,000 x 3 in one fresh cache folder:
#     the stock seed recipe; fast (a first run: not compiled); fast-compile (compiled per layer, inductor's cache
#     cold: the studio records the shape); fast again (the plan now compiles it, the cache warm)
#   bash benchmarks/issue25_regional_gpu.sh autotune   ($OUT/autotune.tgz) 16,000 x 1, compiled per layer: as the
#     studio compiles, then with autotuned matmuls (TORCHINDUCTOR_MAX_AUTOTUNE_GEMM=1) cold and warm, for MFU
set -u
MODE=${1:?explore, headline or autotune}
GPU_ENV_NO_COMPILE=1 source benchmarks/gpu_env.sh
R=/tmp/h200_regional_$MODE; mkdir -p $R
pack() { tar czf $OUT/$MODE.tgz --exclude='inductor-*' --exclude=cache -C /tmp h200_regional_$MODE; }
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $R/gpu.txt
python3 -c "import studio.training, studio.hf_trainer, studio.speed_plan, studio.memory, peft, bitsandbytes, \
accelerate, datasets, sklearn.model_selection; from transformers import Trainer, BertForSequenceClassification"
if [ "$MODE" = headline ]; then
  STUDIO_CACHE_DIR=$R/cache timeout ${LIMIT:-560} python3 benchmarks/train_speed.py --out $R/headline \
    --train 16000 --epochs 3 --only seed,fast,fast-compile,fast-after-compile > $R/headline.log 2>&1
  cat $R/cache/inductor/compiled.json > $R/compiled.json 2>/dev/null; pack
  cut -d, -f1-3,8-10,13-16,20-21 $R/headline/train_speed.csv; tail -n 3 $R/headline.log; exit 0
fi
if [ "$MODE" = autotune ]; then
  TORCHINDUCTOR_CACHE_DIR=$R/inductor-plain timeout 90 python3 benchmarks/train_speed.py --out $R/plain \
    --train 16000 --epochs 1 --only fast-compile > $R/plain.log 2>&1; pack
  TORCHINDUCTOR_MAX_AUTOTUNE_GEMM=1 TORCHINDUCTOR_CACHE_DIR=$R/inductor-autotune timeout ${LIMIT:-380} \
    python3 benchmarks/train_speed.py --out $R/autotune --train 16000 --epochs 1 \
    --only fast-compile,fast-compile-again > $R/autotune.log 2>&1
  rm -rf $R/inductor-*; pack
  for f in $R/*/train_speed.csv; do echo "$f"; cut -d, -f1-3,8-10,13-16,20-21 "$f"; done; tail -n 2 $R/*.log; exit 0
fi
timeout 80 python3 benchmarks/cuda_init_overlap.py --out $R/overlap --repeats 3 > $R/overlap.log 2>&1; pack
TORCHINDUCTOR_CACHE_DIR=$R/inductor-whole timeout 210 python3 benchmarks/train_speed.py --out $R/whole \
  --train 16000 --epochs 3 --only fast,fast-compile,fast-compile-again > $R/whole.log 2>&1; pack
ACCELERATE_DYNAMO_USE_REGIONAL_COMPILATION=1 TORCHINDUCTOR_CACHE_DIR=$R/inductor-regional timeout 150 \
  python3 benchmarks/train_speed.py --out $R/regional --train 16000 --epochs 3 \
  --only fast-compile,fast-compile-again > $R/regional.log 2>&1; pack
ACCELERATE_DYNAMO_USE_REGIONAL_COMPILATION=1 TORCHINDUCTOR_MAX_AUTOTUNE_GEMM=1 \
  TORCHINDUCTOR_CACHE_DIR=$R/inductor-autotune timeout ${AUTOTUNE_LIMIT:-140} python3 benchmarks/train_speed.py \
  --out $R/autotune --train 16000 --epochs 1 --only fast-compile > $R/autotune.log 2>&1
rm -rf $R/inductor-*; pack
tail -n 4 $R/overlap.log; for f in $R/*/train_speed.csv; do echo "$f"; cut -d, -f1-22 "$f"; done; tail -n 3 $R/*.log
