"""The recurrent cell zoo: one class per cell, one time step per call.

Every cell splits its step in two, so that the generic layer
(:class:`seqlab.nn.Recurrent`) can hoist the input-only work out of the time
loop:

* ``project(x)``: the part that depends on the input only, for any number of
  leading dimensions, ``(..., I) -> (..., G)``.  The layer calls it once on
  the whole ``(T, B, I)`` sequence, which is one GEMM instead of ``T``.
* ``step(xp_t, state) -> state``: one step of the recurrence from the
  projected input ``(B, G)`` and the previous state.

``state`` is always a tuple of ``(B, H)`` tensors whose first entry is the
output ``h_t``; ``state_size`` says how many there are (1 for ``h``, 2 for
``(h, c)``, 3 for the Nested LSTM's ``(h, c, c_inner)``).
``forward(x_t, state)`` is the one-step API of the cell on its own and
returns ``(h_t, state)``.

Gate order of every LSTM-like cell is torch's: input, forget, cell, output.
Notation in the equations: ``σ`` sigmoid, ``⊙`` element-wise product,
``a_* = W_* x_t + U_* h_{t-1} + b_*`` the pre-activation of a gate.
"""

from __future__ import annotations

import abc

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import init

__all__ = [
    "RecurrentCell",
    "RNNTanhCell",
    "RNNReLUCell",
    "LSTMCell",
    "PeepholeLSTMCell",
    "CIFGCell",
    "JANETCell",
    "GRUCell",
    "LayerNormLSTMCell",
    "SRUCell",
    "NestedLSTMCell",
    "CELLS",
]

State = tuple[Tensor, ...]


class RecurrentCell(nn.Module, abc.ABC):
    """Base class: sizes, zero state and the one-step ``forward``.

    Subclasses set ``state_size`` and implement ``project`` and ``step``.
    ``native`` names torch's fused kernel (``torch._VF.<native>``) when the
    cell's parameters are laid out exactly like ``torch.nn.<LSTM|GRU|RNN>``'s.
    """

    state_size: int = 1
    native: str | None = None

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        if input_size < 1 or hidden_size < 1:
            raise ValueError(f"sizes must be positive, got input_size={input_size}, hidden_size={hidden_size}")
        self.input_size = input_size
        self.hidden_size = hidden_size

    @abc.abstractmethod
    def project(self, x: Tensor) -> Tensor:
        """The input-only part of a step for any leading shape: ``(..., I) -> (..., G)``."""

    @abc.abstractmethod
    def step(self, xp: Tensor, state: State) -> State:
        """One step from the projected input ``(B, G)`` and the previous state."""

    def init_state(self, batch_size: int, like: Tensor) -> State:
        """Zero state for ``batch_size`` sequences on ``like``'s device and dtype."""
        zeros = like.new_zeros(batch_size, self.hidden_size)
        return tuple(zeros for _ in range(self.state_size))

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One time step: ``x (B, I)``, ``state`` tuple of ``(B, H)`` -> ``(h (B, H), state)``."""
        if state is None:
            state = self.init_state(x.shape[0], x)
        state = self.step(self.project(x), tuple(state))
        return state[0], state

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"


# --------------------------------------------------------------------------
# Simple (Elman) RNN
# --------------------------------------------------------------------------


class _ElmanCell(RecurrentCell):
    """h_t = φ(W x_t + b_ih + U h_{t-1} + b_hh), torch.nn.RNN's formulation."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.zeros(hidden_size))
        self.bias_hh = nn.Parameter(torch.zeros(hidden_size))
        self.reset_parameters()

    @abc.abstractmethod
    def _activation(self, a: Tensor) -> Tensor:
        """φ, the unit's non-linearity."""

    def reset_parameters(self) -> None:
        init.orthogonal_(self.weight_hh)
        nn.init.zeros_(self.bias_ih)
        nn.init.zeros_(self.bias_hh)

    def project(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight_ih, self.bias_ih + self.bias_hh)

    def step(self, xp: Tensor, state: State) -> State:
        (h_tm1,) = state
        return (self._activation(xp + F.linear(h_tm1, self.weight_hh)),)


class RNNTanhCell(_ElmanCell):
    """Simple RNN with tanh units (Elman 1990); Xavier input init, orthogonal recurrent init."""

    native = "rnn_tanh"

    def reset_parameters(self) -> None:
        init.xavier_(self.weight_ih)
        super().reset_parameters()

    def _activation(self, a: Tensor) -> Tensor:
        return torch.tanh(a)


