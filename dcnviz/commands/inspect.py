"""`python -m dcnviz inspect FILE`: which feature crosses a DCN model learned and how low-rank its layers are.

Reads a dcnviz model file or a peer library's state dict (torchrec, DeepCTR-Torch, FuxiCTR, RecBole,
TFRS), then prints, per cross layer, the strongest crosses (paper §7.6, Eq. 7) and the numerical
ranks R_T (§3.5). With ``--json`` it prints one JSON object (the contract of issue 3):

* ``format``: the detected or forced format; ``features``: ``[{"name", "start", "stop"}, …]`` (x0
  slices, ``stop`` exclusive);
* ``layers``: per cross layer ``index``, ``kind`` (full | lowrank | mixture | vector), ``block_norms``
  (features × features, rows = output feature i, columns = input feature j, raw Frobenius norms),
  ``singular_values`` (descending; exactly r for a low-rank layer), ``numerical_rank``
  (``{str(float(T)): R_T}``). A mixture layer describes the mean of its experts' linear parts and
  carries an ``experts`` list with the same fields per expert.

Added keys: ``detected``, ``d``, ``tolerances``, ``energy``, ``init_label``, ``warnings``; per layer
``label``, ``rank_bound``, ``stable_rank``, ``energy_rank``, ``suggested_rank``, ``linear_part_only``,
``notes``, ``initial_singular_values`` and ``initial_numerical_rank`` (when the initial matrix is known),
``change_block_norms`` (block norms of W − W0, saved initial weights only), ``weighting`` (mixtures:
``uniform``, or ``gate-weighted over N validation inputs`` with ``--gates-data``) and ``gate_weights``
(E_x[G_k(x_l)] per expert, with ``--gates-data``).

``--gates-data SOURCE [--gates-data-dir DIR]`` (dcnviz mixture files): instead of the mean of the
experts, describe each mixture layer by E_x[Σ_k G_k(x_l) W_k] = Σ_k E_x[G_k(x_l)] W_k over up to
``--gates-rows`` inputs of the validation split the file recorded (recreated as ``evaluate`` does).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Any

import numpy as np

from dcnviz.analysis import (
    BLOCK_FEEDS,
    DEFAULT_ENERGY,
    DEFAULT_SUGGEST_TOLERANCE,
    DEFAULT_TOLERANCES,
    MODE_EXPLANATIONS,
    MODES,
    MatrixAnalysis,
    ModelAnalysis,
    analyze,
    analyze_layer,
    tolerance_key,
)
from dcnviz.data import SOURCES
from dcnviz.errors import CheckpointError, ConfigError
from dcnviz.finite import finite_list, finite_or_none
from dcnviz.importers import FORMATS, read_names_file
from dcnviz.modelfile import ModelFile, open_model_file
from dcnviz.untrusted import clip
from dcnviz.weights import CrossModelWeights


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "inspect",
        help="show a model's learned feature crosses and the numerical rank of its cross layers",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    p.add_argument("file", metavar="FILE", help="dcnviz .safetensors model, or a peer library's state dict")
    p.add_argument("--format", default="auto", choices=FORMATS, help="file format (default: detect from the keys)")
    p.add_argument(
        "--names",
        metavar="NAMES.json",
        help='feature names: ["name", ...] (one per block) or [{"name": str, "width": int}, ...]',
    )
    p.add_argument(
        "--tolerance",
        type=float,
        nargs="+",
        metavar="T",
        default=list(DEFAULT_TOLERANCES),
        help="tolerances T of the numerical rank R_T = #{k : σ_k ≥ T·σ_1} (default: 0.5 0.1 0.05 0.01)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")
    p.add_argument(
        "--energy",
        type=float,
        default=DEFAULT_ENERGY,
        metavar="SHARE",
        help="share of Σσ² for the energy rank (default 0.9)",
    )
    p.add_argument(
        "--suggest-tolerance",
        type=float,
        default=None,
        metavar="T",
        help=f"tolerance behind the suggested rank (default: the --tolerance closest to {DEFAULT_SUGGEST_TOLERANCE:g})",
    )
    p.add_argument("--mode", default="symmetric", choices=MODES, help="block-norm view for the summary's top crosses")
    p.add_argument("--top", type=int, default=5, metavar="N", help="crosses listed per layer in the summary")
    p.add_argument("--include-self", action="store_true", help="list self-crosses (i = j) among the top crosses")
    p.add_argument(
        "--html",
        metavar="REPORT.html",
        default=None,
        help="also write the offline HTML report of the app's Report page (card, heatmaps, spectra, ranks) there",
    )
    g = p.add_argument_group("gate-weighted mixtures (dcnviz files)")
    g.add_argument(
        "--gates-data",
        choices=SOURCES,
        default=None,
        metavar="SOURCE",
        help=f"weight each mixture layer's experts by their mean gate over the recorded validation split of this "
        f"data ({'|'.join(SOURCES)}); default: uniform (the mean of the experts)",
    )
    g.add_argument("--gates-data-dir", metavar="DIR", default=None, help="where that data is now (default: recorded)")
    g.add_argument("--gates-schema", metavar="FILE", default=None, help="schema JSON for csv/parquet")
    g.add_argument("--gates-rows", type=int, default=20_000, metavar="N", help="validation inputs averaged over")
    p.add_argument(
        "--feature-map",
        metavar="FEATURE_MAP.json",
        help="FuxiCTR's feature_map.json (saved beside its processed data): feature order and types of x0",
    )
    p.set_defaults(func=run)


# ------------------------------------------------------------------------------------------ loading


def open_file(
    path: str | os.PathLike[str],
    *,
    format: str = "auto",
    names_path: str | None = None,
    feature_map_path: str | None = None,
) -> ModelFile:
    """Any supported file, opened through the front door (:func:`dcnviz.modelfile.open_model_file`)."""
    names = read_names_file(names_path) if names_path else None
    return open_model_file(path, format=format, names=names, feature_map=feature_map_path)


def load_weights(
    path: str | os.PathLike[str],
    *,
    format: str = "auto",
    names_path: str | None = None,
    feature_map_path: str | None = None,
) -> CrossModelWeights:
    """Any supported file → common form (:func:`open_file`)."""
    return open_file(path, format=format, names_path=names_path, feature_map_path=feature_map_path).weights


def gate_weights_from_data(
    mf: ModelFile, *, source: str, data_dir: str | None, schema: str | None, rows: int
) -> tuple[list[np.ndarray | None], str]:
    """E_x[G(x_l)] per cross layer of a dcnviz mixture file over its recorded validation split
    (:func:`dcnviz.gates.mean_gates_on`), with the CLI's messages; the data location defaults to the
    recorded one (the file is the user's own). Data warnings go to stderr."""
    from dcnviz.gates import check_mixture, mean_gates_on
    from dcnviz.modelfile import RecordedData

    if rows < 1:
        raise ConfigError(f"--gates-rows must be >= 1; got {rows}")
    try:
        check_mixture(mf)
        options, warnings = (mf.data or RecordedData()).cli_options(source, data_dir=data_dir, schema=schema)
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)
        return mean_gates_on(mf, options, rows=rows)
    except ConfigError as e:
        raise ConfigError(f"--gates-data: {e}") from None


