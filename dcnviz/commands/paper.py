"""`python -m dcnviz paper table1|table2|fig4|table6 [--runs N] [--json]`: reproduce the paper's studies.

* ``table1`` — polynomial fitting of increasing difficulty (f1, f2, f3; §6, Table 1): DCN, DCN-V2,
  DNN (1 layer, same size as DCN-V2) and DNN (large), mean test RMSE over runs beside the paper's.
* ``table2`` — the combined-order (1–4) polynomial (§6, Table 2): DCN-V2 and DNN with 1–5 layers.
* ``fig4`` — homogeneous order-3 and order-4 polynomials (§6, Fig. 4): DCN-V2 and its ablations
  (no bias, no residual, neither), DCN and DNN with 1–4 layers (the paper prints no numbers).
* ``table6`` — MovieLens (§7.3, Table 6): DNN, DCN, DCN-V2 stacked/parallel, DCN-Mix, CrossNet
  (full-rank and mixture): test logloss and AUC mean ± std over runs, parameters (no embedding
  tables) and FLOPs per example, beside the paper's MovieLens-1M column (settings fitted to its
  parameter counts; see dcnviz.paperlab.table6).

Progress goes to stderr. ``--json`` prints one JSON object on stdout::

    {"rows": [{"task", "model", "layers", "rmse_mean", "rmse_std", "params", "paper_rmse", ...}, ...], ...}
    {"rows": [{"model", "logloss_mean", "logloss_std", "auc_mean", "auc_std", "params", "flops",
               "paper_logloss", "paper_auc", ...}, ...], ...}                              (table6)

Without ``--json`` a text table is printed on stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from typing import Any

from dcnviz.errors import ConfigError
from dcnviz.finite import finite_json
from dcnviz.options import DEVICES, DTYPES, SYNTHETIC_EXPERIMENTS, TABLE6_RECIPES
from dcnviz.options import REGRESSION_MODELS as SYNTHETIC_MODELS

EXPERIMENTS = (*SYNTHETIC_EXPERIMENTS, "table6")


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1; got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1; got {text!r}")
    return v


def _nonnegative(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0; got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0; got {text!r}")
    return v


def _threads(text: str) -> int | str:
    return "auto" if text == "auto" else _positive(text)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "paper",
        help="reproduce the paper's synthetic studies (Tables 1, 2, Fig. 4) and its MovieLens comparison (Table 6)",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("experiment", choices=EXPERIMENTS, help="which table or figure")
    p.add_argument("--runs", type=_positive, default=5, help="runs per cell (the paper: 5)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a text table")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.add_argument(
        "--threads",
        type=_threads,
        default="auto",
        metavar="N|auto",
        help="CPU threads for PyTorch; auto = one per core not busy with other work now (as train --threads auto)",
    )
    p.add_argument("--seed", type=_nonnegative, default=0, help="run r uses seed + r (data, init, batch order)")
    s = p.add_argument_group("synthetic studies (table1, table2, fig4)")
    s.add_argument("--tasks", nargs="+", default=None, metavar="TASK", help="only these tasks (e.g. f1 f2)")
    s.add_argument("--models", nargs="+", default=None, metavar="MODEL", help="only these models")
    s.add_argument("--layers", nargs="+", type=_positive, default=None, metavar="L", help="depths (default: paper's)")
    s.add_argument(
        "--quick",
        action="store_true",
        help="small defaults for a smoke check (2,000 examples, 100 L-BFGS steps, 10 warm-up / 3 large epochs)",
    )
    s.add_argument("--samples", type=_positive, default=None, help="training examples per run (default 10,000)")
    s.add_argument("--test-samples", type=_positive, default=None, help="test examples per run (default 5,000)")
    s.add_argument(
        "--steps",
        type=_positive,
        default=None,
        help="L-BFGS iterations per fit (default: table1, table2 1,500; fig4 500)",
    )
    s.add_argument(
        "--warmup", type=_nonnegative, default=None, help="Adam epochs before L-BFGS (default: table1 50; others 20)"
    )
    s.add_argument(
        "--large-epochs", type=_positive, default=None, help="Adam epochs for dnn-large (default 20; see docs)"
    )
    s.add_argument("--d", type=_positive, default=None, help="input width of f3/order3/order4/combined")
    s.add_argument("--task-seed", type=_nonnegative, default=0, help="seed of the random crosses")
    s.add_argument("--dtype", choices=DTYPES, default="float64")
    m = p.add_argument_group("MovieLens (table6)")
    m.add_argument("--data", choices=("ml-100k", "ml-1m", "sample"), default=None, help="dataset (required)")
    m.add_argument("--data-dir", metavar="DIR", default=None, help="folder with the MovieLens files")
    m.add_argument("--split-seed", type=_nonnegative, default=0, help="seed of the random 80/10/10 split")
    m.add_argument(
        "--recipe",
        choices=TABLE6_RECIPES,
        default="paper",
        help="training recipe shared by every model: paper = Adam lr 1e-3, batch 128, ≤ 10 epochs, no L2, "
        "no EMA; dcnviz = the shipped recipe (lr 5e-3, batch auto (512 on MovieLens), ≤ 20 epochs, "
        "embedding L2 4e-4 at 58,284 rows scaled to the data size, EMA 0.999)",
    )
    m.add_argument(
        "--epochs", type=_positive, default=None, help="most epochs, early stopping with patience 2 (recipe's: 10 / 20)"
    )
    m.add_argument(
        "--batch-size", type=_positive, default=None, help="batch size (recipe's: 128, the paper's on MovieLens / 512)"
    )
    m.add_argument("--lr", type=float, default=None, help="Adam learning rate (recipe's: 1e-3 / 5e-3)")
    m.add_argument(
        "--hidden",
        type=_positive,
        nargs="+",
        default=None,
        metavar="H",
        help="one deep tower for every model (default: each model's, fitted to the paper's MovieLens parameter "
        "counts: [256], DCN [256 256])",
    )
    m.add_argument("--embedding-dim", type=_positive, default=30, help="embedding size of every field (§7.1.3)")
    m.add_argument("--device", choices=DEVICES, default="auto")
    p.set_defaults(func=run)


def _fmt(v: float | None, spec: str = ".2e") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return format(v, spec)


def _size(n: int | None) -> str:
    if n is None:
        return "—"
    if n >= 1_000_000:
        return f"{n / 1e6:.2f}M"
    if n >= 1_000:
        return f"{n / 1e3:.1f}K"
    return str(n)


def synthetic_table(rows: list[dict[str, Any]]) -> str:
    """Text table of synthetic rows: ours beside the paper's."""
    from dcnviz.paperlab.reference import PAPER_TABLE1

    head = (
        f"{'task':<9}{'model':<27}{'layers':>6}  {'RMSE mean':>10} {'± std':>9}  {'params':>8}"
        f"  {'paper RMSE':>10} {'paper size':>10}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        ref = PAPER_TABLE1.get((r["task"], r["model"])) if r["paper_rmse"] is not None else None
        lines.append(
            f"{r['task']:<9}{r['model']:<27}{r['layers']:>6}  {_fmt(r['rmse_mean']):>10}"
            f" {_fmt(r['rmse_std'], '.1e'):>9}  {_size(r['params']):>8}  {_fmt(r['paper_rmse']):>10}"
            f" {_size(ref.params if ref else None):>10}"
        )
    return "\n".join(lines)


def table6_table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'model':<16}{'logloss':>8} {'(std)':>9} {'AUC':>8} {'(std)':>9} {'params':>8} {'FLOPs':>8}"
        f"  {'paper logloss':>13} {'paper AUC':>9}  setting"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['model']:<16}{_fmt(r['logloss_mean'], '.4f'):>8} {_fmt(r['logloss_std'], '.1e'):>9} "
            f"{_fmt(r['auc_mean'], '.4f'):>8} {_fmt(r['auc_std'], '.1e'):>9} {_size(r['params']):>8} "
            f"{_size(r['flops']):>8}  {_fmt(r['paper_logloss'], '.4f'):>13} {_fmt(r['paper_auc'], '.4f'):>9}  "
            f"{r.get('setting', '')}"
        )
    return "\n".join(lines)


