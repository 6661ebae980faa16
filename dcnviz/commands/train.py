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
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, cast

from dcnviz.errors import ConfigError
from dcnviz.layers import ACTIVATIONS, GATES
from dcnviz.model import MODEL_NAMES, STRUCTURES, ModelConfig
from dcnviz.options import DEFAULT_EMBEDDING_DIM, SOURCES
from dcnviz.train import DEVICES, Progress, TrainConfig

_MODEL_DEFAULTS = ModelConfig()
_TRAIN_DEFAULTS = TrainConfig()
EXIT_FAULT = 3
MADE_BY = "python -m dcnviz train"  # the model file's extra.made_by


MAX_EMBEDDING_DIM = 1024  # --embedding-dim
MAX_HIDDEN = 65536  # each --hidden size
MAX_SEED = 2**63 - 1  # --seed, --split-seed (PyTorch seeds are 64-bit)
PATH_MAX = 4096  # bytes in a path (Linux)
NAME_MAX_FALLBACK = 255  # bytes in one file name where the file system does not say
TEMP_SUFFIX_BYTES = len(".") + 8 + len(".tmp")  # checkpoint.write_atomic writes ".NAME.XXXXXXXX.tmp" first


def max_threads() -> int:
    """The most ``--threads`` accepted: 4 per core (more only makes OpenMP threads wait on each other)."""
    return 4 * (os.cpu_count() or 1)


def _bounded_int(text: str, low: int, high: int, *, auto: bool = False) -> int | str:
    if auto and text == "auto":
        return "auto"
    either = " or 'auto'" if auto else ""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer in [{low}, {high}]{either}; got {text!r}") from None
    if not low <= v <= high:
        raise argparse.ArgumentTypeError(f"must be an integer in [{low}, {high}]{either}; got {text!r}")
    return v


def _int_or_auto(high: int) -> Callable[[str], int | str]:
    """An argparse type: an integer in [1, high], or the word ``auto`` (--embedding-dim, --threads)."""
    return lambda text: _bounded_int(text, 1, high, auto=True)


MAX_BATCH = 1 << 20  # --batch-size: at most this many rows a step


