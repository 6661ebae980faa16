r"""torchrec cross networks (``torchrec/modules/crossnet.py``) and ``DLRM_DCN`` (``torchrec/models/dlrm.py``).

Layouts (one ParameterList entry per layer, key ``name.{l}``; x0 width N):

* ``CrossNet``: ``kernels.{l}`` (N, N) = W_l in paper orientation, ``bias.{l}`` (N, 1). Eq. (1).
* ``LowRankCrossNet``: ``W_kernels.{l}`` (N, r) = U, ``V_kernels.{l}`` (r, N) = Vᵀ, ``bias.{l}`` (N,)
  or (N, 1): W_l = W_kernels @ V_kernels. Eq. (2).
* ``VectorCrossNet`` (DCN-V1): ``kernels.{l}`` (N, 1) = w_l, ``bias.{l}`` (N, 1) added outside the product.
* ``LowRankMixtureCrossNet``: ``U_kernels.{l}`` (K, N, r), ``V_kernels.{l}`` (K, r, N) = V_kᵀ,
  ``C_kernels.{l}`` (K, r, r), ``bias.{l}`` (N, 1), ``gates.{k}.weight`` (1, N) shared by all layers
  (absent when K = 1). The expert activation is a constructor argument (default ``torch.relu``) and is
  not saved: dcnviz assumes relu and says so.

``DLRM_DCN`` puts a ``LowRankCrossNet`` at ``inter_arch.crossnet.`` (``model.`` in front under
``DLRMTrain``). Its x0 = [dense_arch(dense) (D); sparse feature 1 (D); …]: equal-width blocks,
the dense projection first, then one per embedding table in order
(``sparse_arch.embedding_bag_collection.embedding_bags.<table>.weight``), assuming one feature per
table. Init: ``xavier_normal_`` for every kernel, zero biases.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from dcnviz.errors import ImportFormatError
from dcnviz.importers.common import (
    MAX_EXPERTS,
    Array,
    Imported,
    blocks_from_widths,
    check_count,
    check_elements,
    check_float,
    check_rank,
    check_width,
    expect_shape,
    indexed,
    plural,
    shape,
    to_np,
    vec,
    xavier_normal,
)
from dcnviz.importers.common import baseline as draw_baseline
from dcnviz.spec import Block
from dcnviz.weights import (
    CrossLayerWeights,
    ExpertWeights,
    FullRankWeights,
    LayerKind,
    LowRankWeights,
    MixtureWeights,
    VectorWeights,
)

NAME = "torchrec"
ANCHOR = re.compile(r"^(?P<root>(?:.*\.)?)(?:kernels|W_kernels|U_kernels)\.\d+$")
EXPECTED = (
    "'kernels.<l>' (N, N) or (N, 1), or 'W_kernels.<l>' (N, r) + 'V_kernels.<l>' (r, N), or "
    "'U_kernels.<l>'/'V_kernels.<l>'/'C_kernels.<l>', each with 'bias.<l>'"
)
INIT_LABEL = "drawn from xavier_normal_ as torchrec initialises (seed 0) — not this model's real initial weights"


def roots(tensors: Mapping[str, Array]) -> list[str]:
    return sorted({m.group("root") for k in tensors if (m := ANCHOR.match(k))})


def _variant(t: Mapping[str, Array], p: str) -> LayerKind:
    if indexed(t, p, "U_kernels"):
        return "mixture"
    if indexed(t, p, "W_kernels"):
        return "lowrank"
    ks = indexed(t, p, "kernels")
    if not ks:
        raise ImportFormatError(f"no torchrec cross kernels under {p!r}; expected {EXPECTED}")
    s = shape(t[ks[0]])
    if len(s) != 2:
        raise ImportFormatError(f"{ks[0]!r} has shape {list(s)}; expected (N, N) or (N, 1)")
    return "vector" if s[1] == 1 and s[0] > 1 else "full"


def _biases(t: Mapping[str, Array], p: str, L: int) -> list[str]:
    keys = indexed(t, p, "bias")
    if len(keys) != L:
        raise ImportFormatError(f"found {len(keys)} '{p}bias.<l>' entries for {L} layers")
    return keys


def build_layers(t: Mapping[str, Array], p: str) -> list[CrossLayerWeights]:
    variant = _variant(t, p)
    if variant in ("full", "vector"):
        ks = indexed(t, p, "kernels")
        bs = _biases(t, p, len(ks))
        d = shape(t[ks[0]])[0]
        out: list[CrossLayerWeights] = []
        for k, b in zip(ks, bs, strict=True):
            if variant == "full":
                expect_shape(k, t[k], (d, d))
                out.append(FullRankWeights(d=d, W=to_np(t[k]), b=vec(t[b], b, d)))
            else:
                expect_shape(k, t[k], (d, 1))
                out.append(VectorWeights(d=d, w=to_np(t[k])[:, 0], b=vec(t[b], b, d)))
        return out
    if variant == "lowrank":
        Ws, Vs = indexed(t, p, "W_kernels"), indexed(t, p, "V_kernels")
        if len(Vs) != len(Ws):
            raise ImportFormatError(f"found {len(Ws)} '{p}W_kernels.<l>' but {len(Vs)} '{p}V_kernels.<l>'")
        bs = _biases(t, p, len(Ws))
        d, r = shape(t[Ws[0]])
        out = []
        for w, v, b in zip(Ws, Vs, bs, strict=True):
            expect_shape(w, t[w], (d, r), "W_kernels is U (N, r)")
            expect_shape(v, t[v], (r, d), "V_kernels is Vᵀ (r, N)")
            out.append(LowRankWeights(d=d, U=to_np(t[w]), V=to_np(t[v]).T.copy(), b=vec(t[b], b, d)))
        return out
    Us, Vs, Cs = indexed(t, p, "U_kernels"), indexed(t, p, "V_kernels"), indexed(t, p, "C_kernels")
    if not (len(Us) == len(Vs) == len(Cs)):
        raise ImportFormatError(
            f"'{p}U_kernels', 'V_kernels', 'C_kernels' have {len(Us)}, {len(Vs)}, {len(Cs)} layers; expected equal"
        )
    bs = _biases(t, p, len(Us))
    K, d, r = shape(t[Us[0]])
    gate_keys: list[str] = []
    while f"{p}gates.{len(gate_keys)}.weight" in t:
        gk = f"{p}gates.{len(gate_keys)}.weight"
        expect_shape(gk, t[gk], (1, d), "a gate is nn.Linear(N, 1, bias=False)")
        gate_keys.append(gk)
    if K > 1 and len(gate_keys) != K:
        raise ImportFormatError(f"found {len(gate_keys)} '{p}gates.<k>.weight' for K={K} experts")
    gates = np.concatenate([vec(t[g], g, d)[None, :] for g in gate_keys]) if gate_keys else None  # (K, d)
    out = []
    for u, v, c, b in zip(Us, Vs, Cs, bs, strict=True):
        expect_shape(u, t[u], (K, d, r))
        expect_shape(v, t[v], (K, r, d), "V_kernels holds V_kᵀ (K, r, N)")
        expect_shape(c, t[c], (K, r, r))
        U, Vt, C = to_np(t[u]), to_np(t[v]), to_np(t[c])
        out.append(
            MixtureWeights(
                d=d,
                experts=tuple(ExpertWeights(U=U[k], V=Vt[k].T.copy(), C=C[k]) for k in range(K)),
                activation="relu",
                b=vec(t[b], b, d),
                gates=gates,
                gate_kind="softmax" if gates is not None else "constant",
                gates_shared=True,
                notes=(
                    "expert activation assumed relu (torchrec's default; the state dict does not record it): "
                    "U C Vᵀ is only each expert's linear part",
                ),
            )
        )
    return out


def _validate(t: Mapping[str, Array], p: str) -> tuple[LayerKind, int, int, int, int]:
    variant = _variant(t, p)
    key = {"full": "kernels", "vector": "kernels", "lowrank": "W_kernels", "mixture": "U_kernels"}[variant]
    ks = indexed(t, p, key)
    s = shape(t[ks[0]])
    check_float(t, ks)
    if variant == "mixture":
        if len(s) != 3:
            raise ImportFormatError(f"{ks[0]!r} has shape {list(s)}; expected (K, N, r)")
        K, d, r = s
        check_count(K, "experts", MAX_EXPERTS)
        check_width(d, ks[0])
        check_rank(r, d, ks[0])
        return variant, len(ks), d, K, r
    if len(s) != 2:
        raise ImportFormatError(f"{ks[0]!r} has shape {list(s)}; expected a matrix")
    check_width(s[0], ks[0])
    if variant == "lowrank":
        check_rank(s[1], s[0], ks[0])
    return variant, len(ks), s[0], 0, s[1] if variant == "lowrank" else 0


def _dlrm_blocks(t: Mapping[str, Array], root: str, d: int, warnings: list[str]) -> list[Block] | None:
    """DLRM_DCN: x0 = [dense_arch output (D); one D-wide block per embedding table]."""
    top = root[: -len("inter_arch.crossnet.")] if root.endswith("inter_arch.crossnet.") else None
    if top is None:
        return None
    emb = re.compile(re.escape(top) + r"sparse_arch\.embedding_bag_collection\.embedding_bags\.(?P<name>.+)\.weight$")
    tables = [(m.group("name"), shape(v)) for k, v in t.items() if (m := emb.match(k))]
    if not tables:
        return None
    widths = {s[1] for _, s in tables if len(s) == 2}
    if len(widths) != 1 or d % (len(tables) + 1) or widths != {d // (len(tables) + 1)}:
        warnings.append(
            f"DLRM_DCN embedding tables ({len(tables)}, widths {sorted(widths)}) do not tile x0 of width d={d} "
            "as [dense; one block per table]; feature blocks not inferred"
        )
        return None
    D = d // (len(tables) + 1)
    return blocks_from_widths([("dense_arch", D, "dense_mlp")] + [(name, D, "sparse") for name, _ in tables])


def load(tensors: Mapping[str, Array], root: str) -> Imported:
    p = root
    variant, L, d, K, r = _validate(tensors, p)
    template = {
        k: v
        for k, v in tensors.items()
        if k.startswith(p)
        and re.fullmatch(r"(?:kernels|W_kernels|V_kernels|U_kernels|C_kernels|bias)\.\d+", k[len(p) :])
    }
    check_elements(template)
    layers = build_layers(tensors, p)
    cls = {
        "full": "CrossNet",
        "vector": "VectorCrossNet",
        "lowrank": "LowRankCrossNet",
        "mixture": "LowRankMixtureCrossNet",
    }[variant]
    dlrm = p.endswith("inter_arch.crossnet.")
    detected = f"{NAME} {'DLRM_DCN with ' if dlrm else ''}{cls}: {plural(L, 'layer')}"
    if variant == "lowrank":
        detected += f", r={r}"
    if variant == "mixture":
        detected += f", K={K} experts, r={r}, g=relu (assumed)"
    detected += f", d={d}"
    if p:
        detected += f" (keys under {p!r})"
    warnings: list[str] = []
    blocks = _dlrm_blocks(tensors, p, d, warnings) if dlrm else None

    def draw(key: str, s: tuple[int, ...], gen):  # type: ignore[no-untyped-def]
        return None if key[len(p) :].startswith("bias.") else xavier_normal(s, gen)

    initial = draw_baseline(lambda t: build_layers({**t, **_gate_keys(tensors, p)}, p), template, draw)
    return Imported(
        detected=detected, layers=layers, blocks=blocks, initial=initial, init_label=INIT_LABEL, warnings=warnings
    )


def _gate_keys(t: Mapping[str, Array], p: str) -> dict[str, Array]:
    """Gates are not part of W; the baseline keeps the file's own so its layers validate."""
    return {k: v for k, v in t.items() if k.startswith(f"{p}gates.")}
