r"""DeepCTR-Torch ``DCN`` / ``DCNMix`` state dicts (``deepctr_torch/layers/interaction.py``).

Layouts (single stacked Parameters, L layers, x0 width N):

* ``CrossNet(parameterization='matrix')``: ``crossnet.kernels`` (L, N, N), W_l = kernels[l] in paper
  orientation (``matmul(kernels[i], x_l)``); ``crossnet.bias`` (L, N, 1). Eq. (1).
* ``CrossNet(parameterization='vector')``: ``crossnet.kernels`` (L, N, 1) = w_l, DCN-V1
  x_{l+1} = x0 (x_lᵀ w_l) + b_l + x_l (bias outside the product), i.e. W = 1 wᵀ.
* ``CrossNetMix``: ``crossnet.U_list``, ``crossnet.V_list`` (L, K, N, r), ``crossnet.C_list`` (L, K, r, r),
  ``crossnet.gating.{k}.weight`` (1, N) shared by all layers (softmax over k), ``crossnet.bias``
  (L, N, 1). Expert: x0 ⊙ (U tanh(C tanh(Vᵀ x_l)) + b), Eq. (3)-(4) with g = tanh.

Feature blocks: x0 = [sparse embeddings in feature-column order; pooled variable-length embeddings;
raw dense values]. ``embedding_dict.<name>.weight`` (vocab, E_f) give names and widths in state-dict
order; whatever is left of N (N − ΣE_f) is the raw dense block. ``linear_model.*`` is the wide part.
Init: ``nn.init.xavier_normal_`` on each layer's slice (kernels[i], U_list[i], ...), biases zero.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from dcnviz.errors import ImportFormatError
from dcnviz.importers.common import (
    MAX_EXPERTS,
    MAX_LAYERS,
    Array,
    Imported,
    blocks_from_tables,
    check_count,
    check_elements,
    check_float,
    check_rank,
    check_width,
    expect_shape,
    plural,
    require,
    shape,
    tanh_mixture_layer,
    to_np,
    vec,
    xavier_normal,
)
from dcnviz.importers.common import baseline as draw_baseline
from dcnviz.weights import CrossLayerWeights, FullRankWeights, VectorWeights

NAME = "DeepCTR-Torch"
ANCHOR = re.compile(r"^(?P<root>(?:.*\.)?)crossnet\.(?:kernels|U_list)$")
EXPECTED = "'crossnet.kernels' (L, N, N) or (L, N, 1) with 'crossnet.bias', or 'crossnet.U_list'/'V_list'/'C_list'"
INIT_LABEL = "drawn from xavier_normal_ as DeepCTR-Torch initialises (seed 0) — not this model's real initial weights"


def roots(tensors: Mapping[str, Array]) -> list[str]:
    return sorted({m.group("root") for k in tensors if (m := ANCHOR.match(k))})


def _gates(tensors: Mapping[str, Array], p: str, d: int) -> list[str]:
    keys = []
    k = 0
    while f"{p}gating.{k}.weight" in tensors:
        key = f"{p}gating.{k}.weight"
        expect_shape(key, tensors[key], (1, d), "a gate is nn.Linear(N, 1, bias=False)")
        keys.append(key)
        k += 1
    return keys


def build_layers(t: Mapping[str, Array], p: str) -> list[CrossLayerWeights]:
    """Cross layers in common form from the canonical keys under prefix ``p`` (``...crossnet.``)."""
    if f"{p}kernels" in t:
        kernels = t[f"{p}kernels"]
        s = shape(kernels)
        if len(s) != 3 or s[2] not in (1, s[1]):
            raise ImportFormatError(f"{p}kernels has shape {list(s)}; expected (L, N, N) or (L, N, 1)")
        L, d = s[0], s[1]
        bias = require(t, f"{p}bias", "DeepCTR-Torch CrossNet bias (L, N, 1)")
        expect_shape(f"{p}bias", bias, (L, d, 1))
        K_np, b_np = to_np(kernels), to_np(bias)
        if s[2] == 1 and d > 1:
            return [VectorWeights(d=d, w=K_np[i, :, 0], b=b_np[i, :, 0]) for i in range(L)]
        return [FullRankWeights(d=d, W=K_np[i], b=b_np[i, :, 0]) for i in range(L)]
    U_all = require(t, f"{p}U_list", "DeepCTR-Torch CrossNetMix U (L, K, N, r)")
    s = shape(U_all)
    if len(s) != 4:
        raise ImportFormatError(f"{p}U_list has shape {list(s)}; expected (L, K, N, r)")
    L, K, d, r = s
    V_all = require(t, f"{p}V_list", "DeepCTR-Torch CrossNetMix V (L, K, N, r)")
    C_all = require(t, f"{p}C_list", "DeepCTR-Torch CrossNetMix C (L, K, r, r)")
    bias = require(t, f"{p}bias", "DeepCTR-Torch CrossNetMix bias (L, N, 1)")
    expect_shape(f"{p}V_list", V_all, (L, K, d, r), "same as U_list")
    expect_shape(f"{p}C_list", C_all, (L, K, r, r))
    expect_shape(f"{p}bias", bias, (L, d, 1))
    gate_keys = _gates(t, p, d)
    if gate_keys and len(gate_keys) != K:
        raise ImportFormatError(f"found {len(gate_keys)} '{p}gating.<k>.weight' gates for K={K} experts")
    U, V, C, b = to_np(U_all), to_np(V_all), to_np(C_all), to_np(bias)
    gates = None
    if gate_keys:
        gates = np.concatenate([vec(t[k], k, d)[None, :] for k in gate_keys], axis=0)  # (K, d)
    return [tanh_mixture_layer(U[i], V[i], C[i], b[i, :, 0], gates) for i in range(L)]


def _validate(t: Mapping[str, Array], p: str) -> tuple[str, int, int, int, int]:
    """(variant, L, d, K, r) after checking sizes are sane, before any array is converted."""
    if f"{p}kernels" in t:
        s = shape(t[f"{p}kernels"])
        if len(s) != 3:
            raise ImportFormatError(f"{p}kernels has shape {list(s)}; expected (L, N, N) or (L, N, 1)")
        check_count(s[0], "cross layers", MAX_LAYERS)
        check_width(s[1], f"{p}kernels")
        check_float(t, [f"{p}kernels"])
        return ("vector" if s[2] == 1 and s[1] > 1 else "matrix"), s[0], s[1], 0, 0
    s = shape(require(t, f"{p}U_list", "DeepCTR-Torch CrossNetMix U"))
    if len(s) != 4:
        raise ImportFormatError(f"{p}U_list has shape {list(s)}; expected (L, K, N, r)")
    L, K, d, r = s
    check_count(L, "cross layers", MAX_LAYERS)
    check_count(K, "experts", MAX_EXPERTS)
    check_width(d, f"{p}U_list")
    check_rank(r, d, f"{p}U_list")
    check_float(t, [f"{p}U_list"])
    return "mix", L, d, K, r


def _blocks(tensors: Mapping[str, Array], root: str, d: int, warnings: list[str]) -> list | None:
    emb = re.compile(re.escape(root) + r"embedding_dict\.(?P<name>.+)\.weight$")
    items: list[tuple[str, int, str]] = []
    for k, v in tensors.items():
        m = emb.match(k)
        if m and len(shape(v)) == 2:
            items.append((m.group("name"), shape(v)[1], "sparse"))
    return blocks_from_tables(items, d, "embedding_dict", warnings)


def load(tensors: Mapping[str, Array], root: str) -> Imported:
    p = f"{root}crossnet."
    variant, L, d, K, r = _validate(tensors, p)
    used = ("kernels", "bias") if variant != "mix" else ("U_list", "V_list", "C_list", "bias")
    template = {f"{p}{k}": tensors[f"{p}{k}"] for k in used if f"{p}{k}" in tensors}
    check_elements(template)
    layers = build_layers(tensors, p)
    if variant == "matrix":
        detected = f"{NAME} DCN (matrix, DCN-V2 Eq. 1): {plural(L, 'layer')}, d={d}"
    elif variant == "vector":
        detected = f"{NAME} DCN (vector, DCN-V1): {plural(L, 'layer')}, d={d}"
    else:
        detected = f"{NAME} DCNMix: {plural(L, 'layer')}, K={K} experts, r={r}, d={d}, g=tanh"
    warnings: list[str] = []
    blocks = _blocks(tensors, root, d, warnings)

    def draw(key: str, s: tuple[int, ...], gen):  # type: ignore[no-untyped-def]
        if key.endswith("bias"):
            return None
        return np.stack([xavier_normal(s[1:], gen) for _ in range(s[0])])  # per-layer slice, as DeepCTR

    initial = draw_baseline(lambda t: build_layers(t, p), template, draw)
    return Imported(
        detected=detected, layers=layers, blocks=blocks, initial=initial, init_label=INIT_LABEL, warnings=warnings
    )