def _synthetic_config(args: argparse.Namespace) -> Any:
    """Check the flags of a synthetic study, fill the experiment's defaults into ``args``, build its config."""
    from dcnviz.paperlab.fit import FitConfig
    from dcnviz.paperlab.synthetic import LARGE_FIT, PAPER_DEFAULTS, QUICK_DEFAULTS, SyntheticConfig

    for flag in ("data", "data_dir"):
        if getattr(args, flag) is not None:
            raise ConfigError(f"--{flag.replace('_', '-')} applies to table6 only")
    if args.models is not None:
        bad = [m for m in args.models if m not in SYNTHETIC_MODELS]
        if bad:
            raise ConfigError(f"--models must be among {SYNTHETIC_MODELS}; got {bad}")
    given = {k: getattr(args, k) for k in ("samples", "test_samples", "steps", "warmup", "large_epochs")}
    for k, v in (QUICK_DEFAULTS if args.quick else PAPER_DEFAULTS[args.experiment]).items():
        if given[k] is None:
            setattr(args, k, v)
    return SyntheticConfig(
        samples=args.samples,
        test_samples=args.test_samples,
        fit=FitConfig(steps=args.steps, warmup_epochs=args.warmup),
        large_fit=dataclasses.replace(LARGE_FIT, steps=args.large_epochs),
        seed=args.seed,
        task_seed=args.task_seed,
        d=args.d,
        dtype=args.dtype,
    )


