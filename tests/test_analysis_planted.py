"""Issue 3, Done-when: on the synthetic sample, a DCN-V2 trained inside the test finds the planted crosses.

The sample (``sample_data/``, made by ``dcnviz.sample``) plants user-side × movie-side crosses whose
list is in ``sample_data/ground_truth.json``, plus a control pair that carries no signal. After a
short training, the symmetric block norms √(‖W_ij‖² + ‖W_ji‖²) of the first cross layer (paper §7.6,
Eq. 7) must rank every planted pair within the top m off-diagonal pairs (m = number planted), above
the control pair. The recipe below held for 10 of 10 seeds (0–9) when it was chosen, with the weaker
planted pair 1.16–1.33× the strongest non-planted one (see docs/analysis.md); the test runs one seed
(~12 s on 2 cores).
"""

from __future__ import annotations

import json

import pytest

from dcnviz import analysis as A
from dcnviz.model import ModelConfig
from dcnviz.weights import from_model
from tests.helpers import ROOT

TRUTH = ROOT / "sample_data" / "ground_truth.json"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def truth() -> dict:
    if not TRUTH.is_file():
        pytest.skip("sample_data/ground_truth.json is not there")
    return json.loads(TRUTH.read_text(encoding="utf-8"))


@pytest.fixture
def one_thread():
    """One torch thread: small matmuls gain little from two, and lose a lot when the cores are busy."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_dcnv2_ranks_the_planted_crosses_first_in_the_symmetric_view(truth, one_thread):
    data = pytest.importorskip("dcnviz.data")
    train = pytest.importorskip("dcnviz.train")
    splits = data.load_splits(data.DataOptions(source="sample"))
    planted = [frozenset(p["pair"]) for p in truth["planted"]]
    control = frozenset(truth["control"]["pair"])
    names = set(splits.spec.names)
    assert all(p <= names for p in [*planted, control]), "the sample's ground truth names unknown features"
    model = train.build_model(splits.spec, ModelConfig(model="dcnv2", cross_layers=2, hidden=(64,)), 0)
    result = train.fit(model, splits, train.TrainConfig(epochs=3, batch_size=256, lr=1e-3, seeds=(0,), device="cpu"))
    assert result.history, "training ran no epoch"
    layer0 = A.analyze_layer(from_model(model.cpu()), 0)
    table = layer0.top_crosses("symmetric")  # off-diagonal pairs, each once, strongest first
    order = [frozenset((a, b)) for a, b in zip(table.feature_i, table.feature_j, strict=True)]
    m = len(planted)
    top = order[:m]
    assert set(top) == set(planted), (
        f"top {m} pairs are {[sorted(p) for p in top]}; planted {[sorted(p) for p in planted]}"
    )
    assert order.index(control) >= m
    value = dict(zip(order, table.value, strict=True))
    assert min(value[p] for p in planted) > value[control]
