"""Training faults and interrupted writes (issue 7), beyond tests/test_train.py and tests/test_cli_train.py.

* A process killed with SIGKILL in the middle of :func:`dcnviz.checkpoint.save_model`, many times
  over, never leaves a half-written model file: the target is absent or a complete earlier file. A
  control run with a naive ``open(path, "wb").write`` under the same kills does leave torn files,
  so the harness can tell the difference.
* A write that fails midway (disk full at ``write``, ``fsync`` or ``rename``) leaves the previous
  file untouched and no temporary file.
* A non-finite loss in ``python -m dcnviz train`` exits with the fault code and a message, and the
  file it saves is the last good model (finite, equal to the best epoch's weights); in the app's
  training job it ends as a finished run whose model is the last good one.
* CUDA out-of-memory (simulated: ``torch.cuda.OutOfMemoryError`` is constructible on CPU builds)
  gives a message suggesting a smaller batch on the CLI and in the app's job, and writes no file.
* A download whose bytes were corrupted in transit fails its MD5 check and is removed.
"""

from __future__ import annotations

import errno
import hashlib
import multiprocessing
import os
import random
import signal
import sys
import time
from pathlib import Path

import pytest
import torch

import dcnviz.commands.train
import dcnviz.data
import dcnviz.train
from dcnviz import checkpoint
from dcnviz.checkpoint import load_model, model_to_bytes, save_model
from dcnviz.cli import main
from dcnviz.data import SAMPLE_DIR, DataOptions
from dcnviz.errors import DownloadError
from dcnviz.model import DCNModel, ModelConfig
from dcnviz.spec import FeatureSpec, Field
from dcnviz.train import TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))

needs_sample = pytest.mark.skipif(not (SAMPLE_DIR / "ratings.dat").is_file(), reason="sample_data/ not generated")
TINY = ["--hidden", "8", "--embedding-dim", "2", "--batch-size", "512", "--lr", "0.01", "--device", "cpu", "--quiet"]


def wide_model(seed: int) -> DCNModel:
    """A model whose file is ~4 MB, so that writing it takes long enough to be interrupted."""
    torch.manual_seed(seed)
    spec = FeatureSpec(tuple(Field(name=f"f{i}", kind="dense", embedding_dim=1) for i in range(400)))
    return DCNModel(spec, ModelConfig(model="crossnet", cross_layers=3))


# --- SIGKILL in the middle of a save ------------------------------------------------------------


def _save_forever(target: str, kind: str, files: list[bytes]) -> None:  # runs in a forked child
    i = 0
    while True:
        data = files[i % len(files)]
        if kind == "atomic":
            checkpoint.write_atomic(target, data)
        else:
            with open(target, "wb") as f:  # the naive way: truncate, then write in place
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        i += 1


def _kill_during_saves(tmp_path: Path, kind: str, rounds: int, seed: int, until_torn: bool = False) -> dict[str, int]:
    """Fork a child that saves in a loop, SIGKILL it at a random moment, inspect the target; repeat."""
    files = [model_to_bytes(wide_model(s)) for s in (1, 2)]
    complete = {hashlib.sha256(f).hexdigest() for f in files}
    target = tmp_path / f"{kind}.safetensors"
    ctx = multiprocessing.get_context("fork")
    rng = random.Random(seed)
    seen = {"absent": 0, "complete": 0, "torn": 0, "temp_left": 0}
    for _ in range(rounds):
        child = ctx.Process(target=_save_forever, args=(str(target), kind, files), daemon=True)
        child.start()
        time.sleep(rng.uniform(0.01, 0.25))
        assert child.pid is not None
        os.kill(child.pid, signal.SIGKILL)
        child.join(10)
        if not target.exists():
            seen["absent"] += 1
        elif hashlib.sha256(target.read_bytes()).hexdigest() in complete:
            if not seen["complete"]:
                load_model(target)  # byte-identical to a saved file, and that file is a valid model
            seen["complete"] += 1
        else:
            seen["torn"] += 1
        temps = list(tmp_path.glob(f".{target.name}.*.tmp"))
        seen["temp_left"] += bool(temps)
        for t in temps:  # a stray temporary file is all a kill can leave; its name never ends in .safetensors
            assert not t.name.endswith(".safetensors")
            t.unlink()
        if until_torn and seen["torn"]:
            break
    return seen


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_sigkill_mid_save_never_leaves_a_half_written_file(tmp_path):
    seen = _kill_during_saves(tmp_path, "atomic", rounds=20, seed=0)
    print("SIGKILL during save_model:", seen)
    assert seen["torn"] == 0, seen
    assert seen["complete"] > 0, seen
    assert seen["temp_left"] > 0, f"no kill landed inside a write, so this run proved nothing: {seen}"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_the_kill_harness_does_catch_a_non_atomic_writer(tmp_path):
    """Control: the same kills against a truncate-and-write saver leave torn (partial) files."""
    seen = _kill_during_saves(tmp_path, "naive", rounds=60, seed=0, until_torn=True)
    print("SIGKILL during a naive write:", seen)
    assert seen["torn"] > 0, seen


