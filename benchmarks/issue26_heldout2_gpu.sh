#!/usr/bin/env bash
# Issue 26's second held-out memory set in one device call (nvidia-h200; carry [".gpu-wheels", ".gpu-sa"]): the
# `heldout2` group of benchmarks/memory_heldout.py (none of its configurations was in the calibration, the first
# held-out set or the length rows, and nothing has been fitted to it) and the `recheck` row (DistilBERT 8-bit
# QLoRA 128 x 256 with checkpointing, measured before the reentrant-checkpointing fix), each case in its own
# process, 4 side by side, and their probes' rows none. Random weights from catalogue dims: no weights travel.
#   bash benchmarks/issue26_heldout2_gpu.sh     ($OUT/heldout2.tgz: rows.jsonl, environment.json, report.md, log)
# About 6-8 minutes of device time with the machine's start.
set -u
source benchmarks/gpu_env.sh
ONLY=$(python3 -c 'import sys; sys.path.insert(0, "benchmarks"); import memory_heldout as m
print(",".join(str(i) for i, c in enumerate(m.grid()) if c["group"] in ("heldout2", "recheck")))')
R=/tmp/h2; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/gpu.txt
timeout ${MEM_LIMIT:-480} python3 benchmarks/memory_heldout.py --out $R --jobs ${MEM_JOBS:-4} --work /tmp/heldout2 \
  --only "$ONLY" --no-probe > $R/log.txt 2>&1
python3 benchmarks/memory_heldout.py --report $R/rows.jsonl > $R/report.md 2>> $R/log.txt
tar czf $OUT/heldout2.tgz -C /tmp h2
head -12 $R/report.md; tail -n 5 $R/log.txt; ls -la $OUT
