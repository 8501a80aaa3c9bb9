"""bfloat16 compute on the CPU: the matrix products of a trained model in bf16, everything else in float32.

bfloat16 keeps float32's exponent and 8 bits of mantissa (Kalamkar et al.
2019, "A Study of BFLOAT16 for Deep Learning Training").  CPUs with
AVX512-BF16 or AMX (Intel Cooper Lake, Sapphire Rapids and later; AMD Zen 4
and later) multiply bf16 matrices with float32 accumulation several times
faster than float32 (oneDNN kernels behind ``torch.mm``); elsewhere torch
still computes them, only without the speed-up (:func:`bf16_is_fast`).

:func:`bfloat16_compute` converts, in a copy of the model:

- every ``nn.Linear`` into :class:`BF16Linear`: weight in bf16, the input
  rounded to bf16 for the product (accumulated in float32, returned in
  bf16), bias added in float32; the attention decoder's combining layer is
  split into its two halves first, as for int8;
- every :class:`~seqlab.nn.Recurrent` of plain LSTM cells into
  :class:`BF16LSTM`: the whole sequence through torch's LSTM in bf16
  (oneDNN), plus per-step :class:`BF16LSTMCell` copies for decoders whose
  gate arithmetic and cell state stay in float32.

Embeddings, attention scores, softmaxes and other cells stay float32, so a
model's outputs move only by the rounding of its weights and matrix inputs
to 8 mantissa bits (the WER cost of the shipped G2P model is measured by
``seqlab bench g2p``).  The result is for inference only: it has no gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..nn.cells import LSTMCell, lstm_update
from .dynamic import ConvertedLSTM, inference_copy, run_native, swap_layers

__all__ = ["bfloat16_compute", "bf16_is_fast", "BF16Linear", "BF16LSTM", "BF16LSTMCell"]

BF16 = torch.bfloat16


def bf16_is_fast() -> bool:
    """Whether this torch build and CPU have oneDNN's bf16 matrix kernels (AVX-512 and up)."""
    return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _bf16(t: Tensor) -> Tensor:
    return t.detach().to(BF16).contiguous()


class BF16Linear(nn.Module):
    """``nn.Linear`` with a bf16 weight: float32 in and out, the product in bf16."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight", _bf16(linear.weight))
        self.register_buffer("bias", linear.bias.detach().float().clone() if linear.bias is not None else None)

    def forward(self, x: Tensor) -> Tensor:
        # 2-D on purpose: torch's bf16 matmul would copy the weight once per row of a 3-D input.
        y = F.linear(x.reshape(-1, self.in_features).to(BF16), self.weight)
        y = y.float() if self.bias is None else self.bias + y  # float32 + bf16 -> float32 in one op
        return y.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class BF16LSTMCell(nn.Module):
    """The ``project`` / ``step`` interface of :class:`~seqlab.nn.cells.LSTMCell`: bf16 products, float32 gates."""

    state_size = 2

    def __init__(self, cell: LSTMCell) -> None:
        super().__init__()
        self.input_size, self.hidden_size = cell.input_size, cell.hidden_size
        self.register_buffer("weight_ih", _bf16(cell.weight_ih))
        self.register_buffer("weight_hh", _bf16(cell.weight_hh))
        self.register_buffer("bias", (cell.bias_ih + cell.bias_hh).detach().float())

    def project(self, x: Tensor) -> Tensor:
        return self.bias + F.linear(x.to(BF16), self.weight_ih)

    def step(self, xp: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        h_tm1, c_tm1 = state
        a = xp + F.linear(h_tm1.to(BF16), self.weight_hh)  # float32 + bf16 -> float32
        return lstm_update(a, c_tm1)


class BF16LSTM(ConvertedLSTM):
    """A :class:`~seqlab.nn.Recurrent` of LSTM cells running torch's LSTM in bf16; float32 in and out.

    ``forward(x, state=None, lengths=None)`` takes and returns what the
    ``Recurrent`` did; ``cells`` are per-step :class:`BF16LSTMCell` copies
    for decoders.
    """

    def convert_lstm(self, lstm: nn.LSTM) -> nn.Module:
        return lstm.to(BF16).requires_grad_(False)

    def convert_cell(self, cell: LSTMCell) -> nn.Module:
        return BF16LSTMCell(cell)

    def forward(self, x: Tensor, state=None, lengths: Tensor | None = None):
        hx = tuple(s.to(BF16) for s in state) if state is not None else None
        output, (h, c) = run_native(self.lstm, x.to(BF16), hx, lengths, self.batch_first)
        return output.float(), (h.float(), c.float())


def bfloat16_compute(model: nn.Module) -> nn.Module:
    """An inference copy of ``model`` whose matrix products run in bf16 (see the module docstring)."""
    return swap_layers(inference_copy(model), BF16LSTM, BF16Linear)
