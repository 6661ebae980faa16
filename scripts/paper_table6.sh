#!/usr/bin/env bash
# Table 6 (§7.3) on MovieLens-100K, as recorded in docs/paper.md.
# Usage: scripts/paper_table6.sh [ML100K_DIR] [RUNS]   (writes docs/paper-results/table6-ml100k.{json,log})
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/ml-100k}
RUNS=${2:-5}
PY=${PY:-.venv/bin/python}
mkdir -p docs/paper-results
nice -n 10 "$PY" -m dcnviz paper table6 --data ml-100k --data-dir "$DATA" --runs "$RUNS" --threads 1 --json \
    > docs/paper-results/table6-ml100k.json 2> docs/paper-results/table6-ml100k.log
"$PY" - <<'PY'
import json
from dcnviz.commands.paper import table6_table
out = json.load(open("docs/paper-results/table6-ml100k.json"))
print(table6_table(out["rows"]))
print(f"wall {out['wall_s']:.0f} s")
PY
