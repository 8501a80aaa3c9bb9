"""Adaptive Computation Time (Graves 2016, "Adaptive Computation Time for Recurrent Neural Networks",
arXiv:1603.08983).

ACT lets a recurrent network take a variable number ``N(t)`` of internal
"ponder" steps for each input ``x_t`` before it moves on (sec. 2):

    s_t^n = S(s_t^{n-1}, x_t^n),   s_t^0 = s_{t-1},   x_t^n = [x_t, δ(n = 1)]        (eqs. 6-7)
    h_t^n = σ(W_h s_t^n + b_h)                                        halting unit  (eq. 6)
    N(t)  = min{ n' : sum_{n<=n'} h_t^n >= 1 - ε },  at most M                      (eq. 8)
    R(t)  = 1 - sum_{n<N(t)} h_t^n                                    remainder     (eq. 9)
    p_t^n = h_t^n for n < N(t),  R(t) for n = N(t)                                   (eq. 10)
    s_t   = sum_n p_t^n s_t^n                                          mean field   (eq. 11)

The output of the step is computed from ``s_t``; since the paper's output
layer ``y_t^n = W_y s_t^n + b_y`` is linear, a linear layer on the
mean-field ``h`` equals its eq. 12 ``y_t = sum_n p_t^n y_t^n``.  Every part
of the state is averaged (``h`` and ``c`` for an LSTM, as the paper does).

The ponder cost of a sequence is ``P = sum_t ρ_t`` with ``ρ_t = N(t) + R(t)``
(eqs. 13-14); training minimises ``L + τ P`` (eq. 15).  ``N(t)`` is
piecewise constant, so the gradient of ``P`` flows through ``R(t)`` alone.

Notation: ``T`` time, ``B`` batch, ``I`` input size, ``H`` hidden size.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..nn import CELLS, RecurrentCell

__all__ = ["ACT", "ACTCell", "Ponder"]

State = tuple[Tensor, ...]


class Ponder(NamedTuple):
    """Ponder statistics of a sequence, one entry per input step."""

    cost: Tensor  # (T, B) ρ_t = N(t) + R(t), eq. 13; differentiable through R(t)
    steps: Tensor  # (T, B) N(t), the ponder time (whole numbers)


class ACTCell(nn.Module):
    """Any registered cell with a halting unit: one input step = ``N(t)`` cell steps.

    Args:
        cell: a name from :data:`seqlab.nn.CELLS`.
        input_size, hidden_size: as for the cell; the cell itself gets one
            extra input, the first-ponder-step flag of eq. 7.
        max_steps: ``M``, the most ponder steps per input (``N(t) <= M``).
        epsilon: ``ε`` of eq. 8; it lets a single step halt (``h >= 1 - ε``).
        halt_bias: initial bias ``b_h`` of the halting unit.  Our choice of
            1.0 makes a fresh network halt after about two steps
            (σ(1) = 0.73), so training starts cheap and learns to ponder more.
        **cell_options: passed to the cell.

    ``forward(x, state=None) -> (h, state, cost, steps)`` with ``x (B, I)``,
    ``h (B, H)`` the mean-field output, ``cost`` ``ρ (B,)`` and ``steps``
    ``N (B,)``.
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        *,
        max_steps: int = 100,
        epsilon: float = 0.01,
        halt_bias: float = 1.0,
        **cell_options,
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r}; valid cells: {', '.join(CELLS)}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        if not 0 <= epsilon < 1:
            raise ValueError(f"epsilon must be in [0, 1), got {epsilon}")
        self.cell: RecurrentCell = CELLS[cell](input_size + 1, hidden_size, **cell_options)
        self.input_size, self.hidden_size = input_size, hidden_size
        self.max_steps, self.epsilon = max_steps, epsilon
        self.halt = nn.Linear(hidden_size, 1)
        nn.init.constant_(self.halt.bias, halt_bias)

    def init_state(self, batch_size: int, like: Tensor) -> State:
        return self.cell.init_state(batch_size, like)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State, Tensor, Tensor]:
        b = x.shape[0]
        state = tuple(state) if state is not None else self.init_state(b, x)
        flag = x.new_ones(b, 1)
        # The input is the same at every ponder step but for the first-step flag (eq. 7): project twice, not N times.
        xp_first = self.cell.project(torch.cat([x, flag], dim=-1))
        xp_rest = self.cell.project(torch.cat([x, torch.zeros_like(flag)], dim=-1))

        halted_sum = x.new_zeros(b)  # sum of h^n over the steps before halting
        running = torch.ones(b, dtype=torch.bool, device=x.device)
        remainder = x.new_zeros(b)  # R(t)
        steps = x.new_zeros(b)  # N(t)
        mean_field = [torch.zeros_like(s) for s in state]
        s = state
        for n in range(1, self.max_steps + 1):
            s = self.cell.step(xp_first if n == 1 else xp_rest, s)
            h = torch.sigmoid(self.halt(s[0])).squeeze(-1)  # (B,) halting probability, eq. 6
            # Eq. 8: halt at the first n where the running sum reaches 1 - ε (or at M).
            stop = running & ((halted_sum + h >= 1 - self.epsilon) | (n == self.max_steps))
            # Eq. 10: p^n = h^n before halting, R = 1 - sum_{n' < N} h^{n'} at the halting step, 0 after.
            p = torch.where(stop, 1 - halted_sum, torch.where(running, h, torch.zeros_like(h)))
            mean_field = [acc + p.unsqueeze(-1) * s_i for acc, s_i in zip(mean_field, s)]  # eq. 11
            remainder = torch.where(stop, 1 - halted_sum, remainder)
            steps = torch.where(stop, torch.full_like(steps, n), steps)
            halted_sum = torch.where(running & ~stop, halted_sum + h, halted_sum)
            running = running & ~stop
            if not bool(running.any()):
                break
        new_state = tuple(mean_field)
        return new_state[0], new_state, steps + remainder, steps

    def extra_repr(self) -> str:
        return f"max_steps={self.max_steps}, epsilon={self.epsilon}"


class ACT(nn.Module):
    """A recurrent layer that ponders: :class:`ACTCell` run over a sequence.

    ``forward(x, state=None) -> (output, state, ponder)``: ``x (T, B, I)``,
    ``output (T, B, H)`` the mean-field ``h_t`` of every input step,
    ``ponder`` a :class:`Ponder` of ``(T, B)`` tensors.  The ponder cost to
    add to the loss is ``tau * ponder.cost.sum(0)`` per sequence (eq. 15).
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        *,
        max_steps: int = 100,
        epsilon: float = 0.01,
        halt_bias: float = 1.0,
        **cell_options,
    ) -> None:
        super().__init__()
        self.act_cell = ACTCell(
            cell, input_size, hidden_size, max_steps=max_steps, epsilon=epsilon, halt_bias=halt_bias, **cell_options
        )
        self.input_size, self.hidden_size = input_size, hidden_size

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State, Ponder]:
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"expected input (T, B, {self.input_size}), got {tuple(x.shape)}")
        outputs, costs, steps = [], [], []
        for x_t in x.unbind(0):
            h, state, cost, n = self.act_cell(x_t, state)
            outputs.append(h)
            costs.append(cost)
            steps.append(n)
        return torch.stack(outputs), state, Ponder(torch.stack(costs), torch.stack(steps))
