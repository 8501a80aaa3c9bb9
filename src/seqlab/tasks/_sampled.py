"""The trainer's view of a recipe whose data a seeded generator draws (the NTM and ACT tasks)."""

from __future__ import annotations

import abc
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..checkpoint import load_checkpoint
from ..config import config_from_dict
from ..errors import SeqlabError

__all__ = ["SampledTask", "load_best"]


class SampledTask(abc.ABC):
    """Fresh training batches every epoch from ``sample``, a fixed evaluation set, the sequences seen.

    Subclasses set ``name``, ``input_size``, ``output_size``, ``metric`` and
    ``eval_seed`` (the evaluation set is the same for every run and seed),
    and define ``sample``, ``loss`` and ``evaluate``.
    """

    name: str
    input_size: int
    output_size: int
    eval_seed: int

    def __init__(self, config: Any) -> None:
        self.config = config
        self.sequences = 0  # training sequences seen so far (restored on resume by the train function)
        self.eval_set = self._eval_set(torch.Generator().manual_seed(self.eval_seed))

    def _eval_set(self, g: torch.Generator) -> list:
        """The fixed evaluation batches: ``eval_batches`` of ``eval_batch_size``."""
        return [self.sample(g, self.config.eval_batch_size) for _ in range(self.config.eval_batches)]

    @abc.abstractmethod
    def sample(self, g: torch.Generator, batch: int):
        """One batch from the training distribution."""

    def train_batches(self, epoch: int) -> list:
        g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        return [self.sample(g, self.config.batch_size) for _ in range(self.config.batches_per_epoch)]

    def meta(self) -> dict[str, Any]:
        return {"task": self.name, "config": asdict(self.config),
                "input_size": self.input_size, "output_size": self.output_size}


def load_best(folder: Path, task_classes: dict[str, tuple[type, type]]) -> tuple[nn.Module, SampledTask, dict]:
    """``(model in eval mode, task, meta)`` of a run's best checkpoint, rebuilt from the config saved with it.

    ``task_classes``: task name -> (config class, task class) of the recipes the caller accepts.
    """
    tensors, meta, _ = load_checkpoint(folder / "best")
    if meta.get("task") not in task_classes:
        raise SeqlabError(f"{folder} is a {meta.get('task')!r} run, not one of {', '.join(task_classes)}")
    config_cls, task_cls = task_classes[meta["task"]]
    task = task_cls(config_from_dict(config_cls, meta["config"], source=f"{folder}/best/meta.json"))
    model = task.build_model()
    try:
        model.load_state_dict(tensors)
    except RuntimeError as err:
        raise SeqlabError(f"checkpoint {folder}/best does not match its config: {str(err).splitlines()[0]}") from None
    return model.eval(), task, meta
