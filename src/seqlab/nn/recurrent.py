"""One recurrent layer for every cell: time, layers, directions, residuals, lengths.

``Recurrent`` looks like ``torch.nn.LSTM`` from outside.  Inside, one of four
paths runs (``Recurrent.backend`` says which):

* "torch": on CUDA, on the CPU where seqlab's kernels cannot run, and with
  ``impl="torch"``, the standard cells (lstm, gru, rnn_tanh, rnn_relu) hand
  their own parameters to torch's fused kernel (cuDNN on CUDA);
* "seqlab": every cell on a float CPU input runs seqlab's compiled CPU kernels
  (:mod:`seqlab.nn._kernels`): the input projection of the whole sequence in
  one GEMM, a C++ time loop with one recurrent GEMM and one fused pointwise
  pass per step, and a hand-written backward through time;
* "triton": on CUDA the same cells run seqlab's Triton kernels
  (:mod:`seqlab.nn._kernels.gpu`), when Triton is installed;
* "reference": the same projection, then ``cell.step`` once per time step in
  Python with autograd.  It is the definition the others are tested
  against, and what runs where no kernel applies (other devices, a machine
  that cannot build the kernels).

Notation: ``T`` time, ``B`` batch, ``I`` input size, ``H`` hidden size,
``L`` layers, ``D`` directions (1 or 2).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..errors import SeqlabError
from . import _kernels
from ._kernels import gpu
from .cells import CELLS, RecurrentCell

__all__ = ["Recurrent", "from_torch"]

StateArg = Tensor | tuple[Tensor, ...] | None

_IMPLS = ("auto", "torch", "fused", "triton", "reference")
MERGES = ("concat", "sum")  # how a bidirectional layer joins its two directions' outputs

# A runner takes one layer and direction: (cell, x, state or None for zeros, lengths or None, reverse)
# -> (output, state).
Runner = Callable[[RecurrentCell, Tensor, tuple, "Tensor | None", bool], tuple[Tensor, tuple]]
# Input products of a layer for inference: (layer, layer input (T, B, I)) -> x Wᵀ (T, B, G) per
# direction, or None (the kernel multiplies).
Products = Callable[[int, Tensor], "list[Tensor] | None"]
# Int8 recurrent weights for inference from given products: layer-direction index -> U as the kernels'
# packed Int8Linear, or None (see _kernels.run_cell).
Int8Recurrences = Callable[[int], "object | None"]


# The kernels only read their lengths and initial state (they copy the state
# before the loop), so the all-T lengths of an unpadded batch and the zero state
# are made once per shape and kept: small ATen ops cost ~10 us each right after a
# kernel has evicted the interpreter's data from cache.  They are made outside
# inference mode even when the first call runs in it: autograd cannot save an
# inference tensor, so one kept from an evaluation under torch.inference_mode()
# would break every training step after it.
def checked_lengths(lengths: Tensor | None, T: int, B: int) -> Tensor | None:
    """The checks every sequence layer makes (``Recurrent``, ``CRF``): at least one step (torch.nn.LSTM
    refuses T = 0 too), and ``lengths`` ``(B,)`` in ``[1, T]``, returned as int64 (None stays None)."""
    if T == 0:
        raise ValueError("expected a sequence of at least one time step, got T=0")
    if lengths is None:
        return None
    lengths = torch.as_tensor(lengths)
    if lengths.shape != (B,):
        raise ValueError(f"lengths must have shape ({B},), got {tuple(lengths.shape)}")
    if lengths.numel() and (int(lengths.min()) < 1 or int(lengths.max()) > T):
        raise ValueError(f"lengths must lie in [1, {T}], got min {int(lengths.min())}, max {int(lengths.max())}")
    return lengths.to(torch.long)


@functools.lru_cache(maxsize=32)
def _full_lengths(T: int, B: int) -> Tensor:
    """``(B,)`` int64, all ``T``."""
    with torch.inference_mode(False):
        return torch.full((B,), T, dtype=torch.long)


@functools.lru_cache(maxsize=32)
def _zero_state(B: int, H: int, dtype: torch.dtype, n: int) -> tuple[Tensor, ...]:
    """``n`` zero ``(B, H)`` CPU tensors (one tensor, ``n`` times)."""
    with torch.inference_mode(False):
        zeros = torch.zeros(B, H, dtype=dtype)
    return (zeros,) * n


def _cpu_runner(kernels) -> Runner:
    def run(cell, x, state, lengths, reverse, projected=False, int8_recurrence=None):
        # projected: x is already x Wᵀ (_kernels.input_weight), for inference; int8_recurrence: see run_cell.
        T, B = x.shape[:2]  # the compiled kernels take every length, as int64 on the CPU
        lengths = _full_lengths(T, B) if lengths is None else lengths.to("cpu").contiguous()
        if state is None:
            state = _zero_state(B, cell.hidden_size, x.dtype, cell.state_size)
        return _kernels.run_cell(kernels, cell, x, state, lengths, reverse, projected, int8_recurrence)

    run.takes_products = True

    return run


def _cell_class(name: str) -> type[RecurrentCell]:
    try:
        return CELLS[name]
    except KeyError:
        raise ValueError(f"unknown cell {name!r}; valid cells: {', '.join(CELLS)}") from None


def _check_cell_options(cls: type[RecurrentCell], options: dict) -> None:
    params = inspect.signature(cls.__init__).parameters
    valid = [n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        hint = f"valid options: {', '.join(valid)}" if valid else "it takes no options"
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for cell {cls.__name__}; {hint}")


class Recurrent(nn.Module):
    """A stack of recurrent layers built from any registered cell.

    Args:
        cell: a name from :data:`seqlab.nn.CELLS` ("lstm", "gru", "sru", ...).
        input_size: features per time step of the input, ``I``.
        hidden_size: units per direction, ``H``.
        num_layers: stacked layers, ``L``.
        batch_first: input and output are ``(B, T, ·)`` instead of ``(T, B, ·)``.
        bidirectional: run a second cell backwards over each sequence
            (Schuster & Paliwal 1997); ``merge`` joins the two outputs.
        merge: with ``bidirectional``, "concat" (``D * H`` features per
            step, torch's layout) or "sum" (``H``: the two directions'
            outputs added, halving the next layer's input).
        dropout: dropout on the outputs of every layer but the last.
        residual: add each layer's input to its output wherever the two have
            the same size (a deep residual RNN; Wu et al. 2016 for GNMT).
            Layer 0 qualifies only when ``input_size`` equals a layer's output
            size (``D * H``, or ``H`` with ``merge="sum"``).
        impl: "auto" runs seqlab's compiled kernel on float CPU inputs
            when it builds (for the standard cells too: it trains faster
            than torch's CPU kernels, see ``seqlab bench cells``); on CUDA
            the standard cells run torch's kernel (cuDNN) and the others
            seqlab's Triton kernels; where neither applies, torch's kernel
            for a standard cell, else the reference loop. "torch" insists
            on torch's kernel (standard cells without residual connections
            only); "fused" insists on seqlab's kernels (an error where they
            cannot run); "triton" insists on the Triton kernels, on CUDA
            or, under ``TRITON_INTERPRET=1``, on any device; "reference"
            always runs the step-by-step Python loop.
        **cell_options: passed to the cell (``peepholes="if"``, ``t_max=784``, ...).

    ``forward(x, state=None, lengths=None) -> (output, state)``:

    * ``x``: ``(T, B, I)`` (or ``(B, T, I)`` with ``batch_first``), or a
      ``PackedSequence``, in which case the output is one too.
    * ``lengths``: ``(B,)`` true lengths of a padded batch.  Padding steps
      neither change the state nor appear in the output (they are 0).
    * ``state``: ``(L * D, B, H)``, or a tuple of such tensors for cells
      with several (``(h, c)`` for the LSTM family), ordered like torch:
      layer-major, forward direction before backward.
    * ``output``: ``(T, B, D * H)``, the last layer's ``h`` at every step
      (``(T, B, H)`` with ``merge="sum"``).
    """

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        batch_first: bool = False,
        bidirectional: bool = False,
        merge: str = "concat",
        dropout: float = 0.0,
        residual: bool = False,
        impl: str = "auto",
        **cell_options,
    ) -> None:
        super().__init__()
        cls = _cell_class(cell)
        _check_cell_options(cls, cell_options)
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if impl not in _IMPLS:
            raise ValueError(f"impl must be one of {', '.join(_IMPLS)}, got {impl!r}")
        if merge not in MERGES:
            raise ValueError(f"merge must be one of {', '.join(MERGES)}, got {merge!r}")
        if merge != "concat" and not bidirectional:
            raise ValueError(f"merge={merge!r} joins the two directions' outputs: it needs bidirectional=True")
        if impl == "triton" and not gpu.supports(cls):
            names = [name for name, c in CELLS.items() if gpu.supports(c)]
            raise ValueError(f"impl='triton' needs a cell with Triton kernels ({', '.join(names)}), got {cell!r}")
        if impl == "torch" and (cls.native is None or residual or merge != "concat"):
            names = [name for name, c in CELLS.items() if c.native]
            raise ValueError(f"impl='torch' needs a standard cell ({', '.join(names)}) without residual "
                             f"connections and with concatenated directions, got {cell!r}"
                             + (" with residual=True" if residual else "")
                             + (f" with merge={merge!r}" if merge != "concat" else ""))
        if impl == "fused" and not _kernels.supports(cls):
            fused = [name for name, c in CELLS.items() if _kernels.supports(c)]
            raise ValueError(f"impl='fused' needs a cell with a seqlab kernel ({', '.join(fused)}), got {cell!r}")
        self.cell = cell
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.batch_first = batch_first
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        self.merge = merge
        self.dropout = float(dropout)
        self.impl = impl
        self.cell_options = dict(cell_options)
        self.state_size = cls.state_size

        out = self.output_size
        layer_inputs = [input_size] + [out] * (num_layers - 1)
        self.residual_layers = tuple(l for l, size in enumerate(layer_inputs) if residual and size == out)
        if residual and not self.residual_layers:
            raise ValueError(
                f"residual=True needs a layer whose input and output sizes match: with num_layers=1 "
                f"input_size ({input_size}) must equal the output size ({out}); "
                f"or use num_layers >= 2"
            )
        self.residual = residual
        # cells[l * D + d]: layer l, direction d (0 forward, 1 backward), torch's order.
        self.cells = nn.ModuleList(
            cls(size, hidden_size, **cell_options) for size in layer_inputs for _ in range(self.num_directions)
        )

    # ------------------------------------------------------------------ info

    @property
    def output_size(self) -> int:
        """Features per step of the output: ``D * H``, or ``H`` when the directions are summed."""
        return self.hidden_size if self.merge == "sum" else self.num_directions * self.hidden_size

    @property
    def native_allowed(self) -> bool:
        """True when torch's fused kernel may run this module: ``impl`` "auto" or "torch", a standard
        cell, no residual connections, concatenated directions. Whether "auto" runs it depends on the
        input (see :attr:`backend`)."""
        return (self.impl in ("auto", "torch") and CELLS[self.cell].native is not None and not self.residual
                and self.merge == "concat")

    @property
    def uses_native(self) -> bool:
        """True when a float32 input on the module's device runs torch's fused kernel."""
        return self.backend == "torch"

    @property
    def backend(self) -> str:
        """The path a float32 input on the module's device takes: "torch", "seqlab" (compiled CPU
        kernel), "triton" (Triton kernels, CUDA) or "reference"."""
        cls = CELLS[self.cell]
        if self.native_allowed:
            on_cpu = next(self.parameters()).device.type == "cpu"
            return "seqlab" if self.impl == "auto" and on_cpu and _kernels.load() is not None else "torch"
        if self.impl == "reference":
            return "reference"
        weight = next(self.parameters())
        if weight.is_cuda or self.impl == "triton":
            usable = gpu.supports(cls) and gpu.load() is not None and (weight.is_cuda or gpu.interpreting())
            return "triton" if usable and gpu.works(cls, torch.float32, weight.device) else "reference"
        if _kernels.supports(cls) and _kernels.load() is not None:
            return "seqlab"
        return "reference"

    def extra_repr(self) -> str:
        s = f"{self.cell!r}, {self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        for name in ("batch_first", "bidirectional", "residual"):
            if getattr(self, name):
                s += f", {name}=True"
        if self.merge != "concat":
            s += f", merge={self.merge!r}"
        if self.dropout:
            s += f", dropout={self.dropout}"
        return s

    # --------------------------------------------------------------- forward

    def forward(self, x: Tensor | PackedSequence, state: StateArg = None, lengths: Tensor | None = None):
        if isinstance(x, PackedSequence):
            if lengths is not None:
                raise ValueError("pass lengths only with a padded tensor, not with a PackedSequence")
            return self._forward_packed(x, state)
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            layout = "(B, T, I)" if self.batch_first else "(T, B, I)"
            raise ValueError(f"expected input {layout} with I={self.input_size}, got shape {tuple(x.shape)}")
        if self.batch_first:
            x = x.transpose(0, 1)
        output, final = self._run(x, state, lengths)
        if self.batch_first:
            output = output.transpose(0, 1)
        return output, final

    def forward_embedded(self, embedding: nn.Embedding, ids: Tensor, lengths: Tensor | None = None):
        """``self(embedding(ids), lengths=lengths)``, with the first layer's input products looked up.

        ``ids``: ``(B, T)`` with ``batch_first``, else ``(T, B)``.  A cell's
        input product ``W x`` is linear in x, so for an embedded token it is a
        row of ``E Wᵀ`` (V, G): in inference on seqlab's CPU kernels each
        direction of the first layer starts from that table, one row copy per
        token instead of a GEMM (the trick the attention decoder uses for its
        own inputs).  Elsewhere (training, gradients, other paths, SRU,
        residual first layer) this is exactly ``self(embedding(ids), ...)``.
        """
        result = self._embedded(embedding, ids, lengths)
        return self(embedding(ids), lengths=lengths) if result is None else result

    def forward_products(self, x: Tensor, products: Products, state: StateArg = None, lengths: Tensor | None = None,
                         *, int8_recurrences: Int8Recurrences | None = None):
        """``self(x, state, lengths)`` for inference on seqlab's CPU kernels, with each layer's input
        products ``x Wᵀ`` (``W``: the cell's ``weight_ih``, no bias) from ``products(layer,
        layer_input)``: a list of ``(T, B, G)``, one per direction, or None to let the kernel multiply.
        For int8 or other number formats of that product (``seqlab.compress``).  Returns None where
        this path cannot run (training, gradients, not seqlab's CPU kernels, SRU): the caller falls back.
        ``int8_recurrences(k)``, for plain LSTM cells: layer-direction ``k``'s recurrent weight in int8
        (``_kernels.run_cell``'s ``int8_recurrence``), used where its products are given.
        """
        runner = self._product_runner(x)
        if runner is None:
            return None
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(f"expected input with I={self.input_size}, got shape {tuple(x.shape)}")
        x = x.transpose(0, 1) if self.batch_first else x
        T, B = x.shape[:2]
        lengths = checked_lengths(lengths, T, B)
        output, final = self._forward_layers(x, self._check_state(state, B), lengths, runner, products,
                                             int8_recurrences)
        return self._finish(output, final)

    def _product_runner(self, sample: Tensor) -> Runner | None:
        """The CPU runner when an inference call on ``sample``'s dtype and device may start its layers
        from given input products (``_forward_layers``' ``products``), else None."""
        runner = self._kernels_for(sample) if sample.device.type == "cpu" else None
        usable = (
            getattr(runner, "takes_products", False)
            and not (self.training and self.dropout)
            and not (torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters()))
            and all(_kernels.input_weight(cell) is not None for cell in self.cells)
        )
        return runner if usable else None

    def _embedded(self, embedding: nn.Embedding, ids: Tensor, lengths: Tensor | None, later: Products | None = None,
                  int8_recurrences: Int8Recurrences | None = None):
        """:meth:`forward_embedded`'s lookup path (``later``: the products of layers 1, 2, ...; see
        :meth:`forward_products` for ``int8_recurrences``), or None."""
        weight = embedding.weight
        runner = self._product_runner(weight)
        if (runner is None or 0 in self.residual_layers or embedding.max_norm is not None or ids.numel() == 0
                or (torch.is_grad_enabled() and weight.requires_grad)):
            return None
        if ids.dim() != 2:
            raise ValueError(f"expected ids {'(B, T)' if self.batch_first else '(T, B)'}, got shape {tuple(ids.shape)}")
        ids = ids.t() if self.batch_first else ids  # (T, B)
        T, B = ids.shape
        lengths = checked_lengths(lengths, T, B)
        first = [F.embedding(ids, weight @ _kernels.input_weight(cell).t())  # (T, B, G) each
                 for cell in self.cells[: self.num_directions]]

        def products(layer: int, layer_input: Tensor) -> list[Tensor] | None:
            return first if layer == 0 else later(layer, layer_input) if later is not None else None

        output, final = self._forward_layers(first[0], None, lengths, runner, products, int8_recurrences)
        return self._finish(output, final)

    def _finish(self, output: Tensor, final: tuple[Tensor, ...]):
        """(T, B, D*H) output and final states -> the caller's layout and state format."""
        if self.batch_first:
            output = output.transpose(0, 1)
        return output, (final[0] if self.state_size == 1 else final)

    def _run(self, x: Tensor, state: StateArg, lengths: Tensor | None):
        """(T, B, I) -> ((T, B, D*H), final state in the caller's format)."""
        T, B = x.shape[:2]
        lengths = checked_lengths(lengths, T, B)
        states = self._check_state(state, B)
        kernels = self._kernels_for(x)
        if kernels is None and self.native_allowed:
            output, final = self._forward_native(x, states, lengths)
        else:
            output, final = self._forward_layers(x, states, lengths, kernels)
        return output, (final[0] if self.state_size == 1 else final)

    def _kernels_for(self, x: Tensor) -> Runner | None:
        """The kernel runner for this input: compiled CPU, Triton (CUDA), or None (the reference loop)."""
        cls = CELLS[self.cell]
        if self.impl == "reference" or not (_kernels.supports(cls) or gpu.supports(cls)):
            return None
        if self.native_allowed and (self.impl == "torch" or x.is_cuda):
            return None  # torch's kernel (cuDNN on CUDA)
        if self.impl == "triton" or x.is_cuda:
            if gpu.supports(cls) and gpu.usable(x) and gpu.works(cls, x.dtype, x.device):
                return gpu.run_cell
            if self.impl in ("fused", "triton"):
                if gpu.load() is None:
                    why = "Triton is not installed"
                elif not gpu.usable(x):
                    why = f"they run on non-empty float32/float64 CUDA tensors, got {x.dtype} on {x.device}"
                else:
                    why = "they failed on this device (see the notice above)"
                raise SeqlabError(f"impl={self.impl!r} asks for seqlab's Triton kernels, but {why}",
                                  hint="use impl='auto' to fall back to the reference loop")
            return None
        runnable = x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and x.numel() > 0
        kernels = _kernels.load() if runnable else None
        if kernels is None and self.impl == "fused":
            reason = "they could not be loaded (see the notice above)" if runnable else (
                f"they run on non-empty float CPU tensors, got {x.dtype} on {x.device}")
            raise SeqlabError(
                f"impl='fused' asks for seqlab's compiled kernels, but {reason}",
                hint="use impl='auto' to fall back to the reference loop; building needs a C++ compiler and ninja",
            )
        return None if kernels is None else _cpu_runner(kernels)


    def _check_state(self, state: StateArg, B: int) -> tuple[Tensor, ...] | None:
        if state is None:
            return None
        states = (state,) if isinstance(state, Tensor) else tuple(state)
        shape = (self.num_layers * self.num_directions, B, self.hidden_size)
        if len(states) != self.state_size or any(s.shape != shape for s in states):
            got = [tuple(s.shape) for s in states]
            raise ValueError(f"state must be {self.state_size} tensor(s) of shape {shape}, got {got}")
        return states

    def _forward_packed(self, packed: PackedSequence, state: StateArg) -> tuple[PackedSequence, StateArg]:
        if packed.data.dim() != 2 or packed.data.shape[-1] != self.input_size:
            raise ValueError(f"expected packed data (N, {self.input_size}), got shape {tuple(packed.data.shape)}")
        padded, lengths = pad_packed_sequence(packed)  # (T, B, I), original batch order
        output, final = self._run(padded, state, lengths)
        # Re-pack in the input's own order so sorted/unsorted indices carry over unchanged.
        order = packed.sorted_indices
        if order is not None:
            output = output.index_select(1, order)
            lengths = lengths.index_select(0, order.cpu())
        data = pack_padded_sequence(output, lengths, enforce_sorted=True).data
        return PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices), final

    # ---- torch's fused kernel

    def _flat_weights(self) -> list[Tensor]:
        return [p for c in self.cells for p in (c.weight_ih, c.weight_hh, c.bias_ih, c.bias_hh)]

    def _flatten_for_cudnn(self, weights: list[Tensor]) -> None:
        """Lay the weights out in one chunk, as ``torch.nn.LSTM`` does; otherwise cuDNN copies them at every call.

        Done again whenever the weights have moved (``.to()``, a new device);
        the parameters stay the same objects, so optimizers keep them.
        """
        first = weights[0]
        ptrs = tuple(w.data_ptr() for w in weights)
        if ptrs == getattr(self, "_cudnn_ptrs", None):
            return
        usable = (first.is_cuda and torch.backends.cudnn.is_acceptable(first) and torch._use_cudnn_rnn_flatten_weight()
                  and len(set(ptrs)) == len(ptrs) and all(w.dtype == first.dtype for w in weights))
        if usable:
            import torch.backends.cudnn.rnn as cudnn_rnn

            mode = cudnn_rnn.get_cudnn_mode(CELLS[self.cell].native.upper())
            with torch.cuda.device_of(first), torch.no_grad():
                torch._cudnn_rnn_flatten_weight(weights, 4, self.input_size, mode, self.hidden_size, 0,
                                                self.num_layers, False, self.bidirectional)
        self._cudnn_ptrs = tuple(w.data_ptr() for w in weights)

    def _forward_native(self, x: Tensor, states, lengths):
        """(T, B, I) -> (T, B, D*H) through ``torch._VF.<lstm|gru|rnn_*>`` on our own parameters."""
        kernel = getattr(torch._VF, CELLS[self.cell].native)
        if x.is_cuda:
            self._flatten_for_cudnn(self._flat_weights())
        T, B = x.shape[:2]
        if states is None:
            zeros = x.new_zeros(self.num_layers * self.num_directions, B, self.hidden_size)
            states = tuple(zeros for _ in range(self.state_size))
        hx = states if self.state_size > 1 else states[0]
        args = (self._flat_weights(), True, self.num_layers, self.dropout, self.training, self.bidirectional)
        if lengths is None or bool((lengths == T).all()):  # no padding: the unpacked kernel is faster
            output, *final = kernel(x, hx, *args, False)
            return output, tuple(final)
        packed = pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)
        order, restore = packed.sorted_indices, packed.unsorted_indices
        hx = tuple(s.index_select(1, order) for s in states)
        data, *final = kernel(packed.data, packed.batch_sizes, hx if self.state_size > 1 else hx[0], *args)
        output, _ = pad_packed_sequence(PackedSequence(data, packed.batch_sizes, order, restore), total_length=T)
        return output, tuple(s.index_select(1, restore) for s in final)

    # ---- seqlab's compiled kernels or the reference loop

    def _forward_layers(self, x: Tensor, states, lengths, kernels=None, products=None, int8_recurrences=None):
        """(T, B, I) -> (T, B, D*H), layer by layer and direction by direction.

        With ``kernels`` (a runner) each direction is one compiled or Triton run,
        otherwise one ``cell.step`` per time step.  ``products(layer,
        layer_input)``, for inference on the CPU runner, may give each
        direction's input product ``x Wᵀ`` of a layer (a list of ``(T, B, G)``;
        None: the kernel multiplies); for the first layer ``x`` then only
        carries the shape; ``int8_recurrences`` then gives int8 recurrent weights (forward_products).
        """
        if kernels is not None and states is None and lengths is None and len(self.cells) == 1 \
                and not self.residual_layers:
            # One layer and direction from a zero state over an unpadded batch: the common call, kept short.
            output, state = kernels(self.cells[0], x, None, None, False)
            return output, tuple(s.unsqueeze(0) for s in state)
        T, B = x.shape[:2]
        # mask[t]: (B, 1), True where step t lies inside the sequence.
        mask = None
        if lengths is not None:
            steps = torch.arange(T, device=x.device).unsqueeze(1)
            mask = (steps < lengths.to(x.device).unsqueeze(0)).unsqueeze(-1)  # (T, B, 1)
        finals: list[tuple[Tensor, ...]] = []
        layer_input = x
        for layer in range(self.num_layers):
            outputs = []
            given = products(layer, layer_input) if products is not None else None
            for direction in range(self.num_directions):
                k = layer * self.num_directions + direction
                cell = self.cells[k]
                state = cell.init_state(B, x) if states is None else tuple(s[k] for s in states)
                if given is not None:
                    int8 = int8_recurrences(k) if int8_recurrences is not None else None
                    output, state = kernels(cell, given[direction], state, lengths, direction == 1, projected=True,
                                            int8_recurrence=int8)
                elif kernels is not None:
                    output, state = kernels(cell, layer_input, state, lengths, direction == 1)
                else:
                    output, state = self._run_direction(cell, layer_input, state, mask, reverse=direction == 1)
                outputs.append(output)
                finals.append(state)
            if len(outputs) == 1:
                y = outputs[0]
            elif self.merge == "sum":
                y = outputs[0] + outputs[1]  # (T, B, H)
            else:
                y = torch.cat(outputs, dim=-1)  # (T, B, D*H)
            if layer in self.residual_layers:
                y = y + layer_input if mask is None else y + layer_input * mask
            if self.dropout and self.training and layer < self.num_layers - 1:
                y = F.dropout(y, self.dropout, training=True)
            layer_input = y
        if len(finals) == 1:  # one layer, one direction: a view instead of a copy
            return layer_input, tuple(s.unsqueeze(0) for s in finals[0])
        final = tuple(torch.stack([s[j] for s in finals]) for j in range(self.state_size))
        return layer_input, final

    @staticmethod
    def _run_direction(cell: RecurrentCell, x: Tensor, state, mask: Tensor | None, reverse: bool):
        xp = cell.project(x)  # (T, B, G): every input GEMM of the sequence at once
        T = x.shape[0]
        outputs: list[Tensor] = [x] * T
        for t in (range(T - 1, -1, -1) if reverse else range(T)):
            new = cell.step(xp[t], state)
            if mask is not None:
                # Outside a sequence the state is carried through unchanged and the output is 0,
                # so the backward direction starts each sequence at its own last step.
                m = mask[t]
                new = tuple(torch.where(m, n, s) for n, s in zip(new, state))
                outputs[t] = new[0] * m
            else:
                outputs[t] = new[0]
            state = new
        return torch.stack(outputs), state

    # ------------------------------------------------------------- interop

    def to_torch(self) -> nn.RNNBase:
        """An equivalent ``torch.nn.LSTM``/``GRU``/``RNN`` with copies of the weights."""
        native = CELLS[self.cell].native
        if native is None or self.residual or self.merge != "concat":
            raise ValueError(
                f"only lstm, gru, rnn_tanh and rnn_relu without residual connections and with concatenated "
                f"directions have a torch equivalent; this layer is cell={self.cell!r}, residual={self.residual}, "
                f"merge={self.merge!r}"
            )
        kwargs = dict(
            num_layers=self.num_layers,
            batch_first=self.batch_first,
            bidirectional=self.bidirectional,
            dropout=self.dropout,
        )
        if native == "lstm":
            module = nn.LSTM(self.input_size, self.hidden_size, **kwargs)
        elif native == "gru":
            module = nn.GRU(self.input_size, self.hidden_size, **kwargs)
        else:
            nonlinearity = native.removeprefix("rnn_")
            module = nn.RNN(self.input_size, self.hidden_size, nonlinearity=nonlinearity, **kwargs)
        ref = self.cells[0].weight_ih
        module = module.to(device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            for name, src in zip(_torch_weight_names(self.num_layers, self.num_directions), self._flat_weights()):
                getattr(module, name).copy_(src)
        return module


def _torch_weight_names(num_layers: int, num_directions: int) -> list[str]:
    names = []
    for layer in range(num_layers):
        for direction in range(num_directions):
            suffix = f"_l{layer}" + ("_reverse" if direction else "")
            names += [f"{kind}{suffix}" for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    return names


def from_torch(module: nn.RNNBase) -> Recurrent:
    """Convert a ``torch.nn.LSTM``, ``GRU`` or ``RNN`` into a :class:`Recurrent` with the same weights."""
    if isinstance(module, nn.LSTM):
        cell = "lstm"
        if module.proj_size:
            raise ValueError("LSTM with proj_size > 0 has no seqlab equivalent")
    elif isinstance(module, nn.GRU):
        cell = "gru"
    elif isinstance(module, nn.RNN):
        cell = f"rnn_{module.nonlinearity}"
    else:
        raise TypeError(f"expected torch.nn.LSTM, GRU or RNN, got {type(module).__name__}")
    if not module.bias:
        raise ValueError("torch modules built with bias=False are not supported; seqlab cells always have biases")
    layer = Recurrent(
        cell,
        module.input_size,
        module.hidden_size,
        module.num_layers,
        batch_first=module.batch_first,
        bidirectional=module.bidirectional,
        dropout=module.dropout,
    )
    ref = module.weight_ih_l0
    layer = layer.to(device=ref.device, dtype=ref.dtype)
    with torch.no_grad():
        names = _torch_weight_names(module.num_layers, 2 if module.bidirectional else 1)
        for name, dst in zip(names, layer._flat_weights()):
            dst.copy_(getattr(module, name))
    layer.train(module.training)
    return layer
