"""The trainer: resume gives identical weights, checkpoints hold what they should."""

import csv
import json

import pytest
import torch

from seqlab.checkpoint import load_checkpoint
from seqlab.errors import SeqlabError
from seqlab.train import Trainer, total_train_seconds


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


def test_resume_drops_log_rows_written_after_the_last_checkpoint(tiny_task, tmp_path):
    _run(tiny_task(epochs=1), tmp_path / "run")
    log = tmp_path / "run" / "log.csv"
    header, row = log.read_text().splitlines()
    log.write_text(f"{header}\n{row}\n2{row[1:]}\n")  # killed after logging epoch 2, before its checkpoint
    _run(tiny_task(epochs=3), tmp_path / "run")
    assert _logged(tmp_path / "run", "epoch") == [1, 2, 3]


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
    assert _logged(tmp_path / "run", "lr") == [4e-3, 2e-3, 1e-3]


def _logged(run_dir, column):
    with (run_dir / "log.csv").open() as f:
        return [float(row[column]) for row in csv.DictReader(f)]


def test_linear_schedule_falls_to_zero_over_the_epochs(tiny_task, tmp_path):
    task = tiny_task(epochs=4, schedule="linear", lr=8e-3, min_lr=0.0, patience=5)
    _run(task, tmp_path / "run")
    steps = len(task.train_batches(0))
    # The lr logged after epoch e is the one its last step used.
    expected = [8e-3 * (1 - (e + (steps - 1) / steps) / 4) for e in range(4)]
    assert _logged(tmp_path / "run", "lr") == pytest.approx(expected)


class _PoisonedTask:
    """Wraps a task so that chosen steps produce a NaN loss."""

    def __init__(self, task, bad_steps):
        self.task, self.bad_steps, self.calls = task, set(bad_steps), 0
        self.metric, self.config = task.metric, task.config

    def __getattr__(self, name):
        return getattr(self.task, name)

    def loss(self, model, batch):
        loss, n = self.task.loss(model, batch)
        self.calls += 1
        return (loss * float("nan") if self.calls in self.bad_steps else loss), n


def test_non_finite_steps_are_skipped_and_counted(tiny_task, tmp_path):
    task = _PoisonedTask(tiny_task(epochs=2), bad_steps={2, 3, 7})
    model, result = _run(task, tmp_path / "run")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert _logged(tmp_path / "run", "skipped_steps")[-1] == 3
    assert result.epochs == 2


def test_too_many_non_finite_steps_in_a_row_stop_with_a_message(tiny_task, tmp_path):
    task = _PoisonedTask(tiny_task(epochs=2, max_bad_steps=3), bad_steps={4, 5, 6})
    with pytest.raises(SeqlabError, match="3 steps in a row"):
        _run(task, tmp_path / "run")


def test_time_budget_cuts_the_epoch_and_still_evaluates(tiny_task, tmp_path):
    _, result = _run(tiny_task(epochs=50, max_minutes=0.002), tmp_path / "run")
    # Which epoch the 0.12 s budget cuts depends on the machine's speed (on a fast one the first
    # epoch fits); the run stops on the budget well before its 50 epochs, with an evaluated best.
    assert result.stopped.startswith("time budget") and 1 <= result.epochs < 50
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()


def test_init_from_starts_at_the_checkpoint_weights_and_records_it(tiny_task, tmp_path):
    _run(tiny_task(epochs=2), tmp_path / "parent")
    parent_tensors, parent_meta, _ = load_checkpoint(tmp_path / "parent" / "best")
    task = tiny_task(epochs=1, init_from=str(tmp_path / "parent" / "best"))
    torch.manual_seed(5)
    child = task.build_model()
    trainer = Trainer(child, task, task.config, tmp_path / "child")
    trainer.start_from(task.config.init_from)
    for name, value in child.state_dict().items():
        assert torch.equal(value, parent_tensors[name]), name
    trainer.fit(resume=False, log=lambda *_: None)
    meta = json.loads((tmp_path / "child" / "last" / "meta.json").read_text())
    assert meta["init_from"] == {"path": str(tmp_path / "parent" / "best"),
                                 "train_seconds": parent_meta["train_seconds"]}
    assert total_train_seconds(meta) == pytest.approx(meta["train_seconds"] + parent_meta["train_seconds"])


def test_init_from_weights_change_the_first_epoch(tiny_task, tmp_path):
    # From a trained parent the child's first epoch scores far better than from scratch.
    _, trained = _run(tiny_task(epochs=12, patience=12), tmp_path / "parent")
    _, scratch = _run(tiny_task(epochs=1), tmp_path / "scratch")
    _, child = _run(tiny_task(epochs=1, init_from=str(tmp_path / "parent" / "best"), lr=1e-4), tmp_path / "child")
    assert child.best_metrics["wer"] < scratch.best_metrics["wer"]
    assert child.best_metrics["wer"] <= trained.best_metrics["wer"] + 0.1


def test_init_from_a_checkpoint_of_another_shape_is_refused(tiny_task, tmp_path):
    _run(tiny_task(epochs=1), tmp_path / "parent")
    with pytest.raises(SeqlabError, match="does not fit this model"):
        _run(tiny_task(epochs=1, enc_hidden=24, init_from=str(tmp_path / "parent" / "best")), tmp_path / "child")
