"""Background work owned by one app session: a training run in its own thread, with live progress and stop.

Plain Python (no Streamlit). The page starts a :class:`TrainingJob`, keeps it in its session state and
polls :meth:`TrainingJob.snapshot` (a copy taken under a lock) from an ``st.fragment(run_every=...)``;
the stop button calls :meth:`TrainingJob.stop`, which :func:`dcnviz.train.fit` sees through its
``should_stop`` hook and answers by keeping the best model so far. The thread never touches Streamlit.
When the run ends, the model file's bytes (:func:`dcnviz.checkpoint.model_to_bytes`) are in
``snapshot().model_bytes``; nothing is written to disk.

>>> from dcnviz.data import DataOptions
>>> from dcnviz.model import ModelConfig
>>> from dcnviz.train import TrainConfig
>>> job = TrainingJob(TrainRequest(data=DataOptions(source="sample"), model=ModelConfig(), train=TrainConfig()))
>>> job.snapshot().status
'queued'
"""

from __future__ import annotations

import logging
import math
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from dcnviz.checkpoint import model_to_bytes
from dcnviz.data import DataOptions, load_splits
from dcnviz.errors import DcnvizError
from dcnviz.model import ModelConfig
from dcnviz.train import Progress, TrainConfig, build_model, fit

_LOG = logging.getLogger(__name__)
MAX_TICKS = 5000  # progress points kept for the live curve (older ones thinned)


@dataclass(frozen=True, kw_only=True)
class TrainRequest:
    """What to train: data, architecture, recipe, and a label for the finished model."""

    data: DataOptions  # dataset and split
    model: ModelConfig  # architecture
    train: TrainConfig  # recipe (one seed: the app trains one run)
    label: str = "trained model"  # shown in the model picker


@dataclass(frozen=True)
class JobSnapshot:
    """A consistent copy of a job's state for the page to draw."""

    status: str  # queued | loading data | training | saving | done | stopped | failed
    message: str  # one line for the status bar
    ticks: list[dict[str, float]]  # {"epoch": fractional epoch, "step", "loss", "examples_per_s"}
    history: list[dict[str, Any]]  # one entry per finished epoch (val metrics), as fit() records it
    epoch: int  # current epoch (1-based; 0 before training)
    epochs: int  # most epochs
    fraction: float  # progress in [0, 1]
    examples_per_s: float  # latest training speed
    elapsed_s: float  # since the job started
    device: str  # where it trains
    result: dict[str, Any] | None  # TrainResult.to_json() when done
    model_bytes: bytes | None  # the model file when done (the best model kept)
    error: str | None  # a clean message when it failed

    @property
    def finished(self) -> bool:
        return self.status in ("done", "stopped", "failed")

    @property
    def running(self) -> bool:
        return not self.finished and self.status != "queued"


