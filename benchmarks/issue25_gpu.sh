#!/usr/bin/env bash
# Issue 25's measurements in one device call (one H200), from the repo root, after the wheels (.gpu-ui-b, .gpu-ui-c)
# and MiniLM (.gpu-mini-a/part, then .gpu-mini-b) were carried as in benchmarks/quick_demo_gpu_host.sh, with
# build/label_recovery (label_recovery.py's `prepare` files) carried too:
#   1. the fast profile's accuracy on the quick-demo recipe (its batch no longer grows below 250 steps), 8 seeds
#      on IMDb (5,000 held-out reviews) and GoEmotions (official test), against as_set measured the same way
#      (benchmarks/results/label_recovery: 80.3% +- 0.2 / 71.7% +- 1.1; fast before the change 77.3 / 64.0);
#   2. benchmarks/train_speed.py, every row its own process: the stock seed recipe, fast, frugal and fast's levers.
set -e
source benchmarks/gpu_env.sh
mkdir -p $OUT/acc $OUT/ts
W=build/label_recovery
for i in 0 1 2 3; do
  python benchmarks/label_recovery.py train --work $W --shard $i/4 --cases imdb-5,goemotions-5 --arms clean \
    > $OUT/acc/train-$i.log 2>&1 &
done
wait
cat $W/rows-train-*.jsonl > $OUT/acc/rows.jsonl
python benchmarks/label_recovery.py report --work $W --out $OUT/acc > /dev/null 2>&1 || true
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $OUT/ts-gpu.txt
timeout ${TS_LIMIT:-480} python benchmarks/train_speed.py --out $OUT/ts --train ${TS_TRAIN:-16000} --epochs ${TS_EPOCHS:-1} \
  --only ${TS_ONLY:-seed,fast,fast-grouped,frugal,fast-grouped-compile,fast-grouped-compile-again} > $OUT/ts.log 2>&1 || true
tail -n 30 $OUT/ts.log
