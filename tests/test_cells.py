"""Cell contracts: the registry, one-step API, initialisation, gradcheck in float64."""

import pytest
import torch
from torch.func import functional_call

from seqlab.nn import CELLS, Recurrent
from seqlab.nn.cells import JANETCell, LSTMCell, PeepholeLSTMCell, SRUCell

EXPECTED = {"rnn_tanh", "rnn_relu", "lstm", "peephole", "cifg", "janet", "gru", "ln_lstm", "sru", "nested_lstm"}


def test_registry_holds_exactly_the_ten_cells():
    assert set(CELLS) == EXPECTED and len(CELLS) == 10


@pytest.mark.parametrize("name", list(CELLS))
def test_one_step_api(name):
    cell = CELLS[name](3, 5)
    x = torch.randn(4, 3)
    h, state = cell(x)
    assert h.shape == (4, 5)
    assert len(state) == cell.state_size and all(s.shape == (4, 5) for s in state)
    assert h is state[0]
    h2, _ = cell(x, state)
    assert not torch.equal(h, h2)


@pytest.mark.parametrize("name", list(CELLS))
def test_step_matches_projected_sequence(name):
    """project() on a whole sequence equals project() step by step (the hoisted GEMM)."""
    cell = CELLS[name](3, 5)
    x = torch.randn(6, 2, 3)
    torch.testing.assert_close(cell.project(x), torch.stack([cell.project(x_t) for x_t in x]))


def _gradcheck_layer(name, num_layers, bidirectional, lengths, impl="reference", fast=True, **options):
    torch.manual_seed(0)
    layer = Recurrent(name, 3, 4, num_layers, bidirectional=bidirectional, impl=impl, **options).double()
    names, params = zip(*layer.named_parameters())
    x = torch.randn(5, 3, 3, dtype=torch.double, requires_grad=True)
    state0 = tuple(
        torch.randn(num_layers * layer.num_directions, 3, 4, dtype=torch.double, requires_grad=True)
        for _ in range(layer.state_size)
    )
    params = tuple(p.detach().clone().requires_grad_(True) for p in params)

    def run(x, *rest):
        state, weights = rest[: layer.state_size], rest[layer.state_size :]
        state = state[0] if layer.state_size == 1 else state
        out, final = functional_call(layer, dict(zip(names, weights)), (x, state, lengths))
        final = (final,) if isinstance(final, torch.Tensor) else final
        return (out, *final)

    # fast_mode checks the Jacobian along random directions instead of column by
    # column: the same comparison of analytic and numerical gradients, much cheaper.
    assert torch.autograd.gradcheck(run, (x, *state0, *params), eps=1e-6, atol=1e-5, fast_mode=fast)


@pytest.mark.parametrize("name", list(CELLS))
def test_gradcheck_one_layer(name):
    _gradcheck_layer(name, 1, False, None, fast=False)


@pytest.mark.parametrize("name", list(CELLS))
def test_gradcheck_two_layers_bidirectional_with_lengths(name):
    _gradcheck_layer(name, 2, True, torch.tensor([5, 2, 4]))


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn_tanh", "rnn_relu"])
def test_gradcheck_native_path(name):
    _gradcheck_layer(name, 2, True, torch.tensor([5, 2, 4]), impl="torch")


def test_gradcheck_options():
    _gradcheck_layer("peephole", 1, False, None, peepholes="fo")
    _gradcheck_layer("sru", 2, False, None, activation="tanh")
    _gradcheck_layer("lstm", 2, True, torch.tensor([5, 2, 4]), residual=True)


def test_lstm_forget_bias_is_one():
    cell = LSTMCell(3, 4)
    total = cell.bias_ih + cell.bias_hh
    assert torch.all(total[4:8] == 1) and torch.all(total[:4] == 0) and torch.all(total[8:] == 0)


def test_recurrent_weights_are_orthogonal_per_gate():
    cell = LSTMCell(3, 6)
    for block in cell.weight_hh.detach().split(6):
        torch.testing.assert_close(block @ block.T, torch.eye(6), atol=1e-5, rtol=0)


def test_relu_rnn_starts_from_identity():
    cell = CELLS["rnn_relu"](3, 5)
    assert torch.equal(cell.weight_hh.detach(), torch.eye(5))


def test_janet_chrono_bias_range():
    cell = JANETCell(3, 200, t_max=50)
    b_f = cell.bias.detach()[:200]
    assert b_f.min() >= 0 and b_f.max() <= torch.log(torch.tensor(49.0)) + 1e-6
    assert torch.all(cell.bias.detach()[200:] == 0)


def test_peephole_subset_and_validation():
    cell = PeepholeLSTMCell(3, 4, peepholes="of")
    assert cell.peepholes == "fo" and cell.weight_peephole.shape == (2, 4)
    with pytest.raises(ValueError, match="subset of 'ifo'"):
        PeepholeLSTMCell(3, 4, peepholes="ix")


def test_peephole_with_zero_peepholes_equals_lstm():
    torch.manual_seed(0)
    lstm, peep = LSTMCell(3, 4), PeepholeLSTMCell(3, 4)
    with torch.no_grad():
        peep.weight_ih.copy_(lstm.weight_ih)
        peep.weight_hh.copy_(lstm.weight_hh)
        peep.bias.copy_(lstm.bias_ih + lstm.bias_hh)
    x, state = torch.randn(2, 3), (torch.randn(2, 4), torch.randn(2, 4))
    torch.testing.assert_close(peep(x, state)[1], lstm(x, state)[1])


def test_sru_highway_passes_input_when_reset_gate_closed():
    cell = SRUCell(4, 4)
    with torch.no_grad():
        cell.bias[4:].fill_(-1e4)  # r = 0
    x = torch.randn(2, 4)
    h, _ = cell(x)
    torch.testing.assert_close(h, x)


def test_sru_projects_highway_when_sizes_differ():
    cell = SRUCell(3, 5)
    assert cell.projected_highway and cell.weight_ih.shape == (20, 3)
