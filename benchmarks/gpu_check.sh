#!/usr/bin/env bash
# Every GPU figure issues 15 and 16 ask for, in one run (about 8-9 minutes on an H200 if the compiles take
# ~1-2 min each); meant for the `device` tool's machine, whose image has jax, diffrax, numpyro, optax,
# equinox and xarray but not arviz, snakemake, petab or blackjax. Beforehand, here, in the repo's root:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl blackjax==1.7.1 arviz==0.23.4 h5netcdf==1.8.2 h5py jsonschema==4.26.0 pyyaml==6.0.3 \
#       pandas==3.1.1 scipy==1.17.1 matplotlib==3.11.2 ... (whatever `pip show` there lacks)
# then run, carrying .whl:  bash benchmarks/gpu_check.sh   (writes $OUT/gpu_check.log when OUT is set)
set -uo pipefail
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
fi
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
log=${OUT:-.}/gpu_check.log
{
  nvidia-smi --query-gpu=name,memory.total --format=csv
  python3 -c "import jax; print(jax.__version__, jax.devices())"
  # issue 15: value + gradient for many parameter sets at once
  timeout 240 python3 benchmarks/gpu.py --sizes 1 64 256 1024 --repeats 2
  # issue 16: the samplers side by side on the demo's posterior (MAP included)
  timeout 300 python3 benchmarks/sampling.py configs/example.yaml --set map.steps=30 --compare \
    "nuts16:method=nuts,chains=16,chain_method=vectorized,warmup=100,samples=100" \
    "chees64:method=chees,chains=64,warmup=100,samples=100" "chees256:method=chees,chains=256,warmup=100,samples=100"
} 2>&1 | grep -v "Algebraic simplifier" | tee "$log"
