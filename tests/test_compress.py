"""Int8 storage of weights (seqlab.compress.quant)."""

import torch

from seqlab.compress import dequantize_state, quantize_state
from seqlab.compress.quant import SCALE_SUFFIX


def test_int8_round_trip_is_within_half_a_step_per_row():
    torch.manual_seed(0)
    state = {"w": torch.randn(6, 5) * torch.arange(1, 7).unsqueeze(1), "conv": torch.randn(3, 2, 4),
             "b": torch.randn(5), "steps": torch.tensor(7)}
    stored = quantize_state(state)
    assert stored["w"].dtype == stored["conv"].dtype == torch.int8
    assert stored["b"].dtype == torch.float16 and torch.equal(stored["steps"], state["steps"])
    assert stored["w" + SCALE_SUFFIX].shape == (6,)
    back = dequantize_state(stored)
    assert set(back) == set(state)
    for name in ("w", "conv"):
        step = state[name].reshape(state[name].shape[0], -1).abs().amax(1) / 127
        error = (back[name] - state[name]).reshape(state[name].shape[0], -1).abs().amax(1)
        assert bool((error <= step / 2 + 1e-6).all()), name
        assert back[name].dtype == torch.float32
    torch.testing.assert_close(back["b"].float(), state["b"], atol=1e-2, rtol=1e-3)


def test_zero_rows_stay_zero():
    back = dequantize_state(quantize_state({"w": torch.zeros(3, 4)}))
    assert torch.equal(back["w"], torch.zeros(3, 4))
