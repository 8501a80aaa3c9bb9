"""The generic recurrent layer: torch parity, lengths, packing, directions, residuals."""

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqlab.nn import CELLS, Recurrent, from_torch

TORCH_MODULES = {
    "lstm": lambda **kw: nn.LSTM(**kw),
    "gru": lambda **kw: nn.GRU(**kw),
    "rnn_tanh": lambda **kw: nn.RNN(nonlinearity="tanh", **kw),
    "rnn_relu": lambda **kw: nn.RNN(nonlinearity="relu", **kw),
}


def _as_tuple(state):
    return (state,) if isinstance(state, torch.Tensor) else tuple(state)


def _grads(module):
    return {name: p.grad.clone() for name, p in module.named_parameters()}


@pytest.mark.parametrize("impl", ["auto", "torch", "reference"])
@pytest.mark.parametrize("kind", list(TORCH_MODULES))
def test_from_torch_matches_torch(kind, impl):
    """Outputs, final states and parameter gradients equal torch.nn's to 1e-5."""
    torch.manual_seed(0)
    ref = TORCH_MODULES[kind](input_size=5, hidden_size=7, num_layers=2, bidirectional=True, batch_first=True)
    ours = from_torch(ref)
    ours.impl = impl
    assert ours.uses_native == (impl == "torch" or impl == "auto" and ours.backend == "torch")
    x = torch.randn(4, 6, 5)  # (B, T, I)
    state0 = tuple(torch.randn(4, 4, 7) for _ in range(2 if kind == "lstm" else 1))
    state0 = state0 if kind == "lstm" else state0[0]

    out_ref, final_ref = ref(x, state0)
    out, final = ours(x, state0)
    torch.testing.assert_close(out, out_ref, atol=1e-5, rtol=1e-5)
    for a, b in zip(_as_tuple(final), _as_tuple(final_ref)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)

    weights = torch.randn_like(out)
    ((out_ref * weights).sum() + sum(s.sum() for s in _as_tuple(final_ref))).backward()
    ((out * weights).sum() + sum(s.sum() for s in _as_tuple(final))).backward()
    theirs = _grads(ref)
    names = [n for layer in range(2) for sfx in ("", "_reverse") for n in
             (f"weight_ih_l{layer}{sfx}", f"weight_hh_l{layer}{sfx}", f"bias_ih_l{layer}{sfx}", f"bias_hh_l{layer}{sfx}")]
    mine = [p.grad for p in ours._flat_weights()]
    for name, grad in zip(names, mine):
        torch.testing.assert_close(grad, theirs[name], atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize("impl", ["auto", "torch", "reference"])
@pytest.mark.parametrize("kind", list(TORCH_MODULES))
def test_from_torch_matches_torch_on_packed_input(kind, impl):
    torch.manual_seed(0)
    ref = TORCH_MODULES[kind](input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    ours = from_torch(ref)
    ours.impl = impl
    lengths = torch.tensor([2, 5, 3])
    packed = pack_padded_sequence(torch.randn(5, 3, 3), lengths, enforce_sorted=False)
    out_ref, final_ref = ref(packed)
    out, final = ours(packed)
    torch.testing.assert_close(out.data, out_ref.data, atol=1e-5, rtol=1e-5)
    assert torch.equal(out.batch_sizes, out_ref.batch_sizes)
    assert torch.equal(out.sorted_indices, out_ref.sorted_indices)
    for a, b in zip(_as_tuple(final), _as_tuple(final_ref)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", list(TORCH_MODULES))
def test_to_torch_round_trip(kind):
    torch.manual_seed(0)
    ours = Recurrent(kind, 3, 4, 2, bidirectional=True, batch_first=True)
    ref = ours.to_torch()
    assert isinstance(ref, nn.RNNBase) and ref.batch_first and ref.bidirectional
    x = torch.randn(2, 5, 3)
    torch.testing.assert_close(ours(x)[0], ref(x)[0])
    back = from_torch(ref)
    torch.testing.assert_close(back(x)[0], ref(x)[0])


def test_to_torch_refuses_variants():
    with pytest.raises(ValueError, match="torch equivalent"):
        Recurrent("sru", 3, 3).to_torch()
    with pytest.raises(ValueError, match="torch equivalent"):
        Recurrent("lstm", 3, 3, residual=True).to_torch()


def test_from_torch_refuses_unsupported():
    with pytest.raises(ValueError, match="proj_size"):
        from_torch(nn.LSTM(3, 4, proj_size=2))
    with pytest.raises(ValueError, match="bias=False"):
        from_torch(nn.GRU(3, 4, bias=False))
    with pytest.raises(TypeError):
        from_torch(nn.Linear(3, 4))


def test_native_path_shares_parameters():
    """The fused kernel runs on the layer's own parameters: updating them changes the output."""
    layer = Recurrent("lstm", 3, 4, impl="torch")
    assert layer.uses_native
    assert layer._flat_weights()[0] is layer.cells[0].weight_ih
    x = torch.randn(5, 2, 3)
    before = layer(x)[0]
    with torch.no_grad():
        layer.cells[0].weight_ih.add_(0.5)
    assert not torch.allclose(before, layer(x)[0])


@pytest.mark.parametrize("name", [n for n, c in CELLS.items() if c.native])
def test_native_path_runs_full_length_batches_unpacked(name):
    """Lengths that pad nothing give the unpacked kernel's result exactly."""
    torch.manual_seed(0)
    layer = Recurrent(name, 3, 4, 2, bidirectional=True, impl="torch")
    x = torch.randn(6, 4, 3)
    out, final = layer(x, lengths=torch.full((4,), 6))
    want, want_final = layer(x)
    assert torch.equal(out, want)
    for a, b in zip(_as_tuple(final), _as_tuple(want_final)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", list(CELLS))
def test_packed_equals_padded_with_lengths(name):
    torch.manual_seed(0)
    layer = Recurrent(name, 3, 4, 2, bidirectional=True)
    x, lengths = torch.randn(6, 4, 3), torch.tensor([6, 2, 4, 1])
    out, final = layer(x, lengths=lengths)
    packed_out, packed_final = layer(pack_padded_sequence(x, lengths, enforce_sorted=False))
    padded, out_lengths = pad_packed_sequence(packed_out, total_length=6)
    assert torch.equal(out_lengths, lengths)
    torch.testing.assert_close(padded, out)
    for a, b in zip(_as_tuple(final), _as_tuple(packed_final)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", list(CELLS))
def test_padding_never_leaks(name):
    torch.manual_seed(0)
    layer = Recurrent(name, 3, 4, 2, bidirectional=True, residual=False)
    x, lengths = torch.randn(6, 3, 3), torch.tensor([6, 2, 4])
    out, final = layer(x, lengths=lengths)
    garbage = x.clone()
    for b, n in enumerate(lengths.tolist()):
        garbage[n:, b] = 1e3
    out2, final2 = layer(garbage, lengths=lengths)
    torch.testing.assert_close(out, out2)
    for a, b in zip(_as_tuple(final), _as_tuple(final2)):
        torch.testing.assert_close(a, b)
    for b, n in enumerate(lengths.tolist()):
        assert torch.all(out[n:, b] == 0)


@pytest.mark.parametrize("name", list(CELLS))
def test_lengths_equal_running_each_sequence_alone(name):
    torch.manual_seed(0)
    layer = Recurrent(name, 3, 4, bidirectional=True)
    x, lengths = torch.randn(5, 3, 3), torch.tensor([5, 2, 3])
    out, final = layer(x, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        alone, alone_final = layer(x[:n, b : b + 1])
        torch.testing.assert_close(out[:n, b : b + 1], alone)
        for a, s in zip(_as_tuple(alone_final), _as_tuple(final)):
            torch.testing.assert_close(a, s[:, b : b + 1])


def _reverse_each(x, lengths):
    """Reverse every sequence of a (T, B, ·) batch within its own length."""
    out = x.clone()
    for b, n in enumerate(lengths.tolist()):
        out[:n, b] = x[:n, b].flip(0)
    return out


@pytest.mark.parametrize("name", list(CELLS))
def test_bidirectional_equals_forward_plus_reversed_run(name):
    torch.manual_seed(0)
    bi = Recurrent(name, 3, 4, bidirectional=True)
    forward, backward = Recurrent(name, 3, 4), Recurrent(name, 3, 4)
    forward.cells[0].load_state_dict(bi.cells[0].state_dict())
    backward.cells[0].load_state_dict(bi.cells[1].state_dict())
    x, lengths = torch.randn(5, 3, 3), torch.tensor([5, 3, 1])

    out, final = bi(x, lengths=lengths)
    out_f, final_f = forward(x, lengths=lengths)
    out_b, final_b = backward(_reverse_each(x, lengths), lengths=lengths)
    torch.testing.assert_close(out, torch.cat([out_f, _reverse_each(out_b, lengths)], dim=-1))
    for s, f, b in zip(_as_tuple(final), _as_tuple(final_f), _as_tuple(final_b)):
        torch.testing.assert_close(s, torch.cat([f, b]))


@pytest.mark.parametrize("name", ["lstm", "gru", "sru", "janet"])
def test_summed_directions_add_the_halves_and_feed_h_wide_layers(name):
    torch.manual_seed(0)
    concat = Recurrent(name, 3, 4, bidirectional=True)
    summed = Recurrent(name, 3, 4, bidirectional=True, merge="sum")
    summed.load_state_dict(concat.state_dict())
    x, lengths = torch.randn(5, 3, 3), torch.tensor([5, 2, 4])
    both, final = concat(x, lengths=lengths)
    out, final_sum = summed(x, lengths=lengths)
    torch.testing.assert_close(out, both[..., :4] + both[..., 4:])
    for a, b in zip(_as_tuple(final_sum), _as_tuple(final)):  # the states stay per direction
        torch.testing.assert_close(a, b)
    deep = Recurrent(name, 3, 4, 3, bidirectional=True, merge="sum", residual=True)
    assert deep.output_size == 4 and [c.input_size for c in deep.cells] == [3, 3, 4, 4, 4, 4]
    assert deep.residual_layers == (1, 2) and deep(x)[0].shape == (5, 3, 4)
    assert "merge='sum'" in repr(deep)


def test_summed_directions_errors():
    with pytest.raises(ValueError, match="needs bidirectional=True"):
        Recurrent("gru", 3, 4, merge="sum")
    with pytest.raises(ValueError, match="merge must be one of concat, sum"):
        Recurrent("gru", 3, 4, bidirectional=True, merge="mean")
    with pytest.raises(ValueError, match="merge='sum'"):
        Recurrent("gru", 3, 4, bidirectional=True, merge="sum", impl="torch")
    summed = Recurrent("lstm", 3, 4, bidirectional=True, merge="sum")
    assert not summed.native_allowed  # torch's kernel only concatenates
    with pytest.raises(ValueError, match="concatenated directions"):
        summed.to_torch()


def test_residual_adds_layer_input():
    torch.manual_seed(0)
    plain = Recurrent("gru", 4, 4, 2)
    residual = Recurrent("gru", 4, 4, 2, residual=True)
    residual.load_state_dict(plain.state_dict())
    assert residual.residual_layers == (0, 1) and not residual.uses_native
    x = torch.randn(5, 2, 4)
    first = Recurrent("gru", 4, 4)
    first.cells[0].load_state_dict(plain.cells[0].state_dict())
    second = Recurrent("gru", 4, 4)
    second.cells[0].load_state_dict(plain.cells[1].state_dict())
    h1 = first(x)[0] + x
    h2 = second(h1)[0] + h1
    torch.testing.assert_close(residual(x)[0], h2)


def test_residual_skips_layer_with_mismatched_size_and_errors_when_none_fit():
    layer = Recurrent("lstm", 3, 4, 3, residual=True)
    assert layer.residual_layers == (1, 2)
    with pytest.raises(ValueError, match="residual=True needs"):
        Recurrent("lstm", 3, 4, 1, residual=True)


def test_state_layout_like_torch():
    layer = Recurrent("lstm", 3, 4, 3, bidirectional=True)
    _, (h, c) = layer(torch.randn(5, 2, 3))
    assert h.shape == c.shape == (6, 2, 4)
    _, h = Recurrent("janet", 3, 4, 2)(torch.randn(5, 2, 3))
    assert isinstance(h, torch.Tensor) and h.shape == (2, 2, 4)
    _, state = Recurrent("nested_lstm", 3, 4)(torch.randn(5, 2, 3))
    assert len(state) == 3


def test_dropout_only_in_training():
    torch.manual_seed(0)
    layer = Recurrent("sru", 3, 8, 2, dropout=0.5).eval()
    x = torch.randn(5, 2, 3)
    torch.testing.assert_close(layer(x)[0], layer(x)[0])
    layer.train()
    assert not torch.allclose(layer(x)[0], layer(x)[0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(cell="lsmt"), "unknown cell 'lsmt'; valid cells: rnn_tanh"),
        (dict(cell="lstm", peepholes="if"), "unknown option"),
        (dict(cell="peephole", t_max=3), "valid options: peepholes"),
        (dict(cell="lstm", dropout=1.0), "dropout"),
        (dict(cell="lstm", impl="cuda"), "impl must be"),
    ],
)
def test_constructor_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Recurrent(input_size=3, hidden_size=4, **kwargs)


def test_forward_errors():
    layer = Recurrent("gru", 3, 4)
    with pytest.raises(ValueError, match="expected input"):
        layer(torch.randn(5, 2, 4))
    with pytest.raises(ValueError, match="lengths must lie"):
        layer(torch.randn(5, 2, 3), lengths=torch.tensor([6, 2]))
    with pytest.raises(ValueError, match="state must be"):
        layer(torch.randn(5, 2, 3), torch.zeros(2, 2, 4))
    for name in ("gru", "sru", "nested_lstm"):  # a standard cell (torch's kernel for an empty input) and two variants
        with pytest.raises(ValueError, match="at least one time step, got T=0"):
            Recurrent(name, 3, 4, num_layers=2)(torch.randn(0, 2, 3))
        with pytest.raises(ValueError, match="at least one time step, got T=0"):
            Recurrent(name, 3, 4, batch_first=True).forward_embedded(torch.nn.Embedding(5, 3),
                                                                     torch.zeros(2, 0, dtype=torch.long))
    assert Recurrent("sru", 3, 4)(torch.randn(5, 0, 3))[0].shape == (5, 0, 4)  # an empty batch is fine


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("name", ["lstm", "gru", "ln_lstm", "nested_lstm"])
def test_forward_embedded_looks_up_the_first_products_and_equals_embedding_then_forward(name, batch_first):
    from seqlab.nn import _kernels

    torch.manual_seed(0)
    embedding = nn.Embedding(11, 5, padding_idx=0).double()
    rnn = Recurrent(name, 5, 4, 2, batch_first=batch_first, bidirectional=True).double().eval()
    ids, lengths = torch.randint(1, 11, (3, 6)), torch.tensor([6, 2, 4])
    ids[1, 2:] = ids[2, 4:] = 0
    ids = ids if batch_first else ids.t()
    with torch.no_grad():
        want, want_final = rnn(embedding(ids), lengths=lengths)
        got, final = rnn.forward_embedded(embedding, ids, lengths)
        looked_up = rnn._embedded(embedding, ids, lengths)
    assert (looked_up is not None) == (_kernels.load() is not None)
    torch.testing.assert_close(got, want)
    for a, b in zip(_as_tuple(final), _as_tuple(want_final)):
        torch.testing.assert_close(a, b)


def test_forward_embedded_runs_the_plain_path_where_it_cannot_look_up():
    """Training with gradients, SRU (it projects inside its own loop) and a residual first layer."""
    torch.manual_seed(0)
    embedding = nn.Embedding(7, 4)
    ids = torch.randint(0, 7, (5, 2))
    cases = [Recurrent("lstm", 4, 4), Recurrent("sru", 4, 4).eval(), Recurrent("gru", 4, 2, 2, bidirectional=True,
                                                                               residual=True).eval()]
    for rnn in cases:
        with torch.no_grad():
            assert rnn._embedded(embedding, ids, None) is None or rnn.training
        out, _ = rnn.forward_embedded(embedding, ids)
        torch.testing.assert_close(out, rnn(embedding(ids))[0])
    out, _ = cases[0].forward_embedded(embedding, ids)
    assert out.requires_grad and cases[0]._embedded(embedding, ids, None) is None
