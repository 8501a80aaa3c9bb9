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

from . import act, g2p, ntm
from . import dmn

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
RECIPES["dmn"] = Recipe(
    dmn.DMNRecipeConfig, dmn.train_dmn, "DMN+ question answering on bAbI-style stories from seqlab's simulator"
)
REPORTS["dmn"] = dmn.report_dmn
RECIPES["ntm-copy"] = Recipe(ntm.CopyConfig, ntm.train_copy, "NTM (or model=lstm) on copy, Graves et al. 2014")
RECIPES["ntm-repeat-copy"] = Recipe(ntm.RepeatCopyConfig, ntm.train_repeat_copy, "NTM (or model=lstm) on repeat copy")
RECIPES["ntm-recall"] = Recipe(ntm.RecallConfig, ntm.train_recall, "NTM (or model=lstm) on associative recall")
RECIPES["act-parity"] = Recipe(act.ParityConfig, act.train_parity, "ACT (or act=false) on 64-bit parity, Graves 2016")
RECIPES["act-addition"] = Recipe(act.AdditionConfig, act.train_addition, "ACT (or act=false) on multi-digit addition")
REPORTS["ntm"] = ntm.report_ntm
REPORTS["act"] = act.report_act

TASKS = {"g2p": g2p}
"""Tasks with a model that ``seqlab eval`` / ``predict`` can load: name -> module."""