class RNNReLUCell(_ElmanCell):
    """Simple RNN with ReLU units; Kaiming input init, identity recurrent init.

    The identity is the orthogonal matrix that IRNN (Le, Jaitly & Hinton 2015)
    picks for ReLU units: at init the state is copied forward unchanged, which
    lets gradients reach far back.  A random orthogonal ``U`` mixes the
    non-negative state with negative entries that ReLU then cuts off; in our
    delayed-recall test that cell never left chance level.
    """

    native = "rnn_relu"

    def reset_parameters(self) -> None:
        init.kaiming_(self.weight_ih)
        super().reset_parameters()
        with torch.no_grad():
            self.weight_hh.copy_(torch.eye(self.hidden_size))

    def _activation(self, a: Tensor) -> Tensor:
        return torch.relu(a)


# --------------------------------------------------------------------------
# LSTM family
# --------------------------------------------------------------------------


class _GatedCell(RecurrentCell):
    """Parameters shared by the LSTM-like cells: ``gates`` blocks of (W, U, b)."""

    gates: int = 4

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        g = self.gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(g, input_size))
        self.weight_hh = nn.Parameter(torch.empty(g, hidden_size))

    def _init_weights(self) -> None:
        init.xavier_(self.weight_ih, self.gates)
        init.orthogonal_(self.weight_hh, self.gates)


