"""Background runs (dcnviz.app.jobs): the run limit and queue, session-end cancellation, worker isolation,
and one training run for the app and the CLI (issue 16; issue 15 item 1).

The pool's logic is tested with tiny stand-in jobs (no training) and times passed in, not measured;
the isolation tests use real worker processes forked from the fork server.
"""

from __future__ import annotations

import signal
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest
import torch

import dcnviz.data
from dcnviz.app.jobs import (
    RunPool,
    TrainingJob,
    TrainRequest,
    default_max_runs,
    default_memory_limit,
    wait,
)
from dcnviz.checkpoint import load_model
from dcnviz.cli import main
from dcnviz.data import DataOptions
from dcnviz.errors import DcnvizError
from dcnviz.model import ModelConfig
from dcnviz.sample import SampleConfig, make_sample, write_sample
from dcnviz.train import TrainConfig
from tests.helpers.jobs import StandIn, allocate, crash, ignore_stop, until, wait_for_stop

needs_sample = pytest.mark.skipif(
    not (dcnviz.data.SAMPLE_DIR / "ratings.dat").is_file(), reason="sample_data/ not generated"
)


def test_default_run_limit_follows_the_cores() -> None:
    assert [default_max_runs(c) for c in (1, 2, 4, 16)] == [2, 2, 2, 8]


def test_the_servers_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCNVIZ_MAX_RUNS", "3")
    monkeypatch.setenv("DCNVIZ_RUN_GRACE_S", "0.5")
    pool = RunPool(cores=8)
    assert (pool.max_runs, pool.grace_s, pool.budget(3)) == (3, 0.5, 2)
    monkeypatch.setenv("DCNVIZ_RUN_MEMORY_MB", "0")
    assert default_memory_limit() is None
    monkeypatch.setenv("DCNVIZ_MAX_RUNS", "many")
    with pytest.raises(DcnvizError, match=r"\$DCNVIZ_MAX_RUNS must be a number; got 'many'"):
        RunPool()
    monkeypatch.setenv("DCNVIZ_MAX_RUNS", "0")
    with pytest.raises(DcnvizError, match=r"\$DCNVIZ_MAX_RUNS must be >= 1; got '0'"):
        RunPool()


def test_runs_beyond_the_limit_queue_in_order_and_share_the_cores() -> None:
    pool = RunPool(cores=4, max_runs=2, grace_s=0)
    a, b, c, d = (StandIn(wait_for_stop, name, pool=pool, isolate=False).start() for name in "abcd")
    until(lambda: a.status == b.status == "training")
    assert pool.counts() == (2, 2)
    assert (c.status, c.queue_position, d.queue_position) == ("queued", 1, 2)
    assert "1 in line" in c.message and "at most 2 at once" in c.message
    assert a.threads == b.threads == 2  # 4 cores, 2 runs
    a.stop()
    until(lambda: c.status == "training")
    assert a.kept == "a" and a.status == "done"
    assert (d.queue_position, pool.counts()) == (1, (2, 1))
    d.stop()  # stopped while queued: leaves the queue, nothing ran
    assert d.status == "stopped" and pool.counts() == (2, 0)
    b.stop()
    until(lambda: b.finished and pool.counts() == (1, 0))
    assert c.threads == 4  # alone now: all the cores
    c.stop()
    until(lambda: c.finished and pool.counts() == (0, 0))


def test_runs_whose_session_ended_are_cancelled_after_the_grace_period_keeping_nothing() -> None:
    pool = RunPool(cores=2, max_runs=1, grace_s=5.0)
    alive = {"a": True, "b": True}
    a = StandIn(wait_for_stop, "a", owner=lambda: alive["a"], pool=pool, isolate=False).start()
    b = StandIn(wait_for_stop, "b", owner=lambda: alive["b"], pool=pool, isolate=False).start()
    until(lambda: a.status == "training")
    assert b.status == "queued"
    alive["a"] = alive["b"] = False
    t0 = 1000.0
    assert pool.check_owners(now=t0) == []  # just gone: may be a reload or a network blip
    alive["b"] = True  # b's session came back within the grace period
    assert pool.check_owners(now=t0 + 4.9) == []
    alive["b"] = False
    assert pool.check_owners(now=t0 + 5.0) == [a]  # b's clock restarted when it came back
    assert a.status == "cancelled" and "session" in a.message and a.kept is None
    until(lambda: b.status == "training")  # the freed slot goes to the next in line
    assert pool.check_owners(now=t0 + 6.0) == []
    assert pool.check_owners(now=t0 + 11.0) == [b]
    until(lambda: pool.counts() == (0, 0) and a.join(0) and b.join(0))
    assert a.kept is None and b.kept is None  # a late result of a cancelled run is dropped


