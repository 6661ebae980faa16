r"""Regression models of the synthetic studies (§6): cross networks with a linear head, ReLU DNNs.

* ``dcnv2``: L full-rank cross layers (Eq. 1) on x0 = x, then y = vᵀ x_L + c.
* ``dcnv2-no-bias`` / ``dcnv2-no-residual`` / ``dcnv2-no-bias-no-residual``: Fig. 4's ablations,
  the same layers with b and/or the + x_l term switched off in every layer.
* ``dcn``: L DCN-V1 layers, x_{l+1} = x0 (x_lᵀ w) + b + x_l, same head.
* ``dnn``: L ReLU layers of width d (so a 1-layer DNN has exactly DCN-V2's parameter count, as in
  Table 1), then a linear output.
* ``dnn-large``: the paper's larger DNNs: [200, 200] for f1/f2, [1024, 512, 256] for f3
  (``layers`` is ignored; the fixed widths apply to any task by its d: [1024, 512, 256] for d > 10).

The cross layers are :mod:`dcnviz.layers`' own (not re-implemented here).

Parameter counts follow the paper (PAPER-NOTES.md): every trainable number except the output
intercept c. DCN-V2 with one layer has d² (W) + d (b) + d (v) = d² + 2d (24 / 15 / 10,200 for
f1 / f2 / f3); DCN has 3d (12 / 9 / 300); a 1-layer DNN of width d has d² + d + d as well.
"""

from __future__ import annotations

import torch
from torch import nn

from dcnviz.errors import ConfigError
from dcnviz.layers import CrossNetwork, build_cross_layer, init_kernel_
from dcnviz.options import REGRESSION_MODELS
from dcnviz.weights import LayerKind


def large_dnn_widths(d: int) -> tuple[int, ...]:
    """The paper's 'DNN (large)': [200, 200] for f1/f2 (d ≤ 10), [1024, 512, 256] for f3."""
    return (200, 200) if d <= 10 else (1024, 512, 256)


class CrossRegressor(nn.Module):
    """A cross network with a linear regression head: y = vᵀ x_L + c (x0 = the raw input x).

    Args:
        d: input width.
        layers: number of cross layers L.
        kind: ``full`` (DCN-V2, Eq. 1) or ``vector`` (DCN-V1).
        bias, residual: keep b / the + x_l term in every layer (Fig. 4's ablations switch them off).
    """

    def __init__(
        self, d: int, layers: int, *, kind: LayerKind = "full", bias: bool = True, residual: bool = True
    ) -> None:
        super().__init__()
        if layers < 1:
            raise ConfigError(f"layers must be >= 1; got layers={layers}")
        if kind not in ("full", "vector"):
            raise ConfigError(f"cross kind must be 'full' or 'vector'; got kind={kind!r}")
        self.d, self.kind = d, kind
        self.cross = CrossNetwork([build_cross_layer(kind, d, bias=bias, residual=residual) for _ in range(layers)])
        self.head = nn.Linear(d, 1)  # head.weight (1, d) = vᵀ, head.bias = c
        init_kernel_(self.head.weight, d, "he_normal")
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.cross(x)).squeeze(-1)  # (B,)


class DNNRegressor(nn.Module):
    """ReLU layers of the given widths (He-normal kernels, zero biases) and a linear output."""

    def __init__(self, d: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        if not hidden or any(h < 1 for h in hidden):
            raise ConfigError(f"hidden sizes must be >= 1 and non-empty; got hidden={list(hidden)}")
        layers: list[nn.Module] = []
        width = d
        for h in hidden:
            lin = nn.Linear(width, h)
            init_kernel_(lin.weight, width, "he_normal")
            nn.init.zeros_(lin.bias)
            layers += [lin, nn.ReLU()]
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 1)
        init_kernel_(self.head.weight, width, "he_normal")
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).squeeze(-1)  # (B,)


Regressor = CrossRegressor | DNNRegressor


def build_regressor(
    model: str, d: int, layers: int, *, seed: int = 0, dtype: torch.dtype = torch.float64
) -> CrossRegressor | DNNRegressor:
    """A regression model by name (see the module docstring), initialised from ``seed``.

    The global torch RNG is left as it was.

    >>> m = build_regressor("dcnv2", 4, 1)
    >>> paper_param_count(m), paper_param_count(build_regressor("dcn", 4, 1))
    (24, 12)
    """
    if model not in REGRESSION_MODELS:
        raise ConfigError(f"model must be one of {REGRESSION_MODELS}; got model={model!r}")
    if d < 1:
        raise ConfigError(f"d must be >= 1; got d={d}")
    if model != "dnn-large" and layers < 1:
        raise ConfigError(f"layers must be >= 1; got layers={layers}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net: CrossRegressor | DNNRegressor
        if model == "dnn":
            net = DNNRegressor(d, (d,) * layers)
        elif model == "dnn-large":
            net = DNNRegressor(d, large_dnn_widths(d))
        elif model == "dcn":
            net = CrossRegressor(d, layers, kind="vector")
        else:
            bias = "no-bias" not in model
            residual = "no-residual" not in model
            net = CrossRegressor(d, layers, kind="full", bias=bias, residual=residual)
    return net.to(dtype)


def model_layers(model: str, d: int, layers: int) -> int:
    """The number of layers a row reports: ``layers``, or the fixed depth of ``dnn-large``."""
    return len(large_dnn_widths(d)) if model == "dnn-large" else layers


def paper_param_count(net: nn.Module) -> int:
    """Trainable parameters counted as the paper does: all but the output intercept c."""
    total = sum(p.numel() for p in net.parameters() if p.requires_grad)
    head = getattr(net, "head", None)
    if isinstance(head, nn.Linear) and head.bias is not None:
        total -= head.bias.numel()
    return total
