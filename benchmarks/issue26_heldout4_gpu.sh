#!/usr/bin/env bash
# Issue 26's fourth held-out memory set in one device call (nvidia-h200; carry [".gpu-wheels", ".gpu-sa"]): the
# `heldout4` group of benchmarks/memory_heldout.py (measured once, after the third set changed the estimate; none of
# its configurations was measured before), each case in its own process, 4 side by side; then allocator snapshots
# of the third set's largest misses left (124 DistilBERT full 64 x 256 checkpointing, 132 DeBERTa-v3 full 4 x 256).
#   bash benchmarks/issue26_heldout4_gpu.sh    ($OUT/heldout4.tgz: rows.jsonl, environment.json, log; peaks.md)
# The report is made here afterwards (`--report`): the GPU host lacks the MiniLM package the catalogue resolves.
set -u
source benchmarks/gpu_env.sh
ONLY=$(python3 -c 'import sys; sys.path.insert(0, "benchmarks"); import memory_heldout as m
print(",".join(str(i) for i, c in enumerate(m.grid()) if c["group"] == "heldout4"))')
R=/tmp/h4; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/gpu.txt
timeout ${MEM_LIMIT:-360} python3 benchmarks/memory_heldout.py --out $R --jobs ${MEM_JOBS:-4} --work /tmp/heldout4 \
  --only "$ONLY" --no-probe > $R/log.txt 2>&1
timeout ${SNAP_LIMIT:-100} python3 benchmarks/memory_heldout.py --out /tmp/h4snap --work /tmp/heldout4 --only 124,132 \
  --no-probe --jobs 2 --snapshot /tmp/snap4 > $R/snap_log.txt 2>&1
cat /tmp/snap4/case*.md > $R/peaks.md 2>/dev/null; cp /tmp/h4snap/rows.jsonl $R/snap_rows.jsonl 2>/dev/null
tar czf $OUT/heldout4.tgz -C /tmp h4
wc -l $R/rows.jsonl; grep -c '"completed"' $R/rows.jsonl; head -c 1500 $R/peaks.md
