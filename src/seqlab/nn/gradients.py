"""How a loss's gradient flows back through time: the notes' vanishing and exploding gradients.

For a loss ``L`` at the last step ``T`` of a recurrence ``h_t = f(h_{t-1}, x_t)``,

    dL/dh_t = dL/dh_T · prod_{k=t+1..T} ∂h_k/∂h_{k-1}

a product of ``T - t`` Jacobians: when their norms stay below 1 the gradient
shrinks geometrically with the distance to ``T`` (vanishing), above 1 it grows
(exploding) (Bengio, Simard & Frasconi 1994; Pascanu, Mikolov & Bengio 2013,
sec. 2).  :func:`step_gradient_norms` measures ``||dL/dh_t||`` at every step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .cells import RecurrentCell

__all__ = ["step_gradient_norms"]


def step_gradient_norms(cell: RecurrentCell, x: Tensor, *, seed: int = 0) -> Tensor:
    """``(T,)``: the mean over the batch of ``||dL/dh_t||_2`` for ``x (T, B, I)`` run through ``cell``
    from a zero state, with ``L = <h_T, u>`` for a fixed random unit vector ``u`` per row (so that
    ``||dL/dh_T|| = 1``).  Runs the cell's own step loop, not a fused kernel: the kernels keep no
    per-step hidden gradients.  ``h_t`` is the first tensor of the cell's state."""
    if x.dim() != 3 or x.shape[0] == 0:
        raise ValueError(f"expected x (T, B, I) with T >= 1, got shape {tuple(x.shape)}")
    T, B, _ = x.shape
    state = cell.init_state(B, x)
    hs = []
    with torch.enable_grad():
        xp = cell.project(x)  # (T, B, G)
        for t in range(T):
            state = cell.step(xp[t], state)
            h = state[0]
            h.retain_grad()
            hs.append(h)
        g = torch.Generator().manual_seed(seed)
        u = torch.randn(B, hs[-1].shape[1], generator=g, dtype=x.dtype).to(x.device)
        u = u / u.norm(dim=1, keepdim=True)
        (hs[-1] * u).sum().backward(inputs=hs)
    # A state that does not feed the next step (SRU's h: only c is recurrent) gets no gradient: 0.
    return torch.stack([h.grad.norm(dim=1).mean() if h.grad is not None else h.new_zeros(()) for h in hs]).detach()
