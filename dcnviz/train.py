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

Public API::

    TrainConfig(...)                                   # the recipe; defaults = the shipped recipe
    fit(model, splits, config, *, seed, callback, should_stop) -> TrainResult
    fit_seeds(model_config, splits, config, *, ...)   -> SeedsResult   (mean ± std over seeds)
    evaluate(model, encoded, *, batch_size)            -> {"auc": ..., "logloss": ...}
    auc_score(y, scores), log_loss(y, logits), resolve_device(name)
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F

from dcnviz.encoded import DatasetSplits, Encoded
from dcnviz.errors import ConfigError, TrainingError
from dcnviz.model import DCNModel, ModelConfig
from dcnviz.spec import FeatureSpec

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")
FAST_X0 = True  # one gather for all categorical lookups during training (False: the model's own forward)
SNAPSHOT_S = 1.0  # seconds between snapshots of the last weights known to be finite (fault recovery)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How to train one model. Defaults are the recipe dcnviz ships (see docs/training.md).

    >>> c = TrainConfig(lr=2e-3, seeds=(1, 2))
    >>> TrainConfig.from_json(c.to_json()) == c
    True
    """

    lr: float = 5e-3  # Adam learning rate
    batch_size: int = 512  # training batch size B
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

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["adam_betas"] = list(self.adam_betas)
        d["seeds"] = list(self.seeds)
        return d

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> TrainConfig:
        if not isinstance(obj, dict):
            raise ConfigError(f"train config must be a JSON object; got {type(obj).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(obj) - names
        if unknown:
            raise ConfigError(f"unknown train config keys {sorted(unknown)}")
        kw = dict(obj)
        if "l2_embedding" in kw and "l2_embedding_rows" not in kw:
            kw["l2_embedding_rows"] = None  # recorded before the data-size aware L2: λ was per step
        for key in ("adam_betas", "seeds"):
            if key in kw:
                if not isinstance(kw[key], list | tuple):
                    raise ConfigError(f"`{key}` must be a list; got {kw[key]!r}")
                kw[key] = tuple(kw[key])
        try:
            return cls(**kw)
        except TypeError as e:
            raise ConfigError(f"bad train config: {e}") from None


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


def _clean(x: float) -> float | None:
    return x if isinstance(x, float) and math.isfinite(x) else None


def _metrics_json(m: dict[str, float]) -> dict[str, float | None]:
    return {k: _clean(float(v)) for k, v in m.items()}


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


def build_model(spec: FeatureSpec, model_config: ModelConfig, seed: int) -> DCNModel:
    """A fresh model initialised from ``seed`` (the global RNG is left as it was)."""
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
            every epoch end (with validation metrics).
        should_stop: polled at every tick; returning True ends training, keeping the best model so far
            (a partial epoch is validated and competes for best).

    Returns a :class:`TrainResult`. A non-finite loss or gradient stops training with
    ``stopped == "fault"`` and a message in ``fault``; the model then holds the best validated weights,
    or the last weights whose loss and gradient were finite if no epoch finished. Running out of memory
    raises :class:`TrainingError` suggesting a smaller batch.
    """
    config = config or TrainConfig()
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
    t_start = time.perf_counter()
    try:
        return _fit(model, splits, config, device, seed, callback, should_stop, progress_every, run, runs, t_start)
    except TrainingError:
        raise
    except (RuntimeError, MemoryError) as e:
        if isinstance(e, MemoryError) or _is_oom(e):
            b = config.batch_size
            raise TrainingError(
                f"out of memory on {device.type} at batch size {b}; try a smaller batch, e.g. --batch-size "
                f"{max(1, b // 2)} (or --device cpu)"
            ) from None
        raise


