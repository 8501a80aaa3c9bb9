"""seqlab's compiled CPU kernels against the reference loop; gradcheck; the fallback without them.

The first test to need the kernels builds them (about a minute on 2 cores,
once per machine; later runs load the cached library).
"""

import json
import logging
import os
import statistics
import subprocess
import sys

import pytest
import torch
from torch.func import functional_call

from conftest import as_tuple as _as_tuple
from conftest import load_benchmark
from conftest import run_with_grads as _run
from seqlab.errors import SeqlabError
from seqlab.nn import CELLS, Recurrent, _kernels
from seqlab.nn._kernels import build

FUSED = [name for name, cls in CELLS.items() if _kernels.supports(cls)]


def _pair(name, dtype, num_layers=2, bidirectional=True, input_size=3, **options):
    """The same weights in a reference-loop layer and a compiled-kernel layer."""
    torch.manual_seed(0)
    kw = dict(bidirectional=bidirectional, **options)
    ref = Recurrent(name, input_size, 4, num_layers, impl="reference", **kw).to(dtype)
    fused = Recurrent(name, input_size, 4, num_layers, impl="fused", **kw).to(dtype)
    fused.load_state_dict(ref.state_dict())
    return ref, fused


def _compare(name, dtype, num_layers, bidirectional, lengths, input_size=3, **options):
    ref, fused = _pair(name, dtype, num_layers, bidirectional, input_size, **options)
    assert fused.backend == "seqlab" and ref.backend == "reference"
    T, B = 6, 3
    x = torch.randn(T, B, input_size, dtype=dtype)
    state0 = tuple(torch.randn(num_layers * ref.num_directions, B, 4, dtype=dtype) for _ in range(ref.state_size))
    # Layer norm over 4 units amplifies rounding: there both float32 paths are 1e-4 off float64 (measured).
    loose = dtype == torch.float32 and name == "ln_lstm"
    tol = dict(atol=2e-3, rtol=2e-3) if loose else dict(atol=1e-4, rtol=1e-4) if dtype == torch.float32 else {}
    expected, got = _run(ref, x, state0, lengths), _run(fused, x, state0, lengths)
    assert len(expected) == len(got)
    for k, (a, b) in enumerate(zip(got, expected)):
        torch.testing.assert_close(a, b, **tol, msg=lambda m: f"{name} tensor {k}: {m}")
    with torch.no_grad():  # the inference path keeps no per-step buffers; same numbers
        out, final = fused(x, state0[0] if len(state0) == 1 else state0, lengths=lengths)
    torch.testing.assert_close(out, got[0], **tol)
    for a, b in zip(_as_tuple(final), got[1 : 1 + ref.state_size]):
        torch.testing.assert_close(a, b, **tol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", FUSED)
def test_fused_equals_reference_two_layers_bidirectional_with_lengths(name, dtype):
    _compare(name, dtype, 2, True, torch.tensor([6, 2, 4]))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", FUSED)
def test_fused_equals_reference_one_layer(name, dtype):
    _compare(name, dtype, 1, False, None)


@pytest.mark.parametrize(
    "name, options",
    [
        ("peephole", dict(peepholes="fo")),
        ("peephole", dict(peepholes="i")),
        ("janet", dict(beta=0.3)),
        ("sru", dict(activation="tanh")),
        ("lstm", dict(residual=True)),
        ("gru", dict(residual=True)),
        ("rnn_relu", dict(residual=True)),
        ("lstm", dict(merge="sum")),
        ("gru", dict(merge="sum")),
        ("nested_lstm", dict(merge="sum")),
        ("sru", dict(merge="sum", residual=True)),
    ],
)
def test_fused_equals_reference_with_options(name, options):
    _compare(name, torch.float64, 2, True, torch.tensor([6, 1, 5]), **options)


def test_sru_with_plain_highway():
    """input_size == hidden_size: the highway term is x itself, not a projection."""
    _compare("sru", torch.float64, 2, False, torch.tensor([3, 6, 1]), input_size=4)


@pytest.mark.parametrize("uses", ["output", "final state"])
@pytest.mark.parametrize("name", FUSED)
def test_gradients_when_the_loss_leaves_outputs_unused(name, uses):
    """A loss of the output alone or of the final state alone: the kernels' node gets no gradient
    for the unused outputs (it makes the zeros itself), and its gradients still match the reference."""
    ref, fused = _pair(name, torch.float64, num_layers=1, bidirectional=False)
    x = torch.randn(5, 3, 3, dtype=torch.float64)
    grads = []
    for layer in (ref, fused):
        xg = x.clone().requires_grad_(True)
        output, final = layer(xg)
        loss = output.square().sum() if uses == "output" else sum(s.square().sum() for s in _as_tuple(final))
        grads.append(torch.autograd.grad(loss, [xg, *layer.parameters()]))
    for expected, got in zip(*grads, strict=True):
        torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("name", ["lstm", "sru"])
def test_a_layer_trains_after_a_call_under_inference_mode(name):
    """The zero state and full lengths the kernels get on the short path (one layer, no state, no
    lengths) are kept per shape; one first made under torch.inference_mode() must still be one that
    autograd can save.  The shape (T=17, B=13, H=11) is this test's own, so that the first call here
    makes them."""
    torch.manual_seed(0)
    layer = Recurrent(name, 3, 11)
    assert layer.backend == "seqlab"
    x = torch.randn(17, 13, 3)
    with torch.inference_mode():
        evaluated, _ = layer(x)
    output, _ = layer(x)
    output.square().sum().backward()
    torch.testing.assert_close(output.detach(), evaluated)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())


