r"""Reading the learned cross coefficients out of a trained regressor (§6, §7.6).

A 1-layer DCN-V2 regressor computes, with output weights v and intercept c,

.. math::

    x_1 = x_0 \odot (W x_0 + b) + x_0, \qquad
    y = v^\top x_1 + c = \sum_{i,j} v_i W_{ij} x_i x_j + \sum_i v_i (b_i + 1) x_i + c .

So with M = diag(v) W (M_ij = v_i W_ij) the quadratic part is xᵀ M x, and as a polynomial

* the coefficient of x_i² is M_ii = v_i W_ii,
* the coefficient of x_i x_j (i ≠ j) is M_ij + M_ji = v_i W_ij + v_j W_ji,
* the coefficient of x_i is v_i (b_i + 1) (the bias inside the product and the residual both add
  linear terms; without a residual it is v_i b_i, without a bias v_i, without both 0),
* the constant is c.

:func:`cross_coefficients` turns any M into that *coefficient matrix*, symmetric with C_ii = M_ii and
C_ij = C_ji = M_ij + M_ji, which is what :meth:`SyntheticTask.cross_matrix` returns for the ground
truth. (The symmetric matrix of the quadratic form, Q = (M + Mᵀ)/2 with xᵀQx = xᵀMx, differs from C
by halving off the diagonal: C = 2Q − diag(Q).) W itself is not identifiable — only M + Mᵀ is: any
antisymmetric change of M leaves f unchanged — so compare coefficients, not W.

For deeper cross networks (and as a check of the formula above) :func:`learned_cross_matrix` reads the
same coefficients from the Hessian of the network at x = 0, exact for any polynomial network:
∂²y/∂x_i∂x_j at 0 = C_ij (i ≠ j) and ∂²y/∂x_i² at 0 = 2 C_ii.
"""

from __future__ import annotations

import numpy as np
import torch

from dcnviz.errors import ConfigError
from dcnviz.layers import FullRankCross
from dcnviz.paperlab.models import CrossRegressor
from dcnviz.paperlab.tasks import SyntheticTask, build_task


def cross_coefficients(M: np.ndarray) -> np.ndarray:
    """The coefficient matrix of the quadratic xᵀ M x: C_ii = M_ii, C_ij = C_ji = M_ij + M_ji.

    >>> cross_coefficients(np.array([[1.0, 2.0], [0.5, 3.0]]))
    array([[1. , 2.5],
           [2.5, 3. ]])
    """
    M = np.asarray(M, dtype=np.float64)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ConfigError(f"M must be a square matrix; got shape {M.shape}")
    C = M + M.T
    np.fill_diagonal(C, np.diag(M))
    return C


def true_cross_matrix(task: str | SyntheticTask, *, seed: int = 0) -> np.ndarray:
    """Ground-truth coefficients of the order-2 crosses of ``task`` (d, d), as :func:`cross_coefficients`.

    >>> true_cross_matrix("f1")[0]
    array([1., 1., 1., 1.])
    """
    t = task if isinstance(task, SyntheticTask) else build_task(task, seed=seed)
    return t.cross_matrix()


def _one_layer(model: CrossRegressor) -> tuple[FullRankCross, np.ndarray]:
    layers = list(model.cross.layers)
    if len(layers) != 1 or not isinstance(layers[0], FullRankCross):
        raise ConfigError(
            f"the closed form needs a 1-layer DCN-V2 (full-rank) regressor; got {len(layers)} "
            f"{type(layers[0]).__name__} layer(s): use learned_cross_matrix for others"
        )
    v = model.head.weight.detach().double().numpy()[0]  # (d,)
    return layers[0], v


def one_layer_cross_matrix(model: CrossRegressor) -> np.ndarray:
    """The closed form above for a 1-layer DCN-V2 regressor: cross_coefficients(diag(v) W)."""
    layer, v = _one_layer(model)
    W = layer.effective_weight().detach().double().numpy()  # (d, d)
    return cross_coefficients(v[:, None] * W)


def one_layer_linear_terms(model: CrossRegressor) -> np.ndarray:
    """Coefficients of x_i (d,) in a 1-layer DCN-V2 regressor: v_i (b_i + 1) (with b, residual as built)."""
    layer, v = _one_layer(model)
    b = layer.bias()
    inner = np.zeros_like(v) if b is None else b.detach().double().numpy()
    if layer.residual:
        inner = inner + 1.0
    return v * inner


def learned_cross_matrix(model: torch.nn.Module) -> np.ndarray:
    """Order-2 coefficients (d, d) of a trained cross regressor, from its Hessian at x = 0.

    Exact for cross networks (polynomials in x) of any depth, DCN-V1 included; for a 1-layer DCN-V2
    it equals :func:`one_layer_cross_matrix`. ReLU networks are not polynomials, and their Hessian
    at 0 says nothing about crosses, so they are refused.
    """
    if not isinstance(model, CrossRegressor):
        raise ConfigError(f"learned_cross_matrix needs a cross-network regressor; got {type(model).__name__}")
    p = next(model.parameters())
    x0 = torch.zeros(model.d, dtype=p.dtype)

    def f(x: torch.Tensor) -> torch.Tensor:
        return model(x.unsqueeze(0))[0]

    H = torch.autograd.functional.hessian(f, x0).detach().double().numpy()  # (d, d)
    C = H.copy()
    np.fill_diagonal(C, np.diag(H) / 2.0)
    return C