# --- a write that fails midway -----------------------------------------------------------------------


class _HalfWriter:
    """A file object whose write stores half the bytes, then fails as a full disk would."""

    def __init__(self, f) -> None:  # type: ignore[no-untyped-def]
        self.f = f

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *exc: object) -> None:
        self.f.close()

    def write(self, data: bytes) -> int:
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["write", "fsync", "rename"])
def test_a_save_that_fails_midway_keeps_the_previous_file(tmp_path, monkeypatch, where):
    target = tmp_path / "m.safetensors"
    save_model(target, DCNModel(FeatureSpec((Field(name="y", kind="dense", embedding_dim=1),)), ModelConfig()))
    before = target.read_bytes()
    real_fdopen = os.fdopen

    def fail(*a, **k):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device")

    if where == "write":
        monkeypatch.setattr(checkpoint.os, "fdopen", lambda *a, **k: _HalfWriter(real_fdopen(*a, **k)))
    elif where == "fsync":
        monkeypatch.setattr(checkpoint.os, "fsync", fail)
    else:
        monkeypatch.setattr(checkpoint.os, "replace", fail)
    other = wide_model(3)
    with pytest.raises(OSError, match="No space left on device"):
        save_model(target, other)
    assert target.read_bytes() == before
    load_model(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"], "no temporary file is left"


# --- a non-finite loss -------------------------------------------------------------------------------


def _nan_loss_after(monkeypatch: pytest.MonkeyPatch, n_steps: int) -> dict[str, int]:
    """From training step ``n_steps + 1`` on, the loss is NaN (as a diverging run's would be)."""
    real = torch.nn.functional.binary_cross_entropy_with_logits
    calls = {"train": 0}

    def loss(logits, y, *a, **k):  # type: ignore[no-untyped-def]
        out = real(logits, y, *a, **k)
        if torch.is_grad_enabled() and logits.requires_grad:  # training steps only; evaluation stays real
            calls["train"] += 1
            if calls["train"] > n_steps:
                return out * float("nan")
        return out

    monkeypatch.setattr(dcnviz.train.F, "binary_cross_entropy_with_logits", loss)
    return calls


def _params_finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.state_dict().values())


