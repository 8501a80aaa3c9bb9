"""Plots written to PNG files (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["attention_heatmaps", "line_plot", "pyplot"]


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend: files only, no display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def line_plot(
    path: str | Path,
    lines: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    log_y: bool = False,
    xticks: Sequence[float] | None = None,
    marker: str | None = None,
) -> Path:
    """One chart of labelled lines ``(label, xs, ys)`` with a grid and a legend, saved as PNG."""
    plt = pyplot()
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for label, xs, ys in lines:
        ax.plot(xs, ys, marker=marker, label=label)
    if log_y:
        ax.set_yscale("log")
    if xticks is not None:
        ax.set_xticks(list(xticks))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def attention_heatmaps(
    items: Sequence[tuple[Sequence[str], Sequence[str], torch.Tensor]],
    path: str | Path,
    *,
    title: str | None = None,
) -> Path:
    """One heatmap per ``(source labels, target labels, weights (T, S))``, side by side, saved as PNG.

    Columns are the source symbols (letters), rows the output symbols
    (phones), darker cells more attention.
    """
    plt = pyplot()
    path = Path(path)
    n = len(items)
    width = sum(max(2.2, 0.45 * len(src) + 1.2) for src, _, _ in items)
    height = max(2.5, 0.4 * max(len(tgt) for _, tgt, _ in items) + 1.4)
    fig, axes = plt.subplots(1, n, figsize=(width, height), squeeze=False)
    for ax, (src, tgt, weights) in zip(axes[0], items):
        ax.imshow(weights.detach().cpu().numpy(), cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(len(src)), labels=list(src))
        ax.set_yticks(range(len(tgt)), labels=list(tgt))
        ax.tick_params(length=0)
        ax.set_xlabel("letters")
        ax.set_ylabel("phones")
        ax.set_title("".join(src))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
