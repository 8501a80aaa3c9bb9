"""The one trainer every recipe uses.

A recipe hands the trainer a *task* (:class:`Task`): its training batches for
an epoch, the loss of a batch, an evaluation on held-out data, and the
JSON-able description that goes into checkpoints.  The trainer owns the
rest: Adam, gradient clipping (by norm and/or value, Pascanu et al. 2013),
a learning-rate schedule (decay when the dev metric stalls, or a linear
decay to zero over the run's budget), early stopping, a time budget,
skipping of steps with a non-finite loss or gradient, a progress bar, a CSV
log per epoch and resumable checkpoints.

Run folder:

    last/      model + optimizer + RNG after the latest epoch (resume point)
    best/      model with the best dev metric so far (what eval/predict use)
    log.csv    one row per epoch: train loss, dev metrics, the lr the next epoch
               will use (after this epoch's decay) and the cumulative seconds

Determinism: the batch order of epoch ``e`` is a function of ``(seed, e)``
and the torch RNG state (dropout) is saved with every checkpoint, so a run
that is killed and resumed ends with the same weights as one that was not
(on the same machine and thread count).
"""

from __future__ import annotations

import csv
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from .checkpoint import checkpoint_exists, load_checkpoint, save_checkpoint
from .errors import SeqlabError
from .nn.init import clip_gradients

__all__ = ["TrainConfig", "Task", "Trainer", "TrainResult", "SCHEDULES", "total_train_seconds"]

SCHEDULES = ("plateau", "linear")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by every recipe."""

    epochs: int = 30  # most epochs to run
    lr: float = 2e-3  # Adam learning rate
    weight_decay: float = 0.0  # Adam L2 penalty
    clip_norm: float | None = 5.0  # clip the global gradient norm (None: off)
    clip_value: float | None = None  # clamp each gradient entry (None: off)
    schedule: str = "plateau"  # plateau: decay on stalls / from decay_start; linear: lr -> 0 over the budget
    lr_decay: float = 0.5  # multiply the lr by this when the dev metric stalls (and on schedule)
    lr_patience: int = 0  # epochs without improvement before the lr decays
    decay_start: int = 0  # from this epoch on, decay the lr after every epoch (0: only on stalls)
    min_lr: float = 1e-5  # the lr never decays below this
    patience: int = 4  # stop after this many epochs without improvement
    max_minutes: float | None = None  # time budget: an epoch that would run past it is cut short
    max_bad_steps: int = 20  # stop after this many steps in a row with a non-finite loss or gradient
    seed: int = 1  # everything random derives from it
    threads: int = 0  # torch threads; 0 keeps torch's default
    init_from: str | None = None  # a checkpoint folder of this task: start from its weights (new optimizer, schedule)

    def validate(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay must be in (0, 1], got {self.lr_decay}")
        for name in ("clip_norm", "clip_value", "max_minutes"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0 or null, got {value}")
        if self.patience < 1 or self.lr_patience < 0 or self.decay_start < 0:
            raise ValueError("patience must be >= 1, lr_patience and decay_start >= 0")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r}; valid: {', '.join(SCHEDULES)}")
        if self.max_bad_steps < 1:
            raise ValueError(f"max_bad_steps must be >= 1, got {self.max_bad_steps}")


class Task(Protocol):
    """What the trainer needs from a recipe."""

    metric: str  # key of evaluate()'s result that decides "best"; lower is better

    def train_batches(self, epoch: int) -> list[Any]: ...

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        """Summed loss over the batch and the count it is averaged over."""
        ...

    def evaluate(self, model: nn.Module) -> dict[str, float]: ...

    def meta(self) -> dict[str, Any]:
        """JSON-able description saved with every checkpoint (task, config, vocabularies)."""
        ...


@dataclass
class TrainResult:
    run_dir: Path
    best_metrics: dict[str, float]
    epochs: int
    seconds: float
    stopped: str


def total_train_seconds(meta: dict[str, Any]) -> float:
    """A checkpoint's training time (meta.json), with that of the runs it started from (``init_from``)."""
    return meta.get("train_seconds", 0.0) + (meta.get("init_from") or {}).get("train_seconds", 0.0)