@dataclass
class _State:
    status: str = "queued"
    message: str = "waiting to start"
    ticks: list[dict[str, float]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch: int = 0
    fraction: float = 0.0
    examples_per_s: float = 0.0
    device: str = ""
    result: dict[str, Any] | None = None
    model_bytes: bytes | None = None
    error: str | None = None


class TrainingJob:
    """One training run in a daemon thread. Thread-safe: the thread writes, the page reads snapshots."""

    def __init__(self, request: TrainRequest) -> None:
        self.request = request
        self.id = uuid.uuid4().hex  # identifies the run (e.g. so its model is registered once)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._s = _State()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="dcnviz-train", daemon=True)

    def start(self) -> TrainingJob:
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the run to stop at its next progress tick; the best model so far is kept."""
        self._stop.set()
        with self._lock:
            if self._s.status not in ("done", "stopped", "failed"):
                self._s.message = "stopping: finishing the current step and keeping the best model so far…"

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            s = self._s
            return JobSnapshot(
                status=s.status,
                message=s.message,
                ticks=list(s.ticks),
                history=[dict(h) for h in s.history],
                epoch=s.epoch,
                epochs=self.request.train.epochs,
                fraction=s.fraction,
                examples_per_s=s.examples_per_s,
                elapsed_s=time.perf_counter() - self._t0,
                device=s.device,
                result=s.result,
                model_bytes=s.model_bytes,
                error=s.error,
            )

    def _set(self, **kw: Any) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self._s, k, v)

    def _on_progress(self, p: Progress) -> None:
        epochs = self.request.train.epochs
        frac_epoch = (p.epoch - 1) + p.epoch_step / max(1, p.steps_per_epoch)
        with self._lock:
            s = self._s
            s.epoch = p.epoch
            s.fraction = min(1.0, frac_epoch / epochs)
            s.examples_per_s = float(p.examples_per_s)
            if p.metrics is None:
                s.ticks.append(
                    {
                        "epoch": frac_epoch,
                        "step": float(p.step),
                        "loss": float(p.loss),
                        "examples_per_s": p.examples_per_s,
                    }
                )
                if len(s.ticks) > MAX_TICKS:
                    s.ticks = s.ticks[::2]
                if not self._stop.is_set():
                    s.message = (
                        f"epoch {p.epoch}/{epochs} · step {p.epoch_step}/{p.steps_per_epoch} · loss {p.loss:.4f}"
                    )
            else:
                val = p.metrics.get("val", {})
                s.history.append(
                    {
                        "epoch": p.epoch,
                        "train_logloss": float(p.loss),
                        "val_logloss": float(val.get("logloss", float("nan"))),
                        "val_auc": float(val.get("auc", float("nan"))),
                        "examples_per_s": float(p.examples_per_s),
                    }
                )

    def _run(self) -> None:
        r = self.request
        try:
            self._set(status="loading data", message=f"loading {r.data.source}…")
            splits = load_splits(r.data)
            seed = r.train.seeds[0]
            model = build_model(splits.spec, r.model, seed)
            rows = splits.info.get("rows", {})
            self._set(status="training", message=f"training on {rows.get('train', '?')} examples…")
            result = fit(model, splits, r.train, seed=seed, callback=self._on_progress, should_stop=self._stop.is_set)
            self._set(status="saving", message="saving the model…", device=result.device)
            summary = result.to_json()
            data = model_to_bytes(
                result.model.to("cpu"),
                train_config=r.train.to_json(),
                metrics=summary,
                history=result.history,
                data_info=splits.info,
                extra={"made_by": "dcnviz app", "label": r.label},
            )
            stopped = result.stopped == "should_stop"
            if result.fault:
                msg = f"training stopped on a fault: {result.fault}"
            elif stopped:
                msg = f"stopped after epoch {result.epochs}; kept the best model (epoch {result.best_epoch})"
            else:
                msg = f"done: {result.epochs} epoch(s), best epoch {result.best_epoch}"
            self._set(
                status="stopped" if stopped else "done",
                message=msg,
                result=summary,
                model_bytes=data,
                fraction=1.0,
            )
        except DcnvizError as e:
            self._set(status="failed", message="failed", error=str(e))
        except Exception as e:  # a bug: keep the app alive, but say what happened and log the traceback
            _LOG.error("training job crashed:\n%s", traceback.format_exc())
            self._set(status="failed", message="failed", error=f"unexpected error ({type(e).__name__}): {e}")


def wait(job: TrainingJob, timeout: float, poll: Callable[[], None] | None = None) -> JobSnapshot:
    """Block until ``job`` finishes or ``timeout`` seconds pass (tests and scripts); returns the last snapshot."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        snap = job.snapshot()
        if snap.finished:
            return snap
        if poll is not None:
            poll()
        time.sleep(0.05)
    return job.snapshot()


# --------------------------------------------------------------------------------------------------
# The Paper lab: the paper's synthetic studies (§6) in a background thread


@dataclass(frozen=True, kw_only=True)
class SyntheticRequest:
    """One Paper lab run: a task, the models and depths of its table, and the learned-W fit."""

    task: str  # f1 | f2 | f3 | order3 | order4 | combined
    models: tuple[str, ...]  # regression models (dcnviz.paperlab.models.REGRESSION_MODELS)
    layers: tuple[int, ...]  # depths
    runs: int = 1  # runs per cell (the paper: 5)
    config: Any = None  # dcnviz.paperlab.synthetic.SyntheticConfig (None: its defaults)
    learned_w: bool = True  # also fit one 1-layer DCN-V2 and read its cross coefficients


@dataclass(frozen=True)
class SyntheticSnapshot:
    status: str  # queued | fitting W | running table | done | stopped | failed
    message: str
    fraction: float  # in [0, 1]
    rows: list[Any]  # dcnviz.paperlab.synthetic.SyntheticRow, finished cells
    true_c: Any  # (d, d) ground-truth order-2 coefficients (numpy), or None before it is known
    learned_c: Any  # (d, d) learned coefficients of the 1-layer DCN-V2, or None
    learned_rmse: float | None  # test RMSE of that 1-layer DCN-V2
    error: str | None
    elapsed_s: float

    @property
    def finished(self) -> bool:
        return self.status in ("done", "stopped", "failed")


class SyntheticJob:
    """Runs :func:`dcnviz.paperlab.synthetic.run_synthetic` (and one learned-W fit) in a daemon thread."""

    def __init__(self, request: SyntheticRequest) -> None:
        self.request = request
        self.id = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._t0 = time.perf_counter()
        self._status, self._message, self._fraction = "queued", "waiting to start", 0.0
        self._rows: list[Any] = []
        self._true_c: Any = None
        self._learned_c: Any = None
        self._learned_rmse: float | None = None
        self._error: str | None = None
        self._thread = threading.Thread(target=self._run, name="dcnviz-paperlab", daemon=True)

    def start(self) -> SyntheticJob:
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def snapshot(self) -> SyntheticSnapshot:
        with self._lock:
            return SyntheticSnapshot(
                status=self._status,
                message=self._message,
                fraction=self._fraction,
                rows=list(self._rows),
                true_c=self._true_c,
                learned_c=self._learned_c,
                learned_rmse=self._learned_rmse,
                error=self._error,
                elapsed_s=time.perf_counter() - self._t0,
            )

    def _set(self, **kw: Any) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self, f"_{k}", v)

    def _run(self) -> None:
        from dcnviz.paperlab.crosses import learned_cross_matrix, true_cross_matrix
        from dcnviz.paperlab.fit import fit_regression, rmse
        from dcnviz.paperlab.models import build_regressor
        from dcnviz.paperlab.synthetic import SyntheticConfig, SyntheticProgress, run_synthetic
        from dcnviz.paperlab.tasks import build_task

        r = self.request
        cfg = r.config or SyntheticConfig()
        try:
            task = build_task(r.task, seed=cfg.task_seed, d=cfg.d if r.task not in ("f1", "f2") else None)
            self._set(true_c=true_cross_matrix(task))
            if r.learned_w:
                self._set(status="fitting W", message="fitting a 1-layer DCN-V2 to read its cross coefficients…")
                x, y = task.sample(cfg.samples, cfg.seed, split="train")
                xt, yt = task.sample(cfg.test_samples, cfg.seed, split="test")
                dt = cfg.torch_dtype
                net = build_regressor("dcnv2", task.d, 1, seed=cfg.seed, dtype=dt)
                X, Y, XT, YT = (torch.as_tensor(a, dtype=dt) for a in (x, y, xt, yt))

                def on_fit(step: int, train: float) -> None:
                    self._set(message=f"1-layer DCN-V2 for W: step {step}, train RMSE {train:.3g}")

                res = fit_regression(net, X, Y, cfg.fit, seed=cfg.seed, callback=on_fit, should_stop=self._stop.is_set)
                if res.stopped:
                    self._set(status="stopped", message="stopped")
                    return
                self._set(learned_c=learned_cross_matrix(net), learned_rmse=rmse(net, XT, YT))
            self._set(status="running table", message="training the table's models…")

            def on_progress(p: SyntheticProgress) -> None:
                frac = (p.fits_done + min(1.0, p.step / max(1, p.steps))) / max(1, p.fits_total)
                rm = f"{p.train_rmse:.3g}" if math.isfinite(p.train_rmse) else "—"
                self._set(
                    fraction=min(1.0, frac),
                    message=f"{p.model}, {p.layers} layer(s), run {p.run + 1}/{p.runs}: step {p.step}, "
                    f"train RMSE {rm} · fit {p.fits_done + 1} of {p.fits_total}",
                )

            rows = run_synthetic(
                task, r.models, r.layers, r.runs, config=cfg, callback=on_progress, should_stop=self._stop.is_set
            )
            stopped = self._stop.is_set()
            self._set(
                rows=rows,
                status="stopped" if stopped else "done",
                message=f"stopped: {len(rows)} finished row(s) kept" if stopped else f"done: {len(rows)} row(s)",
                fraction=1.0,
            )
        except DcnvizError as e:
            self._set(status="failed", message="failed", error=str(e))
        except Exception as e:  # a bug: keep the app alive, say what happened, log the traceback
            _LOG.error("paper lab job crashed:\n%s", traceback.format_exc())
            self._set(status="failed", message="failed", error=f"unexpected error ({type(e).__name__}): {e}")
