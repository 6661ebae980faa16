"""Running the synthetic studies of §6: Table 1, Table 2 and Fig. 4, as rows of mean RMSE over runs.

Protocol (the paper gives none beyond "mean RMSE of 5 runs"): the function is fixed by
``task_seed``; run r (0-based) draws a fresh training set, a fresh test set and a fresh
initialisation from ``seed + r``; the RMSE is measured on the test set (noise included for the
combined task, whose floor is therefore ≈ 0.01). ``rmse_std`` is the sample standard deviation over
runs (0 for one run).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dcnviz.errors import ConfigError
from dcnviz.options import DTYPES
from dcnviz.options import SYNTHETIC_EXPERIMENTS as EXPERIMENTS
from dcnviz.paperlab.fit import FitConfig, fit_regression, rmse
from dcnviz.paperlab.models import REGRESSION_MODELS, build_regressor, model_layers, paper_param_count
from dcnviz.paperlab.reference import paper_table1_rmse, paper_table2_rmse
from dcnviz.paperlab.tasks import DEFAULT_D, SyntheticTask, build_task

# What each experiment runs: (task, models, layer counts).
EXPERIMENT_PLAN: dict[str, tuple[tuple[str, tuple[str, ...], tuple[int, ...]], ...]] = {
    "table1": tuple((t, ("dcn", "dcnv2", "dnn", "dnn-large"), (1,)) for t in ("f1", "f2", "f3")),
    "table2": (("combined", ("dcnv2", "dnn"), (1, 2, 3, 4, 5)),),
    "fig4": tuple(
        (
            t,
            ("dcnv2", "dcnv2-no-bias", "dcnv2-no-residual", "dcnv2-no-bias-no-residual", "dcn", "dnn"),
            (1, 2, 3, 4),
        )
        for t in ("order3", "order4")
    ),
}


# The CLI's defaults per experiment (``python -m dcnviz paper EXP`` reproduces the README with them; the
# commands behind every recorded number are in docs/paper.md). Table 1 needs a larger optimiser budget
# than Table 2 / Fig. 4: with 300 L-BFGS iterations and 20 warm-up epochs f3's DCN-V2 stops at ~3e-3.
PAPER_DEFAULTS: dict[str, dict[str, int]] = {
    "table1": {"samples": 10_000, "test_samples": 5_000, "steps": 1_500, "warmup": 50, "large_epochs": 20},
    "table2": {"samples": 10_000, "test_samples": 5_000, "steps": 1_500, "warmup": 20, "large_epochs": 20},
    "fig4": {"samples": 10_000, "test_samples": 5_000, "steps": 500, "warmup": 20, "large_epochs": 20},
}
# ``--quick``: a small version for tests and smoke checks (seconds; not the paper's numbers).
QUICK_DEFAULTS: dict[str, int] = {
    "samples": 2_000,
    "test_samples": 1_000,
    "steps": 100,
    "warmup": 10,
    "large_epochs": 3,
}


# The large DNNs (41K and 760K parameters) are trained with mini-batch Adam: one full-batch L-BFGS
# iteration on f3's [1024, 512, 256] tower costs as much as an Adam epoch, and L-BFGS needs hundreds.
LARGE_FIT = FitConfig(optimizer="adam", steps=20, lr=1e-3, batch_size=256, report_every=1)


@dataclass(frozen=True, kw_only=True)
class SyntheticConfig:
    """Sizes and seeds of a synthetic study (the model sizes are the paper's, see models.py)."""

    samples: int = 10_000  # training examples per run
    test_samples: int = 5_000  # test examples per run
    fit: FitConfig = field(default_factory=lambda: FitConfig(steps=300, warmup_epochs=20))  # every model but dnn-large
    large_fit: FitConfig | None = field(default_factory=lambda: LARGE_FIT)  # dnn-large (None: ``fit``), see above
    seed: int = 0  # run r uses seed + r for its data and its initialisation
    task_seed: int = 0  # draws the random crosses of f3, order3/4 and combined
    d: int | None = None  # input width of f3, order3/4, combined (None: 100, 50, 50 and our 20)
    dtype: str = "float64"  # float64 | float32

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ConfigError(f"samples must be >= 1; got samples={self.samples}")
        if self.test_samples < 1:
            raise ConfigError(f"test_samples must be >= 1; got test_samples={self.test_samples}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"dtype must be 'float64' or 'float32'; got dtype={self.dtype!r}")

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch.float64 if self.dtype == "float64" else torch.float32


@dataclass(frozen=True, kw_only=True)
class SyntheticRow:
    """One row of a synthetic table: a model at a depth on a task, over all runs."""

    task: str  # f1 | f2 | f3 | order3 | order4 | combined
    model: str  # dcnv2 | dcn | dnn | dnn-large | dcnv2-no-bias | dcnv2-no-residual | dcnv2-no-bias-no-residual
    layers: int  # cross layers, or hidden layers for DNNs
    rmse_mean: float  # mean test RMSE over runs
    rmse_std: float  # sample stddev over runs (0 for one run)
    params: int  # trainable parameters, counted as the paper does (all but the output intercept)
    paper_rmse: float | None  # the paper's number (Tables 1, 2), None where it gives none
    rmse_runs: tuple[float, ...] = ()  # each run's test RMSE
    train_rmse_mean: float = math.nan  # mean training RMSE
    seconds: float = 0.0  # wall time of all runs

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "model": self.model,
            "layers": self.layers,
            "rmse_mean": self.rmse_mean,
            "rmse_std": self.rmse_std,
            "params": self.params,
            "paper_rmse": self.paper_rmse,
            "rmse_runs": list(self.rmse_runs),
            "train_rmse_mean": self.train_rmse_mean,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True, kw_only=True)
class SyntheticProgress:
    """What a progress callback receives: where the study is and the current training RMSE."""

    task: str
    model: str
    layers: int
    run: int  # 0-based
    runs: int
    step: int  # optimizer steps so far in this run
    steps: int  # steps planned for this run (warm-up epochs + iterations)
    train_rmse: float  # best training RMSE so far in this run (nan before the first report)
    fits_done: int  # finished fits in the whole study
    fits_total: int


def paper_rmse(task: SyntheticTask, model: str, layers: int) -> float | None:
    """The paper's RMSE for this cell, or None (Fig. 4, other depths, or a non-paper input width)."""
    if task.d != DEFAULT_D[task.name]:
        return None
    if task.name in ("f1", "f2", "f3") and layers == model_layers(model, task.d, 1):
        return paper_table1_rmse(task.name, model)
    if task.name == "combined":
        return paper_table2_rmse(model, layers)
    return None


def _resolve_task(task: str | SyntheticTask, config: SyntheticConfig) -> SyntheticTask:
    if isinstance(task, SyntheticTask):
        return task
    d = config.d if task not in ("f1", "f2") else None
    return build_task(task, seed=config.task_seed, d=d)


def _check_study(models: tuple[str, ...] | list[str], layers: tuple[int, ...] | list[int], runs: int) -> None:
    if runs < 1:
        raise ConfigError(f"runs must be >= 1; got runs={runs}")
    if not models:
        raise ConfigError("at least one model is needed")
    for m in models:
        if m not in REGRESSION_MODELS:
            raise ConfigError(f"model must be one of {REGRESSION_MODELS}; got model={m!r}")
    if not layers or any(n < 1 for n in layers):
        raise ConfigError(f"layers must be a non-empty list of counts >= 1; got layers={list(layers)}")


def _run_data(
    t: SyntheticTask, config: SyntheticConfig, r: int, cache: dict[int, tuple[torch.Tensor, ...]]
) -> tuple[torch.Tensor, ...]:
    """Run r's (x, y, x_test, y_test), drawn from ``seed + r`` once and shared by every cell."""
    if r not in cache:
        x, y = t.sample(config.samples, config.seed + r, split="train")
        xt, yt = t.sample(config.test_samples, config.seed + r, split="test")
        cache[r] = tuple(torch.as_tensor(a, dtype=config.torch_dtype) for a in (x, y, xt, yt))
    return cache[r]


@dataclass(frozen=True)
class _Cell:
    """One (model, layers) cell of a study and where it stands in the whole study's progress."""

    task: SyntheticTask
    model: str
    n: int  # the layers argument (the model's own depth: model_layers)
    runs: int
    fits_total: int

    def on_step(
        self, callback: Callable[[SyntheticProgress], None] | None, r: int, fits_done: int, planned: int
    ) -> Callable[[int, float], None]:
        """The fit's step callback for run ``r``, reporting a :class:`SyntheticProgress`."""

        def report(step: int, train: float) -> None:
            if callback is not None:
                callback(
                    SyntheticProgress(
                        task=self.task.name,
                        model=self.model,
                        layers=model_layers(self.model, self.task.d, self.n),
                        run=r,
                        runs=self.runs,
                        step=step,
                        steps=planned,
                        train_rmse=train,
                        fits_done=fits_done,
                        fits_total=self.fits_total,
                    )
                )

        return report

    def row(self, test_rmses: list[float], train_rmses: list[float], params: int, seconds: float) -> SyntheticRow:
        """The cell's mean (and sample std) RMSE over its finished runs, beside the paper's number."""
        arr = np.asarray(test_rmses)
        layers = model_layers(self.model, self.task.d, self.n)
        return SyntheticRow(
            task=self.task.name,
            model=self.model,
            layers=layers,
            rmse_mean=float(arr.mean()),
            rmse_std=float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
            params=params,
            paper_rmse=paper_rmse(self.task, self.model, layers),
            rmse_runs=tuple(test_rmses),
            train_rmse_mean=float(np.mean(train_rmses)),
            seconds=seconds,
        )


def run_synthetic(
    task: str | SyntheticTask,
    models: tuple[str, ...] | list[str],
    layers: tuple[int, ...] | list[int],
    runs: int,
    *,
    config: SyntheticConfig | None = None,
    callback: Callable[[SyntheticProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    fits_offset: tuple[int, int] | None = None,
) -> list[SyntheticRow]:
    """Train each model at each depth ``runs`` times on ``task`` and return one row per (model, layers).

    ``dnn-large`` has a fixed depth and is run once whatever ``layers`` holds. ``callback`` receives
    a :class:`SyntheticProgress` during training; when ``should_stop()`` returns True the current fit
    ends, no further run starts, and only the (model, layers) cells with at least one finished run
    are returned (a stopped run is not counted). ``fits_offset`` = (fits done before, fits in the
    whole study) lets a caller running several tasks report overall progress.
    """
    config = config or SyntheticConfig()
    _check_study(models, layers, runs)
    t = _resolve_task(task, config)
    cells = [(m, n) for m in models for n in (layers[:1] if m == "dnn-large" else layers)]
    fits_done, total = fits_offset if fits_offset is not None else (0, len(cells) * runs)
    data: dict[int, tuple[torch.Tensor, ...]] = {}
    rows: list[SyntheticRow] = []
    stop = False
    for model, n in cells:
        cell = _Cell(task=t, model=model, n=n, runs=runs, fits_total=total)
        fit = config.large_fit if model == "dnn-large" and config.large_fit is not None else config.fit
        planned = fit.steps + (fit.warmup_epochs if fit.optimizer == "lbfgs" else 0)
        test_rmses: list[float] = []
        train_rmses: list[float] = []
        params = 0
        t0 = time.perf_counter()
        for r in range(runs):
            x_t, y_t, xt_t, yt_t = _run_data(t, config, r, data)
            net = build_regressor(model, t.d, n, seed=config.seed + r, dtype=config.torch_dtype)
            params = paper_param_count(net)
            on_step = cell.on_step(callback, r, fits_done, planned)
            result = fit_regression(net, x_t, y_t, fit, seed=config.seed + r, callback=on_step, should_stop=should_stop)
            if result.stopped:
                stop = True
                break
            test_rmses.append(rmse(net, xt_t, yt_t))
            train_rmses.append(result.train_rmse)
            fits_done += 1
        if test_rmses:
            rows.append(cell.row(test_rmses, train_rmses, params, time.perf_counter() - t0))
        if stop:
            break
    return rows


def run_experiment(
    name: str,
    runs: int,
    *,
    config: SyntheticConfig | None = None,
    tasks: tuple[str, ...] | list[str] | None = None,
    models: tuple[str, ...] | list[str] | None = None,
    layers: tuple[int, ...] | list[int] | None = None,
    callback: Callable[[SyntheticProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_rows: Callable[[list[SyntheticRow]], None] | None = None,
) -> list[SyntheticRow]:
    """All rows of ``table1`` | ``table2`` | ``fig4``, optionally only some ``tasks`` and ``models``
    of its plan, or other depths (``layers``); ``on_rows`` receives each task's rows when it is done."""
    if name not in EXPERIMENTS:
        raise ConfigError(f"experiment must be one of {EXPERIMENTS}; got {name!r}")
    full = EXPERIMENT_PLAN[name]
    if tasks is not None:
        known = [p[0] for p in full]
        bad = [t for t in tasks if t not in known]
        if bad:
            raise ConfigError(f"{name} has tasks {known}; got {bad}")
    if models is not None:
        bad = [m for m in models if m not in REGRESSION_MODELS]
        if bad:
            raise ConfigError(f"model must be one of {REGRESSION_MODELS}; got {bad}")
    plan = [
        (t, tuple(m for m in ms if models is None or m in models), tuple(layers) if layers else ls)
        for t, ms, ls in full
        if tasks is None or t in tasks
    ]
    plan = [p for p in plan if p[1]]
    if not plan:
        raise ConfigError(f"none of the models {list(models or [])} is in {name}'s plan")
    total = sum(runs * sum(1 if m == "dnn-large" else len(ls) for m in ms) for _, ms, ls in plan)
    rows: list[SyntheticRow] = []
    done = 0
    for task, task_models, task_layers in plan:
        if should_stop is not None and should_stop():
            break
        part = run_synthetic(
            task,
            task_models,
            task_layers,
            runs,
            config=config,
            callback=callback,
            should_stop=should_stop,
            fits_offset=(done, total),
        )
        rows += part
        done += sum(len(r.rmse_runs) for r in part)
        if on_rows is not None:
            on_rows(part)
    return rows
