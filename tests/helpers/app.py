"""Helpers for the app tests: tiny demo models with a planted cross, an AppTest factory and page drivers.

(No tests here: the planted model's own check is ``tests/app/test_pages.py::
test_planted_model_has_the_planted_block_on_top``.)
"""

from __future__ import annotations

import base64
import json
import logging
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from streamlit.testing.v1 import AppTest

from dcnviz.checkpoint import save_model
from dcnviz.model import DCNModel, ModelConfig
from dcnviz.spec import FeatureSpec, Field
from tests.helpers import ROOT

APP = str(ROOT / "app.py")
PAGES = "dcnviz/app/pages"
NAMES = ["user_id", "movie_id", "gender", "age", "occupation"]
PLANTED = ("gender", "movie_id")  # the cross the tiny full-rank model has planted in layer 0
TIMEOUT = 120  # seconds an AppTest run may take (a training run on a busy 2-core machine included)


def start() -> AppTest:
    """A fresh session of the app, run once (the Tour page), with no exception or st.error."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    ok(at)
    return at


def ok(at: AppTest) -> None:
    """No exception and no st.error on the page."""
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def run_job(at: AppTest, button: str, job_key: str, *, timeout: float = 180.0) -> Any:
    """Press ``button``, rerun the page until the session's job (``session_state[job_key]``) has finished, as
    a user waiting on it would, then once more; no exception or st.error on the way. Returns the job."""
    at.button(key=button).click().run()
    ok(at)
    job = at.session_state[job_key]
    deadline = time.monotonic() + timeout
    while not job.snapshot().finished:
        assert time.monotonic() < deadline, f"timed out waiting for {job_key}"
        at.run()
        time.sleep(0.2)
    at.run()
    ok(at)
    return job


def goto(at: AppTest, page: str) -> AppTest:
    return at.switch_page(f"{PAGES}/{page}.py").run()


def arr(v: object) -> np.ndarray:
    """A Plotly JSON array: a nested list, or a typed array {"dtype", "bdata" (base64), "shape"}."""
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        shape = v.get("shape")
        if isinstance(shape, str):
            shape = [int(x) for x in shape.split(",")]
        return a.reshape(shape) if shape else a
    return np.array(v, dtype=float)


def charts(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def tiny_spec() -> FeatureSpec:
    def cat(name: str, n: int, dim: int) -> Field:
        return Field(name=name, kind="categorical", embedding_dim=dim, vocab=tuple(str(i) for i in range(n)))

    return FeatureSpec(
        (cat("user_id", 20, 4), cat("movie_id", 30, 4), cat("gender", 2, 2), cat("age", 7, 3), cat("occupation", 21, 3))
    )


def planted_full_model(seed: int = 0) -> DCNModel:
    """A 2-layer full-rank DCN-V2 whose first layer has a dominant (gender, movie_id) block."""
    torch.manual_seed(seed)
    model = DCNModel(tiny_spec(), ModelConfig(model="dcnv2", cross_layers=2, hidden=(8,)))
    blocks = {b.name: b for b in model.spec.blocks()}
    g, m = blocks["gender"], blocks["movie_id"]
    with torch.no_grad():
        W = model.cross.layers[0].linear.weight  # type: ignore[union-attr,index]
        W.mul_(0.05)
        W[g.start : g.stop, m.start : m.stop] = 3.0
    return model


def mixture_model(seed: int = 1) -> DCNModel:
    torch.manual_seed(seed)
    return DCNModel(tiny_spec(), ModelConfig(model="dcn-mix", cross_layers=2, rank=3, experts=2, hidden=(8,)))


def write_demo_models(folder: Path) -> list[Path]:
    """Two small shipped-style models: a full-rank DCN-V2 with a planted cross and a DCN-Mix."""
    folder.mkdir(parents=True, exist_ok=True)
    return [
        save_model(
            folder / "a_dcnv2_planted.safetensors",
            planted_full_model(),
            metrics={"test": {"auc": 0.75, "logloss": 0.5}},
            train_config={"lr": 0.001, "epochs": 1},
            history=[{"epoch": 1, "train_logloss": 0.6, "val": {"auc": 0.7, "logloss": 0.55}}],
        ),
        save_model(folder / "b_dcnmix.safetensors", mixture_model()),
    ]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def no_deprecations() -> Iterator[list[str]]:
    """Fail on Streamlit deprecation messages (logged by ``streamlit.deprecation_util``) and on
    Deprecation/Future warnings raised while the block runs."""
    handler = _Collect()
    logger = logging.getLogger("streamlit.deprecation_util")
    logger.addHandler(handler)
    found: list[str] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield found
        found += [
            f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})"
            for w in caught
            if issubclass(w.category, DeprecationWarning | FutureWarning | PendingDeprecationWarning)
        ]
        found += handler.messages
    finally:
        logger.removeHandler(handler)
    if found:
        raise AssertionError("deprecation warnings:\n" + "\n".join(found))


def upload(at: AppTest, name: str, data: bytes, *, fmt: str | None = None, names: bytes | None = None) -> AppTest:
    at = goto(at, "model")
    if fmt is not None:
        at.selectbox(key="up_format").set_value(fmt)
    if names is not None:
        at.file_uploader(key="up_names").upload("NAMES.json", names, "application/json")
    at.file_uploader(key="up_file").upload(name, data)
    return at.run()
