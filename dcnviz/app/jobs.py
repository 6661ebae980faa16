"""Background work owned by one app session: training runs in worker processes, shared fairly.

Plain Python (no Streamlit). The Train page starts a :class:`TrainingJob`, the Paper lab a
:class:`SyntheticJob` (§6) or a :class:`Table6Job` (§7.3); all are :class:`Job` s and share their plumbing:

* **Isolation.** The work runs in a worker process forked from the warm fork server of
  :mod:`dcnviz.isolation` (torch and the trainer imported once; the one that parses uploads), so a
  crash, a runaway allocation (the worker has an address-space limit) or a stall costs that run only,
  never the server. A failed run says why: the library's own message, or
  how the process ended (signal, memory limit).
* **Cheap to watch.** The worker publishes progress at most :data:`PUBLISH_S` apart over a pipe (plus
  every epoch's history row); a reader thread in the server applies it under a lock; the page reads
  :meth:`Job.snapshot` copies. The trainer's thread does nothing per step for the page.
* **Fair sharing.** One :class:`RunPool` per server knows its cores: at most ``DCNVIZ_MAX_RUNS`` runs
  at once (default :func:`default_max_runs`), the rest wait in a queue whose position each snapshot
  carries, and the running ones split the cores (each worker applies its thread budget at its next
  progress tick).
* **Owned by the session.** A job carries ``owner``, a callable that says whether its session is
  still connected; the pool cancels (kills, keeping nothing) a run whose session has been gone for
  ``DCNVIZ_RUN_GRACE_S`` seconds (default 5): a closed tab or an expired session.

The stop button calls :meth:`Job.stop` (the trainer keeps the best model so far); :meth:`Job.cancel`
ends the run at once and drops its results. A finished training run's model file (bytes, from
:meth:`dcnviz.train.TrainingRun.to_bytes`) is in ``snapshot().model_bytes``; nothing is written to disk.

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
import os
import signal
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from types import MappingProxyType
from typing import Any, ClassVar

from dcnviz import isolation
from dcnviz.data import DataOptions
from dcnviz.errors import DcnvizError
from dcnviz.model import ModelConfig
from dcnviz.train import TrainConfig

_LOG = logging.getLogger(__name__)
MAX_TICKS = 5000  # progress points kept for the live curve (older ones thinned)
PUBLISH_S = 0.25  # a worker sends progress at most this often (epoch ends always)
MAX_RUNS_ENV = "DCNVIZ_MAX_RUNS"  # runs training at once on this server; more wait in a queue
GRACE_ENV = "DCNVIZ_RUN_GRACE_S"  # seconds a run outlives its session (a reload or network blip reconnects)
MEMORY_ENV = "DCNVIZ_RUN_MEMORY_MB"  # address-space limit of one worker process (MB); 0 = none
ISOLATION_ENV = "DCNVIZ_RUN_ISOLATION"  # process (default) | thread (no worker: tests that patch the trainer)
MONITOR_S = 0.5  # how often the pool checks that each run's session is still there
KILL_WAIT_S = 2.0  # after SIGTERM, a worker gets this long before SIGKILL
FINISHED = ("done", "stopped", "failed", "cancelled")
Emit = Callable[[str, Any], None]  # worker side: emit(kind, payload) sends one message to the server


# --------------------------------------------------------------------------------------------------
# The server's share of the machine


def machine_cores() -> int:
    """CPU cores this process may use (its affinity mask, which containers and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_max_runs(cores: int) -> int:
    """Runs at once when ``DCNVIZ_MAX_RUNS`` is not set: half the cores, at least 2 (each run ≥ 1 thread).

    >>> default_max_runs(2), default_max_runs(8), default_max_runs(1)
    (2, 4, 2)
    """
    return max(2, cores // 2)


def _env_number(name: str, default: float, *, low: float) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise DcnvizError(f"${name} must be a number; got {text!r}") from None
    if not (math.isfinite(value) and value >= low):
        raise DcnvizError(f"${name} must be >= {low:g}; got {text!r}")
    return value


def default_memory_limit() -> int | None:
    """Bytes of address space one worker may map: ``$DCNVIZ_RUN_MEMORY_MB``, else 3/4 of the machine's RAM."""
    mb = _env_number(MEMORY_ENV, -1.0, low=0.0) if os.environ.get(MEMORY_ENV) else -1.0
    if mb == 0:
        return None
    if mb > 0:
        return int(mb * 2**20)
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    return int(ram * 3 // 4)


# --------------------------------------------------------------------------------------------------
# The worker process


class Control:
    """What the server tells a running worker: stop (keep the best model) and the thread budget.

    Set by the worker's listener thread, read by the trainer at its progress ticks (attribute reads).
    """

    def __init__(self, threads: int, *, apply_threads: bool = True) -> None:
        self.stop = False
        self.threads = threads
        self._applied = 0
        self._apply = apply_threads

    def should_stop(self) -> bool:
        return self.stop

    def apply_threads(self) -> None:
        """Use the current budget for PyTorch's CPU threads (called on the trainer's own thread)."""
        if self._apply and self.threads != self._applied and self.threads >= 1:
            import torch

            torch.set_num_threads(self.threads)
            self._applied = self.threads


class Throttle:
    """True at most once per ``interval`` seconds (the worker's bound on progress messages)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.last = -math.inf

    def ready(self) -> bool:
        now = time.monotonic()
        if now - self.last < self.interval:
            return False
        self.last = now
        return True


def _listen(conn: Connection, control: Control) -> None:
    """Worker side: apply the server's messages; if the server goes away, end the worker at once."""
    while True:
        try:
            kind, value = conn.recv()
        except (EOFError, OSError):
            os._exit(3)  # the server is gone: nobody will read this run's result
        if kind == "stop":
            control.stop = True
        elif kind == "threads":
            control.threads = int(value)


def _worker_main(
    conn: Connection, work: Callable[[Any, Emit, Control], None], request: Any, settings: dict[str, Any]
) -> None:
    """Entry point of a worker process (:func:`dcnviz.isolation.start_worker` has set its memory limit):
    ``work(request, emit, control)``; errors as messages."""
    import dcnviz.data

    if settings.get("sample_dir"):
        dcnviz.data.SAMPLE_DIR = type(dcnviz.data.SAMPLE_DIR)(settings["sample_dir"])  # the server's sample folder
    control = Control(int(settings.get("threads", 1)))
    control.apply_threads()
    threading.Thread(target=_listen, args=(conn, control), name="dcnviz-control", daemon=True).start()
    lock = threading.Lock()

    def emit(kind: str, payload: Any = None) -> None:
        with lock:
            conn.send((kind, payload))

    _run_work(work, request, emit, control, settings.get("memory_bytes"))


def _run_work(
    work: Callable[[Any, Emit, Control], None], request: Any, emit: Emit, control: Control, limit: int | None
) -> None:
    """Run ``work``; a dcnviz error or running out of memory becomes a ``failed`` message with the reason."""
    try:
        work(request, emit, control)
    except DcnvizError as e:
        emit("failed", str(e))
    except MemoryError:
        where = f"its memory limit ({limit / 2**30:.1f} GiB, ${MEMORY_ENV})" if limit else "memory"
        emit("failed", f"the run ran out of {where}; try a smaller model, batch or dataset")
    except Exception as e:  # a bug: say what happened, keep the traceback for the server's log
        emit("crashed", (f"unexpected error ({type(e).__name__}): {e}", traceback.format_exc()))


_warming = threading.Event()


def warm_up() -> None:
    """Start the fork server now (in the background), so the first run does not wait for torch's import."""
    if not _warming.is_set():
        _warming.set()
        isolation.start(workers=True)


def _exit_reason(code: int | None, limit: int | None) -> str:
    """Why a worker ended without reporting a result, in words."""
    if code is None:
        return "the training process ended without saying why (its connection to the server broke)"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (the system may have run out of memory)" if -code == signal.SIGKILL else ""
        return f"the training process was killed by {name}{hint}"
    mem = f"; it may have exceeded its memory limit ({limit / 2**30:.1f} GiB, ${MEMORY_ENV})" if limit else ""
    return f"the training process ended unexpectedly with exit code {code}{mem}"


# --------------------------------------------------------------------------------------------------
# A job: the server side of one run


class Job:
    """One background run owned by a session: state under a lock, a worker process, stop and cancel.

    Subclasses give :meth:`work` (the module-level function the worker runs: ``work(request, emit,
    control)``) and :meth:`_receive` (apply one worker message to the state, under the lock).
    """

    kind: ClassVar[str] = "job"
    STOPPING: ClassVar[str] = "stopping: finishing the current step and keeping the best model so far…"

    def __init__(
        self,
        request: Any,
        *,
        owner: Callable[[], bool] | None = None,
        pool: RunPool | None = None,
        isolate: bool | None = None,
    ) -> None:
        self.request = request
        self.id = uuid.uuid4().hex  # identifies the run (e.g. so its model is registered once)
        self.owner = owner  # is the owning session still connected? (None: cannot tell; never cancelled)
        self._pool = pool
        self._isolate = isolate if isolate is not None else os.environ.get(ISOLATION_ENV, "process") != "thread"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ended = threading.Event()
        self._t0 = time.perf_counter()
        self.status, self.message = "queued", "waiting to start"
        self.error: str | None = None  # why it failed
        self.threads = 0  # CPU threads it may use now
        self.queue_position: int | None = None  # 1-based, while it waits for a slot
        self._worker: isolation.Worker | None = None
        self._control: Control | None = None
        self._memory = default_memory_limit() if self._isolate else None

    # -- the page's side --------------------------------------------------------------------------

    def start(self) -> Job:
        """Queue the run in the server's pool; it starts when a slot is free."""
        self._t0 = time.perf_counter()
        (self._pool or RunPool.shared()).submit(self)
        return self

    def stop(self) -> None:
        """Ask the run to stop at its next progress tick, keeping its best result so far."""
        self._stop.set()
        with self._lock:
            queued = self.status == "queued"
            if queued:  # never started: nothing to keep
                self._finish_locked("stopped", "stopped before it started")
            elif self.status not in FINISHED:
                self.message = self.STOPPING
        if queued:
            self._ended.set()
            (self._pool or RunPool.shared()).forget(self)
        self._send(("stop", None))
        if self._control is not None:
            self._control.stop = True

    def cancel(self, reason: str = "cancelled") -> None:
        """End the run now and keep nothing (its session ended)."""
        self._stop.set()
        with self._lock:
            if self.status in FINISHED:
                return
            self._finish_locked("cancelled", reason)
            self._drop_results_locked()
        if self._control is not None:
            self._control.stop = True
        worker = self._worker
        if worker is not None:
            threading.Thread(target=worker.terminate, args=(KILL_WAIT_S,), name="dcnviz-kill", daemon=True).start()
        (self._pool or RunPool.shared()).forget(self)

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the run's worker has ended; True if it has."""
        return self._ended.wait(timeout)

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self._t0

    # -- the pool's side --------------------------------------------------------------------------

    def _launch(self, threads: int) -> None:
        """Start the worker (from a thread of its own: the first fork server start takes seconds)."""
        with self._lock:
            if self.status in FINISHED:
                self._ended.set()
                return
            self.threads, self.queue_position = threads, None
            self.status, self.message = "starting", "starting a worker…"
        threading.Thread(target=self._serve, args=(threads,), name=f"dcnviz-{self.kind}", daemon=True).start()

    def _set_threads(self, threads: int) -> None:
        with self._lock:
            self.threads = threads
        self._send(("threads", threads))
        if self._control is not None:
            self._control.threads = threads

    def _queued(self, position: int, running: int, limit: int) -> None:
        with self._lock:
            if self.status == "queued":
                self.queue_position = position
                self.message = (
                    f"queued: {position} in line — {running} run(s) are training on this server "
                    f"(at most {limit} at once, ${MAX_RUNS_ENV})"
                )

    def _serve(self, threads: int) -> None:
        try:
            if self._isolate:
                self._serve_process(threads)
            else:
                self._control = Control(threads, apply_threads=False)
                _run_work(self.work(), self.request, self._on_message, self._control, None)
        except Exception as e:  # the worker could not be started (no fork server, no file descriptors, …)
            _LOG.error("%s job could not start:\n%s", self.kind, traceback.format_exc())
            with self._lock:
                if self.status not in FINISHED:
                    self._finish_locked("failed", "failed")
                    self.error = f"the training process could not be started ({type(e).__name__}: {e})"
        finally:
            self._ended.set()
            (self._pool or RunPool.shared()).release(self)

    def _serve_process(self, threads: int) -> None:
        if self.finished:
            return
        settings = {"threads": threads, "memory_bytes": self._memory, "sample_dir": _sample_dir()}
        worker = isolation.start_worker(_worker_main, (self.work(), self.request, settings), memory_bytes=self._memory)
        self._worker = worker
        if self.finished or self.stop_requested:  # cancelled or stopped while the worker started
            self._send(("stop", None))
            if self.status == "cancelled":
                threading.Thread(target=worker.terminate, args=(KILL_WAIT_S,), daemon=True).start()
        while (message := worker.recv()) is not None:
            self._on_message(*message)
        with self._lock:
            if self.status not in FINISHED:
                self._finish_locked("failed", "failed")
                self.error = _exit_reason(worker.exitcode, self._memory)
        worker.close()

    def _send(self, msg: tuple[str, Any]) -> None:
        worker = self._worker
        if worker is not None:
            worker.send(msg)

    # -- applying the worker's messages -------------------------------------------------------------

    def _on_message(self, kind: str, payload: Any) -> None:
        with self._lock:
            if self.status == "cancelled":
                return  # a late message of a cancelled run: keep nothing
            if kind == "failed":
                self._finish_locked("failed", "failed")
                self.error = str(payload)
            elif kind == "crashed":
                message, tb = payload
                _LOG.error("%s job crashed:\n%s", self.kind, tb)
                self._finish_locked("failed", "failed")
                self.error = message
            elif kind == "status":
                if self.status not in FINISHED:
                    self.status, self.message = payload
                    if self._stop.is_set() and self.status != "saving":
                        self.message = self.STOPPING
            else:
                self._receive(kind, payload)

    def work(self) -> Callable[[Any, Emit, Control], None]:  # pragma: no cover - subclasses
        """The function the worker runs (module level, so the worker can import it)."""
        raise NotImplementedError

    def _receive(self, kind: str, payload: Any) -> None:  # pragma: no cover - subclasses
        raise NotImplementedError(kind)

    def _finish_locked(self, status: str, message: str) -> None:
        self.status, self.message, self.queue_position = status, message, None

    def _drop_results_locked(self) -> None:
        """Forget what the run produced (subclasses clear their fields)."""


def _sample_dir() -> str:
    import dcnviz.data

    return str(dcnviz.data.SAMPLE_DIR)


# --------------------------------------------------------------------------------------------------
# The pool: cores, the run limit, the queue, session ownership


class RunPool:
    """The server's training slots: at most ``max_runs`` runs at once, a FIFO queue, a thread budget each.

    ``cores // running`` threads per run (at least 1), re-balanced whenever a run starts or ends. A
    monitor thread cancels runs (running or queued) whose ``owner`` has said "gone" for ``grace_s``.
    """

    _shared: ClassVar[RunPool | None] = None
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, *, cores: int | None = None, max_runs: int | None = None, grace_s: float | None = None) -> None:
        self.cores = cores or machine_cores()
        if max_runs is None:
            max_runs = int(_env_number(MAX_RUNS_ENV, default_max_runs(self.cores), low=1))
        self.max_runs = max_runs
        self.grace_s = _env_number(GRACE_ENV, 5.0, low=0.0) if grace_s is None else grace_s
        self._lock = threading.Lock()
        self._running: list[Job] = []
        self._queue: list[Job] = []
        self._gone_since: dict[str, float] = {}
        self._monitor: threading.Thread | None = None

    @classmethod
    def shared(cls) -> RunPool:
        """The server's pool (one per process), made on first use from the environment."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = RunPool()
            return cls._shared

    def budget(self, running: int | None = None) -> int:
        """Threads for each of ``running`` runs (default: the runs now training)."""
        n = len(self._running) if running is None else running
        return max(1, self.cores // max(1, n))

    def submit(self, job: Job) -> None:
        with self._lock:
            self._queue.append(job)
        self._schedule()
        self._ensure_monitor()

    def position(self, job: Job) -> int | None:
        with self._lock:
            return self._queue.index(job) + 1 if job in self._queue else None

    def counts(self) -> tuple[int, int]:
        """(runs training, runs queued)."""
        with self._lock:
            return len(self._running), len(self._queue)

    def release(self, job: Job) -> None:
        """A run's worker ended: free its slot and start the next in line."""
        self.forget(job)

    def forget(self, job: Job) -> None:
        """Take ``job`` out of the pool (ended, cancelled, or stopped in the queue)."""
        with self._lock:
            if job in self._running:
                self._running.remove(job)
            if job in self._queue:
                self._queue.remove(job)
            self._gone_since.pop(job.id, None)
        self._schedule()

    def _schedule(self) -> None:
        """Start queued runs while slots are free; re-balance threads; tell the queue where it stands."""
        with self._lock:
            started = []
            while self._queue and len(self._running) < self.max_runs:
                job = self._queue.pop(0)
                if job.finished:
                    continue
                self._running.append(job)
                started.append(job)
            budget = self.budget()
            running, queue = list(self._running), list(self._queue)
        for job in running:
            if job in started:
                job._launch(budget)
            elif job.threads != budget:
                job._set_threads(budget)
        for i, job in enumerate(queue):
            job._queued(i + 1, len(running), self.max_runs)

    def _ensure_monitor(self) -> None:
        with self._lock:
            if self._monitor is not None and self._monitor.is_alive():
                return
            self._monitor = threading.Thread(target=self._watch, name="dcnviz-run-monitor", daemon=True)
            self._monitor.start()

    def _watch(self) -> None:
        while True:
            time.sleep(MONITOR_S)
            with self._lock:
                jobs = self._running + self._queue
            if not jobs:
                with self._lock:
                    if not (self._running or self._queue):
                        self._monitor = None
                        return
                continue
            self.check_owners(jobs)

    def check_owners(self, jobs: list[Job] | None = None, *, now: float | None = None) -> list[Job]:
        """Cancel the runs whose session has been gone for ``grace_s``; returns them."""
        now = time.monotonic() if now is None else now
        if jobs is None:
            with self._lock:
                jobs = self._running + self._queue
        cancelled = []
        for job in jobs:
            alive = True
            if job.owner is not None:
                try:
                    alive = bool(job.owner())
                except Exception:  # a broken liveness check never kills a run
                    alive = True
            if alive:
                self._gone_since.pop(job.id, None)
                continue
            since = self._gone_since.setdefault(job.id, now)
            if now - since >= self.grace_s:
                job.cancel("cancelled: the session that started it ended (tab closed or session expired)")
                cancelled.append(job)
        return cancelled


# --------------------------------------------------------------------------------------------------
# Training runs (the Train page)


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

    status: str  # queued | starting | loading data | training | saving | done | stopped | failed | cancelled
    message: str  # one line for the status bar
    ticks: list[dict[str, float]]  # {"epoch": fractional epoch, "step", "loss", "examples_per_s"}
    history: list[dict[str, Any]]  # one row per finished epoch, exactly as dcnviz.train.fit records it
    epoch: int  # current epoch (1-based; 0 before training)
    epochs: int  # most epochs
    fraction: float  # progress in [0, 1]
    examples_per_s: float  # training examples / training seconds of the whole run so far (the final number at the end)
    elapsed_s: float  # since the job started
    device: str  # where it trains
    result: dict[str, Any] | None  # dcnviz.train.TrainingRun.summary() when done
    model_bytes: bytes | None  # the model file when done (the best model kept)
    error: str | None  # a clean message when it failed
    queue_position: int | None = None  # 1-based place in the server's queue while waiting
    threads: int = 0  # CPU threads the run may use now

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def running(self) -> bool:
        return not self.finished and self.status != "queued"


def _train_work(request: TrainRequest, emit: Emit, control: Control) -> None:
    """Worker side of a training run: :func:`dcnviz.train.run`, progress sent at a bounded rate."""
    from dcnviz import train
    from dcnviz.encoded import DatasetSplits

    emit("status", ("loading data", f"loading {request.data.source}…"))
    publish = _ProgressPublisher(emit, control, request.train.epochs)

    def on_data(splits: DatasetSplits) -> None:
        rows = splits.info.get("rows", {})
        emit("status", ("training", f"training on {rows.get('train', '?')} examples…"))

    outcome = train.run(
        request.data, request.model, request.train, callback=publish, should_stop=control.should_stop, on_data=on_data
    )
    emit("status", ("saving", "saving the model…"))
    best = outcome.best
    data = outcome.to_bytes(train.Provenance(made_by="dcnviz app", label=request.label))
    emit(
        "done",
        {
            "summary": outcome.summary(),
            "model_bytes": data,
            "stopped": best.stopped == "should_stop",
            "fault": outcome.fault,
            "epochs": best.epochs,
            "best_epoch": best.best_epoch,
            "device": best.device,
        },
    )


class _ProgressPublisher:
    """The trainer's progress callback in the worker: every epoch end, and ticks at most PUBLISH_S apart.

    The loss sent for a tick is the mean over the examples since the last one sent.
    """

    def __init__(self, emit: Emit, control: Control, epochs: int) -> None:
        self.emit, self.control, self.epochs = emit, control, epochs
        self.throttle = Throttle(PUBLISH_S)
        self.loss_sum, self.examples, self.sent_examples = 0.0, 0, 0

    def __call__(self, p: Any) -> None:
        self.control.apply_threads()
        frac_epoch = (p.epoch - 1) + p.epoch_step / max(1, p.steps_per_epoch)
        tick = {
            "epoch": frac_epoch,
            "step": float(p.step),
            "examples_per_s": p.run_examples_per_s,
            "epoch_no": p.epoch,
            "epoch_step": p.epoch_step,
            "steps_per_epoch": p.steps_per_epoch,
        }
        if p.row is not None:
            self.emit("epoch", {**tick, "row": p.row})
            return
        n = p.examples - self.examples
        self.loss_sum += p.loss * n
        self.examples = p.examples
        if not self.throttle.ready():
            return
        window = self.examples - self.sent_examples
        tick["loss"] = self.loss_sum / window if window else p.loss
        self.loss_sum, self.sent_examples = 0.0, self.examples
        self.emit("tick", tick)


class TrainingJob(Job):
    """One training run of the Train page (see the module docstring). Thread-safe: read snapshots."""

    kind = "train"

    def __init__(
        self,
        request: TrainRequest,
        *,
        owner: Callable[[], bool] | None = None,
        pool: RunPool | None = None,
        isolate: bool | None = None,
    ) -> None:
        super().__init__(request, owner=owner, pool=pool, isolate=isolate)
        self.ticks: list[dict[str, float]] = []
        self.history: list[dict[str, Any]] = []
        self.epoch, self.fraction, self.examples_per_s = 0, 0.0, 0.0
        self.device = ""
        self.result: dict[str, Any] | None = None
        self.model_bytes: bytes | None = None

    def work(self) -> Callable[[Any, Emit, Control], None]:
        return _train_work

    def snapshot(self) -> JobSnapshot:
        with self._lock:
            return JobSnapshot(
                status=self.status,
                message=self.message,
                ticks=list(self.ticks),
                history=[dict(h) for h in self.history],
                epoch=self.epoch,
                epochs=self.request.train.epochs,
                fraction=self.fraction,
                examples_per_s=self.examples_per_s,
                elapsed_s=self.elapsed_s,
                device=self.device,
                result=self.result,
                model_bytes=self.model_bytes,
                error=self.error,
                queue_position=self.queue_position,
                threads=self.threads,
            )

    def _receive(self, kind: str, payload: Any) -> None:
        if kind in ("tick", "epoch"):
            self._progress(payload, kind == "epoch")
        elif kind == "done":
            self._done(payload)
        else:
            raise ValueError(f"unknown message {kind!r} from a training worker")

    def _progress(self, t: dict[str, Any], epoch_end: bool) -> None:
        epochs = self.request.train.epochs
        self.epoch = int(t["epoch_no"])
        self.fraction = min(1.0, t["epoch"] / epochs)
        self.examples_per_s = float(t["examples_per_s"])
        if epoch_end:
            self.history.append(t["row"])
            return
        self.ticks.append({k: float(t[k]) for k in ("epoch", "step", "loss", "examples_per_s")})
        if len(self.ticks) > MAX_TICKS:
            self.ticks = self.ticks[::2]
        if not self._stop.is_set():
            self.message = (
                f"epoch {self.epoch}/{epochs} · step {t['epoch_step']}/{t['steps_per_epoch']} · loss {t['loss']:.4f}"
            )

    def _done(self, d: dict[str, Any]) -> None:
        if d["fault"]:
            msg = f"training stopped on a fault: {d['fault']}"
        elif d["stopped"]:
            msg = f"stopped after epoch {d['epochs']}; kept the best model (epoch {d['best_epoch']})"
        else:
            msg = f"done: {d['epochs']} epoch(s), best epoch {d['best_epoch']}"
        self._finish_locked("stopped" if d["stopped"] else "done", msg)
        self.result, self.model_bytes, self.device = d["summary"], d["model_bytes"], d["device"]
        self.examples_per_s = float(d["summary"].get("examples_per_s", 0.0))
        self.fraction = 1.0

    def _drop_results_locked(self) -> None:
        self.ticks, self.history, self.result, self.model_bytes = [], [], None, None


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
# The Paper lab: the paper's synthetic studies (§6)


@dataclass(frozen=True, kw_only=True)
class SyntheticRequest:
    """One Paper lab run: a task, the models and depths of its table, and the learned-W fit."""

    task: str  # f1 | f2 | f3 | order3 | order4 | combined
    models: tuple[str, ...]  # regression models (dcnviz.paperlab.models.REGRESSION_MODELS)
    layers: tuple[int, ...]  # depths
    runs: int = 1  # runs per cell (the paper: 5)
    config: Any = None  # dcnviz.paperlab.synthetic.SyntheticConfig (None: its defaults)
    learned_w: bool = True  # also fit one 1-layer DCN-V2 and read its cross coefficients


@dataclass(frozen=True, kw_only=True)
class LabSnapshot:
    """A consistent copy of a Paper lab run's state for the page to draw (:meth:`_RowsJob.snapshot`)."""

    status: str  # queued | starting | (the run's own steps) | done | stopped | failed | cancelled
    message: str
    fraction: float  # in [0, 1]
    rows: list[Any]  # the table's finished rows
    error: str | None
    elapsed_s: float
    queue_position: int | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


@dataclass(frozen=True, kw_only=True)
class SyntheticSnapshot(LabSnapshot):
    """rows: dcnviz.paperlab.synthetic.SyntheticRow, finished cells; status steps: fitting W, running table."""

    true_c: Any = None  # (d, d) ground-truth order-2 coefficients (numpy), or None before it is known
    learned_c: Any = None  # (d, d) learned coefficients of the 1-layer DCN-V2, or None
    learned_rmse: float | None = None  # test RMSE of that 1-layer DCN-V2


def _synthetic_work(r: SyntheticRequest, emit: Emit, control: Control) -> None:
    """Worker side of a Paper lab run: the learned-W fit, then :func:`run_synthetic`."""
    import torch

    from dcnviz.paperlab.crosses import learned_cross_matrix, true_cross_matrix
    from dcnviz.paperlab.fit import fit_regression, rmse
    from dcnviz.paperlab.models import build_regressor
    from dcnviz.paperlab.synthetic import SyntheticConfig, SyntheticProgress, run_synthetic
    from dcnviz.paperlab.tasks import build_task

    cfg = r.config or SyntheticConfig()
    throttle = Throttle(PUBLISH_S)
    task = build_task(r.task, seed=cfg.task_seed, d=cfg.d if r.task not in ("f1", "f2") else None)
    emit("set", {"true_c": true_cross_matrix(task)})
    if r.learned_w:
        emit("status", ("fitting W", "fitting a 1-layer DCN-V2 to read its cross coefficients…"))
        x, y = task.sample(cfg.samples, cfg.seed, split="train")
        xt, yt = task.sample(cfg.test_samples, cfg.seed, split="test")
        dt = cfg.torch_dtype
        net = build_regressor("dcnv2", task.d, 1, seed=cfg.seed, dtype=dt)
        X, Y, XT, YT = (torch.as_tensor(a, dtype=dt) for a in (x, y, xt, yt))

        def on_fit(step: int, train: float) -> None:
            control.apply_threads()
            if throttle.ready():
                emit("set", {"message": f"1-layer DCN-V2 for W: step {step}, train RMSE {train:.3g}"})

        res = fit_regression(net, X, Y, cfg.fit, seed=cfg.seed, callback=on_fit, should_stop=control.should_stop)
        if res.stopped:
            emit("end", {"status": "stopped", "message": "stopped", "rows": []})
            return
        emit("set", {"learned_c": learned_cross_matrix(net), "learned_rmse": rmse(net, XT, YT)})
    emit("status", ("running table", "training the table's models…"))

    def on_progress(p: SyntheticProgress) -> None:
        control.apply_threads()
        if not throttle.ready():
            return
        frac = (p.fits_done + min(1.0, p.step / max(1, p.steps))) / max(1, p.fits_total)
        rm = f"{p.train_rmse:.3g}" if math.isfinite(p.train_rmse) else "—"
        emit(
            "set",
            {
                "fraction": min(1.0, frac),
                "message": f"{p.model}, {p.layers} layer(s), run {p.run + 1}/{p.runs}: step {p.step}, "
                f"train RMSE {rm} · fit {p.fits_done + 1} of {p.fits_total}",
            },
        )

    rows = run_synthetic(
        task, r.models, r.layers, r.runs, config=cfg, callback=on_progress, should_stop=control.should_stop
    )
    stopped = control.should_stop()
    emit(
        "end",
        {
            "rows": rows,
            "status": "stopped" if stopped else "done",
            "message": f"stopped: {len(rows)} finished row(s) kept" if stopped else f"done: {len(rows)} row(s)",
        },
    )


class _RowsJob(Job):
    """A Paper lab job: its worker sends ``set`` messages (fields named in :attr:`FIELDS`) and one ``end``
    with the finished rows of its table; :meth:`snapshot` copies them into a :attr:`SNAPSHOT`."""

    FIELDS: ClassVar[tuple[str, ...]] = ("message", "fraction")
    SNAPSHOT: ClassVar[type]
    STOPPING: ClassVar[str] = "stopping: ending the current fit (not counted); the finished ones are kept…"

    def __init__(
        self,
        request: Any,
        *,
        owner: Callable[[], bool] | None = None,
        pool: RunPool | None = None,
        isolate: bool | None = None,
    ) -> None:
        super().__init__(request, owner=owner, pool=pool, isolate=isolate)
        self.fraction = 0.0
        self.rows: list[Any] = []

    def snapshot(self) -> Any:
        """A :attr:`SNAPSHOT` copy of the state: the common fields and the job's own :attr:`FIELDS`."""
        with self._lock:
            own = {k: getattr(self, k) for k in self.FIELDS if k not in ("message", "fraction")}
            return self.SNAPSHOT(
                status=self.status,
                message=self.message,
                fraction=self.fraction,
                rows=list(self.rows),
                error=self.error,
                elapsed_s=self.elapsed_s,
                queue_position=self.queue_position,
                **own,
            )

    def _receive(self, kind: str, payload: Any) -> None:
        if kind == "set":
            for k, v in payload.items():
                if k in self.FIELDS and not (k == "message" and self._stop.is_set()):
                    setattr(self, k, v)
        elif kind == "end":
            self.rows = list(payload["rows"])
            self._finish_locked(payload["status"], payload["message"])
            self.fraction = 1.0
        else:
            raise ValueError(f"unknown message {kind!r} from a {self.kind} worker")


class SyntheticJob(_RowsJob):
    """Runs :func:`dcnviz.paperlab.synthetic.run_synthetic` (and one learned-W fit) as a :class:`Job`."""

    kind = "paperlab"
    FIELDS: ClassVar[tuple[str, ...]] = ("message", "fraction", "true_c", "learned_c", "learned_rmse")
    SNAPSHOT = SyntheticSnapshot
    true_c: Any = None  # set by the worker's messages
    learned_c: Any = None
    learned_rmse: float | None = None

    def work(self) -> Callable[[Any, Emit, Control], None]:
        return _synthetic_work

    def _drop_results_locked(self) -> None:
        self.rows, self.learned_c, self.true_c = [], None, None


# --------------------------------------------------------------------------------------------------
# The Paper lab: Table 6's MovieLens models (§7.3)


@dataclass(frozen=True, kw_only=True)
class Table6Request:
    """One Table 6 run: the data (its embedding size is the paper's 30, d = 180), the models, runs, recipe."""

    data: DataOptions  # dataset and split
    models: tuple[str, ...]  # among dcnviz.options.TABLE6_MODELS
    runs: int = 1  # runs per model, seeds seed … seed + runs − 1 (the paper: 5)
    recipe: str = "dcnviz"  # dcnviz.paperlab.table6.table6_train_config
    seed: int = 0
    epochs: int | None = None  # most epochs per run (None: the recipe's)
    number: int = 1  # the session's Table 6 run number: its models are "<model> #<number>" in the picker

    @property
    def label(self) -> str:
        return f"Table 6 #{self.number} on {self.data.source}"


@dataclass(frozen=True, kw_only=True)
class Table6Snapshot(LabSnapshot):
    """rows: dcnviz.paperlab.table6.Table6Row, one per model with a finished run; steps: loading data, training."""

    info: dict[str, Any] | None = None  # the data's row counts, d, and the recipe as run (TrainConfig.to_json())
    models: Mapping[str, bytes] = field(default_factory=dict)  # model name → file of its best run, as each ends


def _table6_work(r: Table6Request, emit: Emit, control: Control) -> None:
    """Worker side of a Table 6 run: load the split, then :func:`dcnviz.paperlab.table6.run_table6`."""
    from dcnviz.data import load_splits
    from dcnviz.paperlab.table6 import Table6Progress, run_table6, table6_setup

    emit("status", ("loading data", f"loading {r.data.source}…"))
    splits = load_splits(r.data)
    seeds = tuple(r.seed + i for i in range(r.runs))
    config = table6_setup(len(splits.train), recipe=r.recipe, seeds=seeds, models=r.models, epochs=r.epochs)
    info = {"rows": splits.info.get("rows", {}), "d": splits.spec.d, "train": config.train.to_json()}
    emit("set", {"info": info})
    emit("status", ("training", f"training {len(config.models)} model(s) × {r.runs} run(s)…"))
    throttle = Throttle(PUBLISH_S)
    epochs = config.train.epochs

    def on_progress(p: Table6Progress) -> None:
        control.apply_threads()
        if not throttle.ready():
            return
        frac = (p.fits_done + min(1.0, (p.epoch - 1) / max(1, epochs))) / max(1, p.fits_total)
        emit(
            "set",
            {
                "fraction": min(1.0, frac),
                "message": f"{p.model}, run {p.run + 1}/{p.runs}: epoch {p.epoch}, step {p.step}, "
                f"loss {p.loss:.4f} · fit {p.fits_done + 1} of {p.fits_total}",
            },
        )

    def on_model(name: str, model_config: ModelConfig, results: list[Any]) -> None:
        """Send the model's best run (lowest validation log loss) as a model file, to open on every page."""
        from dcnviz.train import Provenance, SeedsResult, TrainingRun

        wall = sum(x.wall_s for x in results)
        outcome = TrainingRun(
            options=r.data,
            model_config=model_config,
            config=config.train,
            result=SeedsResult(runs=results, wall_s=wall),
            data_info=splits.info,
            wall_s=wall,
        )
        label = f"{name} · {r.label}"
        data = outcome.to_bytes(Provenance(made_by="dcnviz app (Paper lab, Table 6)", label=label))
        emit("model", {"name": name, "data": data})

    rows = run_table6(splits, config, callback=on_progress, should_stop=control.should_stop, on_model=on_model)
    stopped = control.should_stop()
    emit(
        "end",
        {
            "rows": rows,
            "status": "stopped" if stopped else "done",
            "message": f"stopped: {len(rows)} model(s) with a finished run kept"
            if stopped
            else f"done: {len(rows)} model(s) × {r.runs} run(s)",
        },
    )


class Table6Job(_RowsJob):
    """Runs :func:`dcnviz.paperlab.table6.run_table6` on the chosen data as a :class:`Job`."""

    kind = "table6"
    FIELDS: ClassVar[tuple[str, ...]] = ("message", "fraction", "info", "models")
    SNAPSHOT = Table6Snapshot
    info: dict[str, Any] | None = None  # set by the worker's messages
    models: Mapping[str, bytes] = MappingProxyType({})  # replaced (never changed in place) as files arrive

    def work(self) -> Callable[[Any, Emit, Control], None]:
        return _table6_work

    def _receive(self, kind: str, payload: Any) -> None:
        if kind == "model":
            self.models = MappingProxyType({**self.models, payload["name"]: payload["data"]})
        else:
            super()._receive(kind, payload)

    def _drop_results_locked(self) -> None:
        self.rows, self.info, self.models = [], None, MappingProxyType({})
