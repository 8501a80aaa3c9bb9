"""Int8 storage of weights (seqlab.compress.quant); int8 and bf16 compute (dynamic, bfloat16)."""

import copy

import pytest
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


# ------------------------------------------------------- int8 and bf16 compute

def _seq2seq(seed: int = 0):
    from seqlab.seq2seq.model import ModelConfig, Seq2Seq

    torch.manual_seed(seed)
    config = ModelConfig(emb_size=8, enc_hidden=12, enc_layers=2, dec_hidden=16, attention="general",
                         input_feeding=False)
    return Seq2Seq(9, 7, config).eval()


def _lstm_converters():
    from seqlab.compress.bfloat16 import BF16LSTM
    from seqlab.compress.dynamic import Int8LSTM

    return [Int8LSTM, BF16LSTM]


@pytest.mark.parametrize("convert", _lstm_converters())
def test_low_precision_lstm_follows_the_float_layer_and_keeps_padding_zero(convert):
    from seqlab.nn import Recurrent

    torch.manual_seed(0)
    rnn = Recurrent("lstm", 6, 10, 2, batch_first=True, bidirectional=True).eval()
    x, lengths = torch.randn(4, 7, 6), torch.tensor([7, 3, 5, 1])
    q = convert(rnn)
    with torch.no_grad():
        want, (h, c) = rnn(x, lengths=lengths)
        got, (qh, qc) = q(x, lengths=lengths)
        full, (fh, _) = q(x, lengths=torch.full((4,), 7))  # no padding: the unpacked path
        unpacked, (uh, _) = q(x)
    assert got.shape == want.shape and qh.shape == h.shape and qc.shape == c.shape
    assert got.dtype == qh.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=0.03, rtol=0)
    torch.testing.assert_close(qh, h, atol=0.03, rtol=0)
    assert torch.equal(full, unpacked) and torch.equal(fh, uh)
    assert bool((got[1, 3:] == 0).all()) and bool((got[3, 1:] == 0).all())
    # The per-step cells (for decoders) follow the float cells too.
    zeros = (torch.zeros(4, 10), torch.zeros(4, 10))
    state, q_state = zeros, zeros
    with torch.no_grad():
        for t in range(7):
            state = rnn.cells[0].step(rnn.cells[0].project(x[:, t]), state)
            q_state = q.cells[0].step(q.cells[0].project(x[:, t]), q_state)
    torch.testing.assert_close(q_state, state, atol=0.03, rtol=0)


@pytest.mark.parametrize("convert", _lstm_converters())
def test_low_precision_conversion_leaves_summed_directions_in_float(convert):
    """The converted layers run torch's whole-sequence LSTM where seqlab's kernels cannot, and torch
    only concatenates the directions: a layer with merge="sum" is refused, and swap_layers keeps it."""
    from seqlab.compress.dynamic import swap_layers
    from seqlab.nn import Recurrent

    summed = Recurrent("lstm", 6, 10, bidirectional=True, merge="sum")
    with pytest.raises(ValueError, match="concatenated directions"):
        convert(summed)
    model = torch.nn.Sequential(summed)
    assert swap_layers(model, convert, lambda linear: linear)[0] is summed


def test_int8_lstm_runs_int8_products_on_the_kernels_and_torchs_quantised_lstm_without_them():
    from torch import nn

    from seqlab.compress.dynamic import Int8LSTM, run_native
    from seqlab.nn import Recurrent, _kernels

    torch.manual_seed(0)
    embedding = nn.Embedding(9, 6)
    rnn = Recurrent("lstm", 6, 10, 2, batch_first=True, bidirectional=True).eval()
    q = Int8LSTM(rnn)
    # torch's quantised LSTM is made only where the kernels lack the int8 products, or when a call needs it
    assert (q.lstm is None) == _kernels.int8_available(_kernels.load())
    ids, lengths = torch.randint(0, 9, (4, 7)), torch.tensor([7, 3, 5, 1])
    x = embedding(ids).detach()
    with torch.no_grad():
        want, (h, _) = rnn(x, lengths=lengths)
        kernel_path = q.float_rnn.forward_products(x, q._products, None, lengths)
        assert (kernel_path is not None) == (_kernels.load() is not None)
        int8_rec = q._int8_recurrences(x)
        assert (int8_rec is not None) == _kernels.int8_available(_kernels.load())
        if int8_rec is not None:  # each recurrent weight packed once, shared with the per-step cell
            assert int8_rec(1) is q._int8_recurrences(x)(1) is q.cells[1].hh._pack()
        full_int8 = q(x, lengths=lengths)  # int8 recurrences too, where the kernels have them
        embedded, (eh, _) = q.forward_embedded(embedding, ids, lengths)
        fallback, (fh, _) = run_native(q.native(), x, None, lengths, True)
    runs = [(embedded, eh), (fallback, fh), (full_int8[0], full_int8[1][0])]
    runs += [(kernel_path[0], kernel_path[1][0])] if kernel_path else []
    for got, got_h in runs:
        torch.testing.assert_close(got, want, atol=0.03, rtol=0)
        torch.testing.assert_close(got_h, h, atol=0.03, rtol=0)
    assert bool((embedded[1, 3:] == 0).all())


