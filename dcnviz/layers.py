r"""Cross layers of DCN-V2 (paper §3.2, §3.5) and DCN-V1, each exposing its effective W.

Notation (the paper's):

* ``x0`` (B, d): the embedding layer's output, the base of every cross; ``xl`` (B, d): layer input.
* ``W`` (d, d) in **paper orientation**: the layer computes ``W @ x``, rows = output slot,
  columns = input slot. For a full-rank layer ``linear.weight`` *is* W.
* ``U``, ``V`` (d, r): low-rank factors, W = U Vᵀ. ``C`` (r, r): the nonlinear expert's core.
* ``b`` (d,): bias. ``K``: number of experts. ``B``: batch size.

Equations implemented:

* Eq. (1) full rank:  x_{l+1} = x0 ⊙ (W_l x_l + b_l) + x_l
* Eq. (2) low rank:   x_{l+1} = x0 ⊙ (U_l (V_lᵀ x_l) + b_l) + x_l
* Eq. (3) mixture:    x_{l+1} = Σ_i G_i(x_l) E_i(x_l) + x_l,  E_i(x_l) = x0 ⊙ (U_l^i (V_l^iᵀ x_l) + b_l)
* Eq. (4) nonlinear expert: E_i(x_l) = x0 ⊙ (U_l^i g(C_l^i g(V_l^iᵀ x_l)) + b_l)
* DCN-V1: x_{l+1} = x0 (x_lᵀ w_l) + b_l + x_l, i.e. Eq. (1) with W = 1 wᵀ when b = 0 (V1 adds b
  outside the product).
"""

from __future__ import annotations

import math
from typing import Literal, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dcnviz.errors import ConfigError
from dcnviz.weights import (
    ACTIVATIONS,
    GATES,
    LAYER_KINDS,
    Activation,
    ExpertWeights,
    FullRankWeights,
    Gate,
    LayerKind,
    LowRankWeights,
    MixtureWeights,
    Param,
    VectorWeights,
)

CrossKind = LayerKind  # full | lowrank | mixture | vector (declared with the common form, dcnviz.weights)
CROSS_KINDS: tuple[LayerKind, ...] = LAYER_KINDS
Init = Literal["he_normal", "truncated_normal"]
INITS: tuple[Init, ...] = ("he_normal", "truncated_normal")

_T = TypeVar("_T", torch.Tensor, np.ndarray)

LATEX: dict[LayerKind, str] = {
    "full": r"x_{l+1} = x_0 \odot (W_l x_l + b_l) + x_l",
    "lowrank": r"x_{l+1} = x_0 \odot \left(U_l (V_l^\top x_l) + b_l\right) + x_l",
    "mixture": (
        r"x_{l+1} = \sum_{i=1}^K G_i(x_l)\, x_0 \odot "
        r"\left(U_l^i\, g(C_l^i\, g(V_l^{i\top} x_l)) + b_l\right) + x_l"
    ),
    "vector": r"x_{l+1} = x_0\, (x_l^\top w_l) + b_l + x_l",
}


def init_kernel_(t: torch.Tensor, fan_in: int, init: Init, generator: torch.Generator | None = None) -> None:
    """He-normal kernel init (paper §7.1.3), or its truncated form (±2σ, as Keras' he_normal).

    Plain He normal has std √(2/fan_in). The truncated variant rescales so the *truncated*
    distribution keeps that std (the factor 0.8796 of a standard normal truncated at ±2).
    """
    if init not in INITS:
        raise ConfigError(f"init must be one of {INITS}; got init={init!r}")
    if t.is_meta:  # shape-only skeletons (checkpoint validation) need no values
        return
    std = math.sqrt(2.0 / fan_in)
    with torch.no_grad():
        if init == "he_normal":
            t.normal_(0.0, std, generator=generator)
        else:
            s = std / 0.87962566103423978
            t.copy_(truncated_normal(t.shape, s, generator))


def truncated_normal(shape: torch.Size, std: float, generator: torch.Generator | None) -> torch.Tensor:
    out = torch.empty(shape).normal_(0.0, 1.0, generator=generator)
    bad = out.abs() > 2.0
    while bool(bad.any()):
        out[bad] = torch.empty(int(bad.sum())).normal_(0.0, 1.0, generator=generator)
        bad = out.abs() > 2.0
    return out * std


