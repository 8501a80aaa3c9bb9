"""NTM addressing, reading and writing on hand-made cases; gradients in float64; the machine's contract."""

import pytest
import torch

from seqlab.memory.ntm import (
    NTM,
    NTMConfig,
    address,
    circular_shift,
    content_weights,
    cosine_similarity,
    interpolate,
    read_memory,
    sharpen,
    write_memory,
)


def _one_hot(index: int, n: int) -> torch.Tensor:
    w = torch.zeros(1, 1, n)
    w[0, 0, index] = 1.0
    return w


def _shift(offset: int, r: int = 1) -> torch.Tensor:
    """A shift distribution (1, 1, 2r + 1) with all weight on ``offset``."""
    s = torch.zeros(1, 1, 2 * r + 1)
    s[0, 0, offset + r] = 1.0
    return s


# ------------------------------------------------------------- content


def test_content_weights_are_a_distribution():
    g = torch.Generator().manual_seed(0)
    memory, key = torch.randn(3, 10, 6, generator=g), torch.randn(3, 2, 6, generator=g)
    beta = torch.rand(3, 2, generator=g) * 5
    w = content_weights(memory, key, beta)
    assert w.shape == (3, 2, 10)
    assert (w >= 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(3, 2))


def test_content_weights_focus_on_the_matching_row():
    memory = torch.eye(5).unsqueeze(0)  # row i is the unit vector e_i
    key = 3.0 * torch.eye(5)[2].view(1, 1, 5)  # parallel to row 2: cosine 1, every other row: 0
    w = content_weights(memory, key, torch.tensor([[50.0]]))
    assert int(w.argmax()) == 2 and float(w[0, 0, 2]) > 0.99
    flat = content_weights(memory, key, torch.tensor([[0.0]]))  # beta 0: no preference
    torch.testing.assert_close(flat, torch.full((1, 1, 5), 0.2))


def test_cosine_similarity_of_parallel_and_orthogonal_vectors():
    memory = torch.tensor([[[2.0, 0.0], [0.0, 5.0], [-1.0, 0.0]]])
    sim = cosine_similarity(torch.tensor([[[3.0, 0.0]]]), memory)
    torch.testing.assert_close(sim, torch.tensor([[[1.0, 0.0, -1.0]]]), atol=1e-6, rtol=0)


def test_zero_memory_gives_uniform_weights_and_finite_gradients():
    memory = torch.zeros(2, 8, 4, requires_grad=True)
    key = torch.zeros(2, 1, 4, requires_grad=True)
    beta = torch.full((2, 1), 3.0, requires_grad=True)
    w = content_weights(memory, key, beta)
    torch.testing.assert_close(w, torch.full((2, 1, 8), 1 / 8))
    (w * torch.arange(8.0)).sum().backward()
    for tensor in (memory, key, beta):
        assert torch.isfinite(tensor.grad).all()


# ------------------------------------------------------- interpolation


def test_interpolation_gate_picks_content_or_previous():
    content, previous = _one_hot(1, 6), _one_hot(4, 6)
    torch.testing.assert_close(interpolate(content, previous, torch.ones(1, 1)), content)
    torch.testing.assert_close(interpolate(content, previous, torch.zeros(1, 1)), previous)
    half = interpolate(content, previous, torch.full((1, 1), 0.5))
    assert float(half[0, 0, 1]) == 0.5 and float(half[0, 0, 4]) == 0.5


# --------------------------------------------------------------- shift


@pytest.mark.parametrize("start", [0, 3, 6])
@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_shift_moves_the_weighting_by_the_offset(start, offset):
    n = 7
    moved = circular_shift(_one_hot(start, n), _shift(offset))
    torch.testing.assert_close(moved, _one_hot((start + offset) % n, n))  # slot 6 + 1 wraps to slot 0


def test_shift_range_two_and_a_blurred_shift():
    n = 9
    torch.testing.assert_close(circular_shift(_one_hot(8, n), _shift(2, r=2)), _one_hot(1, n))
    blur = circular_shift(_one_hot(4, n), torch.tensor([[[0.25, 0.5, 0.25]]]))
    expected = torch.zeros(1, 1, n)
    expected[0, 0, 3:6] = torch.tensor([0.25, 0.5, 0.25])
    torch.testing.assert_close(blur, expected)


def test_shift_preserves_total_weight():
    g = torch.Generator().manual_seed(1)
    w = torch.softmax(torch.randn(4, 3, 12, generator=g), -1)
    s = torch.softmax(torch.randn(4, 3, 5, generator=g), -1)
    torch.testing.assert_close(circular_shift(w, s).sum(-1), torch.ones(4, 3))


# ------------------------------------------------------------- sharpen


def test_sharpening_with_gamma_one_is_identity():
    g = torch.Generator().manual_seed(2)
    w = torch.softmax(torch.randn(3, 2, 10, generator=g), -1)
    torch.testing.assert_close(sharpen(w, torch.ones(3, 2)), w)


def test_sharpening_follows_eq_9():
    w = torch.tensor([[[0.5, 0.3, 0.2]]])
    expected = w**3 / (w**3).sum()
    torch.testing.assert_close(sharpen(w, torch.tensor([[3.0]])), expected)