class _SyntheticLog:
    """Progress of a synthetic study on stderr: a fit's step at most every 2 s, and each finished row."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.t0 = time.perf_counter()
        self.last = 0.0

    def progress(self, p: Any) -> None:  # p: dcnviz.paperlab.synthetic.SyntheticProgress
        now = time.perf_counter()
        if self.quiet or now - self.last < 2.0:
            return
        self.last = now
        print(
            f"[{now - self.t0:7.1f}s] fit {p.fits_done + 1}/{p.fits_total} {p.task} {p.model} L={p.layers} "
            f"run {p.run + 1}/{p.runs}: step {p.step}/{p.steps} train RMSE {p.train_rmse:.3e}",
            file=sys.stderr,
            flush=True,
        )

    def finished(self, part: list[Any]) -> None:
        for r in part if not self.quiet else []:
            print(
                f"[{time.perf_counter() - self.t0:7.1f}s] {r.task} {r.model} L={r.layers}: "
                f"RMSE {r.rmse_mean:.3e} ± {r.rmse_std:.1e} (paper {_fmt(r.paper_rmse)})",
                file=sys.stderr,
                flush=True,
            )


def _synthetic(args: argparse.Namespace) -> dict[str, Any]:
    from dcnviz.paperlab.synthetic import run_experiment

    config = _synthetic_config(args)
    log = _SyntheticLog(args.quiet)
    rows = run_experiment(
        args.experiment,
        args.runs,
        config=config,
        tasks=args.tasks,
        models=args.models,
        layers=args.layers,
        callback=log.progress,
        on_rows=log.finished,
    )
    return {
        "experiment": args.experiment,
        "rows": [r.to_json() for r in rows],
        "config": {
            "runs": args.runs,
            "samples": args.samples,
            "test_samples": args.test_samples,
            "steps": args.steps,
            "warmup_epochs": args.warmup,
            "large_epochs": args.large_epochs,
            "seed": args.seed,
            "task_seed": args.task_seed,
            "d": args.d,
            "dtype": args.dtype,
            "quick": args.quick,
        },
        "wall_s": round(time.perf_counter() - log.t0, 3),
    }


def _table6(args: argparse.Namespace) -> dict[str, Any]:
    from dcnviz.data import DataOptions, load_splits
    from dcnviz.paperlab.table6 import Table6Progress, run_table6, table6_models, table6_setup

    for flag in ("tasks", "layers", "samples", "steps", "warmup"):
        if getattr(args, flag) is not None:
            raise ConfigError(
                f"--{flag.replace('_', '-')} applies to the synthetic studies (table1, table2, fig4) only"
            )
    if args.quick:
        raise ConfigError("--quick applies to the synthetic studies (table1, table2, fig4) only")
    if args.data is None:
        raise ConfigError("table6 needs --data ml-100k|ml-1m|sample (and --data-dir for MovieLens)")
    if args.data != "sample" and args.data_dir is None:
        raise ConfigError(f"--data {args.data} needs --data-dir DIR (the folder with the MovieLens files)")
    table6_models(args.models, flag="--models")  # before the data is read
    options = DataOptions(
        source=args.data, data_dir=args.data_dir, seed=args.split_seed, embedding_dim=args.embedding_dim
    )
    t0 = time.perf_counter()
    splits = load_splits(options)
    rows_info = splits.info.get("rows", {})
    if not args.quiet:
        print(
            f"data: {args.data} — {rows_info.get('train', '?')} train / {rows_info.get('val', '?')} val / "
            f"{rows_info.get('test', '?')} test rows, d={splits.spec.d}",
            file=sys.stderr,
            flush=True,
        )
    seeds = tuple(args.seed + r for r in range(args.runs))
    config = table6_setup(
        len(splits.train),
        recipe=args.recipe,
        seeds=seeds,
        models=args.models,
        hidden=None if args.hidden is None else tuple(args.hidden),
        device=args.device,
        lr=args.lr,
        batch_size=args.batch_size,
        epochs=args.epochs,
    )
    train = config.train
    last = [0.0]

    def progress(p: Table6Progress) -> None:
        now = time.perf_counter()
        if args.quiet or now - last[0] < 2.0:
            return
        last[0] = now
        print(
            f"[{now - t0:7.1f}s] fit {p.fits_done + 1}/{p.fits_total} {p.model} run {p.run + 1}/{p.runs}: "
            f"epoch {p.epoch} step {p.step} loss {p.loss:.4f}",
            file=sys.stderr,
            flush=True,
        )

    rows = run_table6(splits, config, callback=progress)
    if not args.quiet:
        for r in rows:
            print(
                f"{r.model}: logloss {r.logloss_mean:.4f} ± {r.logloss_std:.1e}, AUC {r.auc_mean:.4f}", file=sys.stderr
            )
    return {
        "experiment": "table6",
        "rows": [r.to_json() for r in rows],
        "config": {
            "data": options.to_json(),
            "rows": rows_info,
            "d": splits.spec.d,
            "train": train.to_json(),
            "hidden": None if args.hidden is None else list(args.hidden),
        },
        "paper_column": "MovieLens-1M (Table 6)",
        "wall_s": round(time.perf_counter() - t0, 3),
    }


def run(args: argparse.Namespace) -> int:
    import torch

    threads = args.threads
    if threads == "auto":
        from dcnviz.commands.train import auto_threads, busy_cores

        threads = auto_threads(torch.get_num_threads(), os.cpu_count(), busy_cores())
    torch.set_num_threads(threads)
    if args.experiment == "table6":
        out = _table6(args)
        text = table6_table(out["rows"])
    else:
        out = _synthetic(args)
        text = synthetic_table(out["rows"])
    if args.json:
        print(json.dumps(finite_json(out), allow_nan=False))
    else:
        print(text)
        print(f"({out['experiment']}, {len(out['rows'])} rows, {out['wall_s']:.1f} s)")
    return 0
