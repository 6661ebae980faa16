"""Once-per-process settings of the app server (not of one session).

Streamlit runs a full garbage collection (``gc.collect(2)``, its ``runner.postScriptGC`` option) after
every script run, fragment reruns included. With torch, pandas, pyarrow, Plotly and the app's modules
loaded that walks about 250,000 objects: ~0.27 s of CPU each time, on the cores a training run uses.
The Train page's live view and the sidebar's status line are fragments refreshed every 2 s, so a
watched run cost the server ~0.5 s of CPU per refresh, nearly all of it this collection
(``benchmarks/watch_cost.py``). :func:`freeze_startup` imports what the pages import, collects once
and moves every object then alive to the collector's permanent generation (:func:`gc.freeze`), so
later collections only walk what sessions created since — they still free a closed session's cycles.

Memory: glibc's allocator keeps memory that Python, pandas and pyarrow have freed (in its per-thread
arenas) instead of returning it to the system, so the server's RSS stays high after sessions end.
:func:`start_trimmer` returns it every :data:`TRIM_S` seconds (``malloc_trim(0)``; a few milliseconds).
:func:`prepare` does both, once per process; the router calls it on every script run.

Ended sessions: Streamlit drops a session's state when the session expires, but its runtime loop keeps
the last session it served in a local variable until another session connects, and with it that
session's models, run and cached analyses (~10–20 MiB after a training run). :class:`SessionSweeper`
clears the state of every session that has ended (closed and past ``server.disconnectedSessionTTL``, so
a reconnect after a network blip still finds its state); :func:`prepare` registers the session.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import importlib
import pkgutil
import threading
import time
from collections.abc import Callable
from typing import Any

TRIM_S = 30.0  # seconds between returns of freed memory to the system
SWEEP_S = 5.0  # seconds between checks for ended sessions
_frozen = threading.Event()
_lock = threading.Lock()
_trimmer: threading.Thread | None = None


def prepare() -> None:
    """Once per process: :func:`freeze_startup` and :func:`start_trimmer`; every run: this session is
    watched by the :class:`SessionSweeper` (all cheap on later calls)."""
    freeze_startup()
    start_trimmer()
    watch_this_session()


def session_ended(session_id: str) -> bool:
    """True once Streamlit has let go of the session: not connected and no longer kept for a reconnect."""
    from streamlit import runtime

    if not runtime.exists():
        return False
    rt = runtime.get_instance()
    lookup = getattr(getattr(rt, "_session_mgr", None), "get_session_info", None)
    if lookup is None:  # another Streamlit: fall back to "not connected"
        return not rt.is_active_session(session_id)
    return lookup(session_id) is None


class SessionSweeper:
    """Clears the session state of sessions that have ended, every ``interval`` seconds (a daemon thread).

    ``ended(session_id)`` says whether a session is over (:func:`session_ended` on the server). A state is
    anything with ``filtered_state`` and ``del state[key]`` (Streamlit's session state); it is held from
    :meth:`watch` until it has been cleared.
    """

    def __init__(self, ended: Callable[[str], bool] = session_ended, interval: float = SWEEP_S) -> None:
        self.ended, self.interval = ended, interval
        self._states: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, session_id: str, state: Any, *, start: bool = True) -> None:
        with self._lock:
            self._states.setdefault(session_id, state)
            if start and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(target=self._loop, name="dcnviz-session-sweeper", daemon=True)
                self._thread.start()

    def watched(self) -> list[str]:
        with self._lock:
            return list(self._states)

    def sweep(self) -> list[str]:
        """Clear and forget every watched session that has ended; their ids."""
        with self._lock:
            gone = [(sid, st) for sid, st in self._states.items() if self.ended(sid)]
            for sid, _ in gone:
                del self._states[sid]
        for _, state in gone:
            for key in list(state.filtered_state):
                with contextlib.suppress(KeyError):
                    del state[key]
        return [sid for sid, _ in gone]

    def _loop(self) -> None:
        while True:
            time.sleep(self.interval)
            if self.sweep():  # what the ended sessions held goes now, not at the next collection and trim
                gc.collect()
                release_memory()


SWEEPER = SessionSweeper()


def watch_this_session() -> None:
    """Register the session of the running script with :data:`SWEEPER` (no-op without a server)."""
    from streamlit import runtime
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is not None and runtime.exists():
        SWEEPER.watch(ctx.session_id, ctx.session_state)


def page_modules() -> list[str]:
    """The app's page modules (importing one defines its functions; nothing renders)."""
    import dcnviz.app.pages as pages

    return [f"{pages.__name__}.{m.name}" for m in pkgutil.iter_modules(pages.__path__)]


def freeze_startup() -> bool:
    """Once per process: import every page's dependencies, collect, :func:`gc.freeze`. True if it froze now.

    Objects frozen here are never walked by the cyclic collector again (reference counting still frees
    them); freezing happens once, before any session has made much, so at most the first session's
    start-up objects could outlive it.
    """
    if _frozen.is_set():
        return False
    with _lock:
        if _frozen.is_set():
            return False
        for name in page_modules():
            importlib.import_module(name)
        gc.collect()
        gc.freeze()
        _frozen.set()
        return True


def release_memory() -> bool:
    """Return the allocator's free memory to the system (glibc ``malloc_trim(0)``); False where there is
    no glibc (the call is then a no-op)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True


def start_trimmer(interval: float = TRIM_S) -> threading.Thread:
    """Start (once per process) a daemon thread calling :func:`release_memory` every ``interval`` s."""
    global _trimmer
    with _lock:
        if _trimmer is None or not _trimmer.is_alive():

            def loop() -> None:
                while release_memory():
                    time.sleep(interval)

            _trimmer = threading.Thread(target=loop, name="dcnviz-malloc-trim", daemon=True)
            _trimmer.start()
        return _trimmer
