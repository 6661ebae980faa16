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


def recorded_options(meta: dict[str, Any], args: argparse.Namespace) -> Any:
    """The file's DataOptions with the data location of ``args`` (source, folder, schema)."""
    from dcnviz.data import DataOptions

    info = meta.get("data_info") or {}
    recorded = info.get("options") if isinstance(info, dict) else None
    if isinstance(recorded, dict):
        base = dict(recorded)
        if base.get("source") != args.data:
            print(
                f"warning: the model was trained on {base.get('source')!r} data; evaluating on {args.data!r}",
                file=sys.stderr,
            )
        same_kind = base.get("source") in ("csv", "parquet") and args.data in ("csv", "parquet")
        if base.get("source") in ("csv", "parquet") or args.data in ("csv", "parquet"):
            # MovieLens field choices do not apply to own tables and vice versa
            keep = {"seed", "embedding_dim"} | ({"schema"} if same_kind else set())
            base = {k: v for k, v in base.items() if k in keep}
        base["source"] = args.data
        if args.data_dir is not None:
            base["data_dir"] = args.data_dir
        elif args.data == "sample" and recorded.get("source") != "sample":
            base["data_dir"] = None
        if args.schema is not None:
            base["schema"] = args.schema
        return DataOptions.from_json(base)
    print("warning: the model file records no data options; using the defaults (split seed 0)", file=sys.stderr)
    return DataOptions(source=args.data, data_dir=args.data_dir, schema=args.schema)


def run(args: argparse.Namespace) -> int:
    from dcnviz.checkpoint import load_model
    from dcnviz.data import load_splits
    from dcnviz.errors import ConfigError
    from dcnviz.train import evaluate, resolve_device

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be >= 1; got {args.batch_size}")
    loaded = load_model(args.file)
    for w in loaded.warnings:
        print(f"warning: {w}", file=sys.stderr)
    options = recorded_options(loaded.meta, args)
    splits = load_splits(options, spec=loaded.spec)
    model = loaded.model.to(resolve_device(args.device))
    out: dict[str, Any] = {
        "test": evaluate(model, splits.test, batch_size=args.batch_size),
        "val": evaluate(model, splits.val, batch_size=args.batch_size),
    }
    recorded = loaded.meta.get("metrics") or {}
    out["rows"] = splits.info.get("rows", {})
    if isinstance(recorded, dict) and "test" in recorded:
        out["recorded"] = {"test": recorded.get("test"), "val": recorded.get("val")}
    print(json.dumps(_finite(out), allow_nan=False))
    return 0


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if obj == obj and abs(obj) != float("inf") else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj
