"""Numbers for JSON, which has no NaN or Inf: a non-finite float becomes ``null`` (None). Written once
for the model file's metadata, the CLI's JSON and the app's tables.

>>> finite_or_none(float("nan")) is None, finite_or_none(2)
(True, 2.0)
>>> finite_json({"auc": float("inf"), "runs": (1.5, float("nan"))})
{'auc': None, 'runs': [1.5, None]}
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def finite_or_none(x: float) -> float | None:
    """``float(x)``, or None where it is NaN or ±Inf."""
    x = float(x)
    return x if math.isfinite(x) else None


def finite_list(a: np.ndarray) -> list[Any]:
    """An array as nested lists of floats, non-finite entries None."""
    return [finite_list(r) for r in a] if np.ndim(a) > 1 else [finite_or_none(v) for v in np.asarray(a).reshape(-1)]


def finite_json(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None, recursively (dict keys as str, tuples as lists)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
    return obj