def test_auto_uses_the_kernels_on_the_cpu():
    assert set(FUSED) == set(CELLS)  # every cell has a kernel, the default on the CPU, standard cells too
    for name in CELLS:
        assert Recurrent(name, 3, 4).backend == "seqlab"
        if CELLS[name].native:
            assert Recurrent(name, 3, 4, impl="torch").backend == "torch"
    assert Recurrent("lstm", 4, 4, residual=True).backend == "seqlab"
    assert Recurrent("gru", 4, 4, residual=True).backend == "seqlab"
    assert Recurrent("gru", 4, 4, impl="fused").backend == "seqlab"
    assert Recurrent("sru", 3, 4, impl="reference").backend == "reference"
    with pytest.raises(ValueError, match="impl='torch' needs a standard cell"):
        Recurrent("sru", 3, 4, impl="torch")
    with pytest.raises(ValueError, match="residual=True"):
        Recurrent("lstm", 4, 4, residual=True, impl="torch")


def test_auto_runs_torch_where_the_kernels_cannot():
    """A bfloat16 CPU input has no seqlab kernel: a standard cell runs torch's, equal to impl="torch"."""
    torch.manual_seed(0)
    auto = Recurrent("gru", 3, 4, bidirectional=True).to(torch.bfloat16)
    native = Recurrent("gru", 3, 4, bidirectional=True, impl="torch").to(torch.bfloat16)
    native.load_state_dict(auto.state_dict())
    x = torch.randn(5, 2, 3, dtype=torch.bfloat16)
    assert torch.equal(auto(x)[0], native(x)[0])


def test_batch_first_and_packed_input_take_the_kernels():
    ref, fused = _pair("nested_lstm", torch.float64, 2, True)
    x = torch.randn(3, 5, 3, dtype=torch.float64)  # (B, T, I)
    ref.batch_first = fused.batch_first = True
    torch.testing.assert_close(fused(x)[0], ref(x)[0])
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor([2, 5, 3]), batch_first=True,
                                                     enforce_sorted=False)
    torch.testing.assert_close(fused(packed)[0].data, ref(packed)[0].data)


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("batch", [1, 5])
def test_fused_equals_reference_for_any_batch_split(batch, threads):
    """One row (the calling thread runs it) and batches that the threads' row blocks split unevenly."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for name in ("peephole", "ln_lstm", "nested_lstm"):
            ref, fused = _pair(name, torch.float64, 1, True)
            x = torch.randn(4, batch, 3, dtype=torch.float64)
            state0 = tuple(torch.randn(2, batch, 4, dtype=torch.float64) for _ in range(ref.state_size))
            for a, b in zip(_run(fused, x, state0, None), _run(ref, x, state0, None)):
                torch.testing.assert_close(a, b)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("name", ["ln_lstm", "nested_lstm"])
def test_fused_equals_reference_when_the_weights_exceed_the_cache(name):
    """Recurrent weights larger than one core's L2 and few rows per thread: the kernels split each
    step over the threads instead of giving each thread its own rows (see for_row_blocks in recurrence.cpp)."""
    hidden = 520  # U (4H, H) in float64 alone is 8.7 MB, more than any core's L2
    torch.manual_seed(0)
    ref = Recurrent(name, 3, hidden, impl="reference").double()
    fused = Recurrent(name, 3, hidden, impl="fused").double()
    fused.load_state_dict(ref.state_dict())
    x, lengths = torch.randn(4, 3, 3, dtype=torch.float64), torch.tensor([4, 1, 3])
    state0 = tuple(torch.randn(1, 3, hidden, dtype=torch.float64) for _ in range(ref.state_size))
    for a, b in zip(_run(fused, x, state0, lengths), _run(ref, x, state0, lengths)):
        torch.testing.assert_close(a, b)


def _step_gemms():
    """The float step GEMMs this build has, each set in turn; the default is set back after."""
    kernels = _kernels.load()
    default = kernels.step_gemm()
    try:
        for kind in ("panel", "panel512", "mkl", "auto", "blas"):
            try:
                kernels.step_gemm(kind)
            except RuntimeError:  # not in this build (no AVX2, no AVX-512 or no MKL)
                continue
            yield kind
    finally:
        kernels.step_gemm(default)


@pytest.mark.parametrize(
    "name, hidden, batch",
    [("peephole", 20, 13), ("nested_lstm", 20, 13), ("sru", 20, 13), ("peephole", 20, 30), ("cifg", 520, 2),
     ("janet", 20, 70), ("gru", 20, 30)],
)
def test_float32_step_gemm_blocks_and_panels(name, hidden, batch):
    """float32 runs the kernels' own per-step GEMM (StepGemm<float>), each kind this build has: 13
    rows split 7 + 6 over two threads (AVX2 panel: row blocks of 4 + 3 and 6), 30 rows split 15 + 15
    (AVX-512 panel: row blocks of 8 + 7), 80 = 5 x 16 gate columns plus a last panel of 4 (H = 20;
    AVX-512: 2 x 32 plus 16), and a step split over the threads (H = 520: 3.2 MB of weights, one
    row per thread).  Under the panel kinds the whole-sequence products run on the panels too: 280
    rows (B = 70) take the weight gradients' sums over more than one 256-deep piece of a panel."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(0)
        ref = Recurrent(name, 5, hidden, impl="reference")
        fused = Recurrent(name, 5, hidden, impl="fused")
        fused.load_state_dict(ref.state_dict())
        x = torch.randn(4, batch, 5)
        state0 = tuple(torch.randn(1, batch, hidden) for _ in range(ref.state_size))
        expected = _run(ref, x, state0, None)
        kinds = []
        for kind in _step_gemms():
            kinds.append(kind)
            for a, b in zip(_run(fused, x, state0, None), expected):
                torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4, msg=lambda m, k=kind: f"{k}: {m}")
        assert "blas" in kinds
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("name, input_size", [("sru", 320), ("sru", 288), ("ln_lstm", 320)])
def test_float32_weight_gradients_after_the_loop(name, input_size):
    """Weights over half of a core's L2 (H = 320: SRU's W is 1.2 MB, or 1.5 MB with the projected
    highway of I = 288; ln_lstm's W and U 3.3 MB): under the panel kinds SRU's dW, and ln_lstm's dW
    and dU under every kind, come from one product over the stored gradients after the time loop
    instead of the in-loop rings; with lengths and in both directions."""
    size = 320
    torch.manual_seed(0)
    ref = Recurrent(name, input_size, size, impl="reference", bidirectional=True)
    fused = Recurrent(name, input_size, size, impl="fused", bidirectional=True)
    fused.load_state_dict(ref.state_dict())
    x, lengths = torch.randn(5, 3, input_size), torch.tensor([5, 2, 4])
    state0 = tuple(torch.randn(2, 3, size) for _ in range(ref.state_size))
    expected = _run(ref, x, state0, lengths)
    for kind in _step_gemms():
        for a, b in zip(_run(fused, x, state0, lengths), expected):
            torch.testing.assert_close(a, b, atol=2e-4, rtol=1e-4, msg=lambda m, k=kind: f"{k}: {m}")


