r"""Training and evaluation of DCN-family models, UI-agnostic (the CLI and the app both call it).

The loss is the paper's (§3.4, binary log loss plus an L2 penalty):

.. math:: \text{loss} = -\frac{1}{N}\sum_i y_i \log \hat y_i + (1-y_i)\log(1-\hat y_i) + \lambda \sum_l \|W_l\|_2^2

optimised with Adam, gradient-norm clipping (10 in §7.1) and an optional exponential moving average
of the weights (0.9999 in §7.1; shorter runs need a shorter average). Early stopping watches the
validation log loss; the best epoch's weights are kept and the test split is scored once, at the end.

How it is fast (issue 5), without changing the model:

* the whole encoded dataset lives on the device; each epoch draws one permutation and gathers the
  rows once, so a batch is a slice (no DataLoader, no per-batch NumPy);
* every trainable parameter is re-pointed into one flat buffer and every gradient into another, so
  zeroing the gradients, the L2 term, clipping, the Adam step and the weight average are one
  (fused) operation each instead of one per parameter tensor;
* the loss and gradient norm stay on the device and are read back only at progress ticks.

How a run is laid out: :func:`run` (data options → splits → :func:`fit_seeds` → :class:`TrainingRun`,
which owns the model file's metadata) is what the CLI and the app call; :func:`fit` builds one
``_Trainer`` whose pieces are one optimizer ``step``, one pass over the data (``train_epoch``, checking
the loss at every progress tick), ``validate`` (keeps the best weights) and ``recover`` (rolls back to
the last finite weights after a fault).

Public API::

    TrainConfig(...)                                   # the recipe; defaults = the shipped recipe
    run(data_options, model_config, config, *, callback, should_stop) -> TrainingRun   (.summary(), .save())
    fit(model, splits, config, *, seed, callback, should_stop) -> TrainResult
    fit_seeds(model_config, splits, config, *, ...)   -> SeedsResult   (mean ± std over seeds)
    evaluate(model, encoded, *, batch_size)            -> {"auc": ..., "logloss": ...}
    auc_score(y, scores), log_loss(y, logits), resolve_device(name)
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import torch
import torch.nn.functional as F

from dcnviz.encoded import DatasetSplits, Encoded
from dcnviz.errors import ConfigError, TrainingError
from dcnviz.finite import finite_or_none
from dcnviz.jsonconfig import JsonConfig, JsonList
from dcnviz.model import DCNModel, ModelConfig
from dcnviz.options import DEVICES
from dcnviz.spec import FeatureSpec

FAST_X0 = True  # one gather for all categorical lookups during training (False: the model's own forward)
SNAPSHOT_S = 1.0  # seconds between snapshots of the last weights known to be finite (fault recovery)


MAX_AUTO_BATCH = 512  # the automatic batch size: at most this (the recipe's, tuned on MovieLens-100K) ...
MIN_AUTO_BATCH = 32  # ... and at least this
AUTO_STEPS = 50  # ... the largest power of two that still gives an epoch this many steps


def batch_size_for(rows: int) -> int:
    """The automatic batch size for ``rows`` training rows: the largest power of two in [32, 512] giving an
    epoch at least 50 steps (docs/training.md: below ~25,000 rows batch 512 leaves the weight average
    and early stopping too few steps; at 14,662 rows batch 256 gained 0.003 validation log loss).

    >>> [batch_size_for(n) for n in (1_000, 14_662, 29_113, 58_284, 400_062)]
    [32, 256, 512, 512, 512]
    """
    b = MAX_AUTO_BATCH
    while b > MIN_AUTO_BATCH and rows < AUTO_STEPS * b:
        b //= 2
    return b


@dataclass(frozen=True, kw_only=True)
class TrainConfig(JsonConfig):
    """How to train one model. Defaults are the recipe dcnviz ships (see docs/training.md).

    >>> c = TrainConfig(lr=2e-3, seeds=(1, 2))
    >>> TrainConfig.from_json(c.to_json()) == c
    True
    """

    _JSON_WHAT = "train config"
    _JSON_LISTS: ClassVar[dict[str, JsonList]] = {
        key: JsonList(None, "`{key}` must be a list; got {value!r}") for key in ("adam_betas", "seeds")
    }

    lr: float = 5e-3  # Adam learning rate
    batch_size: int | None = None  # training batch size B; None = auto: batch_size_for(training rows)
    epochs: int = 20  # most epochs to run (early stopping usually ends sooner)
    patience: int = 2  # stop after this many epochs without a better validation log loss
    l2: float = 0.0  # λ of §3.4 on the kernels (cross W/U/V/C/w, deep and logit weights; not biases)
    l2_embedding: float = 4e-4  # λ on the embedding tables (the whole tables, every step) at l2_embedding_rows rows
    # Data-size aware L2: with N training rows the tables get λ·l2_embedding_rows/N per step, so one epoch
    # of it weighs the same at any N (a prior against the *summed* log loss; docs/training.md). 58,284 =
    # MovieLens-100K's training rows, where λ = 4e-4 was tuned. None: λ per step whatever N.
    l2_embedding_rows: int | None = 58_284
    clip_norm: float | None = 10.0  # clip the global gradient norm to this (§7.1); None = no clipping
    ema_decay: float | None = 0.999  # weight EMA decay cap (§7.1: 0.9999; warm-up in docs/training.md); None = off
    lr_decay: float = 1.0  # multiply the learning rate by this after every epoch
    adam_betas: tuple[float, float] = (0.9, 0.999)  # Adam β1, β2
    adam_eps: float = 1e-8  # Adam ε
    seeds: tuple[int, ...] = (0,)  # one run per seed (initialisation and batch order); mean ± std over runs
    device: str = "auto"  # auto (CUDA, then MPS, then CPU) | cpu | cuda | mps
    amp: bool = False  # bfloat16 mixed precision for the forward pass (CUDA only)
    compile: bool = False  # torch.compile the model's training forward (CUDA only; not measured yet)
    eval_batch_size: int = 65536  # rows per forward pass when scoring a split

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"`lr` must be > 0; got lr={self.lr}")
        for name in ("batch_size", "epochs", "eval_batch_size"):
            v = getattr(self, name)
            if name == "batch_size" and v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"`{name}` must be an integer >= 1; got {name}={v!r}")
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 1:
            raise ConfigError(f"`patience` must be an integer >= 1; got patience={self.patience!r}")
        for name in ("l2", "l2_embedding"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"`{name}` must be >= 0; got {name}={v}")
        rows = self.l2_embedding_rows
        if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 1):
            raise ConfigError(f"`l2_embedding_rows` must be an integer >= 1 or None; got l2_embedding_rows={rows!r}")
        if self.clip_norm is not None and not (math.isfinite(self.clip_norm) and self.clip_norm > 0):
            raise ConfigError(f"`clip_norm` must be > 0 or None; got clip_norm={self.clip_norm}")
        if self.ema_decay is not None and not (0.0 < self.ema_decay < 1.0):
            raise ConfigError(f"`ema_decay` must be in (0, 1) or None; got ema_decay={self.ema_decay}")
        if not (0.0 < self.lr_decay <= 1.0):
            raise ConfigError(f"`lr_decay` must be in (0, 1]; got lr_decay={self.lr_decay}")
        object.__setattr__(self, "adam_betas", tuple(float(b) for b in self.adam_betas))
        if len(self.adam_betas) != 2 or not all(0.0 <= b < 1.0 for b in self.adam_betas):
            raise ConfigError(f"`adam_betas` must be two numbers in [0, 1); got adam_betas={self.adam_betas}")
        if not self.adam_eps > 0:
            raise ConfigError(f"`adam_eps` must be > 0; got adam_eps={self.adam_eps}")
        if isinstance(self.seeds, int):
            raise ConfigError(f"`seeds` must be a sequence of integers; got seeds={self.seeds!r}")
        object.__setattr__(self, "seeds", tuple(self.seeds))
        if not self.seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in self.seeds):
            raise ConfigError(f"`seeds` must be one or more integers >= 0; got seeds={list(self.seeds)}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"`seeds` must be distinct; got seeds={list(self.seeds)}")
        if self.device not in DEVICES:
            raise ConfigError(f"`device` must be one of {DEVICES}; got device={self.device!r}")

    def batch_for(self, rows: int) -> int:
        """The batch size for ``rows`` training rows: the chosen one, else :func:`batch_size_for` ``rows``."""
        return self.batch_size if self.batch_size is not None else batch_size_for(rows)

    def resolved(self, rows: int) -> TrainConfig:
        """This config with an automatic batch size replaced by the one for ``rows`` training rows."""
        return self if self.batch_size is not None else dataclasses.replace(self, batch_size=self.batch_for(rows))

    @classmethod
    def from_json(cls, obj: Any) -> TrainConfig:
        kw = cls._json_object(obj)
        if "l2_embedding" in kw and "l2_embedding_rows" not in kw:
            kw["l2_embedding_rows"] = None  # recorded before the data-size aware L2: λ was per step
        return cls._json_build(cls._json_lists(kw))


# --------------------------------------------------------------------------------------------------
# Devices and metrics


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA, then Apple MPS, then CPU; an explicit device must be available."""
    if name not in DEVICES:
        raise ConfigError(f"`device` must be one of {DEVICES}; got device={name!r}")
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps is not None and mps.is_available())
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_ok else torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda was asked for, but this PyTorch sees no CUDA GPU; use --device cpu or auto")
    if name == "mps" and not mps_ok:
        raise ConfigError("device=mps was asked for, but Apple MPS is not available here; use --device cpu or auto")
    return torch.device(name)


