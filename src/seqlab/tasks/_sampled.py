"""The trainer's view of a recipe whose data a seeded generator draws (the NTM and ACT tasks)."""

from __future__ import annotations

import abc
from dataclasses import asdict
from typing import Any

import torch

__all__ = ["SampledTask"]


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
