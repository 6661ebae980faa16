"""Fixtures shared by several test modules.

* ``ml100k``: a writable copy of the tiny synthetic MovieLens-100K fixture (malformed-data tests edit it).
* ``demo_dir`` / ``env``: the app's shipped-model folder pointed at tiny demo models, and the bundled
  sample pointed at the requesting module's own ``sample_dir`` fixture (each app test module sizes its
  sample).
* ``made``: every hostile input of issue 11 (:mod:`tests.helpers.hostile`), generated once per module.

Under pytest-xdist (``-n auto``) each worker's PyTorch gets an equal share of the cores
(:func:`pytest_configure`), so N workers do not each start one thread per core.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import dcnviz.data
from tests.helpers import TEST_FIXTURES
from tests.helpers import hostile as H
from tests.helpers.app import write_demo_models

DATA_FIXTURES = TEST_FIXTURES / "data"


def pytest_configure(config: pytest.Config) -> None:
    """An xdist worker's PyTorch uses its share of the cores: cores // workers, at least 1.

    PyTorch starts one thread per core in every process; with ``-n auto`` there is one worker per core,
    so a 16-core machine would run 256 spinning threads on 16 cores.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers > 1:
        import torch

        from dcnviz.app.jobs import machine_cores

        torch.set_num_threads(max(1, machine_cores() // workers))


@pytest.fixture
def ml100k(tmp_path: Path) -> Path:
    return Path(shutil.copytree(DATA_FIXTURES / "ml-100k-tiny", tmp_path / "ml-100k"))


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("models")
    write_demo_models(d)
    return d


@pytest.fixture
def env(demo_dir: Path, sample_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DCNVIZ_MODELS_DIR", str(demo_dir))
    monkeypatch.setattr(dcnviz.data, "SAMPLE_DIR", sample_dir)
    return demo_dir


@pytest.fixture(scope="module")
def made() -> dict[str, bytes]:
    """Every hostile input, generated once for the module."""
    return {h.name: h.make() for h in H.HOSTILE}