def _int8_recurrence_reference(xp, bias, state, weight, scale, lengths, reverse):
    """The int8 recurrence in float64: each step's h quantised to 7 bits over all rows (one thread), exact
    integer products, then the LSTM update; rows past their length keep their state and output 0."""
    T, B, G = xp.shape
    H = G // 4
    h, c = (s.double() for s in state)
    out = torch.zeros(T, B, H, dtype=torch.float64)
    w = weight.double()
    for s in range(T):
        t = T - 1 - s if reverse else s
        lo, hi = min(float(h.min()), 0.0), max(float(h.max()), 0.0)
        sh = (hi - lo) / 127 if hi > lo else 1.0
        z = min(max(round(-lo / sh), 0), 127)
        hq = torch.clamp(torch.round(h / sh) + z, 0, 255)
        a = xp[t].double() + bias.double() + sh * scale.double() * ((hq - z) @ w.t())
        i, f, g, o = a.chunk(4, dim=-1)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        live = (t < lengths).unsqueeze(1)
        h, c = torch.where(live, h_new, h), torch.where(live, c_new, c)
        out[t] = h_new * live
    return out, h, c


@pytest.mark.parametrize("reverse", [False, True])
def test_int8_recurrence_kernel_matches_its_reference(reverse):
    from seqlab.compress.quant import quantize_rows
    from seqlab.nn import _kernels
    from seqlab.nn.cells import LSTMCell

    kernels = _kernels.load()
    if not _kernels.int8_available(kernels):
        pytest.skip("the kernels were built without torch's fbgemm (no x86 torch wheel)")
    torch.manual_seed(0)
    T, B, H = 6, 5, 16
    cell = LSTMCell(3, H)
    xp, lengths = torch.randn(T, B, 4 * H), torch.tensor([6, 2, 4, 1, 6])
    state = (torch.randn(B, H) * 0.5, torch.randn(B, H))
    weight, scale = quantize_rows(cell.weight_hh)
    packed = kernels.Int8Linear(weight, scale)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one block of rows: one quantisation of h per step, as in the reference
    try:
        with torch.no_grad():
            got, (gh, gc) = _kernels.run_cell(kernels, cell, xp, state, lengths, reverse, True, packed)
            plain, _ = _kernels.run_cell(kernels, cell, xp, state, lengths, reverse, True)
    finally:
        torch.set_num_threads(threads)
    bias = (cell.bias_ih + cell.bias_hh).detach()
    want, wh, wc = _int8_recurrence_reference(xp, bias, state, weight, scale, lengths, reverse)
    torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=0)
    torch.testing.assert_close((gh.double(), gc.double()), (wh, wc), atol=1e-5, rtol=0)
    assert bool((got[2:, 1] == 0).all()) and bool((got[1:, 3] == 0).all())
    torch.testing.assert_close(got, plain, atol=0.05, rtol=0)  # and stays near the float recurrence
    with pytest.raises(ValueError, match="plain LSTM"):
        _kernels.run_cell(kernels, cell, xp, state, lengths, reverse, False, packed)


def _int8_linear_reference(x, weight, scale, bias):
    """Int8Linear's scheme in float64: all rows of x quantised to 7 bits with one scale and zero point, exact
    integer products, each output column scaled by its weight row's scale, plus the bias."""
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    s = (hi - lo) / 127 if hi > lo else 1.0
    z = min(max(round(-lo / s), 0), 127)
    xq = torch.clamp(torch.round(x.double() / s) + z, 0, 255)
    return s * scale.double() * ((xq - z) @ weight.double().t()) + bias.double()


