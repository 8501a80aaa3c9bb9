"""Int8 compute on the CPU: dynamic quantisation of a trained model for inference.

Dynamic quantisation (Jacob et al. 2018, "Quantization and Training of
Neural Networks for Efficient Integer-Arithmetic-Only Inference"; the scheme
of torch's ``quantize_dynamic``) stores each weight matrix in int8,
quantises the activations on the fly at every call, and multiplies in int8,
accumulating in int32.  Weights are 4x smaller in memory and large matrix
products run faster than in float32 on x86 CPUs; the results move by a small
rounding error (the WER cost of the shipped G2P model is measured by
``seqlab bench g2p``).  Where seqlab's CPU kernels were built against the
fbgemm inside torch's x86 wheels, every int8 product runs on them, with a
weight scale per output row; elsewhere ``nn.Linear`` and the LSTM fallback
go through ``torch.ao.quantization.quantize_dynamic`` (one scale per matrix).

:func:`quantize_dynamic` converts, in a copy of the model:

- every ``nn.Linear`` (attention, output layer, bridges) into
  :class:`Int8Linear`, after splitting the attention decoder's combining
  layer into its two halves (``seqlab.seq2seq.decoder.SplitCombine``; the
  copy then multiplies the encoder outputs by its context half once per
  sentence, as the float model does);
- every :class:`~seqlab.nn.Recurrent` of plain LSTM cells into
  :class:`Int8LSTM`: over a whole sequence, int8 input products and
  recurrences with int8 step products (float32 ones where the kernels were
  built without torch's fbgemm) and float32 gate math, on seqlab's CPU
  kernels (torch's quantised LSTM kernel where those cannot run), and
  per-step int8 cells for decoders that step one token at a time.

Other cells keep float32 recurrences (their ``nn.Linear`` parts are still
converted).  The result is for inference only: it has no gradients.
"""

from __future__ import annotations

import abc
import contextlib
import copy
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ..nn import _kernels
from ..nn.cells import LSTMCell, lstm_update
from ..nn.recurrent import Recurrent
from .quant import quantize_rows

__all__ = ["quantize_dynamic", "Int8Linear", "Int8LSTM", "Int8LSTMCell"]


@contextlib.contextmanager
def _quiet():
    """Hide torch's deprecation notices for ``torch.ao`` and its note on dropout in one-layer LSTMs (moot here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        warnings.filterwarnings("ignore", message="dropout option adds dropout")
        yield


def _convert(module: nn.Module, types: set[type]) -> nn.Module:
    """``torch.ao.quantization.quantize_dynamic`` on ``module`` itself."""
    return torch.ao.quantization.quantize_dynamic(nn.Sequential(module), types, dtype=torch.qint8)[0]


class Int8Linear(nn.Module):
    """``nn.Linear`` for inference in int8 on seqlab's CPU kernels: float32 in and out.

    The weight is int8 with a float32 scale per output row
    (:func:`~seqlab.compress.quant.quantize_rows`), packed once for fbgemm;
    each call quantises all its input rows to 7 bits with one scale and zero
    point from their range, multiplies with int32 sums and adds the bias in
    float32.  Needs kernels built with fbgemm (``_kernels.int8_available``);
    without them, and for input that is not float32 on the CPU, it
    multiplies by the dequantised weight in the input's dtype instead.
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight, scale = quantize_rows(linear.weight)
        self.register_buffer("weight", weight)
        self.register_buffer("scale", scale)
        self.register_buffer("bias", linear.bias.detach().float().clone() if linear.bias is not None else None)
        self._packed = None  # the kernels' packed copy of the buffers, made at the first call

    def forward(self, x: Tensor) -> Tensor:
        if x.dtype == torch.float32 and x.device.type == "cpu" and self._pack() is not None:
            return self._packed(x)
        bias = self.bias.to(x) if self.bias is not None else None
        return F.linear(x, self.weight.to(x) * self.scale.to(x).unsqueeze(1), bias)

    def _pack(self):
        """The kernels' packed weight, made at the first call; None where the kernels lack fbgemm (a copy
        taken to another machine, say)."""
        if self._packed is None:
            kernels = _kernels.load()
            if _kernels.int8_available(kernels):
                self._packed = kernels.Int8Linear(self.weight, self.scale, self.bias)
        return self._packed

    def _apply(self, fn, recurse=True):
        self._packed = None  # the buffers may move or change
        return super()._apply(fn, recurse)

    def __getstate__(self):
        return {**self.__dict__, "_packed": None}  # copies pack again at their first call

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def int8_linear(linear: nn.Linear) -> nn.Module:
    """``linear`` for int8 inference: :class:`Int8Linear` on the kernels, else torch's dynamic quantisation."""
    if _kernels.int8_available(_kernels.load()):
        return Int8Linear(linear)
    with _quiet():
        return _convert(linear, {nn.Linear})


