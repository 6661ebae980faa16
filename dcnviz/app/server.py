"""Once-per-process settings of the app server (not of one session).

Streamlit runs a full garbage collection (``gc.collect(2)``, its ``runner.postScriptGC`` option) after
every script run, fragment reruns included. With torch, pandas, pyarrow, Plotly and the app's modules
loaded that walks about 250,000 objects: ~0.27 s of CPU each time, on the cores a training run uses.
The Train page's live view and the sidebar's status line are fragments refreshed every 2 s, so a
watched run cost the server ~0.5 s of CPU per refresh, nearly all of it this collection
(``benchmarks/watch_cost.py``). :func:`freeze_startup` imports what the pages import, collects once
and moves every object then alive to the collector's permanent generation (:func:`gc.freeze`), so
later collections only walk what sessions created since — they still free a closed session's cycles.
"""

from __future__ import annotations

import gc
import importlib
import pkgutil
import threading

_frozen = threading.Event()
_lock = threading.Lock()


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