def activation_fn(name: Activation):  # type: ignore[no-untyped-def]
    if name == "identity":
        return lambda t: t
    if name == "relu":
        return F.relu
    if name == "tanh":
        return torch.tanh
    if name == "hard_tanh":
        return F.hardtanh
    raise ConfigError(f"expert activation must be one of {ACTIVATIONS}; got {name!r}")


def _check_rank(rank: int, d: int) -> None:
    if not (1 <= rank <= d):
        raise ConfigError(f"rank must be in [1, d]; got rank={rank}, d={d}")


class FullRankCross(nn.Module):
    r"""Full-rank cross layer, DCN-V2 Eq. (1): x_{l+1} = x0 ⊙ (W x_l + b) + x_l.

    Args:
        d: width of x0.
        bias: keep b (the paper's ablation of Fig. 4 switches it off).
        residual: keep the + x_l term (switched off in the same ablation).
    """

    kind: CrossKind = "full"

    def __init__(self, d: int, *, bias: bool = True, residual: bool = True, init: Init = "he_normal") -> None:
        super().__init__()
        self.d, self.residual = d, residual
        self.linear = nn.Linear(d, d, bias=bias)  # linear.weight is W (d_out, d_in)
        init_kernel_(self.linear.weight, d, init)
        if bias:
            nn.init.zeros_(self.linear.bias)

    def forward(self, x0: torch.Tensor, xl: torch.Tensor) -> torch.Tensor:
        out = x0 * self.linear(xl)  # (B, d)
        return out + xl if self.residual else out

    def effective_weight(self) -> torch.Tensor:
        """W (d, d), paper orientation."""
        return self.linear.weight

    def bias(self) -> torch.Tensor | None:
        return self.linear.bias

    def common_form(self, p: Param) -> FullRankWeights:
        """This layer in common form; ``p(name, current)`` gives each parameter (``linear.weight``, ...)."""
        b = self.linear.bias
        return FullRankWeights(
            d=self.d, W=p("linear.weight", self.linear.weight), b=None if b is None else p("linear.bias", b)
        )


