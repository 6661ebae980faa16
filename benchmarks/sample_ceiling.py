"""The best test AUC / log loss any model can reach on the synthetic sample, at several sizes: two ceilings
that bound every margin measured on it.

For each ``--scale`` K this generates ``SampleConfig().scaled(K)``, loads it with the paper's protocol and
split (seed 0) and scores the test split twice:

* **known z**: :func:`dcnviz.sample.bayes_probability` of each row's latent score. No model trained on data
  can know the user and movie effects exactly, so this is out of reach.
* **the generative family, fitted**: the sample's own model (module docstring of :mod:`dcnviz.sample`)
  with everything known except what must be learned from ratings: μ, each user's b_u, each movie's b_m
  and its loadings h_gender(m), h_age(m). Given the true link, strengths, user scores (gender, age group)
  and Gaussian priors with the true spreads, it is fitted by MAP on the training rows (float64 L-BFGS).
  A model that knew the data's structure exactly and had to learn the rest from these rows reaches this;
  a general-purpose model such as DCN-V2 should expect to stay below it.

``benchmarks/quality_ml100k.py --data sample --sample-scale K`` trains on exactly these rows.

    python benchmarks/sample_ceiling.py --scale 1 10
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass

import _common  # noqa: F401  (the repository root on sys.path)
import numpy as np
import torch
from sklearn.metrics import log_loss, roc_auc_score

from dcnviz.data import DataOptions, load_table, split_indices
from dcnviz.sample import (
    AGE_SCORES,
    GENDER_SCORES,
    SampleConfig,
    SampleData,
    bayes_probability,
    make_sample,
    write_sample,
)


@dataclass
class Rows:
    """The labelled rows the protocol keeps (file order) with their user, movie, latent score and split."""

    sample: SampleData
    user: np.ndarray  # 0-based user index of each row
    movie: np.ndarray  # 0-based movie index
    latent: np.ndarray  # z of each row
    y: np.ndarray  # label (rating >= 4)
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def load_rows(scale: float, split_seed: int = 0) -> Rows:
    sample = make_sample(SampleConfig().scaled(scale))
    assert sample.latent is not None
    ratings = sample.ratings
    kept = ratings["Rating"].to_numpy() != 3
    with tempfile.TemporaryDirectory(prefix="dcnviz-ceiling-") as tmp:
        write_sample(sample, tmp)
        table = load_table(DataOptions(source="sample", data_dir=tmp, seed=split_seed))
    users = table.frame["user_id"].astype(str).to_numpy()
    if len(users) != kept.sum() or not (users == ratings["UserID"].to_numpy()[kept].astype(str)).all():
        raise SystemExit("the loaded rows are not the generated rows in file order")
    y = table.frame["label"].to_numpy()
    train, val, test = split_indices(len(y), split_seed)
    user = ratings["UserID"].to_numpy()[kept] - 1
    movie = ratings["MovieID"].to_numpy()[kept] - 1
    return Rows(sample, user, movie, sample.latent[kept], y, train, val, test)


def known_z(rows: Rows) -> dict[str, float]:
    """Test AUC / log loss of the generative model's own probabilities (the latent z known)."""
    p = bayes_probability(rows.latent[rows.test], rows.sample.config.thresholds)
    return {"auc": roc_auc_score(rows.y[rows.test], p), "logloss": log_loss(rows.y[rows.test], p)}


def _link(z: torch.Tensor, thresholds: tuple[float, ...]) -> torch.Tensor:
    """:func:`dcnviz.sample.bayes_probability` in torch (differentiable)."""
    high = torch.sigmoid(z - thresholds[2])
    low = 1.0 - torch.sigmoid(z - thresholds[1])
    return (high / (high + low)).clamp(1e-12, 1.0 - 1e-12)


def fit_generative(rows: Rows, max_iter: int = 2000) -> dict[str, object]:
    """MAP fit of the generative family on the training rows; test and validation metrics.

    Unknown: μ, b_u (prior N(0, user_bias_std²)), b_m (N(0, movie_bias_std²)), h_gender(m) and h_age(m)
    (N(0, s_h²), s_h the planted loadings' spread). Known: the link, the thresholds, the strengths and each
    user's gender and age-group scores.
    """
    c, users, movies = rows.sample.config, rows.sample.users, rows.sample.movies
    a_gender = torch.tensor(users["Gender"].map(GENDER_SCORES).to_numpy(np.float64))
    a_age = torch.tensor(users["Age"].map(AGE_SCORES).to_numpy(np.float64))
    h_true = np.concatenate([movies["h_gender"].to_numpy(), movies["h_age"].to_numpy()])
    prior_std = {"b_u": c.user_bias_std, "b_m": c.movie_bias_std, "h_gender": h_true.std(), "h_age": h_true.std()}
    sizes = {"b_u": len(users), "b_m": len(movies), "h_gender": len(movies), "h_age": len(movies)}
    params = {k: torch.zeros(n, dtype=torch.float64, requires_grad=True) for k, n in sizes.items()}
    mu = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    user, movie = torch.from_numpy(rows.user), torch.from_numpy(rows.movie)

    def latent(idx: np.ndarray) -> torch.Tensor:
        u, m = user[idx], movie[idx]
        return (
            mu
            + params["b_u"][u]
            + params["b_m"][m]
            + c.gender_strength * a_gender[u] * params["h_gender"][m]
            + c.age_strength * a_age[u] * params["h_age"][m]
        )

    y_train = torch.from_numpy(rows.y[rows.train].astype(np.float64))

    def objective() -> torch.Tensor:
        p = _link(latent(rows.train), c.thresholds)
        nll = -(y_train * torch.log(p) + (1.0 - y_train) * torch.log1p(-p)).sum()
        return nll + sum(0.5 * ((params[k] / prior_std[k]) ** 2).sum() for k in params)

    opt = torch.optim.LBFGS(
        [mu, *params.values()],
        max_iter=max_iter,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        history_size=50,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    t0 = time.perf_counter()
    opt.step(closure)
    closure()
    grad_norm = float(torch.cat([p.grad.reshape(-1) for p in (mu, *params.values())]).norm())  # type: ignore[union-attr]
    out: dict[str, object] = {"fit_s": time.perf_counter() - t0, "grad_norm": grad_norm}
    with torch.no_grad():
        for split, idx in (("val", rows.val), ("test", rows.test)):
            p = _link(latent(idx), c.thresholds).numpy()
            out[split] = {"auc": roc_auc_score(rows.y[idx], p), "logloss": log_loss(rows.y[idx], p)}
    for h in ("h_gender", "h_age"):  # how well the planted loadings were recovered
        out[f"{h}_corr"] = float(np.corrcoef(movies[h].to_numpy(), params[h].detach().numpy())[0, 1])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, nargs="+", default=[1.0, 10.0])
    args = ap.parse_args(argv)
    print(
        "scale  labelled rows  test rows  known z: AUC / log loss  generative family fitted: AUC / log loss"
        "  (fit s, final gradient norm)"
    )
    for k in args.scale:
        rows = load_rows(k)
        best, fitted = known_z(rows), fit_generative(rows)
        test = fitted["test"]
        assert isinstance(test, dict)
        print(
            f"{k:>5g}  {len(rows.y):>13,}  {len(rows.test):>9,}  {best['auc']:>10.4f} / {best['logloss']:.4f}"
            f"  {test['auc']:>25.4f} / {test['logloss']:.4f}  ({fitted['fit_s']:.0f} s, {fitted['grad_norm']:.1e})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
