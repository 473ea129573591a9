#!/usr/bin/env bash
# benchmarks/label_recovery.py on the device machine (one H200), from the repo root, after the wheels
# (.gpu-ui-b, .gpu-ui-c, .gpu-li: cleanlab) and MiniLM (.gpu-mini-a/part, then .gpu-mini-b) were carried as in
# benchmarks/quick_demo_gpu_host.sh, with build/label_recovery (the `prepare` step's files, made here) carried too.
# The four cases' finders run side by side, then the trainings in four shards side by side (one GPU: these are
# accuracy runs, not timings).
set -e
source benchmarks/gpu_env.sh
# LR_ARGS: more arguments for every step, e.g. LR_ARGS="--set train.speed=as_set" (the recipe exactly as written).
W=build/label_recovery; B="python benchmarks/label_recovery.py"; A="${LR_ARGS:-}"
mkdir -p $OUT/lr
if [ "${1:-}" != "train-only" ]; then
  for c in imdb-5 imdb-20 goemotions-5 goemotions-20; do $B find --work $W --case $c $A > $OUT/lr/find-$c.log 2>&1 & done
  wait
fi
if [ "${1:-}" == "train-only" ]; then  # more arms or seeds after a first call: the new copies, then the rest
  for c in imdb-5 imdb-20 goemotions-5 goemotions-20; do $B copies --work $W --case $c $A; done
fi
for i in 0 1 2 3 4 5; do $B train --work $W --shard $i/6 $A > $OUT/lr/train-$i.log 2>&1 & done
wait
cat $W/rows-*.jsonl > $OUT/lr/rows.jsonl