class Int8LSTMCell(nn.Module):
    """The ``project`` / ``step`` interface of :class:`~seqlab.nn.cells.LSTMCell` with int8 weights."""

    state_size = 2

    def __init__(self, cell: LSTMCell) -> None:
        super().__init__()
        self.input_size, self.hidden_size = cell.input_size, cell.hidden_size
        ih = nn.Linear(cell.input_size, 4 * cell.hidden_size)
        hh = nn.Linear(cell.hidden_size, 4 * cell.hidden_size, bias=False)
        with torch.no_grad():
            ih.weight.copy_(cell.weight_ih)
            ih.bias.copy_(cell.bias_ih + cell.bias_hh)
            hh.weight.copy_(cell.weight_hh)
        self.ih, self.hh = int8_linear(ih), int8_linear(hh)

    def project(self, x: Tensor) -> Tensor:
        return self.ih(x)

    def step(self, xp: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        h_tm1, c_tm1 = state
        return lstm_update(xp, c_tm1, self.hh(h_tm1))  # the sum of the two is formed in the update's pass


class ConvertedLSTM(nn.Module, abc.ABC):
    """A :class:`~seqlab.nn.Recurrent` of plain LSTM cells as torch's LSTM in another number format.

    Subclasses say how to convert the whole-sequence ``nn.LSTM`` (``lstm``;
    None to make it later, if ever needed) and each per-step cell (``cells``,
    for decoders).
    """

    state_size = 2

    def __init__(self, rnn: Recurrent) -> None:
        super().__init__()
        if not converts(rnn):
            raise ValueError(f"{type(self).__name__} converts plain LSTM layers with concatenated directions, "
                             f"got cell={rnn.cell!r}, residual={rnn.residual}, merge={rnn.merge!r}")
        self.input_size, self.hidden_size = rnn.input_size, rnn.hidden_size
        self.num_layers, self.num_directions = rnn.num_layers, rnn.num_directions
        self.batch_first = rnn.batch_first
        with _quiet():
            self.lstm = self.convert_lstm(rnn.to_torch().eval())
            self.cells = nn.ModuleList(self.convert_cell(c) for c in rnn.cells)

    @abc.abstractmethod
    def convert_lstm(self, lstm: nn.LSTM) -> nn.Module | None:
        """The whole-sequence ``nn.LSTM`` in this number format."""

    @abc.abstractmethod
    def convert_cell(self, cell: LSTMCell) -> nn.Module:
        """One per-step cell with the ``project`` / ``step`` interface, in this number format."""


class Int8LSTM(ConvertedLSTM):
    """A :class:`~seqlab.nn.Recurrent` of LSTM cells running in int8: same ``forward`` arguments and outputs.

    Where seqlab's CPU kernels run, ``forward(x, state=None, lengths=None)``
    computes each layer's input products ``x Wᵀ`` of the whole sequence as
    one int8 GEMM per direction and runs the recurrences on the kernels
    (``Recurrent.forward_products``); ``forward_embedded`` takes the first
    layer's products from a float32 table of the embedding rows instead.
    Where the kernels were built with torch's fbgemm (x86 wheels), each
    step's recurrent product ``h Uᵀ`` is int8 too: ``U`` with a scale per row,
    each step's ``h`` quantised to 7 bits with its own (the scheme of torch's
    dynamic quantisation), the gate math in float32 in the same fused loop.
    Without the kernels it runs torch's dynamically quantised LSTM (packed by
    ``lengths``), which quantises the same products but runs the gate math
    as separate ops.  ``cells`` are per-step :class:`Int8LSTMCell` copies for
    decoders.  ``seqlab bench g2p`` measures the speed and WER of the result.
    """

    def __init__(self, rnn: Recurrent) -> None:
        super().__init__(rnn)
        self.float_rnn = copy.deepcopy(rnn).eval()  # the recurrences of the kernel path
        for p in self.float_rnn.parameters():
            p.requires_grad_(False)
        self.inputs = nn.ModuleList(int8_linear(_input_linear(cell)) for cell in rnn.cells)

    def _int8_recurrences(self, sample: Tensor):
        """``Recurrent.forward_products``' ``int8_recurrences``, or None where the kernels lack them: the
        recurrent weights of the per-step ``cells``, packed once for fbgemm and shared with them."""
        if not _kernels.int8_available(_kernels.load()) or sample.dtype != torch.float32:
            return None

        def recurrence(k: int):
            hh = self.cells[k].hh
            return hh._pack() if isinstance(hh, Int8Linear) else None

        return recurrence

    def convert_lstm(self, lstm: nn.LSTM) -> nn.Module | None:
        # Where the kernels have the int8 products, torch's quantised LSTM is made only if a call needs it.
        return None if _kernels.int8_available(_kernels.load()) else _convert(lstm, {nn.LSTM})

    def convert_cell(self, cell: LSTMCell) -> nn.Module:
        return Int8LSTMCell(cell)

    def native(self) -> nn.Module:
        """torch's dynamically quantised LSTM of these weights: what runs where the kernels cannot."""
        if self.lstm is None:
            with _quiet():
                self.lstm = _convert(self.float_rnn.to_torch().eval(), {nn.LSTM})
        return self.lstm

    def _products(self, layer: int, layer_input: Tensor) -> list[Tensor]:
        """Each direction's int8 ``x Wᵀ (T, B, 4H)`` of a layer's whole input sequence."""
        T, B = layer_input.shape[:2]
        rows = layer_input.reshape(T * B, -1)
        D = self.num_directions
        return [self.inputs[layer * D + d](rows).view(T, B, -1) for d in range(D)]

    def forward(self, x: Tensor, state=None, lengths: Tensor | None = None):
        result = self.float_rnn.forward_products(x, self._products, state, lengths,
                                                 int8_recurrences=self._int8_recurrences(x))
        if result is not None:
            return result
        return run_native(self.native(), x, tuple(state) if state is not None else None, lengths, self.batch_first)

    def forward_embedded(self, embedding: nn.Embedding, ids: Tensor, lengths: Tensor | None = None):
        """``self(embedding(ids), lengths=lengths)`` (see ``Recurrent.forward_embedded``)."""
        result = self.float_rnn._embedded(embedding, ids, lengths, later=self._products,
                                          int8_recurrences=self._int8_recurrences(embedding.weight))
        return self(embedding(ids), lengths=lengths) if result is None else result


def _input_linear(cell: LSTMCell) -> nn.Linear:
    """``x ↦ x W_ihᵀ`` as an ``nn.Linear`` without bias (the kernels add the biases themselves)."""
    linear = nn.Linear(cell.input_size, 4 * cell.hidden_size, bias=False)
    with torch.no_grad():
        linear.weight.copy_(cell.weight_ih)
    return linear


def run_native(rnn: nn.Module, x: Tensor, hx, lengths: Tensor | None, batch_first: bool):
    """A torch ``nn.LSTM``-like module over a padded batch: packed by ``lengths`` unless no row is padded."""
    total = x.shape[1 if batch_first else 0]
    if lengths is None or bool((lengths == total).all()):
        return rnn(x, hx)
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=batch_first, enforce_sorted=False)
    output, final = rnn(packed, hx)
    output, _ = pad_packed_sequence(output, batch_first=batch_first, total_length=total)
    return output, final


