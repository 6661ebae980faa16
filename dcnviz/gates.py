"""Gate weighting of a dcnviz mixture model's experts (paper Eq. 3): the one module that runs the gates.

A mixture layer's effective W is Σ_k G_k(x_l) W_k, which depends on the input. Because each W_k is
fixed, its average over inputs is Σ_k E_x[G_k(x_l)] W_k: :func:`mean_gates` runs a model over encoded
rows and returns E_x[G(x_l)] per cross layer, for ``analysis.analyze(..., gate_weights=...)``;
:func:`mean_gates_on` does so for the model of an opened file (:class:`dcnviz.modelfile.ModelFile`) over
the validation split of the data options given (the recorded split, recreated by
:meth:`dcnviz.modelfile.RecordedData.options_at`). The CLI (``inspect --gates-data``) and the app (on
data of this server only) use it. :mod:`dcnviz.analysis` stays NumPy only; torch runs here.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from dcnviz.errors import ConfigError

if TYPE_CHECKING:
    from dcnviz.encoded import Encoded
    from dcnviz.model import DCNModel
    from dcnviz.modelfile import ModelFile

DEFAULT_GATE_ROWS = 20_000


def mean_gates(model: DCNModel, data: Encoded, *, max_rows: int = DEFAULT_GATE_ROWS) -> list[np.ndarray | None]:
    """E_x[G(x_l)] (K,) for each mixture cross layer over (up to ``max_rows`` of) ``data``; None elsewhere.

    Because each W_k is fixed, E_x[Σ_k G_k(x_l) W_k] = Σ_k E_x[G_k(x_l)] W_k: pass the result as
    ``gate_weights`` to :func:`dcnviz.analysis.layer_matrix` (or :func:`dcnviz.analysis.analyze`) for the
    gate-weighted average. The inputs x_l come from ``model.cross.layer_inputs(x0)``.
    """
    import torch

    from dcnviz.layers import MixtureCross

    layers = model.cross_layers()
    if model.cross is None or not layers:
        return []
    n = min(len(data), max_rows)
    if n < 1:
        raise ConfigError("mean_gates needs at least one input row; got an empty dataset")
    device = next(model.parameters()).device
    sample = data.index(slice(0, n)).to(device)  # the model's device (a GPU-trained model stays there)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x0 = model.x0(sample.cat, sample.dense, sample.multi)  # (n, d)
            xs = model.cross.layer_inputs(x0)  # L × (n, d)
            out: list[np.ndarray | None] = []
            for layer, xl in zip(layers, xs, strict=True):
                if isinstance(layer, MixtureCross):
                    out.append(layer.gates(xl).double().mean(dim=0).cpu().numpy())  # (K,)
                else:
                    out.append(None)
    finally:
        model.train(was_training)
    return out


def check_mixture(mf: ModelFile) -> None:
    """Raise :class:`ConfigError` unless ``mf`` is a dcnviz mixture model (whose gates can be run)."""
    if mf.config is None:
        raise ConfigError(
            f"mean gates need a dcnviz model file (the gates are computed by running the model on data); "
            f"this file is {mf.detected}"
        )
    if mf.config.model != "dcn-mix" and not mf.config.experts:
        raise ConfigError(f"mean gates apply to mixture models (dcn-mix); this file is {mf.config.model!r}")


def mean_gates_on(mf: ModelFile, options: Any, *, rows: int = DEFAULT_GATE_ROWS) -> tuple[list[np.ndarray | None], str]:
    """(E_x[G(x_l)] per cross layer, a label such as "gate-weighted over 7,286 validation inputs") of the
    model in ``mf`` over the first ``rows`` rows of the validation split of ``options`` (a
    :class:`~dcnviz.data.DataOptions`).

    Raises:
        ConfigError: not a mixture model, or ``rows`` < 1; DataFormatError / FileNotFoundError: the
        data is not where ``options`` says.
    """
    from dcnviz.data import load_splits

    if rows < 1:
        raise ConfigError(f"rows must be >= 1; got {rows}")
    check_mixture(mf)
    splits = load_splits(options, spec=mf.spec)
    n = min(rows, len(splits.val))
    return mean_gates(mf.build_model(), splits.val, max_rows=rows), f"gate-weighted over {n:,} validation inputs"


def recorded_mean_gates(
    source_file: str | os.PathLike[str] | bytes,
    *,
    source: str | None = None,
    data_dir: str | None = None,
    schema: str | None = None,
    rows: int = DEFAULT_GATE_ROWS,
) -> tuple[list[np.ndarray | None], str]:
    """:func:`mean_gates_on` for a model file of your own, as the command line reads it.

    ``source``/``data_dir``/``schema`` say where the data is now; left out, what the file recorded
    (:meth:`~dcnviz.modelfile.RecordedData.cli_options`: the recorded folder is used, so call this
    only on files you trust to name your own folders; the app does not).

    Raises:
        ConfigError: not a mixture model, or ``rows`` < 1; CheckpointError: not a dcnviz model file;
        DataFormatError / FileNotFoundError: the data is not where it is said to be.
    """
    from dcnviz.modelfile import RecordedData, open_model_file

    if rows < 1:
        raise ConfigError(f"rows must be >= 1; got {rows}")
    mf = open_model_file(source_file, format="dcnviz")
    check_mixture(mf)
    recorded = mf.data or RecordedData()
    options, _ = recorded.cli_options(source or recorded.source or "sample", data_dir=data_dir, schema=schema)
    return mean_gates_on(mf, options, rows=rows)