def _optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, slots in state["state"].items():
        for name, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{name}"] = value
            else:
                scalars[f"{index}.{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimizer_from_tensors(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for key, value in meta["scalars"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


class Trainer:
    def __init__(self, model: nn.Module, task: Task, config: TrainConfig, run_dir: str | Path) -> None:
        self.model = model
        self.task = task
        self.config = config
        self.run_dir = Path(run_dir)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.epoch = 0  # epochs completed
        self.best: dict[str, float] | None = None
        self.bad_epochs = 0  # epochs since the best one
        self.stalled = 0  # epochs since the lr last decayed or improved
        self.seconds = 0.0  # training time of the completed epochs
        self.skipped = 0  # steps skipped for a non-finite loss or gradient, whole run
        self.parent: dict[str, Any] | None = None  # init_from's folder and training time, kept in the checkpoints

    # -------------------------------------------------------------- resume

    def resume(self) -> bool:
        """Load ``run_dir/last`` if there is one; True when a run was resumed."""
        last = self.run_dir / "last"
        if not checkpoint_exists(last):
            return False
        tensors, meta, trainer = load_checkpoint(last, with_trainer=True)
        if meta.get("task") != self.task.meta().get("task") or trainer is None:
            raise SeqlabError(f"{last} is not a resumable checkpoint of this task", hint="use a new run folder")
        self.model.load_state_dict(tensors)
        _optimizer_from_tensors(self.optimizer, trainer, meta["trainer"]["optimizer"])
        torch.set_rng_state(trainer["rng.torch"])
        t = meta["trainer"]
        self.epoch, self.best, self.bad_epochs = t["epoch"], t["best"], t["bad_epochs"]
        self.stalled, self.seconds = t["stalled"], t["seconds"]
        self.skipped = t.get("skipped", 0)
        self.parent = meta.get("init_from")
        return True

    def start_from(self, folder: str | Path) -> None:
        """Load the weights of a trained checkpoint of this task (``init_from``) before the first epoch.

        Training goes on from there with a fresh optimizer and schedule: a
        cheap way to train a finished model longer (a warm restart, in the
        sense of Loshchilov & Hutter 2017).  The checkpoints of the new run
        record the folder and its training time (``init_from`` in meta.json).
        """
        tensors, meta, _ = load_checkpoint(folder)
        task = self.task.meta().get("task")
        if meta.get("task") != task:
            raise SeqlabError(f"init_from: {folder} is a {meta.get('task')!r} checkpoint, not a {task!r} one")
        try:
            self.model.load_state_dict(tensors)
        except RuntimeError as err:
            raise SeqlabError(f"init_from: {folder} does not fit this model: {str(err).splitlines()[0]}",
                              hint="use the architecture settings of the run that wrote it") from None
        self.parent = {"path": str(folder), "train_seconds": round(total_train_seconds(meta), 1)}

    def _save(self, folder: str, metrics: dict[str, float], with_trainer: bool) -> None:
        meta = {**self.task.meta(), "metrics": metrics, "epoch": self.epoch, "train_seconds": round(self.seconds, 1)}
        if self.parent is not None:
            meta["init_from"] = self.parent
        trainer_tensors = None
        if with_trainer:
            trainer_tensors, optimizer_meta = _optimizer_to_tensors(self.optimizer)
            trainer_tensors["rng.torch"] = torch.get_rng_state()
            meta["trainer"] = {
                "optimizer": optimizer_meta,
                "epoch": self.epoch,
                "best": self.best,
                "bad_epochs": self.bad_epochs,
                "stalled": self.stalled,
                "seconds": self.seconds,
                "skipped": self.skipped,
            }
        save_checkpoint(self.run_dir / folder, self.model.state_dict(), meta, trainer_tensors)

    # ---------------------------------------------------------------- loop

    def _linear_lr(self, epoch: int, step: int, steps: int, started: float) -> float:
        """The ``linear`` schedule: lr falls linearly to 0 as the run's budget is used up.

        The budget is whichever runs out first, the epochs or ``max_minutes``
        (budgeted training, Li et al. 2020, finds this decay the best use of a
        fixed budget).  A time budget makes the schedule depend on the
        machine's speed; with ``max_minutes: null`` it is a function of the
        step alone, so killed-and-resumed runs stay exact.
        """
        cfg = self.config
        done = (epoch + step / max(steps, 1)) / cfg.epochs
        if cfg.max_minutes is not None:
            elapsed = self.seconds + time.perf_counter() - started
            done = max(done, elapsed / (cfg.max_minutes * 60))
        return max(cfg.min_lr, cfg.lr * (1.0 - min(done, 1.0)))

    def _train_epoch(self, epoch: int, deadline: float | None) -> tuple[float, int, bool]:
        """One pass over the batches: ``(mean loss, tokens, cut short at deadline)``."""
        cfg = self.config
        self.model.train()
        batches = self.task.train_batches(epoch)
        total, count, cut, bad_in_a_row = 0.0, 0, False, 0
        started = time.perf_counter()
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", leave=False, mininterval=1.0)
        for step, batch in enumerate(bar):
            if deadline is not None and time.perf_counter() > deadline:
                cut = True
                break
            if cfg.schedule == "linear":
                lr = self._linear_lr(epoch, step, len(batches), started)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
            loss, n = self.task.loss(self.model, batch)
            self.optimizer.zero_grad(set_to_none=True)
            (loss / max(n, 1)).backward()
            norm = clip_gradients(self.model.parameters(), max_norm=cfg.clip_norm, max_value=cfg.clip_value)
            if not (math.isfinite(float(loss.detach())) and math.isfinite(float(norm))):
                # A non-finite loss or gradient would poison Adam's moments: skip the step.
                self.skipped += 1
                bad_in_a_row += 1
                if bad_in_a_row >= cfg.max_bad_steps:
                    raise SeqlabError(
                        f"training diverged: {bad_in_a_row} steps in a row had a non-finite loss or gradient "
                        f"(epoch {epoch + 1}, step {step + 1})",
                        hint="lower lr, set clip_norm, or resume from the last checkpoint",
                    )
                continue
            bad_in_a_row = 0
            self.optimizer.step()
            total += float(loss.detach())
            count += n
            bar.set_postfix(loss=f"{total / max(count, 1):.3f}", refresh=False)
        bar.close()
        return total / max(count, 1), count, cut

    def fit(self, *, resume: bool = True, log=print) -> TrainResult:
        cfg = self.config
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if not (resume and self.resume()):
            torch.manual_seed(cfg.seed)
            if cfg.init_from:
                self.start_from(cfg.init_from)
        elif self.epoch:
            log(f"resumed {self.run_dir} after epoch {self.epoch}")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.run_dir / "log.csv"
        _trim_csv(log_path, self.epoch)
        stopped = "epochs"
        eval_seconds = 0.0
        while self.epoch < cfg.epochs:
            if self.bad_epochs >= cfg.patience:
                stopped = "early stopping"
                break
            start = time.perf_counter()
            deadline = None
            if cfg.max_minutes is not None:
                # Leave time for the dev evaluation that closes the epoch.
                deadline = start + cfg.max_minutes * 60 - self.seconds - eval_seconds
                if deadline <= start:
                    stopped = "time budget"
                    break
            train_loss, count, cut = self._train_epoch(self.epoch, deadline)
            if count == 0:  # the budget ran out before the first batch
                stopped = "time budget"
                break
            self.model.eval()
            eval_start = time.perf_counter()
            metrics = {k: float(v) for k, v in self.task.evaluate(self.model).items()}
            eval_seconds = time.perf_counter() - eval_start
            self.seconds += time.perf_counter() - start
            self.epoch += 1
            value = metrics[self.task.metric]
            improved = self.best is None or value < self.best[self.task.metric]
            if improved:
                self.best = {**metrics, "epoch": self.epoch}
                self.bad_epochs = self.stalled = 0
            else:
                self.bad_epochs += 1
                self.stalled += 1
            # The classic NMT schedule (Luong et al. 2015, sec. 4.1): a fixed lr, then halving
            # every epoch from decay_start on; a stalled dev metric also halves it.
            scheduled = cfg.decay_start and self.epoch >= cfg.decay_start
            if cfg.schedule == "plateau" and (scheduled or self.stalled > cfg.lr_patience):
                for group in self.optimizer.param_groups:
                    group["lr"] = max(cfg.min_lr, group["lr"] * cfg.lr_decay)
                self.stalled = 0
            lr = self.optimizer.param_groups[0]["lr"]
            row = {"epoch": self.epoch, "train_loss": round(train_loss, 5), **metrics, "lr": lr,
                   "seconds": round(self.seconds, 1), "skipped_steps": self.skipped}
            # The row goes first: a run killed before its checkpoint is saved repeats this epoch on
            # resume, and the resume drops the rows after the checkpoint's epoch (_trim_csv).
            _append_csv(log_path, row)
            if improved:
                self._save("best", metrics, with_trainer=False)
            self._save("last", metrics, with_trainer=True)
            shown = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())
            log(f"epoch {self.epoch}: train loss {train_loss:.4f}  {shown}  lr {lr:.2g}"
                f"{'  (best)' if improved else ''}  [{self.seconds / 60:.1f} min]")
            if cut:
                stopped = "time budget (last epoch cut short)"
                break
        return TrainResult(self.run_dir, self.best or {}, self.epoch, self.seconds, stopped)


def _trim_csv(path: Path, epoch: int) -> None:
    """Drop the log rows of epochs after ``epoch`` (written by a run killed before its checkpoint)."""
    if not path.exists():
        return
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    keep = rows[:1] + [r for r in rows[1:] if r and int(r[0]) <= epoch]
    if len(keep) < len(rows):
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(keep)
        os.replace(tmp, path)


def _append_csv(path: Path, row: dict[str, Any]) -> None:
    new = not path.exists()
    with path.open("a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)
