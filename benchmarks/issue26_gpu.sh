#!/usr/bin/env bash
# Issue 26's held-out memory check in one device call (one H200), from the repo root, with the wheels carried
# (.gpu-ui-b, .gpu-ui-c, .gpu-li: see benchmarks/issue25_gpu.sh). Random-weight models from catalogue dims only:
# no weights travel. Results come back as one archive ($OUT holds at most 8 files).
set -u
if [ ! -f /tmp/gpu-site/.installed ]; then
  pip install -q --no-index --no-deps --target /tmp/gpu-site .gpu-ui-b/*.whl .gpu-ui-c/tzdata*.whl .gpu-li/*.whl \
    && touch /tmp/gpu-site/.installed
fi
source benchmarks/gpu_env.sh
R=$OUT/r; mkdir -p $R/mem
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/gpu.txt
timeout ${MEM_LIMIT:-500} python benchmarks/memory_heldout.py --out $R/mem --jobs ${MEM_JOBS:-4} --work /tmp/heldout \
  > $R/mem.log 2>&1
python benchmarks/memory_heldout.py --report $R/mem/rows.jsonl > $R/mem/report.md 2>> $R/mem.log
tar czf $OUT/issue26.tgz -C $OUT r && rm -rf $R
tail -n 20 $OUT/../mem.log 2>/dev/null; ls -la $OUT
