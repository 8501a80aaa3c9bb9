"""Maxout against its definition; the dead-ReLU counter on units made dead on purpose."""

import pytest
import torch
from torch import nn

from seqlab.nn import DeadReLUCounter, Maxout, maxout


def test_maxout_is_the_largest_affine_piece_of_each_unit():
    torch.manual_seed(0)
    layer = Maxout(5, 3, pieces=4)
    x = torch.randn(7, 5)
    z = x @ layer.linear.weight.t() + layer.linear.bias  # (7, 12): unit i owns pieces 4 i .. 4 i + 3
    want = torch.stack([z[:, 4 * i : 4 * i + 4].max(dim=1).values for i in range(3)], dim=1)
    torch.testing.assert_close(layer(x), want)
    assert layer(torch.randn(2, 6, 5)).shape == (2, 6, 3)


def test_maxout_over_channels_and_its_errors():
    x = torch.arange(24.0).view(1, 6, 2, 2)  # channels grouped in pairs
    y = maxout(x, 2, dim=1)
    assert y.shape == (1, 3, 2, 2) and torch.equal(y, x[:, 1::2])
    with pytest.raises(ValueError, match="groups of 4"):
        maxout(x, 4, dim=1)
    with pytest.raises(ValueError, match="pieces"):
        Maxout(3, 2, pieces=0)


def test_a_maxout_of_two_pieces_can_be_a_relu_or_an_absolute_value():
    layer = Maxout(1, 1, pieces=2)
    with torch.no_grad():
        layer.linear.weight.copy_(torch.tensor([[1.0], [0.0]]))  # max(x, 0)
        layer.linear.bias.zero_()
    x = torch.linspace(-2, 2, 9).unsqueeze(1)
    torch.testing.assert_close(layer(x), torch.relu(x))
    with torch.no_grad():
        layer.linear.weight.copy_(torch.tensor([[1.0], [-1.0]]))  # max(x, -x)
    torch.testing.assert_close(layer(x), x.abs())


def test_dead_relu_counter_finds_the_units_that_never_fire():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU())
    with torch.no_grad():
        model[0].bias[:3] = -100.0  # three units of the first layer can never fire on these inputs
    with DeadReLUCounter(model) as counter:
        for _ in range(5):
            model(torch.randn(16, 4))
    dead = counter.dead()
    assert dead["1"] == pytest.approx(3 / 8)
    assert set(dead) == {"1", "3"} and 0.0 <= dead["3"] < 1.0
    model(torch.randn(16, 4))  # closed: no longer watched
    assert counter.dead() == dead
    with pytest.raises(ValueError, match="no nn.ReLU"):
        DeadReLUCounter(nn.Linear(2, 2))


def test_dead_relu_counter_counts_channels_of_a_convolution():
    conv = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
    with torch.no_grad():
        conv[0].bias.copy_(torch.tensor([-1e3, 0.0, 0.0, -1e3]))
    with DeadReLUCounter(conv, unit_dim=1) as counter:
        conv(torch.randn(2, 1, 5, 5))
    assert counter.dead() == {"1": 0.5}
