"""`python -m dcnviz evaluate FILE --data ... [--data-dir DIR]`: score a model file on its split.

The split is recreated from the data options the file recorded at training time (split seed,
features, genres, dense features, age encoding) and encoded with the file's own FeatureSpec
(its vocabularies). ``--data`` / ``--data-dir`` / ``--schema`` say where the data is now; when
``--data-dir`` is left out, the recorded folder is used. The last stdout line is one JSON object:
``{"test": {"auc": A, "logloss": L}, "val": {"auc": A, "logloss": L}}`` (plus ``"rows"`` and the
model file's recorded metrics under ``"recorded"``, for comparison).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from dcnviz.commands.train import add_data_arguments
from dcnviz.finite import finite_json
from dcnviz.train import DEVICES


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "evaluate",
        help="score a model file on the test and validation split it was trained with",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("file", metavar="FILE", help="a dcnviz .safetensors model file")
    add_data_arguments(p)
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--batch-size", type=int, default=65536, help="rows per forward pass")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dcnviz.data import load_splits
    from dcnviz.errors import ConfigError
    from dcnviz.modelfile import RecordedData, open_model_file
    from dcnviz.train import evaluate, resolve_device

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1; got {args.batch_size}")
    mf = open_model_file(args.file, format="dcnviz")
    for w in mf.warnings:
        print(f"warning: {w}", file=sys.stderr)
    # where the data is now: --data-dir / --schema, else the folder the file recorded (the user's own file)
    options, warnings = (mf.data or RecordedData()).cli_options(args.data, data_dir=args.data_dir, schema=args.schema)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    splits = load_splits(options, spec=mf.spec)
    model = mf.build_model().to(resolve_device(args.device))
    out: dict[str, Any] = {
        "test": evaluate(model, splits.test, batch_size=args.batch_size),
        "val": evaluate(model, splits.val, batch_size=args.batch_size),
    }
    recorded = mf.metrics
    out["rows"] = splits.info.get("rows", {})
    if "test" in recorded:
        out["recorded"] = {"test": recorded.get("test"), "val": recorded.get("val")}
    print(json.dumps(finite_json(out), allow_nan=False))
    return 0
