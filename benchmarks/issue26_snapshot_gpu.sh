#!/usr/bin/env bash
# One device call (nvidia-h200; carry [".gpu-wheels", ".gpu-sa"]): what the peak holds for four held-out cases
# the memory estimate missed (benchmarks/memory_heldout.py --snapshot: 16 DistilBERT 8-bit QLoRA 128 x 256,
# 59 SmolLM2 LoRA 6 x 2048, 46 BERT LoRA 6 x 128, 25 DeBERTa LoRA 64 x 64), and beside them a cProfile of one
# cold setup (benchmarks/setup_time.py --profile) for issue 25's unattributed "other" seconds.
#   bash benchmarks/issue26_snapshot_gpu.sh      ($OUT: peaks.md, rows.jsonl, setup.tgz, log.txt, case*.pickle.gz)
set -u
source benchmarks/gpu_env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > /tmp/gpu.txt
python3 benchmarks/memory_heldout.py --out /tmp/mh-out --work /tmp/mh-work --only 16,59,46,25 --no-probe --jobs 4 \
  --snapshot /tmp/snap > /tmp/heldout.log 2>&1 &
mh=$!
python3 benchmarks/setup_time.py --out /tmp/st --repeats 1 --profile > /tmp/setup.log 2>&1
wait $mh
cat /tmp/gpu.txt /tmp/snap/case*.md > "$OUT/peaks.md" 2>/dev/null
cp /tmp/mh-out/rows.jsonl "$OUT/rows.jsonl" 2>/dev/null
tar czf "$OUT/setup.tgz" -C /tmp st setup.log 2>/dev/null
tail -c 20000 /tmp/heldout.log > "$OUT/log.txt"
for f in /tmp/snap/case*.pickle.gz; do
  [ "$(stat -c %s "$f")" -lt 16000000 ] && cp "$f" "$OUT/"
done
ls -la "$OUT"; cat "$OUT/peaks.md" | head -80