def auc_score(y: torch.Tensor | np.ndarray, scores: torch.Tensor | np.ndarray) -> float:
    """Exact ROC AUC (Mann–Whitney U with tied scores sharing their average rank).

    Equals ``sklearn.metrics.roc_auc_score``; NaN when only one class is present.

    >>> auc_score(torch.tensor([0., 0., 1., 1.]), torch.tensor([0.1, 0.4, 0.35, 0.8]))
    0.75
    >>> auc_score(torch.tensor([0., 1.]), torch.tensor([0.5, 0.5]))
    0.5
    """
    y_t = torch.as_tensor(y).detach().reshape(-1).to("cpu", torch.float64)
    s_t = torch.as_tensor(scores).detach().reshape(-1).to("cpu", torch.float64)
    if y_t.shape != s_t.shape:
        raise ConfigError(f"labels and scores differ in length: {y_t.numel()} vs {s_t.numel()}")
    n_pos = float(y_t.sum())
    n_neg = float(y_t.numel()) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    s_sorted, order = torch.sort(s_t)
    _, inverse, counts = torch.unique_consecutive(s_sorted, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).to(torch.float64)  # 1-based rank of each tie group's last member
    avg_rank = ends - (counts.to(torch.float64) - 1.0) / 2.0  # mean rank within each tie group
    ranks = avg_rank[inverse]  # (N,) in sorted order
    rank_sum_pos = float((ranks * y_t[order]).sum())
    return (rank_sum_pos - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg)


def log_loss(y: torch.Tensor, logits: torch.Tensor) -> float:
    """Mean binary log loss of sigmoid(logits), computed from the logits (no clipping needed)."""
    y64 = y.detach().reshape(-1).to("cpu", torch.float64)
    z64 = logits.detach().reshape(-1).to("cpu", torch.float64)
    if y64.numel() == 0:
        return math.nan
    return float(F.binary_cross_entropy_with_logits(z64, y64))