@pytest.mark.parametrize("depth", [300, 1024])
@pytest.mark.parametrize("ta, tb", [(False, False), (True, False), (False, True), (True, True)])
def test_whole_sequence_product_matches_torch_mm(ta, tb, depth):
    """kernels.matmul (the whole-sequence products: the panels under the panel kinds, else ATen) for
    operands stored as given or transposed, over 70 rows (2 threads, several row groups), 300 deep
    (two 256-deep pieces of a panel) or 1024 (rows of A 4 KiB apart, taken at most 8 at a time) and
    45 columns (a last panel 13 wide), float32 and float64."""
    kernels = _kernels.load()
    torch.manual_seed(0)
    for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-12)):
        a = torch.randn(depth, 70, dtype=dtype).t() if ta else torch.randn(70, depth, dtype=dtype)
        b = torch.randn(45, depth, dtype=dtype).t() if tb else torch.randn(depth, 45, dtype=dtype)
        want = a.double() @ b.double()
        for kind in _step_gemms():
            got = kernels.matmul(a, b)
            assert got.shape == (70, 45) and got.dtype == dtype
            torch.testing.assert_close(got.double(), want, atol=tol * 30 * depth / 300, rtol=tol,
                                       msg=lambda m, k=kind: f"{k}: {m}")
    with pytest.raises(RuntimeError, match="needs"):
        kernels.matmul(torch.randn(3, 4), torch.randn(5, 2))


@pytest.mark.parametrize("ta", [False, True])
def test_whole_sequence_product_with_a_weight_beyond_l2(ta):
    """A weight of 2.6 MB (256 x 2500), more than one core's L2 on the CPUs here: the panels take the
    rows of A in groups that fill a quarter of L2 instead of 18 at a time; 700 rows make several
    groups per thread and a shorter last one, under every step GEMM kind."""
    kernels = _kernels.load()
    torch.manual_seed(0)
    a = torch.randn(256, 700).t() if ta else torch.randn(700, 256)
    b = torch.randn(256, 2500)
    want = a.double() @ b.double()
    for kind in _step_gemms():
        got = kernels.matmul(a, b)
        torch.testing.assert_close(got.double(), want, atol=3e-4, rtol=1e-5, msg=lambda m, k=kind: f"{k}: {m}")


