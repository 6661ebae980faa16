"""Known-answer tests for the cross layers (paper Eq. 1-4, DCN-V1), checkable by hand."""

from __future__ import annotations

import pytest
import torch

from dcnviz.errors import ConfigError
from dcnviz.layers import (
    CrossNetwork,
    FullRankCross,
    LowRankCross,
    MixtureCross,
    VectorCross,
    build_cross_layer,
)

X0 = torch.tensor([[0.1, 0.2, 0.3]])
XL = torch.tensor([[0.4, 0.5, 0.6]])


def test_full_rank_all_ones_known_answer():
    # W = all ones, b = 0: W x = 1.5 in every slot; x0 * 1.5 + x = [0.55, 0.8, 1.05].
    layer = FullRankCross(3)
    with torch.no_grad():
        layer.linear.weight.fill_(1.0)
        layer.linear.bias.zero_()
    out = layer(X0, XL)
    torch.testing.assert_close(out, torch.tensor([[0.55, 0.8, 1.05]]))


def test_full_rank_uses_w_in_paper_orientation():
    # A W with one nonzero entry W[0, 2] = 1: slot 0 gets x0[0] * x[2]; other slots only the residual.
    layer = FullRankCross(3)
    with torch.no_grad():
        layer.linear.weight.zero_()
        layer.linear.weight[0, 2] = 1.0
        layer.linear.bias.zero_()
    out = layer(X0, XL)
    torch.testing.assert_close(out, torch.tensor([[0.1 * 0.6 + 0.4, 0.5, 0.6]]))
    assert layer.effective_weight()[0, 2] == 1.0


