#!/usr/bin/env bash
# Issue 25's 40% MFU: fast compiled at batch 128 (what it trains on the seed workload) against inductor's options,
# one device call (nvidia-h200; carry [".gpu-wheels", ".gpu-sa"]), every row its own process, 16,000 x 1 (steady
# rates leave the first logging interval, with the compile, out): the default compile, CUDA graphs
# (TORCHINDUCTOR_CUDAGRAPHS=1), batch 256, and autotuned matmuls (TORCHINDUCTOR_MAX_AUTOTUNE_GEMM=1).
#   bash benchmarks/issue25_mfu_gpu.sh      ($OUT/mfu.tgz: one train_speed folder per row)
set -u
GPU_ENV_NO_COMPILE=1 source benchmarks/gpu_env.sh
R=/tmp/h200_mfu; mkdir -p $R
B128="--set train.batch_size=128 --set train.grad_accum=1"
row() {  # NAME LIMIT ENV... -- ARGS...
  local name=$1 limit=$2; shift 2
  env "$@" timeout $limit python3 benchmarks/train_speed.py --out $R/$name --train 16000 --epochs 1 \
    --only fast-compile ${ARGS:-$B128} > $R/$name.log 2>&1
}
row compile 120 X=1
row cudagraphs 120 TORCHINDUCTOR_CUDAGRAPHS=1
ARGS="--set train.batch_size=256 --set train.grad_accum=1" row batch256 120 X=1
row autotune 170 TORCHINDUCTOR_MAX_AUTOTUNE_GEMM=1
tar czf $OUT/mfu.tgz -C /tmp h200_mfu
for f in $R/*/train_speed.csv; do echo "$f"; cut -d, -f1-20 "$f" | tail -n +1; done; tail -n 3 $R/*.log
