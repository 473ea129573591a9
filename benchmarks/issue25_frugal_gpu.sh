#!/usr/bin/env bash
# Issue 25 part 3 (frugal: <= the stock seed recipe's peak memory at >= 3x its speed end to end) on one H200,
# every train_speed row its own process (see CONFIGS in train_speed.py):
#   bash benchmarks/issue25_frugal_gpu.sh explore    carry [".gpu-wheels", ".gpu-sa"]: frugal's candidates (the
#        4-bit frugal as it was, either checkpointing path, LoRA on a bf16 base at 16, 32 and 64 rows) against the
#        seed recipe, 8,000 x 1 (~6.5 min)                                  -> $OUT/frugal.tgz
#   bash benchmarks/issue25_frugal_gpu.sh headline   carry [".gpu-wheels", ".gpu-sa", ".gpu-mini-a"]: the seed
#        recipe and frugal on the seed study's workload, 16,000 x 3 (~9.5 min) -> $OUT/headline.tgz
#   bash benchmarks/issue25_frugal_gpu.sh quality    carry [".gpu-mini-b"], right after `headline` on the same warm
#        machine (MiniLM travels in two parts): the speed_quality grid (MiniLM, IMDb sample and GoEmotions 4 x
#        1,600, 2 seeds; as set, fast, fast compiled, frugal)              -> $OUT/quality.tgz (the registry)
set -u
MODE=${1:?explore, headline or quality}
R=/tmp/h200_frugal_$MODE; mkdir -p $R
if [ "$MODE" = explore ]; then
  GPU_ENV_NO_COMPILE=1 source benchmarks/gpu_env.sh
  timeout ${LIMIT:-540} python3 benchmarks/train_speed.py --out $R/explore --train 8000 --epochs 1 \
    --only seed,frugal,frugal-reentrant,lora-ckpt-b16x2,lora-ckpt-b32,lora-ckpt-b32-reentrant,lora-ckpt-b64 \
    > $R/explore.log 2>&1
elif [ "$MODE" = headline ]; then
  # No compileall (it would not leave the rows time): one untimed process compiles what a run imports into the
  # bytecode cache, as a user's install has it.
  GPU_ENV_NO_COMPILE=1 source benchmarks/gpu_env.sh
  python3 -c "import studio.training, studio.hf_trainer, studio.speed_plan, studio.memory, peft, bitsandbytes, \
accelerate, datasets, sklearn.model_selection; from transformers import Trainer, BertForSequenceClassification"
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv > $R/gpu.txt
  timeout ${LIMIT:-545} python3 benchmarks/train_speed.py --out $R/headline --train 16000 --epochs 3 \
    --only seed,frugal > $R/headline.log 2>&1
else
  GPU_ENV_NO_COMPILE=1 source benchmarks/gpu_env.sh
  export STUDIO_RUNS_DIR=$R/runs
  timeout ${LIMIT:-540} python3 -m studio sweep speed_quality --workers 4 > $R/sweep.log 2>&1
  find $R/runs -name '*.safetensors' -o -name '*.bin' -o -name '*.pt' | xargs -r rm -f
fi
tar czf $OUT/$MODE.tgz -C /tmp h200_frugal_$MODE
cat $R/*/train_speed.md 2>/dev/null; tail -n 5 $R/*.log
