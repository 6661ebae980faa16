"""Fitting the synthetic regressions of §6: mean squared error, float64, Adam warm-up then L-BFGS.

What it takes to reach the paper's RMSEs of 1e-13..1e-15 for a 1-layer DCN-V2 (measurements in
docs/paper.md): float64 (float32 stops at ~1e-7 whatever the optimizer); full-batch L-BFGS with a
strong-Wolfe line search gets there ~30× sooner than Adam; a short mini-batch Adam warm-up first
escapes the saddles where an output weight v_i and its row of W are both ≈ 0 (L-BFGS alone parks f3
at RMSE ~1e-3 there); and the loss must be rescaled for PyTorch's L-BFGS, which ignores curvature
pairs with sᵀy ≤ 1e-10 and would otherwise stall near RMSE 1e-9 (see :func:`_lbfgs`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from dcnviz.errors import ConfigError, TrainingError

OPTIMIZERS: tuple[str, ...] = ("lbfgs", "adam")


@dataclass(frozen=True, kw_only=True)
class FitConfig:
    """How one regression model is trained."""

    steps: int = 500  # L-BFGS iterations (each may evaluate the loss several times) or Adam epochs
    optimizer: str = "lbfgs"  # lbfgs | adam
    lr: float = 1.0  # L-BFGS step scale (1 with the line search) or Adam's initial learning rate
    warmup_epochs: int = 0  # L-BFGS only: Adam epochs first (escapes the saddles at v_i ≈ 0, see docs)
    warmup_lr: float = 1e-2  # initial learning rate of the Adam warm-up (cosine decay to 0)
    history: int = 100  # L-BFGS history size
    batch_size: int = 256  # Adam mini-batch size (L-BFGS is full batch)
    report_every: int = 25  # iterations between progress callbacks / stop checks

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1; got steps={self.steps}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}; got optimizer={self.optimizer!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be > 0; got lr={self.lr}")
        if self.warmup_epochs < 0:
            raise ConfigError(f"warmup_epochs must be >= 0; got warmup_epochs={self.warmup_epochs}")
        if not (self.warmup_lr > 0 and math.isfinite(self.warmup_lr)):
            raise ConfigError(f"warmup_lr must be > 0; got warmup_lr={self.warmup_lr}")
        if self.history < 1:
            raise ConfigError(f"history must be >= 1; got history={self.history}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1; got batch_size={self.batch_size}")
        if self.report_every < 1:
            raise ConfigError(f"report_every must be >= 1; got report_every={self.report_every}")


@dataclass(frozen=True, kw_only=True)
class FitResult:
    train_rmse: float  # RMSE on the training set at the end (best parameters seen)
    steps: int  # iterations run
    stopped: bool  # True when should_stop ended the fit early


def rmse(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 8192) -> float:
    """Root mean squared error of ``net`` on (x, y), evaluated in chunks without gradients."""
    with torch.no_grad():
        sq = 0.0
        for s in range(0, x.shape[0], batch):
            sq += float(((net(x[s : s + batch]) - y[s : s + batch]) ** 2).sum())
    return math.sqrt(sq / max(1, x.shape[0]))


class _Best:
    """The parameters with the lowest training loss seen so far."""

    def __init__(self, params: list[nn.Parameter]) -> None:
        self.params = params
        self.loss = math.inf
        self.values = [p.detach().clone() for p in params]

    def offer(self, loss: float) -> bool:
        """Keep the current parameters if ``loss`` is the best so far; False if it is not finite."""
        if not math.isfinite(loss):
            return False
        if loss < self.loss:
            self.loss = loss
            for b, p in zip(self.values, self.params, strict=True):
                b.copy_(p.detach())
        return True

    def restore(self) -> None:
        with torch.no_grad():
            for b, p in zip(self.values, self.params, strict=True):
                p.copy_(b)


def fit_regression(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: FitConfig,
    *,
    seed: int = 0,
    callback: Callable[[int, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> FitResult:
    """Minimise the mean squared error of ``net(x)`` against ``y`` (x (N, d), y (N,)).

    With ``optimizer="lbfgs"``: ``warmup_epochs`` of mini-batch Adam, then ``steps`` full-batch
    L-BFGS iterations; with ``"adam"``: ``steps`` Adam epochs. ``callback(step, train_rmse)`` is
    called every ``report_every`` iterations (steps count both phases); ``should_stop()`` is polled
    as often and ends the fit early when it returns True. The parameters with the lowest training
    loss seen are kept (L-BFGS can step into a worse point once rounding noise dominates).
    """
    params = [p for p in net.parameters() if p.requires_grad]
    best = _Best(params)
    best.offer(rmse(net, x, y) ** 2)
    state = {"step": 0, "stopped": False}

    def report() -> str:
        """Record the loss and call back: ``go`` on, ``stop`` (asked to), ``diverged``, or ``exact`` (loss 0)."""
        loss = rmse(net, x, y) ** 2
        if not best.offer(loss):
            return "diverged"
        if callback is not None:
            callback(state["step"], math.sqrt(best.loss))
        if should_stop is not None and should_stop():
            state["stopped"] = True
            return "stop"
        return "exact" if loss == 0.0 else "go"

    adam_epochs = config.steps if config.optimizer == "adam" else config.warmup_epochs
    adam_lr = config.lr if config.optimizer == "adam" else config.warmup_lr
    status = "go"
    if adam_epochs:
        status = _adam(net, x, y, params, adam_epochs, adam_lr, config, seed, state, report)
    if config.optimizer == "lbfgs" and status in ("go", "diverged"):
        best.restore()
        _lbfgs(net, x, y, params, config, state, report, best)
    if not math.isfinite(best.loss):
        raise TrainingError("the regression loss was not finite from the start")
    best.restore()
    return FitResult(train_rmse=math.sqrt(best.loss), steps=state["step"], stopped=bool(state["stopped"]))


def _adam(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    params: list[nn.Parameter],
    epochs: int,
    lr: float,
    config: FitConfig,
    seed: int,
    state: dict[str, int],
    report: Callable[[], str],
) -> str:
    """Mini-batch Adam with a cosine learning-rate decay to 0 over ``epochs``; returns the last status."""
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    gen = torch.Generator().manual_seed(seed)
    n_rows = x.shape[0]
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(n_rows, generator=gen)
        for s in range(0, n_rows, config.batch_size):
            idx = perm[s : s + config.batch_size]
            opt.zero_grad()
            loss = ((net(x[idx]) - y[idx]) ** 2).mean()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
        sched.step()
        state["step"] += 1
        if epoch % config.report_every == 0 or epoch == epochs:
            status = report()
            if status != "go":
                return status
    return "go"


def _lbfgs(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    params: list[nn.Parameter],
    config: FitConfig,
    state: dict[str, int],
    report: Callable[[], str],
    best: _Best,
) -> None:
    """Full-batch L-BFGS with a strong-Wolfe line search, in chunks of ``report_every`` iterations.

    The loss is multiplied by 1 / (the best loss when the optimizer was made): PyTorch's L-BFGS
    skips every curvature pair with sᵀy ≤ 1e-10 (an absolute threshold), so near an exact fit
    (MSE ~1e-18) it would silently decay into scaled gradient descent and stall around RMSE 1e-9.
    Once the loss has fallen 1e6-fold below that reference, L-BFGS restarts with a new scale.

    A chunk that does not lower the best loss (stalled, or a line search stepped into overflow)
    restarts L-BFGS from the best point with an empty history; three such chunks in a row mean the
    rounding floor is reached, and the fit ends.
    """
    scale = [1.0]

    def new_optimizer() -> torch.optim.LBFGS:
        scale[0] = 1.0 / best.loss if 0.0 < best.loss < math.inf else 1.0
        return torch.optim.LBFGS(
            params,
            lr=config.lr,
            max_iter=config.report_every,
            history_size=config.history,
            line_search_fn="strong_wolfe",
            tolerance_grad=0.0,
            tolerance_change=0.0,
        )

    opt = new_optimizer()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = ((net(x) - y) ** 2).mean() * scale[0]
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    done, failed = 0, 0
    while done < config.steps:
        n = min(config.report_every, config.steps - done)
        opt.param_groups[0]["max_iter"] = n
        before = best.loss
        opt.step(closure)  # type: ignore[no-untyped-call]
        done += n
        state["step"] += n
        status = report()
        if status in ("stop", "exact"):
            return
        if status == "go" and best.loss < before:
            failed = 0
            if best.loss * scale[0] < 1e-6:
                opt = new_optimizer()  # rescale (the parameters are the best ones: this chunk improved)
            continue
        failed += 1
        if failed >= 3:
            return
        best.restore()
        opt = new_optimizer()