class LowRankCross(nn.Module):
    r"""Low-rank cross layer, DCN-V2 Eq. (2): x_{l+1} = x0 ⊙ (U (Vᵀ x_l) + b) + x_l.

    Args:
        d: width of x0.
        rank: r, 1 <= r <= d; the paper found r ≈ d/4 kept full-rank accuracy (§8).
    """

    kind: CrossKind = "lowrank"

    def __init__(
        self, d: int, rank: int, *, bias: bool = True, residual: bool = True, init: Init = "he_normal"
    ) -> None:
        super().__init__()
        _check_rank(rank, d)
        self.d, self.r, self.residual = d, rank, residual
        self.V = nn.Linear(d, rank, bias=False)  # V.weight (r, d) = Vᵀ
        self.U = nn.Linear(rank, d, bias=bias)  # U.weight (d, r) = U; U.bias = b
        init_kernel_(self.V.weight, d, init)
        init_kernel_(self.U.weight, rank, init)
        if bias:
            nn.init.zeros_(self.U.bias)

    def forward(self, x0: torch.Tensor, xl: torch.Tensor) -> torch.Tensor:
        out = x0 * self.U(self.V(xl))  # (B, d)
        return out + xl if self.residual else out

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(U, V), each (d, r), with W = U Vᵀ."""
        return lowrank_factors(self.U.weight, self.V.weight)

    def effective_weight(self) -> torch.Tensor:
        U, V = self.factors()
        return U @ V.T  # (d, d)

    def bias(self) -> torch.Tensor | None:
        return self.U.bias

    def common_form(self, p: Param) -> LowRankWeights:
        """This layer in common form; ``p(name, current)`` gives each parameter (``U.weight``, ...)."""
        U, V = lowrank_factors(p("U.weight", self.U.weight), p("V.weight", self.V.weight))
        b = self.U.bias
        return LowRankWeights(d=self.d, U=U, V=V, b=None if b is None else p("U.bias", b))


def lowrank_factors(u_weight: _T, v_weight: _T) -> tuple[_T, _T]:
    """(U, V) in the paper's orientation from :class:`LowRankCross`'s ``U.weight`` (d, r) and ``V.weight`` (r, d).

    ``V`` is an ``nn.Linear(d, r)``, so its weight (out, in) stores Vᵀ; :class:`MixtureCross` stores V itself.
    The model file keeps both names; this is the one place that turns ``V.weight`` around.
    """
    return u_weight, v_weight.T


class MixtureCross(nn.Module):
    r"""Mixture of low-rank experts, DCN-V2 Eq. (3), with the optional nonlinear expert of Eq. (4).

    x_{l+1} = Σ_i G_i(x_l) · x0 ⊙ (U_i g(C_i g(V_iᵀ x_l)) + b) + x_l. Without a nonlinearity
    (``activation="identity"``) there is no C and the expert is U_i V_iᵀ (Eq. 3). The gate is
    softmax or sigmoid of a linear map of x_l, or the constant 1/K (so K = 1 is exactly Eq. (2)).

    Args:
        d: width of x0. rank: r per expert. experts: K.
        gate: ``softmax`` | ``sigmoid`` | ``constant``.
        activation: g ∈ ``identity`` | ``relu`` | ``tanh`` | ``hard_tanh``.
    """

    kind: CrossKind = "mixture"

    def __init__(
        self,
        d: int,
        rank: int,
        experts: int,
        *,
        gate: Gate = "softmax",
        activation: Activation = "identity",
        bias: bool = True,
        residual: bool = True,
        init: Init = "he_normal",
    ) -> None:
        super().__init__()
        _check_rank(rank, d)
        if experts < 1:
            raise ConfigError(f"experts must be >= 1; got experts={experts}")
        if gate not in GATES:
            raise ConfigError(f"gate must be one of {GATES}; got gate={gate!r}")
        self.g = activation_fn(activation)
        self.d, self.r, self.K = d, rank, experts
        self.gate_kind, self.activation, self.residual = gate, activation, residual
        self.U = nn.Parameter(torch.empty(experts, d, rank))  # (K, d, r)
        self.V = nn.Parameter(torch.empty(experts, d, rank))  # (K, d, r)
        for k in range(experts):
            init_kernel_(self.U.data[k], rank, init)
            init_kernel_(self.V.data[k], d, init)
        self.C: nn.Parameter | None = None
        if activation != "identity":
            self.C = nn.Parameter(torch.empty(experts, rank, rank))  # (K, r, r)
            for k in range(experts):
                init_kernel_(self.C.data[k], rank, init)
        self.b: nn.Parameter | None = nn.Parameter(torch.zeros(d)) if bias else None
        self.gate: nn.Linear | None = None
        if gate != "constant":
            self.gate = nn.Linear(d, experts, bias=False)  # row k: G_k's weights
            init_kernel_(self.gate.weight, d, init)

    def gates(self, xl: torch.Tensor) -> torch.Tensor:
        """G(x_l) (B, K)."""
        if self.gate is None:
            return xl.new_full((xl.shape[0], self.K), 1.0 / self.K)
        logits = self.gate(xl)  # (B, K)
        return torch.softmax(logits, dim=-1) if self.gate_kind == "softmax" else torch.sigmoid(logits)

    def forward(self, x0: torch.Tensor, xl: torch.Tensor) -> torch.Tensor:
        B, K, r = xl.shape[0], self.K, self.r
        Vt = self.V.transpose(1, 2).reshape(K * r, self.d)  # (K r, d): stacked V_kᵀ
        h = self.g(F.linear(xl, Vt)).view(B, K, r)  # (B, K, r)
        if self.C is not None:
            h = self.g(torch.einsum("bkr,kqr->bkq", h, self.C))  # (B, K, r): C_k h_k
        G = self.gates(xl)  # (B, K)
        h = h * G.unsqueeze(-1)  # (B, K, r)
        Ucat = self.U.permute(1, 0, 2).reshape(self.d, K * r)  # (d, K r): [U_1 … U_K]
        y = F.linear(h.reshape(B, K * r), Ucat)  # (B, d) = Σ_k G_k U_k h_k
        if self.b is not None:
            y = y + G.sum(dim=1, keepdim=True) * self.b  # Σ_k G_k b
        out = x0 * y
        return out + xl if self.residual else out

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(U_k C_k or U_k, V_k) stacked over the experts, each (K, d, r): W_k = A_k B_kᵀ."""
        return (self.U if self.C is None else self.U @ self.C), self.V

    def expert_weights(self) -> torch.Tensor:
        """Each expert's W_k = U_k C_k V_kᵀ (or U_k V_kᵀ), (K, d, d).

        With a nonlinear g this is only the expert's *linear part*.
        """
        A, B = self.factors()
        return A @ B.transpose(1, 2)

    @property
    def linear_part_only(self) -> bool:
        return self.activation != "identity"

    def effective_weight(self) -> torch.Tensor:
        """Mean of the experts' (linear parts of) W_k: the effective W under uniform gates."""
        return self.expert_weights().mean(dim=0)

    def bias(self) -> torch.Tensor | None:
        return self.b

    def common_form(self, p: Param) -> MixtureWeights:
        """This layer in common form; ``p(name, current)`` gives each parameter (``U``, ``V``, ``C``, ...)."""
        U, V = p("U", self.U), p("V", self.V)  # (K, d, r) each: V stored as V
        C = p("C", self.C) if self.C is not None else None
        return MixtureWeights(
            d=self.d,
            experts=tuple(ExpertWeights(U=U[k], V=V[k], C=None if C is None else C[k]) for k in range(self.K)),
            activation=self.activation,
            b=None if self.b is None else p("b", self.b),
            gates=None if self.gate is None else p("gate.weight", self.gate.weight),
            gate_kind=self.gate_kind,
        )


