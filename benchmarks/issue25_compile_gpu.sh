#!/usr/bin/env bash
# Issue 25's step-time levers in one device call (nvidia-h200; carry [".gpu-wheels", ".gpu-sa"]): a torch.profiler
# summary of fast's steps (where a step's time goes), then fast against fast + torch.compile over 64-token buckets
# (hf_trainer.pad_multiple), inductor's cache cold and then warm in a new process, every row its own process.
#   bash benchmarks/issue25_compile_gpu.sh      ($OUT/compile.tgz: profile/, levers/ with train_speed.md/.csv)
# About 7 minutes after the machine's start (16,000 reviews x 1 epoch).
set -u
source benchmarks/gpu_env.sh
R=/tmp/h200_compile; mkdir -p $R
timeout ${PROFILE_LIMIT:-110} python3 benchmarks/train_speed.py --out $R/profile --train 16000 --epochs 1 \
  --only fast --profile 5 > $R/profile.log 2>&1
timeout ${LEVERS_LIMIT:-330} python3 benchmarks/train_speed.py --out $R/levers --train 16000 --epochs 1 \
  --only fast,fast-compile,fast-compile-again > $R/levers.log 2>&1
tar czf $OUT/compile.tgz -C /tmp h200_compile
cat $R/levers/train_speed.md; tail -n 3 $R/profile.log $R/levers.log