@torch.no_grad()
def predict_logits(model: DCNModel, encoded: Encoded, *, batch_size: int = 65536) -> torch.Tensor:
    """Logits (N,) of every row of ``encoded``, in row order, on the model's device."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    try:
        for start in range(0, len(encoded), batch_size):
            part = encoded.index(slice(start, start + batch_size))
            if part.device != device:
                part = part.to(device)
            out.append(model(part.cat, part.dense, part.multi).float())
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, device=device)


def evaluate(model: DCNModel, encoded: Encoded, *, batch_size: int = 65536) -> dict[str, float]:
    """``{"auc": ..., "logloss": ...}`` of ``model`` on ``encoded`` (NaN for an empty split or one class)."""
    logits = predict_logits(model, encoded, batch_size=batch_size)
    y = encoded.y
    return {"auc": auc_score(y, logits), "logloss": log_loss(y, logits)}


# --------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Progress:
    """What the progress callback receives, every few steps and at the end of every epoch."""

    step: int  # optimizer steps so far in this run
    epoch: int  # 1-based epoch being trained
    epoch_step: int  # steps done in this epoch
    steps_per_epoch: int
    loss: float  # mean training log loss since the previous tick (no L2 term)
    examples_per_s: float  # training examples per second in this epoch so far (validation excluded)
    metrics: dict[str, Any] | None = None  # at epoch end: {"val": {"auc", "logloss"}, "best_epoch", ...}
    seed: int = 0
    run: int = 0  # index of the seed being trained (0-based)
    runs: int = 1  # number of seeds in this call
    row: dict[str, Any] | None = None  # at epoch end: the row fit appends to TrainResult.history (same dict)
    examples: int = 0  # training examples processed in this run so far
    train_s: float = 0.0  # seconds spent in training steps in this run so far (validation excluded)

    @property
    def run_examples_per_s(self) -> float:
        """examples / train_s so far: the measure :attr:`TrainResult.examples_per_s` reports at the end."""
        return self.examples / self.train_s if self.train_s > 0 else 0.0


def _metrics_json(m: dict[str, float]) -> dict[str, float | None]:
    return {k: finite_or_none(v) for k, v in m.items()}


@dataclass
class TrainResult:
    """One training run. ``model`` holds the best epoch's weights (or the last good ones after a fault)."""

    model: DCNModel
    config: TrainConfig
    seed: int
    device: str
    val: dict[str, float]  # best epoch's validation metrics
    test: dict[str, float]  # test metrics of the best epoch's weights, scored once at the end
    best_epoch: int  # 1-based; 0 when no epoch was validated
    epochs: int  # epochs run (a stopped partial epoch counts)
    history: list[dict[str, Any]]  # one entry per epoch: train loss, val metrics, time, examples/s
    wall_s: float  # whole run, validation and test scoring included
    train_s: float  # time in training steps only
    examples: int  # training examples processed
    stopped: str  # early_stopping | max_epochs | should_stop | fault
    fault: str | None = None  # message when training stopped on a fault (non-finite loss)

    @property
    def examples_per_s(self) -> float:
        """Training examples per second over the whole run's training steps (validation excluded)."""
        return self.examples / self.train_s if self.train_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        """The CLI's result object (issue 2 contract), plus seed, stop reason, fault and train time."""
        return {
            "test": _metrics_json(self.test),
            "val": _metrics_json(self.val),
            "epochs": self.epochs,
            "best_epoch": self.best_epoch,
            "wall_s": round(self.wall_s, 3),
            "device": self.device,
            "examples_per_s": round(self.examples_per_s, 1),
            "seed": self.seed,
            "train_s": round(self.train_s, 3),
            "stopped": self.stopped,
            "fault": self.fault,
        }


def _mean_std(values: list[float]) -> dict[str, float | None]:
    v = [x for x in values if math.isfinite(x)]
    if not v:
        return {"mean": None, "std": None}
    std = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
    return {"mean": float(np.mean(v)), "std": std}


@dataclass
class SeedsResult:
    """Several seeds of one recipe (paper Table 6 style: mean ± sample std over runs)."""

    runs: list[TrainResult]
    wall_s: float

    @property
    def best(self) -> TrainResult:
        """The run with the lowest validation log loss (the one worth saving; never chosen on test)."""
        ok = [r for r in self.runs if math.isfinite(r.val.get("logloss", math.nan))]
        return min(ok, key=lambda r: r.val["logloss"]) if ok else self.runs[0]

    @property
    def fault(self) -> str | None:
        faults = [f"seed {r.seed}: {r.fault}" for r in self.runs if r.fault]
        return "; ".join(faults) or None

    def summary(self, split: str) -> dict[str, dict[str, float | None]]:
        return {k: _mean_std([getattr(r, split).get(k, math.nan) for r in self.runs]) for k in ("auc", "logloss")}

    def to_json(self) -> dict[str, Any]:
        """Issue 2's several-seeds form: auc/logloss as {"mean", "std"}, each run's object in "runs"."""
        if len(self.runs) == 1:
            return self.runs[0].to_json()
        examples = sum(r.examples for r in self.runs)
        train_s = sum(r.train_s for r in self.runs)
        best = self.best
        return {
            "test": self.summary("test"),
            "val": self.summary("val"),
            "epochs": sum(r.epochs for r in self.runs),
            "best_epoch": best.best_epoch,
            "wall_s": round(self.wall_s, 3),
            "device": self.runs[0].device,
            "examples_per_s": round(examples / train_s, 1) if train_s > 0 else 0.0,
            "seeds": [r.seed for r in self.runs],
            "best_seed": best.seed,
            "fault": self.fault,
            "runs": [r.to_json() for r in self.runs],
        }


# --------------------------------------------------------------------------------------------------
# The flat parameter buffer