def lstm_update(a: Tensor, c_tm1: Tensor, r: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(h, c)`` of an LSTM step from its gate pre-activations ``a = [a_i a_f a_g a_o]`` (plus ``r`` of
    the same shape where given, e.g. the step's recurrent product) and ``c_{t-1}``.

    When autograd does not record, one compiled pass over ``(B, 4H)``
    (``lstm_pointwise`` in seqlab's kernels) replaces the chain of PyTorch
    ops below; the two agree to float rounding.
    """
    if a.dim() == 2 and (r is None or (r.shape == a.shape and r.dtype == a.dtype)):
        from ._kernels.build import inference_kernels  # here: the kernels package imports this module

        kernels = inference_kernels(a, c_tm1) if r is None else inference_kernels(a, c_tm1, r)
        if kernels is not None:
            h, c = kernels.lstm_pointwise(a, c_tm1, r)
            return h, c
    if r is not None:
        a = a + r
    i, f, g, o = a.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c_tm1 + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return h, c


class LSTMCell(_GatedCell):
    """Standard LSTM (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000).

    Same parameters and numerics as ``torch.nn.LSTM``:

        i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
        c_t = f ⊙ c_{t-1} + i ⊙ g
        h_t = o ⊙ tanh(c_t)

    Init: forget-gate bias 1 (Jozefowicz et al. 2015), Xavier ``W``, orthogonal ``U``.
    """

    state_size = 2
    native = "lstm"

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.bias_ih = nn.Parameter(torch.zeros(4 * hidden_size))
        self.bias_hh = nn.Parameter(torch.zeros(4 * hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self._init_weights()
        nn.init.zeros_(self.bias_hh)
        nn.init.zeros_(self.bias_ih)
        init.gate_bias_(self.bias_ih, gate=1, gates=4, value=1.0)

    def project(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight_ih, self.bias_ih + self.bias_hh)

    def step(self, xp: Tensor, state: State) -> State:
        h_tm1, c_tm1 = state
        a = torch.addmm(xp, h_tm1, self.weight_hh.t()) if xp.dim() == 2 else xp + F.linear(h_tm1, self.weight_hh)
        return lstm_update(a, c_tm1)


class PeepholeLSTMCell(_GatedCell):
    """LSTM with peephole connections (Gers & Schmidhuber 2000; Gers et al. 2002).

    The gates also look at the cell state through diagonal weights ``p``:

        i = σ(a_i + p_i ⊙ c_{t-1})     f = σ(a_f + p_f ⊙ c_{t-1})
        c_t = f ⊙ c_{t-1} + i ⊙ tanh(a_g)
        o = σ(a_o + p_o ⊙ c_t)          h_t = o ⊙ tanh(c_t)

    ``peepholes`` picks the gates that have them (any of "i", "f", "o");
    gates without one behave as in the plain LSTM.  Peephole weights start at
    0, so the cell starts as a standard LSTM.
    """

    state_size = 2

    def __init__(self, input_size: int, hidden_size: int, *, peepholes: str = "ifo") -> None:
        super().__init__(input_size, hidden_size)
        if not peepholes or not set(peepholes) <= set("ifo") or len(set(peepholes)) != len(peepholes):
            raise ValueError(f"peepholes must be a non-empty subset of 'ifo' without repeats, got {peepholes!r}")
        chosen = "".join(gate for gate in "ifo" if gate in peepholes)
        self.peepholes = chosen
        self.bias = nn.Parameter(torch.zeros(4 * hidden_size))
        self.weight_peephole = nn.Parameter(torch.zeros(len(chosen), hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self._init_weights()
        nn.init.zeros_(self.weight_peephole)
        nn.init.zeros_(self.bias)
        init.gate_bias_(self.bias, gate=1, gates=4, value=1.0)

    def _peep(self, gate: str, c: Tensor) -> Tensor | float:
        if gate not in self.peepholes:
            return 0.0
        return self.weight_peephole[self.peepholes.index(gate)] * c

    def project(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight_ih, self.bias)

    def step(self, xp: Tensor, state: State) -> State:
        h_tm1, c_tm1 = state
        a = xp + F.linear(h_tm1, self.weight_hh)
        a_i, a_f, a_g, a_o = a.chunk(4, dim=-1)
        i = torch.sigmoid(a_i + self._peep("i", c_tm1))
        f = torch.sigmoid(a_f + self._peep("f", c_tm1))
        c = f * c_tm1 + i * torch.tanh(a_g)
        o = torch.sigmoid(a_o + self._peep("o", c))
        return o * torch.tanh(c), c

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, peepholes={self.peepholes!r}"


class CIFGCell(_GatedCell):
    """Coupled input-forget gate LSTM, CIFG (Greff et al. 2017, "LSTM: A Search Space Odyssey").

    One gate decides both what to write and what to forget:

        i = σ(a_i)   f = 1 - i   g = tanh(a_g)   o = σ(a_o)
        c_t = f ⊙ c_{t-1} + i ⊙ g,   h_t = o ⊙ tanh(c_t)

    Gate order: input, cell, output.  The input-gate bias starts at -1, which
    is the usual forget bias of +1 seen through ``f = 1 - i``.
    """

    state_size = 2
    gates = 3

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.bias = nn.Parameter(torch.zeros(3 * hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self._init_weights()
        nn.init.zeros_(self.bias)
        init.gate_bias_(self.bias, gate=0, gates=3, value=-1.0)

    def project(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight_ih, self.bias)

    def step(self, xp: Tensor, state: State) -> State:
        h_tm1, c_tm1 = state
        a = xp + F.linear(h_tm1, self.weight_hh)
        a_i, a_g, a_o = a.chunk(3, dim=-1)
        i = torch.sigmoid(a_i)
        c = c_tm1 + i * (torch.tanh(a_g) - c_tm1)  # = (1 - i) ⊙ c_{t-1} + i ⊙ g
        return torch.sigmoid(a_o) * torch.tanh(c), c


class JANETCell(_GatedCell):
    """JANET, the forget-gate-only LSTM (van der Westhuizen & Lasenby 2018, eq. 6).

        s_t = a_f
        c_t = σ(s_t) ⊙ c_{t-1} + (1 - σ(s_t - β)) ⊙ tanh(a_c)
        h_t = c_t

    ``β`` (default 1) lets slightly more information in than a strict
    coupling would.  The forget bias uses the chrono init
    ``b_f ~ log(U[1, t_max - 1])`` with ``t_max`` the expected dependency
    length (the paper uses the sequence length).  Gate order: forget, cell.
    """

    state_size = 1
    gates = 2

    def __init__(self, input_size: int, hidden_size: int, *, beta: float = 1.0, t_max: float = 100.0) -> None:
        super().__init__(input_size, hidden_size)
        self.beta = float(beta)
        self.t_max = float(t_max)
        self.bias = nn.Parameter(torch.zeros(2 * hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self._init_weights()
        nn.init.zeros_(self.bias)
        init.chrono_bias_(self.bias[: self.hidden_size], self.t_max)

    def project(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight_ih, self.bias)

    def step(self, xp: Tensor, state: State) -> State:
        (h_tm1,) = state  # h_{t-1} = c_{t-1}
        a = xp + F.linear(h_tm1, self.weight_hh)
        s, a_c = a.chunk(2, dim=-1)
        c = torch.sigmoid(s) * h_tm1 + (1.0 - torch.sigmoid(s - self.beta)) * torch.tanh(a_c)
        return (c,)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, beta={self.beta}, t_max={self.t_max}"


class GRUCell(_GatedCell):
    """Gated recurrent unit (Cho et al. 2014) in ``torch.nn.GRU``'s formulation.

        r = σ(W_r x + b_ir + U_r h + b_hr)     z = σ(W_z x + b_iz + U_z h + b_hz)
        n = tanh(W_n x + b_in + r ⊙ (U_n h + b_hn))
        h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}

    Gate order: reset, update, new (torch's).
    """

    state_size = 1
    gates = 3
    native = "gru"

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.bias_ih = nn.Parameter(torch.zeros(3 * hidden_size))
        self.bias_hh = nn.Parameter(torch.zeros(3 * hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self._init_weights()
        nn.init.zeros_(self.bias_ih)
        nn.init.zeros_(self.bias_hh)

    def project(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight_ih, self.bias_ih)

    def step(self, xp: Tensor, state: State) -> State:
        (h_tm1,) = state
        hp = F.linear(h_tm1, self.weight_hh, self.bias_hh)
        x_r, x_z, x_n = xp.chunk(3, dim=-1)
        h_r, h_z, h_n = hp.chunk(3, dim=-1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        return (n + z * (h_tm1 - n),)  # = (1 - z) ⊙ n + z ⊙ h_{t-1}


class LayerNormLSTMCell(_GatedCell):
    """Layer-normalized LSTM (Ba, Kiros & Hinton 2016, "Layer Normalization", sec. 3.1).

        (a_i, a_f, a_g, a_o) = LN(W x_t; α_1) + LN(U h_{t-1}; α_2) + b
        c_t = σ(a_f) ⊙ c_{t-1} + σ(a_i) ⊙ tanh(a_g)
        h_t = σ(a_o) ⊙ tanh(LN(c_t; α_3, β_3))

    As in the paper each normalisation runs over the whole ``4H`` vector; the
    two gate normalisations carry gains only, their shift being the shared
    bias ``b``.
    """

    state_size = 2

    def __init__(self, input_size: int, hidden_size: int, *, eps: float = 1e-5) -> None:
        super().__init__(input_size, hidden_size)
        self.bias = nn.Parameter(torch.zeros(4 * hidden_size))
        self.norm_ih = nn.LayerNorm(4 * hidden_size, eps=eps, bias=False)
        self.norm_hh = nn.LayerNorm(4 * hidden_size, eps=eps, bias=False)
        self.norm_c = nn.LayerNorm(hidden_size, eps=eps)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self._init_weights()
        nn.init.zeros_(self.bias)
        init.gate_bias_(self.bias, gate=1, gates=4, value=1.0)
        for norm in (self.norm_ih, self.norm_hh, self.norm_c):
            norm.reset_parameters()

    def project(self, x: Tensor) -> Tensor:
        return self.norm_ih(F.linear(x, self.weight_ih)) + self.bias

    def step(self, xp: Tensor, state: State) -> State:
        h_tm1, c_tm1 = state
        a = xp + self.norm_hh(F.linear(h_tm1, self.weight_hh))
        i, f, g, o = a.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c_tm1 + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(self.norm_c(c))
        return h, c


class SRUCell(RecurrentCell):
    """Simple Recurrent Unit with highway connection (Lei et al. 2018, eq. 3-7).

    Lei, Zhang, Wang, Dai & Artzi, "Simple Recurrent Units for Highly
    Parallelizable Recurrence", EMNLP 2018:

        f_t = σ(W_f x_t + v_f ⊙ c_{t-1} + b_f)
        r_t = σ(W_r x_t + v_r ⊙ c_{t-1} + b_r)
        c_t = f_t ⊙ c_{t-1} + (1 - f_t) ⊙ (W x_t)
        h_t = r_t ⊙ g(c_t) + (1 - r_t) ⊙ x_t

    All matrix products depend on ``x`` only, so ``project`` does every GEMM
    of the sequence at once and the recurrence is element-wise.  ``g`` is the
    identity as in the 2018 paper (``activation="tanh"`` gives the 2017
    version).  When ``input_size != hidden_size`` the highway term uses a
    learned projection ``W_h x_t``, as the paper does for mismatched sizes.
    The state is ``(h, c)``; only ``c`` feeds the next step.
    """

    state_size = 2

    def __init__(self, input_size: int, hidden_size: int, *, activation: str = "identity") -> None:
        super().__init__(input_size, hidden_size)
        if activation not in ("identity", "tanh"):
            raise ValueError(f"activation must be 'identity' or 'tanh', got {activation!r}")
        self.activation = activation
        self.projected_highway = input_size != hidden_size
        blocks = 4 if self.projected_highway else 3  # W, W_f, W_r (, W_h)
        self.weight_ih = nn.Parameter(torch.empty(blocks * hidden_size, input_size))
        self.weight_c = nn.Parameter(torch.empty(2 * hidden_size))  # v_f, v_r
        self.bias = nn.Parameter(torch.zeros(2 * hidden_size))  # b_f, b_r
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.xavier_(self.weight_ih, self.weight_ih.shape[0] // self.hidden_size)
        nn.init.uniform_(self.weight_c, -0.5, 0.5)
        nn.init.zeros_(self.bias)

    def project(self, x: Tensor) -> Tensor:
        xp = F.linear(x, self.weight_ih)
        if self.projected_highway:
            return xp
        return torch.cat([xp, x], dim=-1)

    def step(self, xp: Tensor, state: State) -> State:
        _, c_tm1 = state
        wx, a_f, a_r, highway = xp.chunk(4, dim=-1)
        v_f, v_r = self.weight_c.chunk(2)
        b_f, b_r = self.bias.chunk(2)
        f = torch.sigmoid(a_f + v_f * c_tm1 + b_f)
        r = torch.sigmoid(a_r + v_r * c_tm1 + b_r)
        c = wx + f * (c_tm1 - wx)  # = f ⊙ c_{t-1} + (1 - f) ⊙ W x_t
        g = torch.tanh(c) if self.activation == "tanh" else c
        h = highway + r * (g - highway)  # = r ⊙ g(c_t) + (1 - r) ⊙ x_t
        return h, c

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, activation={self.activation!r}"


class NestedLSTMCell(_GatedCell):
    """Nested LSTM of depth 2 (Moniz & Krueger 2018, "Nested LSTMs", sec. 3).

    The outer cell's memory is the output of an inner LSTM, which is given
    what a plain LSTM would add (``i ⊙ g``) as input and what it would keep
    (``f ⊙ c_{t-1}``) as its previous hidden state:

        i, f, o = σ(a_i), σ(a_f), σ(a_o)        g = tanh(a_g)
        x̃_t = i ⊙ g                              h̃_{t-1} = f ⊙ c_{t-1}
        ĩ, f̃, õ, g̃ = inner LSTM gates of (x̃_t, h̃_{t-1})
        c̃_t = f̃ ⊙ c̃_{t-1} + ĩ ⊙ g̃
        c_t = h̃_t = õ ⊙ tanh(c̃_t)
        h_t = o ⊙ tanh(c_t)

    State ``(h, c, c̃)``.  Both cells start with forget bias 1.
    """

    state_size = 3

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.bias = nn.Parameter(torch.zeros(4 * hidden_size))
        self.inner_weight_ih = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.inner_weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))
        self.inner_bias = nn.Parameter(torch.zeros(4 * hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self._init_weights()
        init.xavier_(self.inner_weight_ih, 4)
        init.orthogonal_(self.inner_weight_hh, 4)
        for bias in (self.bias, self.inner_bias):
            nn.init.zeros_(bias)
            init.gate_bias_(bias, gate=1, gates=4, value=1.0)

    def project(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight_ih, self.bias)

    def step(self, xp: Tensor, state: State) -> State:
        h_tm1, c_tm1, inner_c_tm1 = state
        a = xp + F.linear(h_tm1, self.weight_hh)
        a_i, a_f, a_g, a_o = a.chunk(4, dim=-1)
        inner_x = torch.sigmoid(a_i) * torch.tanh(a_g)
        inner_h_tm1 = torch.sigmoid(a_f) * c_tm1
        b = F.linear(inner_x, self.inner_weight_ih, self.inner_bias) + F.linear(inner_h_tm1, self.inner_weight_hh)
        b_i, b_f, b_g, b_o = b.chunk(4, dim=-1)
        inner_c = torch.sigmoid(b_f) * inner_c_tm1 + torch.sigmoid(b_i) * torch.tanh(b_g)
        c = torch.sigmoid(b_o) * torch.tanh(inner_c)
        h = torch.sigmoid(a_o) * torch.tanh(c)
        return h, c, inner_c


CELLS: dict[str, type[RecurrentCell]] = {
    "rnn_tanh": RNNTanhCell,
    "rnn_relu": RNNReLUCell,
    "lstm": LSTMCell,
    "peephole": PeepholeLSTMCell,
    "cifg": CIFGCell,
    "janet": JANETCell,
    "gru": GRUCell,
    "ln_lstm": LayerNormLSTMCell,
    "sru": SRUCell,
    "nested_lstm": NestedLSTMCell,
}
"""The cell registry: name -> class.  ``Recurrent`` and the CLI look cells up here."""
