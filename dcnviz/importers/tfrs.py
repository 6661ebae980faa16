r"""TensorFlow Recommenders ``tfrs.layers.dcn.Cross`` weights exported to ``.npz`` or Keras ``.weights.h5``.

A ``Cross`` layer computes x_{l+1} = x0 ⊙ (dense(x_l)) + x_l with Keras ``Dense`` layers, whose kernels
are stored (in, out) — the transpose of the paper's W[out, in]:

* full rank: ``_dense`` kernel (N, N) and bias (N,) → **W = kernelᵀ**;
* low rank (``projection_dim=r``): ``_dense_u`` kernel A (N, r), no bias, and ``_dense_v`` kernel
  B (r, N) with bias (N,): x A B = ((A B)ᵀ x)ᵀ, so W = (A B)ᵀ = U Vᵀ with U = Bᵀ, V = A.

Variable names depend on how the weights were saved (``cross/dense/kernel:0`` from ``v.name``,
``.../_dense_u/kernel`` from ``v.path``, ``layers/cross/.../vars/0`` in ``.weights.h5``), so layers are
found structurally: keys are grouped by their last path component that names a cross layer
(``cross``, ``cross_1``, …, natural order); within a group 2-D arrays are kernels and a 1-D array
the bias. One (N, N) kernel is a full-rank layer; an (N, r) and an (r, N) kernel form a low-rank
one. A file with no ``cross`` component is read as one layer. ``diag_scale`` (adds diag_scale·I to
W) and ``preactivation`` are constructor arguments, not weights: dcnviz cannot see them.
Init: Keras ``truncated_normal`` (stddev 0.05, redrawn beyond 2σ) for both kernels, zero bias.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from dcnviz.errors import ImportFormatError
from dcnviz.importers.common import (
    MAX_LAYERS,
    Array,
    Imported,
    blocks_from_tables,
    check_elements,
    check_float,
    check_rank,
    check_width,
    plural,
    shape,
    to_np,
    truncated_normal,
    vec,
)
from dcnviz.importers.common import baseline as draw_baseline
from dcnviz.weights import CrossLayerWeights, FullRankWeights, LowRankWeights

NAME = "TensorFlow Recommenders"
CROSS = re.compile(r"^cross(?:_\d+)?$", re.IGNORECASE)
KERAS_HINT = re.compile(r"(?:^|/)(?:kernel|bias)(?::\d+)?$|(?:^|/)vars/\d+$|(?:^|/)_?dense(?:_[uv])?(?:_\d+)?/")
EXPECTED = (
    "Keras Cross weights: '<...>/cross[_i]/<dense>/kernel' (N, N), or a '_dense_u' (N, r) + '_dense_v' (r, N) pair"
)
INIT_LABEL = (
    "drawn from Keras truncated_normal (stddev 0.05) as TFRS Cross initialises (seed 0) — "
    "not this model's real initial weights"
)


def _parts(key: str) -> list[str]:
    return [p for p in re.split(r"[/.]", re.sub(r":\d+$", "", key)) if p]


def looks_like(tensors: Mapping[str, Array]) -> bool:
    """Keras-style names: '/'-separated paths, ':0' suffixes, kernel/bias or vars/<i> leaves."""
    return any(KERAS_HINT.search(k) for k in tensors) and not any(
        re.search(r"\.(weight|kernels|bias)(\.\d+)?$", k) for k in tensors
    )


def _natural(s: str) -> tuple:
    return tuple(int(x) if x.isdigit() else x for x in re.split(r"(\d+)", s))


def groups(tensors: Mapping[str, Array]) -> list[tuple[str, list[str]]]:
    """(group name, keys) per cross layer, in layer order."""
    found: dict[str, list[str]] = {}
    for k in tensors:
        parts = _parts(k)
        idx = [i for i, p in enumerate(parts) if CROSS.match(p)]
        if idx:
            found.setdefault("/".join(parts[: idx[-1] + 1]), []).append(k)
    if not found:
        return [("cross", list(tensors))] if tensors else []
    if len(found) > MAX_LAYERS:
        raise ImportFormatError(f"found {len(found)} cross layers, more than {MAX_LAYERS}")
    return sorted(found.items(), key=lambda kv: _natural(kv[0]))


# A Keras Embedding's table: '<layer>/embeddings[:0]' (v.name / v.path), or 'layers/<layer>/vars/0' in a
# .weights.h5 when the layer's name says it is an embedding.
EMBEDDING = re.compile(r"(?:^|/)(?P<layer>[^/]+)/embeddings(?::\d+)?$|(?:^|/)(?P<h5>[^/]*embedding[^/]*)/vars/0$", re.I)


def _feature_name(layer: str) -> str:
    """'movie_id_embedding' → 'movie_id'; 'embedding_movie_id' → 'movie_id'; 'embedding_1' stays."""
    m = re.fullmatch(r"(?P<n>.+?)_?embeddings?|embeddings?_(?P<m>.*\D.*)", layer, re.I)
    return (m.group("n") or m.group("m")) if m else layer


def _blocks(t: Mapping[str, Array], cross_keys: set[str], d: int, warnings: list[str]) -> list | None:
    """Feature blocks from the file's Embedding tables (vocab, E), in the file's order, then one raw block.

    TFRS models concatenate the features' embeddings into x0 (the DCN tutorial builds them in a dict in
    feature order, and ``model.weights`` lists them in that order); dense inputs, if any, fill the rest.
    """
    items: list[tuple[str, int, str]] = []
    for k, v in t.items():
        m = EMBEDDING.search(k)
        if k in cross_keys or not m or len(shape(v)) != 2:
            continue
        items.append((_feature_name(m.group("layer") or m.group("h5")), shape(v)[1], "sparse"))
    blocks = blocks_from_tables(items, d, "embedding tables'", warnings)
    if blocks is not None and len({b.name for b in blocks}) != len(blocks):
        return None  # two tables named alike: leave the blocks to a names file
    if blocks is not None:
        warnings.append(
            "feature blocks inferred from the file's Embedding tables, in the file's order: check it is the order "
            "the model concatenates them into x0 (or upload a names file)"
        )
    return blocks


def _layer(t: Mapping[str, Array], name: str, keys: list[str]) -> CrossLayerWeights:
    kernels = [k for k in keys if len(shape(t[k])) == 2]
    biases = [k for k in keys if len(shape(t[k])) == 1]
    if len(biases) > 1:
        raise ImportFormatError(f"cross layer {name!r} has {len(biases)} bias vectors ({biases}); expected at most 1")
    if len(kernels) == 1:
        k = kernels[0]
        n, m = shape(t[k])
        if n != m:
            raise ImportFormatError(f"cross layer {name!r}: kernel {k!r} has shape [{n}, {m}]; expected (N, N)")
        b = vec(t[biases[0]], biases[0], n) if biases else None
        return FullRankWeights(d=n, W=to_np(t[k]).T.copy(), b=b, notes=("W = Keras kernelᵀ",))
    if len(kernels) == 2:
        s0, s1 = shape(t[kernels[0]]), shape(t[kernels[1]])
        # A = _dense_u kernel (N, r), B = _dense_v kernel (r, N): by name when the keys say, else by shape.
        named_u = [k for k in kernels if re.search(r"dense_u(?:_\d+)?/", k)]
        named_v = [k for k in kernels if re.search(r"dense_v(?:_\d+)?/", k)]
        if s0 != (s1[1], s1[0]):
            raise ImportFormatError(
                f"cross layer {name!r}: kernels {kernels} have shapes {list(s0)}, {list(s1)}; "
                "expected a _dense_u (N, r) and _dense_v (r, N) pair"
            )
        if len(named_u) == 1 and len(named_v) == 1:
            a, b_ = named_u[0], named_v[0]
        elif biases and s0[0] != s0[1]:
            n_bias = shape(t[biases[0]])[0]
            a, b_ = (kernels[0], kernels[1]) if s0[0] == n_bias else (kernels[1], kernels[0])
        elif s0[0] != s0[1]:
            a, b_ = (kernels[0], kernels[1]) if s0[0] > s0[1] else (kernels[1], kernels[0])
        else:
            raise ImportFormatError(
                f"cross layer {name!r}: two square kernels {kernels} and no _dense_u/_dense_v names; "
                "cannot tell which is which"
            )
        A, B = to_np(t[a]), to_np(t[b_])  # (N, r), (r, N)
        n = A.shape[0]
        bias = vec(t[biases[0]], biases[0], n) if biases else None
        return LowRankWeights(d=n, U=B.T.copy(), V=A, b=bias, notes=("W = (A B)ᵀ from _dense_u A and _dense_v B",))
    raise ImportFormatError(f"cross layer {name!r} has {len(kernels)} kernels; expected 1 (full rank) or 2 (low rank)")


def build_layers(t: Mapping[str, Array]) -> list[CrossLayerWeights]:
    layers = [_layer(t, name, keys) for name, keys in groups(t)]
    if not layers:
        raise ImportFormatError(f"no Cross weights found; expected {EXPECTED}")
    d = layers[0].d
    for i, layer in enumerate(layers):
        if layer.d != d:
            raise ImportFormatError(f"cross layer {i} has width {layer.d}, layer 0 has {d}")
    return layers


def _validate(t: Mapping[str, Array]) -> None:
    for name, keys in groups(t):
        for k in keys:
            s = shape(t[k])
            if len(s) not in (1, 2):
                raise ImportFormatError(f"{k!r} in cross layer {name!r} has shape {list(s)}; expected a kernel or bias")
            check_width(max(s), k)
            if len(s) == 2:
                check_rank(min(s), max(s), k)
        check_float(t, keys)


def load(tensors: Mapping[str, Array]) -> Imported:
    _validate(tensors)
    cross_keys = {k for _, keys in groups(tensors) for k in keys}
    template = {k: tensors[k] for k in tensors if k in cross_keys}
    check_elements(template)
    layers = build_layers(tensors)
    d = layers[0].d
    each = ["full" if isinstance(layer, FullRankWeights) else f"low rank r={layer.rank_bound}" for layer in layers]
    what = ", ".join(f"layer {i}: {w}" for i, w in enumerate(each))
    if len(set(each)) == 1:
        what = "full rank" if each[0] == "full" else each[0]
    detected = f"{NAME} Cross: {plural(len(layers), 'layer')} ({what}), d={d}; W = Keras kernelᵀ"

    def draw(key: str, s: tuple[int, ...], gen):  # type: ignore[no-untyped-def]
        return None if len(s) == 1 else truncated_normal(s, 0.05, gen)

    initial = draw_baseline(build_layers, template, draw)
    warnings = ["TFRS diag_scale and preactivation are not stored with the weights: W is shown without them"]
    blocks = _blocks(tensors, cross_keys, d, warnings)
    return Imported(
        detected=detected, layers=layers, blocks=blocks, initial=initial, init_label=INIT_LABEL, warnings=warnings
    )
