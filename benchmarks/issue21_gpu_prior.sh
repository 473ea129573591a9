set -u
source benchmarks/gpu_env.sh
export STUDIO_RUNS_DIR=/tmp/runs-prior PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT" /tmp/logs
python3 - <<'PY'
import yaml
data = yaml.safe_load(open("presets/grids/goemotions_multilabel.yaml"))
data["axes"]["setup"] = {k: v for k, v in data["axes"]["setup"].items() if k.startswith("MiniLM")}
yaml.safe_dump(data, open("/tmp/goemotions_multilabel_minilm.yaml", "w"), sort_keys=False, width=120)
PY
timeout 270 python3 -m studio sweep /tmp/goemotions_multilabel_minilm.yaml --gpus 0,1 > /tmp/logs/minilm_prior.log 2>&1
tail -5 /tmp/logs/minilm_prior.log
tar czf "$OUT/prior.tgz" --exclude=checkpoints --exclude=model --exclude=tokenizer --exclude='*.safetensors' --exclude=.cache --exclude=predictions.parquet -C /tmp runs-prior logs