def inference_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` to convert: eval mode, no gradients, and every module that can split a
    layer for faster inference (``split_combine``: the attention decoder's ``W_c``) has split it, so
    that the conversion converts the parts."""
    model = copy.deepcopy(model).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    for module in list(model.modules()):
        if callable(getattr(module, "split_combine", None)):
            module.split_combine()
    return model


def quantize_dynamic(model: nn.Module) -> nn.Module:
    """An inference copy of ``model`` computing in int8 where the CPU kernels allow (see the module docstring)."""
    if not any(e in torch.backends.quantized.supported_engines for e in ("x86", "fbgemm", "onednn", "qnnpack")):
        raise RuntimeError("this torch build has no quantised CPU engine for int8 compute")
    return swap_layers(inference_copy(model), Int8LSTM, int8_linear)


def converts(rnn: Recurrent) -> bool:
    """Whether the converted LSTMs take ``rnn``: plain LSTM cells, no residual connections, concatenated
    directions (where seqlab's kernels cannot run they fall back on torch's whole-sequence LSTM)."""
    return rnn.cell == "lstm" and not rnn.residual and rnn.merge == "concat"


def swap_layers(module: nn.Module, lstm: Callable[[Recurrent], nn.Module],
                linear: Callable[[nn.Linear], nn.Module]) -> nn.Module:
    """``module`` with every plain-LSTM :class:`~seqlab.nn.Recurrent` replaced by ``lstm(it)`` and every
    ``nn.Linear`` by ``linear(it)``, in place (the module itself, if it is one, is returned replaced).
    Other recurrent layers (other cells, residual connections, summed directions) stay as they are."""
    if isinstance(module, Recurrent) and converts(module):
        return lstm(module)
    if type(module) is nn.Linear:
        return linear(module)
    for name, child in module.named_children():
        setattr(module, name, swap_layers(child, lstm, linear))
    return module
