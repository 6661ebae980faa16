"""`python -m dcnviz explain FILE`: does the heatmap tell the truth? Cross importance measured on data.

For a dcnviz model file and the split it was trained with (recreated from the options the file
recorded, as ``evaluate`` does; ``--data``/``--data-dir``/``--schema`` say where the data is now and
default to what the file recorded), prints per cross layer the **ablation** (Δ log loss when block
(i, j) of W is zeroed, the bias kept), the **contribution** (RMS of ‖x0_i ⊙ (W_ij x_l,j)‖₂) and the block
norms, and the **rank-truncation curve** (AUC and log loss with every cross layer's W replaced by its
best rank-r approximation, without retraining). ``--row N`` adds the ablation of one example as Δ logit.
Definitions: :mod:`dcnviz.explain`. With ``--json`` the last stdout line is one object:

``{"split", "rows", "baseline": {"auc", "logloss"}, "features": [{"name", "start", "stop"}],
"layers": [{"index", "ablation", "contribution", "block_norms"}], "rank_curve": [{"rank", "auc", "logloss"}]}``
(k × k tables, rows = output feature i), plus ``"row"`` with ``--row``. ``ablation``/``contribution`` are
null with a per-layer ``"note"`` where undefined (nonlinear experts, Eq. 4) or not asked (``--layers``);
``rank_curve`` is null with a top-level ``"note"`` for nonlinear experts. Added keys: per layer ``kind``;
``suggested_rank`` (``{"rank", "basis", "text"}``, read off the rank curve); ``row.logit``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from dcnviz.data import SOURCES
from dcnviz.encoded import Encoded
from dcnviz.explain import DEFAULT_MAX_ROWS, SPLITS
from dcnviz.model import DCNModel
from dcnviz.modelfile import ModelFile
from dcnviz.train import DEVICES


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "explain",
        help="measure on data which crosses the predictions depend on, and how low a rank keeps the AUC",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    p.add_argument("file", metavar="FILE", help="a dcnviz .safetensors model file")
    p.add_argument("--data", choices=SOURCES, default=None, help="dataset (default: the one the model file recorded)")
    p.add_argument(
        "--data-dir", metavar="DIR", default=None, help="where that data is now (default: the recorded folder)"
    )
    p.add_argument("--schema", metavar="S", default=None, help="schema JSON for csv/parquet (default: recorded)")
    p.add_argument("--split", choices=SPLITS, default="val", help="which split to measure on (default val)")
    p.add_argument(
        "--max-rows",
        type=int,
        default=DEFAULT_MAX_ROWS,
        metavar="N",
        help=f"use the first N rows of the split, in split order (default {DEFAULT_MAX_ROWS})",
    )
    p.add_argument(
        "--ranks",
        type=int,
        nargs="+",
        default=None,
        metavar="R",
        help="ranks of the truncation curve (default 1, 2, 4, … and the largest rank bound, which is always added)",
    )
    p.add_argument(
        "--layers",
        type=int,
        nargs="+",
        default=None,
        metavar="L",
        help="0-based cross layers to ablate (default all; the rank curve always truncates every layer)",
    )
    p.add_argument("--row", type=int, default=None, metavar="N", help="also the ablation for row N of the split")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")
    p.add_argument("--top", type=int, default=5, metavar="N", help="crosses listed per layer in the summary")
    p.add_argument("--device", choices=DEVICES, default="cpu", help="where to run the model (default cpu)")
    p.add_argument(
        "--html",
        metavar="REPORT.html",
        default=None,
        help="also write the offline HTML report of the app's Report page there, with these measurements in it",
    )
    p.set_defaults(func=run)


def load_for_explain(args: argparse.Namespace) -> tuple[DCNModel, Encoded, str, ModelFile]:
    """(the model, the split's encoded rows, the data source, the opened file) for ``args``, through the front door
    (:func:`dcnviz.modelfile.open_model_file`): the split is the one the file recorded, on the data
    ``--data``/``--data-dir``/``--schema`` point at (by default where the file says: it is the user's own)."""
    from dcnviz.data import load_splits
    from dcnviz.errors import ConfigError
    from dcnviz.explain import check_explainable
    from dcnviz.modelfile import RecordedData, open_model_file

    mf = open_model_file(args.file)
    if mf.format != "dcnviz":
        raise ConfigError(
            f"{args.file} is a {mf.library} file ({mf.detected}), not a dcnviz model file: explain runs the model "
            "on data, which needs the whole model (embedding tables, cross and deep layers, feature vocabularies); "
            "a peer library's state dict holds only the cross weights that `inspect` reads"
        )
    for w in mf.warnings:
        print(f"warning: {w}", file=sys.stderr)
    model = mf.build_model()
    check_explainable(model)
    recorded = mf.data or RecordedData()
    source = args.data or recorded.source
    if source is None:
        raise ConfigError(f"{args.file} records no training data; give --data (and --data-dir) to say which to use")
    options, warnings = recorded.cli_options(source, data_dir=args.data_dir, schema=args.schema)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    splits = load_splits(options, spec=mf.spec)
    return model, splits.val if args.split == "val" else splits.test, source, mf


def run(args: argparse.Namespace) -> int:
    from dcnviz.commands.inspect import analyze_finite, check_html_path, write_html_report
    from dcnviz.errors import ConfigError
    from dcnviz.explain import Explainer
    from dcnviz.train import resolve_device

    if args.max_rows < 1:
        raise ConfigError(f"--max-rows must be >= 1; got --max-rows {args.max_rows}")
    if args.top < 0:
        raise ConfigError(f"--top must be >= 0; got --top {args.top}")
    check_html_path(args.html)
    model, rows, source, mf = load_for_explain(args)
    model = model.to(resolve_device(args.device))
    ex = Explainer(model, rows, split=args.split, max_rows=args.max_rows)
    result = ex.explain(ranks=args.ranks, layers=args.layers, row=args.row)
    if args.html is not None:
        write_html_report(args.html, mf, analyze_finite(mf.weights), source=args.file, explanation=result)
    if args.json:
        print(json.dumps(result.to_json(), allow_nan=False))
    else:
        print(summary_text(result, source=f"{args.file} on {source}", top=args.top))
    return 0


def summary_text(result: Any, *, source: str = "", top: int = 5) -> str:
    """A readable summary of an :class:`~dcnviz.explain.Explanation`."""
    from dcnviz.analysis import agreement_sentence, effect_table

    split = {"val": "validation", "test": "test"}[result.split]
    lines = [
        f"{source}: {result.rows:,} {split} rows",
        f"baseline: AUC {result.baseline['auc']:.4f}, log loss {result.baseline['logloss']:.4f}",
    ]
    names = result.names
    for le in result.layers:
        lines.append("")
        lines.append(f"layer {le.index} · {le.kind}")
        if le.ablation is None:
            lines.append(f"  {le.note}")
            continue
        table = effect_table(le.ablation, le.block_norms, names, contribution=le.contribution)
        lines.append(
            f"  top {min(top, len(table))} crosses by effect (Δ log loss, blocks (i, j) and (j, i) each zeroed; "
            "+ = the cross helps):"
        )
        shown = table.head(top)
        if len(shown):
            width = max(len(f"{a} × {b}") for a, b in zip(shown.feature_i, shown.feature_j, strict=True))
            for r in shown.itertuples():
                pair = f"{r.feature_i} × {r.feature_j}"
                lines.append(
                    f"    {r.rank:>2}. {pair:<{width}}  {r.effect:+.5f}   "
                    f"block norm {r.block_norm:.3g} (#{r.norm_rank})"
                )
        lines.append(f"  {agreement_sentence(table)}")
    lines.append("")
    if result.rank_curve is None:
        lines.append(f"rank curve: {result.note}")
    else:
        lines.append("rank curve (every cross layer truncated to rank r, without retraining):")
        lines.append("       r     AUC   log loss")
        for p in result.rank_curve:
            lines.append(f"    {p.rank:>4}  {p.auc:.4f}   {p.logloss:.4f}")
        if result.suggestion is not None:
            lines.append(f"suggested rank: {result.suggestion.text}")
    if result.row is not None:
        r = result.row
        lines.append("")
        lines.append(f"row {r.index}: label {r.label:g}, score {r.score:.4f} (logit {r.logit:+.4f})")
        for le, a in zip(result.layers, r.ablation, strict=True):
            if a is None:
                continue
            cells = sorted(
                ((float(a[i, j]), names[i], names[j]) for i in range(len(names)) for j in range(len(names))),
                key=lambda t: -abs(t[0]),
            )[:top]
            shown_cells = ", ".join(f"{i} ← {j} {v:+.4f}" for v, i, j in cells)
            lines.append(f"  layer {le.index}: largest Δ logit when a block is zeroed: {shown_cells}")
    return "\n".join(lines)
