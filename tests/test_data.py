"""Data loaders and the paper's protocol (§7.1.1) on tiny hand-written MovieLens-format fixtures."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dcnviz.data import (
    LABEL,
    DataOptions,
    age_group,
    build_spec,
    encode_frame,
    load_ml1m,
    load_ml100k,
    load_splits,
    load_table,
    split_indices,
)
from dcnviz.errors import ConfigError, DataFormatError
from dcnviz.spec import rule_of_thumb_dim

FIXTURES = Path(__file__).parent / "fixtures" / "data"
ML1M = FIXTURES / "ml-1m-tiny"
ML100K = FIXTURES / "ml-100k-tiny"
REAL_100K = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml-100k"


def _ratings(path: Path, sep: str) -> list[tuple[int, int, int]]:
    out = []
    for line in path.read_text(encoding="latin-1").splitlines():
        u, m, r, _ = line.split(sep)
        out.append((int(u), int(m), int(r)))
    return out


def _decode(split, spec, name: str) -> list[str | None]:
    """Raw values back from encoded ids (None for out-of-vocabulary)."""
    j = [f.name for f in spec.by_kind("categorical")].index(name)
    vocab = spec.field(name).vocab
    return [vocab[i - 1] if i > 0 else None for i in split.cat[:, j].tolist()]


def _write_ml1m(folder: Path, n_users: int, n_movies: int, n_ratings: int, seed: int = 0) -> Path:
    """A synthetic ML-1M-format folder (random users, movies and ratings 1..5)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ages = [1, 18, 25, 35, 45, 50, 56]
    (folder / "users.dat").write_text(
        "".join(f"{u}::{'FM'[u % 2]}::{ages[u % 7]}::{u % 21}::{10000 + u % 97}\n" for u in range(1, n_users + 1)),
        encoding="latin-1",
    )
    (folder / "movies.dat").write_text(
        "".join(f"{m}::Movie {m} ({1950 + m % 50})::Drama|Comedy\n" for m in range(1, n_movies + 1)),
        encoding="latin-1",
    )
    u = rng.integers(1, n_users + 1, n_ratings)
    m = rng.integers(1, n_movies + 1, n_ratings)
    r = rng.integers(1, 6, n_ratings)
    (folder / "ratings.dat").write_text(
        "".join(f"{a}::{b}::{c}::97830{i:04d}\n" for i, (a, b, c) in enumerate(zip(u, m, r, strict=True))),
        encoding="latin-1",
    )
    return folder


# --------------------------------------------------------------------------------------------------------
# DataOptions