def analyze_finite(
    cw: CrossModelWeights, *, gate_weights: list[np.ndarray | None] | None = None, **options: Any
) -> ModelAnalysis:
    """:func:`dcnviz.analysis.analyze`, where a cross layer holding NaN or Inf (whose singular values
    are undefined) is left out with a warning instead of failing the whole file."""
    try:
        return analyze(cw, gate_weights=gate_weights, **options)
    except CheckpointError as e:
        if "NaN or Inf" not in str(e):
            raise
    layers, warnings = [], list(cw.warnings)
    for i in range(len(cw.layers)):
        try:
            g = None if gate_weights is None else gate_weights[i]
            layers.append(analyze_layer(cw, i, gate_weights=g, **options))
        except CheckpointError as e:
            if "NaN or Inf" not in str(e):
                raise
            warnings.append(f"cross layer {i} is left out: {e}")
    if not layers:
        raise CheckpointError("every cross layer holds NaN or Inf values; there is nothing to analyse")
    return dataclasses.replace(
        analyze(dataclasses.replace(cw, layers=[], initial_layers=None), **options),
        layers=tuple(layers),
        warnings=tuple(warnings),
        init_label=cw.init_label if cw.initial_layers is not None else "",
    )


# ------------------------------------------------------------------------------------------ JSON