def test_step_gemm_rejects_a_kind_the_build_lacks():
    kernels = _kernels.load()
    with pytest.raises(RuntimeError, match="not in this build"):
        kernels.step_gemm("cublas")
    assert kernels.step_gemm() in ("panel", "panel512", "mkl", "auto", "blas")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_lstm_step_without_autograd_takes_the_compiled_pointwise_pass(dtype):
    from seqlab.nn.cells import LSTMCell, lstm_update

    torch.manual_seed(0)
    cell = LSTMCell(3, 5).to(dtype)
    x, h, c = torch.randn(4, 3, dtype=dtype), torch.randn(4, 5, dtype=dtype), torch.randn(4, 5, dtype=dtype)
    want = cell.step(cell.project(x), (h, c))  # autograd records: PyTorch ops
    assert want[0].requires_grad
    with torch.no_grad():
        a = torch.addmm(cell.project(x), h, cell.weight_hh.t())  # as LSTMCell.step forms it: one rounding
        got = _kernels.load().lstm_pointwise(a, c)
        via_cell = cell.step(cell.project(x), (h, c))
    tol = dict(atol=1e-6, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-12, rtol=1e-12)
    for g, v, w in zip(got, via_cell, want):
        torch.testing.assert_close(g, w.detach(), **tol)
        assert torch.equal(v, g)
    # A recurrent product given apart is added inside the pass: the same as adding it first.
    r = torch.randn_like(a)
    with torch.no_grad():
        summed = _kernels.load().lstm_pointwise(a + r, c)
        apart = _kernels.load().lstm_pointwise(a, c, r)
        via_update = lstm_update(a, c, r)
    reference = lstm_update(a.clone().requires_grad_(), c, r)  # autograd records: PyTorch ops
    assert reference[0].requires_grad
    for s, p, u, ref in zip(summed, apart, via_update, reference):
        torch.testing.assert_close(p, s, atol=1e-7 if dtype == torch.float32 else 1e-14, rtol=0)
        assert torch.equal(u, p)
        torch.testing.assert_close(p, ref.detach(), **tol)
    with pytest.raises(RuntimeError, match="same shape"):
        _kernels.load().lstm_pointwise(a, c, r[:, :4])


