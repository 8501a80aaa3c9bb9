"""Making trained networks smaller and faster: int8 storage (quant), int8 compute (dynamic), bf16 compute,
low-rank factorization (svd)."""

from .bfloat16 import bf16_is_fast, bfloat16_compute
from .dynamic import quantize_dynamic
from .quant import dequantize_state, quantize_state
from .svd import Factored, compress_svd

__all__ = ["quantize_state", "dequantize_state", "quantize_dynamic", "bfloat16_compute", "bf16_is_fast",
           "compress_svd", "Factored"]
