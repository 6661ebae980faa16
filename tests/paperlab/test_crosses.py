"""Learned cross coefficients of a 1-layer DCN-V2 against the ground truth of f1/f2 (§6)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dcnviz.errors import ConfigError
from dcnviz.paperlab.crosses import (
    cross_coefficients,
    learned_cross_matrix,
    one_layer_cross_matrix,
    one_layer_linear_terms,
    true_cross_matrix,
)
from dcnviz.paperlab.fit import FitConfig, fit_regression, rmse
from dcnviz.paperlab.models import build_regressor
from dcnviz.paperlab.tasks import build_task


def _set_one_layer(net: torch.nn.Module, W: list[list[float]], b: list[float], v: list[float], c: float) -> None:
    layer = net.cross.layers[0]  # type: ignore[union-attr, index]
    with torch.no_grad():
        layer.linear.weight.copy_(torch.tensor(W, dtype=torch.float64))
        if layer.linear.bias is not None:
            layer.linear.bias.copy_(torch.tensor(b, dtype=torch.float64))
        net.head.weight.copy_(torch.tensor([v], dtype=torch.float64))  # type: ignore[union-attr, operator]
        net.head.bias.fill_(c)  # type: ignore[union-attr, operator]


def test_known_answer_by_hand() -> None:
    """W = [[1, 2], [3, 4]], b = 0, v = 1: y = x1(x1 + 2x2) + x2(3x1 + 4x2) + x1 + x2 = x1² + 5x1x2 + 4x2² + x1 + x2."""
    net = build_regressor("dcnv2", 2, 1)
    _set_one_layer(net, [[1.0, 2.0], [3.0, 4.0]], [0.0, 0.0], [1.0, 1.0], 0.0)
    expected = np.array([[1.0, 5.0], [5.0, 4.0]])
    np.testing.assert_allclose(one_layer_cross_matrix(net), expected)  # type: ignore[arg-type]
    np.testing.assert_allclose(learned_cross_matrix(net), expected, atol=1e-12)
    np.testing.assert_allclose(one_layer_linear_terms(net), [1.0, 1.0])  # type: ignore[arg-type]
    x = torch.tensor([[0.3, -0.7]], dtype=torch.float64)
    x1, x2 = 0.3, -0.7
    assert float(net(x).detach()) == pytest.approx(x1**2 + 5 * x1 * x2 + 4 * x2**2 + x1 + x2, abs=1e-14)


def test_cross_coefficients_halves_off_the_diagonal() -> None:
    M = np.random.default_rng(0).normal(size=(5, 5))
    C = cross_coefficients(M)
    Q = (M + M.T) / 2  # xᵀQx = xᵀMx
    np.testing.assert_allclose(C, 2 * Q - np.diag(np.diag(Q)))
    x = np.random.default_rng(1).normal(size=5)
    poly = sum(C[i, i] * x[i] ** 2 for i in range(5)) + sum(
        C[i, j] * x[i] * x[j] for i in range(5) for j in range(i + 1, 5)
    )
    assert poly == pytest.approx(float(x @ M @ x))


@pytest.mark.parametrize("model", ["dcnv2", "dcnv2-no-bias", "dcnv2-no-residual", "dcnv2-no-bias-no-residual"])
def test_closed_form_equals_hessian(model: str) -> None:
    net = build_regressor(model, 6, 1, seed=4)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn(p.shape, dtype=p.dtype, generator=torch.Generator().manual_seed(p.numel())))
    np.testing.assert_allclose(learned_cross_matrix(net), one_layer_cross_matrix(net), atol=1e-12)  # type: ignore[arg-type]
    # linear terms: the gradient at 0
    x0 = torch.zeros(1, 6, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(net(x0).sum(), x0)
    np.testing.assert_allclose(g.numpy()[0], one_layer_linear_terms(net), atol=1e-12)  # type: ignore[arg-type]


def test_hessian_of_a_deeper_net_matches_finite_differences() -> None:
    net = build_regressor("dcnv2", 3, 2, seed=1)
    C = learned_cross_matrix(net)
    e = np.eye(3)
    h = 1e-3

    def f(x: np.ndarray) -> float:
        return float(net(torch.tensor(x[None], dtype=torch.float64)).detach())

    for i in range(3):
        for j in range(3):
            fd = (f(h * (e[i] + e[j])) - f(h * (e[i] - e[j])) - f(h * (e[j] - e[i])) + f(-h * (e[i] + e[j]))) / (
                4 * h * h
            )
            want = fd / 2 if i == j else fd
            assert C[i, j] == pytest.approx(want, abs=1e-5)


@pytest.mark.parametrize("task", ["f1", "f2"])
def test_learned_1_layer_dcnv2_recovers_the_true_crosses(task: str) -> None:
    t = build_task(task)
    x, y = (torch.as_tensor(a) for a in t.sample(500, seed=0))
    xt, yt = (torch.as_tensor(a) for a in t.sample(500, seed=0, split="test"))
    net = build_regressor("dcnv2", t.d, 1, seed=0)
    res = fit_regression(net, x, y, FitConfig(steps=300))
    assert res.train_rmse < 1e-8
    assert rmse(net, xt, yt) < 1e-8
    truth = true_cross_matrix(task)
    np.testing.assert_allclose(one_layer_cross_matrix(net), truth, atol=1e-7)  # type: ignore[arg-type]
    np.testing.assert_allclose(learned_cross_matrix(net), truth, atol=1e-7)
    np.testing.assert_allclose(one_layer_linear_terms(net), 0.0, atol=1e-7)  # type: ignore[arg-type]
    # W itself is not identifiable, but the learned coefficients are: a different seed gives the same ones
    other = build_regressor("dcnv2", t.d, 1, seed=1)
    fit_regression(other, x, y, FitConfig(steps=300))
    np.testing.assert_allclose(learned_cross_matrix(other), truth, atol=1e-7)


def test_refusals() -> None:
    with pytest.raises(ConfigError, match="cross-network regressor"):
        learned_cross_matrix(build_regressor("dnn", 3, 1))
    with pytest.raises(ConfigError, match="1-layer DCN-V2"):
        one_layer_cross_matrix(build_regressor("dcnv2", 3, 2))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="1-layer DCN-V2"):
        one_layer_cross_matrix(build_regressor("dcn", 3, 1))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="square"):
        cross_coefficients(np.zeros((2, 3)))
