r"""A synthetic MovieLens-like dataset with **planted feature crosses** (the bundled ``sample_data/``).

The files have the real MovieLens-1M format (``ratings.dat``, ``users.dat``, ``movies.dat``;
``::``-separated, latin-1; gender F/M, the 7 age groups, occupation codes 0–20, zip strings,
``Title (Year)``, ``|``-separated genres), so :func:`dcnviz.data.load_ml1m` reads them unchanged and
``DataOptions(source="sample")`` loads them with the paper's protocol (§7.1.1).

Generative model. Each rating comes from a latent score

.. math::

    z_{um} = \mu + b_u + b_m + \sum_p s_p \, a_p(u) \, h_p(m), \qquad
    \text{rating} = 1 + \#\{k : z_{um} + \varepsilon > c_k\}, \; \varepsilon \sim \text{Logistic}(0, 1)

with user and movie main effects b_u, b_m and planted crosses p, each the product of a **user-side**
attribute score a_p(u) (gender: F = +1, M = −1; age group: young +1 … old −1) and a **movie-side**
loading h_p(m) ∈ [−1, 1] that follows the movie's genres (romance/musical/children's lean female,
action/war/western male; animation/children's/sci-fi/horror young, film-noir/war/western/documentary old).

Why these pairs: with the paper's six features a cross between two user attributes is absorbed by
user_id's main effect, while a user-side × item-side product is a true interaction that no sum of
main effects can express. Users rate no latent "taste" factor beyond the planted ones, so
user_id × movie_id carries nothing the planted pairs do not already carry more cheaply. Occupation is
drawn independently of everything and never enters z: occupation × movie_id is the **control pair**.
With the default features (no genres) the planted crosses live in gender × movie_id and
age × movie_id; with ``genres=True`` the same signal is also reachable as gender × genres and
age × genres.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from dcnviz.data import ML1M_AGE_GROUPS, ML100K_GENRES
from dcnviz.errors import ConfigError
from dcnviz.jsonconfig import JsonConfig, JsonList

GENRES: tuple[str, ...] = ML100K_GENRES[1:]  # ML-1M's 18 genres (ML-100K adds "unknown" first)
# How often each genre appears (roughly ML-1M's shares).
GENRE_WEIGHTS: dict[str, float] = {
    "Action": 0.13, "Adventure": 0.07, "Animation": 0.03, "Children's": 0.06, "Comedy": 0.30, "Crime": 0.05,
    "Documentary": 0.03, "Drama": 0.40, "Fantasy": 0.02, "Film-Noir": 0.01, "Horror": 0.09, "Musical": 0.03,
    "Mystery": 0.03, "Romance": 0.12, "Sci-Fi": 0.07, "Thriller": 0.13, "War": 0.04, "Western": 0.02,
}  # fmt: skip
# Movie-side loadings of the planted crosses: genre -> contribution to h_p(m) (clipped to [-1, 1]).
GENDER_LOADINGS: dict[str, float] = {
    "Romance": 1.0, "Musical": 1.0, "Children's": 0.6, "Drama": 0.4,
    "Action": -1.0, "War": -1.0, "Western": -1.0, "Sci-Fi": -0.6, "Horror": -0.4,
}  # fmt: skip
AGE_LOADINGS: dict[str, float] = {
    "Animation": 1.0, "Children's": 1.0, "Sci-Fi": 0.6, "Horror": 0.8, "Fantasy": 0.5, "Comedy": 0.3,
    "Film-Noir": -1.0, "War": -1.0, "Western": -1.0, "Documentary": -0.8, "Drama": -0.4, "Mystery": -0.4,
}  # fmt: skip
AGE_GROUPS: tuple[int, ...] = ML1M_AGE_GROUPS
AGE_SHARES: tuple[float, ...] = (0.04, 0.18, 0.35, 0.20, 0.09, 0.08, 0.06)  # ML-1M's users, roughly
AGE_SCORES: dict[int, float] = {1: 1.0, 18: 1.0, 25: 0.5, 35: -0.25, 45: -0.75, 50: -1.0, 56: -1.0}  # young +1, old -1
GENDER_SCORES: dict[str, float] = {"F": 1.0, "M": -1.0}
CONTROL_PAIR: tuple[str, str] = ("occupation", "movie_id")


@dataclass(frozen=True, kw_only=True)
class SampleConfig(JsonConfig):
    """Size, seed and strengths of the synthetic sample."""

    _JSON_WHAT = "sample config"
    _JSON_LISTS: ClassVar[dict[str, JsonList]] = {
        "thresholds": JsonList(None, "`thresholds` must be a list; got {value!r}")
    }

    seed: int = 20240607  # every random draw comes from numpy default_rng(seed)
    n_users: int = 1200  # users (each rates at least min_ratings movies)
    n_movies: int = 400  # movies
    n_ratings: int = 60_000  # ratings before the protocol drops the 3s
    min_ratings: int = 20  # per user, as in MovieLens
    gender_strength: float = 2.5  # s for gender × movie_id (logit scale)
    age_strength: float = 2.5  # s for age × movie_id (logit scale)
    user_bias_std: float = 0.6  # std of b_u
    movie_bias_std: float = 0.8  # std of b_m
    mu: float = 0.9  # global offset μ
    thresholds: tuple[float, ...] = (-2.5, -1.3, 0.0, 1.6)  # c_1..c_4: ratings 1..5

    def __post_init__(self) -> None:
        if self.n_users < 2 or self.n_movies < 2:
            raise ConfigError(f"need >= 2 users and movies; got n_users={self.n_users}, n_movies={self.n_movies}")
        if self.n_ratings < self.n_users * self.min_ratings:
            raise ConfigError(
                f"n_ratings must be >= n_users·min_ratings; got n_ratings={self.n_ratings}, "
                f"n_users={self.n_users}, min_ratings={self.min_ratings}"
            )
        if not 1 <= self.min_ratings <= self.n_movies // 2:
            raise ConfigError(f"min_ratings must be in [1, n_movies/2]; got min_ratings={self.min_ratings}")
        if self.n_ratings > self.n_users * self.n_movies // 2:
            raise ConfigError(f"n_ratings must be at most half of all user-movie pairs; got n_ratings={self.n_ratings}")
        if len(self.thresholds) != 4 or list(self.thresholds) != sorted(self.thresholds):
            raise ConfigError(f"thresholds must be 4 increasing numbers; got {self.thresholds}")

    def scaled(self, factor: float) -> SampleConfig:
        """The same generative model with ``factor``× the users and ratings and √factor× the movies.

        Ratings per user stay as they are (MovieLens-like activity) and ratings per movie grow by
        √factor, roughly as from MovieLens-100K to -1M (943 → 6,040 users, 1,682 → 3,706 movies).
        Used to check training recipes at other data sizes (``scripts/make_sample_data.py --scale``).

        >>> c = SampleConfig().scaled(10)
        >>> c.n_users, c.n_movies, c.n_ratings
        (12000, 1265, 600000)
        """
        if not (math.isfinite(factor) and factor > 0):
            raise ConfigError(f"scale factor must be > 0; got {factor}")
        return dataclasses.replace(
            self,
            n_users=max(2, round(self.n_users * factor)),
            n_movies=max(2 * self.min_ratings, round(self.n_movies * math.sqrt(factor))),
            n_ratings=round(self.n_ratings * factor),
        )


@dataclass
class SampleData:
    """The generated tables (ML-1M columns) plus what was planted."""

    users: pd.DataFrame  # UserID, Gender, Age, Occupation, Zip-code
    movies: pd.DataFrame  # MovieID, Title, Genres, h_gender, h_age
    ratings: pd.DataFrame  # UserID, MovieID, Rating, Timestamp
    config: SampleConfig
    latent: np.ndarray | None = None  # z of each row of ``ratings`` (same order); not written to files

    def ground_truth(self) -> dict[str, Any]:
        """The planted pairs, their strengths and the control pair (written as ground_truth.json)."""
        c = self.config
        r = self.ratings["Rating"]
        kept = r[r != 3]
        return {
            "format": "dcnviz-sample-ground-truth",
            "version": 1,
            "generator": "scripts/make_sample_data.py (dcnviz.sample.make_sample)",
            "config": c.to_json(),
            "model": (
                "z = mu + b_user + b_movie + sum_p strength_p * a_p(user) * h_p(movie); "
                "rating = 1 + #{k: z + Logistic(0,1) > thresholds[k]}"
            ),
            "planted": [
                {
                    "pair": ["gender", "movie_id"],
                    "strength": c.gender_strength,
                    "user_score": {"feature": "gender", "values": GENDER_SCORES},
                    "movie_loading": {"column": "h_gender", "from_genres": GENDER_LOADINGS},
                    "with_genres_also": ["gender", "genres"],
                },
                {
                    "pair": ["age", "movie_id"],
                    "strength": c.age_strength,
                    "user_score": {"feature": "age", "values": {str(k): v for k, v in AGE_SCORES.items()}},
                    "movie_loading": {"column": "h_age", "from_genres": AGE_LOADINGS},
                    "with_genres_also": ["age", "genres"],
                },
            ],
            "control": {
                "pair": list(CONTROL_PAIR),
                "why": "occupation is drawn independently of everything else and never enters z",
            },
            "not_planted_notes": {
                "user_id x movie_id": "no user taste factor beyond the planted ones",
                "user-side pairs": "any function of the user alone is a user main effect, not a cross",
            },
            "check": {
                "view": "symmetric block norms sqrt(|W_ij|^2 + |W_ji|^2) of the first cross layer",
                "claim": "each planted pair is among the top m off-diagonal pairs (m = number planted), "
                "above the control pair",
            },
            "counts": {
                "users": len(self.users),
                "movies": len(self.movies),
                "ratings": len(self.ratings),
                "ratings_after_dropping_3": len(kept),
                "positive_rate_after_dropping_3": round(float((kept >= 4).mean()), 4),
                "rating_histogram": {str(k): int((r == k).sum()) for k in range(1, 6)},
            },
            "item_groups_file": "item_groups.csv",
        }


def _genre_sets(rng: np.random.Generator, n: int) -> list[list[str]]:
    w = np.array([GENRE_WEIGHTS[g] for g in GENRES])
    p = w / w.sum()
    out = []
    for k in rng.choice([1, 2, 3], size=n, p=[0.45, 0.38, 0.17]):
        idx = sorted(rng.choice(len(GENRES), size=int(k), replace=False, p=p))
        out.append([GENRES[i] for i in idx])
    return out


def _loading(genres: list[str], table: dict[str, float]) -> float:
    return float(np.clip(sum(table.get(g, 0.0) for g in genres), -1.0, 1.0))


def make_sample(config: SampleConfig | None = None) -> SampleData:
    """Generate the sample deterministically from ``config.seed`` (see the module docstring)."""
    c = config or SampleConfig()
    rng = np.random.default_rng(c.seed)

    # Users: ML-1M-like marginals; gender, age and occupation independent of each other.
    U = c.n_users
    gender = rng.choice(np.array(["F", "M"]), size=U, p=[0.28, 0.72])
    age = rng.choice(np.array(AGE_GROUPS), size=U, p=np.array(AGE_SHARES) / sum(AGE_SHARES))
    occupation = rng.integers(0, 21, size=U)
    zip_pool = [f"{z:05d}" for z in rng.integers(1000, 99999, size=max(2, int(U * 0.7)))]
    zips = [zip_pool[i] for i in rng.integers(0, len(zip_pool), size=U)]
    zips = [z if rng.random() > 0.05 else f"{z}-{rng.integers(1000, 9999)}" for z in zips]  # a few ZIP+4
    users = pd.DataFrame(
        {"UserID": np.arange(1, U + 1), "Gender": gender, "Age": age, "Occupation": occupation, "Zip-code": zips}
    )

    # Movies: 1–3 genres, a release year, and the planted loadings that follow the genres.
    M = c.n_movies
    genre_sets = _genre_sets(rng, M)
    years = np.clip(np.round(2000 - rng.gamma(2.0, 9.0, size=M)), 1919, 2000).astype(int)
    movies = pd.DataFrame(
        {
            "MovieID": np.arange(1, M + 1),
            "Title": [f"Sample Movie {m} ({y})" for m, y in zip(range(1, M + 1), years, strict=True)],
            "Genres": ["|".join(g) for g in genre_sets],
            "h_gender": [_loading(g, GENDER_LOADINGS) for g in genre_sets],
            "h_age": [_loading(g, AGE_LOADINGS) for g in genre_sets],
        }
    )

    # Who rates what: skewed activity (at least min_ratings each) and Zipf-like movie popularity.
    activity = rng.lognormal(0.0, 0.8, size=U)
    extra = c.n_ratings - U * c.min_ratings
    counts = c.min_ratings + np.floor(extra * activity / activity.sum()).astype(int)
    counts[np.argsort(-activity)[: c.n_ratings - int(counts.sum())]] += 1
    counts = np.minimum(counts, M // 2)
    popularity = 1.0 / np.arange(1, M + 1) ** 0.8
    popularity = popularity[rng.permutation(M)]
    popularity /= popularity.sum()
    uid_parts, mid_parts = [], []
    for u in range(U):
        ms = rng.choice(M, size=int(counts[u]), replace=False, p=popularity)
        uid_parts.append(np.full(len(ms), u))
        mid_parts.append(ms)
    ui = np.concatenate(uid_parts)
    mi = np.concatenate(mid_parts)

    # Latent score and ordinal rating.
    b_u = rng.normal(0.0, c.user_bias_std, size=U)
    b_m = rng.normal(0.0, c.movie_bias_std, size=M)
    a_gender = np.array([GENDER_SCORES[g] for g in gender])
    a_age = np.array([AGE_SCORES[int(a)] for a in age])
    h_gender = movies["h_gender"].to_numpy()
    h_age = movies["h_age"].to_numpy()
    z = (
        c.mu
        + b_u[ui]
        + b_m[mi]
        + c.gender_strength * a_gender[ui] * h_gender[mi]
        + c.age_strength * a_age[ui] * h_age[mi]
    )
    eps = rng.logistic(0.0, 1.0, size=len(z))
    rating = 1 + (z[:, None] + eps[:, None] > np.array(c.thresholds)[None, :]).sum(axis=1)
    ts = 956703932 + np.sort(rng.integers(0, 90_000_000, size=len(z)))
    order = rng.permutation(len(z))  # file order: shuffled, as a random split would see it anyway
    ratings = pd.DataFrame(
        {"UserID": ui[order] + 1, "MovieID": mi[order] + 1, "Rating": rating[order], "Timestamp": ts, "z": z[order]}
    ).sort_values(["UserID", "Timestamp"], kind="stable", ignore_index=True)
    latent = ratings.pop("z").to_numpy()
    return SampleData(users=users, movies=movies, ratings=ratings, config=c, latent=latent)


def bayes_probability(latent: np.ndarray, thresholds: tuple[float, ...]) -> np.ndarray:
    """P(label 1 | z, rating ≠ 3) under the generative model: the best any model of the sample can predict.

    A rating is ≥ 4 when z + ε > c_3 and ≤ 2 when z + ε ≤ c_2 (ε logistic), so among the rows the paper's
    protocol keeps, P(1 | z) = σ(z − c_3) / (σ(z − c_3) + 1 − σ(z − c_2)), increasing in z: ranking by z
    gives the highest possible AUC, these probabilities the lowest expected log loss.

    >>> p = bayes_probability(np.array([-5.0, 0.0, 5.0]), SampleConfig().thresholds)
    >>> bool(p[0] < 0.05 < p[1] < 0.95 < p[2])
    True
    """
    z = np.asarray(latent, dtype=np.float64)
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    high, low = sig(z - thresholds[2]), 1.0 - sig(z - thresholds[1])
    return high / (high + low)


def ml1m_file_texts(sample: SampleData) -> dict[str, str]:
    """The three ML-1M files as text (``::``-separated, one record per line)."""
    u, m, r = sample.users, sample.movies, sample.ratings
    return {
        "users.dat": "".join(
            f"{a}::{b}::{c}::{d}::{e}\n"
            for a, b, c, d, e in zip(u["UserID"], u["Gender"], u["Age"], u["Occupation"], u["Zip-code"], strict=True)
        ),
        "movies.dat": "".join(
            f"{a}::{b}::{c}\n" for a, b, c in zip(m["MovieID"], m["Title"], m["Genres"], strict=True)
        ),
        "ratings.dat": "".join(
            f"{a}::{b}::{c}::{d}\n"
            for a, b, c, d in zip(r["UserID"], r["MovieID"], r["Rating"], r["Timestamp"], strict=True)
        ),
    }


def write_sample(sample: SampleData, folder: str | Path) -> list[Path]:
    """Write the ML-1M files, ``ground_truth.json`` and ``item_groups.csv`` into ``folder`` (atomically)."""
    from dcnviz.checkpoint import write_atomic

    folder = Path(folder)
    written = []
    for name, text in ml1m_file_texts(sample).items():
        written.append(write_atomic(folder / name, text.encode("latin-1")))
    gt = json.dumps(sample.ground_truth(), indent=2) + "\n"
    written.append(write_atomic(folder / "ground_truth.json", gt.encode("utf-8")))
    groups = sample.movies[["MovieID", "Genres", "h_gender", "h_age"]].rename(columns={"MovieID": "movie_id"})
    written.append(write_atomic(folder / "item_groups.csv", groups.to_csv(index=False).encode("utf-8")))
    for p in written:
        p.chmod(0o644)  # write_atomic's temp files are private; these are data files
    return written