def test_int8_linear_runs_its_scheme_on_the_kernels_with_any_thread_count():
    from torch import nn

    from seqlab.compress.dynamic import Int8Linear
    from seqlab.nn import _kernels

    if not _kernels.int8_available(_kernels.load()):
        pytest.skip("the kernels were built without torch's fbgemm (no x86 torch wheel)")
    torch.manual_seed(0)
    linear = nn.Linear(40, 24)
    q = Int8Linear(linear)
    x = torch.randn(3, 100, 40)  # 300 rows: enough for the threads to share them
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = q(x)
        torch.set_num_threads(2)
        two = q(x)
    finally:
        torch.set_num_threads(threads)
    assert one.shape == (3, 100, 24) and one.dtype == torch.float32 and not one.requires_grad
    assert torch.equal(one, two)  # one quantisation of all rows, whatever the threads
    want = _int8_linear_reference(x.reshape(-1, 40), q.weight, q.scale, q.bias).view(3, 100, 24)
    torch.testing.assert_close(one.double(), want, atol=1e-5, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(one, linear(x), atol=0.05, rtol=0)
        # float64 input: the dequantised weight in float64
        torch.testing.assert_close(q(x.double()), linear.double()(x.double()), atol=0.05, rtol=0)
    copied = copy.deepcopy(q)  # the packed weight is not copied; the copy packs its own
    assert torch.equal(copied(x), one)
    assert q(torch.randn(0, 40)).shape == (0, 24)
    no_bias = nn.Linear(40, 24, bias=False)
    torch.testing.assert_close(Int8Linear(no_bias)(x[0]), no_bias(x[0]).detach(), atol=0.05, rtol=0)
    with pytest.raises(RuntimeError, match="40 features"):
        q(torch.randn(2, 39))


def test_int8_linear_falls_back_without_fbgemm(monkeypatch):
    from torch import nn

    from seqlab.compress import dynamic
    from seqlab.nn import _kernels

    torch.manual_seed(0)
    linear = nn.Linear(12, 5)
    made_here = dynamic.Int8Linear(linear)
    monkeypatch.setattr(_kernels, "int8_available", lambda kernels: False)
    q = dynamic.int8_linear(linear)
    assert not isinstance(q, (nn.Linear, dynamic.Int8Linear))
    x = torch.randn(4, 12)
    with torch.no_grad():
        torch.testing.assert_close(q(x), linear(x), atol=0.05, rtol=0)
        # An Int8Linear where the kernels lack fbgemm multiplies by its dequantised weight.
        torch.testing.assert_close(made_here(x), linear(x), atol=0.05, rtol=0)
    assert made_here._packed is None


def _model_converters():
    from seqlab.compress import bfloat16_compute, quantize_dynamic

    return [quantize_dynamic, bfloat16_compute]


@pytest.mark.parametrize("convert", _model_converters())
def test_low_precision_seq2seq_scores_like_the_float_model_and_leaves_it_alone(convert):
    from torch import nn

    model = _seq2seq()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    q = convert(model)
    assert not any(isinstance(m, nn.Linear) for m in q.modules())
    src, src_len = torch.randint(4, 9, (5, 6)), torch.tensor([6, 2, 4, 5, 1])
    tgt = torch.randint(3, 7, (5, 4))
    with torch.no_grad():
        want, weights = model(src, src_len, tgt)
        got, q_weights = q(src, src_len, tgt)
        torch.testing.assert_close(got, want, atol=0.05, rtol=0)
        torch.testing.assert_close(q_weights.sum(-1), torch.ones(5, 4))
        state, q_state = model.encode(src, src_len), q.encode(src, src_len)
        lp, _ = model.step(tgt[:, 0], state)
        q_lp, _ = q.step(tgt[:, 0], q_state)
        torch.testing.assert_close(q_lp, lp, atol=0.05, rtol=0)
        # The copy's W_c was split before conversion: it attends over its own W_cc h̄_s, as the float model does.
        assert q_state.values is not None and q_state.values.shape == state.values.shape
        torch.testing.assert_close(q_state.values, state.values, atol=0.05, rtol=0)
        as_written, _ = q.step(tgt[:, 0], q_state._replace(values=None))
        torch.testing.assert_close(as_written, q_lp, atol=0.05, rtol=0)
        result = q.generate(src, src_len, beam=2, bos=1, eos=2, max_len=6)
    assert len(result.tokens) == 5
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert all(p.requires_grad for p in model.parameters())


def test_bf16_linear_takes_any_leading_shape_and_returns_float32():
    from torch import nn

    from seqlab.compress.bfloat16 import BF16Linear

    torch.manual_seed(0)
    linear = nn.Linear(5, 3)
    b = BF16Linear(linear)
    x = torch.randn(2, 4, 5)
    with torch.no_grad():
        want = torch.nn.functional.linear(x.bfloat16().float(), linear.weight.bfloat16().float(), linear.bias)
        got = b(x)
    assert got.shape == (2, 4, 3) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=2e-2, rtol=1e-2)
