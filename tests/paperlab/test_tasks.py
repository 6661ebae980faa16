"""Synthetic tasks of §6 and the regression models' parameter counts (paper Table 1)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dcnviz.errors import ConfigError
from dcnviz.paperlab.models import build_regressor, large_dnn_widths, paper_param_count
from dcnviz.paperlab.tasks import TASKS, build_task


def test_f1_f2_are_eq6() -> None:
    x = np.random.default_rng(0).uniform(-1, 1, size=(50, 4))
    x1, x2, x3, x4 = x.T
    np.testing.assert_allclose(build_task("f1").evaluate(x), x1**2 + x1 * x2 + x3 * x1 + x4 * x1, atol=1e-15)
    x = x[:, :3]
    x1, x2, x3 = x.T
    f2 = x1**2 + 0.1 * x1 * x2 + x2 * x3 + 0.1 * x3**2
    np.testing.assert_allclose(build_task("f2").evaluate(x), f2, atol=1e-15)


def test_f1_cross_matrix_by_hand() -> None:
    C = build_task("f1").cross_matrix()
    expected = np.zeros((4, 4))
    expected[0, 0] = 1.0
    for j in (1, 2, 3):
        expected[0, j] = expected[j, 0] = 1.0
    np.testing.assert_array_equal(C, expected)


@pytest.mark.parametrize(
    ("name", "d", "orders"),
    [("f3", 100, {2: 100}), ("order3", 50, {3: 20}), ("order4", 50, {4: 20}), ("combined", 20, {2: 20, 3: 10, 4: 5})],
)
def test_random_tasks_have_the_papers_shape(name: str, d: int, orders: dict[int, int]) -> None:
    t = build_task(name, seed=7)
    assert t.d == d
    counts: dict[int, int] = {}
    for m in t.terms:
        counts[m.order] = counts.get(m.order, 0) + 1
        assert len(set(m.indices)) == m.order  # crosses of distinct coordinates
        assert all(0 <= i < d for i in m.indices)
    assert counts == orders
    assert len({m.indices for m in t.terms}) == len(t.terms)  # distinct crosses


def test_combined_task_parts() -> None:
    t = build_task("combined", seed=1)
    assert t.linear is not None and t.sine_w is not None
    assert (t.sine_amp, t.sine_freq, t.sine_phase, t.noise) == (0.1, 2.0, 0.1, 0.01)
    x = np.random.default_rng(3).uniform(-1, 1, size=(20, t.d))
    poly = sum(m.coef * np.prod(x[:, list(m.indices)], axis=1) for m in t.terms)
    expected = x @ np.array(t.linear) + poly + 0.1 * np.sin(2 * x @ np.array(t.sine_w) + 0.1)
    np.testing.assert_allclose(t.evaluate(x), expected, atol=1e-12)
    # the noise: y - f(x) has the stated standard deviation
    xs, ys = t.sample(20_000, seed=0)
    assert abs(float(np.std(ys - t.evaluate(xs))) - 0.01) < 0.0005


def test_seeds_fix_the_function_and_the_samples() -> None:
    a, b, c = build_task("f3", seed=1), build_task("f3", seed=1), build_task("f3", seed=2)
    assert a == b
    assert a.terms != c.terms
    x1, y1 = a.sample(10, seed=5)
    x2, y2 = a.sample(10, seed=5)
    x3, _ = a.sample(10, seed=5, split="test")
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.allclose(x1, x3)
    assert x1.min() >= -1 and x1.max() <= 1


def test_task_errors() -> None:
    with pytest.raises(ConfigError, match="task must be one of"):
        build_task("f4")
    with pytest.raises(ConfigError, match="d=4"):
        build_task("f1", d=10)
    with pytest.raises(ConfigError, match="shape"):
        build_task("f1").evaluate(np.zeros((3, 5)))
    with pytest.raises(ConfigError, match="distinct order-2 crosses"):
        build_task("f3", d=10)  # only 45 pairs exist
    assert set(TASKS) == {"f1", "f2", "f3", "order3", "order4", "combined"}


@pytest.mark.parametrize(
    ("model", "d", "expected"),
    [
        # Table 1: DCN-V2 d² + 2d, DCN 3d, a 1-layer DNN of width d the same as DCN-V2.
        ("dcnv2", 4, 24),
        ("dcnv2", 3, 15),
        ("dcnv2", 100, 10_200),
        ("dcn", 4, 12),
        ("dcn", 3, 9),
        ("dcn", 100, 300),
        ("dnn", 4, 24),
        ("dnn", 3, 15),
        ("dnn", 100, 10_200),
        # DNN (large): [200, 200] for f1/f2 = 41K; [1024, 512, 256] for f3 (the paper's 758K omits hidden biases)
        ("dnn-large", 4, 41_400),
        ("dnn-large", 3, 41_200),
        ("dnn-large", 100, 758_016 + 1024 + 512 + 256),
    ],
)
def test_param_counts_match_the_paper(model: str, d: int, expected: int) -> None:
    assert paper_param_count(build_regressor(model, d, 1)) == expected


def test_paper_rounded_sizes() -> None:
    # the paper prints 10K, 41K, 41K for these
    assert round(paper_param_count(build_regressor("dcnv2", 100, 1)), -3) == 10_000
    assert round(paper_param_count(build_regressor("dnn-large", 4, 1)), -3) == 41_000
    assert large_dnn_widths(100) == (1024, 512, 256)


def test_ablations_switch_components_off() -> None:
    for name, bias, residual in [
        ("dcnv2", True, True),
        ("dcnv2-no-bias", False, True),
        ("dcnv2-no-residual", True, False),
        ("dcnv2-no-bias-no-residual", False, False),
    ]:
        net = build_regressor(name, 5, 2)
        for layer in net.cross.layers:  # type: ignore[union-attr]
            assert (layer.bias() is not None) == bias
            assert layer.residual == residual
        # each layer: d² (+ d for b); head: d
        assert paper_param_count(net) == 2 * (25 + (5 if bias else 0)) + 5


def test_no_bias_no_residual_is_homogeneous() -> None:
    """Without b and the residual, L layers give a homogeneous polynomial of order L + 1 (Fig. 4)."""
    import torch

    net = build_regressor("dcnv2-no-bias-no-residual", 6, 2)
    x = torch.rand(4, 6, dtype=torch.float64)
    with torch.no_grad():
        net.head.bias.zero_()
        scaled = net(2.0 * x)
        base = net(x)
    np.testing.assert_allclose(scaled.numpy(), 8.0 * base.numpy(), rtol=1e-12)


def test_builder_keeps_global_rng_and_is_seeded() -> None:
    import torch

    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = build_regressor("dcnv2", 4, 1, seed=3)
    after = torch.rand(1)
    assert torch.equal(before, after)
    b = build_regressor("dcnv2", 4, 1, seed=3)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    assert next(a.parameters()).dtype == torch.float64
    with pytest.raises(ConfigError, match="model must be one of"):
        build_regressor("dcnv3", 4, 1)
    assert math.isfinite(float(a(torch.zeros(2, 4, dtype=torch.float64)).detach().sum()))