def _fit(
    model: DCNModel,
    splits: DatasetSplits,
    config: TrainConfig,
    device: torch.device,
    seed: int,
    callback: Callable[[Progress], None] | None,
    should_stop: Callable[[], bool] | None,
    progress_every: int | None,
    run: int,
    runs: int,
    t_start: float,
) -> TrainResult:
    model.to(device)
    train = splits.train.to(device)
    val = splits.val.to(device)
    n = len(train)
    B = config.batch_size
    steps_per_epoch = (n + B - 1) // B
    tick = progress_every or max(1, steps_per_epoch // 50)
    gen = torch.Generator().manual_seed(seed)  # CPU generator: the same batch order on every device

    flat = _FlatParams(model)
    opt = _FlatAdam(flat.data, flat.grad, lr=config.lr, betas=config.adam_betas, eps=config.adam_eps)
    ema = flat.data.clone() if config.ema_decay is not None else None
    ema_decay = config.ema_decay or 0.0
    forward = torch.compile(model) if config.compile else model
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if config.amp else contextlib.nullcontext
    clip = config.clip_norm
    l2_emb = config.l2_embedding * (config.l2_embedding_rows / n if config.l2_embedding_rows is not None else 1.0)
    l2_regions = [(r, 2.0 * lam) for r, lam in ((flat.emb, l2_emb), (flat.kernels, config.l2)) if lam > 0]
    free = _unpenalised(flat.data.numel(), l2_regions)

    fast_x0 = _FastX0(model, flat) if FAST_X0 and not config.compile else None
    if fast_x0 is not None and not fast_x0.enabled:
        fast_x0 = None

    def step(batch: Encoded) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast():
            x0 = fast_x0(batch) if fast_x0 is not None else None  # (B, d)
            logits = model.head(x0) if x0 is not None else forward(batch.cat, batch.dense, batch.multi)  # (B,)
        loss = F.binary_cross_entropy_with_logits(logits.float(), batch.y)
        # The gradient of λ‖W‖² (§3.4) is 2λW: write it where the zeroed gradient would go, and let
        # backward accumulate the log-loss gradient on top (one pass instead of zero, then add).
        for region in free:
            flat.grad[region].zero_()
        for region, alpha in l2_regions:
            torch.mul(flat.data[region], alpha, out=flat.grad[region])
        loss.backward()
        norm = torch.linalg.vector_norm(flat.grad)
        if clip is not None:
            flat.grad.mul_(torch.clamp(clip / (norm + 1e-6), max=1.0))
        opt.step()
        return loss.detach(), norm.detach()

    def eval_weights() -> contextlib.AbstractContextManager[None]:
        """Swap the averaged weights in for evaluation (no-op without EMA)."""
        if ema is None:
            return contextlib.nullcontext()

        @contextlib.contextmanager
        def swap() -> Iterator[None]:
            saved = flat.data.clone()
            flat.data.copy_(ema)
            try:
                yield
            finally:
                flat.data.copy_(saved)

        return swap()

    history: list[dict[str, Any]] = []
    best_loss, best_epoch, best_val = math.inf, 0, {"auc": math.nan, "logloss": math.nan}
    best_weights: torch.Tensor | None = None
    last_good = flat.data.clone()  # weights whose losses and gradients so far were all finite
    last_good_t = time.perf_counter()
    stopped, fault = "max_epochs", None
    global_step, examples, train_s, since_best = 0, 0, 0.0, 0
    ema_steps = 0
    epoch = 0
    model.train()
    try:
        for epoch in range(1, config.epochs + 1):
            opt.lr = config.lr * config.lr_decay ** (epoch - 1)
            t_epoch = time.perf_counter()
            epoch_train_s = 0.0
            perm = torch.randperm(n, generator=gen).to(device)
            data = train.index(perm)  # one gather per epoch; batches are slices
            loss_acc = torch.zeros((), device=device)
            norm_acc = torch.zeros((), device=device)
            epoch_loss_sum, epoch_count, tick_steps, tick_examples = 0.0, 0, 0, 0
            interrupted = False
            for i, batch in enumerate(_batches(data, B)):
                loss, norm = step(batch)
                if ema is not None:
                    ema_steps += 1
                    d = min(ema_decay, (1.0 + ema_steps) / (10.0 + ema_steps))
                    ema.lerp_(flat.data, 1.0 - d)
                nb = len(batch)
                loss_acc += loss * nb
                norm_acc += norm
                global_step += 1
                tick_steps += 1
                tick_examples += nb
                if tick_steps == tick or i == steps_per_epoch - 1:
                    total = float(loss_acc)  # the only host sync: once per tick
                    ok = math.isfinite(total) and math.isfinite(float(norm_acc))
                    elapsed = time.perf_counter() - t_epoch
                    if not ok:
                        epoch_train_s += elapsed
                        first = global_step - tick_steps + 1
                        fault = (
                            f"non-finite loss or gradient in epoch {epoch} (between steps {first} and {global_step});"
                            " training stopped"
                        )
                        flat.data.copy_(last_good)
                        if ema is not None:
                            ema.copy_(last_good)
                        examples += tick_examples
                        stopped = "fault"
                        break
                    now = time.perf_counter()
                    if now - last_good_t > SNAPSHOT_S or i == steps_per_epoch - 1:
                        last_good.copy_(flat.data)  # verified: every step up to here was finite
                        last_good_t = now
                    examples += tick_examples
                    epoch_loss_sum += total
                    epoch_count += tick_examples
                    if callback is not None:
                        callback(
                            Progress(
                                step=global_step,
                                epoch=epoch,
                                epoch_step=i + 1,
                                steps_per_epoch=steps_per_epoch,
                                loss=total / tick_examples,
                                examples_per_s=epoch_count / max(elapsed, 1e-9),
                                seed=seed,
                                run=run,
                                runs=runs,
                            )
                        )
                    loss_acc.zero_()
                    norm_acc.zero_()
                    tick_steps, tick_examples = 0, 0
                    if should_stop is not None and i < steps_per_epoch - 1 and should_stop():
                        interrupted = True
                        stopped = "should_stop"
                        break
            if device.type == "cuda":
                torch.cuda.synchronize()
            epoch_train_s = time.perf_counter() - t_epoch
            train_s += epoch_train_s
            if stopped == "fault":
                history.append(
                    {
                        "epoch": epoch,
                        "train_logloss": _clean(epoch_loss_sum / epoch_count) if epoch_count else None,
                        "val": None,
                        "epoch_s": round(epoch_train_s, 4),
                        "examples_per_s": None,
                        "lr": opt.lr,
                        "partial": True,
                        "fault": fault,
                    }
                )
                break
            with eval_weights():
                val_m = evaluate(model, val, batch_size=config.eval_batch_size)
            improved = math.isfinite(val_m["logloss"]) and val_m["logloss"] < best_loss
            if improved:
                best_loss, best_epoch, best_val, since_best = val_m["logloss"], epoch, val_m, 0
                best_weights = (ema if ema is not None else flat.data).clone()
            else:
                since_best += 1
            history.append(
                {
                    "epoch": epoch,
                    "train_logloss": _clean(epoch_loss_sum / epoch_count) if epoch_count else None,
                    "val": _metrics_json(val_m),
                    "epoch_s": round(epoch_train_s, 4),
                    "examples_per_s": round(epoch_count / epoch_train_s, 1) if epoch_train_s > 0 else None,
                    "lr": opt.lr,
                    "partial": interrupted,
                }
            )
            if callback is not None:
                callback(
                    Progress(
                        step=global_step,
                        epoch=epoch,
                        epoch_step=steps_per_epoch
                        if not interrupted
                        else (global_step - (epoch - 1) * steps_per_epoch),
                        steps_per_epoch=steps_per_epoch,
                        loss=epoch_loss_sum / epoch_count if epoch_count else math.nan,
                        examples_per_s=epoch_count / epoch_train_s if epoch_train_s > 0 else 0.0,
                        metrics={"val": val_m, "best_epoch": best_epoch, "best_val": best_val, "improved": improved},
                        seed=seed,
                        run=run,
                        runs=runs,
                    )
                )
            if interrupted:
                break
            if since_best >= config.patience:
                stopped = "early_stopping"
                break
            if should_stop is not None and epoch < config.epochs and should_stop():
                stopped = "should_stop"
                break
        # Keep the best validated weights (after a fault: those, or the last good ones).
        if best_weights is not None:
            flat.data.copy_(best_weights)
        elif ema is not None and fault is None:
            flat.data.copy_(ema)
        if fault is not None:
            kept = (
                f"kept the model of epoch {best_epoch} (best validated)" if best_epoch else "kept the last good weights"
            )
            fault = f"{fault}; {kept}"
            if history:
                history[-1]["fault"] = fault
    finally:
        flat.release()
    model.eval()
    test_m = evaluate(model, splits.test.to(device), batch_size=config.eval_batch_size)
    return TrainResult(
        model=model,
        config=config,
        seed=seed,
        device=device.type,
        val=best_val,
        test=test_m,
        best_epoch=best_epoch,
        epochs=epoch,
        history=history,
        wall_s=time.perf_counter() - t_start,
        train_s=train_s,
        examples=examples,
        stopped=stopped,
        fault=fault,
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


__all__ = [
    "DEVICES",
    "Progress",
    "SeedsResult",
    "TrainConfig",
    "TrainResult",
    "auc_score",
    "build_model",
    "evaluate",
    "fit",
    "fit_seeds",
    "log_loss",
    "predict_logits",
    "resolve_device",
]
