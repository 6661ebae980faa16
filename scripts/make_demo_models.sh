#!/usr/bin/env bash
# The exact commands that made the demo models in models/ (their metrics are in docs/training.md).
# Every option not given is the shipped recipe (python -m dcnviz train --help shows the defaults).
# MovieLens may not be redistributed: the ML-100K models hold learned weights and vocabularies
# (ids, zip codes) but no ratings; the data itself stays in ../shared/data.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
ML100K=${ML100K:-../shared/data/ml-100k}


$PY -m dcnviz train --data ml-100k --data-dir "$ML100K" --model dcnv2 --device cpu --seed 0 \
    --out models/dcnv2_ml100k.safetensors | tail -n 1
$PY -m dcnviz train --data ml-100k --data-dir "$ML100K" --model dcn-mix --device cpu --seed 0 \
    --out models/dcnmix_ml100k.safetensors | tail -n 1
$PY -m dcnviz train --data sample --model dcnv2 --device cpu --seed 0 \
    --out models/dcnv2_sample.safetensors | tail -n 1
ls -l models/*.safetensors
