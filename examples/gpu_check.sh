#!/usr/bin/env bash
# The GPU check of issue 14, in one run: build, the cupy test suites, the kernel benchmark, the
# original architecture on the 15.9 s utterance. Everything it prints is also written under OUT_DIR.
#
#   examples/gpu_check.sh [OUT_DIR]        OUT_DIR defaults to $OUT, else ./gpu-check
#
# Settings: AFMASK_BACKEND (default cupy), PYTHON (default python3), AFMASK_SHARED (the shared data;
# default ./shared or ../shared), GPU_CHECK_TINY=1 (a tiny T and short benchmarks: a check of the
# script on a CPU, e.g. `AFMASK_BACKEND=numpy GPU_CHECK_TINY=1 examples/gpu_check.sh /tmp/gc`).
# Wheels in ./.whl (soundfile, cffi, pycparser for a machine without them) are installed first
# into /tmp/afmask-site, without a registry; fetch them where pip works, for the GPU machine's Python:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl soundfile cffi pycparser
# Exit status: 0 if every step passed, else 1.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT_DIR=${1:-${OUT:-$ROOT/gpu-check}}
mkdir -p "$OUT_DIR"
PY=${PYTHON:-python3}
BACKEND=${AFMASK_BACKEND:-cupy}
TINY=${GPU_CHECK_TINY:-0}
export PYTHONUNBUFFERED=1
failed=()

say() { echo "== $*" | tee -a "$OUT_DIR/summary.txt"; }
: >"$OUT_DIR/summary.txt"

if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/afmask-site .whl/*.whl \
    && export PYTHONPATH=/tmp/afmask-site${PYTHONPATH:+:$PYTHONPATH} || failed+=("wheels")
fi
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
if [ -z "${AFMASK_SHARED:-}" ]; then
  for d in "$ROOT/shared" "$ROOT/../shared"; do
    if [ -d "$d/fixtures" ]; then export AFMASK_SHARED=$d; break; fi
  done
fi

say "environment"
{
  date -u; uname -a
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  "$PY" - <<'PY'
import importlib, platform
print("python", platform.python_version())
for name in ("numpy", "scipy", "cupy", "torch", "soundfile", "pyopencl", "pybind11"):
    try:
        print(name, importlib.import_module(name).__version__)
    except Exception as exc:
        print(name, "not available:", type(exc).__name__, exc)
PY
  echo "AFMASK_BACKEND=$BACKEND GPU_CHECK_TINY=$TINY AFMASK_SHARED=${AFMASK_SHARED:-unset}"
} >"$OUT_DIR/env.txt" 2>&1
cat "$OUT_DIR/env.txt"
if ! AFMASK_BACKEND=$BACKEND "$PY" -c "import afmask.backend as b; b.get_backend()" >/dev/null 2>&1; then
  say "backend $BACKEND does not load here:"
  AFMASK_BACKEND= "$PY" -c "import afmask.backend as b; print(b.probe('$BACKEND').reason)" | tee -a "$OUT_DIR/summary.txt"
  if [ "$BACKEND" = cupy ]; then say "the cupy and CUDA parts cannot run on this machine"; fi
  failed+=("backend $BACKEND")
fi

say "build the extension"
if "$PY" setup.py build_ext --inplace -q >"$OUT_DIR/build.log" 2>&1; then echo "built"; else
  tail -20 "$OUT_DIR/build.log"; failed+=("build"); fi

say "tests with AFMASK_BACKEND=$BACKEND"
TESTS=(tests/test_backend_conformance.py tests/test_fl_gradcheck.py tests/test_fl_flashlight_fixture.py
       tests/test_fl_pitfall.py tests/test_kernel.py tests/test_mask_gradients.py tests/test_noise.py)
AFMASK_BACKEND=$BACKEND "$PY" -m pytest -q -rs -p no:cacheprovider "${TESTS[@]}" 2>&1 | tee "$OUT_DIR/pytest.log" | tail -25
[ "${PIPESTATUS[0]}" -eq 0 ] || failed+=("tests")
tail -1 "$OUT_DIR/pytest.log" >>"$OUT_DIR/summary.txt"

say "afmask bench kernel"
if [ "$TINY" = 1 ]; then KARGS=(--frames 64 --budget 0.1); else KARGS=(--frames 1593 6372 --budget 2); fi
if "$PY" -m afmask bench kernel "${KARGS[@]}" 2>&1 | tee "$OUT_DIR/bench_kernel.log"; then
  grep -E "^(gpu|target|not run)" "$OUT_DIR/bench_kernel.log" >>"$OUT_DIR/summary.txt"
else failed+=("bench kernel"); fi

say "afmask bench gpu (the original architecture, T = 1593)"
GARGS=(--backend "$BACKEND" --out "$OUT_DIR")
[ "$TINY" = 1 ] && GARGS+=(--tiny --repeats 2)
if "$PY" -m afmask bench gpu "${GARGS[@]}" 2>&1 | tee "$OUT_DIR/bench_gpu.log"; then
  tail -8 "$OUT_DIR/bench_gpu.log" >>"$OUT_DIR/summary.txt"
else failed+=("bench gpu"); fi

if [ "${#failed[@]}" -eq 0 ]; then say "all steps passed"; exit 0; fi
say "FAILED: ${failed[*]}"
exit 1
