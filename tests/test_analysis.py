"""Known-answer tests of dcnviz.analysis: block norms (§7.6, Eq. 7) and spectra / numerical rank (§3.5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dcnviz import analysis as A
from dcnviz.encoded import Encoded
from dcnviz.errors import CheckpointError, ConfigError, DcnvizError
from dcnviz.gates import mean_gates
from dcnviz.model import DCNModel, ModelConfig
from dcnviz.spec import Block, FeatureSpec, Field
from dcnviz.weights import (
    CrossLayerWeights,
    CrossModelWeights,
    ExpertWeights,
    FullRankWeights,
    LowRankWeights,
    MixtureWeights,
    VectorWeights,
    from_model,
)


def blocks_of(widths: list[int], names: list[str] | None = None) -> list[Block]:
    out, start = [], 0
    for i, w in enumerate(widths):
        out.append(Block(names[i] if names else f"f{i}", start, start + w, "categorical"))
        start += w
    return out


def naive_block_norms(W: np.ndarray, blocks: list[Block]) -> np.ndarray:
    k = len(blocks)
    out = np.zeros((k, k))
    for i, bi in enumerate(blocks):
        for j, bj in enumerate(blocks):
            out[i, j] = np.linalg.norm(W[bi.start : bi.stop, bj.start : bj.stop])
    return out


def random_orthogonal(n: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))
    return q * np.sign(np.diag(r))


@pytest.mark.parametrize("mode", A.MODES)
def test_block_diagonal_w_has_zero_off_diagonal_block_norms(mode):
    rng = np.random.default_rng(1)
    blocks = blocks_of([3, 1, 4, 2])
    W = np.zeros((10, 10))
    for b in blocks:
        W[b.start : b.stop, b.start : b.stop] = rng.normal(size=(b.width, b.width)) + 0.5
    N = A.block_norms(W, blocks, mode)
    off = ~np.eye(4, dtype=bool)
    assert np.all(N[off] == 0.0)
    assert np.all(np.diag(N) > 0)


def test_block_norm_views_on_hand_made_matrix():
    # x0 = [a (width 2); b (width 1)]. W[a-rows, b-col] = (3, 4) -> ‖W_ab‖ = 5; W[b-row, a-cols] = (1, 0)
    # -> ‖W_ba‖ = 1; W[a, a] = all 2 (4 entries) -> ‖W_aa‖ = 4; W[b, b] = 6.
    blocks = blocks_of([2, 1], ["a", "b"])
    W = np.array([[2.0, 2.0, 3.0], [2.0, 2.0, 4.0], [1.0, 0.0, 6.0]])
    raw = A.block_norms(W, blocks, "raw")
    np.testing.assert_allclose(raw, [[4.0, 5.0], [1.0, 6.0]])
    # normalised by √(e_i e_j): aa /2, ab /√2, ba /√2, bb /1
    np.testing.assert_allclose(A.block_norms(W, blocks, "normalized"), [[2.0, 5 / np.sqrt(2)], [1 / np.sqrt(2), 6.0]])
    # symmetric: off-diagonal √(25 + 1); diagonal keeps ‖W_ii‖ (one block per self-pair)
    sym = A.block_norms(W, blocks, "symmetric")
    np.testing.assert_allclose(sym, [[4.0, np.sqrt(26.0)], [np.sqrt(26.0), 6.0]])
    # the upper triangle of the symmetric view carries all of ‖W‖_F²
    assert np.isclose(np.sum(np.triu(sym) ** 2), np.sum(W**2))


def test_block_norms_are_not_symmetric_in_the_raw_view():
    blocks = blocks_of([1, 1], ["i", "j"])
    W = np.array([[0.0, 7.0], [0.0, 0.0]])  # input j feeds output slot i only
    N = A.block_norms(W, blocks)
    assert N[0, 1] == 7.0 and N[1, 0] == 0.0


@settings(max_examples=40, deadline=None)
@given(widths=st.lists(st.integers(1, 5), min_size=1, max_size=7), seed=st.integers(0, 10_000))
def test_vectorised_block_norms_match_a_double_loop(widths, seed):
    blocks = blocks_of(widths)
    d = sum(widths)
    W = np.random.default_rng(seed).normal(size=(d, d))
    naive = naive_block_norms(W, blocks)
    np.testing.assert_allclose(A.block_norms(W, blocks, "raw"), naive, rtol=1e-12, atol=1e-12)
    e = np.array(widths, dtype=float)
    np.testing.assert_allclose(A.block_norms(W, blocks, "normalized"), naive / np.sqrt(np.outer(e, e)), rtol=1e-12)


@pytest.mark.parametrize(
    "blocks",
    [
        [Block("a", 0, 2, "categorical"), Block("b", 3, 4, "categorical")],  # gap
        [Block("a", 0, 2, "categorical"), Block("b", 2, 3, "categorical")],  # does not reach d
        [Block("a", 0, 2, "categorical"), Block("b", 2, 2, "categorical"), Block("c", 2, 4, "categorical")],
        [],
    ],
)
def test_blocks_that_do_not_tile_x0_are_refused(blocks):
    with pytest.raises(ConfigError, match="tile x0|no feature blocks"):
        A.block_norms(np.eye(4), blocks)


def test_bad_mode_and_non_square_w_are_refused():
    with pytest.raises(ConfigError, match="mode must be one of"):
        A.block_norms(np.eye(2), blocks_of([2]), "frobenius")
    with pytest.raises(ConfigError, match=r"square \(d, d\)"):
        A.block_norms(np.ones((2, 3)), blocks_of([2]))


def test_top_crosses_orders_excludes_self_and_lists_symmetric_pairs_once():
    N = np.array([[9.0, 1.0, 2.0], [0.5, 4.0, 3.0], [0.0, 2.0, 1.0]])
    names = ["a", "b", "c"]
    t = A.top_crosses(N, names)
    assert list(zip(t.feature_i, t.feature_j, strict=True)) == [
        ("b", "c"),
        ("a", "c"),
        ("c", "b"),
        ("a", "b"),
        ("b", "a"),
        ("c", "a"),
    ]  # (a,c)=2 and (c,b)=2 tie: (i, j) order
    assert list(t["rank"]) == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(t.share, t.value**2 / (N**2).sum())
    with_self = A.top_crosses(N, names, include_self=True, n=2)
    assert list(zip(with_self.feature_i, with_self.feature_j, strict=True)) == [("a", "a"), ("b", "b")]
    S = A.block_norms(np.diag([1.0, 2.0, 3.0]) + np.triu(np.ones((3, 3)), 1), blocks_of([1, 1, 1], names), "symmetric")
    ts = A.top_crosses(S, names, mode="symmetric")
    assert len(ts) == 3 and all(ts.i < ts.j)
    assert len(A.top_crosses(S, names, mode="symmetric", include_self=True)) == 6


def test_q_diag_s_qt_gives_back_s():
    s = np.array([10.0, 5.0, 2.5, 1.0, 0.5, 0.0])
    Q = random_orthogonal(6, 3)
    W = Q @ np.diag(s) @ Q.T
    np.testing.assert_allclose(A.singular_values(W), s, atol=1e-12)
    layer = FullRankWeights(d=6, W=W)
    m = A.layer_matrix(layer, 0)
    np.testing.assert_allclose(m.singular_values, s, atol=1e-12)
    assert m.rank_bound == 6


def test_numerical_rank_at_and_around_each_boundary_of_a_power_of_two_spectrum():
    s = np.array([2.0**-k for k in range(6)])  # 1, 1/2, …, 1/32: T·σ_1 exactly representable
    for k in range(6):
        boundary = 2.0**-k
        assert A.numerical_rank(s, boundary) == k + 1  # a value exactly at T·σ_1 is kept
        if k > 0:
            assert A.numerical_rank(s, np.nextafter(boundary, 1.0)) == k  # just above: dropped
        assert A.numerical_rank(s, np.nextafter(boundary, 0.0)) == k + 1  # just below: kept
    with pytest.raises(ConfigError, match="tolerance T"):
        A.numerical_rank(s, np.nextafter(1.0, 2.0))  # T above 1 is meaningless
    # scaling σ by a power of two changes nothing
    assert [A.numerical_rank(8 * s, 2.0**-k) for k in range(6)] == [1, 2, 3, 4, 5, 6]
    assert A.numerical_rank(s, 1e-5) == 6
    assert A.numerical_rank(np.zeros(4), 0.1) == 0  # σ_1 = 0 convention
    assert A.numerical_rank(np.array([3.0, 3.0, 1.0]), 1.0) == 2  # R_1 counts values equal to σ_1


def test_numerical_rank_of_a_rank_two_matrix():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(8, 2)) @ rng.normal(size=(2, 8))
    s = A.singular_values(W)
    assert [A.numerical_rank(s, T) for T in (0.01, 1e-6)] == [2, 2]


@pytest.mark.parametrize("T", [0.0, -0.1, 1.5, float("nan"), float("inf"), "x"])
def test_bad_tolerances_are_refused(T):
    with pytest.raises(ConfigError, match="tolerance T"):
        A.numerical_rank([1.0], T)


def test_stable_rank_and_energy_rank_by_hand():
    s = [4.0, 2.0, 2.0, 1.0]  # Σσ² = 16 + 4 + 4 + 1 = 25
    assert A.stable_rank(s) == 25 / 16
    assert A.stable_rank(np.zeros(3)) == 0.0
    assert A.energy_rank(s, 16 / 25) == 1  # exactly the first share
    assert A.energy_rank(s, 0.65) == 2
    assert A.energy_rank(s, 24 / 25) == 3
    assert A.energy_rank(s, 0.97) == 4
    assert A.energy_rank(s, 1.0) == 4
    assert A.energy_rank(np.zeros(2), 0.9) == 0
    with pytest.raises(ConfigError, match="energy share"):
        A.energy_rank(s, 0.0)


def test_rank_versus_tolerance_agrees_with_numerical_rank():
    s = np.array([1.0, 0.5, 0.5, 0.01, 0.0])
    df = A.rank_versus_tolerance(s)
    for T, r in zip(df.tolerance, df["rank"], strict=True):
        assert r == A.numerical_rank(s, T)
    assert df["rank"].is_monotonic_decreasing


@pytest.mark.parametrize(("d", "r"), [(12, 3), (40, 10), (5, 5)])
def test_low_rank_spectrum_is_exactly_r_values_equal_to_the_dense_svd(d, r):
    rng = np.random.default_rng(d + r)
    U, V = rng.normal(size=(d, r)), rng.normal(size=(d, r))
    layer = LowRankWeights(d=d, U=U, V=V)
    m = A.layer_matrix(layer, 0)
    s = m.singular_values
    assert s.shape == (r,) and m.rank_bound == r
    dense = np.linalg.svd(U @ V.T, compute_uv=False)
    np.testing.assert_allclose(s, dense[:r], rtol=1e-10)
    assert np.all(dense[r:] <= 1e-10 * dense[0])  # rank of U Vᵀ ≤ r
    assert A.numerical_rank(dense, 1e-8) <= r
    assert np.linalg.matrix_rank(U @ V.T) <= r


def test_factored_spectrum_of_a_deficient_product():
    rng = np.random.default_rng(5)
    U = rng.normal(size=(10, 4))
    U[:, 3] = U[:, 0] + U[:, 1]  # rank-3 left factor
    V = rng.normal(size=(10, 4))
    s = A.factored_singular_values(U, V)
    np.testing.assert_allclose(s, np.linalg.svd(U @ V.T, compute_uv=False)[:4], atol=1e-10)
    assert A.numerical_rank(s, 1e-8) == 3


def test_vector_layer_is_rank_one_with_sigma_sqrt_d_norm_w():
    w = np.array([3.0, 0.0, 4.0, 0.0])
    m = A.layer_matrix(VectorWeights(d=4, w=w), 0)
    np.testing.assert_allclose(m.weight, np.tile(w, (4, 1)))
    np.testing.assert_allclose(m.singular_values, [2.0 * 5.0])  # ‖1‖ ‖w‖ = √4 · 5


def test_non_finite_weights_raise_a_clear_error():
    W = np.eye(3)
    W[1, 1] = np.nan
    with pytest.raises(CheckpointError, match="NaN or Inf"):
        A.singular_values(W)


def mixture_layer(activation: str = "identity") -> CrossLayerWeights:
    rng = np.random.default_rng(7)
    d, r, K = 9, 2, 3
    experts = [
        ExpertWeights(
            U=rng.normal(size=(d, r)),
            V=rng.normal(size=(d, r)),
            C=None if activation == "identity" else rng.normal(size=(r, r)),
        )
        for _ in range(K)
    ]
    return MixtureWeights(d=d, experts=experts, activation=activation)


@pytest.mark.parametrize("activation", ["identity", "tanh"])
def test_mixture_mean_of_experts_from_stacked_factors(activation):
    layer = mixture_layer(activation)
    m = A.layer_matrix(layer, 2)
    Ws = [e.U @ (e.C if e.C is not None else np.eye(2)) @ e.V.T for e in layer.experts]
    np.testing.assert_allclose(m.weight, np.mean(Ws, axis=0), atol=1e-12)
    assert m.rank_bound == 6  # Σ r_k = 3 · 2 < d = 9
    s = m.singular_values
    assert s.shape == (6,)
    np.testing.assert_allclose(s, np.linalg.svd(np.mean(Ws, axis=0), compute_uv=False)[:6], rtol=1e-9)
    assert m.linear_part_only == (activation != "identity")
    assert ("linear part" in m.label) == (activation != "identity")
    ex = A.expert_matrices(layer, 2)
    assert len(ex) == 3 and ex[1].expert == 1
    for e, Wk in zip(ex, Ws, strict=True):
        np.testing.assert_allclose(e.weight, Wk, atol=1e-12)
        assert e.singular_values.shape == (2,)
    gw = np.array([0.2, 0.5, 0.3])
    mg = A.layer_matrix(layer, 2, gate_weights=gw)
    np.testing.assert_allclose(mg.weight, sum(g * Wk for g, Wk in zip(gw, Ws, strict=True)), atol=1e-12)
    with pytest.raises(ConfigError, match="3 experts"):
        A.layer_matrix(layer, 2, gate_weights=[0.5, 0.5])


SPEC = FeatureSpec(
    (
        Field(name="user", kind="categorical", embedding_dim=3, vocab=tuple("abcde")),
        Field(name="item", kind="categorical", embedding_dim=2, vocab=tuple("xyz")),
        Field(name="year", kind="dense", embedding_dim=1),
    )
)


def test_gate_weighted_average_equals_the_per_input_average_of_sum_g_k_w_k():
    torch.manual_seed(0)
    model = DCNModel(SPEC, ModelConfig(model="dcn-mix", rank=2, experts=3, cross_layers=2, hidden=(4,)))
    g = torch.Generator().manual_seed(1)
    n = 50
    data = Encoded(
        cat=torch.stack([torch.randint(0, 6, (n,), generator=g), torch.randint(0, 4, (n,), generator=g)], 1),
        dense=torch.randn(n, 1, generator=g),
        y=torch.zeros(n),
    )
    gates = mean_gates(model, data)
    cw = from_model(model)
    with torch.no_grad():
        x0 = model.x0(data.cat, data.dense)
        xs = model.cross.layer_inputs(x0)
    for i, layer in enumerate(model.cross.layers):
        Wk = layer.expert_weights().detach().double().numpy()  # (K, d, d)
        G = layer.gates(xs[i]).detach().double().numpy()  # (n, K)
        brute = np.mean([np.tensordot(G[b], Wk, axes=1) for b in range(n)], axis=0)  # E_x[Σ_k G_k W_k]
        m = A.layer_matrix(cw.layers[i], i, gate_weights=gates[i])
        np.testing.assert_allclose(m.weight, brute, rtol=1e-5, atol=1e-7)
    an = A.analyze(cw, gate_weights=gates, gate_label=f"gate-weighted over {n} inputs")
    assert an.layers[0].matrix.weighting == f"gate-weighted over {n} inputs"
    assert mean_gates(DCNModel(SPEC, ModelConfig(model="dnn", hidden=(4,))), data) == []
    full = mean_gates(DCNModel(SPEC, ModelConfig(cross_layers=1, hidden=(4,))), data)
    assert full == [None]


@pytest.mark.parametrize(
    ("config", "kind", "n_sigma"),
    [
        (ModelConfig(hidden=(4,)), "full", 6),
        (ModelConfig(rank=2, hidden=(4,)), "lowrank", 2),
        (ModelConfig(model="dcn-mix", rank=1, experts=3, hidden=(4,)), "mixture", 3),
        (ModelConfig(model="dcn", hidden=(4,)), "vector", 1),
    ],
)
def test_analyze_a_dcnviz_model(config, kind, n_sigma):
    torch.manual_seed(0)
    model = DCNModel(SPEC, config)
    with torch.no_grad():  # move away from the initial weights
        for p in model.cross.parameters():
            p.mul_(1.5).add_(0.1)
    cw = from_model(model)
    an = A.analyze(cw, tolerances=[0.1, 1e-5, 0.1])
    assert an.tolerances == (0.1, 1e-5) and an.names == ["user", "item", "year"]
    assert len(an.layers) == 2 and an.init_label == "saved initial weights"
    for i, (la, layer) in enumerate(zip(an.layers, model.cross_layers(), strict=True)):
        W = layer.effective_weight().detach().double().numpy()
        assert la.matrix.kind == kind and la.matrix.layer == i
        np.testing.assert_allclose(la.block_norms, A.block_norms(W, cw.blocks), rtol=1e-5)
        sp = la.spectrum
        assert sp.singular_values.shape == (n_sigma,)
        np.testing.assert_allclose(sp.singular_values, np.linalg.svd(W, compute_uv=False)[:n_sigma], rtol=1e-5)
        assert sp.numerical_rank == {0.1: A.numerical_rank(sp.singular_values, 0.1), 1e-5: min(n_sigma, 6)}
        W0 = cw.initial_layers[i].effective_weight()
        np.testing.assert_allclose(sp.initial_singular_values, np.linalg.svd(W0, compute_uv=False)[:n_sigma], rtol=1e-9)
        assert sp.initial_label == "saved initial weights"
        assert sp.suggested.rank == A.numerical_rank(sp.singular_values, A.DEFAULT_SUGGEST_TOLERANCE)
        assert "d/4" in sp.suggested.text
        assert len(la.experts) == (3 if kind == "mixture" else 0)
    table = A.rank_table(an)
    assert len(table) == 2 * (4 if kind == "mixture" else 1)
    assert {"R_0.1", "R_1e-05", "initial R_0.1", "stable_rank", "suggested_rank"} <= set(table.columns)


def test_analyze_a_model_without_cross_layers():
    cw = from_model(DCNModel(SPEC, ModelConfig(model="dnn", hidden=(4,))))
    an = A.analyze(cw)
    assert an.layers == () and an.init_label == ""
    assert A.rank_table(an).empty


def test_analyze_refuses_blocks_that_do_not_match_d():
    cw = CrossModelWeights(format="torchrec", d=4, layers=[], blocks=blocks_of([3]))
    with pytest.raises(ConfigError, match="tile x0"):
        A.analyze(cw)


def test_broken_common_form_gives_a_dcnviz_error():
    with pytest.raises(DcnvizError, match="lacks its 'U'"):  # caught when the common form is made
        bad = CrossModelWeights(
            format="torchrec", d=3, layers=[LowRankWeights(d=3, U=None, V=None)], blocks=blocks_of([3])
        )
        A.analyze(bad)


def test_block_norm_difference_and_spectrum_difference():
    blocks = blocks_of([1, 2], ["a", "b"])
    Wa = np.diag([1.0, 2.0, 2.0])
    Wb = Wa.copy()
    Wb[0, 1:] = [3.0, 4.0]
    diff = A.block_norm_difference(Wa, blocks, Wb, blocks)
    np.testing.assert_allclose(diff.values, [[0.0, 5.0], [0.0, 0.0]])
    assert list(diff.index) == ["a", "b"] and list(diff.columns) == ["a", "b"]
    other = blocks_of([2, 1], ["a", "b"])
    with pytest.raises(ConfigError, match="different feature blocks"):
        A.block_norm_difference(Wa, blocks, Wb, other)
    sa = A.spectrum(A.layer_matrix(FullRankWeights(d=3, W=Wa), 0), tolerances=[0.5])
    lr = LowRankWeights(d=3, U=np.array([[4.0], [0], [0]]), V=np.array([[1.0], [0], [0]]))
    sb = A.spectrum(A.layer_matrix(lr, 0), tolerances=[0.5])
    sd = A.spectrum_difference(sa, sb)
    assert list(sd.k) == [1, 2, 3]
    np.testing.assert_allclose(sd.sigma_a, [2.0, 2.0, 1.0])
    np.testing.assert_allclose(sd.sigma_b[:1], [4.0])
    assert sd.sigma_b[1:].isna().all()
    np.testing.assert_allclose(sd.normalized_diff[:1], [0.0])
    rd = A.rank_difference(sa, sb)
    assert rd.to_dict("records") == [{"tolerance": 0.5, "rank_a": 3, "rank_b": 1, "diff": -2}]


def test_analyze_layer_is_one_layer_of_analyze():
    torch.manual_seed(0)
    cw = from_model(DCNModel(SPEC, ModelConfig(model="dcn-mix", rank=1, experts=2, hidden=(4,))))
    whole = A.analyze(cw)
    one = A.analyze_layer(cw, 1)
    np.testing.assert_array_equal(one.block_norms, whole.layers[1].block_norms)
    np.testing.assert_array_equal(one.spectrum.singular_values, whole.layers[1].spectrum.singular_values)
    assert len(one.experts) == 2 and A.analyze_layer(cw, 1, experts=False).experts == ()
    with pytest.raises(ConfigError, match="layer index"):
        A.analyze_layer(cw, 2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_mean_gates_of_a_model_on_the_gpu_equal_those_on_the_cpu():
    torch.manual_seed(0)
    model = DCNModel(SPEC, ModelConfig(model="dcn-mix", rank=2, experts=3, hidden=(4,)))
    g = torch.Generator().manual_seed(1)
    data = Encoded(
        cat=torch.stack([torch.randint(0, 6, (64,), generator=g), torch.randint(0, 4, (64,), generator=g)], 1),
        dense=torch.randn(64, 1, generator=g),
        y=torch.zeros(64),
    )
    on_cpu = mean_gates(model, data)
    on_gpu = mean_gates(model.cuda(), data)  # CPU data, GPU model
    for a, b in zip(on_cpu, on_gpu, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5)


def test_change_view_shows_only_what_training_added():
    """W = W0 + Δ with Δ in block (gender, movie_id) only: the change view has exactly that block."""
    spec = FeatureSpec(
        tuple(
            Field(name=n, kind="categorical", embedding_dim=e, vocab=("a", "b"))
            for n, e in [("user", 3), ("movie", 4), ("gender", 2)]
        )
    )
    torch.manual_seed(0)
    model = DCNModel(spec, ModelConfig(cross_layers=1, hidden=(4,)))
    blocks = {b.name: b for b in spec.blocks()}
    g, m = blocks["gender"], blocks["movie"]
    with torch.no_grad():
        model.cross.layers[0].linear.weight[g.start : g.stop, m.start : m.stop] += 0.5  # Δ: 2×4 block of 0.5
    la = A.analyze_layer(from_model(model), 0)
    assert la.has_change
    change = la.norms("raw", change=True)
    want = np.zeros((3, 3))
    want[2, 1] = 0.5 * np.sqrt(2 * 4)
    np.testing.assert_allclose(change, want, atol=1e-6)
    np.testing.assert_allclose(la.norms("symmetric", change=True)[1, 2], 0.5 * np.sqrt(8), rtol=1e-6)
    top = la.top_crosses("symmetric", n=1, change=True)
    assert {top.feature_i[0], top.feature_j[0]} == {"gender", "movie"}
    # the raw view of W itself still carries the random initial matrix everywhere
    assert (la.norms("raw") > 0.1).all()


def test_change_view_needs_the_models_own_initial_weights():
    rng = np.random.default_rng(0)
    layer = FullRankWeights(d=4, W=rng.normal(size=(4, 4)))
    drawn = FullRankWeights(d=4, W=rng.normal(size=(4, 4)))
    cw = CrossModelWeights(
        format="deepctr", d=4, layers=[layer], blocks=[Block("x0", 0, 4, "unknown")],
        initial_layers=[drawn], init_label="drawn from xavier_normal_",
    )  # fmt: skip
    la = A.analyze_layer(cw, 0)
    assert not la.has_change and la.spectrum.initial_singular_values is not None
    with pytest.raises(ConfigError, match="initial weights were not saved"):
        la.norms(change=True)


def test_analysis_imports_no_torch():
    """NumPy in, tables out: importing dcnviz.analysis (and the common form) loads no torch (gates: dcnviz.gates)."""
    import subprocess
    import sys

    code = "import sys, dcnviz.analysis, dcnviz.weights; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False"
    assert not hasattr(A, "mean_gates")