class _FlatParams:
    """Re-points a model's parameters into one flat buffer and their gradients into another.

    Layout: [categorical tables (spec order) | other embedding tables | kernels | biases and the rest],
    so the L2 terms are one op each and the categorical tables form one (Σ vocab, e) block when their
    sizes agree (see :class:`_FastX0`).
    Values, shapes and the model's state-dict keys do not change; :meth:`release` gives every
    parameter its own storage back (safetensors refuses tensors that share memory).
    """

    def __init__(self, model: DCNModel) -> None:
        emb_ids = {id(p) for p in model.embedding.parameters()}
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        tables = model.embedding.tables
        cat_tables: list[torch.Tensor] = [
            cast(torch.nn.Embedding, tables[f.name]).weight for f in model.spec.by_kind("categorical")
        ]
        cat_ids = {id(p) for p in cat_tables}
        emb = cat_tables + [cast(torch.Tensor, p) for n, p in named if id(p) in emb_ids and id(p) not in cat_ids]
        kernels: list[torch.Tensor] = [p for n, p in named if id(p) not in emb_ids and not _is_bias(n)]
        rest: list[torch.Tensor] = [p for n, p in named if id(p) not in emb_ids and _is_bias(n)]
        self.params = emb + kernels + rest
        if not self.params:
            raise ConfigError("the model has no trainable parameters")
        p0 = self.params[0]
        n = sum(p.numel() for p in self.params)
        self.data = torch.empty(n, dtype=p0.dtype, device=p0.device)
        self.grad = torch.zeros(n, dtype=p0.dtype, device=p0.device)
        offset = 0
        for p in self.params:
            k = p.numel()
            self.data[offset : offset + k].copy_(p.detach().reshape(-1))
            p.data = self.data[offset : offset + k].view_as(p)
            p.grad = self.grad[offset : offset + k].view_as(p)
            offset += k
        n_emb = sum(p.numel() for p in emb)
        n_ker = sum(p.numel() for p in kernels)
        self.emb = slice(0, n_emb)
        self.kernels = slice(n_emb, n_emb + n_ker)
        self.n_cat_rows = sum(int(p.shape[0]) for p in cat_tables)  # categorical tables lead the buffer

    def release(self) -> None:
        for p in self.params:
            p.data = p.data.clone()
            p.grad = None


class _FlatAdam:
    """Adam (the algorithm of ``torch.optim.Adam``, no weight decay) on one flat parameter tensor.

    On CPU and CUDA it calls the same fused kernel as ``torch.optim.Adam(fused=True)`` — one pass over
    the buffer per step — without ``torch.optim``'s per-step bookkeeping (or its import of
    ``torch._dynamo``, seconds at start-up). Elsewhere (MPS) it runs the textbook update.
    """

    def __init__(
        self, param: torch.Tensor, grad: torch.Tensor, *, lr: float, betas: tuple[float, float], eps: float
    ) -> None:
        self.param, self.grad = param, grad
        self.lr, self.betas, self.eps = lr, betas, eps
        self.m = torch.zeros_like(param)  # first moment
        self.v = torch.zeros_like(param)  # second moment
        self.t = 0
        self.fused = param.device.type in ("cpu", "cuda") and hasattr(torch, "_fused_adam_")
        self._step_t = torch.zeros((), dtype=torch.float32, device=param.device)

    def step(self) -> None:
        b1, b2 = self.betas
        self.t += 1
        if self.fused:
            self._step_t += 1
            torch._fused_adam_(
                [self.param],
                [self.grad],
                [self.m],
                [self.v],
                [],
                [self._step_t],
                lr=self.lr,
                beta1=b1,
                beta2=b2,
                weight_decay=0.0,
                eps=self.eps,
                amsgrad=False,
                maximize=False,
            )
            return
        g = self.grad
        self.m.lerp_(g, 1.0 - b1)  # m ← β1 m + (1 − β1) g
        self.v.mul_(b2).addcmul_(g, g, value=1.0 - b2)  # v ← β2 v + (1 − β2) g²
        bc1, bc2 = 1.0 - b1**self.t, 1.0 - b2**self.t
        denom = (self.v.sqrt() / math.sqrt(bc2)).add_(self.eps)
        self.param.addcdiv_(self.m, denom, value=-self.lr / bc1)