def _matrix_json(item: MatrixAnalysis, index: int) -> dict[str, Any]:
    m, sp = item.matrix, item.spectrum
    out: dict[str, Any] = {
        "index": index,
        "kind": m.kind if m.expert is None else "lowrank",
        "label": m.label,
        "block_norms": finite_list(item.block_norms),
        "singular_values": finite_list(sp.singular_values),
        "numerical_rank": {tolerance_key(t): r for t, r in sp.numerical_rank.items()},
        "rank_bound": sp.rank_bound,
        "stable_rank": finite_or_none(sp.stable_rank),
        "energy_rank": {tolerance_key(sp.energy): sp.energy_rank},
        "suggested_rank": {
            "tolerance": sp.suggested.tolerance,
            "rank": sp.suggested.rank,
            "text": sp.suggested.text,
            "basis": sp.suggested.basis,
        },
        "linear_part_only": m.linear_part_only,
    }
    if m.weighting:
        out["weighting"] = m.weighting
    if item.has_change:  # added key: block norms of W − W0 (what training changed), saved initial weights only
        out["change_block_norms"] = finite_list(item.norms("raw", change=True))
    if m.notes:
        out["notes"] = list(m.notes)
    if sp.initial_singular_values is not None and sp.initial_numerical_rank is not None:
        out["initial_singular_values"] = finite_list(sp.initial_singular_values)
        out["initial_numerical_rank"] = {tolerance_key(t): r for t, r in sp.initial_numerical_rank.items()}
    return out


def analysis_json(an: ModelAnalysis, gate_weights: list[np.ndarray | None] | None = None) -> dict[str, Any]:
    """The ``inspect --json`` object of an analysis (see the module docstring for the keys)."""
    layers = []
    for la in an.layers:
        obj = _matrix_json(la, la.matrix.layer)
        if gate_weights is not None and gate_weights[la.matrix.layer] is not None:
            obj["gate_weights"] = finite_list(np.asarray(gate_weights[la.matrix.layer]))
        obj["experts"] = [_matrix_json(e, e.matrix.expert or 0) for e in la.experts]
        layers.append(obj)
    return {
        "format": an.format,
        "detected": an.detected,
        "d": an.d,
        "features": [{"name": b.name, "start": int(b.start), "stop": int(b.stop)} for b in an.blocks],
        "tolerances": list(an.tolerances),
        "energy": an.energy,
        "init_label": an.init_label,
        "warnings": list(an.warnings),
        "layers": layers,
    }


# ------------------------------------------------------------------------------------------ summary


def _ranks_line(ranks: dict[float, int]) -> str:
    return "  ".join(f"T={t:g}: {r}" for t, r in ranks.items())


