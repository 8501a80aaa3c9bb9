"""Recipes: one module per task.  The CLI looks tasks up in :data:`TASKS`."""

from . import g2p

TASKS = {"g2p": g2p}
"""Task registry: name -> recipe module (``<Task>Config``, ``train_<task>``, ...)."""

__all__ = ["TASKS", "g2p"]