def _int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high] (argparse names the argument in its error)."""
    return lambda text: cast(int, _bounded_int(text, low, high))


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
    d.add_argument("--split-seed", type=_int_in(0, MAX_SEED), default=0, help="seed of the random 80/10/10 split")
    d.add_argument(
        "--embedding-dim",
        type=_int_or_auto(MAX_EMBEDDING_DIM),
        default=DEFAULT_EMBEDDING_DIM,
        metavar="E|auto",
        help=f"embedding size, at most {MAX_EMBEDDING_DIM} (auto = 6·vocab^¼)",
    )
    m = p.add_argument_group("model")
    m.add_argument("--model", choices=MODEL_NAMES, default=_MODEL_DEFAULTS.model)
    m.add_argument("--structure", choices=STRUCTURES, default=_MODEL_DEFAULTS.structure)
    m.add_argument("--cross-layers", type=int, default=_MODEL_DEFAULTS.cross_layers, metavar="L")
    m.add_argument("--rank", type=int, default=None, metavar="R", help="low rank r (dcnv2/crossnet), expert rank")
    m.add_argument("--experts", type=int, default=None, metavar="K", help="experts K (dcn-mix; crossnet → mixture)")
    m.add_argument("--gate", choices=GATES, default=_MODEL_DEFAULTS.gate)
    m.add_argument("--expert-activation", choices=ACTIVATIONS, default=_MODEL_DEFAULTS.expert_activation)
    m.add_argument(
        "--hidden", type=_int_in(1, MAX_HIDDEN), nargs="*", default=list(_MODEL_DEFAULTS.hidden), metavar="H"
    )
    m.add_argument("--dropout", type=float, default=_MODEL_DEFAULTS.dropout)
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=_TRAIN_DEFAULTS.epochs, metavar="N", help="most epochs")
    t.add_argument(
        "--batch-size",
        type=_batch_size,
        default=_TRAIN_DEFAULTS.batch_size,
        metavar="B|auto",
        help="training batch size (default auto: from the training rows, see docs/training.md)",
    )
    t.add_argument("--lr", type=float, default=_TRAIN_DEFAULTS.lr)
    t.add_argument("--seed", type=_int_in(0, MAX_SEED), nargs="+", default=list(_TRAIN_DEFAULTS.seeds), metavar="S")
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
        type=_int_or_auto(max_threads()),
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


def _batch_size(text: str) -> int | None:
    """``--batch-size``: ``auto`` (None: :func:`dcnviz.train.batch_size_for` the training rows) or an integer."""
    v = _bounded_int(text, 1, MAX_BATCH, auto=True)
    return None if v == "auto" else cast(int, v)


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


def check_out(text: str) -> Path:
    """Refuse an ``--out`` that could not be written, before any training, so a finished model is never lost.

    The path must name a ``.safetensors`` file (not a folder), must not lie under a file, its name must fit
    the file system (with the temporary name :func:`dcnviz.checkpoint.write_atomic` writes first), and its
    folder (or the nearest existing one above it, which the save creates folders in) must be writable.
    """
    if not text.endswith(".safetensors"):
        raise ConfigError(f"--out must name a .safetensors file; got {text!r}")
    given = Path(text).expanduser()
    path = given.absolute()
    name_max, short = _name_max(path), f"{text[:80]!r}…" if len(text) > 80 else repr(text)
    if len(os.fsencode(path.name)) + TEMP_SUFFIX_BYTES > name_max:
        raise ConfigError(
            f"--out {short}: the file name is {len(os.fsencode(path.name))} bytes long; this file system allows "
            f"{name_max} per name, and the save first writes a temporary file named '.NAME.XXXXXXXX.tmp'"
        )
    folders = [p.name for p in path.parents if len(os.fsencode(p.name)) > name_max]
    if folders:
        raise ConfigError(f"--out {short}: a folder name is longer than the {name_max} bytes this file system allows")
    if len(os.fsencode(str(path))) + TEMP_SUFFIX_BYTES >= PATH_MAX:
        raise ConfigError(f"--out {short}: the path is longer than the {PATH_MAX} bytes a path may have")
    if path.is_dir():
        raise ConfigError(f"--out {text!r} is a folder; name a file in it, e.g. {path / 'model.safetensors'}")
    folder = next(p for p in path.parents if p.exists())  # the root always exists
    if not folder.is_dir():
        raise ConfigError(f"--out {text!r} lies under {folder}, which is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {text!r}: cannot write in {folder} (permission denied)")
    if folder == path.parent:  # probe with the save's own temporary name (read-only file systems, quotas)
        try:
            fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
        except OSError as e:
            raise ConfigError(f"--out {text!r}: cannot write in {folder}: {e.strerror}") from None
        os.close(fd)
        os.unlink(probe)
    return path


def _name_max(path: Path) -> int:
    """Bytes allowed in one file name on the file system holding ``path`` (its nearest existing folder)."""
    for p in path.parents:
        try:
            return os.pathconf(p, "PC_NAME_MAX")
        except (OSError, ValueError):
            continue
    return NAME_MAX_FALLBACK


def _threads(requested: int | str, quiet: bool) -> int:
    """The CPU thread count for PyTorch: ``--threads N``, or :func:`auto_threads`'s choice."""
    import torch

    if requested != "auto":
        return int(requested)
    busy = busy_cores()
    threads = auto_threads(torch.get_num_threads(), os.cpu_count(), busy)
    if threads != torch.get_num_threads() and not quiet:
        print(
            f"threads: {threads} (other processes keep {busy:.1f} of {os.cpu_count()} cores busy); "
            "--threads N overrides",
            file=sys.stderr,
        )
    return threads


def run(args: argparse.Namespace) -> int:
    import torch

    from dcnviz import train
    from dcnviz.encoded import DatasetSplits

    out = check_out(args.out) if args.out is not None else None
    torch.set_num_threads(_threads(args.threads, args.quiet))
    options = data_options(args)
    mconfig = model_config(args)
    tconfig = train_config(args)

    def on_data(splits: DatasetSplits) -> None:
        rows = splits.info.get("rows", {})
        print(
            f"data: {options.source} — {rows.get('train', '?')} train / {rows.get('val', '?')} val / "
            f"{rows.get('test', '?')} test rows, x0 width d={splits.spec.d} ({len(splits.spec.fields)} fields)",
            file=sys.stderr,
        )

    bar = None if args.quiet else ProgressBar(tconfig.epochs)
    with _StopOnInterrupt() as stop:
        outcome = train.run(
            options, mconfig, tconfig, callback=bar, should_stop=stop, on_data=None if args.quiet else on_data
        )
    summary = outcome.summary()
    if out is not None:
        saved = outcome.save(out, train.Provenance(made_by=MADE_BY, argv=tuple(getattr(args, "argv", sys.argv[1:]))))
        summary["out"] = str(saved)
        if not args.quiet:
            best = outcome.best
            print(f"saved {saved} (seed {best.seed}, best epoch {best.best_epoch})", file=sys.stderr)
    print(json.dumps(summary, allow_nan=False))
    if outcome.fault:
        print(f"error: training stopped on a fault: {outcome.fault}", file=sys.stderr)
        return EXIT_FAULT
    return 0
