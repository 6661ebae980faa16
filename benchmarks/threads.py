"""``--threads auto`` against fixed thread counts on a quiet, a busy and an oversubscribed machine (issue 14).

For each scenario the script starts that many busy processes of its own (a bare ``while True`` loop
each, at normal priority — the "one other process" of a shared machine), waits for them to show in
the kernel's CPU counters, then runs ``python -m dcnviz train`` on the bundled sample data with each
``--threads`` setting in turn (alternating, ``--repeats`` times) and reads examples/s from the
command's JSON line (training steps only; validation excluded). ``auto`` is what a user gets by
default. ``passive`` runs ``--threads <cores>`` with ``OMP_WAIT_POLICY=PASSIVE`` (OpenMP threads sleep
instead of spinning while they wait).

Usage::

    flock /tmp/dcnviz-bench.lock python benchmarks/threads.py [--busy 0 1 2] [--settings 1 2 auto passive]
        [--batch 4096] [--epochs 2] [--repeats 2]

Writes ``benchmarks/results/threads.json``. Timing depends on everything else the machine does:
the load average before and after each scenario is printed and recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from typing import Any

from _common import ROOT, loadavg, machine_info, write_result

SPIN = "while True: pass"


def run_train(setting: str, batch: int, epochs: int, cores: int) -> dict[str, Any]:
    env = dict(os.environ)
    threads = setting
    if setting == "passive":
        threads = str(cores)
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    cmd = [sys.executable, "-m", "dcnviz", "train", "--data", "sample", "--device", "cpu", "--epochs", str(epochs)]
    cmd += ["--patience", str(epochs), "--batch-size", str(batch), "--threads", threads, "--seed", "0"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    result = json.loads(out.stdout.strip().splitlines()[-1])
    chosen = next((line for line in out.stderr.splitlines() if line.startswith("threads:")), "")
    return {"examples_per_s": float(result["examples_per_s"]), "wall_s": round(wall, 2), "auto_said": chosen}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--busy", type=int, nargs="+", default=[0, 1, 2], help="busy processes per scenario")
    p.add_argument("--settings", nargs="+", default=["1", "2", "auto", "passive"])
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", default="threads.json")
    args = p.parse_args(argv)
    cores = os.cpu_count() or 1
    info = machine_info(cores)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a timeout still stops the busy processes
    scenarios: list[dict[str, Any]] = []
    for busy in args.busy:
        spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(busy)]
        try:
            time.sleep(2.0 if busy else 0.0)
            load0 = loadavg()
            runs: dict[str, list[dict[str, Any]]] = {s: [] for s in args.settings}
            for _ in range(args.repeats):
                for s in args.settings:
                    runs[s].append(run_train(s, args.batch, args.epochs, cores))
            load1 = loadavg()
        finally:
            for sp in spinners:
                sp.kill()
                sp.wait()
        row = {
            "busy_processes": busy,
            "loadavg_before": load0,
            "loadavg_after": load1,
            "median_examples_per_s": {s: statistics.median(r["examples_per_s"] for r in rs) for s, rs in runs.items()},
            "runs": runs,
        }
        scenarios.append(row)
        write_result(args.out, {"benchmark": "threads", "partial": True, "scenarios": scenarios})
        med = row["median_examples_per_s"]
        said = {s: rs[-1]["auto_said"] for s, rs in runs.items() if rs[-1]["auto_said"]}
        print(
            f"busy {busy}: "
            + ", ".join(f"--threads {s}: {v:,.0f} ex/s" for s, v in med.items())
            + f"  (load {load0} -> {load1}) {said}",
            file=sys.stderr,
            flush=True,
        )
    payload = {
        "benchmark": "threads",
        "command": "python benchmarks/threads.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": info | {"loadavg_end": loadavg()},
        "settings": {"batch": args.batch, "epochs": args.epochs, "repeats": args.repeats, "data": "sample"},
        "scenarios": scenarios,
    }
    path = write_result(args.out, payload)
    print(f"wrote {path}", file=sys.stderr)
    print(json.dumps({"scenarios": [{k: v for k, v in s.items() if k != "runs"} for s in scenarios]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
