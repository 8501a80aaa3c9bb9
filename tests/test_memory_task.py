"""Every cell must learn to carry information across time.

Task: the first step shows one of 4 symbols, then 15 steps of random
distractor symbols follow; from the last output the model must name the
first symbol.  Chance is 25%.
"""

import pytest
import torch
from torch import nn

from seqlab.nn import CELLS, Recurrent, init

SYMBOLS, DISTRACTORS, DELAY = 4, 4, 15


def _batch(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    target = torch.randint(SYMBOLS, (n,), generator=generator)
    noise = torch.randint(DISTRACTORS, (DELAY, n), generator=generator) + SYMBOLS
    ids = torch.cat([target.unsqueeze(0), noise])  # (T, B)
    return nn.functional.one_hot(ids, SYMBOLS + DISTRACTORS).float(), target


class _Recall(nn.Module):
    def __init__(self, cell: str) -> None:
        super().__init__()
        self.rnn = Recurrent(cell, SYMBOLS + DISTRACTORS, 32)
        self.head = nn.Linear(32, SYMBOLS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output, _ = self.rnn(x)
        return self.head(output[-1])


@pytest.mark.parametrize("cell", list(CELLS))
def test_cell_learns_delayed_recall(cell: str) -> None:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    model = _Recall(cell)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(800):
        x, y = _batch(64, generator)
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        init.clip_gradients(model.parameters(), max_norm=1.0)
        optimizer.step()
        if step % 50 == 49 and loss.item() < 0.05:
            break
    x, y = _batch(1000, torch.Generator().manual_seed(2))
    with torch.no_grad():
        accuracy = (model(x).argmax(-1) == y).float().mean().item()
    assert accuracy > 0.9, f"{cell}: {accuracy:.1%} after {step + 1} steps"
