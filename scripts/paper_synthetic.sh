#!/usr/bin/env bash
# The synthetic studies of §6 as recorded in docs/paper.md (Tables 1 and 2, Fig. 4).
# Usage: scripts/paper_synthetic.sh [table1-1run|table1-f12|table1-f3|table1-f3-10k|table2|fig4|fig4-10k|fig4-order4-30k ...]
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
# Every experiment's defaults (dcnviz.paperlab.synthetic.PAPER_DEFAULTS) are what its recorded table used:
# 10,000 training / 5,000 test examples; table1 1,500 L-BFGS steps, 50 warm-up epochs, 20 large epochs;
# table2 1,500 steps, 20 warm-up; fig4 500 steps, 20 warm-up. Only runs, tasks and sample sizes vary here.
for what in "${@:-table1-f12 table1-f3 table2 fig4}"; do
  for w in $what; do
    case $w in
      table1-1run) run "$w" table1 --runs 1 ;;   # the README's "< 10 min" check (it measures under `time`)
      table1-f12) run "$w" table1 --tasks f1 f2 --runs 5 ;;
      table1-f3)  run "$w" table1 --tasks f3 --runs 3 --samples 50000 ;;   # ~80 min on one core
      table1-f3-10k) run "$w" table1 --tasks f3 --runs 5 --large-epochs 50 ;;
      table2)     run "$w" table2 --runs 5 ;;
      fig4)       run "$w" fig4 --runs 2 --samples 30000 ;;
      fig4-10k)   run "$w" fig4 --runs 3 ;;
      fig4-order4-30k) run "$w" fig4 --tasks order4 --runs 2 --samples 30000 ;;
      *) echo "unknown study: $w" >&2; exit 2 ;;
    esac
  done
done
