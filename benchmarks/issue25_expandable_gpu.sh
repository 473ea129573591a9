#!/usr/bin/env bash
# Fast with and without expandable allocator segments at its seed-workload batch (128), one device call
# (nvidia-h200; carry [".gpu-wheels", ".gpu-sa"]), each row its own process, 16,000 x 1 on IMDb's real lengths:
# does the allocator strand memory across batches of varying length, and does the remedy cost speed? Run it in
# both orders (two calls on one warm machine), since a call's first row pays what the warm-up import left:
#   bash benchmarks/issue25_expandable_gpu.sh fast-expandable,fast   ($OUT/expandable.tgz)
#   bash benchmarks/issue25_expandable_gpu.sh fast,fast-expandable
set -u
ROWS=${1:-fast-expandable,fast}
GPU_ENV_NO_COMPILE=1 source benchmarks/gpu_env.sh
R=/tmp/h200_expandable; rm -rf $R; mkdir -p $R
python3 -c "import studio.training, studio.hf_trainer, peft, bitsandbytes, accelerate, datasets, sklearn.model_selection"
timeout ${LIMIT:-400} python3 benchmarks/train_speed.py --out $R/rows --train 16000 --epochs 1 \
  --set train.batch_size=128 --set train.grad_accum=1 --only $ROWS > $R/rows.log 2>&1
tar czf $OUT/expandable.tgz -C /tmp h200_expandable
cat $R/rows/train_speed.md; tail -n 3 $R/rows.log
