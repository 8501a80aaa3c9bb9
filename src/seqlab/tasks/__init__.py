"""Recipes: one module per task.

The CLI finds what ``seqlab train NAME`` runs in :data:`RECIPES` and what
``seqlab report NAME`` writes in :data:`REPORTS`; a task module registers its
entries here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import g2p

__all__ = ["Recipe", "RECIPES", "REPORTS", "TASKS", "g2p"]


@dataclass(frozen=True)
class Recipe:
    """One trainable recipe: its config class and its training entry point.

    ``train(config, run_dir, *, resume=True, log=print) -> seqlab.train.TrainResult``;
    ``config`` is a frozen dataclass with ``validate()`` that
    :func:`seqlab.config.load_config` fills from YAML and ``key=value`` overrides.
    """

    config: type
    train: Callable[..., Any]
    summary: str


RECIPES: dict[str, Recipe] = {
    "g2p": Recipe(g2p.G2PConfig, g2p.train_g2p, "grapheme-to-phoneme conversion on CMUdict (the main job)"),
}
"""Recipe registry: name -> :class:`Recipe`."""

REPORTS: dict[str, Callable[[Path, Path], list[Path]]] = {}
"""Result writers: name -> ``report(runs_dir, out_dir) -> files written`` (docs/results/NAME.md and plots)."""

TASKS = {"g2p": g2p}
"""Tasks with a model that ``seqlab eval`` / ``predict`` can load: name -> module."""
