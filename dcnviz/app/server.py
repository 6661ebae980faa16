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
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import importlib
import pkgutil
import threading
import time

TRIM_S = 30.0  # seconds between returns of freed memory to the system
_frozen = threading.Event()
_lock = threading.Lock()
_trimmer: threading.Thread | None = None


def prepare() -> None:
    """Once per process: :func:`freeze_startup` and :func:`start_trimmer` (cheap on later calls)."""
    freeze_startup()
    start_trimmer()


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
