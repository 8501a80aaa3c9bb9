"""Making trained networks smaller: weight quantisation for storage."""

from .quant import dequantize_state, quantize_state

__all__ = ["quantize_state", "dequantize_state"]
