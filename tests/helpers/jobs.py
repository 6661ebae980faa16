"""Stand-in background work for the run pool's tests (``tests/app/test_jobs.py``, ``tests/app/test_train_page.py``).

Module-level functions: a worker process imports its target by name (``tests.helpers.jobs``).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from dcnviz.app.jobs import (
    Control,
    Emit,
    Job,
)


def wait_for_stop(request: Any, emit: Emit, control: Control) -> None:
    """Runs until asked to stop, then ends with what it was given."""
    emit("status", ("training", "working"))
    while not control.should_stop():
        time.sleep(0.01)
    emit("end", {"kept": request})


def ignore_stop(request: Any, emit: Emit, control: Control) -> None:
    """A runaway: never looks at the stop flag."""
    emit("status", ("training", "spinning"))
    while True:
        time.sleep(0.01)


def crash(request: Any, emit: Emit, control: Control) -> None:
    emit("status", ("training", "about to crash"))
    os.kill(os.getpid(), signal.SIGSEGV)


def allocate(request: Any, emit: Emit, control: Control) -> None:
    emit("status", ("training", "allocating"))
    blob = bytearray(request)  # more than the worker's address-space limit
    emit("end", {"kept": len(blob)})


class StandIn(Job):
    """A job around one of the functions above; ``kept`` is what it ended with."""

    kind = "test"

    def __init__(self, work: Any, request: Any = None, **kw: Any) -> None:
        super().__init__(request, **kw)
        self._work = work
        self.kept: Any = None

    def work(self) -> Any:
        return self._work

    def _receive(self, kind: str, payload: Any) -> None:
        assert kind == "end", kind
        self.kept = payload["kept"]
        self._finish_locked("done", "done")

    def _drop_results_locked(self) -> None:
        self.kept = None


def until(cond: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)