def test_a_broken_liveness_check_never_cancels() -> None:
    pool = RunPool(cores=2, max_runs=1, grace_s=0.0)

    def broken() -> bool:
        raise RuntimeError("no runtime")

    a = StandIn(wait_for_stop, "a", owner=broken, pool=pool, isolate=False).start()
    until(lambda: a.status == "training")
    assert pool.check_owners(now=0.0) == [] and pool.check_owners(now=100.0) == []
    a.stop()
    until(lambda: a.finished)


def test_cancel_kills_a_runaway_worker_within_seconds() -> None:
    pool = RunPool(cores=2, max_runs=2, grace_s=0.0)
    job = StandIn(ignore_stop, pool=pool, isolate=True).start()
    until(lambda: job.status == "training", timeout=180)  # the first worker may wait for the fork server
    proc = job._worker
    assert proc is not None and proc.is_alive()
    t0 = time.monotonic()
    job.cancel("cancelled: the session ended")
    assert job.join(15)
    assert time.monotonic() - t0 < 10
    assert not proc.is_alive() and proc.exitcode in (-signal.SIGTERM, -signal.SIGKILL)
    assert job.status == "cancelled" and pool.counts() == (0, 0)


def test_a_crashing_worker_fails_its_run_with_the_reason_and_the_server_lives_on() -> None:
    pool = RunPool(cores=2, max_runs=2, grace_s=0.0)
    job = StandIn(crash, pool=pool, isolate=True).start()
    assert job.join(180)
    assert job.status == "failed" and job.error == "the training process was killed by SIGSEGV"
    ok = StandIn(wait_for_stop, "next", pool=pool, isolate=True).start()  # the pool still serves
    until(lambda: ok.status == "training", timeout=60)
    ok.stop()
    assert ok.join(30) and ok.kept == "next"


def test_a_runaway_allocation_hits_the_workers_memory_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCNVIZ_RUN_MEMORY_MB", "1024")
    pool = RunPool(cores=2, max_runs=2, grace_s=0.0)
    job = StandIn(allocate, 4 * 2**30, pool=pool, isolate=True).start()
    assert job.join(180)
    assert job.status == "failed", job.message
    assert (
        job.error
        == "the run ran out of its memory limit (1.0 GiB, $DCNVIZ_RUN_MEMORY_MB); try a smaller model, batch or dataset"
    )


