#!/usr/bin/env bash
# One of issue 26's held-out memory sets in one device call (nvidia-h200; carry [".gpu-wheels", ".gpu-sa"]): the
# cases of the named groups of benchmarks/memory_heldout.py, each in its own process, 4 side by side, with random
# weights from catalogue dims (no weights travel); then, when given, allocator snapshots of the listed cases.
#   bash benchmarks/issue26_heldout_gpu.sh GROUPS [SNAPSHOT_CASES]     ($OUT/GROUP.tgz: rows.jsonl, environment.json,
#                                                                        gpu.txt, log.txt; peaks.md with snapshots)
#   e.g. heldout2,recheck | heldout3 70,85 | heldout4 124,132    (about 4 minutes each with the machine's start)
# The report is made here afterwards (`python benchmarks/memory_heldout.py --report DIR/rows.jsonl`): the GPU host
# lacks the MiniLM package the catalogue resolves.
set -u
GROUPS_=$1 SNAP=${2:-}
NAME=${GROUPS_%%,*}
source benchmarks/gpu_env.sh
ONLY=$(python3 -c 'import sys; sys.path.insert(0, "benchmarks"); import memory_heldout as m
groups = sys.argv[1].split(",")
print(",".join(str(i) for i, c in enumerate(m.grid()) if c["group"] in groups))' "$GROUPS_")
R=/tmp/$NAME; mkdir -p $R
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/gpu.txt
timeout ${MEM_LIMIT:-360} python3 benchmarks/memory_heldout.py --out $R --jobs ${MEM_JOBS:-4} --work /tmp/work-$NAME \
  --only "$ONLY" --no-probe > $R/log.txt 2>&1
if [ -n "$SNAP" ]; then
  timeout ${SNAP_LIMIT:-100} python3 benchmarks/memory_heldout.py --out /tmp/snap-rows-$NAME --work /tmp/work-$NAME \
    --only "$SNAP" --no-probe --jobs 2 --snapshot /tmp/snap-$NAME > $R/snap_log.txt 2>&1
  cat /tmp/snap-$NAME/case*.md > $R/peaks.md 2>/dev/null; cp /tmp/snap-rows-$NAME/rows.jsonl $R/snap_rows.jsonl 2>/dev/null
fi
tar czf $OUT/$NAME.tgz -C /tmp $NAME
wc -l < $R/rows.jsonl; grep -c '"completed"' $R/rows.jsonl; head -c 1500 $R/peaks.md 2>/dev/null
