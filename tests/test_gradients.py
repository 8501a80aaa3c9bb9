"""Gradient norms through time against their closed form for a linear recurrence, and the demo."""

import pytest
import torch

from seqlab.nn import CELLS
from seqlab.nn.gradients import step_gradient_norms


def test_a_relu_rnn_in_its_linear_regime_scales_the_gradient_by_the_gain_each_step():
    # Positive inputs and states, identity x g recurrent weights: h_t = g h_{t-1} + W x_t + b stays
    # positive, each Jacobian is g I, and the gradient k steps back is g^k.
    cell = CELLS["rnn_relu"](3, 4).double()
    with torch.no_grad():
        cell.weight_hh.copy_(0.8 * torch.eye(4, dtype=torch.float64))
        cell.weight_ih.abs_()
        cell.bias_ih.fill_(1.0)
        cell.bias_hh.zero_()
    x = torch.rand(12, 5, 3, dtype=torch.float64)
    norms = step_gradient_norms(cell, x)
    want = 0.8 ** torch.arange(11, -1, -1, dtype=torch.float64)
    torch.testing.assert_close(norms, want)


def test_every_cell_gives_one_at_the_last_step_and_finite_norms():
    torch.manual_seed(0)
    x = torch.randn(6, 3, 4)
    for name, cls in CELLS.items():
        norms = step_gradient_norms(cls(4, 5), x)
        assert norms.shape == (6,) and torch.isfinite(norms).all(), name
        assert float(norms[-1]) == pytest.approx(1.0, abs=1e-6), name
    with pytest.raises(ValueError, match="T >= 1"):
        step_gradient_norms(CELLS["gru"](4, 5), torch.randn(0, 3, 4))


def test_the_demo_shows_vanishing_and_exploding_gradients(tmp_path):
    from conftest import load_benchmark

    bench = load_benchmark("gradient_flow")
    x = bench.text_batch(["the", "cat", "sat", "on", "a", "mat"] * 20, steps=30, batch=4)
    assert x.shape == (30, 4, 28) and torch.equal(x.sum(2), torch.ones(30, 4, dtype=x.dtype))
    rows = dict(bench.measure(x, hidden=16))
    assert rows["tanh RNN, orthogonal x 0.5"][0] < 1e-3  # vanishing: 0.5^29 bounds it
    assert rows["ReLU RNN, identity x 1.1"][0] > 1.0  # exploding
    page = bench.render(list(rows.items()), 30)
    assert "| LSTM |" in page and "29 steps back" in page
