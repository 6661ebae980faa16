"""Time ``load_splits`` (parse + protocol + split + encode) and print the protocol numbers as JSON.

    .venv/bin/python scripts/time_data_load.py --source ml-100k --data-dir ../shared/data/ml-100k
    .venv/bin/python scripts/time_data_load.py --source sample --repeat 3
    .venv/bin/python scripts/time_data_load.py --source ml-1m --data-dir DIR --genres --dense year

Prints the best of ``--repeat`` wall times and the 1-minute load average (timings on a shared machine
are noisy; say under what load you measured).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dcnviz.data import DataOptions, load_splits


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", required=True)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--schema", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--genres", action="store_true")
    ap.add_argument("--dense", nargs="*", default=[])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    opts = DataOptions(
        source=args.source,
        data_dir=args.data_dir,
        schema=args.schema,
        seed=args.seed,
        genres=args.genres,
        dense=tuple(args.dense),
    )
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        s = load_splits(opts)
        times.append(time.perf_counter() - t0)
    info = s.info
    out = {
        "source": args.source,
        "rows_read": info["rows_read"],
        "rows_dropped": info["rows_dropped"],
        "examples": info["examples"],
        "rows": info["rows"],
        "positive_rate": {k: round(v, 4) for k, v in info["positive_rate"].items()},
        "fields": [(f.name, f.kind, f.vocab_size) for f in s.spec.fields],
        "best_s": round(min(times), 3),
        "all_s": [round(t, 3) for t in times],
        "loadavg_1min": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
