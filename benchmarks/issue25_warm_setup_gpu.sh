#!/usr/bin/env bash
# Issue 25's setup on the GPU host, cold against a warm process (nvidia-h200; carry [".gpu-wheels", ".gpu-sa"]):
# benchmarks/setup_time.py on the 16,000-review workload, 2 repeats of each, every repeat a fresh process; the
# `warm-process` rows first set up one untimed run of the same config in that process (the app's second run),
# so they time setup without the libraries' imports (benchmarks/results/setup_time/import_floor/).
#   bash benchmarks/issue25_warm_setup_gpu.sh      ($OUT/warm_setup.tgz: setup_time.md/.csv, environment.json)
# About 3 minutes after the machine's start; runs after issue26_heldout_gpu.sh in the same call too.
set -u
source benchmarks/gpu_env.sh
R=/tmp/h200_warm_process; mkdir -p $R
timeout ${SETUP_LIMIT:-360} python3 benchmarks/setup_time.py --out $R --repeats 2 --warm-process > $R/log.txt 2>&1
tar czf $OUT/warm_setup.tgz -C /tmp h200_warm_process
cat $R/setup_time.md; tail -n 3 $R/log.txt
