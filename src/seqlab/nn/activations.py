"""Activations the notes cover beyond torch's: Maxout, and a counter of dead ReLU units.

torch has Leaky ReLU, PReLU, RReLU and ELU (``nn.LeakyReLU``, ...); seqlab uses
those.  Maxout (Goodfellow et al. 2013, "Maxout Networks", sec. 3) takes the
largest of ``k`` affine pieces per output unit:

    h_i(x) = max_{j in 1..k} z_ij,    z_ij = x W_ij + b_ij

so the unit learns a convex piecewise-linear activation of its own.  A ReLU
unit is *dead* when it outputs 0 for every input: its gradient is then 0 too
and it never recovers (the "dying ReLU" problem that Leaky ReLU, PReLU and ELU
address); :class:`DeadReLUCounter` finds such units by watching a model's
``nn.ReLU`` outputs over some batches.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["Maxout", "maxout", "DeadReLUCounter"]


def maxout(x: Tensor, pieces: int, dim: int = -1) -> Tensor:
    """The largest of each group of ``pieces`` consecutive features along ``dim``:
    ``(..., n * pieces, ...) -> (..., n, ...)``."""
    size = x.shape[dim]
    if pieces < 1 or size % pieces:
        raise ValueError(f"dim {dim} of size {size} does not split into groups of {pieces} pieces")
    dim = dim % x.dim()
    shape = (*x.shape[:dim], size // pieces, pieces, *x.shape[dim + 1:])
    return x.reshape(shape).amax(dim + 1)


class Maxout(nn.Module):
    """``in_features -> out_features`` units, each the max of ``pieces`` affine maps of the input."""

    def __init__(self, in_features: int, out_features: int, pieces: int = 2, *, bias: bool = True) -> None:
        super().__init__()
        if pieces < 1:
            raise ValueError(f"pieces must be >= 1, got {pieces}")
        self.pieces = pieces
        self.linear = nn.Linear(in_features, out_features * pieces, bias=bias)  # unit i: rows i k .. i k + k - 1

    def forward(self, x: Tensor) -> Tensor:
        return maxout(self.linear(x), self.pieces)  # (..., out_features)


class DeadReLUCounter:
    """Which units of a model's ``nn.ReLU`` layers never fire, over the batches run while it watches.

    ``with DeadReLUCounter(model) as counter: model(batch) ...`` then ``counter.dead()`` gives, per
    ReLU module name, the fraction of its units that output 0 for every sample and position seen.
    A unit is one index along ``unit_dim`` (features of a Linear layer's output, channels of a
    convolution's, with ``unit_dim=1``); ReLUs called as functions are not seen.
    """

    def __init__(self, model: nn.Module, *, unit_dim: int = 1) -> None:
        self.unit_dim = unit_dim
        self.fired: dict[str, Tensor] = {}  # module name -> (units,) bool: fired at least once
        self._hooks = [module.register_forward_hook(self._watch(name))
                       for name, module in model.named_modules() if isinstance(module, nn.ReLU)]
        if not self._hooks:
            raise ValueError("the model has no nn.ReLU module to watch")

    def _watch(self, name: str):
        def hook(module: nn.Module, inputs, output: Tensor) -> None:
            with torch.no_grad():
                dim = self.unit_dim % output.dim()
                other = [d for d in range(output.dim()) if d != dim]
                fired = (output > 0).any(dim=other) if other else output > 0  # (units,)
            seen = self.fired.get(name)
            self.fired[name] = fired if seen is None else seen | fired

        return hook

    def dead(self) -> dict[str, float]:
        """Per watched ReLU that has run: the fraction of its units that never fired."""
        return {name: 1.0 - float(fired.float().mean()) for name, fired in self.fired.items()}

    def close(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def __enter__(self) -> DeadReLUCounter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
