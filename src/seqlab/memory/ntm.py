"""Neural Turing Machine (Graves, Wayne & Danihelka 2014, "Neural Turing Machines", arXiv:1410.5401).

A controller network reads from and writes to a memory matrix ``M`` of ``N``
rows ("slots") of width ``W`` through *heads*.  Every head emits a weighting
``w`` over the slots (a distribution: ``w >= 0``, ``sum_i w(i) = 1``) that is
found in four differentiable steps (sec. 3.3, Figure 2):

1. content addressing: softmax of the key strength times the cosine
   similarity between the head's key and each row (eqs. 5-6);
2. interpolation with the head's previous weighting through a gate (eq. 7);
3. circular convolution with a distribution over shifts ``-R..R`` (eq. 8);
4. sharpening with an exponent ``gamma >= 1`` (eq. 9).

A read head returns ``r = sum_i w(i) M(i)`` (eq. 2); a write head first
erases, then adds (eqs. 3-4).

Order inside one time step (the paper leaves it open): the controller sees
the input and the previous step's read vectors, the write heads write, then
the read heads read the updated memory (the order of the DNC, Graves et al.
2016, Methods), and the output is a linear map of the controller output and
the new read vectors.

Numerics (departures from the plain equations, each labelled where it is
used): cosine similarity with ``eps`` inside the norms, so a zero row or
key gives similarity 0 and finite gradients; sharpening computed in log
space with a floor on ``w``, so zero weights never give NaN.

Notation: ``B`` batch, ``T`` time, ``N`` slots, ``W`` slot width, ``H``
heads, ``S = 2R + 1`` shifts, ``I`` input size, ``O`` output size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn import CELLS

__all__ = [
    "NTMConfig",
    "NTM",
    "NTMState",
    "NTMTrace",
    "CONTROLLERS",
    "cosine_similarity",
    "content_weights",
    "interpolate",
    "circular_shift",
    "sharpen",
    "address",
    "read_memory",
    "write_memory",
]

CONTROLLERS = ("feedforward", *CELLS)
"""Controller choices: a one-layer feed-forward network or any registered recurrent cell."""

_COSINE_EPS = 1e-8  # added to the squared norms: a zero vector has similarity 0, not NaN
_WEIGHT_FLOOR = 1e-16  # sharpening floor: log(0) never happens
_MEMORY_INIT = 1e-6  # every memory entry at the start (Collier & Beel 2018: a small constant trains fastest)


# --------------------------------------------------------------------------
# Addressing (sec. 3.3), vectorised over heads
# --------------------------------------------------------------------------


def cosine_similarity(key: Tensor, memory: Tensor, eps: float = _COSINE_EPS) -> Tensor:
    """Eq. 6, ``K[u, v] = u.v / (|u| |v|)``, of every key with every memory row.

    ``key (B, H, W)``, ``memory (B, N, W)`` -> ``(B, H, N)``.  Departure: the
    norms are ``sqrt(|u|^2 + eps)``, which is smooth at 0, so a zero row (a
    fresh memory) or a zero key gives similarity ~0 and finite gradients.
    """
    dot = torch.matmul(key, memory.transpose(1, 2))  # (B, H, N)
    key_norm = (key.pow(2).sum(-1) + eps).sqrt()  # (B, H)
    row_norm = (memory.pow(2).sum(-1) + eps).sqrt()  # (B, N)
    return dot / (key_norm.unsqueeze(-1) * row_norm.unsqueeze(1))


def content_weights(memory: Tensor, key: Tensor, beta: Tensor) -> Tensor:
    """Eq. 5, ``w^c(i) = softmax_i(beta K[k, M(i)])``: focus on rows similar to the key.

    ``memory (B, N, W)``, ``key (B, H, W)``, ``beta (B, H)`` key strength >= 0 -> ``(B, H, N)``.
    """
    return torch.softmax(beta.unsqueeze(-1) * cosine_similarity(key, memory), dim=-1)


def interpolate(w_content: Tensor, w_prev: Tensor, gate: Tensor) -> Tensor:
    """Eq. 7, ``w^g = g w^c + (1 - g) w_{t-1}``: gate ``(B, H)`` in [0, 1], weightings ``(B, H, N)``."""
    g = gate.unsqueeze(-1)
    return g * w_content + (1 - g) * w_prev


def circular_shift(w: Tensor, shift: Tensor) -> Tensor:
    """Eq. 8, ``w~(i) = sum_j w(j) s(i - j)`` with indices modulo ``N``.

    ``w (B, H, N)``; ``shift (B, H, S)`` a distribution over the offsets
    ``-R, ..., 0, ..., R`` (``S = 2R + 1``; entry ``k`` is offset ``k - R``).
    All weight on offset ``+1`` moves every slot's weight to the next slot.
    """
    r = shift.shape[-1] // 2
    # torch.roll(w, k)(i) = w(i - k): offset k contributes s(k) w(i - k).
    terms = [shift[..., j : j + 1] * torch.roll(w, k, dims=-1) for j, k in enumerate(range(-r, r + 1))]
    return torch.stack(terms).sum(0) if len(terms) > 1 else terms[0]


def sharpen(w: Tensor, gamma: Tensor, floor: float = _WEIGHT_FLOOR) -> Tensor:
    """Eq. 9, ``w(i) = w~(i)^gamma / sum_j w~(j)^gamma``: ``gamma (B, H) >= 1`` undoes the shift's blur.

    Computed as ``softmax(gamma log max(w~, floor))``, the same function for
    weights above the floor, but ``0^gamma`` (whose gradient in ``gamma`` is
    ``0 * log 0 = NaN``) never occurs.  With ``gamma = 1`` it returns ``w~``.
    """
    return torch.softmax(gamma.unsqueeze(-1) * w.clamp_min(floor).log(), dim=-1)


def address(
    memory: Tensor,
    w_prev: Tensor,
    key: Tensor,
    beta: Tensor,
    gate: Tensor,
    shift: Tensor,
    gamma: Tensor,
) -> Tensor:
    """The whole addressing pipeline of sec. 3.3 (Figure 2) for ``H`` heads at once.

    ``memory (B, N, W)``, ``w_prev (B, H, N)``, ``key (B, H, W)``, ``beta, gate,
    gamma (B, H)``, ``shift (B, H, S)`` -> the new weighting ``(B, H, N)``.
    The parameters must already be in range (see :meth:`NTM._head_params`).
    """
    w_content = content_weights(memory, key, beta)
    w_gated = interpolate(w_content, w_prev, gate)
    return sharpen(circular_shift(w_gated, shift), gamma)


# --------------------------------------------------------------------------
# Reading and writing (secs. 3.1-3.2)
# --------------------------------------------------------------------------


def read_memory(memory: Tensor, weights: Tensor) -> Tensor:
    """Eq. 2, ``r = sum_i w(i) M(i)``: ``memory (B, N, W)``, ``weights (B, H, N)`` -> ``(B, H, W)``."""
    return torch.bmm(weights, memory)


def write_memory(memory: Tensor, weights: Tensor, erase: Tensor, add: Tensor) -> Tensor:
    """Eqs. 3-4: erase ``M~(i) = M(i) [1 - w(i) e]``, then add ``M(i) = M~(i) + w(i) a``, for ``H`` heads.

    ``memory (B, N, W)``, ``weights (B, H, N)``, ``erase (B, H, W)`` in
    [0, 1], ``add (B, H, W)`` -> the new memory ``(B, N, W)``.  The erasures
    of several heads multiply and their adds sum, so head order does not
    matter (sec. 3.2).
    """
    for head in range(weights.shape[1]):
        erased = torch.bmm(weights[:, head].unsqueeze(-1), erase[:, head].unsqueeze(1))  # (B, N, W)
        memory = memory * (1 - erased)
    return memory + torch.bmm(weights.transpose(1, 2), add)


# --------------------------------------------------------------------------
# The machine
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class NTMConfig:
    """Architecture of an NTM (defaults: the paper's LSTM-controller NTM for copy, sec. 4.6, Table 2)."""

    controller: str = "lstm"  # "feedforward" or a cell from seqlab.nn.CELLS
    controller_size: int = 100  # controller units
    memory_slots: int = 128  # N, rows of the memory matrix
    memory_width: int = 20  # W, width of a row
    read_heads: int = 1
    write_heads: int = 1
    shift_range: int = 1  # R: a head may shift its focus by -R..R slots per step (paper: 1)

    def validate(self) -> None:
        if self.controller not in CONTROLLERS:
            raise ValueError(f"unknown controller {self.controller!r}; valid: {', '.join(CONTROLLERS)}")
        for name in ("controller_size", "memory_slots", "memory_width", "read_heads", "write_heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.shift_range < self.memory_slots / 2:
            raise ValueError(f"shift_range must be in [0, memory_slots / 2), got {self.shift_range}")


class NTMState(NamedTuple):
    """Everything an NTM carries from one step to the next."""

    controller: tuple[Tensor, ...]  # the controller cell's state, () for a feed-forward controller
    memory: Tensor  # (B, N, W)
    read_weights: Tensor  # (B, R_heads, N)
    write_weights: Tensor  # (B, W_heads, N)
    reads: Tensor  # (B, R_heads * W), the read vectors of the step


class NTMTrace(NamedTuple):
    """What :meth:`NTM.trace` records at every step, for plots."""

    read_weights: Tensor  # (T, B, R_heads, N)
    write_weights: Tensor  # (T, B, W_heads, N)
    memory: Tensor  # (T, B, N, W), after the step's write
    adds: Tensor  # (T, B, W_heads, W), the add vectors written


class NTM(nn.Module):
    """A Neural Turing Machine with an LSTM (or any registered cell) or feed-forward controller.

    ``forward(x, state=None) -> (logits, state)`` with ``x (T, B, I)`` and
    ``logits (T, B, O)``; :meth:`trace` also returns the weightings and the
    memory at every step.
    """

    def __init__(self, input_size: int, output_size: int, config: NTMConfig | None = None) -> None:
        super().__init__()
        config = config or NTMConfig()
        config.validate()
        self.config = config
        self.input_size, self.output_size = input_size, output_size
        c, w = config.controller_size, config.memory_width
        controller_in = input_size + config.read_heads * w
        if config.controller == "feedforward":
            self.controller = nn.Linear(controller_in, c)
        else:
            self.controller = CELLS[config.controller](controller_in, c)
        shifts = 2 * config.shift_range + 1
        self._address_size = w + 3 + shifts  # key, beta, gate, gamma, shift
        heads = config.read_heads + config.write_heads
        self.head_params = nn.Linear(c, heads * self._address_size + config.write_heads * 2 * w)
        self.output = nn.Linear(c + config.read_heads * w, output_size)

    # ---------------------------------------------------------------- state

    def init_state(self, batch_size: int, like: Tensor) -> NTMState:
        """Memory at a small constant, every head focused on slot 0, reads of that memory.

        A constant memory and a uniform start would be a fixed point of
        content addressing and of shifts, so no head could ever pick out a
        slot: the one-hot start breaks that symmetry (our choice; the paper
        does not give its initial state).
        """
        cfg = self.config
        memory = like.new_full((batch_size, cfg.memory_slots, cfg.memory_width), _MEMORY_INIT)
        start = like.new_zeros(batch_size, 1, cfg.memory_slots)
        start[..., 0] = 1.0
        read_weights = start.expand(-1, cfg.read_heads, -1).contiguous()
        write_weights = start.expand(-1, cfg.write_heads, -1).contiguous()
        reads = read_memory(memory, read_weights).flatten(1)
        controller = () if isinstance(self.controller, nn.Linear) else self.controller.init_state(batch_size, like)
        return NTMState(controller, memory, read_weights, write_weights, reads)

    # ---------------------------------------------------------------- heads

    def _head_params(self, raw: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Squash raw controller outputs ``(B, H, W + 3 + S)`` into the ranges of sec. 3.3.

        key: any real ``(B, H, W)``; beta >= 0 (softplus); gate in (0, 1)
        (sigmoid); shift a distribution over ``S`` offsets (softmax);
        gamma >= 1 (``1 + softplus``).
        """
        w = self.config.memory_width
        key, beta, gate, gamma, shift = raw.split([w, 1, 1, 1, raw.shape[-1] - w - 3], dim=-1)
        return (
            key,
            F.softplus(beta).squeeze(-1),
            torch.sigmoid(gate).squeeze(-1),
            torch.softmax(shift, dim=-1),
            1 + F.softplus(gamma).squeeze(-1),
        )

    # ----------------------------------------------------------------- step

    def step(self, x: Tensor, state: NTMState) -> tuple[Tensor, NTMState, Tensor]:
        """One time step: ``x (B, I)`` -> ``(logits (B, O), new state, add vectors (B, W_heads, W))``."""
        cfg = self.config
        b, w = x.shape[0], cfg.memory_width
        controller_in = torch.cat([x, state.reads], dim=-1)
        if isinstance(self.controller, nn.Linear):
            controller_state: tuple[Tensor, ...] = ()
            h = torch.tanh(self.controller(controller_in))  # (B, C)
        else:
            cell = self.controller
            controller_state = cell.step(cell.project(controller_in), state.controller)
            h = controller_state[0]  # (B, C)

        params = self.head_params(h)
        heads = cfg.read_heads + cfg.write_heads
        addressing, erase_add = params.split([heads * self._address_size, cfg.write_heads * 2 * w], dim=-1)
        addressing = addressing.view(b, heads, self._address_size)
        read_raw, write_raw = addressing.split([cfg.read_heads, cfg.write_heads], dim=1)

        # Write first (erase in [0, 1] by a sigmoid, add in [-1, 1] by tanh: our choice of squashing) ...
        write_weights = address(state.memory, state.write_weights, *self._head_params(write_raw))  # (B, Hw, N)
        erase, add = erase_add.view(b, cfg.write_heads, 2, w).unbind(2)  # (B, Hw, W) each
        erase, add = torch.sigmoid(erase), torch.tanh(add)
        memory = write_memory(state.memory, write_weights, erase, add)

        # ... then read the memory just written.
        read_weights = address(memory, state.read_weights, *self._head_params(read_raw))  # (B, Hr, N)
        reads = read_memory(memory, read_weights).flatten(1)  # (B, Hr * W)

        logits = self.output(torch.cat([h, reads], dim=-1))  # (B, O)
        return logits, NTMState(controller_state, memory, read_weights, write_weights, reads), add

    # --------------------------------------------------------------- layers

    def forward(self, x: Tensor, state: NTMState | None = None) -> tuple[Tensor, NTMState]:
        """``x (T, B, I)`` -> ``(logits (T, B, O), final state)``."""
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"expected input (T, B, {self.input_size}), got {tuple(x.shape)}")
        state = state if state is not None else self.init_state(x.shape[1], x)
        outputs = []
        for x_t in x.unbind(0):
            y_t, state, _ = self.step(x_t, state)
            outputs.append(y_t)
        return torch.stack(outputs), state

    @torch.no_grad()
    def trace(self, x: Tensor) -> tuple[Tensor, NTMTrace]:
        """Like ``forward`` from a fresh state, also returning the heads' weightings and the memory per step."""
        state = self.init_state(x.shape[1], x)
        outputs, reads, writes, memories, adds = [], [], [], [], []
        for x_t in x.unbind(0):
            y_t, state, add = self.step(x_t, state)
            outputs.append(y_t)
            reads.append(state.read_weights)
            writes.append(state.write_weights)
            memories.append(state.memory)
            adds.append(add)
        stack = torch.stack
        return stack(outputs), NTMTrace(stack(reads), stack(writes), stack(memories), stack(adds))
