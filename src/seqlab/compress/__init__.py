"""Making trained networks smaller and faster: int8 storage (quant) and int8 compute (dynamic)."""

from .dynamic import quantize_dynamic
from .quant import dequantize_state, quantize_state

__all__ = ["quantize_state", "dequantize_state", "quantize_dynamic"]