class _GatherRows(torch.autograd.Function):
    """Rows of the stacked categorical tables; backward adds into the flat gradient directly.

    ``nn.Embedding``'s backward builds a zero-filled gradient the size of each table and autograd then
    adds it into ``.grad``: three passes over every table per step for B·F touched rows. Here the
    touched rows' gradients go straight into the flat gradient buffer with one ``index_add_``.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, anchor: torch.Tensor, table: torch.Tensor, grad_table: torch.Tensor, rows: torch.Tensor
    ) -> torch.Tensor:
        ctx.grad_table = grad_table
        ctx.save_for_backward(rows)
        return table.index_select(0, rows)  # (B·F, e)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[None, None, None, None]:  # type: ignore[override]
        (rows,) = ctx.saved_tensors
        ctx.grad_table.index_add_(0, rows, g.to(ctx.grad_table.dtype))
        return None, None, None, None


class _FastX0:
    """x0 for training when every categorical field has the same embedding size (the common case).

    The categorical tables sit back to back at the start of the flat buffer, so all their lookups are
    one gather from a (Σ vocab, e) view with per-field row offsets; multivalent and dense fields go
    through the model's own embedding code. The result equals ``model.embedding(cat, dense, multi)``.
    """

    def __init__(self, model: DCNModel, flat: _FlatParams) -> None:
        spec = model.spec
        cats = spec.by_kind("categorical")
        dims = {f.embedding_dim for f in cats}
        self.enabled = len(dims) == 1
        if not self.enabled:
            return
        e = dims.pop()
        self.e, self.n_cat = e, len(cats)
        rows = flat.n_cat_rows
        self.table = flat.data[: rows * e].view(rows, e)  # (Σ vocab, e)
        self.grad_table = flat.grad[: rows * e].view(rows, e)
        starts = torch.tensor([0] + [f.vocab_size for f in cats[:-1]], dtype=torch.int64).cumsum(0)
        self.offsets = starts.to(flat.data.device)  # (F,)
        self.anchor = torch.zeros((), device=flat.data.device, requires_grad=True)
        self.all_cat = len(cats) == len(spec.fields)
        self.embedding = model.embedding

    def __call__(self, batch: Encoded) -> torch.Tensor:
        B = batch.cat.shape[0]
        rows = (batch.cat + self.offsets).reshape(-1)  # (B·F,)
        emb = _GatherRows.apply(self.anchor, self.table, self.grad_table, rows).view(B, self.n_cat * self.e)
        if self.all_cat:
            return emb  # (B, d)
        parts, e = [], self.e
        for kind, name, j in self.embedding._plan:
            if kind == "categorical":
                parts.append(emb[:, j * e : (j + 1) * e])  # (B, e)
            elif kind == "multivalent":
                ids = batch.multi[j]  # (B, L)
                rows_m = self.embedding.tables[name](ids.clamp(min=0))  # (B, L, e_f)
                mask = (ids >= 0).unsqueeze(-1).to(rows_m.dtype)  # (B, L, 1)
                parts.append((rows_m * mask).sum(1) / mask.sum(1).clamp(min=1.0))
            else:
                parts.append(batch.dense[:, j : j + 1])  # (B, 1)
        return torch.cat(parts, dim=1)  # (B, d)


def _unpenalised(n: int, regions: list[tuple[slice, float]]) -> list[slice]:
    """The parts of a flat buffer of length ``n`` outside the L2-penalised ``regions``.

    >>> _unpenalised(10, [(slice(0, 4), 1.0), (slice(6, 8), 1.0)])
    [slice(4, 6, None), slice(8, 10, None)]
    """
    out, pos = [], 0
    for r in sorted((r for r, _ in regions), key=lambda r: r.start):
        if r.start > pos:
            out.append(slice(pos, r.start))
        pos = max(pos, r.stop)
    if pos < n:
        out.append(slice(pos, n))
    return out


def _is_bias(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return last in ("bias", "b")


# --------------------------------------------------------------------------------------------------
# Training


MAX_PARAMETERS = 1 << 28  # trainable parameters dcnviz trains (≈ 8 GB with gradients, Adam and kept copies)


def check_model_size(spec: FeatureSpec, model_config: ModelConfig) -> int:
    """The model's parameter count, checked before any memory is allocated (built on the meta device).

    Raises :class:`ConfigError` naming the largest part when the count exceeds :data:`MAX_PARAMETERS`.
    """
    with torch.device("meta"):
        model = DCNModel(spec, model_config)
    parts = {
        "embedding tables (embedding size × vocabularies)": model.embedding,
        "cross network (x0 width d, cross layers, rank)": getattr(model, "cross", None),
        "deep tower (hidden sizes)": getattr(model, "deep", None),
    }
    sizes = {k: sum(p.numel() for p in m.parameters()) if m is not None else 0 for k, m in parts.items()}
    total = sum(p.numel() for p in model.parameters())
    if total > MAX_PARAMETERS:
        part, n = max(sizes.items(), key=lambda kv: kv[1])
        raise ConfigError(
            f"the model would have {total:,} parameters, more than the {MAX_PARAMETERS:,} dcnviz trains; "
            f"the largest part is the {part} with {n:,} (x0 width d={spec.d}): use smaller sizes"
        )
    return total


def build_model(spec: FeatureSpec, model_config: ModelConfig, seed: int) -> DCNModel:
    """A fresh model initialised from ``seed`` (the global RNG is left as it was); its size is checked first."""
    check_model_size(spec, model_config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DCNModel(spec, model_config)


def _is_oom(e: BaseException) -> bool:
    oom = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(e, oom):
        return True
    msg = str(e).lower()
    return isinstance(e, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg)


def _batches(data: Encoded, batch_size: int) -> Iterator[Encoded]:
    for start in range(0, len(data), batch_size):
        yield data.index(slice(start, start + batch_size))


def fit(
    model: DCNModel,
    splits: DatasetSplits,
    config: TrainConfig | None = None,
    *,
    seed: int | None = None,
    callback: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress_every: int | None = None,
    run: int = 0,
    runs: int = 1,
) -> TrainResult:
    """Train ``model`` on ``splits.train``; early-stop on ``splits.val``; score ``splits.test`` at the end.

    Args:
        model: a DCNModel over ``splits.spec`` (moved to the training device; stays there).
        splits: encoded train/val/test (CPU or device tensors).
        config: the recipe (default: :class:`TrainConfig`'s shipped defaults).
        seed: seed of the batch order (default: ``config.seeds[0]``); the model's init is the caller's.
        callback: gets a :class:`Progress` every ``progress_every`` steps (default ≈ 50 per epoch) and at
            every epoch end (with validation metrics and the epoch's history row).
        should_stop: polled at every tick; returning True ends training, keeping the best model so far
            (a partial epoch is validated and competes for best).

    Returns a :class:`TrainResult`. A non-finite loss or gradient stops training with
    ``stopped == "fault"`` and a message in ``fault``; the model then holds the best validated weights,
    or the last weights whose loss and gradient were finite if no epoch finished. Running out of memory
    raises :class:`TrainingError` suggesting a smaller batch.
    """
    config = (config or TrainConfig()).resolved(len(splits.train))
    seed = config.seeds[0] if seed is None else seed
    if model.spec != splits.spec:
        raise ConfigError("the model's FeatureSpec differs from the data's; encode the data with the model's spec")
    if len(splits.train) == 0:
        raise ConfigError("the training split is empty")
    device = resolve_device(config.device)
    if config.amp and device.type != "cuda":
        raise ConfigError(f"`amp` (bfloat16 mixed precision) needs a CUDA device; got device={device.type}")
    if config.compile and device.type != "cuda":
        raise ConfigError(f"`compile` (torch.compile of the training step) is for CUDA; got device={device.type}")
    hooks = _Hooks(callback, should_stop, progress_every, seed, run, runs)
    t_start = time.perf_counter()
    try:
        return _fit(model, splits, config, device, hooks, t_start)
    except TrainingError:
        raise
    except (RuntimeError, MemoryError) as e:
        if isinstance(e, MemoryError) or _is_oom(e):
            b = config.batch_for(len(splits.train))
            raise TrainingError(
                f"out of memory on {device.type} at batch size {b}; try a smaller batch, e.g. --batch-size "
                f"{max(1, b // 2)} ({'or --device cpu' if device.type != 'cpu' else 'or a smaller model'})"
            ) from None
        raise


@dataclass(frozen=True)
class _Hooks:
    """How one :func:`fit` call talks to its caller."""

    callback: Callable[[Progress], None] | None
    should_stop: Callable[[], bool] | None
    progress_every: int | None
    seed: int
    run: int
    runs: int


@dataclass
class _Epoch:
    """What one pass over the training split did (see :meth:`_Trainer.train_epoch`)."""

    steps: int = 0  # optimizer steps taken in this epoch
    loss_sum: float = 0.0  # Σ over verified ticks of (mean tick loss × tick examples)
    count: int = 0  # examples whose loss is in loss_sum
    train_s: float = 0.0  # seconds in training steps
    interrupted: bool = False  # should_stop ended it early
    fault: str | None = None  # a non-finite loss or gradient ended it

    @property
    def train_logloss(self) -> float | None:
        return finite_or_none(self.loss_sum / self.count) if self.count else None


def _l2_regions(flat: _FlatParams, config: TrainConfig, n: int) -> tuple[list[tuple[slice, float]], list[slice]]:
    """(penalised regions of the flat buffer with their gradient factor 2λ, the unpenalised rest); ``n``
    is the number of training rows (the data-size aware embedding λ)."""
    l2_emb = config.l2_embedding * (config.l2_embedding_rows / n if config.l2_embedding_rows is not None else 1.0)
    regions = [(r, 2.0 * lam) for r, lam in ((flat.emb, l2_emb), (flat.kernels, config.l2)) if lam > 0]
    return regions, _unpenalised(flat.data.numel(), regions)


def _seed_l2_gradient(flat: _FlatParams, regions: list[tuple[slice, float]], free: list[slice]) -> None:
    """Start a step's gradient at the L2 term's: 2λW where λ‖W‖² is penalised (§3.4), 0 elsewhere.

    Backward then accumulates the log-loss gradient on top (one pass instead of zero, then add).
    """
    for region in free:
        flat.grad[region].zero_()
    for region, alpha in regions:
        torch.mul(flat.data[region], alpha, out=flat.grad[region])


class _Trainer:
    """The state of one :func:`fit` call: flat buffers, optimiser, weight average, the weights worth keeping.

    One optimizer step is :meth:`step`; one pass over the data is :meth:`train_epoch` (which checks the
    loss at every progress tick); :meth:`validate` scores an epoch and keeps the best weights;
    :meth:`recover` rolls back to the last weights known to be finite after a fault.
    """

    def __init__(
        self, model: DCNModel, splits: DatasetSplits, config: TrainConfig, device: torch.device, hooks: _Hooks
    ) -> None:
        model.to(device)
        self.model, self.config, self.device, self.hooks = model, config, device, hooks
        self.train = splits.train.to(device)
        self.val = splits.val.to(device)
        self.batch_size = config.batch_for(len(self.train))
        self.steps_per_epoch = -(-len(self.train) // self.batch_size)
        self.tick = hooks.progress_every or max(1, self.steps_per_epoch // 50)
        self.gen = torch.Generator().manual_seed(hooks.seed)  # CPU generator: the same batch order on every device
        self.flat = flat = _FlatParams(model)
        self.opt = _FlatAdam(flat.data, flat.grad, lr=config.lr, betas=config.adam_betas, eps=config.adam_eps)
        self.ema = flat.data.clone() if config.ema_decay is not None else None
        self.ema_steps = 0
        self.forward = torch.compile(model) if config.compile else model
        self.l2_regions, self.free = _l2_regions(flat, config, len(self.train))
        fast_x0 = _FastX0(model, flat) if FAST_X0 and not config.compile else None
        self.fast_x0 = fast_x0 if fast_x0 is not None and fast_x0.enabled else None
        self.history: list[dict[str, Any]] = []
        self.best_loss, self.best_epoch, self.since_best = math.inf, 0, 0
        self.best_val: dict[str, float] = {"auc": math.nan, "logloss": math.nan}
        self.best_weights: torch.Tensor | None = None
        self.last_good = flat.data.clone()  # weights whose losses and gradients so far were all finite
        self.last_good_t = time.perf_counter()
        self.global_step, self.examples, self.train_s, self.epoch = 0, 0, 0.0, 0
        self.stopped = "max_epochs"  # early_stopping | max_epochs | should_stop | fault
        self.fault: str | None = None

    # -- one step ------------------------------------------------------------------------------------

    def step(self, batch: Encoded) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward, L2 gradient, backward, clipping and the Adam step; (loss, gradient norm) on the device."""
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.config.amp else contextlib.nullcontext()
        with autocast:
            x0 = self.fast_x0(batch) if self.fast_x0 is not None else None  # (B, d)
            logits = self.model.head(x0) if x0 is not None else self.forward(batch.cat, batch.dense, batch.multi)
        loss = F.binary_cross_entropy_with_logits(logits.float(), batch.y)  # logits: (B,)
        _seed_l2_gradient(self.flat, self.l2_regions, self.free)
        loss.backward()
        norm = torch.linalg.vector_norm(self.flat.grad)
        if self.config.clip_norm is not None:
            self.flat.grad.mul_(torch.clamp(self.config.clip_norm / (norm + 1e-6), max=1.0))
        self.opt.step()
        if self.ema is not None:
            self.ema_steps += 1
            d = min(self.config.ema_decay or 0.0, (1.0 + self.ema_steps) / (10.0 + self.ema_steps))
            self.ema.lerp_(self.flat.data, 1.0 - d)
        return loss.detach(), norm.detach()

    # -- one epoch -----------------------------------------------------------------------------------

    def train_epoch(self, epoch: int) -> _Epoch:
        """One pass over the shuffled training split; the loss is read back (and checked) once per tick."""
        out = _Epoch()
        t_epoch = time.perf_counter()
        perm = torch.randperm(len(self.train), generator=self.gen).to(self.device)
        data = self.train.index(perm)  # one gather per epoch; batches are slices
        loss_acc = torch.zeros((), device=self.device)
        norm_acc = torch.zeros((), device=self.device)
        tick_steps, tick_examples = 0, 0
        for i, batch in enumerate(_batches(data, self.batch_size)):
            loss, norm = self.step(batch)
            nb = len(batch)
            loss_acc += loss * nb
            norm_acc += norm
            self.global_step += 1
            out.steps, tick_steps, tick_examples = i + 1, tick_steps + 1, tick_examples + nb
            last = i == self.steps_per_epoch - 1
            if tick_steps < self.tick and not last:
                continue
            total = float(loss_acc)  # the only host sync: once per tick
            self.examples += tick_examples
            if not (math.isfinite(total) and math.isfinite(float(norm_acc))):
                out.fault = self.recover(epoch, first=self.global_step - tick_steps + 1)
                break
            self._verified(last)
            out.loss_sum += total
            out.count += tick_examples
            elapsed = time.perf_counter() - t_epoch
            self._report(epoch, out, total / tick_examples, out.count / max(elapsed, 1e-9), self.train_s + elapsed)
            loss_acc.zero_()
            norm_acc.zero_()
            tick_steps, tick_examples = 0, 0
            if not last and self.hooks.should_stop is not None and self.hooks.should_stop():
                out.interrupted = True
                break
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        out.train_s = time.perf_counter() - t_epoch
        self.train_s += out.train_s
        return out

    def _verified(self, last: bool) -> None:
        """Every step up to here was finite: refresh the rollback snapshot (at most every SNAPSHOT_S)."""
        now = time.perf_counter()
        if now - self.last_good_t > SNAPSHOT_S or last:
            self.last_good.copy_(self.flat.data)
            self.last_good_t = now

    def _report(self, epoch: int, out: _Epoch, loss: float, speed: float, train_s: float, **end: Any) -> None:
        """Send a :class:`Progress` (at a tick; ``end`` holds ``metrics`` and ``row`` at an epoch end)."""
        h = self.hooks
        if h.callback is None:
            return
        h.callback(
            Progress(
                step=self.global_step,
                epoch=epoch,
                epoch_step=out.steps,
                steps_per_epoch=self.steps_per_epoch,
                loss=loss,
                examples_per_s=speed,
                seed=h.seed,
                run=h.run,
                runs=h.runs,
                examples=self.examples,
                train_s=train_s,
                **end,
            )
        )

    # -- faults, validation, the weights kept ---------------------------------------------------------

    def recover(self, epoch: int, *, first: int) -> str:
        """A non-finite loss or gradient between steps ``first`` and now: roll back to the last good weights."""
        self.flat.data.copy_(self.last_good)
        if self.ema is not None:
            self.ema.copy_(self.last_good)
        self.stopped = "fault"
        return (
            f"non-finite loss or gradient in epoch {epoch} (between steps {first} and {self.global_step});"
            " training stopped"
        )

    def _eval_weights(self) -> contextlib.AbstractContextManager[None]:
        """Swap the averaged weights in for evaluation (no-op without EMA)."""
        ema = self.ema
        if ema is None:
            return contextlib.nullcontext()

        @contextlib.contextmanager
        def swap() -> Iterator[None]:
            saved = self.flat.data.clone()
            self.flat.data.copy_(ema)
            try:
                yield
            finally:
                self.flat.data.copy_(saved)

        return swap()

    def validate(self, epoch: int, out: _Epoch) -> tuple[dict[str, Any], dict[str, float], bool]:
        """Score the epoch on the validation split, keep its weights if best; (history row, metrics, improved)."""
        with self._eval_weights():
            val_m = evaluate(self.model, self.val, batch_size=self.config.eval_batch_size)
        improved = math.isfinite(val_m["logloss"]) and val_m["logloss"] < self.best_loss
        if improved:
            self.best_loss, self.best_epoch, self.best_val, self.since_best = val_m["logloss"], epoch, val_m, 0
            self.best_weights = (self.ema if self.ema is not None else self.flat.data).clone()
        else:
            self.since_best += 1
        row = {
            "epoch": epoch,
            "train_logloss": out.train_logloss,
            "val": _metrics_json(val_m),
            "epoch_s": round(out.train_s, 4),
            "examples_per_s": round(out.count / out.train_s, 1) if out.train_s > 0 else None,
            "lr": self.opt.lr,
            "partial": out.interrupted,
        }
        self.history.append(row)
        return row, val_m, improved

    def _fault_row(self, epoch: int, out: _Epoch) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "train_logloss": out.train_logloss,
            "val": None,
            "epoch_s": round(out.train_s, 4),
            "examples_per_s": None,
            "lr": self.opt.lr,
            "partial": True,
            "fault": out.fault,
        }

    # -- the whole run -------------------------------------------------------------------------------

    def train_epochs(self) -> None:
        """Epochs until max epochs, early stopping, a stop request or a fault."""
        self.model.train()
        stop = self.hooks.should_stop
        for epoch in range(1, self.config.epochs + 1):
            self.epoch = epoch
            self.opt.lr = self.config.lr * self.config.lr_decay ** (epoch - 1)
            out = self.train_epoch(epoch)
            if out.fault is not None:
                self.fault = out.fault
                self.history.append(self._fault_row(epoch, out))
                return
            row, val_m, improved = self.validate(epoch, out)
            metrics = {"val": val_m, "best_epoch": self.best_epoch, "best_val": self.best_val, "improved": improved}
            loss = out.loss_sum / out.count if out.count else math.nan
            speed = out.count / out.train_s if out.train_s > 0 else 0.0
            self._report(epoch, out, loss, speed, self.train_s, metrics=metrics, row=row)
            if out.interrupted:
                self.stopped = "should_stop"
                return
            if self.since_best >= self.config.patience:
                self.stopped = "early_stopping"
                return
            if stop is not None and epoch < self.config.epochs and stop():
                self.stopped = "should_stop"
                return

    def keep_best(self) -> None:
        """Load the best validated weights (after a fault: those, or the last good ones) into the model."""
        if self.best_weights is not None:
            self.flat.data.copy_(self.best_weights)
        elif self.ema is not None and self.fault is None:
            self.flat.data.copy_(self.ema)
        if self.fault is not None:
            kept = (
                f"kept the model of epoch {self.best_epoch} (best validated)"
                if self.best_epoch
                else "kept the last good weights"
            )
            self.fault = f"{self.fault}; {kept}"
            if self.history:
                self.history[-1]["fault"] = self.fault


def _fit(
    model: DCNModel,
    splits: DatasetSplits,
    config: TrainConfig,
    device: torch.device,
    hooks: _Hooks,
    t_start: float,
) -> TrainResult:
    trainer = _Trainer(model, splits, config, device, hooks)
    try:
        trainer.train_epochs()
        trainer.keep_best()
    finally:
        trainer.flat.release()
    model.eval()
    test_m = evaluate(model, splits.test.to(device), batch_size=config.eval_batch_size)
    return TrainResult(
        model=model,
        config=config,
        seed=hooks.seed,
        device=device.type,
        val=trainer.best_val,
        test=test_m,
        best_epoch=trainer.best_epoch,
        epochs=trainer.epoch,
        history=trainer.history,
        wall_s=time.perf_counter() - t_start,
        train_s=trainer.train_s,
        examples=trainer.examples,
        stopped=trainer.stopped,
        fault=trainer.fault,
    )


def fit_seeds(
    model_config: ModelConfig,
    splits: DatasetSplits,
    config: TrainConfig | None = None,
    *,
    callback: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    progress_every: int | None = None,
) -> SeedsResult:
    """One fresh model per seed in ``config.seeds`` (init and batch order from the seed), trained by :func:`fit`.

    ``should_stop`` ends the current run (keeping its best model) and skips the remaining seeds.
    """
    config = config or TrainConfig()
    t0 = time.perf_counter()
    results = []
    for i, seed in enumerate(config.seeds):
        model = build_model(splits.spec, model_config, seed)
        r = fit(
            model,
            splits,
            config,
            seed=seed,
            callback=callback,
            should_stop=should_stop,
            progress_every=progress_every,
            run=i,
            runs=len(config.seeds),
        )
        results.append(r)
        if r.stopped == "should_stop":
            break
    return SeedsResult(runs=results, wall_s=time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------------
# One training run, from data options to the model file (the CLI and the app both use it)


@dataclass(frozen=True)
class Provenance:
    """Who made a model file: stored in its ``extra`` metadata, apart from what the training produced."""

    made_by: str  # "python -m dcnviz train" | "dcnviz app"
    argv: tuple[str, ...] | None = None  # the command line (CLI)
    label: str | None = None  # the name shown in the app's model picker


@dataclass
class TrainingRun:
    """The outcome of :func:`run`: the seeds' results and everything the model file records about them."""

    options: Any  # dcnviz.data.DataOptions the data was loaded with
    model_config: ModelConfig
    config: TrainConfig
    result: SeedsResult
    data_info: dict[str, Any]  # DatasetSplits.info: source, options, files, rows, label balance
    wall_s: float  # the whole run: data loading, training and test scoring

    @property
    def best(self) -> TrainResult:
        """The run worth saving (lowest validation log loss over seeds)."""
        return self.result.best

    @property
    def fault(self) -> str | None:
        return self.result.fault

    def summary(self) -> dict[str, Any]:
        """The CLI's JSON object (issue 2 contract): ``wall_s`` is the whole run, ``train_wall_s`` fit's part."""
        out = self.result.to_json()
        out["wall_s"] = round(self.wall_s, 3)
        out["train_wall_s"] = round(self.result.wall_s, 3)
        return out

    def metadata(self, provenance: Provenance) -> dict[str, Any]:
        """The keyword arguments of :func:`dcnviz.checkpoint.model_to_bytes` for the best run's model."""
        best = self.best
        extra: dict[str, Any] = {"made_by": provenance.made_by}
        if provenance.argv is not None:
            extra["argv"] = list(provenance.argv)
        if provenance.label is not None:
            extra["label"] = provenance.label
        extra["seed"] = best.seed
        return {
            "train_config": self.config.to_json(),
            "metrics": {**self.summary(), "saved_seed": best.seed},
            "history": best.history,
            "data_info": self.data_info,
            "extra": extra,
        }

    def to_bytes(self, provenance: Provenance) -> bytes:
        """The model file (safetensors) of the best run, with its metadata."""
        from dcnviz.checkpoint import model_to_bytes

        return model_to_bytes(self.best.model.to("cpu"), **self.metadata(provenance))

    def save(self, path: str | os.PathLike[str], provenance: Provenance) -> Path:
        """Write the model file atomically (temp file, then rename)."""
        from dcnviz.checkpoint import write_atomic

        return write_atomic(path, self.to_bytes(provenance))


def run(
    options: Any,
    model_config: ModelConfig,
    config: TrainConfig,
    *,
    callback: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_data: Callable[[DatasetSplits], None] | None = None,
    progress_every: int | None = None,
) -> TrainingRun:
    """Load the data of ``options`` (:class:`dcnviz.data.DataOptions`), train every seed, return the outcome.

    ``on_data`` sees the loaded splits before training starts (the CLI prints their size, the app shows
    it); ``callback`` and ``should_stop`` are :func:`fit`'s. The CLI and the app both train through here,
    so a model made by either records the same metadata (:meth:`TrainingRun.metadata`).
    """
    from dcnviz.data import load_splits

    t0 = time.perf_counter()
    splits = load_splits(options)
    config = config.resolved(len(splits.train))  # the model file records the batch size used
    if on_data is not None:
        on_data(splits)
    result = fit_seeds(
        model_config, splits, config, callback=callback, should_stop=should_stop, progress_every=progress_every
    )
    return TrainingRun(
        options=options,
        model_config=model_config,
        config=config,
        result=result,
        data_info=splits.info,
        wall_s=time.perf_counter() - t0,
    )


__all__ = [
    "DEVICES",
    "MAX_PARAMETERS",
    "Progress",
    "Provenance",
    "SeedsResult",
    "TrainConfig",
    "TrainResult",
    "TrainingRun",
    "auc_score",
    "build_model",
    "check_model_size",
    "evaluate",
    "fit",
    "fit_seeds",
    "log_loss",
    "predict_logits",
    "resolve_device",
    "run",
]
