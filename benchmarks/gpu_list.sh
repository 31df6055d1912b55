#!/usr/bin/env bash
# The GPU list, as one script for a machine with one CUDA GPU: the GPU-only tests, a one-GPU torchrun run
# through NCCL checked against one plain process, the tutorial's full run (MNIST-shaped data, 100 epochs at
# batch 5,000) with epochwise and Keras side by side, and the benchmark table on the GPU; then as much of
# the whole test suite as the time left allows. Each stage has its own time limit and writes what it saw
# under $OUT (default ./gpu-out), so a stage that fails or runs out of time leaves the others' results.
#
#   bash benchmarks/gpu_list.sh --fetch-wheels   # here, with pip and the registry: Keras and poutyne as
#                                                # wheels in .whl/ (git-ignored) for a machine without them
#   OUT=/some/folder bash benchmarks/gpu_list.sh # there: about 8 minutes on one H200
#   DEVICE=cpu QUICK=1 bash benchmarks/gpu_list.sh  # the same stages on a CPU, tiny: checks the script
#
# Wheels in .whl/ are installed into /tmp/site (nothing else is touched) when the machine lacks them.
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS="keras==3.15.1 namex==0.1.0 optree==0.20.0 poutyne==1.19.0"

if [[ "${1:-}" == "--fetch-wheels" ]]; then
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    # shellcheck disable=SC2086
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl $WHEELS
    exit
fi

OUT="${OUT:-gpu-out}"
DEVICE="${DEVICE:-cuda}"
SIZE=()  # the benchmark's data: MNIST-shaped, 55,000 + 5,000 samples unless QUICK
TUTORIAL_EPOCHS=100
if [[ "${QUICK:-0}" == 1 ]]; then SIZE=(--n-train 2000 --n-val 400); TUTORIAL_EPOCHS=2; fi
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" KERAS_BACKEND=torch
if ! python3 -c "import keras, poutyne" 2>/dev/null && compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
START=$SECONDS
stage() { echo; echo "=== $1 (at $((SECONDS - START)) s)"; }

stage "machine" | tee "$OUT/machine.txt"
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c "import torch, epochwise; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'gpu', \
torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, 'epochwise', epochwise.__version__)"
    python3 -c "import keras; print('keras', keras.__version__)" 2>&1 | tail -1
    nproc
} 2>&1 | tee -a "$OUT/machine.txt"

stage "GPU-only tests"
timeout 120 python3 -m pytest -q -o addopts="" -p no:cacheprovider -rs tests/test_optimizers.py \
    -k does_not_synchronise 2>&1 | tee "$OUT/gpu-tests.txt"

# With one process epochwise opens no process group (there is nothing to reduce), so the script opens one
# itself, NCCL on a GPU: fit must run and end exactly as in a plain process beside an open group.
stage "one-GPU torchrun through NCCL against one process"
rm -f "$OUT"/nccl.* "$OUT"/single.*
timeout 60 python3 tests/distributed/ddp_script.py --out "$OUT/single" --device "$DEVICE" --batch-size 8 \
    > "$OUT/single.log" 2>&1
timeout 120 python3 -m torch.distributed.run --standalone --nproc-per-node=1 tests/distributed/ddp_script.py \
    --out "$OUT/nccl" --device "$DEVICE" --batch-size 8 --init-group > "$OUT/nccl.log" 2>&1
python3 benchmarks/gpu_compare.py "$OUT/single.0.json" "$OUT/nccl.0.json" 2>&1 | tee "$OUT/nccl.txt"

stage "the tutorial's full run: 100 epochs at batch 5,000, epochwise and Keras"
timeout 240 python3 benchmarks/bench.py --device "$DEVICE" --runners epochwise keras --batch-sizes 5000 \
    "${SIZE[@]}" --counted "$TUTORIAL_EPOCHS" --warmup 1 --rounds 1 --pair-epochs 3 --eval-pairs 3 --timeout 200 \
    --output "$OUT/TUTORIAL-cuda.md" --json "$OUT/tutorial-cuda.json" > "$OUT/tutorial.log" 2>&1
tail -n 40 "$OUT/TUTORIAL-cuda.md" 2>/dev/null || tail -n 20 "$OUT/tutorial.log"

stage "benchmark table on the GPU"
timeout 300 python3 benchmarks/bench.py --device "$DEVICE" "${SIZE[@]}" --rounds 1 --counted 1 3 --pair-epochs 3 10 \
    --eval-pairs 5 10 --timeout 120 --output "$OUT/RESULTS-cuda.md" --json "$OUT/results-cuda.json" \
    > "$OUT/bench.log" 2>&1
tail -n 60 "$OUT/RESULTS-cuda.md" 2>/dev/null || tail -n 20 "$OUT/bench.log"

LEFT=$((540 - (SECONDS - START)))
if ((LEFT > 30)) && [[ "${QUICK:-0}" != 1 ]]; then
    stage "the whole suite on the GPU machine, for $LEFT s (device='auto' picks the GPU)"
    # -v: a suite cut short by the time limit still names every test that ran and how it ended
    timeout "$LEFT" python3 -m pytest -v -o addopts="" -p no:cacheprovider -n 8 tests > "$OUT/suite.txt" 2>&1
    echo "$(grep -cE ' PASSED| SKIPPED' "$OUT/suite.txt") tests passed or skipped"
    grep -E " FAILED| ERROR" "$OUT/suite.txt" | head -40
    tail -n 3 "$OUT/suite.txt"
fi
stage "done"