def test_float_sigmoid_and_tanh_match_torch_over_the_whole_range():
    """The kernels' own float sigmoid and tanh (an exp whose 2^n is built from the bits of a
    shifted sum), read through the LSTM pointwise step: with c = 0, f = o = 0 and tanh(g) = 1
    the new cell state is sigmoid(i); with sigmoid(i) = 1 it is tanh(g).  Within float32
    rounding of torch's from -100 to 100 (past the clamp at 80 both saturate), exact at 0, and
    a NaN input gives NaN."""
    x = torch.cat([torch.linspace(-100, 100, 200_001), torch.tensor([0.0, 1e-30, -1e-30, 1e-6, 79.9, 80.1, 1e30])])
    x = torch.cat([x, -x, torch.tensor([float("nan")])])
    zeros, big = torch.zeros(1, x.numel()), torch.full((1, x.numel()), 100.0)
    kernels = _kernels.load()
    sig = kernels.lstm_pointwise(torch.cat([x[None], zeros, big, zeros], 1), zeros)[1][0]  # c = 0
    tanh = kernels.lstm_pointwise(torch.cat([big, zeros, x[None], zeros], 1), zeros)[1][0]
    real = ~x.isnan()
    torch.testing.assert_close(sig[real], torch.sigmoid(x[real].double()).float(), rtol=1e-6, atol=1e-30)
    torch.testing.assert_close(tanh[real], torch.tanh(x[real].double()).float(), rtol=1e-6, atol=1e-30)
    assert sig[x == 0].eq(0.5).all() and tanh[x == 0].eq(0).all()
    assert sig[~real].isnan().all() and tanh[~real].isnan().all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_add_tanh_squashes_a_plus_b_in_place(dtype):
    kernels = _kernels.load()
    torch.manual_seed(0)
    a, b = torch.randn(7, 33, dtype=dtype) * 4, torch.randn(7, 33, dtype=dtype)
    want = torch.tanh(a + b)
    out = a.clone()
    kernels.add_tanh_(out, b)
    tol = dict(atol=1e-6, rtol=1e-6) if dtype == torch.float32 else dict(atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(out, want, **tol)
    alone = a.clone()
    kernels.add_tanh_(alone)
    torch.testing.assert_close(alone, torch.tanh(a), **tol)
    kernels.add_tanh_(torch.empty(0, 5, dtype=dtype), torch.empty(0, 5, dtype=dtype))
    with pytest.raises(RuntimeError, match="same shape"):
        kernels.add_tanh_(a.clone(), b[:, :5])
    with pytest.raises(RuntimeError, match="contiguous"):
        kernels.add_tanh_(a.t(), b.t())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("kind", ["dot", "general"])
def test_attention_step_without_autograd_takes_the_compiled_pass(kind, dtype):
    from seqlab.nn.attention import make_attention

    torch.manual_seed(0)
    attention = make_attention(kind, 6, 6).to(dtype)
    query, memory = torch.randn(4, 6, dtype=dtype), torch.randn(4, 5, 6, dtype=dtype)
    mask = torch.arange(5) < torch.tensor([5, 2, 4, 1]).unsqueeze(1)
    cache = attention.precompute(memory).detach()
    want = attention(query.requires_grad_(), memory, memory, mask, cache=cache)  # PyTorch ops
    with torch.no_grad():
        got = attention(query, memory, memory, mask, cache=cache)
        unmasked = attention(query, memory, memory, None, cache=cache)
        kernel = _kernels.load().dot_attention(query, cache, memory, mask)
    tol = dict(atol=1e-6, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-12, rtol=1e-12)
    for g, k, w in zip(got, kernel, want):
        torch.testing.assert_close(g, w.detach(), **tol)
        assert torch.equal(g, k)
    assert bool((got[1][~mask] == 0).all())
    torch.testing.assert_close(unmasked[1].sum(1), torch.ones(4, dtype=dtype))
    with pytest.raises(RuntimeError, match="dot_attention shapes"):
        _kernels.load().dot_attention(query, cache[:, :4], memory, mask)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_attention_rows_read_shared_sources(dtype):
    """Queries that name their source row (beams sharing a sentence) equal queries against copied sources."""
    from seqlab.nn.attention import make_attention

    torch.manual_seed(0)
    attention = make_attention("general", 6, 5).to(dtype)
    memory = torch.randn(3, 4, 5, dtype=dtype)
    mask = torch.arange(4) < torch.tensor([4, 1, 3]).unsqueeze(1)
    cache = attention.precompute(memory).detach()
    rows = torch.tensor([2, 0, 2, 2, 1])
    query = torch.randn(5, 6, dtype=dtype)
    copied = (memory[rows], mask[rows], cache[rows])
    kernel = _kernels.load()
    with torch.no_grad():
        got = attention(query, memory, memory, mask, cache=cache, rows=rows)  # the compiled pass
        want = kernel.dot_attention(query, copied[2], copied[0], copied[1])
    by_torch = attention(query.requires_grad_(), memory, memory, mask, cache=cache, rows=rows)  # PyTorch ops
    tol = dict(atol=1e-6, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-12, rtol=1e-12)
    for g, w, t in zip(got, want, by_torch):
        assert torch.equal(g, w)
        torch.testing.assert_close(t.detach(), w, **tol)
    with pytest.raises(RuntimeError, match=r"rows must lie in \[0, 3\)"):
        kernel.dot_attention(query.detach(), cache, memory, mask, torch.tensor([0, 1, 2, 3, 0]))
    with pytest.raises(RuntimeError, match="dot_attention shapes"):
        kernel.dot_attention(query.detach(), cache, memory, mask)  # 5 queries, 3 sources and no rows
    with pytest.raises(ValueError, match="expected rows as a 1-D long tensor"):
        attention(query, memory, memory, mask, cache=cache, rows=rows.int())


@pytest.mark.parametrize("name", ["peephole", "sru"])
def test_input_without_grad_gets_none_and_weights_match(name):
    """x that needs no gradient (raw features): the kernels skip dx and the weights' gradients stay exact."""
    ref, fused = _pair(name, torch.float64, 1, False, input_size=4)
    x = torch.randn(5, 3, 4, dtype=torch.float64)
    for layer in (ref, fused):
        layer(x)[0].square().sum().backward()
    for (k, a), b in zip(fused.named_parameters(), ref.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=lambda m, k=k: f"{name} {k}: {m}")


def test_kernels_reject_a_wrong_number_of_state_tensors():
    kernels = _kernels.load()
    layer = Recurrent("sru", 3, 4, impl="fused")
    kind, proj, params, options = _kernels.functions._SPECS[type(layer.cells[0])](layer.cells[0])
    x, h = torch.randn(2, 1, 3), torch.zeros(1, 4)
    with pytest.raises(RuntimeError, match="sru takes 2 state and 2 parameter tensors, got 1 and 2"):
        kernels.forward(kind, x, proj, [h], params, torch.tensor([2]), False, options, False)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", [n for n in FUSED if n != "sru"])
def test_forward_from_given_products_equals_forward_and_leaves_them_alone(name, dtype):
    """forward_projected (inference from x Wᵀ the caller computed) runs the same time loop as forward."""
    kernels = _kernels.load()
    torch.manual_seed(0)
    cell = Recurrent(name, 3, 4).to(dtype).cells[0]
    kind, proj, params, options = _kernels.functions._SPECS[type(cell)](cell)
    x, lengths = torch.randn(5, 3, 3, dtype=dtype), torch.tensor([5, 2, 4])
    state = [torch.randn(3, 4, dtype=dtype) for _ in range(cell.state_size)]
    with torch.no_grad():
        xp = x @ _kernels.input_weight(cell).t()
        given = xp.clone()
        for reverse in (False, True):
            want = kernels.forward(kind, x, proj, state, params, lengths, reverse, options, False)
            got = kernels.forward_projected(kind, given, proj, state, params, lengths, reverse, options)
            for a, b in zip(got, want):
                torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert torch.equal(given, xp)


def test_forward_from_given_products_refuses_sru_and_a_wrong_width():
    kernels = _kernels.load()
    for name, width in (("sru", 12), ("gru", 5)):
        cell = Recurrent(name, 4, 4).cells[0]
        kind, proj, params, options = _kernels.functions._SPECS[type(cell)](cell)
        state = [torch.zeros(1, 4) for _ in range(cell.state_size)]
        with pytest.raises(RuntimeError, match="forward_projected takes x W"):
            kernels.forward_projected(kind, torch.randn(2, 1, width), proj, state, params, torch.tensor([2]), False,
                                      options)
    assert _kernels.input_weight(Recurrent("sru", 4, 4).cells[0]) is None


def _gradcheck(name, num_layers, bidirectional, lengths, fast, **options):
    torch.manual_seed(0)
    layer = Recurrent(name, 3, 4, num_layers, bidirectional=bidirectional, impl="fused", **options).double()
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
        return (out, *_as_tuple(final))

    assert torch.autograd.gradcheck(run, (x, *state0, *params), eps=1e-6, atol=1e-5, fast_mode=fast)


@pytest.mark.parametrize("name", FUSED)
def test_gradcheck_fused_one_layer(name):
    _gradcheck(name, 1, False, None, fast=False)


@pytest.mark.parametrize("name", FUSED)
def test_gradcheck_fused_two_layers_bidirectional_with_lengths(name):
    _gradcheck(name, 2, True, torch.tensor([5, 2, 4]), fast=True)


# ------------------------------------------------------------------ fallback


@pytest.fixture
def fresh_load():
    """Forget the cached load() outcome before and after the test."""
    build.load.cache_clear()
    yield build.load
    build.load.cache_clear()


def test_disabled_kernels_fall_back_with_one_line_notice(monkeypatch, caplog, fresh_load):
    monkeypatch.setenv(build.DISABLE_ENV, "1")
    with caplog.at_level(logging.WARNING, logger="seqlab.kernels"):
        assert fresh_load() is None
        layer = Recurrent("sru", 3, 4)
        assert layer.backend == "reference"
        out, _ = layer(torch.randn(5, 2, 3))
        assert Recurrent("gru", 3, 4).backend == "torch"
    assert out.shape == (5, 2, 4)
    notices = [r.getMessage() for r in caplog.records if r.name == "seqlab.kernels"]
    assert notices == [
        "seqlab: fused kernels unavailable (SEQLAB_NO_KERNELS is set); "
        "using torch's own kernels (lstm, gru, rnn_*) or the PyTorch reference path"
    ]
    with pytest.raises(SeqlabError, match="impl='fused'"):
        Recurrent("sru", 3, 4, impl="fused")(torch.randn(5, 2, 3))


def test_failed_build_falls_back(monkeypatch, caplog, fresh_load):
    from torch.utils import cpp_extension

    def broken(**kwargs):
        raise RuntimeError("Error building extension 'seqlab_recurrence'\nc++: fatal error: no input files")

    monkeypatch.setattr(cpp_extension, "load", broken)
    with caplog.at_level(logging.WARNING, logger="seqlab.kernels"):
        assert fresh_load() is None
    (message,) = [r.getMessage() for r in caplog.records if r.name == "seqlab.kernels"]
    assert "\n" not in message
    assert message.startswith("seqlab: fused kernels unavailable (RuntimeError: Error building extension")
    torch.manual_seed(0)
    layer = Recurrent("janet", 3, 4, bidirectional=True)
    reference = Recurrent("janet", 3, 4, bidirectional=True, impl="reference")
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(5, 2, 3)
    torch.testing.assert_close(layer(x)[0], reference(x)[0])


def test_clean_process_without_kernels_runs_and_prints_one_line():
    env = {**os.environ, build.DISABLE_ENV: "1"}
    code = "import torch; from seqlab.nn import Recurrent; print(Recurrent('cifg', 3, 4)(torch.randn(5, 2, 3))[0].shape)"
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "torch.Size([5, 2, 4])"
    assert run.stderr.strip().splitlines() == [
        "seqlab: fused kernels unavailable (SEQLAB_NO_KERNELS is set); "
        "using torch's own kernels (lstm, gru, rnn_*) or the PyTorch reference path"
    ]


def test_missing_compiler_is_one_line_naming_it(tmp_path):
    # A fresh cache and a compiler that is not there: no build is tried, and the one line says what to install
    # (torch's own compiler warnings, a dozen lines, are not shown).
    env = {**os.environ, build.CACHE_ENV: str(tmp_path), "CXX": str(tmp_path / "no-such-c++")}
    env.pop(build.DISABLE_ENV, None)
    code = "import torch; from seqlab.nn import Recurrent; l = Recurrent('janet', 3, 4); print(l(torch.randn(5, 2, 3))[0].shape, l.backend)"
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["torch.Size([5,", "2,", "4])", "reference"]
    assert run.stderr.strip().splitlines() == [
        f"seqlab: fused kernels unavailable (no C++ compiler: {env['CXX']} is not on PATH; install g++ "
        "(Debian: apt-get install g++)); "
        "using torch's own kernels (lstm, gru, rnn_*) or the PyTorch reference path"
    ]
    assert not any(tmp_path.rglob("*.so"))


def test_int8_products_that_do_not_compile_leave_the_rest_built(monkeypatch, tmp_path, caplog):
    # A source that fails only with the fbgemm flag, as a torch whose fbgemm headers break here would.
    source = tmp_path / "probe.cpp"
    source.write_text('#ifdef SEQLAB_USE_FBGEMM\n#error "these fbgemm headers do not compile"\n#endif\n'
                      "#include <pybind11/pybind11.h>\n"
                      'PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("built", [] { return 1; }); }\n')
    monkeypatch.setattr(build, "_flags", lambda: (["-O0", build.FBGEMM_FLAG], []))
    with caplog.at_level(logging.WARNING, logger="seqlab.kernels"):
        module = build.compile_extension("seqlab_fbgemm_probe", source, tmp_path)
    assert module.built() == 1
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == [
        "seqlab: built the kernels without the int8 products"]


def test_ninja_from_pypi_goes_on_path_when_the_system_has_none(tmp_path):
    # An empty PATH: the ninja that seqlab installs from PyPI is put on it, and runs.
    code = (
        "import shutil, subprocess, ninja; from seqlab.nn._kernels import build; "
        "assert shutil.which('ninja') is None; assert build._ninja_on_path(); "
        "print(shutil.which('ninja').startswith(ninja.BIN_DIR), subprocess.run(['ninja', '--version'], "
        "capture_output=True, text=True, check=True).stdout.strip())"
    )
    run = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PATH": str(tmp_path)},
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    found, version = run.stdout.split()
    assert found == "True" and version[0].isdigit()


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(build.CACHE_ENV, str(tmp_path))
    folder = build.cache_dir()
    assert folder.parent == tmp_path and torch.__version__.replace("+", "_") in folder.name


def test_fused_impl_needs_a_cell_with_a_kernel(monkeypatch):
    class Tweaked(CELLS["cifg"]):
        """A subclass may change the math: the kernels map cells by exact class."""

    monkeypatch.setitem(CELLS, "tweaked_cifg", Tweaked)
    assert Recurrent("tweaked_cifg", 3, 4).backend == "reference"
    with pytest.raises(ValueError, match="impl='fused' needs a cell with a seqlab kernel"):
        Recurrent("tweaked_cifg", 3, 4, impl="fused")


# ------------------------------------------------------------------ benchmark


def _bench_module():
    return load_benchmark("cells")


def test_benchmark_ratios_pair_the_rounds():
    bench = _bench_module()
    # Round 3 ran on a slow machine for both: two of three rounds say 0.5x; the medians alone say 1.0x.
    cell, base = [1.0, 2.0, 3.0], [2.0, 2.0, 6.0]
    assert bench._paired_ratio(cell, base) == 0.5 and statistics.median(cell) / statistics.median(base) == 1.0
    with pytest.raises(ValueError):
        bench._paired_ratio([1.0], [1.0, 2.0])  # rounds must pair up one to one


def test_benchmark_interval_of_a_median_is_its_order_statistics():
    bench = _bench_module()
    values = [float(v) for v in range(25, 0, -1)]
    # 25 values: P(at most 7 of them under the median) = 0.0216 <= 0.025 < P(at most 8) = 0.0539.
    assert bench._median_interval(values) == (8.0, 18.0)
    assert bench._median_interval(values, level=0.5) == (11.0, 15.0)  # 0.2122 <= 0.25 < 0.3450
    # Five values cannot give 95% (the widest interval covers 1 - 2/32 of the time): all of them.
    assert bench._median_interval([3.0, 1.0, 2.0, 5.0, 4.0]) == (1.0, 5.0)
    assert bench._median_interval([2.0]) == (2.0, 2.0)
    with pytest.raises(ValueError):
        bench._median_interval([])
    # Within-round ratios, paired as for the median: 0.5, 1.0, 0.5.
    assert bench._paired_interval([1.0, 2.0, 3.0], [2.0, 2.0, 6.0]) == (0.5, 1.0)


def test_benchmark_page_gives_each_check_its_interval():
    bench = _bench_module()
    shape = {"T": 1, "B": 2, "I": 3, "H": 4, "gemm_ms": 1.0, "gemm_gflops": 1.0, "rows": []}
    for model, ratio, interval in [("janet", 0.9, (0.85, 0.95)), ("cifg", 0.98, (0.9, 1.06)),
                                   ("sru", 1.2, (1.1, 1.3))]:
        row = {"model": model, "path": "seqlab", "infer_ms": 1.0, "train_ms": 1.0, "infer_ratio": 1.0,
               "train_ratio": ratio, "infer_interval": (0.9, 1.1), "train_interval": interval, "train_gflops": 1.0,
               "flops_ratio": 1.0, "infer_floor": 0.5, "train_floor": 0.5}
        row["targets"] = {"training vs LSTM": bench._targets(model, row)["training vs LSTM"]}
        shape["rows"].append(row)
    record = {"device": "cpu", "date": "d", "commit": None, "command": "c", "torch": "t", "cpu": "x", "threads": 1,
              "repeats": 25, "warmup": 0, "shapes": [shape]}
    page = bench._render(record)
    assert "**2 of 3 target checks met.** Missed:\n- sru at T=1, B=2, I=3, H=4: training vs LSTM 1.200x > 1.000x " \
           "(95% interval 1.100-1.300x; floor 0.50x)" in page
    # cifg met, but its interval reaches past the limit; janet's lies below it and is not listed.
    assert "another run may miss them):\n- cifg at T=1, B=2, I=3, H=4: training vs LSTM 0.980x <= 1.000x " \
           "(95% interval 0.900-1.060x; floor 0.50x)" in page
    assert "- janet at" not in page


def test_benchmark_writes_tables_with_every_cell(tmp_path):
    bench = _bench_module()
    result = bench._bench_shape((3, 2, 4, 5), torch.device("cpu"), repeats=1, warmup=0)
    rows = {row["model"]: row for row in result["rows"]}
    assert set(CELLS) <= set(rows) and bench.BASELINE in rows
    assert rows[bench.BASELINE]["train_ratio"] == 1.0
    assert rows["sru"]["path"] == "seqlab" and "SRU training vs LSTM" in rows["sru"]["targets"]
    assert "train_overhead" in rows["gru"] and "train_overhead" not in rows["sru"]
    # gru also through seqlab's kernel, against torch.nn.GRU, with no target of its own
    # on the CPU gru runs seqlab's kernel by default, and torch's too, both against torch.nn.GRU
    torch_gru = rows["gru (torch)"]
    assert rows["gru"]["path"] == "seqlab" and torch_gru["path"] == "torch"
    assert "training vs own torch module" in torch_gru["targets"] and "train_overhead" in rows["rnn_tanh (torch)"]
    # Nested LSTM's matrices, I=4, H=5: input 4H x I, outer 4H x H, inner 4H x 2H; the LSTM's: 4H x I, 4H x H.
    assert rows["nested_lstm"]["flops_ratio"] == pytest.approx((80 + 100 + 200) / (80 + 100))
    assert rows["sru"]["targets"]["SRU training vs LSTM"]["floor"] == rows["sru"]["train_floor"] > 0
    record = {"device": "cpu", "date": "d", "commit": None, "command": "c", "torch": "t", "cpu": "x",
              "threads": 1, "repeats": 1, "warmup": 0, "quick": True, "shapes": [result]}
    page = bench._render(record)
    assert all(f"| {name} |" in page for name in CELLS) and "target checks met" in page
    assert "| floor (inf / train) |" in page
    # The GEMM reference is the faster of torch.mm and the kernels' own product, both timed and named.
    assert set(result["gemm_products_ms"]) == {"torch.mm", "seqlab"}
    assert result["gemm_ms"] == min(result["gemm_products_ms"].values())
    assert f"({result['gemm_by']}; " in page
    json.dumps(record)  # the JSON record is serialisable as is


def test_benchmark_page_name_picks_the_files(tmp_path, capsys):
    bench = _bench_module()
    assert bench.main(["--quick", "--repeats", "1", "--out", str(tmp_path), "--page", "cells_cpu_amd"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells_cpu_amd.json", "cells_cpu_amd.md"]
    record = json.loads((tmp_path / "cells_cpu_amd.json").read_text())
    assert record["command"].endswith("--page cells_cpu_amd") and record["quick"]
    for bad in ("../cells", "cells.md", "sub/cells", ""):
        with pytest.raises(SystemExit):
            bench.main(["--quick", "--out", str(tmp_path), "--page", bad])
    assert "--page" in capsys.readouterr().err


def test_sru_breakdown_sets_the_step_and_its_gemms_beside_torch_lstm(monkeypatch):
    bench = load_benchmark("sru_breakdown")  # it imports the cells benchmark's helpers
    rows = bench._shape_rows(_kernels.load(), (3, 2, 4, 4), repeats=3)
    names = [row[0] for row in rows]
    assert names[-2:] == ["SRU step vs torch.nn.LSTM", "its three GEMMs vs torch.nn.LSTM"]
    (_, step_ms, lstm_ms, _), (_, gemms_ms, lstm_ms_again, _) = rows[-2:]
    assert lstm_ms == lstm_ms_again > 0  # both against the same LSTM timings
    assert step_ms == rows[names.index("Recurrent + autograd")][1]  # the SRU step is the Recurrent step
    # (At this tiny size "dx in the loop", a difference of two timings, can come out negative.)
    assert gemms_ms > 0 and all(r > 0 for *_, r in rows[-2:])
    assert "the issue asks for 0.33x" in bench._render({"T=3": rows}, 3)
    assert "`python benchmarks/sru_breakdown.py --page sru_breakdown_zen3`" in bench._render({"T=3": rows}, 3,
                                                                                           "sru_breakdown_zen3")


def test_sru_breakdown_refuses_a_bad_page_name_or_round_count(capsys):
    bench = load_benchmark("sru_breakdown")
    for bad in ("../x", "page.md", ""):
        with pytest.raises(SystemExit):
            bench.main(["--page", bad])
    assert "--page" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--repeats", "0"])
    assert "--repeats" in capsys.readouterr().err
