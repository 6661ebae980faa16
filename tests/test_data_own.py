"""Own-data tables: CSV / Parquet with a schema JSON, same split protocol and encoding."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from dcnviz.data import DataOptions, TableSchema, load_own_table, load_splits, read_schema, split_indices
from dcnviz.errors import ConfigError, DataFormatError


def _frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "user": [f"u{i}" for i in rng.integers(0, 40, n)],
            "item": [f"{i:03d}" for i in rng.integers(0, 25, n)],  # leading zeros must survive
            "tags": ["|".join(sorted(set(rng.choice(list("abcde"), rng.integers(0, 4))))) for _ in range(n)],
            "price": np.round(rng.uniform(1, 10, n), 2),
            "clicked": rng.integers(0, 2, n),
        }
    )


SCHEMA = {"label": "clicked", "categorical": ["user", "item"], "multivalent": ["tags"], "dense": ["price"]}


@pytest.fixture
def csv_files(tmp_path: Path) -> tuple[Path, Path, pd.DataFrame]:
    df = _frame()
    p = tmp_path / "t.csv"
    df.to_csv(p, index=False)
    s = tmp_path / "schema.json"
    s.write_text(json.dumps(SCHEMA))
    return p, s, df


def test_csv_with_schema_protocol_and_encoding(csv_files: tuple[Path, Path, pd.DataFrame]) -> None:
    p, s, df = csv_files
    opts = DataOptions(source="csv", data_dir=str(p), schema=str(s), seed=3)
    out = load_splits(opts)
    assert out.spec.names == ["user", "item", "tags", "price"]
    assert [f.kind for f in out.spec.fields] == ["categorical", "categorical", "multivalent", "dense"]
    tr, va, te = split_indices(len(df), 3)
    assert (len(out.train), len(out.val), len(out.test)) == (len(tr), len(va), len(te)) == (160, 20, 20)
    assert torch.equal(out.train.y, torch.tensor(df["clicked"].to_numpy()[tr], dtype=torch.float32))
    item = out.spec.field("item")
    assert set(item.vocab) == set(df["item"].iloc[tr]) and all(len(v) == 3 for v in item.vocab)  # "007" kept
    dec = [item.vocab[i - 1] if i else None for i in out.test.cat[:, 1].tolist()]
    assert dec == [v if v in item.vocab else None for v in df["item"].iloc[te]]
    tags = out.spec.field("tags")
    for row, cell in zip(out.train.multi[0].tolist(), df["tags"].iloc[tr], strict=True):
        assert [tags.vocab[i - 1] for i in row if i != -1] == [t for t in str(cell).split("|") if t and cell == cell]
    price = out.spec.field("price")
    assert price.mean == pytest.approx(df["price"].iloc[tr].mean())
    np.testing.assert_allclose(
        out.train.dense[:, 0].numpy(), (df["price"].iloc[tr] - price.mean) / price.std, rtol=1e-5
    )
    assert out.info["source"] == "csv" and out.info["rows_dropped"] == 0


def test_inline_schema_and_parquet_folder(tmp_path: Path) -> None:
    df = _frame(120)
    d = tmp_path / "parts"
    d.mkdir()
    df.iloc[:60].to_parquet(d / "a.parquet")
    df.iloc[60:].to_parquet(d / "b.parquet")
    out = load_splits(DataOptions(source="parquet", data_dir=str(d), schema=json.dumps(SCHEMA)))
    assert sum(len(x) for x in (out.train, out.val, out.test)) == 120
    assert out.spec.names == ["user", "item", "tags", "price"]


def test_parquet_list_column_is_multivalent(tmp_path: Path) -> None:
    df = _frame(50)
    df["tags"] = [t.split("|") if t else [] for t in df["tags"]]
    df.to_parquet(tmp_path / "t.parquet")
    table = load_own_table(tmp_path / "t.parquet", TableSchema.from_json(SCHEMA), fmt="parquet")
    assert list(table.frame["tags"].astype(str)) == ["|".join(t) for t in df["tags"]]


def test_no_schema_infers_from_label_column(tmp_path: Path) -> None:
    df = _frame(60).rename(columns={"clicked": "label"}).drop(columns=["tags"])
    df.to_csv(tmp_path / "t.csv", index=False)
    out = load_splits(DataOptions(source="csv", data_dir=str(tmp_path / "t.csv")))
    assert [(f.name, f.kind) for f in out.spec.fields] == [
        ("user", "categorical"),
        ("item", "categorical"),
        ("price", "dense"),
    ]


def test_label_threshold_binarises(tmp_path: Path) -> None:
    df = pd.DataFrame({"u": list("abcdefghijkl"), "stars": [1, 2, 3, 4, 5, 5, 4, 3, 2, 1, 5, 4]})
    df.to_csv(tmp_path / "t.csv", index=False)
    t = load_own_table(
        tmp_path / "t.csv", json.dumps({"label": "stars", "categorical": ["u"], "label_threshold": 4}), fmt="csv"
    )
    assert list(t.frame["label"]) == [int(s >= 4) for s in df["stars"]]


def test_empty_categorical_cell_is_out_of_vocabulary(tmp_path: Path) -> None:
    rows = "u,label\n" + "".join(f"u{i % 3},{i % 2}\n" for i in range(20)) + ",1\n"
    (tmp_path / "t.csv").write_text(rows)
    t = load_own_table(tmp_path / "t.csv", None, fmt="csv")
    assert t.frame["u"].isna().sum() == 1  # missing, not the string "nan"


# ---------------------------------------------------------------------------------------------- malformed


def _write(tmp_path: Path, text: str | bytes, name: str = "t.csv") -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    return p


S = json.dumps({"label": "y", "categorical": ["a"], "dense": ["x"]})


def _raises(p: Path, match: str, schema: str | None = S, fmt: str = "csv") -> None:
    with pytest.raises(DataFormatError, match=match):
        load_own_table(p, schema, fmt=fmt)


def test_csv_missing_column(tmp_path: Path) -> None:
    p = _write(tmp_path, "a,y\n1,0\n2,1\n")
    _raises(p, re.escape(f"{p}: missing column(s) ['x'] named in the schema; the file's columns are ['a', 'y']"))


def test_csv_wrong_delimiter(tmp_path: Path) -> None:
    p = _write(tmp_path, "a;x;y\n1;2.0;0\n")
    _raises(p, re.escape(f"{p} line 1: found one column 'a;x;y'; the header uses ';', but the delimiter is ','"))


def test_csv_ragged_line(tmp_path: Path) -> None:
    p = _write(tmp_path, "a,x,y\n1,2.0,0\n2,3.0,1,9\n")
    _raises(p, re.escape(f"{p} line 3: Expected 3 fields in line 3, saw 4"))


def test_csv_non_binary_label(tmp_path: Path) -> None:
    p = _write(tmp_path, "a,x,y\n1,2.0,0\n2,3.0,4\n")
    _raises(p, re.escape(f"{p} line 3: label 'y' must be 0 or 1; got '4' (set the schema's 'label_threshold'"))


def test_csv_non_numeric_label(tmp_path: Path) -> None:
    p = _write(tmp_path, "a,x,y\n1,2.0,yes\n")
    _raises(p, re.escape(f"{p} line 2: label 'y' must be a number; got 'yes'"))


def test_csv_non_numeric_dense(tmp_path: Path) -> None:
    p = _write(tmp_path, "a,x,y\n1,2.0,0\n2,3.0,1\n3,cheap,1\n")
    _raises(p, re.escape(f"{p} line 4: dense column 'x' must be numeric; got 'cheap'"))


def test_csv_empty_and_header_only(tmp_path: Path) -> None:
    p = _write(tmp_path, "")
    _raises(p, re.escape(f"{p} is empty"))
    p = _write(tmp_path, "a,x,y\n", name="h.csv")
    _raises(p, re.escape(f"{p} has a header but no data rows"))


def test_csv_bad_encoding(tmp_path: Path) -> None:
    p = _write(tmp_path, "a,x,y\n1,2.0,0\ncaf\xe9,3.0,1\n".encode("latin-1"))
    _raises(p, re.escape(f"{p} line 3: bytes b'\\xe9,3.' are not valid utf-8; set the schema's 'encoding'"))
    latin = json.dumps({"label": "y", "categorical": ["a"], "dense": ["x"], "encoding": "latin-1"})
    assert list(load_own_table(p, latin, fmt="csv").frame["a"].astype(str)) == ["1", "café"]


def test_not_parquet(tmp_path: Path) -> None:
    p = _write(tmp_path, "a,x,y\n1,2,0\n", name="t.parquet")
    _raises(p, re.escape(f"{p}: not a readable Parquet file"), fmt="parquet")


def test_missing_file_and_folder_without_tables(tmp_path: Path) -> None:
    _raises(tmp_path / "none.csv", re.escape(f"data file {tmp_path / 'none.csv'} not found"))
    _raises(tmp_path, re.escape(f"data folder {tmp_path} holds no .csv/.tsv/.txt file"))


def test_no_label_column_without_schema(tmp_path: Path) -> None:
    p = _write(tmp_path, "a,x,y\n1,2.0,0\n")
    _raises(p, re.escape(f"{p}: no schema given and no column named 'label'; pass --schema FILE"), schema=None)


@pytest.mark.parametrize(
    ("schema", "match"),
    [
        ("{not json", r"inline schema is not valid JSON: line 1 column 2"),
        ('{"categorical": ["a"]}', r"needs 'label'"),
        ('{"label": "y"}', r"lists no feature columns"),
        ('{"label": "y", "categorical": ["a"], "dense": ["a"]}', r"lists these columns twice: \['a'\]"),
        ('{"label": "y", "categorical": "a"}', r"'categorical' must be a list of column names; got 'a'"),
        ('{"label": "y", "categorical": ["a"], "colour": 1}', r"unknown keys \['colour'\]"),
        ('{"label": "y", "categorical": ["a"], "delimiter": ";;"}', r"'delimiter' must be one character"),
    ],
)
def test_bad_schemas(schema: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        read_schema(schema)


def test_schema_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"schema file {tmp_path / 's.json'} not found")):
        read_schema(str(tmp_path / "s.json"))


def test_csv_line_numbers_count_blank_lines(tmp_path: Path) -> None:
    p = _write(tmp_path, "a,x,y\n1,2.0,0\n\n\n2,3.0,1\n3,abc,1\n")
    _raises(p, re.escape(f"{p} line 6: dense column 'x' must be numeric; got 'abc'"))


def test_csv_infinite_dense(tmp_path: Path) -> None:
    p = _write(tmp_path, "a,x,y\n1,2.0,0\n2,inf,1\n")
    _raises(p, re.escape(f"{p} line 3: dense column 'x' is infinite"))


def test_csv_padded_numbers_and_blank_lines_load(tmp_path: Path) -> None:
    p = _write(tmp_path, "a,x,y\n1, 2.5 , 1\n\n2,,0\n")
    t = load_own_table(p, S, fmt="csv")
    assert list(t.frame["label"]) == [1, 0] and t.frame["x"].iloc[0] == 2.5 and np.isnan(t.frame["x"].iloc[1])


def test_parquet_row_numbers_in_errors(tmp_path: Path) -> None:
    pd.DataFrame({"a": ["p", "q", "r"], "x": [1.0, 2.0, 3.0], "y": [0, 1, 2]}).to_parquet(tmp_path / "t.parquet")
    _raises(
        tmp_path / "t.parquet",
        re.escape(f"{tmp_path / 't.parquet'} row 3: label 'y' must be 0 or 1; got 2"),
        fmt="parquet",
    )
