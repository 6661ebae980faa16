"""`python -m dcnviz train --data {sample,ml-1m,ml-100k,csv,parquet} [...]`: train a DCN-family model.

Only ``--data`` is required (plus ``--data-dir`` for real data); every other option defaults to the
recipe dcnviz ships (:class:`dcnviz.train.TrainConfig`, :class:`dcnviz.model.ModelConfig`,
:class:`dcnviz.data.DataOptions`). Progress goes to stderr; the last stdout line is one JSON object::

    {"test": {"auc": A, "logloss": L}, "val": {...}, "epochs": n, "best_epoch": n, "wall_s": s,
     "device": "cpu"|"cuda"|"mps", "examples_per_s": x, ...}

With several ``--seed`` values ``auc``/``logloss`` become ``{"mean": m, "std": s}`` and ``"runs"`` lists
each seed's object. ``--out FILE.safetensors`` saves the model (the best-validation run with several
seeds) with its training config, data options, metrics and history. The first Ctrl-C stops training
the way the app's stop button does (best model kept, saved, JSON printed); a second one aborts.
A training fault (non-finite loss) prints the JSON with ``"fault"``, saves the kept model, and exits 3.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from types import FrameType
from typing import Any

from dcnviz.errors import ConfigError
from dcnviz.model import MODEL_NAMES, STRUCTURES, ModelConfig
from dcnviz.train import DEVICES, Progress, TrainConfig

_MODEL_DEFAULTS = ModelConfig()
_TRAIN_DEFAULTS = TrainConfig()
SOURCES = ("sample", "ml-1m", "ml-100k", "csv", "parquet")  # = dcnviz.data.SOURCES (kept import-light)
GATES = ("softmax", "sigmoid", "constant")
ACTIVATIONS = ("identity", "relu", "tanh", "hard_tanh")
EXIT_FAULT = 3


def _int_or_auto(text: str) -> int | str:
    """An argparse type: an integer >= 1, or the word ``auto`` (--embedding-dim, --threads)."""
    if text == "auto":
        return "auto"
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1 or 'auto'; got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1 or 'auto'; got {text!r}")
    return v


def _optional_float(text: str) -> float | None:
    if text.lower() in ("none", "off", "0"):
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number or 'none'; got {text!r}") from None


def _optional_int(text: str) -> int | None:
    if text.lower() in ("none", "off"):
        return None
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1 or 'none'; got {text!r}")
    return v


def busy_cores(interval: float = 0.25, *, stat: str = "/proc/stat") -> float | None:
    """How many cores other processes keep busy right now: Linux ``/proc/stat`` sampled ``interval`` apart.

    The busy share of all CPU time in the interval times the core count (this process sleeps meanwhile,
    so it counts ~0). None where ``/proc/stat`` cannot be read (not Linux).
    """

    def sample() -> tuple[int, int]:
        with open(stat, encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle  # user nice system idle iowait irq softirq steal (guest is inside user)

    try:
        total0, idle0 = sample()
        time.sleep(interval)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    dt = total1 - total0
    if dt <= 0:
        return None
    return (1.0 - (idle1 - idle0) / dt) * (os.cpu_count() or 1)


def auto_threads(default: int, cores: int | None, busy: float | None) -> int:
    """``--threads auto``: one thread per core that is free now, at most PyTorch's default, at least 1.

    ``busy`` is :func:`busy_cores` (measured now, not the 1-minute load average, which lags: right
    after another run it read ≥ 1.1 on an idle 2-core machine and halved the speed). OpenMP threads on
    cores other processes keep busy spin-wait on each other: on a 2-core machine with a load average
    of 5, ``train --data sample`` took 288 s with 2 threads and 17 s with 1. docs/speed.md has the
    measurements (quiet, one busy process, oversubscribed).

    >>> auto_threads(2, 2, 0.05), auto_threads(2, 2, 1.0), auto_threads(2, 2, 2.0), auto_threads(8, 8, 2.3)
    (2, 1, 1, 6)
    """
    if cores is None or busy is None:
        return default
    free = cores - busy
    return max(1, min(default, int(free + 0.5)))


def add_data_arguments(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    """The data options shared by ``train`` and ``evaluate``."""
    p.add_argument("--data", required=required, choices=SOURCES, help="dataset (sample = the bundled synthetic one)")
    p.add_argument("--data-dir", metavar="DIR", default=None, help="folder with the data files (file for csv/parquet)")
    p.add_argument("--schema", metavar="FILE", default=None, help="schema JSON for csv/parquet (see docs/data.md)")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "train",
        help="train a DCN-V2 / DCN-Mix / DCN / DNN model; prints a JSON result",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_data_arguments(p)
    d = p.add_argument_group("data options")
    d.add_argument("--features", nargs="+", metavar="NAME", default=None, help="MovieLens categorical fields")
    d.add_argument("--genres", action="store_true", help="add genres (multivalent, mean-pooled)")
    d.add_argument("--dense", nargs="+", metavar="NAME", default=None, help="dense MovieLens features (year)")
    d.add_argument("--age-encoding", choices=("groups", "raw"), default=None, help="ML-100K ages (default groups)")
    d.add_argument("--split-seed", type=int, default=0, help="seed of the random 80/10/10 split")
    d.add_argument(
        "--embedding-dim", type=_int_or_auto, default=30, metavar="E|auto", help="embedding size (auto = 6·vocab^¼)"
    )
    m = p.add_argument_group("model")
    m.add_argument("--model", choices=MODEL_NAMES, default=_MODEL_DEFAULTS.model)
    m.add_argument("--structure", choices=STRUCTURES, default=_MODEL_DEFAULTS.structure)
    m.add_argument("--cross-layers", type=int, default=_MODEL_DEFAULTS.cross_layers, metavar="L")
    m.add_argument("--rank", type=int, default=None, metavar="R", help="low rank r (dcnv2/crossnet), expert rank")
    m.add_argument("--experts", type=int, default=None, metavar="K", help="experts K (dcn-mix; crossnet → mixture)")
    m.add_argument("--gate", choices=GATES, default=_MODEL_DEFAULTS.gate)
    m.add_argument("--expert-activation", choices=ACTIVATIONS, default=_MODEL_DEFAULTS.expert_activation)
    m.add_argument("--hidden", type=int, nargs="*", default=list(_MODEL_DEFAULTS.hidden), metavar="H")
    m.add_argument("--dropout", type=float, default=_MODEL_DEFAULTS.dropout)
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=_TRAIN_DEFAULTS.epochs, metavar="N", help="most epochs")
    t.add_argument("--batch-size", type=int, default=_TRAIN_DEFAULTS.batch_size, metavar="B")
    t.add_argument("--lr", type=float, default=_TRAIN_DEFAULTS.lr)
    t.add_argument("--seed", type=int, nargs="+", default=list(_TRAIN_DEFAULTS.seeds), metavar="S")
    t.add_argument("--device", choices=DEVICES, default=_TRAIN_DEFAULTS.device)
    t.add_argument("--patience", type=int, default=_TRAIN_DEFAULTS.patience, help="early-stopping patience")
    t.add_argument("--l2", type=float, default=_TRAIN_DEFAULTS.l2, help="λ on kernels (§3.4)")
    t.add_argument("--l2-embedding", type=float, default=_TRAIN_DEFAULTS.l2_embedding, help="λ on embeddings")
    t.add_argument(
        "--l2-embedding-rows",
        type=_optional_int,
        default=_TRAIN_DEFAULTS.l2_embedding_rows,
        metavar="N|none",
        help="data-size aware embedding L2: λ·N/(training rows) per step; none = λ per step whatever the data size",
    )
    t.add_argument("--clip-norm", type=_optional_float, default=_TRAIN_DEFAULTS.clip_norm, help="or 'none'")
    t.add_argument("--ema-decay", type=_optional_float, default=_TRAIN_DEFAULTS.ema_decay, help="or 'none'")
    t.add_argument("--lr-decay", type=float, default=_TRAIN_DEFAULTS.lr_decay, help="lr factor per epoch")
    t.add_argument("--amp", action="store_true", help="bfloat16 mixed precision (CUDA)")
    t.add_argument("--compile", action="store_true", help="torch.compile the training forward (GPU)")
    t.add_argument(
        "--threads",
        type=_int_or_auto,
        default="auto",
        metavar="N|auto",
        help="CPU threads for PyTorch; auto = one per core not busy with other work now (at most PyTorch's default)",
    )
    o = p.add_argument_group("output")
    o.add_argument("--out", metavar="FILE.safetensors", default=None, help="save the model here")
    o.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run)


def data_options(args: argparse.Namespace) -> Any:
    from dcnviz.data import DataOptions

    kw: dict[str, Any] = {
        "source": args.data,
        "data_dir": args.data_dir,
        "schema": args.schema,
        "seed": args.split_seed,
        "genres": args.genres,
        "embedding_dim": args.embedding_dim,
    }
    if args.features is not None:
        kw["features"] = tuple(args.features)
    if args.dense is not None:
        kw["dense"] = tuple(args.dense)
    if args.age_encoding is not None:
        kw["age_encoding"] = args.age_encoding
    return DataOptions(**kw)


def model_config(args: argparse.Namespace) -> ModelConfig:
    return ModelConfig(
        model=args.model,
        structure=args.structure,
        cross_layers=args.cross_layers,
        rank=args.rank,
        experts=args.experts,
        gate=args.gate,
        expert_activation=args.expert_activation,
        hidden=tuple(args.hidden),
        dropout=args.dropout,
    )


def train_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        lr=args.lr,
        batch_size=args.batch_size,
        epochs=args.epochs,
        patience=args.patience,
        l2=args.l2,
        l2_embedding=args.l2_embedding,
        l2_embedding_rows=args.l2_embedding_rows,
        clip_norm=args.clip_norm,
        ema_decay=args.ema_decay,
        lr_decay=args.lr_decay,
        seeds=tuple(args.seed),
        device=args.device,
        amp=args.amp,
        compile=args.compile,
    )


class ProgressBar:
    """Progress on stderr: a redrawn bar on a terminal, one line per epoch otherwise."""

    def __init__(self, epochs: int, stream: Any = None) -> None:
        self.epochs = epochs
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last = 0.0

    def __call__(self, p: Progress) -> None:
        run = f"seed {p.seed} ({p.run + 1}/{p.runs}) " if p.runs > 1 else ""
        if p.metrics is not None:
            val = p.metrics["val"]
            mark = " *" if p.metrics.get("improved") else ""
            line = (
                f"{run}epoch {p.epoch}/{self.epochs}: train loss {p.loss:.4f}  val auc {val['auc']:.4f} "
                f"logloss {val['logloss']:.4f}{mark}  {p.examples_per_s:,.0f} ex/s"
            )
            self.stream.write(("\r\x1b[2K" if self.tty else "") + line + "\n")
            self.stream.flush()
            return
        if not self.tty:
            return
        now = time.monotonic()
        if now - self.last < 0.1 and p.epoch_step < p.steps_per_epoch:
            return
        self.last = now
        frac = p.epoch_step / max(1, p.steps_per_epoch)
        bar = "#" * int(25 * frac)
        self.stream.write(
            f"\r\x1b[2K{run}epoch {p.epoch}/{self.epochs} [{bar:<25}] {100 * frac:3.0f}% "
            f"loss {p.loss:.4f} {p.examples_per_s:,.0f} ex/s"
        )
        self.stream.flush()


class _StopOnInterrupt:
    """First Ctrl-C (SIGINT) asks training to stop like the app's stop button; a second one aborts."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _StopOnInterrupt:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave signals alone
            self._previous = None
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping: finishing the step and keeping the best model (Ctrl-C again to abort)", file=sys.stderr)

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def __call__(self) -> bool:
        return self.requested