def test_sharpening_zero_weights_gives_no_nan():
    w = torch.tensor([[[0.0, 1.0, 0.0, 0.0]]], requires_grad=True)
    gamma = torch.tensor([[2.5]], requires_grad=True)
    out = sharpen(w, gamma)
    torch.testing.assert_close(out, torch.tensor([[[0.0, 1.0, 0.0, 0.0]]]))
    (out * torch.arange(4.0)).sum().backward()
    assert torch.isfinite(w.grad).all() and torch.isfinite(gamma.grad).all()


# ----------------------------------------------------------- gradients


def test_addressing_gradcheck_float64():
    g = torch.Generator().manual_seed(3)
    b, h, n, width = 2, 2, 6, 3

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    memory = rand(b, n, width).requires_grad_()
    w_prev = torch.softmax(rand(b, h, n), -1).requires_grad_()
    key = rand(b, h, width).requires_grad_()
    beta = (rand(b, h).abs() + 0.5).requires_grad_()
    gate = torch.sigmoid(rand(b, h)).requires_grad_()
    shift = torch.softmax(rand(b, h, 3), -1).requires_grad_()
    gamma = (1 + rand(b, h).abs()).requires_grad_()
    assert torch.autograd.gradcheck(address, (memory, w_prev, key, beta, gate, shift, gamma))


def test_read_write_gradcheck_float64():
    g = torch.Generator().manual_seed(4)
    memory = torch.randn(2, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    weights = torch.softmax(torch.randn(2, 2, 5, generator=g, dtype=torch.float64), -1).requires_grad_()
    erase = torch.rand(2, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    add = torch.randn(2, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(write_memory, (memory, weights, erase, add))
    assert torch.autograd.gradcheck(read_memory, (memory, weights))


# -------------------------------------------------------- read / write


def test_write_erases_then_adds_at_the_focused_slot():
    memory = torch.ones(1, 4, 3)
    w = _one_hot(2, 4)
    new = write_memory(memory, w, erase=torch.ones(1, 1, 3), add=torch.tensor([[[0.5, -0.5, 0.25]]]))
    expected = torch.ones(1, 4, 3)
    expected[0, 2] = torch.tensor([0.5, -0.5, 0.25])
    torch.testing.assert_close(new, expected)
    torch.testing.assert_close(read_memory(new, w), torch.tensor([[[0.5, -0.5, 0.25]]]))


def test_two_write_heads_multiply_erasures_and_sum_adds():
    memory = torch.full((1, 3, 1), 8.0)
    w = torch.tensor([[[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]]])  # (1, 2 heads, 3 slots)
    erase = torch.full((1, 2, 1), 0.5)
    add = torch.tensor([[[1.0], [2.0]]])
    new = write_memory(memory, w, erase, add)
    # slot 0: 8 (1 - 0.5)(1 - 0.25) + 1 + 0.5 * 2 = 5; slot 1: 8 (1 - 0.25) + 1 = 7; slot 2 untouched.
    torch.testing.assert_close(new, torch.tensor([[[5.0], [7.0], [8.0]]]))


# ------------------------------------------------------------ machine


@pytest.mark.parametrize("controller", ["lstm", "feedforward", "gru"])
def test_ntm_shapes_and_weightings(controller):
    torch.manual_seed(0)
    config = NTMConfig(controller=controller, controller_size=16, memory_slots=12, memory_width=5,
                       read_heads=2, write_heads=1)
    model = NTM(7, 4, config)
    x = torch.rand(6, 3, 7)
    logits, state = model(x)
    assert logits.shape == (6, 3, 4)
    assert state.memory.shape == (3, 12, 5) and state.reads.shape == (3, 10)
    _, trace = model.trace(x)
    assert trace.read_weights.shape == (6, 3, 2, 12) and trace.write_weights.shape == (6, 3, 1, 12)
    assert trace.memory.shape == (6, 3, 12, 5) and trace.adds.shape == (6, 3, 1, 5)
    torch.testing.assert_close(trace.read_weights.sum(-1), torch.ones(6, 3, 2))
    torch.testing.assert_close(trace.write_weights.sum(-1), torch.ones(6, 3, 1))
    torch.testing.assert_close(trace.memory[-1], state.memory)


def test_ntm_gradients_are_finite_from_a_fresh_memory():
    torch.manual_seed(1)
    model = NTM(5, 3, NTMConfig(controller_size=8, memory_slots=6, memory_width=4))
    logits, _ = model(torch.zeros(4, 2, 5))
    logits.sum().backward()
    for name, p in model.named_parameters():
        assert torch.isfinite(p.grad).all(), name


def test_ntm_state_carries_over():
    torch.manual_seed(2)
    model = NTM(3, 2, NTMConfig(controller_size=8, memory_slots=6, memory_width=4))
    x = torch.rand(8, 2, 3)
    whole, _ = model(x)
    first, state = model(x[:5])
    second, _ = model(x[5:], state)
    torch.testing.assert_close(torch.cat([first, second]), whole)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(controller="transformer"), "unknown controller"),
        (dict(memory_slots=0), "memory_slots"),
        (dict(shift_range=4, memory_slots=8), "shift_range"),
    ],
)
def test_bad_config_is_refused(options, message):
    with pytest.raises(ValueError, match=message):
        NTM(3, 2, NTMConfig(**options))
