"""Time to quality on MovieLens-100K: dcnviz's shipped recipe vs DeepCTR-Torch DCN (matrix), one run (issue 5).

The peer trains at its documented settings (Adam 1e-3, batch 128, ``verbose=0``) one epoch per
``fit`` call, so that its validation happens outside the timed window; it stops after ``--patience``
epochs without a better validation log loss and keeps its best epoch (what its ``EarlyStopping``
callback does). Its *wall time* is the sum of its timed epochs. Its *best validation log loss* is the
quality bar. dcnviz trains with its shipped recipe (:class:`dcnviz.train.TrainConfig` defaults, same
model size and early-stopping budget); its *time to quality* is the training time (validation
excluded, as dcnviz's ``fit`` reports it per epoch) until the first epoch whose validation log loss
is at or below the peer's best. Target: time to quality ≤ 1/3 of the peer's wall time, and dcnviz's
test AUC (best epoch) no lower than the peer's.

Usage::

    python benchmarks/time_to_quality.py [--data-dir ../shared/data/ml-100k] [--seeds 0 1 2] [--threads 2]
        [--clock wall|cpu]

Writes ``benchmarks/results/time_to_quality_ml100k.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Any

import numpy as np
import torch
from _common import (
    ML100K,
    build_peer,
    import_deepctr,
    loadavg,
    machine_info,
    peer_columns,
    peer_inputs,
    peer_metrics,
    quiet_stdout,
    write_result,
)

from dcnviz.data import DataOptions, load_splits
from dcnviz.model import ModelConfig
from dcnviz.train import Progress, TrainConfig, build_model, fit

EMBEDDING = 30
HIDDEN = (256, 256)


def run_peer(splits: Any, seed: int, epochs: int, patience: int, timer: Any, device: str = "cpu") -> dict[str, Any]:
    import copy

    columns = peer_columns(splits, EMBEDDING)
    xtr, xva, xte = (peer_inputs(splits, e) for e in (splits.train, splits.val, splits.test))
    ytr, yva, yte = (e.y.numpy().astype(np.float32) for e in (splits.train, splits.val, splits.test))
    torch.manual_seed(seed)
    model = build_peer("dcn", columns, seed, hidden=HIDDEN, device="cuda:0" if device == "cuda" else device)
    best, best_state, since, curve, times = math.inf, None, 0, [], []
    for _ in range(epochs):
        t0 = timer()
        with quiet_stdout():
            model.fit(xtr, ytr, batch_size=128, epochs=1, verbose=0)
        times.append(timer() - t0)
        val = peer_metrics(model, xva, yva)  # outside the timed window
        curve.append(val["logloss"])
        if val["logloss"] < best:
            best, best_state, since = val["logloss"], copy.deepcopy(model.state_dict()), 0
        else:
            since += 1
            if since >= patience:
                break
    model.load_state_dict(best_state)
    return {
        "seed": seed,
        "wall_s": round(sum(times), 3),
        "epoch_s": [round(t, 3) for t in times],
        "best_val_logloss": best,
        "best_epoch": int(np.argmin(curve)) + 1,
        "val_logloss_curve": curve,
        "val": peer_metrics(model, xva, yva),
        "test": peer_metrics(model, xte, yte),
    }


def run_dcnviz(splits: Any, seed: int, config: TrainConfig, target: float, clock: str) -> dict[str, Any]:
    model = build_model(splits.spec, ModelConfig(model="dcnv2", cross_layers=2, hidden=HIDDEN), seed)
    cpu_marks: list[float] = []
    c0 = [time.process_time()]

    def on_progress(p: Progress) -> None:  # CPU time of each epoch's training (validation follows the tick)
        if p.metrics is None and p.epoch_step == p.steps_per_epoch:
            cpu_marks.append(time.process_time() - c0[0])
        elif p.metrics is not None:
            c0[0] = time.process_time()

    progress_every = 10**9 if clock == "wall" else None
    r = fit(model, splits, config, seed=seed, callback=on_progress, progress_every=progress_every)
    epoch_s = [h["epoch_s"] for h in r.history] if clock == "wall" else cpu_marks
    curve = [h["val"]["logloss"] for h in r.history]
    reached, t_cum = None, 0.0
    for e, (t, v) in enumerate(zip(epoch_s, curve, strict=False), start=1):
        t_cum += t
        if v <= target:
            reached = (e, t_cum)
            break
    return {
        "seed": seed,
        "train_s": round(sum(epoch_s), 3),
        "epoch_s": [round(t, 3) for t in epoch_s],
        "val_logloss_curve": curve,
        "reached_epoch": reached[0] if reached else None,
        "time_to_quality_s": round(reached[1], 3) if reached else None,
        "best_epoch": r.best_epoch,
        "val": r.val,
        "test": r.test,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=str(ML100K))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--patience", type=int, default=2)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="cpu: this process's CPU time (1 thread)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="both libraries on this device")
    p.add_argument("--out", default="time_to_quality_ml100k.json")
    args = p.parse_args(argv)
    if args.clock == "cpu" and args.threads != 1:
        raise SystemExit("--clock cpu measures one thread's CPU time; use it with --threads 1")
    torch.set_num_threads(args.threads)
    import_deepctr()
    info = machine_info(args.threads)
    timer = time.process_time if args.clock == "cpu" else time.perf_counter
    options = DataOptions(source="ml-100k", data_dir=args.data_dir, age_encoding="raw", embedding_dim=EMBEDDING)
    splits = load_splits(options)
    recipe = TrainConfig(epochs=args.epochs, patience=args.patience, device=args.device)
    runs = []
    for seed in args.seeds:
        peer = run_peer(splits, seed, args.epochs, args.patience, timer, args.device)
        ours = run_dcnviz(splits, seed, recipe, peer["best_val_logloss"], args.clock)
        ratio = (ours["time_to_quality_s"] / peer["wall_s"]) if ours["time_to_quality_s"] is not None else None
        runs.append({"seed": seed, "peer": peer, "dcnviz": ours, "time_ratio": ratio})
        ttq = f"{ours['time_to_quality_s']:.2f} s (epoch {ours['reached_epoch']})" if ratio is not None else "never"
        print(
            f"seed {seed}: peer wall {peer['wall_s']:.2f} s, best val logloss {peer['best_val_logloss']:.4f}, "
            f"test auc {peer['test']['auc']:.4f} | dcnviz reaches it in {ttq}"
            + (f" = {ratio:.3f} of the peer's time" if ratio is not None else "")
            + f", test auc {ours['test']['auc']:.4f}   load {loadavg()}",
            file=sys.stderr,
        )
    ratios = [r["time_ratio"] for r in runs if r["time_ratio"] is not None]
    auc_ok = all(r["dcnviz"]["test"]["auc"] >= r["peer"]["test"]["auc"] for r in runs)
    mean_ratio = float(np.mean(ratios)) if len(ratios) == len(runs) else None
    verdict = {
        "mean_time_ratio": round(mean_ratio, 4) if mean_ratio is not None else None,
        "speedup": round(1 / mean_ratio, 2) if mean_ratio else None,
        "peer_test_auc_mean": float(np.mean([r["peer"]["test"]["auc"] for r in runs])),
        "dcnviz_test_auc_mean": float(np.mean([r["dcnviz"]["test"]["auc"] for r in runs])),
        "test_auc_no_lower_every_seed": auc_ok,
        "target": "time ratio <= 1/3 and dcnviz test AUC >= peer's",
        "met": bool(mean_ratio is not None and mean_ratio <= 1 / 3 and auc_ok),
    }
    print(json.dumps(verdict), file=sys.stderr)
    info["loadavg_end"] = loadavg()
    payload = {
        "benchmark": "time_to_quality_ml100k",
        "command": "python benchmarks/time_to_quality.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": info,
        "clock": args.clock,
        "protocol": {
            "data": options.to_json() | {"data_dir": "ml-100k"},
            "rows": splits.info["rows"],
            "peer": "DeepCTR-Torch DCN(matrix), Adam 1e-3, batch 128, verbose=0, one fit(epochs=1) per epoch",
            "dcnviz_recipe": recipe.to_json(),
            "epochs_max": args.epochs,
            "patience": args.patience,
        },
        "verdict": verdict,
        "runs": runs,
    }
    path = write_result(args.out, payload)
    print(f"wrote {path}", file=sys.stderr)
    print(json.dumps(verdict))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