def run(args: argparse.Namespace) -> int:
    import torch

    from dcnviz.checkpoint import save_model
    from dcnviz.data import load_splits
    from dcnviz.train import fit_seeds

    if args.out is not None and not str(args.out).endswith(".safetensors"):
        raise ConfigError(f"--out must name a .safetensors file; got {args.out!r}")
    threads = args.threads
    if threads == "auto":
        busy = busy_cores()
        threads = auto_threads(torch.get_num_threads(), os.cpu_count(), busy)
        if threads != torch.get_num_threads() and not args.quiet:
            print(
                f"threads: {threads} (other processes keep {busy:.1f} of {os.cpu_count()} cores busy); "
                "--threads N overrides",
                file=sys.stderr,
            )
    torch.set_num_threads(threads)
    options = data_options(args)
    mconfig = model_config(args)
    tconfig = train_config(args)
    t0 = time.perf_counter()
    splits = load_splits(options)
    rows = splits.info.get("rows", {})
    if not args.quiet:
        print(
            f"data: {options.source} — {rows.get('train', '?')} train / {rows.get('val', '?')} val / "
            f"{rows.get('test', '?')} test rows, x0 width d={splits.spec.d} ({len(splits.spec.fields)} fields)",
            file=sys.stderr,
        )
    bar = None if args.quiet else ProgressBar(tconfig.epochs)
    with _StopOnInterrupt() as stop:
        result = fit_seeds(mconfig, splits, tconfig, callback=bar, should_stop=stop)
    summary = result.to_json()
    summary["wall_s"] = round(time.perf_counter() - t0, 3)  # the whole command: data loading included
    summary["train_wall_s"] = round(result.wall_s, 3)
    best = result.best
    if args.out is not None:
        metrics = dict(summary)
        metrics["saved_seed"] = best.seed
        saved = save_model(
            args.out,
            best.model.to("cpu"),
            train_config=tconfig.to_json(),
            metrics=metrics,
            history=best.history,
            data_info=splits.info,
            extra={"made_by": "python -m dcnviz train", "argv": sys.argv[1:], "seed": best.seed},
        )
        summary["out"] = str(saved)
        if not args.quiet:
            print(f"saved {saved} (seed {best.seed}, best epoch {best.best_epoch})", file=sys.stderr)
    print(json.dumps(summary, allow_nan=False))
    if result.fault:
        print(f"error: training stopped on a fault: {result.fault}", file=sys.stderr)
        return EXIT_FAULT
    return 0
