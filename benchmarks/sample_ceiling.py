"""The best test AUC / log loss any model can reach on the synthetic sample (its generative model's own
probabilities), at several sizes: the ceiling that bounds every margin measured on it.

For each ``--scale`` K this generates ``SampleConfig().scaled(K)``, loads it with the paper's protocol and
split (seed 0), and scores the test split with :func:`dcnviz.sample.bayes_probability` of each row's
latent score. ``benchmarks/quality_ml100k.py --data sample --sample-scale K`` trains on exactly these rows.

    python benchmarks/sample_ceiling.py --scale 1 10
"""

from __future__ import annotations

import argparse
import tempfile

import _common  # noqa: F401  (the repository root on sys.path)
from sklearn.metrics import log_loss, roc_auc_score

from dcnviz.data import DataOptions, load_table, split_indices
from dcnviz.sample import SampleConfig, bayes_probability, make_sample, write_sample


def ceiling(scale: float, split_seed: int = 0) -> dict[str, float]:
    sample = make_sample(SampleConfig().scaled(scale))
    assert sample.latent is not None
    kept = sample.ratings["Rating"].to_numpy() != 3
    with tempfile.TemporaryDirectory(prefix="dcnviz-ceiling-") as tmp:
        write_sample(sample, tmp)
        table = load_table(DataOptions(source="sample", data_dir=tmp, seed=split_seed))
    users = table.frame["user_id"].astype(str).to_numpy()
    if len(users) != kept.sum() or not (users == sample.ratings["UserID"].to_numpy()[kept].astype(str)).all():
        raise SystemExit("the loaded rows are not the generated rows in file order")
    p = bayes_probability(sample.latent[kept], sample.config.thresholds)
    y = table.frame["label"].to_numpy()
    _, _, test = split_indices(len(y), split_seed)
    return {
        "rows": len(y),
        "test_rows": len(test),
        "auc": roc_auc_score(y[test], p[test]),
        "logloss": log_loss(y[test], p[test]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, nargs="+", default=[1.0, 10.0])
    args = ap.parse_args()
    print("scale  labelled rows  test rows  best test AUC  best test log loss")
    for k in args.scale:
        c = ceiling(k)
        print(f"{k:>5g}  {c['rows']:>13,}  {c['test_rows']:>9,}  {c['auc']:>13.4f}  {c['logloss']:>18.4f}")


if __name__ == "__main__":
    main()
