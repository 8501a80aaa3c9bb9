"""seqlab's Triton kernels (``seqlab.nn._kernels.gpu``) against the reference loop.

On a machine with CUDA the kernels run there (compiled, with CUDA graphs)
and are compared with the reference loop on the CPU.  Without CUDA,
``conftest.py`` sets ``TRITON_INTERPRET=1`` and the same kernels run on CPU
tensors through Triton's interpreter: every line of kernel code is checked
either way, only the compiler differs.
"""

import pytest
import torch

from conftest import as_tuple as _as_tuple
from conftest import run_with_grads as _run
from seqlab.errors import SeqlabError
from seqlab.nn import CELLS, Recurrent
from seqlab.nn._kernels import gpu

pytest.importorskip("triton")

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
TRITON = [name for name, cls in CELLS.items() if gpu.supports(cls)]


def _compare(name, dtype, num_layers=2, bidirectional=True, input_size=5, hidden=6, T=5, lengths=(5, 2, 4),
             **options):
    torch.manual_seed(0)
    kw = dict(bidirectional=bidirectional, **options)
    ref = Recurrent(name, input_size, hidden, num_layers, impl="reference", **kw).to(dtype)
    with torch.no_grad():  # away from the init, where peepholes and biases are 0
        for p in ref.parameters():
            p.add_(0.2 * torch.randn_like(p))
    tri = Recurrent(name, input_size, hidden, num_layers, impl="triton", **kw).to(DEVICE, dtype)
    tri.load_state_dict(ref.state_dict())
    B = len(lengths)
    x = torch.randn(T, B, input_size, dtype=dtype)
    state0 = tuple(torch.randn(ref.num_layers * ref.num_directions, B, hidden, dtype=dtype)
                   for _ in range(ref.state_size))
    lengths = torch.tensor(lengths)
    want = _run(ref, x, state0, lengths)
    got = _run(tri, x.to(DEVICE), tuple(s.to(DEVICE) for s in state0), lengths)
    tol = dict(rtol=1e-9, atol=1e-10) if dtype == torch.float64 else dict(rtol=2e-4, atol=2e-5)
    for k, (a, b) in enumerate(zip(want, got)):
        torch.testing.assert_close(b, a, **tol, msg=lambda m: f"{name}, tensor {k}: {m}")
    with torch.no_grad():  # the inference path (no saved activations) gives the same output
        out, _ = tri(x.to(DEVICE), tuple(s.to(DEVICE) for s in state0)[0] if ref.state_size == 1 else
                     tuple(s.to(DEVICE) for s in state0), lengths=lengths)
    torch.testing.assert_close(out.cpu(), want[0], **tol)


@pytest.mark.parametrize("name", TRITON)
def test_triton_equals_reference_two_layers_bidirectional_with_lengths(name):
    _compare(name, torch.float64)


@pytest.mark.parametrize("name", TRITON)
def test_triton_equals_reference_float32_batch_over_one_tile(name):
    # 17 rows and 40 units: two row tiles and a partial unit tile; one layer, forward only.
    _compare(name, torch.float32, num_layers=1, bidirectional=False, hidden=40, T=4,
             lengths=tuple(range(4, 0, -1)) * 4 + (3,))


@pytest.mark.parametrize(
    "name, options",
    [("peephole", dict(peepholes="fo")), ("janet", dict(beta=0.3)), ("sru", dict(activation="tanh"))],
    ids=["peephole-fo", "janet-beta", "sru-tanh"],
)
def test_triton_equals_reference_with_options(name, options):
    _compare(name, torch.float64, num_layers=1, **options)


def test_triton_sru_with_plain_highway():
    # input_size == hidden_size: the highway term is x itself, appended by SRUCell.project.
    _compare("sru", torch.float64, num_layers=2, input_size=6, hidden=6)


def test_triton_one_step_one_row_and_few_units():
    # T = 1, B = 1, H = 3: every tile is mostly mask.
    for name in ("janet", "ln_lstm"):
        _compare(name, torch.float64, num_layers=1, bidirectional=True, hidden=3, T=1, lengths=(1,))


def test_batch_first_and_packed_input_take_the_triton_kernels():
    torch.manual_seed(3)
    ref = Recurrent("peephole", 3, 4, 2, bidirectional=True, batch_first=True, impl="reference").double()
    tri = Recurrent("peephole", 3, 4, 2, bidirectional=True, batch_first=True, impl="triton").to(DEVICE, torch.float64)
    tri.load_state_dict(ref.state_dict())
    x = torch.randn(3, 5, 3, dtype=torch.float64)  # (B, T, I)
    torch.testing.assert_close(tri(x.to(DEVICE))[0].cpu(), ref(x)[0])
    packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.tensor([2, 5, 3]), batch_first=True,
                                                     enforce_sorted=False)
    torch.testing.assert_close(tri(packed.to(DEVICE))[0].data.cpu(), ref(packed)[0].data)


@pytest.mark.parametrize("name", TRITON)
def test_gradcheck_triton(name):
    torch.manual_seed(1)
    layer = Recurrent(name, 3, 4, impl="triton", bidirectional=True).to(DEVICE, torch.float64)
    x = torch.randn(3, 2, 3, dtype=torch.float64, device=DEVICE, requires_grad=True)
    h0 = torch.randn(2, 2, 4, dtype=torch.float64, device=DEVICE, requires_grad=True)
    rest = tuple(torch.randn(2, 2, 4, dtype=torch.float64, device=DEVICE) for _ in range(layer.state_size - 1))
    lengths = torch.tensor([3, 2])

    def f(x, h0):
        out, final = layer(x, (h0, *rest) if rest else h0, lengths=lengths)
        return out, *_as_tuple(final)

    assert torch.autograd.gradcheck(f, (x, h0), fast_mode=True)