@needs_sample
def test_cli_nan_loss_exits_with_a_message_and_saves_the_last_good_model(tmp_path, monkeypatch, capsys):
    out = tmp_path / "m.safetensors"
    options = DataOptions(source="sample")
    splits = dcnviz.data.load_splits(options)
    steps_per_epoch = -(-splits.info["rows"]["train"] // 512)
    _nan_loss_after(monkeypatch, steps_per_epoch + 2)  # epoch 1 is clean; epoch 2 diverges
    rc = main(["train", "--data", "sample", "--epochs", "4", "--patience", "4", *TINY, "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == dcnviz.commands.train.EXIT_FAULT
    assert "error: training stopped on a fault:" in captured.err and "non-finite" in captured.err
    assert "Traceback" not in captured.err
    loaded = load_model(out)
    assert _params_finite(loaded.model)
    assert loaded.meta["metrics"]["best_epoch"] == 1 and loaded.meta["metrics"]["stopped"] == "fault"
    assert not loaded.warnings  # no NaN/Inf in the file
    # the saved weights are the epoch-1 weights: their validation log loss is epoch 1's
    val = dcnviz.train.evaluate(loaded.model, splits.val)["logloss"]
    assert val == pytest.approx(loaded.meta["history"][0]["val"]["logloss"], abs=1e-6)
    assert not list(tmp_path.glob(".*.tmp"))


@needs_sample
def test_app_training_job_with_nan_loss_keeps_the_last_good_model(monkeypatch):
    from dcnviz.app.jobs import TrainingJob, TrainRequest, wait

    splits = dcnviz.data.load_splits(DataOptions(source="sample"))
    _nan_loss_after(monkeypatch, -(-splits.info["rows"]["train"] // 512) + 2)
    req = TrainRequest(
        data=DataOptions(source="sample", embedding_dim=2),
        model=ModelConfig(hidden=(8,)),
        train=TrainConfig(epochs=4, patience=4, batch_size=512, lr=0.01, device="cpu"),
    )
    snap = wait(TrainingJob(req, isolate=False).start(), timeout=300)  # in-process: the test patches the trainer
    assert snap.status == "done", (snap.status, snap.error)
    assert snap.message.startswith("training stopped on a fault:") and "non-finite" in snap.message
    assert snap.model_bytes is not None
    loaded = load_model(snap.model_bytes)
    assert _params_finite(loaded.model) and loaded.meta["metrics"]["best_epoch"] == 1


# --- CUDA out of memory ------------------------------------------------------------------------------


def _oom_on_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self, *a, **k):  # type: ignore[no-untyped-def]
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(DCNModel, "forward", boom)


def test_out_of_memory_error_is_constructible_on_cpu_builds():
    assert issubclass(torch.cuda.OutOfMemoryError, RuntimeError)
    assert "Tried" in str(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB"))


@needs_sample
def test_cli_out_of_memory_suggests_a_smaller_batch_and_writes_nothing(tmp_path, monkeypatch, capsys):
    _oom_on_forward(monkeypatch)
    out = tmp_path / "m.safetensors"
    rc = main(["train", "--data", "sample", "--epochs", "1", *TINY, "--out", str(out)])
    err = capsys.readouterr().err
    assert rc != 0
    assert "out of memory on cpu at batch size 512; try a smaller batch, e.g. --batch-size 256" in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@needs_sample
def test_app_training_job_out_of_memory_fails_with_the_batch_hint(monkeypatch):
    from dcnviz.app.jobs import TrainingJob, TrainRequest, wait

    _oom_on_forward(monkeypatch)
    req = TrainRequest(
        data=DataOptions(source="sample", embedding_dim=2),
        model=ModelConfig(hidden=(8,)),
        train=TrainConfig(epochs=1, batch_size=4096, device="cpu"),
    )
    snap = wait(TrainingJob(req, isolate=False).start(), timeout=300)  # in-process: the test patches the trainer
    assert snap.status == "failed" and snap.model_bytes is None
    assert snap.error is not None and "try a smaller batch, e.g. --batch-size 2048" in snap.error


# --- a download corrupted in transit -------------------------------------------------------------------


def test_download_corrupted_in_transit_fails_the_checksum_and_is_removed(tmp_path):
    from test_download import Server, good_members, make_zip

    from dcnviz import download as dl

    good = make_zip(good_members())
    bad = bytearray(good)
    bad[len(bad) // 3] ^= 0x01  # one bit flipped somewhere in the compressed data
    server = Server()
    try:
        server.routes["/ml-100k.zip"] = bytes(bad)
        md5 = hashlib.md5(good, usedforsecurity=False).hexdigest()
        with pytest.raises(DownloadError, match=rf"checksum mismatch .* expected MD5 {md5}, got [0-9a-f]{{32}}"):
            dl.download_dataset("ml-100k", tmp_path, url=server.url("/ml-100k.zip"), md5=md5)
    finally:
        server.close()
    assert list(tmp_path.iterdir()) == [], "neither the corrupt zip nor a partial folder is left"
