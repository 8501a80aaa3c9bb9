"""Plots written to PNG files (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["attention_heatmaps"]


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
