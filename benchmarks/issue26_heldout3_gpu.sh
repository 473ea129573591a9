#!/usr/bin/env bash
# Issue 26's third held-out memory set in one device call (nvidia-h200; carry [".gpu-wheels", ".gpu-sa"]): the
# `heldout3` group of benchmarks/memory_heldout.py (measured after the second set changed the estimate; none of its
# configurations was measured before), each case in its own process, 4 side by side; then allocator snapshots of
# the second set's two largest under-estimates left (70 MiniLM IA3 32 x 256, 85 DeBERTa-v3 full 2 x 512).
#   bash benchmarks/issue26_heldout3_gpu.sh    ($OUT/heldout3.tgz: rows.jsonl, environment.json, log; peaks.md)
# The report is made here afterwards (`--report`): the GPU host lacks the MiniLM package the catalogue resolves.
set -u
source benchmarks/gpu_env.sh
ONLY=$(python3 -c 'import sys; sys.path.insert(0, "benchmarks"); import memory_heldout as m
print(",".join(str(i) for i, c in enumerate(m.grid()) if c["group"] == "heldout3"))')
R=/tmp/h3; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/gpu.txt
timeout ${MEM_LIMIT:-400} python3 benchmarks/memory_heldout.py --out $R --jobs ${MEM_JOBS:-4} --work /tmp/heldout3 \
  --only "$ONLY" --no-probe > $R/log.txt 2>&1
timeout ${SNAP_LIMIT:-120} python3 benchmarks/memory_heldout.py --out /tmp/h3snap --work /tmp/heldout3 --only 70,85 \
  --no-probe --jobs 2 --snapshot /tmp/snap3 > $R/snap_log.txt 2>&1
cat /tmp/snap3/case*.md > $R/peaks.md 2>/dev/null; cp /tmp/h3snap/rows.jsonl $R/snap_rows.jsonl 2>/dev/null
tar czf $OUT/heldout3.tgz -C /tmp h3
wc -l $R/rows.jsonl; grep -c '"completed"' $R/rows.jsonl; head -c 3000 $R/peaks.md
