#!/usr/bin/env bash
# Table 6 (§7.3) on MovieLens-100K, as recorded in docs/paper.md.
# Usage: scripts/paper_table6.sh [ML100K_DIR] [RUNS] [RECIPE]
#   RECIPE paper (default) writes docs/paper-results/table6-ml100k.{json,log};
#   RECIPE dcnviz writes docs/paper-results/table6-ml100k-dcnviz.{json,log}.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/ml-100k}
RUNS=${2:-5}
RECIPE=${3:-paper}
PY=${PY:-.venv/bin/python}
NAME=table6-ml100k
[ "$RECIPE" = paper ] || NAME="$NAME-$RECIPE"
mkdir -p docs/paper-results
{ echo "# $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"; } > "docs/paper-results/$NAME.log"
nice -n 10 "$PY" -m dcnviz paper table6 --data ml-100k --data-dir "$DATA" --runs "$RUNS" --recipe "$RECIPE" \
    --threads 1 --json > "docs/paper-results/$NAME.json" 2>> "docs/paper-results/$NAME.log"
echo "# $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)" >> "docs/paper-results/$NAME.log"
"$PY" - "docs/paper-results/$NAME.json" <<'PY'
import json
import sys
from dcnviz.commands.paper import table6_table
out = json.load(open(sys.argv[1]))
print(table6_table(out["rows"]))
print(f"wall {out['wall_s']:.0f} s")
PY