def test_options_json_round_trip_and_defaults() -> None:
    o = DataOptions(source="ml-1m", data_dir="/x", seed=3, genres=True, dense=("year",), embedding_dim="auto")
    assert DataOptions.from_json(o.to_json()) == o
    assert DataOptions(source="sample").features == ("user_id", "movie_id", "gender", "age", "occupation", "zip")
    assert DataOptions.from_json({"source": "sample", "features": ["gender", "age"]}).features == ("gender", "age")


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"source": "ml-10m"}, r"`source` must be one of .* got source='ml-10m'"),
        ({"source": "ml-1m"}, r"`data_dir` .* is required for source='ml-1m'"),
        ({"source": "sample", "seed": -1}, r"`seed` must be an integer >= 0; got seed=-1"),
        ({"source": "sample", "features": ("user_id", "title")}, r"`features` must be among .* unknown \['title'\]"),
        ({"source": "sample", "dense": ("rating",)}, r"`dense` must be distinct names among \('year',\)"),
        ({"source": "sample", "age_encoding": "bins"}, r"`age_encoding` must be one of"),
        (
            {"source": "sample", "embedding_dim": 0},
            r"`embedding_dim` must be an integer >= 1 or 'auto'; got embedding_dim=0",
        ),
        ({"source": "sample", "embedding_dim": "big"}, r"got embedding_dim='big'"),
        ({"source": "sample", "schema": "s.json"}, r"`schema` applies to csv/parquet only"),
        ({"source": "csv", "data_dir": "t.csv", "genres": True}, r"for csv/parquet the schema lists the fields"),
        ({"source": "sample", "features": (), "genres": False}, r"no fields selected"),
    ],
)
def test_options_reject_bad_values(kw: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        DataOptions(**kw)


def test_options_from_json_rejects_unknown_keys() -> None:
    with pytest.raises(ConfigError, match=r"unknown data option keys \['colour'\]"):
        DataOptions.from_json({"source": "sample", "colour": 1})
    with pytest.raises(ConfigError, match=r"`features` must be a list of names"):
        DataOptions.from_json({"source": "sample", "features": "user_id"})


# --------------------------------------------------------------------------------------------------------
# Protocol


def test_ml1m_protocol_drops_3_and_maps_labels() -> None:
    table = load_ml1m(ML1M)
    raw = _ratings(ML1M / "ratings.dat", "::")
    kept = [(u, m, r) for u, m, r in raw if r != 3]
    assert table.rows_read == 30 and table.rows_dropped == 6 and len(table.frame) == len(kept) == 24
    got = list(
        zip(table.frame["user_id"].astype(str), table.frame["movie_id"].astype(str), table.frame[LABEL], strict=True)
    )
    assert got == [(str(u), str(m), int(r >= 4)) for u, m, r in kept]
    # user attributes joined from users.dat, movie attributes from movies.dat (latin-1 title parsed)
    row = table.frame[table.frame["user_id"] == "5"].iloc[0]
    assert (row["gender"], row["age"], row["occupation"], row["zip"]) == ("F", "25", "20", "55455-1234")
    movies = table.frame.drop_duplicates("movie_id").set_index("movie_id")
    assert movies.loc["3", "genres"] == "Comedy" and movies.loc["3", "year"] == 1993
    assert movies.loc["4", "genres"] == "Action|Adventure|Fantasy|Sci-Fi" and movies.loc["4", "year"] == 1977
    assert np.isnan(movies.loc["6", "year"])  # "Untitled": no (Year)


def test_split_sizes_disjoint_covering_and_deterministic() -> None:
    for n in (10, 11, 99, 1000, 12345):
        tr, va, te = split_indices(n, 0)
        assert abs(len(tr) - 0.8 * n) <= 1 and abs(len(va) - 0.1 * n) <= 1 and abs(len(te) - 0.1 * n) <= 1
        allidx = np.concatenate([tr, va, te])
        assert len(allidx) == n and set(allidx.tolist()) == set(range(n))  # disjoint and covering
    a, b = split_indices(500, 7), split_indices(500, 7)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    c = split_indices(500, 8)
    assert not np.array_equal(a[0], c[0])
    with pytest.raises(DataFormatError, match="need at least 10 labelled rows"):
        split_indices(9, 0)


def test_load_splits_rows_labels_and_info(tmp_path: Path) -> None:
    folder = _write_ml1m(tmp_path / "ml", 40, 30, 2000)
    raw = _ratings(folder / "ratings.dat", "::")
    n = sum(r != 3 for _, _, r in raw)
    s = load_splits(DataOptions(source="ml-1m", data_dir=str(folder), seed=5))
    assert s.info["examples"] == n and s.info["rows_read"] == 2000 and s.info["rows_dropped"] == 2000 - n
    assert (len(s.train), len(s.val), len(s.test)) == (
        round(0.8 * n),
        round(0.1 * n),
        n - round(0.8 * n) - round(0.1 * n),
    )
    assert s.info["rows"] == {"train": len(s.train), "val": len(s.val), "test": len(s.test)}
    pos = sum(r >= 4 for _, _, r in raw)
    total_pos = sum(float(x.y.sum()) for x in (s.train, s.val, s.test))
    assert total_pos == pos
    assert s.info["positive_rate"]["train"] == pytest.approx(float(s.train.y.mean()))
    assert s.info["seed"] == 5 and s.info["source"] == "ml-1m"
    # tensor layout of dcnviz.encoded
    assert s.train.cat.dtype == torch.int64 and s.train.cat.shape == (len(s.train), 6)
    assert s.train.dense.shape == (len(s.train), 0) and s.train.y.dtype == torch.float32
    assert s.train.device.type == "cpu"
    # same seed -> identical tensors; other seed -> other split
    s2 = load_splits(DataOptions(source="ml-1m", data_dir=str(folder), seed=5))
    assert torch.equal(s.train.cat, s2.train.cat) and torch.equal(s.test.y, s2.test.y)
    s3 = load_splits(DataOptions(source="ml-1m", data_dir=str(folder), seed=6))
    assert not torch.equal(s.train.cat, s3.train.cat)


def test_vocabularies_come_from_train_only(tmp_path: Path) -> None:
    # many users with one rating each: plenty of val/test users unseen in train
    folder = _write_ml1m(tmp_path / "ml", 400, 50, 1500, seed=1)
    opts = DataOptions(source="ml-1m", data_dir=str(folder), seed=0)
    table = load_table(opts)
    tr, va, te = split_indices(len(table.frame), 0)
    s = load_splits(opts)
    train_users = set(table.frame["user_id"].astype(str).to_numpy()[tr])
    assert set(s.spec.field("user_id").vocab) == train_users
    assert s.spec.field("user_id").vocab_size == len(train_users) + 1
    for split, idx in ((s.train, tr), (s.val, va), (s.test, te)):
        raw = table.frame["user_id"].astype(str).to_numpy()[idx]
        dec = _decode(split, s.spec, "user_id")
        assert dec == [u if u in train_users else None for u in raw]  # unseen -> 0 (OOV), seen -> exact value
    unseen = sum(u not in train_users for u in table.frame["user_id"].astype(str).to_numpy()[te])
    assert unseen > 0  # the check above really exercised OOV
    assert int((s.test.cat[:, 0] == 0).sum()) == unseen
    assert int((s.train.cat == 0).sum()) == 0  # nothing in train is out of vocabulary


def test_vocab_sorted_numerically_and_values_decode() -> None:
    s = load_splits(DataOptions(source="ml-1m", data_dir=str(ML1M), seed=0))
    vocab = s.spec.field("movie_id").vocab
    assert list(vocab) == sorted(vocab, key=int)
    assert set(s.spec.field("gender").vocab) <= {"F", "M"}
    assert set(s.spec.field("age").vocab) <= {"1", "18", "25", "35", "45", "50", "56"}


def test_genres_multivalent_and_year_dense() -> None:
    opts = DataOptions(source="ml-1m", data_dir=str(ML1M), seed=0, genres=True, dense=("year",))
    table = load_table(opts)
    tr, _, _ = split_indices(len(table.frame), 0)
    s = load_splits(opts)
    assert s.spec.names == ["user_id", "movie_id", "gender", "age", "occupation", "zip", "genres", "year"]
    g = s.spec.field("genres")
    assert g.kind == "multivalent" and g.max_len == max(len(x.split("|")) for x in table.frame["genres"].iloc[tr])
    (multi,) = s.train.multi
    assert multi.shape == (len(s.train), g.max_len)
    for row, combo in zip(multi.tolist(), table.frame["genres"].iloc[tr], strict=True):
        ids = [i for i in row if i != -1]
        assert [g.vocab[i - 1] for i in ids] == combo.split("|")  # order kept, padding -1 at the end
        assert row[len(ids) :] == [-1] * (g.max_len - len(ids))
    # dense year: normalised with train stats; the untitled movie's missing year -> 0 (the mean)
    y = s.spec.field("year")
    years = table.frame["year"].to_numpy()[tr]
    finite = years[np.isfinite(years)]
    assert y.mean == pytest.approx(finite.mean()) and y.std == pytest.approx(finite.std())
    expected = np.where(np.isfinite(years), (years - y.mean) / y.std, 0.0)
    np.testing.assert_allclose(s.train.dense[:, 0].numpy(), expected, rtol=1e-6, atol=1e-6)


def test_embedding_dim_auto_and_fixed() -> None:
    s = load_splits(DataOptions(source="ml-1m", data_dir=str(ML1M), embedding_dim="auto", genres=True))
    for f in s.spec.fields:
        assert f.embedding_dim == rule_of_thumb_dim(f.vocab_size)
    s = load_splits(DataOptions(source="ml-1m", data_dir=str(ML1M), embedding_dim=8, dense=("year",)))
    assert [f.embedding_dim for f in s.spec.fields] == [8] * 6 + [1]
    assert s.spec.d == 49


def test_feature_subset_and_order() -> None:
    s = load_splits(DataOptions(source="ml-1m", data_dir=str(ML1M), features=("gender", "movie_id")))
    assert s.spec.names == ["gender", "movie_id"] and s.train.cat.shape[1] == 2


def test_encode_with_given_spec_reuses_vocabularies(tmp_path: Path) -> None:
    opts = DataOptions(source="ml-1m", data_dir=str(ML1M), seed=0, genres=True, dense=("year",))
    s = load_splits(opts)
    again = load_splits(opts, spec=s.spec)
    assert again.spec is s.spec
    for a, b in ((s.train, again.train), (s.test, again.test)):
        assert torch.equal(a.cat, b.cat) and torch.equal(a.dense, b.dense) and torch.equal(a.multi[0], b.multi[0])
    # another dataset encoded with this spec: unknown users map to 0, known ones keep their ids
    other = _write_ml1m(tmp_path / "other", 30, 6, 300, seed=3)
    o = load_splits(DataOptions(source="ml-1m", data_dir=str(other), seed=0), spec=s.spec)
    assert o.spec is s.spec and o.train.cat.shape[1] == 6
    table = load_table(DataOptions(source="ml-1m", data_dir=str(other)))
    enc = encode_frame(table.frame, s.spec, separators=table.separators)
    vocab = s.spec.field("user_id").vocab
    for raw, code in zip(table.frame["user_id"].astype(str), enc.cat[:, 0].tolist(), strict=True):
        assert code == (vocab.index(raw) + 1 if raw in vocab else 0)
    with pytest.raises(DataFormatError, match=r"the model's features \['nope'\] are not in the data"):
        from dcnviz.spec import FeatureSpec, Field

        encode_frame(table.frame, FeatureSpec((Field(name="nope", kind="categorical", embedding_dim=2),)))


def test_build_spec_uses_only_given_rows() -> None:
    table = load_table(DataOptions(source="ml-1m", data_dir=str(ML1M)))
    rows = np.array([0, 1, 2])
    table.order = ("user_id",)
    spec = build_spec(table, rows, DataOptions(source="sample", features=("user_id",)))
    assert set(spec.field("user_id").vocab) == set(table.frame["user_id"].astype(str).iloc[rows])


def test_folder_or_unzipped_subfolder(tmp_path: Path) -> None:
    shutil.copytree(ML1M, tmp_path / "ml-1m")
    t = load_table(DataOptions(source="ml-1m", data_dir=str(tmp_path)))  # finds DIR/ml-1m/
    assert len(t.frame) == 24


# --------------------------------------------------------------------------------------------------------
# MovieLens-100K


def test_age_groups() -> None:
    assert [age_group(a) for a in (1, 17, 18, 24, 25, 34, 35, 44, 45, 49, 50, 55, 56, 90)] == [
        1, 1, 18, 18, 25, 25, 35, 35, 45, 45, 50, 50, 56, 56,
    ]  # fmt: skip


def test_ml100k_fixture_protocol_and_encodings() -> None:
    table = load_ml100k(ML100K)
    raw = _ratings(ML100K / "u.data", "\t")
    kept = [(u, m, r) for u, m, r in raw if r != 3]
    assert table.rows_read == 24 and len(table.frame) == len(kept) == 19
    assert list(table.frame[LABEL]) == [int(r >= 4) for _, _, r in kept]
    users = table.frame.drop_duplicates("user_id").set_index("user_id")
    assert users.loc["1", "age"] == "18" and users.loc["3", "age"] == "1" and users.loc["5", "age"] == "56"
    assert users.loc["3", "zip"] == "E2A4H" and users.loc["4", "occupation"] == "writer"
    movies = table.frame.drop_duplicates("movie_id").set_index("movie_id")
    assert movies.loc["1", "genres"] == "Animation|Children's|Comedy"
    assert movies.loc["1", "year"] == 1995
    assert movies.loc["3", "year"] == 1997  # no (Year) in the title: from the release date
    assert np.isnan(movies.loc["4", "year"]) and movies.loc["4", "genres"] == "unknown"
    raw_ages = load_ml100k(ML100K, age_encoding="raw").frame.drop_duplicates("user_id").set_index("user_id")
    assert raw_ages.loc["1", "age"] == "24" and raw_ages.loc["5", "age"] == "60"


@pytest.mark.skipif(not (REAL_100K / "u.data").is_file(), reason="real MovieLens-100K not present")
def test_real_ml100k_protocol() -> None:
    s = load_splits(DataOptions(source="ml-100k", data_dir=str(REAL_100K), seed=0))
    assert s.info["rows_read"] == 100_000 and s.info["rows_dropped"] == 27_145 and s.info["examples"] == 72_855
    assert (len(s.train), len(s.val), len(s.test)) == (58_284, 7_286, 7_285)
    total_pos = sum(float(x.y.sum()) for x in (s.train, s.val, s.test))
    assert total_pos == 55_375  # ratings 4 and 5 in u.data
    assert s.spec.field("user_id").vocab_size <= 944 and len(s.spec.field("age").vocab) == 7


@pytest.mark.skipif(not (REAL_100K / "u.data").is_file(), reason="real MovieLens-100K not present")
def test_real_ml100k_matches_the_download_row_counts() -> None:
    from dcnviz.download import DATASETS, check_folder

    assert check_folder(REAL_100K, DATASETS["ml-100k"]) == {"u.data": 100_000, "u.user": 943, "u.item": 1_682}
