#!/usr/bin/env bash
# The synthetic studies of §6 as recorded in docs/paper.md (Tables 1 and 2, Fig. 4).
# Usage: scripts/paper_synthetic.sh [table1-f12|table1-f3|table1-f3-10k|table2|fig4|fig4-10k|fig4-order4-30k ...]
# (default: table1-f12 table1-f3 table2 fig4, in that order)
# Writes docs/paper-results/<name>.json (the --json output) and <name>.log (progress, uptime before/after).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p docs/paper-results
run() {  # name, then the arguments of `python -m dcnviz paper`
    local name=$1; shift
    { echo "# $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"; echo "# python -m dcnviz paper $*"; } \
        > "docs/paper-results/$name.log"
    nice -n 10 "$PY" -m dcnviz paper "$@" --threads 1 --json > "docs/paper-results/$name.json" \
        2>> "docs/paper-results/$name.log"
    echo "# $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)" >> "docs/paper-results/$name.log"
    "$PY" -c "import json,sys; from dcnviz.commands.paper import synthetic_table as t; \
o=json.load(open(sys.argv[1])); print(t(o['rows'])); print(f\"wall {o['wall_s']:.0f} s\")" \
        "docs/paper-results/$name.json"
}
STEPS=(--samples 10000 --test-samples 5000)
for what in "${@:-table1-f12 table1-f3 table2 fig4}"; do
  for w in $what; do
    case $w in
      table1-f12) run "$w" table1 --tasks f1 f2 --runs 5 "${STEPS[@]}" --steps 1500 --warmup 50 --large-epochs 100 ;;
      table1-f3)  run "$w" table1 --tasks f3 --runs 3 --samples 50000 --test-samples 5000 --steps 1500 --warmup 50 \
                      --large-epochs 20 ;;
      table1-f3-10k) run "$w" table1 --tasks f3 --runs 5 "${STEPS[@]}" --steps 1500 --warmup 50 --large-epochs 50 ;;
      table2)     run "$w" table2 --runs 5 "${STEPS[@]}" --steps 1500 --warmup 20 ;;
      fig4)       run "$w" fig4 --runs 2 --samples 30000 --test-samples 5000 --steps 500 --warmup 20 ;;
      fig4-10k)   run "$w" fig4 --runs 3 "${STEPS[@]}" --steps 500 --warmup 20 ;;
      fig4-order4-30k) run "$w" fig4 --tasks order4 --runs 2 --samples 30000 --test-samples 5000 --steps 500 \
                      --warmup 20 ;;
      *) echo "unknown study: $w" >&2; exit 2 ;;
    esac
  done
done