def test_the_worker_never_runs_the_servers_main_script(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Streamlit installs the app script as ``__main__``; multiprocessing would re-run it in each child."""
    marker = tmp_path / "ran"
    script = tmp_path / "app.py"
    script.write_text(f"open({str(marker)!r}, 'w').close()\n")
    fake = types.ModuleType("__main__")
    fake.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", fake)
    pool = RunPool(cores=2, max_runs=2, grace_s=0.0)
    job = StandIn(wait_for_stop, "x", pool=pool, isolate=True).start()
    until(lambda: job.status == "training", timeout=180)
    job.stop()
    assert job.join(30) and job.kept == "x"
    assert not marker.exists()


TIMINGS = {"wall_s", "train_s", "train_wall_s", "examples_per_s", "epoch_s", "load_s"}
PROVENANCE = {"made_by", "argv", "label", "saved_seed", "created"}


def _strip(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in TIMINGS | PROVENANCE}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


@needs_sample
def test_the_app_and_the_cli_record_the_same_metadata(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = dict(embedding_dim=4, hidden=(16,), lr=0.01, batch_size=1024, epochs=2, seed=3)
    request = TrainRequest(
        data=DataOptions(source="sample", embedding_dim=settings["embedding_dim"]),
        model=ModelConfig(hidden=settings["hidden"]),
        train=TrainConfig(lr=0.01, batch_size=1024, epochs=2, seeds=(3,), device="cpu"),
        label="app run",
    )
    snap = wait(TrainingJob(request, pool=RunPool(cores=1, max_runs=1, grace_s=0.0)).start(), timeout=300)
    assert snap.status == "done", snap.error
    assert snap.threads == 1
    out = tmp_path / "cli.safetensors"
    threads = torch.get_num_threads()
    try:
        argv = ["train", "--data", "sample", "--embedding-dim", "4", "--hidden", "16", "--lr", "0.01"]
        argv += ["--batch-size", "1024", "--epochs", "2", "--seed", "3", "--device", "cpu", "--threads", "1"]
        assert main([*argv, "--quiet", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    capsys.readouterr()
    app, cli = load_model(snap.model_bytes).meta, load_model(out).meta
    assert app["extra"]["made_by"] == "dcnviz app" and app["extra"]["label"] == "app run"
    assert cli["extra"]["made_by"] == "python -m dcnviz train" and "--threads" in cli["extra"]["argv"]
    assert set(app) == set(cli)
    assert _strip(app) == _strip(cli)
    assert app["metrics"]["test"]["auc"] == cli["metrics"]["test"]["auc"]  # the same training, bit for bit
    assert snap.examples_per_s == app["metrics"]["examples_per_s"]  # one speed for one run (issue 13 item 17)
    assert snap.history == app["history"]  # the page shows fit's own rows


def test_a_stopped_table6_run_keeps_the_models_that_finished(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the worker function itself, in this thread: every progress message is published (PUBLISH_S = 0),
    # and the stop comes with the first message of the second model's fit
    from dcnviz.app import jobs
    from dcnviz.app.jobs import Control, Table6Request

    monkeypatch.setattr(jobs, "PUBLISH_S", 0.0)
    write_sample(make_sample(SampleConfig(n_users=150, n_movies=60, n_ratings=3000, min_ratings=20)), tmp_path)
    monkeypatch.setattr(dcnviz.data, "SAMPLE_DIR", tmp_path)
    control = Control(1, apply_threads=False)
    sent: list[tuple[str, Any]] = []

    def emit(kind: str, payload: Any = None) -> None:
        sent.append((kind, payload))
        if kind == "set" and "fit 2 of 2" in payload.get("message", ""):
            control.stop = True

    request = Table6Request(data=DataOptions(source="sample"), models=("dnn", "crossnet"), runs=1, epochs=2)
    jobs._table6_work(request, emit, control)
    kind, end = sent[-1]
    assert kind == "end" and end["status"] == "stopped" and "1 model(s)" in end["message"]
    assert [r.model for r in end["rows"]] == ["dnn"] and end["rows"][0].runs[0]["epochs"] <= 2
    info = next(p["info"] for k, p in sent if k == "set" and "info" in p)
    assert info["d"] == 180 and info["train"]["epochs"] == 2 and sum(info["rows"].values()) > 0
    (file,) = [p for k, p in sent if k == "model"]  # the finished model's weights, as a dcnviz file
    loaded = load_model(file["data"])
    assert file["name"] == "dnn" and loaded.model.config.model == "dnn"
    assert (
        loaded.meta["extra"]["label"] == "dnn · Table 6 #1 on sample"
        and loaded.meta["data_info"]["rows"] == info["rows"]
    )


def test_stopping_says_what_is_kept_a_training_runs_best_model_or_a_labs_finished_fits() -> None:
    from dcnviz.app.jobs import Table6Job, Table6Request

    lab = Table6Job(Table6Request(data=DataOptions(source="sample"), models=("dnn",)))
    train = TrainingJob(TrainRequest(data=DataOptions(source="sample"), model=ModelConfig(), train=TrainConfig()))
    for job in (lab, train):
        job.status = "training"  # as if its worker had started
        job.stop()
    assert lab.snapshot().message == "stopping: ending the current fit (not counted); the finished ones are kept…"
    assert train.snapshot().message == "stopping: finishing the current step and keeping the best model so far…"
    lab._on_message("status", ("training", "training 1 model(s) × 1 run(s)…"))  # a late status keeps the line
    assert lab.snapshot().message.startswith("stopping: ending the current fit")
