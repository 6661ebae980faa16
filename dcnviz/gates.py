"""Mean gates of a dcnviz mixture model over the validation split it recorded (paper Eq. 3).

A mixture layer's effective W is Σ_k G_k(x_l) W_k, which depends on the input. Because each W_k is
fixed, its average over inputs is Σ_k E_x[G_k(x_l)] W_k: :func:`recorded_mean_gates` recreates the
model file's validation split (as ``python -m dcnviz evaluate`` does) and returns E_x[G(x_l)] per cross
layer, for ``analysis.analyze(..., gate_weights=...)``. Used by ``inspect --gates-data`` and the app.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

from dcnviz.errors import ConfigError

DEFAULT_GATE_ROWS = 20_000


def recorded_mean_gates(
    source_file: str | os.PathLike[str] | bytes,
    *,
    source: str | None = None,
    data_dir: str | None = None,
    schema: str | None = None,
    rows: int = DEFAULT_GATE_ROWS,
) -> tuple[list[np.ndarray | None], str]:
    """(E_x[G(x_l)] per cross layer, a label such as "gate-weighted over 7,286 validation inputs").

    ``source``/``data_dir``/``schema`` say where the data is now (default: what the file recorded).

    Raises:
        ConfigError: not a mixture model, or ``rows`` < 1; CheckpointError: not a dcnviz model file;
        DataFormatError / FileNotFoundError: the data is not where it is said to be.
    """
    from dcnviz.analysis import mean_gates
    from dcnviz.checkpoint import load_model
    from dcnviz.commands.evaluate import recorded_options
    from dcnviz.data import load_splits

    if rows < 1:
        raise ConfigError(f"rows must be >= 1; got {rows}")
    loaded = load_model(source_file)
    if loaded.config.model != "dcn-mix" and not loaded.config.experts:
        raise ConfigError(f"mean gates apply to mixture models (dcn-mix); this file is {loaded.config.model!r}")
    recorded = _recorded(loaded.meta)
    where = argparse.Namespace(data=source or recorded.get("source") or "sample", data_dir=data_dir, schema=schema)
    splits = load_splits(recorded_options(loaded.meta, where), spec=loaded.spec)
    n = min(rows, len(splits.val))
    return mean_gates(loaded.model, splits.val, max_rows=rows), f"gate-weighted over {n:,} validation inputs"


def _recorded(meta: Any) -> dict[str, Any]:
    info = meta.get("data_info") if isinstance(meta, dict) else None
    opts = info.get("options") if isinstance(info, dict) else None
    return dict(opts) if isinstance(opts, dict) else {}
