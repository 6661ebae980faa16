"""Any model file → one :class:`ModelBundle`: its cross weights in common form plus what the file says.

Plain Python (no Streamlit), shared by the app's pages, its HTML report and notebook users.
:class:`ModelBundle` is :class:`dcnviz.modelfile.ModelFile` and :func:`load_bundle` a wrapper of
:func:`dcnviz.modelfile.open_model_file`, the one reader of model files (dcnviz files with their
FeatureSpec, model config, training recipe, metrics and history for the model card; peer files with
the format detected from the keys, or forced). Nothing is unpickled or executed. Every failure a file
can cause is a :class:`~dcnviz.errors.DcnvizError` with a message naming what is wrong.

The card tables (:func:`architecture_table`, :func:`feature_table`, :func:`layer_table`,
:func:`recipe_table`, :func:`metrics_table`) hold only strings in their ``value`` columns, so any
table viewer (Streamlit's Arrow-based one included) shows them as they are.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from dcnviz.checkpoint import DEFAULT_MAX_FILE_BYTES
from dcnviz.errors import CheckpointError
from dcnviz.modelfile import ModelFile, open_model_file
from dcnviz.untrusted import clip
from dcnviz.weights import LowRankWeights, MixtureWeights

KIND_NAMES: dict[str, str] = {
    "full": "full rank (Eq. 1)",
    "lowrank": "low rank (Eq. 2)",
    "mixture": "mixture of low-rank experts (Eq. 3/4)",
    "vector": "DCN-V1 vector (W = 1 wᵀ)",
}

ModelBundle = ModelFile  # the app's name for an opened model file (dcnviz.modelfile.ModelFile)


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_bundle(
    data: bytes,
    *,
    format: str = "auto",
    names: Sequence[Any] | Mapping[str, Any] | None = None,
    filename: str = "",
    max_bytes: int = DEFAULT_MAX_FILE_BYTES,
    trusted: bool = False,
    sha256: str | None = None,
) -> ModelBundle:
    """Read a model file's bytes: a dcnviz file, or a peer library's state dict.

    A wrapper of :func:`dcnviz.modelfile.open_model_file`, taking the app's one "names" upload:

    Args:
        data: the file's bytes.
        format: ``auto`` or one of :data:`dcnviz.importers.FORMATS` to force a layout.
        names: feature names (``["a", ...]``) or ``[{"name", "width"}, ...]`` for the x0 blocks, or a
            parsed FuxiCTR ``feature_map.json`` (a dict; FuxiCTR files only), e.g. from
            :func:`dcnviz.importers.read_names_or_feature_map`.
        filename: used in messages and on the card only.
        max_bytes: larger files are refused.
        trusted: dcnviz's own file (a shipped model): no isolated worker.
        sha256: the bytes' SHA-256 if already computed (the app's cache key): not hashed again.

    Raises:
        DcnvizError: the file is unreadable, hostile, of another format than forced, or ``names`` do
        not fit x0 (the message says which).
    """
    if len(data) > max_bytes:
        raise CheckpointError(
            f"{clip(filename, 80) if filename else 'the file'} is {len(data):,} bytes, "
            f"over the {max_bytes:,}-byte limit"
        )
    feature_map = names if isinstance(names, Mapping) else None  # a FuxiCTR feature_map.json
    return open_model_file(
        data,
        names=list(names) if names and feature_map is None else None,
        feature_map=feature_map,
        format=format,
        filename=filename or None,
        max_bytes=max_bytes,
        trusted=trusted,
        sha256=sha256,
    )


# --------------------------------------------------------------------------------------------------
# The model card


def _text(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.6g}" if math.isfinite(v) else str(v)
    if isinstance(v, list | tuple):
        return ", ".join(_text(x) for x in v) if v else "—"
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True, default=str)
    return str(v)


def _table(rows: Sequence[tuple[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame({"property": [r[0] for r in rows], "value": [_text(r[1]) for r in rows]})


def _flatten(obj: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.extend(_flatten(v, key + "."))
        else:
            out.append((key, v))
    return out


def architecture_table(b: ModelBundle) -> pd.DataFrame:
    """Architecture as (property, value) rows: kind, structure, layers, rank, experts, widths, sizes."""
    cw = b.weights
    rows: list[tuple[str, Any]] = [("file format", f"{b.library} ({b.format})"), ("detected", b.detected)]
    if b.config is not None:
        c = b.config
        kind = c.cross_kind
        first = cw.layers[0] if cw.layers else None
        rows += [
            ("model", c.model),
            ("structure", c.structure if c.model not in ("dnn", "crossnet") else "— (no deep/cross pair)"),
            ("cross layers", c.cross_layers if kind else 0),
            ("cross layer kind", KIND_NAMES.get(kind or "", "none (DNN)")),
        ]
        if isinstance(first, LowRankWeights | MixtureWeights):
            rows.append(("rank r" + (" per expert" if isinstance(first, MixtureWeights) else ""), c.rank))
        if isinstance(first, MixtureWeights):
            rows += [("experts K", c.experts), ("gate", c.gate), ("expert activation g", c.expert_activation)]
        rows += [
            ("deep tower", list(c.hidden) if c.has_deep else "none"),
            ("dropout", c.dropout),
            ("kernel init", c.init),
        ]
    else:
        kinds = sorted({layer.kind for layer in cw.layers})
        rows += [
            ("cross layers", len(cw.layers)),
            ("cross layer kind", ", ".join(KIND_NAMES.get(k, k) for k in kinds) or "none"),
        ]
        ranks = sorted({la.rank_bound for la in cw.layers if isinstance(la, LowRankWeights | MixtureWeights)})
        if ranks:
            rows.append(("rank bound per layer", ranks))
        mixtures = [la for la in cw.layers if isinstance(la, MixtureWeights)]
        experts = sorted({m.K for m in mixtures})
        if experts:
            acts = sorted({m.activation for m in mixtures})
            rows += [("experts K", experts), ("expert activation g", acts)]
    rows += [("width of x0 (d)", cw.d), ("features (blocks of x0)", len(cw.blocks))]
    if b.dense_params is not None:
        rows.append(("parameters without embedding tables", f"{b.dense_params:,}"))
    rows.append(("initial matrices (spectrum baseline)", cw.init_label or "not in the file"))
    rows.append(("file size", f"{b.size:,} bytes"))
    rows.append(("sha256", b.sha256[:16] + "…"))
    return _table(rows)


def feature_table(b: ModelBundle) -> pd.DataFrame:
    """One row per feature in x0 order: name, kind, vocabulary and embedding sizes, x0 slice."""
    if b.spec is not None:
        blocks = b.weights.blocks
        return pd.DataFrame(
            {
                "feature": [blk.name for blk in blocks],
                "kind": [f.kind for f in b.spec.fields],
                "vocabulary (incl. OOV)": [str(f.vocab_size) if f.kind != "dense" else "—" for f in b.spec.fields],
                "embedding size": [f.embedding_dim for f in b.spec.fields],
                "x0 slice": [f"[{blk.start}:{blk.stop})" for blk in blocks],
            }
        )
    return pd.DataFrame(
        {
            "feature": [blk.name for blk in b.weights.blocks],
            "kind": [str(blk.kind) for blk in b.weights.blocks],
            "vocabulary (incl. OOV)": ["—"] * len(b.weights.blocks),
            "embedding size": [blk.stop - blk.start for blk in b.weights.blocks],
            "x0 slice": [f"[{blk.start}:{blk.stop})" for blk in b.weights.blocks],
        }
    )


def layer_table(b: ModelBundle) -> pd.DataFrame:
    """One row per cross layer: kind, rank bound, experts, activation, bias, notes."""
    rows = []
    for i, layer in enumerate(b.weights.layers):
        mix = layer if isinstance(layer, MixtureWeights) else None
        rows.append(
            {
                "layer": i,
                "kind": KIND_NAMES.get(layer.kind, layer.kind),
                "rank bound": layer.rank_bound,
                "experts": mix.K if mix else "—",
                "activation g": mix.activation if mix else "—",
                "gate": (mix.gate_kind if mix else None) or "—",
                "bias": "yes" if layer.b is not None else "no",
                "notes": "; ".join(layer.notes) or "—",
            }
        )
    df = pd.DataFrame(rows)
    for col in ("experts",):
        if col in df:
            df[col] = df[col].astype(str)
    return df


def recipe_table(b: ModelBundle) -> pd.DataFrame:
    """Training recipe and data of a dcnviz file (empty for peer files, which do not record them)."""
    rows: list[tuple[str, Any]] = []
    tc = b.meta.get("train_config") if b.meta else None
    if isinstance(tc, Mapping):
        rows += [(f"train.{k}", v) for k, v in _flatten(tc)]
    di = b.meta.get("data_info") if b.meta else None
    if isinstance(di, Mapping):
        keep = ("source", "seed", "examples", "rows", "positive_rate", "protocol")
        rows += [(f"data.{k}", v) for k, v in _flatten({k: di[k] for k in keep if k in di})]
    versions = b.meta.get("versions") if b.meta else None
    if isinstance(versions, Mapping):
        rows += [(f"made with {k}", v) for k, v in versions.items()]
    if b.meta and b.meta.get("created"):
        rows.append(("created", b.meta["created"]))
    return _table(rows)


def metrics_table(b: ModelBundle) -> pd.DataFrame:
    """Recorded metrics of a dcnviz file, flattened (``test.auc``, ``val.logloss``, …)."""
    m = b.meta.get("metrics") if b.meta else None
    if not isinstance(m, Mapping):
        return _table([])
    rows = [(k, v) for k, v in _flatten(m) if not k.startswith("runs")]
    return _table(rows)


# --------------------------------------------------------------------------------------------------
# The bundled sample's known answer


def sample_ground_truth(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``ground_truth.json`` of a sample folder (planted and control pairs), or None when absent or unreadable."""
    path = Path(folder) / "ground_truth.json"
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) and isinstance(obj.get("planted"), list) else None


def pair_rank(top: pd.DataFrame, a: str, b: str) -> int | None:
    """Rank (from 1) of the unordered pair {a, b} in a :func:`dcnviz.analysis.top_crosses` table, or None.

    >>> t = pd.DataFrame({"rank": [1, 2], "feature_i": ["x", "y"], "feature_j": ["y", "z"]})
    >>> pair_rank(t, "z", "y"), pair_rank(t, "x", "z")
    (2, None)
    """
    for r in top.itertuples():
        if {r.feature_i, r.feature_j} == {a, b}:
            return int(r.rank)
    return None