def test_bias_inside_the_product():
    layer = FullRankCross(3)
    with torch.no_grad():
        layer.linear.weight.zero_()
        layer.linear.bias.copy_(torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(layer(X0, XL), X0 * torch.tensor([1.0, 2.0, 3.0]) + XL)


def test_ablations_drop_bias_and_residual():
    layer = FullRankCross(3, bias=False, residual=False)
    assert layer.linear.bias is None
    with torch.no_grad():
        layer.linear.weight.fill_(1.0)
    torch.testing.assert_close(layer(X0, XL), torch.tensor([[0.15, 0.3, 0.45]]))


def test_low_rank_all_ones_known_answer():
    # U = V = ones(3, 1): U Vᵀ is the all-ones matrix, so the same answer as the full-rank layer.
    layer = LowRankCross(3, 1)
    with torch.no_grad():
        layer.U.weight.fill_(1.0)
        layer.V.weight.fill_(1.0)
        layer.U.bias.zero_()
    torch.testing.assert_close(layer(X0, XL), torch.tensor([[0.55, 0.8, 1.05]]))


def test_low_rank_equals_full_rank_when_uvt_is_w():
    torch.manual_seed(0)
    d, r = 7, 3
    low = LowRankCross(d, r)
    with torch.no_grad():
        low.U.bias.normal_()
    U, V = low.factors()
    assert U.shape == (d, r) and V.shape == (d, r)
    full = FullRankCross(d)
    with torch.no_grad():
        full.linear.weight.copy_(U @ V.T)
        full.linear.bias.copy_(low.U.bias)
    x0, x = torch.randn(5, d), torch.randn(5, d)
    torch.testing.assert_close(low(x0, x), full(x0, x))
    torch.testing.assert_close(low.effective_weight(), U @ V.T)


@pytest.mark.parametrize("activation", ["identity"])
def test_mixture_with_one_expert_and_constant_gate_equals_low_rank(activation):
    torch.manual_seed(1)
    d, r = 6, 2
    mix = MixtureCross(d, r, 1, gate="constant", activation=activation)
    with torch.no_grad():
        mix.b.normal_()
    low = LowRankCross(d, r)
    with torch.no_grad():
        low.U.weight.copy_(mix.U[0])
        low.V.weight.copy_(mix.V[0].T)
        low.U.bias.copy_(mix.b)
    x0, x = torch.randn(4, d), torch.randn(4, d)
    torch.testing.assert_close(mix(x0, x), low(x0, x))
    torch.testing.assert_close(mix.effective_weight(), low.effective_weight())


def test_mixture_of_equal_experts_with_constant_gate_is_one_expert():
    torch.manual_seed(2)
    d, r, K = 5, 2, 3
    mix = MixtureCross(d, r, K, gate="constant")
    with torch.no_grad():
        mix.U.copy_(mix.U[:1].expand(K, d, r))
        mix.V.copy_(mix.V[:1].expand(K, d, r))
    one = MixtureCross(d, r, 1, gate="constant")
    with torch.no_grad():
        one.U.copy_(mix.U[:1])
        one.V.copy_(mix.V[:1])
    x0, x = torch.randn(4, d), torch.randn(4, d)
    torch.testing.assert_close(mix(x0, x), one(x0, x))


def test_mixture_matches_eq3_written_out():
    """The batched forward equals Σ_i G_i(x) x0 ⊙ (U_i g(C_i g(V_iᵀ x)) + b) + x, expert by expert."""
    torch.manual_seed(3)
    d, r, K = 6, 2, 3
    for gate in ("softmax", "sigmoid", "constant"):
        for act in ("identity", "relu", "tanh", "hard_tanh"):
            mix = MixtureCross(d, r, K, gate=gate, activation=act)
            with torch.no_grad():
                mix.b.normal_()
            x0, x = torch.randn(4, d), torch.randn(4, d)
            G = mix.gates(x)
            want = x.clone()
            for i in range(K):
                h = mix.g(x @ mix.V[i])  # (B, r): V_iᵀ x
                if mix.C is not None:
                    h = mix.g(h @ mix.C[i].T)  # C_i h
                want = want + G[:, i : i + 1] * (x0 * (h @ mix.U[i].T + mix.b))
            torch.testing.assert_close(mix(x0, x), want)
            assert (mix.C is None) == (act == "identity")
            assert mix.linear_part_only == (act != "identity")


def test_gates():
    torch.manual_seed(4)
    x = torch.randn(8, 5)
    soft = MixtureCross(5, 2, 3, gate="softmax")
    torch.testing.assert_close(soft.gates(x).sum(1), torch.ones(8))
    sig = MixtureCross(5, 2, 3, gate="sigmoid")
    g = sig.gates(x)
    assert bool(((g > 0) & (g < 1)).all())
    const = MixtureCross(5, 2, 4, gate="constant")
    torch.testing.assert_close(const.gates(x), torch.full((8, 4), 0.25))
    assert const.gate is None


def test_expert_weights_are_u_c_vt():
    torch.manual_seed(5)
    mix = MixtureCross(6, 2, 2, activation="tanh")
    W = mix.expert_weights()
    assert W.shape == (2, 6, 6)
    torch.testing.assert_close(W[1], mix.U[1] @ mix.C[1] @ mix.V[1].T)
    torch.testing.assert_close(mix.effective_weight(), W.mean(0))
    assert torch.linalg.matrix_rank(W[0]).item() <= 2


def test_dcn_v1_equals_dcn_v2_with_w_one_wt_when_b_zero():
    torch.manual_seed(6)
    d = 5
    v1 = VectorCross(d)
    v2 = FullRankCross(d)
    with torch.no_grad():
        v2.linear.weight.copy_(torch.ones(d, 1) @ v1.w.view(1, d))
        v2.linear.bias.zero_()
    x0, x = torch.randn(3, d), torch.randn(3, d)
    torch.testing.assert_close(v1(x0, x), v2(x0, x))
    torch.testing.assert_close(v1.effective_weight(), v2.linear.weight)
    # With b != 0 they differ: V1 adds b outside the product.
    with torch.no_grad():
        v1.b.fill_(1.0)
        v2.linear.bias.fill_(1.0)
    assert not torch.allclose(v1(x0, x), v2(x0, x))
    torch.testing.assert_close(v1(x0, x) - v2(x0, x), 1.0 - x0)


def test_dcn_v1_known_answer():
    v1 = VectorCross(3)
    with torch.no_grad():
        v1.w.fill_(1.0)
    torch.testing.assert_close(v1(X0, XL), torch.tensor([[0.55, 0.8, 1.05]]))


@pytest.mark.parametrize("kind", ["full", "lowrank", "mixture", "vector"])
def test_shapes_for_every_kind(kind):
    d = 9
    layer = build_cross_layer(kind, d, rank=3, experts=2, activation="relu")
    x0 = torch.randn(4, d)
    assert layer(x0, x0).shape == (4, d)
    assert layer.effective_weight().shape == (d, d)
    net = CrossNetwork([build_cross_layer(kind, d, rank=3, experts=2) for _ in range(3)])
    assert net(x0).shape == (4, d)
    assert len(net.layer_inputs(x0)) == 3


def test_bad_arguments_name_the_value():
    with pytest.raises(ConfigError, match=r"rank must be in \[1, d\]; got rank=10, d=4"):
        LowRankCross(4, 10)
    with pytest.raises(ConfigError, match="gate must be one of"):
        MixtureCross(4, 2, 2, gate="tempered")
    with pytest.raises(ConfigError, match="expert activation"):
        MixtureCross(4, 2, 2, activation="gelu")
    with pytest.raises(ConfigError, match="experts must be >= 1"):
        MixtureCross(4, 2, 0)
    with pytest.raises(ConfigError, match="cross kind"):
        build_cross_layer("diagonal", 4)


def test_he_normal_init_scale():
    torch.manual_seed(7)
    layer = FullRankCross(400)
    std = layer.linear.weight.std().item()
    assert abs(std - (2 / 400) ** 0.5) < 0.003
    assert float(layer.linear.bias.detach().abs().max()) == 0.0
    trunc = FullRankCross(400, init="truncated_normal")
    w = trunc.linear.weight.detach()
    assert abs(w.std().item() - (2 / 400) ** 0.5) < 0.003
    assert float(w.abs().max()) <= 2 * (2 / 400) ** 0.5 / 0.8796 + 1e-6
