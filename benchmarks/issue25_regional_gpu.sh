#!/usr/bin/env bash
# Issue 25: compiling fast per layer (accelerate's regional compilation) and CUDA's initialisation in a thread,
# one device call (nvidia-h200; carry [".gpu-wheels", ".gpu-sa"]), every train_speed row its own process:
#   1. cuda_init_overlap.py: does CUDA's initialisation release the GIL (so a thread could hide it in setup)?
#   2. 16,000 x 3 (the seed study's workload): fast; fast + torch.compile of the whole model, inductor's cache
#      cold then warm; the same compiled per layer (ACCELERATE_DYNAMO_USE_REGIONAL_COMPILATION=1), cold then warm
#   3. 16,000 x 1: per-layer compile with autotuned matmuls (TORCHINDUCTOR_MAX_AUTOTUNE_GEMM=1; it failed before
#      hf_trainer.agree_tf32), for MFU
#   bash benchmarks/issue25_regional_gpu.sh     ($OUT/regional.tgz, refreshed after every step)
set -u
GPU_ENV_NO_COMPILE=1 source benchmarks/gpu_env.sh
R=/tmp/h200_regional; mkdir -p $R
pack() { tar czf $OUT/regional.tgz --exclude='inductor-*' -C /tmp h200_regional; }
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $R/gpu.txt
python3 -c "import studio.training, studio.hf_trainer, studio.speed_plan, studio.memory, peft, bitsandbytes, \
accelerate, datasets, sklearn.model_selection; from transformers import Trainer, BertForSequenceClassification"
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
