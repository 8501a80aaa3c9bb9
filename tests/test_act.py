"""ACT halting on hand-made cases (eqs. 8-14), the mean field, gradients in float64, any cell."""

import math

import pytest
import torch
from torch import nn

from seqlab.memory.act import ACT, ACTCell
from seqlab.nn import CELLS


def _constant_halting(cell: ACTCell, h: float) -> None:
    """Make the halting unit output ``h`` at every step, whatever the state."""
    with torch.no_grad():
        cell.halt.weight.zero_()
        cell.halt.bias.fill_(math.log(h / (1 - h)))


@pytest.mark.parametrize(
    "h, max_steps, steps, remainder",
    [
        (0.3, 100, 4, 1 - 3 * 0.3),  # 0.3 + 0.3 + 0.3 = 0.9 < 0.99; a fourth step crosses 1 - ε
        (0.995, 100, 1, 1.0),  # the first step already reaches 1 - ε: N = 1, R = 1
        (0.01, 5, 5, 1 - 4 * 0.01),  # never reaches 1 - ε: stops at M
    ],
)
def test_halting_steps_and_remainder(h, max_steps, steps, remainder):
    torch.manual_seed(0)
    cell = ACTCell("rnn_tanh", 3, 4, max_steps=max_steps, epsilon=0.01)
    _constant_halting(cell, h)
    _, _, cost, n = cell(torch.randn(2, 3))
    assert n.tolist() == [steps, steps]
    torch.testing.assert_close(cost, torch.full((2,), steps + remainder))  # ρ = N + R, eq. 13


def test_mean_field_state_is_the_halting_weighted_sum():
    torch.manual_seed(1)
    cell = ACTCell("lstm", 3, 5, epsilon=0.01)
    _constant_halting(cell, 0.3)
    x = torch.randn(2, 3)
    h, state, _, _ = cell(x)
    # Roll the cell by hand: 4 steps, weights 0.3, 0.3, 0.3 and the remainder 0.1 (eqs. 10-11).
    s = cell.init_state(2, x)
    expected = [torch.zeros(2, 5), torch.zeros(2, 5)]
    for n, p in enumerate([0.3, 0.3, 0.3, 0.1]):
        flag = torch.full((2, 1), 1.0 if n == 0 else 0.0)
        s = cell.cell.step(cell.cell.project(torch.cat([x, flag], -1)), s)
        expected = [e + p * s_i for e, s_i in zip(expected, s)]
    torch.testing.assert_close(state[0], expected[0])
    torch.testing.assert_close(state[1], expected[1])  # the LSTM's cell state is averaged too
    torch.testing.assert_close(h, expected[0])


def test_ponder_gradient_flows_through_the_remainder_only():
    cell = ACTCell("rnn_tanh", 2, 3)
    _constant_halting(cell, 0.3)
    _, _, cost, _ = cell(torch.randn(1, 2))
    cost.sum().backward()
    # ρ = N + 1 - (h^1 + h^2 + h^3) with h = σ(b): dρ/db = -3 σ'(b) = -3 h (1 - h).
    torch.testing.assert_close(cell.halt.bias.grad, torch.tensor([-3 * 0.3 * 0.7]))


def test_samples_halt_independently():
    torch.manual_seed(2)
    cell = ACTCell("gru", 4, 6)
    x = torch.randn(16, 4) * 3
    _, _, cost, n = cell(x)
    for i in range(16):  # each sequence alone gives the same as in the batch
        _, _, cost_i, n_i = cell(x[i : i + 1])
        assert n_i.item() == n[i].item()
        torch.testing.assert_close(cost_i, cost[i : i + 1])


def test_act_cell_gradcheck_float64():
    torch.manual_seed(3)
    cell = ACTCell("rnn_tanh", 3, 4, max_steps=10).double()
    with torch.no_grad():
        cell.halt.bias.fill_(-0.5)  # several ponder steps, away from the halting threshold
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    names = [name for name, _ in cell.named_parameters()]

    def run(x, *weights):  # the cell as a function of its input and every parameter
        h, _, cost, _ = torch.func.functional_call(cell, dict(zip(names, weights)), (x,))
        return h, cost

    weights = tuple(p.detach().clone().requires_grad_() for p in cell.parameters())
    assert torch.autograd.gradcheck(run, (x, *weights))
    _, _, _, steps = cell(x.detach())
    assert (steps > 1).all()  # the check covered pondering, not a single step


def test_one_step_act_is_the_plain_cell():
    torch.manual_seed(4)
    cell = ACTCell("lstm", 3, 5, max_steps=1)
    x = torch.randn(2, 3)
    h, state, cost, n = cell(x)
    plain = cell.cell(torch.cat([x, torch.ones(2, 1)], -1))[1]
    torch.testing.assert_close(state[0], plain[0])
    torch.testing.assert_close(state[1], plain[1])
    assert n.tolist() == [1, 1] and cost.tolist() == [2.0, 2.0]  # N = 1, R = 1


@pytest.mark.parametrize("cell", list(CELLS))
def test_act_layer_wraps_every_cell(cell):
    torch.manual_seed(5)
    layer = ACT(cell, 4, 6, max_steps=8)
    out, state, ponder = layer(torch.randn(5, 3, 4))
    assert out.shape == (5, 3, 6) and state[0].shape == (3, 6)
    assert ponder.cost.shape == ponder.steps.shape == (5, 3)
    assert ((ponder.steps >= 1) & (ponder.steps <= 8)).all()
    assert torch.equal(ponder.steps, ponder.steps.round())
    remainder = ponder.cost - ponder.steps
    assert ((remainder > 0) & (remainder <= 1 + 1e-6)).all()


def test_act_layer_learns_to_use_its_input():
    """A smoke check of training: the output follows a target that needs the input."""
    torch.manual_seed(6)
    layer, head = ACT("rnn_tanh", 2, 16, max_steps=5), nn.Linear(16, 1)
    optimizer = torch.optim.Adam([*layer.parameters(), *head.parameters()], lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        x = torch.randn(3, 32, 2, generator=g)
        target = (x[..., 0] > 0).float()
        out, _, ponder = layer(x)
        loss = nn.functional.binary_cross_entropy_with_logits(head(out).squeeze(-1), target)
        loss = loss + 1e-3 * ponder.cost.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    x = torch.randn(3, 256, 2, generator=g)
    accuracy = ((head(layer(x)[0]).squeeze(-1) > 0).float() == (x[..., 0] > 0).float()).float().mean()
    assert accuracy > 0.9


@pytest.mark.parametrize(
    "options, message",
    [(dict(cell="nope"), "unknown cell"), (dict(max_steps=0), "max_steps"), (dict(epsilon=1.0), "epsilon")],
)
def test_bad_options_are_refused(options, message):
    kwargs = {"cell": "rnn_tanh", **options}
    with pytest.raises(ValueError, match=message):
        ACTCell(kwargs.pop("cell"), 2, 3, **kwargs)