class VectorCross(nn.Module):
    r"""DCN-V1 cross layer: x_{l+1} = x0 (x_lᵀ w) + b + x_l, the W = 1 wᵀ special case (§3.2)."""

    kind: CrossKind = "vector"

    def __init__(self, d: int, *, bias: bool = True, residual: bool = True, init: Init = "he_normal") -> None:
        super().__init__()
        self.d, self.residual = d, residual
        self.w = nn.Parameter(torch.empty(d))  # (d,)
        init_kernel_(self.w.data, d, init)
        self.b: nn.Parameter | None = nn.Parameter(torch.zeros(d)) if bias else None

    def forward(self, x0: torch.Tensor, xl: torch.Tensor) -> torch.Tensor:
        out = x0 * (xl @ self.w).unsqueeze(-1)  # (B, d)
        if self.b is not None:
            out = out + self.b
        return out + xl if self.residual else out

    def effective_weight(self) -> torch.Tensor:
        """W = 1 wᵀ (d, d): every row equals wᵀ."""
        return self.w.unsqueeze(0).expand(self.d, self.d)

    def bias(self) -> torch.Tensor | None:
        return self.b

    def common_form(self, p: Param) -> VectorWeights:
        """This layer in common form (W = 1 wᵀ, b outside the product)."""
        return VectorWeights(d=self.d, w=p("w", self.w), b=None if self.b is None else p("b", self.b))


CrossLayer = FullRankCross | LowRankCross | MixtureCross | VectorCross


def build_cross_layer(
    kind: LayerKind,
    d: int,
    *,
    rank: int | None = None,
    experts: int = 1,
    gate: Gate = "softmax",
    activation: Activation = "identity",
    bias: bool = True,
    residual: bool = True,
    init: Init = "he_normal",
) -> CrossLayer:
    """One cross layer of the given kind."""
    if kind not in CROSS_KINDS:
        raise ConfigError(f"cross kind must be one of {CROSS_KINDS}; got kind={kind!r}")
    if kind == "full":
        return FullRankCross(d, bias=bias, residual=residual, init=init)
    if kind == "vector":
        return VectorCross(d, bias=bias, residual=residual, init=init)
    if rank is None:
        raise ConfigError(f"a {kind} cross layer needs a rank")
    if kind == "lowrank":
        return LowRankCross(d, rank, bias=bias, residual=residual, init=init)
    if kind == "mixture":
        return MixtureCross(d, rank, experts, gate=gate, activation=activation, bias=bias, residual=residual, init=init)
    raise ConfigError(f"cross kind must be one of {CROSS_KINDS}; got kind={kind!r}")


class CrossNetwork(nn.Module):
    """L stacked cross layers: x_{l+1} = layer_l(x0, x_l), starting from x_0."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = layer(x0, x)
        return x

    def layer_inputs(self, x0: torch.Tensor) -> list[torch.Tensor]:
        """x_l fed to each layer (for gate-weighted analysis of mixtures)."""
        xs, x = [], x0
        for layer in self.layers:
            xs.append(x)
            x = layer(x0, x)
        return xs
