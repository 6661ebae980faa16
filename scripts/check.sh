#!/usr/bin/env bash
# Lint, type-check and test: what to run before committing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
"$PY" -m ruff check dcnviz tests benchmarks scripts app.py 2>/dev/null || "$PY" -m ruff check dcnviz tests
"$PY" -m ruff format --check dcnviz tests
"$PY" -m mypy
"$PY" -m pytest -q "$@"
