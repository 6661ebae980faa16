"""Training faults (issue 7), as the CLI and the app's training job see them, beyond tests/test_train.py
and tests/commands/test_train.py.

* A non-finite loss in ``python -m dcnviz train`` exits with the fault code and a message, and the
  file it saves is the last good model (finite, equal to the best epoch's weights); in the app's
  training job it ends as a finished run whose model is the last good one.
* CUDA out-of-memory (simulated: ``torch.cuda.OutOfMemoryError`` is constructible on CPU builds)
  gives a message suggesting a smaller batch on the CLI and in the app's job, and writes no file.

Interrupted writes of the model file: ``tests/test_checkpoint.py``; a download corrupted in transit:
``tests/test_download.py``.
"""

from __future__ import annotations

import pytest
import torch

import dcnviz.commands.train
import dcnviz.data
import dcnviz.train
from dcnviz.checkpoint import load_model
from dcnviz.cli import main
from dcnviz.data import SAMPLE_DIR, DataOptions
from dcnviz.model import DCNModel, ModelConfig
from dcnviz.train import TrainConfig

needs_sample = pytest.mark.skipif(not (SAMPLE_DIR / "ratings.dat").is_file(), reason="sample_data/ not generated")
TINY = ["--hidden", "8", "--embedding-dim", "2", "--batch-size", "512", "--lr", "0.01", "--device", "cpu", "--quiet"]


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