def test_repeated_calls_take_each_calls_inputs():
    # On CUDA the loops are replayed from recorded graphs: a second call with the same shapes
    # must see its own input, lengths and weights.
    torch.manual_seed(2)
    ref = Recurrent("cifg", 3, 4, impl="reference").double()
    tri = Recurrent("cifg", 3, 4, impl="triton").to(DEVICE, torch.float64)
    for lengths in ([4, 1], [2, 3]):
        with torch.no_grad():
            for p in ref.parameters():
                p.add_(0.1 * torch.randn_like(p))
        tri.load_state_dict(ref.state_dict())
        x = torch.randn(4, 2, 3, dtype=torch.float64)
        want = _run(ref, x, (torch.zeros(1, 2, 4, dtype=torch.float64),) * 2, torch.tensor(lengths))
        got = _run(tri, x.to(DEVICE), (torch.zeros(1, 2, 4, dtype=torch.float64, device=DEVICE),) * 2,
                   torch.tensor(lengths))
        for a, b in zip(want, got):
            torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-10)


def test_calls_under_inference_mode_leave_a_layer_usable_outside_it():
    # What a layer keeps between calls (full lengths; on CUDA the graphs recorded at the second
    # call with a shape, with their inputs' static copies) is made outside inference mode, so
    # that no_grad calls and training after evaluation under torch.inference_mode() still work.
    torch.manual_seed(3)
    ref = Recurrent("cifg", 3, 4, impl="reference").double()
    tri = Recurrent("cifg", 3, 4, impl="triton").to(DEVICE, torch.float64)
    tri.load_state_dict(ref.state_dict())
    x = torch.randn(6, 5, 3, dtype=torch.float64)
    want, _ = ref(x)
    with torch.inference_mode():
        for _ in range(3):
            torch.testing.assert_close(tri(x.to(DEVICE))[0].cpu(), want.detach(), rtol=1e-9, atol=1e-10)
    with torch.no_grad():
        for _ in range(2):
            torch.testing.assert_close(tri(x.to(DEVICE))[0].cpu(), want.detach(), rtol=1e-9, atol=1e-10)
    out, _ = tri(x.to(DEVICE))
    out.sum().backward()
    want.sum().backward()
    for a, b in zip(ref.parameters(), tri.parameters(), strict=True):
        torch.testing.assert_close(b.grad.cpu(), a.grad, rtol=1e-9, atol=1e-10)


def test_backend_names_the_triton_path():
    assert Recurrent("janet", 3, 4, impl="triton").to(DEVICE).backend == "triton"
    assert Recurrent("janet", 3, 4, impl="reference").to(DEVICE).backend == "reference"
    assert Recurrent("lstm", 3, 4).to(DEVICE).backend == ("torch" if DEVICE.type == "cuda" else "seqlab")


def test_triton_impl_needs_a_cell_with_kernels_and_a_float_input():
    with pytest.raises(ValueError, match="impl='triton' needs a cell with Triton kernels"):
        Recurrent("gru", 3, 4, impl="triton")
    layer = Recurrent("janet", 3, 4, impl="triton").to(DEVICE, torch.bfloat16)
    with pytest.raises(SeqlabError, match="float32/float64"):
        layer(torch.randn(2, 1, 3, dtype=torch.bfloat16, device=DEVICE))


def test_kernels_that_fail_on_the_device_fall_back_with_one_line_notice(monkeypatch, caplog):
    # A GPU whose Triton cannot compile a kernel: the first use tries once, logs one line, and
    # impl="auto" runs the reference loop there; impl="triton" says why it cannot run.
    def broken(*args, **kwargs):
        raise RuntimeError("PTX compile failed\nsecond line")

    monkeypatch.setattr(gpu, "_forward", broken)
    monkeypatch.setattr(gpu, "_WORKS", {})
    with caplog.at_level("WARNING", logger="seqlab.kernels"):
        assert not gpu.works(CELLS["cifg"], torch.float32, DEVICE)
        assert not gpu.works(CELLS["cifg"], torch.float32, DEVICE)  # tried once
    notices = [r.getMessage() for r in caplog.records if "Triton kernels for CIFGCell" in r.getMessage()]
    assert len(notices) == 1 and "PTX compile failed" in notices[0] and "second line" not in notices[0]
    layer = Recurrent("cifg", 3, 4, impl="triton").to(DEVICE)
    with pytest.raises(SeqlabError, match="failed on this device"):
        layer(torch.randn(2, 1, 3, device=DEVICE))
    if DEVICE.type == "cuda":
        out, _ = Recurrent("cifg", 3, 4).to(DEVICE)(torch.randn(2, 1, 3, device=DEVICE))
        assert out.shape == (2, 1, 4)


def test_graph_cache_runs_a_first_seen_shape_directly():
    # A shape met once runs its launches directly (no recording, nothing cached); only a
    # repeated key is recorded (on CUDA, where test_repeated_calls_take_each_calls_inputs covers it).
    cache = gpu._GraphCache(size=2, remember=2)
    calls = []

    def fn(a):
        calls.append(a)
        return a * 2

    x = torch.ones(3)
    for k in range(3):
        torch.testing.assert_close(cache.run(("k", k), fn, [x]), x * 2)
    assert len(calls) == 3 and not cache.entries
    assert list(cache.seen) == [("k", 1), ("k", 2)]  # the oldest forgotten
