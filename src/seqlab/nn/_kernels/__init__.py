"""Fused CPU kernels for every cell, the standard ones (lstm, gru, rnn_*) too.

``Recurrent(..., impl="auto")`` uses them for every cell in
:func:`supports` when the input is a float32/float64 CPU tensor: the input
projection of all steps in one GEMM, a compiled time loop with one
recurrent GEMM and one fused pointwise pass per step, and a hand-written
backward through time whose weight gradients are one GEMM over all steps.

The C++ source (``recurrence.cpp``) is compiled on first use into a cache
folder (``build.cache_dir()``).  Without a compiler, or with
``SEQLAB_NO_KERNELS=1``, :func:`load` returns ``None`` after a one-line
notice and the layers run torch's kernel (standard cells) or the PyTorch
reference loop, which is also what the tests compare the kernels with.

On CUDA the standard cells run torch's kernel (cuDNN) and the other cells
the Triton kernels of :mod:`.gpu` (optional: without Triton they run the
reference loop).
"""

from .build import load
from .functions import input_weight, int8_available, run_cell, supports

__all__ = ["load", "run_cell", "input_weight", "int8_available", "supports"]
