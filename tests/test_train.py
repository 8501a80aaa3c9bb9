"""The trainer: resume gives identical weights, checkpoints hold what they should."""

import json

import torch

from seqlab.train import Trainer


def _run(task, run_dir, resume=True):
    torch.manual_seed(task.config.seed)
    model = task.build_model()
    result = Trainer(model, task, task.config, run_dir).fit(resume=resume, log=lambda *_: None)
    return model, result


def test_resume_continues_to_identical_weights(tiny_task, tmp_path):
    straight, _ = _run(tiny_task(epochs=3), tmp_path / "straight")
    _run(tiny_task(epochs=1), tmp_path / "interrupted")
    resumed, result = _run(tiny_task(epochs=3), tmp_path / "interrupted")
    assert result.epochs == 3
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    rows = (tmp_path / "interrupted" / "log.csv").read_text().splitlines()
    assert len(rows) == 4  # header + one row per epoch, none repeated


def test_run_folder_layout(tiny_task, tmp_path):
    _, result = _run(tiny_task(epochs=2), tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "best" / "meta.json").read_text())
    assert meta["task"] == "g2p" and meta["config"]["epochs"] == 2
    assert set(meta["metrics"]) == {"wer", "per"}
    assert (tmp_path / "run" / "last" / "trainer.safetensors").is_file()
    assert not (tmp_path / "run" / "best" / "trainer.safetensors").exists()
    assert result.best_metrics["wer"] <= 1.0


def test_training_learns_the_synthetic_rule(tiny_task, tmp_path):
    _, result = _run(tiny_task(epochs=15, patience=15), tmp_path / "run")
    assert result.best_metrics["wer"] < 0.6 and result.best_metrics["per"] < 0.3, result.best_metrics


def test_scheduled_decay_halves_the_lr_every_epoch(tiny_task, tmp_path):
    _run(tiny_task(epochs=3, decay_start=1, lr_decay=0.5, lr=8e-3, patience=5), tmp_path / "run")
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()[1:]
    lrs = [float(row.split(",")[-2]) for row in rows]
    assert lrs == [4e-3, 2e-3, 1e-3]


def test_time_budget_cuts_the_epoch_and_still_evaluates(tiny_task, tmp_path):
    _, result = _run(tiny_task(epochs=50, max_minutes=0.002), tmp_path / "run")
    assert result.stopped.startswith("time budget") and result.epochs == 1
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()
