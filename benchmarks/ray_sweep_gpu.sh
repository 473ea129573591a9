# The Ray grid benchmark on the 2-GPU machine (benchmarks/ray_sweep.py --gpu), which reaches no package registry:
# Ray goes over as carried files.
#
# 1. Here (PyPI reachable), once:   bash benchmarks/ray_sweep_gpu.sh prepare
#    downloads Ray and its dependencies for the GPU machine's Python 3.12 and splits Ray's wheel (~79 MB) into
#    .gpu-ray-a/part, .gpu-ray-b/part, .gpu-ray-c/part (~27 MB each; the dependencies go in .gpu-ray-a/deps),
#    so each fits one call's 64 MiB carry beside the tree.
# 2. On the GPU machine, four calls on one warm machine (each copies what it carried to /tmp/carried; the tree
#    is ~26 MB of each call's 64 MiB):
#      carry [".gpu-ray-a", ".gpu-sa"]:      bash benchmarks/ray_sweep_gpu.sh stash
#      carry [".gpu-ray-b", ".gpu-wheels"]:  bash benchmarks/ray_sweep_gpu.sh stash
#      carry [".gpu-ray-c", ".gpu-mini-b"]:  bash benchmarks/ray_sweep_gpu.sh stash
#      carry [".gpu-mini-a"]:                bash benchmarks/ray_sweep_gpu.sh run
#    `run` joins the parts, installs Ray (pip, from the carried files only), sources gpu_env.sh (the other wheels,
#    MiniLM joined from its two parts) and runs
#    python benchmarks/ray_sweep.py --gpu --out $OUT/ray_sweep/h200x2 (8 MiniLM runs: sweep --gpus 0,1, then Ray
#    with two workers pinned to a GPU each, then Ray with one worker killed). About 5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
RAY_VERSION=2.60.0
case "${1:-}" in
  prepare)
    rm -rf /tmp/ray-gpu-dl .gpu-ray-a .gpu-ray-b .gpu-ray-c
    python3 -m pip download -q "ray==$RAY_VERSION" -d /tmp/ray-gpu-dl --only-binary=:all: \
      --python-version 3.12 --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64
    mkdir -p .gpu-ray-a/deps .gpu-ray-b .gpu-ray-c
    wheel=$(ls /tmp/ray-gpu-dl/ray-"$RAY_VERSION"-*.whl)
    find /tmp/ray-gpu-dl -name '*.whl' ! -name "$(basename "$wheel")" -exec cp {} .gpu-ray-a/deps/ \;
    basename "$wheel" > .gpu-ray-a/name
    split -n 3 -d "$wheel" /tmp/ray-gpu-dl/part-
    mv /tmp/ray-gpu-dl/part-00 .gpu-ray-a/part
    mv /tmp/ray-gpu-dl/part-01 .gpu-ray-b/part
    mv /tmp/ray-gpu-dl/part-02 .gpu-ray-c/part
    cat .gpu-ray-a/part .gpu-ray-b/part .gpu-ray-c/part | cmp - "$wheel"
    du -sh .gpu-ray-a .gpu-ray-b .gpu-ray-c
    ;;
  stash)
    mkdir -p /tmp/carried
    for d in .gpu-ray-a .gpu-ray-b .gpu-ray-c .gpu-weights .gpu-wheels .gpu-sa .gpu-mini-a .gpu-mini-b; do [ -d "$d" ] && cp -r "$d" /tmp/carried/; done
    ls /tmp/carried
    ;;
  run)
    bash "$0" stash
    if ! python3 -c "import ray" 2>/dev/null; then
      C=/tmp/carried
      cat $C/.gpu-ray-a/part $C/.gpu-ray-b/part $C/.gpu-ray-c/part > "/tmp/$(cat $C/.gpu-ray-a/name)"
      python3 -m pip install -q --no-index --find-links $C/.gpu-ray-a/deps "/tmp/$(cat $C/.gpu-ray-a/name)"
    fi
    set +u; source benchmarks/gpu_env.sh; set -u
    python3 benchmarks/ray_sweep.py --gpu --out "${OUT:-/tmp/out}/ray_sweep/h200x2"
    ;;
  *) echo "usage: bash benchmarks/ray_sweep_gpu.sh prepare|stash|run" >&2; exit 2 ;;
esac