def summary_text(
    an: ModelAnalysis,
    *,
    source: str = "",
    mode: str = "symmetric",
    top: int = 5,
    include_self: bool = False,
    gate_weights: list[np.ndarray | None] | None = None,
) -> str:
    """A readable summary: top crosses and ranks per layer."""
    lines = []
    head = f"{source}: " if source else ""
    lines.append(f"{clip(head, 200)}{an.detected or an.format} (format {an.format})")
    feats = "  ".join(f"{clip(b.name, 60)}[{b.start}:{b.stop}]" for b in an.blocks)
    lines.append(f"x0: d = {an.d}, {len(an.blocks)} feature block{'s' if len(an.blocks) != 1 else ''}: {feats}")
    if an.init_label:
        lines.append(f"initial matrices: {an.init_label}")
    for w in an.warnings:
        lines.append(f"warning: {clip(w, 1000)}")
    if not an.layers:
        lines.append("no cross layers: nothing to inspect (a plain DNN has no W)")
        return "\n".join(lines)
    if len(an.blocks) == 1:
        lines.append(
            "the file does not say where each feature's block lies in x0, so W is one block: "
            'give --names NAMES.json (["name", ...] or [{"name": ..., "width": ...}, ...]) to see crosses'
        )
    else:
        lines.append(f"block view '{mode}': {MODE_EXPLANATIONS[mode]}")
    for la in an.layers:
        sp, m = la.spectrum, la.matrix
        lines.append("")
        lines.append(f"{m.label} · {m.kind} (rank bound {sp.rank_bound} of d = {sp.d})")
        for note in m.notes:
            lines.append(f"  note: {note}")
        if m.weighting:
            lines.append(f"  experts weighted: {m.weighting}")
        if gate_weights is not None and gate_weights[m.layer] is not None:
            mean = ", ".join(f"{g:.3f}" for g in np.asarray(gate_weights[m.layer]).reshape(-1))
            lines.append(f"  mean gates E_x[G_k(x_l)], k = 0…: {mean}")
        t = la.top_crosses(mode, include_self=include_self, n=top)
        if len(t):
            self_note = "self-crosses included" if include_self else "self-crosses excluded"
            lines.append(f"  top {len(t)} crosses ({self_note}):")
            width = max(len(f"{clip(a, 60)} × {clip(b, 60)}") for a, b in zip(t.feature_i, t.feature_j, strict=True))
            sep = "×" if mode == "symmetric" else "←"
            for row in t.itertuples():
                pair = f"{clip(row.feature_i, 60)} {sep} {clip(row.feature_j, 60)}"
                lines.append(
                    f"    {row.rank:>2}. {pair:<{width}}  {row.value:.4g}  ({100 * row.share:.1f}% of the view's Σ²)"
                )
        lines.append(f"  numerical rank R_T: {_ranks_line(sp.numerical_rank)}")
        if sp.initial_numerical_rank is not None:
            lines.append(f"  initial matrix R_T: {_ranks_line(sp.initial_numerical_rank)}")
        s1 = float(sp.singular_values[0]) if sp.singular_values.size else 0.0
        lines.append(
            f"  σ_1 = {s1:.4g}; stable rank {sp.stable_rank:.3g}; "
            f"{100 * sp.energy:g}% of Σσ² in the top {sp.energy_rank} singular values"
        )
        lines.append(f"  suggested rank: {sp.suggested.text}")
        for e in la.experts:
            lines.append(f"  {e.matrix.label}: R_T {_ranks_line(e.spectrum.numerical_rank)}")
    if mode != "symmetric":
        lines.append("")
        lines.append(f"(a pair 'i ← j': {BLOCK_FEEDS})")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.top < 0:
        raise ConfigError(f"--top must be >= 0; got --top {args.top}")
    check_html_path(args.html)
    mf = open_file(args.file, format=args.format, names_path=args.names, feature_map_path=args.feature_map)
    cw = mf.weights
    gates: list[np.ndarray | None] | None = None
    gate_label = ""
    if args.gates_data is not None:
        if cw.format != "dcnviz":
            raise ConfigError(
                f"--gates-data needs a dcnviz model file (the gates are computed by running the model on data); "
                f"this file is {cw.detected} (peer mixtures are described with uniform gates)"
            )
        gates, gate_label = gate_weights_from_data(
            mf,
            source=args.gates_data,
            data_dir=args.gates_data_dir,
            schema=args.gates_schema,
            rows=args.gates_rows,
        )
    an = analyze_finite(
        cw,
        tolerances=args.tolerance,
        energy=args.energy,
        suggest_tolerance=args.suggest_tolerance,
        gate_weights=gates,
        gate_label=gate_label,
    )
    if args.html is not None:
        write_html_report(args.html, mf, an, source=str(args.file))
    if args.json:
        print(json.dumps(analysis_json(an, gates), allow_nan=False))
    else:
        text = summary_text(
            an, source=str(args.file), mode=args.mode, top=args.top, include_self=args.include_self, gate_weights=gates
        )
        print(text)
    return 0


def check_html_path(path: str | None) -> None:
    """``--html`` names a file (checked before any work, so a slip costs no time)."""
    if path is not None and (not path.strip() or path.endswith(("/", os.sep))):
        raise ConfigError(f"--html needs a file name (e.g. --html report.html); got {path!r}")


def write_html_report(path: str, mf: ModelFile, an: ModelAnalysis, *, source: str, explanation: Any = None) -> None:
    """``--html`` of ``inspect`` and ``explain``: the app's report written to ``path`` (atomically); one line on
    stderr says where, so stdout stays the summary or the JSON object."""
    from dcnviz.app.report import write_report

    check_html_path(path)
    try:
        out = write_report(path, mf, an, title=f"dcnviz report: {os.path.basename(source)}", explanation=explanation)
    except OSError as e:
        raise ConfigError(f"--html: cannot write {path}: {e.strerror or e}") from None
    print(f"report: {out} ({out.stat().st_size / 1e6:.1f} MB, opens offline)", file=sys.stderr)
