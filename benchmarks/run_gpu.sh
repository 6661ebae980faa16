#!/usr/bin/env bash
# One short GPU check (< 10 minutes) for a session that has a CUDA GPU:
#   1. the tests marked `gpu` (CUDA training, mixed precision);
#   2. a CUDA training smoke test on the bundled sample (fp32 and bfloat16), results kept;
#   3. the throughput benchmark on CUDA (DeepCTR-Torch side by side when it is installed): the ratio at
#      batch 4096 (target >= 20x) and the time of a MovieLens-1M-sized epoch (591,210 rows; target < 0.5 s);
#   4. time to the peer's quality on MovieLens-100K, both libraries on CUDA (when ../shared/data has it).
# Results land in benchmarks/results/ (device name, torch version, date inside each JSON file).
# Usage: bash benchmarks/run_gpu.sh            (PY=path/to/python to pick the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
RES=benchmarks/results
mkdir -p "$RES"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
$PY - <<'PYEOF'
import torch
assert torch.cuda.is_available(), "no CUDA GPU visible to PyTorch"
print("cuda:", torch.cuda.get_device_name(0), "torch", torch.__version__)
PYEOF

echo "== 1. gpu tests"
timeout 180 $PY -m pytest -q -m gpu tests/test_train.py -p no:cacheprovider

echo "== 2. CUDA training smoke test (sample data, 3 epochs)"
timeout 120 $PY -m dcnviz train --data sample --device cuda --epochs 3 --quiet | tail -n 1 | tee "$RES/gpu_train_sample.json"
timeout 120 $PY -m dcnviz train --data sample --device cuda --epochs 3 --amp --quiet | tail -n 1 \
    | tee "$RES/gpu_train_sample_amp.json"

echo "== 3. throughput on CUDA"
if $PY -c "import deepctr_torch" 2>/dev/null; then PEER=""; else PEER="--skip-peer"; echo "(deepctr-torch missing: dcnviz only)"; fi
timeout 300 $PY benchmarks/throughput.py --device cuda --rows 300000 --batch 128 4096 $PEER --out throughput_cuda.json
timeout 60 $PY benchmarks/throughput.py --device cuda --batch 4096 --amp --skip-peer --out throughput_cuda_amp.json
echo "== 4. time to the peer's quality on CUDA (ML-100K)"
if [ -f ../shared/data/ml-100k/u.data ] && $PY -c "import deepctr_torch" 2>/dev/null; then
    timeout 240 $PY benchmarks/time_to_quality.py --device cuda --seeds 0 --out time_to_quality_cuda.json
else
    echo "(needs ../shared/data/ml-100k and deepctr-torch: skipped)"
fi
echo "done: see $RES/"
