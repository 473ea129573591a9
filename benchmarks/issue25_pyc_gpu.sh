# Issue 25: a run's setup on the GPU image as it is (PYTHONDONTWRITEBYTECODE=1, torch without .pyc) against the same
# with a bytecode cache (PYTHONPYCACHEPREFIX, filled by one untimed run), one device call on one H200, after carrying
# .gpu-wheels and .gpu-sa. Result: benchmarks/results/setup_time/h200_bytecode/.
source benchmarks/gpu_env.sh; R=$OUT/r; mkdir -p $R
export PYTHONDONTWRITEBYTECODE=1; unset PYTHONPYCACHEPREFIX  # the image as it is (gpu_env.sh now caches bytecode)
{ env | grep -i "^PYTHON"; python -c "import sys,sysconfig; print('dont_write', sys.dont_write_bytecode, 'prefix', sys.pycache_prefix, sysconfig.get_paths()['purelib'])"
  for m in transformers torch peft accelerate sklearn; do d=$(python -c "import importlib.util as u; print(u.find_spec('$m').submodule_search_locations[0])" 2>/dev/null); echo "$m $d py=$(find $d -name '*.py' | wc -l) pyc=$(find $d -name '*.pyc' | wc -l)"; done
  d=/tmp/gpu-site; echo "gpu-site py=$(find $d -name '*.py' | wc -l) pyc=$(find $d -name '*.pyc' | wc -l)"; } > $R/diag.txt 2>&1
cat $R/diag.txt
timeout 130 python benchmarks/setup_time.py --out $R/before --repeats 2 > $R/before.log 2>&1; tail -16 $R/before.log
export PYTHONDONTWRITEBYTECODE= ; unset PYTHONDONTWRITEBYTECODE; export PYTHONPYCACHEPREFIX=/tmp/pyc
timeout 130 python benchmarks/setup_time.py --out $R/warmup --repeats 1 > $R/warmup.log 2>&1; tail -3 $R/warmup.log
echo "pyc now: $(find /tmp/pyc -name '*.pyc' | wc -l)" | tee -a $R/diag.txt
timeout 130 python benchmarks/setup_time.py --out $R/after --repeats 2 --profile > $R/after.log 2>&1; tail -16 $R/after.log
tar czf $OUT/r.tgz -C $OUT r; rm -rf $R
