"""`python -m dcnviz train` / `evaluate` end to end on the bundled synthetic sample (issue 2's CLI contract)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dcnviz.checkpoint import load_model
from dcnviz.cli import main
from dcnviz.commands import train as train_cmd
from dcnviz.data import SAMPLE_DIR, SOURCES
from tests.helpers import ROOT

TINY = ["--hidden", "16", "--embedding-dim", "4", "--batch-size", "1024", "--lr", "0.01", "--device", "cpu", "--quiet"]
CONTRACT = {"test", "val", "epochs", "best_epoch", "wall_s", "device", "examples_per_s"}

needs_sample = pytest.mark.skipif(not (SAMPLE_DIR / "ratings.dat").is_file(), reason="sample_data/ not generated")


def last_json(text: str) -> dict:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return json.loads(lines[-1])


def test_cli_sources_match_the_data_module():
    assert train_cmd.SOURCES == SOURCES


def test_cli_embedding_default_is_the_data_options_default():
    from dcnviz.cli import build_parser
    from dcnviz.data import DataOptions

    args = build_parser().parse_args(["train", "--data", "sample"])
    assert train_cmd.data_options(args) == DataOptions(source="sample")


def test_batch_size_is_auto_by_default_or_a_positive_integer(capsys):
    from dcnviz.cli import build_parser

    parse = build_parser().parse_args
    assert parse(["train", "--data", "sample"]).batch_size is None
    assert parse(["train", "--data", "sample", "--batch-size", "auto"]).batch_size is None
    assert parse(["train", "--data", "sample", "--batch-size", "256"]).batch_size == 256
    for bad in ("0", "big"):
        with pytest.raises(SystemExit):
            parse(["train", "--data", "sample", "--batch-size", bad])
        assert "--batch-size: must be an integer in [1, 1048576] or 'auto'" in capsys.readouterr().err


@needs_sample
def test_train_prints_the_contract_json_saves_and_evaluate_reproduces(tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    assert main(["train", "--data", "sample", "--epochs", "1", *TINY, "--out", str(out)]) == 0
    res = last_json(capsys.readouterr().out)
    assert set(res) >= CONTRACT
    assert res["device"] == "cpu" and res["epochs"] == 1 and res["best_epoch"] == 1
    assert set(res["test"]) == {"auc", "logloss"} and 0.5 < res["test"]["auc"] <= 1.0
    assert res["examples_per_s"] > 0 and res["wall_s"] > 0
    loaded = load_model(out)
    assert loaded.meta["train_config"]["epochs"] == 1
    assert loaded.meta["data_info"]["options"]["source"] == "sample"
    assert loaded.meta["metrics"]["test"] == res["test"] and len(loaded.meta["history"]) == 1
    assert loaded.spec.d == 6 * 4

    assert main(["evaluate", str(out), "--data", "sample"]) == 0
    ev = last_json(capsys.readouterr().out)
    for split in ("test", "val"):
        assert ev[split]["auc"] == pytest.approx(res[split]["auc"], abs=1e-9)
        assert ev[split]["logloss"] == pytest.approx(res[split]["logloss"], abs=1e-6)


@needs_sample
def test_several_seeds_give_mean_std_and_runs(capsys):
    assert main(["train", "--data", "sample", "--epochs", "1", "--seed", "3", "4", *TINY]) == 0
    res = last_json(capsys.readouterr().out)
    assert set(res) >= CONTRACT
    assert set(res["test"]["auc"]) == {"mean", "std"} and set(res["val"]["logloss"]) == {"mean", "std"}
    assert [r["seed"] for r in res["runs"]] == [3, 4]
    aucs = [r["test"]["auc"] for r in res["runs"]]
    assert res["test"]["auc"]["mean"] == pytest.approx(sum(aucs) / 2)
    assert all(set(r) >= CONTRACT for r in res["runs"])


@needs_sample
def test_model_options_reach_the_model(tmp_path, capsys):
    out = tmp_path / "mix.safetensors"
    args = ["--model", "dcn-mix", "--rank", "3", "--experts", "2", "--gate", "sigmoid", "--cross-layers", "1"]
    assert main(["train", "--data", "sample", "--epochs", "1", *args, *TINY, "--out", str(out)]) == 0
    capsys.readouterr()
    config = load_model(out).config
    got = (config.model, config.rank, config.experts, config.gate, config.cross_layers)
    assert got == ("dcn-mix", 3, 2, "sigmoid", 1)
    assert config.hidden == (16,)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--data", "ml-100k"], "data_dir"),
        (["--data", "sample", "--out", "model.pt"], "safetensors"),
        (["--data", "sample", "--lr", "-1"], "lr"),
        (["--data", "sample", "--rank", "0"], "rank"),
    ],
)
def test_bad_options_give_a_clean_error(argv, message, capsys):
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--embedding-dim", "100000"], "argument --embedding-dim: must be an integer in [1, 1024] or 'auto'"),
        (["--hidden", "1e11"], "argument --hidden: must be an integer in [1, 65536]; got '1e11'"),
        (["--hidden", "100000000000"], "argument --hidden: must be an integer in [1, 65536]"),
        (["--seed", "1e23"], "argument --seed: must be an integer in [0, 9223372036854775807]; got '1e23'"),
        (["--seed", "100000000000000000000000"], "argument --seed: must be an integer in [0, 9223372036854775807]"),
        (["--threads", "100000"], "argument --threads: must be an integer in [1, "),
        (["--split-seed", "-1"], "argument --split-seed: must be an integer in [0, "),
    ],
)
def test_out_of_range_numbers_name_the_argument(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--data", "sample", *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"error: {message}" in err and "Traceback" not in err


def test_a_model_too_large_to_train_is_refused_before_training(capsys):
    assert main(["train", "--data", "sample", "--embedding-dim", "1000", "--hidden", "60000", "60000", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the model would have 4,034,512,001 parameters") and "deep tower" in err


@pytest.mark.parametrize("case", ["folder", "under a file", "long name", "long folder", "unwritable"])
def test_out_is_checked_before_training(case, tmp_path, capsys, monkeypatch):
    calls = []
    monkeypatch.setattr("dcnviz.train.run", lambda *a, **k: calls.append(a))  # training must not start
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "dir.safetensors").mkdir()
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    out, message = {
        "folder": (tmp_path / "dir.safetensors", "is a folder"),
        "under a file": (
            tmp_path / "a_file" / "sub" / "m.safetensors",
            f"lies under {tmp_path / 'a_file'}, which is a file",
        ),
        "long name": (tmp_path / ("m" * 240 + ".safetensors"), "the file name is 252 bytes long"),
        "long folder": (tmp_path / ("d" * 300) / "m.safetensors", "a folder name is longer than"),
        "unwritable": (locked / "m.safetensors", "cannot write in"),
    }[case]
    if case == "unwritable" and os.access(locked, os.W_OK):  # root writes anywhere: use a file system that refuses
        if not Path("/proc/self").is_dir():
            pytest.skip("running as root without /proc: nothing here refuses a write")
        out = Path("/proc/m.safetensors")
    assert main(["train", "--data", "sample", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out ") and message in err and "Traceback" not in err
    assert calls == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message when CUDA is missing")
def test_cuda_without_a_gpu_is_a_clean_error(capsys):
    assert main(["train", "--data", "sample", "--device", "cuda"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


def test_evaluate_a_missing_file_is_a_clean_error(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nope.safetensors"), "--data", "sample"]) == 2
    assert "no model file" in capsys.readouterr().err


@needs_sample
@pytest.mark.slow
def test_ctrl_c_stops_keeps_the_best_model_and_saves_it(tmp_path):
    """SIGINT acts like the app's stop button: the JSON is printed and a complete model file is saved."""
    out = tmp_path / "stopped.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "dcnviz", "train", "--data", "sample", "--epochs", "200", "--patience", "200"]
    cmd += ["--hidden", "16", "--embedding-dim", "4", "--batch-size", "2048", "--device", "cpu", "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 240
    for line in proc.stderr:  # wait for the first finished epoch
        if line.startswith("epoch 1/"):
            break
        assert time.monotonic() < deadline
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr
    res = last_json(stdout)
    assert res["stopped"] == "should_stop" and res["best_epoch"] >= 1 and res["epochs"] >= 1
    loaded = load_model(out)  # complete and valid
    assert loaded.meta["metrics"]["stopped"] == "should_stop"
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary left behind


def test_own_csv_table_train_then_evaluate(tmp_path, capsys):
    """A CSV with a schema: train saves the schema in the file; evaluate recreates the split from it."""
    import random

    rnd = random.Random(0)
    lines = ["user,item,tags,price,clicked"]
    for _ in range(600):
        u, i = rnd.randrange(20), rnd.randrange(15)
        tags = "|".join(rnd.sample(["a", "b", "c"], rnd.randrange(0, 3)))
        clicked = int((u + i) % 3 == 0) if rnd.random() > 0.1 else rnd.randrange(2)
        lines.append(f"u{u},i{i},{tags},{rnd.uniform(1, 9):.2f},{clicked}")
    table = tmp_path / "clicks.csv"
    table.write_text("\n".join(lines) + "\n")
    schema = tmp_path / "clicks.schema.json"
    schema.write_text(
        json.dumps({"label": "clicked", "categorical": ["user", "item"], "multivalent": ["tags"], "dense": ["price"]})
    )
    out = tmp_path / "csv.safetensors"
    argv = ["train", "--data", "csv", "--data-dir", str(table), "--schema", str(schema), "--epochs", "2", *TINY]
    assert main([*argv, "--batch-size", "64", "--out", str(out)]) == 0
    res = last_json(capsys.readouterr().out)
    assert load_model(out).spec.names == ["user", "item", "tags", "price"]
    assert main(["evaluate", str(out), "--data", "csv", "--data-dir", str(table), "--schema", str(schema)]) == 0
    ev = last_json(capsys.readouterr().out)
    assert ev["test"]["logloss"] == pytest.approx(res["test"]["logloss"], abs=1e-6)
    assert ev["rows"] == {"train": 480, "val": 60, "test": 60}
    assert main(["evaluate", str(out), "--data", "csv", "--data-dir", str(table)]) == 0  # the recorded schema
    assert last_json(capsys.readouterr().out)["test"] == ev["test"]


def test_threads_auto_counts_the_cores_busy_now(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """busy_cores = busy share of the CPU time between two /proc/stat samples × cores; auto uses the rest."""
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 50 0 50 400 0 0 0 0 0 0\n")

    def later(_: float) -> None:  # the second sample: 100 more busy jiffies (user+system), 100 more idle
        stat.write_text("cpu  150 0 150 900 0 0 0 0 0 0\n")

    monkeypatch.setattr(train_cmd.time, "sleep", later)
    monkeypatch.setattr(train_cmd.os, "cpu_count", lambda: 2)
    assert train_cmd.busy_cores(stat=str(stat)) == pytest.approx(1.0)  # half of 2 cores
    assert train_cmd.busy_cores(stat=str(tmp_path / "missing")) is None
    auto = train_cmd.auto_threads
    assert [auto(2, 2, b) for b in (0.0, 0.4, 0.6, 1.0, 2.0)] == [2, 2, 1, 1, 1]  # one per free core, at least 1
    assert auto(8, 8, 2.3) == 6 and auto(4, 8, 0.0) == 4  # never more than PyTorch's default
    assert auto(2, None, 0.0) == 2 and auto(2, 2, None) == 2  # unknown: PyTorch's default
