"""Shared pieces of the side-by-side benchmarks (dcnviz vs DeepCTR-Torch 0.3.0).

Run the benchmarks with a Python that has both dcnviz's requirements and ``deepctr-torch==0.3.0``
(``pip install -r requirements-bench.txt``); the repository root is put on ``sys.path`` so they run
from a checkout without installing dcnviz.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
ML100K = ROOT.parent / "shared" / "data" / "ml-100k"

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dcnviz.encoded import DatasetSplits, Encoded  # noqa: E402


def machine_info(threads: int) -> dict[str, Any]:
    """Device, versions, date and load: what a result file needs to be read later."""
    info: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": threads,
        "cpu_count": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    with contextlib.suppress(OSError):
        info["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]
    try:
        import deepctr_torch

        info["deepctr_torch"] = deepctr_torch.__version__
    except ImportError:
        info["deepctr_torch"] = None
    return info


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def write_result(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    return path


@contextlib.contextmanager
def quiet_stdout():  # type: ignore[no-untyped-def]
    """DeepCTR-Torch prints the device and a "Train on ..." line even at verbose=0; keep stdout clean."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def import_deepctr() -> Any:
    """deepctr_torch, with its start-up version check (a network call) silenced."""
    with quiet_stdout():
        import deepctr_torch
    return deepctr_torch


def peer_columns(splits: DatasetSplits, embedding_dim: int) -> list[Any]:
    """DeepCTR-Torch SparseFeat columns for the categorical fields of ``splits.spec`` (same ids, same vocab)."""
    from deepctr_torch.inputs import SparseFeat

    cats = splits.spec.by_kind("categorical")
    if len(cats) != len(splits.spec.fields):
        raise SystemExit("the peer comparison uses categorical fields only")
    return [SparseFeat(f.name, vocabulary_size=f.vocab_size, embedding_dim=embedding_dim) for f in cats]


def peer_inputs(splits: DatasetSplits, enc: Encoded) -> dict[str, np.ndarray]:
    names = [f.name for f in splits.spec.by_kind("categorical")]
    return {n: enc.cat[:, j].numpy() for j, n in enumerate(names)}


def build_peer(
    kind: str, columns: list[Any], seed: int, *, hidden: tuple[int, ...] = (256, 256), device: str = "cpu"
) -> Any:
    """DeepCTR-Torch DCN (matrix parameterisation = a DCN-V2) or DCNMix, at its documented defaults."""
    from deepctr_torch.models import DCN, DCNMix

    with quiet_stdout():
        if kind == "dcn":
            model = DCN(
                columns,
                columns,
                cross_num=2,
                cross_parameterization="matrix",
                dnn_hidden_units=hidden,
                task="binary",
                device=device,
                seed=seed,
            )
        elif kind == "dcnmix":
            model = DCNMix(
                columns,
                columns,
                cross_num=2,
                dnn_hidden_units=hidden,
                low_rank=32,
                num_experts=4,
                task="binary",
                device=device,
                seed=seed,
            )
        else:
            raise ValueError(kind)
        model.compile("adam", "binary_crossentropy", metrics=["binary_crossentropy", "auc"])
    return model


def peer_predict(model: Any, x: dict[str, np.ndarray], batch_size: int = 4096) -> np.ndarray:
    with quiet_stdout():
        return np.asarray(model.predict(x, batch_size=batch_size)).reshape(-1)


def peer_metrics(model: Any, x: dict[str, np.ndarray], y: np.ndarray) -> dict[str, float]:
    """Test/val AUC and log loss of the peer's predicted probabilities (sklearn, as the peer reports them)."""
    from sklearn.metrics import log_loss, roc_auc_score

    p = peer_predict(model, x)
    return {"auc": float(roc_auc_score(y, p)), "logloss": float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7)))}


def mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}
