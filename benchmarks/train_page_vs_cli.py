"""Benchmark: the Train page's job class against the CLI, same settings, same threads (issue 13 item 18).

Both sides train the same model on the same data, interleaved, ``--repeat`` times each:

* **page**: :class:`dcnviz.app.jobs.TrainingJob` — what the Train page starts: a worker process forked
  from the fork server, through a :class:`~dcnviz.app.jobs.RunPool` whose core count is ``--threads``
  (so a lone run gets that many threads); with ``--watch`` a thread reads ``snapshot()`` and builds the
  live curve's data every second, as the page's fragment does;
* **cli**: ``python -m dcnviz train … --threads N`` in a subprocess (the user's environment);
* **cli-passive** (with ``--passive-cli``): the same with ``OMP_WAIT_POLICY=PASSIVE``, what the app's
  workers run with.

The measure is the trainer's own: training examples per second of training time (``examples_per_s``
in the JSON and in the model file; validation and start-up excluded). Also printed: the wall time from
start to result. Defaults are the issue's settings: 1-layer CrossNet on the bundled sample, embedding
16, lr 1e-3, batch 512, 5 epochs, CPU.

Run (the machine is shared: hold the benchmark lock and read the load average printed with the result)::

    flock /tmp/dcnviz-bench.lock .venv/bin/python benchmarks/train_page_vs_cli.py [--repeat 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dcnviz.app.jobs import RunPool, TrainingJob, TrainRequest, wait  # noqa: E402
from dcnviz.app.pages.train import chart_points  # noqa: E402
from dcnviz.data import DataOptions  # noqa: E402
from dcnviz.model import ModelConfig  # noqa: E402
from dcnviz.train import TrainConfig  # noqa: E402


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def page_run(args: argparse.Namespace) -> dict[str, Any]:
    request = TrainRequest(
        data=DataOptions(source="sample", embedding_dim=args.embedding_dim),
        model=ModelConfig(model=args.model, cross_layers=args.cross_layers, hidden=tuple(args.hidden)),
        train=TrainConfig(lr=args.lr, batch_size=args.batch_size, epochs=args.epochs, device="cpu"),
        label="benchmark",
    )
    pool = RunPool(cores=args.threads, max_runs=1, grace_s=0.0)
    t0 = time.perf_counter()
    job = TrainingJob(request, pool=pool).start()
    stop = threading.Event()

    def watch() -> None:  # what the page's live fragment does each refresh
        while not stop.wait(1.0):
            s = job.snapshot()
            chart_points(s.ticks)

    watcher = threading.Thread(target=watch, daemon=True)
    if args.watch:
        watcher.start()
    snap = wait(job, timeout=3600)
    stop.set()
    if snap.status != "done" or snap.result is None:
        raise SystemExit(f"page run failed: {snap.status} {snap.error}")
    return {
        "examples_per_s": snap.result["examples_per_s"],
        "wall_s": time.perf_counter() - t0,
        "threads": snap.threads,
        "auc": snap.result["test"]["auc"],
    }


def cli_run(args: argparse.Namespace, *, passive: bool) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "dcnviz", "train", "--data", "sample", "--model", args.model]
    cmd += ["--cross-layers", str(args.cross_layers), "--embedding-dim", str(args.embedding_dim)]
    cmd += ["--lr", str(args.lr), "--batch-size", str(args.batch_size), "--epochs", str(args.epochs)]
    cmd += ["--device", "cpu", "--threads", str(args.threads), "--quiet", "--hidden", *map(str, args.hidden)]
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE") if passive else dict(os.environ)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout
    res = json.loads(out.strip().splitlines()[-1])
    return {
        "examples_per_s": res["examples_per_s"],
        "wall_s": time.perf_counter() - t0,
        "threads": args.threads,
        "auc": res["test"]["auc"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--model", default="crossnet")
    p.add_argument("--cross-layers", type=int, default=1)
    p.add_argument("--hidden", type=int, nargs="*", default=[])
    p.add_argument("--embedding-dim", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--watch", action="store_true", help="read snapshots as the page does while the page side trains")
    p.add_argument("--passive-cli", action="store_true", help="also run the CLI with OMP_WAIT_POLICY=PASSIVE")
    args = p.parse_args()
    sides = ["page", "cli"] + (["cli-passive"] if args.passive_cli else [])
    print(
        f"settings: {args.model}, {args.cross_layers} cross layer(s), hidden {args.hidden}, sample, embedding "
        f"{args.embedding_dim}, lr {args.lr:g}, batch {args.batch_size}, {args.epochs} epochs, cpu, "
        f"{args.threads} thread(s); page watched: {args.watch}; OMP_WAIT_POLICY of the CLI: "
        f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}, of the page's workers: PASSIVE"
    )
    print(f"load average before: {loadavg()}")
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in sides}
    page_run(args)  # warm-up: starts the fork server (torch imported once), not measured
    for i in range(args.repeat):
        for side in sides:
            r = page_run(args) if side == "page" else cli_run(args, passive=side == "cli-passive")
            results[side].append(r)
            print(
                f"  run {i + 1} {side:12s} {r['examples_per_s']:>12,.0f} examples/s  wall {r['wall_s']:6.2f} s  "
                f"threads {r['threads']}  test AUC {r['auc']:.4f}  (load {loadavg()})"
            )
    print(f"load average after: {loadavg()}")
    med = {s: statistics.median(r["examples_per_s"] for r in rs) for s, rs in results.items()}
    wall = {s: statistics.median(r["wall_s"] for r in rs) for s, rs in results.items()}
    print(f"\nmedian of {args.repeat}     examples/s    wall s")
    for s in sides:
        print(f"  {s:14s} {med[s]:>12,.0f}  {wall[s]:8.2f}")
    for s in sides[1:]:
        print(f"page / {s}: {med['page'] / med[s]:.2f} (examples/s)")


if __name__ == "__main__":
    main()
