#!/usr/bin/env bash
# Every GPU figure issues 15 and 16 ask for, in one run of about 9 minutes (each part under its own timeout,
# each printing its rows as they come, so that a part cut short keeps what it finished); meant for the
# `device` tool's machine, whose image has jax (0.11), diffrax, numpyro, optax, equinox and xarray but not
# arviz, petab or blackjax. Beforehand, here, in the repo's root (pure-Python pins of pyproject.toml, so that
# the solver and samplers are the tested ones; rpds-py is built for CPython 3.12):
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#       diffrax==0.7.2 equinox==0.13.8 lineax==0.1.1 optimistix==0.1.0 numpyro==0.22.0 blackjax==1.7.1 \
#       arviz==0.23.4 xarray-einstats==0.9.1 h5netcdf==1.8.2 jsonschema==4.26.0 jsonschema-specifications==2025.9.1 \
#       referencing==0.37.0 rpds-py==2026.9.1 platformdirs==4.14.9
# then run, carrying .whl:  bash benchmarks/gpu_check.sh   (writes $OUT/gpu_check.log when OUT is set)
set -uo pipefail
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 1
fi
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
log=${OUT:-.}/gpu_check.log
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import jax, numpyro, diffrax, blackjax; print('jax', jax.__version__, jax.devices(), 'numpyro', numpyro.__version__, 'diffrax', diffrax.__version__, 'blackjax', blackjax.__version__)"
  # issue 15/16: value + gradient of the default analysis (all 8 mechanisms) for many parameter sets at once
  SECONDS=0; timeout 200 python3 benchmarks/gpu.py --sizes 1 64 1024 --repeats 2; echo "gpu.py: ${SECONDS} s"
  # issue 16: many-chain ChEES against vectorized NUTS on the demo's posterior (MAP included)
  SECONDS=0; timeout 320 python3 benchmarks/sampling.py config/config.yaml --set map.steps=30 --compare \
    "chees256:method=chees,chains=256,warmup=100,samples=100,progress=false" \
    "nuts16:method=nuts,chains=16,chain_method=vectorized,warmup=100,samples=100,progress=false"; echo "sampling.py: ${SECONDS} s (rc $?)"
  nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv
} 2>&1 | grep -v -e "Algebraic simplifier" | tee "$log"
