"""The synthetic sample: deterministic, in the ML-1M format, with the planted crosses really in the data."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dcnviz.data import MOVIELENS_FEATURES, SAMPLE_DIR, DataOptions, load_ml1m, load_splits
from dcnviz.errors import ConfigError
from dcnviz.sample import AGE_GROUPS, CONTROL_PAIR, GENRES, SampleConfig, make_sample, ml1m_file_texts, write_sample

SMALL = SampleConfig(seed=5, n_users=60, n_movies=60, n_ratings=1500)


def test_deterministic_and_seed_dependent() -> None:
    a, b = ml1m_file_texts(make_sample(SMALL)), ml1m_file_texts(make_sample(SMALL))
    assert a == b
    c = ml1m_file_texts(make_sample(dataclasses.replace(SMALL, seed=6)))
    assert c["ratings.dat"] != a["ratings.dat"]


def test_ml1m_format_and_counts(tmp_path: Path) -> None:
    s = make_sample(SMALL)
    write_sample(s, tmp_path)
    t = load_ml1m(tmp_path)  # the real ML-1M loader reads it unchanged
    gt = json.loads((tmp_path / "ground_truth.json").read_text())
    assert t.rows_read == gt["counts"]["ratings"] == len(s.ratings)
    assert len(t.frame) == gt["counts"]["ratings_after_dropping_3"]
    assert set(s.users["Gender"]) <= {"F", "M"} and set(s.users["Age"]) <= set(AGE_GROUPS)
    assert s.users["Occupation"].between(0, 20).all()
    assert all(g in GENRES for gs in s.movies["Genres"] for g in gs.split("|"))
    assert s.movies["Title"].str.fullmatch(r"Sample Movie \d+ \(\d{4}\)").all()
    assert (s.ratings.groupby("UserID").size() >= SMALL.min_ratings).all()
    assert not s.ratings.duplicated(["UserID", "MovieID"]).any()
    groups = pd.read_csv(tmp_path / "item_groups.csv")
    assert list(groups.columns) == ["movie_id", "Genres", "h_gender", "h_age"] and len(groups) == SMALL.n_movies


def test_ground_truth_names_default_features() -> None:
    gt = make_sample(SMALL).ground_truth()
    planted = [tuple(p["pair"]) for p in gt["planted"]]
    assert planted == [("gender", "movie_id"), ("age", "movie_id")]
    for pair in [*planted, tuple(gt["control"]["pair"])]:
        assert set(pair) <= set(MOVIELENS_FEATURES)
    assert tuple(gt["control"]["pair"]) == CONTROL_PAIR and CONTROL_PAIR not in planted
    assert [p["strength"] for p in gt["planted"]] == [SMALL.gender_strength, SMALL.age_strength]


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"n_users": 1}, r"need >= 2 users and movies; got n_users=1"),
        ({"n_ratings": 100}, r"n_ratings must be >= n_users·min_ratings; got n_ratings=100"),
        ({"n_ratings": 2000, "n_movies": 40, "n_users": 60, "min_ratings": 1}, r"at most half of all user-movie pairs"),
        ({"thresholds": (1.0, 0.0, 2.0, 3.0)}, r"thresholds must be 4 increasing numbers"),
    ],
)
def test_config_validation(kw: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        dataclasses.replace(SMALL, **kw)


# ---------------------------------------------------------------------------------------------- the bundled sample


def _bundled() -> pd.DataFrame:
    """Ratings joined with users and planted loadings, from the committed files."""

    def read(name: str, cols: list[str]) -> pd.DataFrame:
        text = (SAMPLE_DIR / name).read_text(encoding="latin-1").replace("::", "\t")
        return pd.read_csv(io.StringIO(text), sep="\t", names=cols, dtype={"zip": str})

    r = read("ratings.dat", ["u", "m", "rating", "ts"])
    u = read("users.dat", ["u", "gender", "age", "occ", "zip"])
    g = pd.read_csv(SAMPLE_DIR / "item_groups.csv").rename(columns={"movie_id": "m"})
    df = r.merge(u, on="u").merge(g, on="m")
    df = df[df["rating"] != 3]
    df["y"] = (df["rating"] >= 4).astype(float)
    return df


def test_bundled_sample_is_the_generator_output(tmp_path: Path) -> None:
    write_sample(make_sample(), tmp_path)  # default config = what scripts/make_sample_data.py writes
    for name in ("ratings.dat", "users.dat", "movies.dat", "ground_truth.json", "item_groups.csv"):
        assert (SAMPLE_DIR / name).read_bytes() == (tmp_path / name).read_bytes(), name
    assert sum((SAMPLE_DIR / n).stat().st_size for n in ("ratings.dat", "users.dat", "movies.dat")) < 3_000_000


def _contrast(df: pd.DataFrame, user_mask: pd.Series, loading: str) -> float:
    """Interaction contrast of positive rates: (A − B | movie loading > 0.3) − (A − B | loading < −0.3)."""
    hi, lo = df[loading] > 0.3, df[loading] < -0.3
    return float(
        (df.y[user_mask & hi].mean() - df.y[~user_mask & hi].mean())
        - (df.y[user_mask & lo].mean() - df.y[~user_mask & lo].mean())
    )


def test_planted_crosses_are_in_the_bundled_data() -> None:
    df = _bundled()
    female, young = df["gender"] == "F", df["age"] <= 25
    assert _contrast(df, female, "h_gender") > 0.4  # women like female-leaning movies more, relative to men
    assert _contrast(df, young, "h_age") > 0.3
    # control: occupation never enters the ratings, so no such contrast by occupation
    for occ_mask in (df["occ"] % 2 == 0, df["occ"] < 10):
        assert abs(_contrast(df, occ_mask, "h_gender")) < 0.1 and abs(_contrast(df, occ_mask, "h_age")) < 0.1
    # occupation is independent of gender and age by construction
    users = df.drop_duplicates("u")
    ct = pd.crosstab(users["occ"] < 10, users["gender"], normalize="index")
    assert np.abs(ct.iloc[0] - ct.iloc[1]).max() < 0.1


def test_source_sample_loads_without_data_dir() -> None:
    s = load_splits(DataOptions(source="sample"))
    gt = json.loads((SAMPLE_DIR / "ground_truth.json").read_text())
    assert s.info["examples"] == gt["counts"]["ratings_after_dropping_3"]
    assert s.spec.names == list(MOVIELENS_FEATURES)
    assert 0.6 < s.info["positive_rate"]["train"] < 0.85


def test_latent_scores_follow_their_rows_and_give_the_best_possible_probabilities() -> None:
    from dcnviz.sample import bayes_probability

    s = make_sample(SampleConfig(n_users=300, n_movies=80, n_ratings=9000, min_ratings=20))
    assert s.latent is not None and len(s.latent) == len(s.ratings)
    rating = s.ratings["Rating"].to_numpy()
    # each rating came from its own z: mean z rises with the rating (shuffled z would make it flat)
    means = [s.latent[rating == r].mean() for r in range(1, 6)]
    assert means == sorted(means) and means[4] - means[0] > 1.5
    kept = rating != 3
    p = bayes_probability(s.latent[kept], s.config.thresholds)
    y = (rating[kept] >= 4).astype(float)
    # calibrated: the mean predicted probability matches the positive rate (within sampling noise)
    assert abs(p.mean() - y.mean()) < 0.02
    # P(1 | z) by hand at z = c_3 = 0: σ(0) / (σ(0) + 1 − σ(1.3))
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    expected = 0.5 / (0.5 + 1 - sig(1.3))
    assert bayes_probability(np.array([0.0]), (-2.5, -1.3, 0.0, 1.6))[0] == pytest.approx(expected)
