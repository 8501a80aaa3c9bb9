"""The recurrences on CUDA: autograd glue around the Triton kernels (``triton_cells.py``).

A run of one layer and direction is one custom autograd Function,
:class:`_GpuRecurrence`, whose input is the cell's projected sequence
``xp = cell.project(x)``: the projection (one GEMM over all steps, and the
LayerNorm and bias where the cell has them) stays under torch's autograd,
which also gives its weight gradients as one GEMM each.  The Function runs
the time loop in Triton launches, backward through time by hand, and the
recurrent weight gradients as one GEMM over all steps.

The gated cells take one launch per step each way.  On CUDA the launches of
a whole loop are recorded into a CUDA graph the second time its shape comes
and replayed from then on (``SEQLAB_CUDA_GRAPHS=0`` turns that off): a
step's kernel runs for a few microseconds, and launching it from Python took
about 30 us on the H200 machine (docs/results/cells_gpu_profile.txt).

Triton is optional: without it (or on a GPU it cannot compile for) the
layers run the PyTorch reference loop.  With ``TRITON_INTERPRET=1`` the same
kernels run on CPU tensors through Triton's interpreter, which is how the CPU
test suite checks them against the reference.
"""

from __future__ import annotations

import functools
import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from types import ModuleType

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..cells import (CIFGCell, JANETCell, LayerNormLSTMCell, LSTMCell, NestedLSTMCell, PeepholeLSTMCell,
                     RecurrentCell, SRUCell)
from . import functions
from .build import _one_line

__all__ = ["load", "usable", "supports", "works", "run_cell", "graphs_enabled", "GRAPHS_ENV"]

GRAPHS_ENV = "SEQLAB_CUDA_GRAPHS"
_log = logging.getLogger("seqlab.kernels")

BB, BK = 16, 32  # batch rows and reduction depth of a gated-cell tile (tl.dot needs >= 16)
ELEMENTS = 128  # (b, j) elements per program of the elementwise kernels


def interpreting() -> bool:
    """True under ``TRITON_INTERPRET=1``: the kernels run on CPU tensors through Triton's interpreter."""
    return os.environ.get("TRITON_INTERPRET", "") == "1"


@functools.cache
def load() -> ModuleType | None:
    """The Triton kernel module, or ``None`` (one notice) when Triton cannot be imported."""
    try:
        from . import triton_cells
    except Exception as err:  # ImportError, or a Triton that fails to initialise
        _log.warning(f"seqlab: Triton kernels unavailable ({type(err).__name__}: {err}); using the reference loop")
        return None
    return triton_cells


def usable(x: Tensor) -> bool:
    """Whether the Triton kernels can run on ``x``: float32/64, non-empty, on CUDA (any device when interpreting)."""
    on_device = x.is_cuda or interpreting()
    return on_device and x.dtype in (torch.float32, torch.float64) and x.numel() > 0 and load() is not None


_WORKS: dict[tuple, bool] = {}


def works(cls: type[RecurrentCell], dtype: torch.dtype, device: torch.device) -> bool:
    """Whether ``cls``'s kernels compile and run here, tried once per cell class, dtype and device.

    A tiny forward and backward runs on first use (the compile it costs is needed anyway), outside
    inference mode even where the first use is in it (autograd refuses inference tensors);
    if Triton cannot build or run them (an old GPU, a dtype its compiler refuses) one line goes
    to the ``seqlab.kernels`` logger and the caller runs the reference loop instead of failing.
    """
    key = (cls, dtype, device.type, device.index)
    if key not in _WORKS:
        try:
            with torch.random.fork_rng(devices=[]), torch.inference_mode(False), torch.enable_grad():
                cell = cls(16, 16).to(device=device, dtype=dtype)
                x = torch.linspace(-1, 1, 2 * 2 * 16, device=device, dtype=dtype).view(2, 2, 16).requires_grad_()
                state = cell.init_state(2, x)
                out, final = run_cell(cell, x, state, None, False)
                (out.sum() + sum(f.sum() for f in final)).backward()
            _WORKS[key] = True
        except Exception as err:  # compile or launch failure: fall back, never crash
            _log.warning(f"seqlab: Triton kernels for {cls.__name__} ({dtype}) failed on {device} "
                         f"({_one_line(err)}); using the reference loop")
            _WORKS[key] = False
    return _WORKS[key]


def graphs_enabled() -> bool:
    """Whether CUDA inputs replay recorded graphs (``SEQLAB_CUDA_GRAPHS``, default on)."""
    return os.environ.get(GRAPHS_ENV, "1").strip() not in ("0", "")


def _graphs(x: Tensor, kind: str) -> bool:
    # SRU's loop is one launch each way: a graph would only add its copies.
    return x.is_cuda and kind != "sru" and graphs_enabled()


# --------------------------------------------------------------------------- specs

# (kernel name, recurrent parameters, scalar options); the projection is the cell's own.
Spec = tuple[str, list[Tensor], list[float]]


def _recurrent_part(cell: RecurrentCell) -> Spec:
    """The compiled kernels' spec without its input projection: the same recurrent parameters."""
    kind, _, params, options = functions._SPECS[type(cell)](cell)
    return kind, params, options


_SPECS: dict[type[RecurrentCell], Callable[[RecurrentCell], Spec]] = {
    LSTMCell: _recurrent_part,  # the peephole kernel with p = 0
    PeepholeLSTMCell: _recurrent_part,
    CIFGCell: _recurrent_part,
    JANETCell: _recurrent_part,
    LayerNormLSTMCell: lambda c: (
        "ln_lstm", [c.weight_hh, c.norm_hh.weight, c.norm_c.weight, c.norm_c.bias], [c.norm_hh.eps, c.norm_c.eps]),
    SRUCell: lambda c: ("sru", [c.weight_c, c.bias], [1.0 if c.activation == "tanh" else 0.0]),
    NestedLSTMCell: lambda c: (
        "nested_lstm", [c.weight_hh, torch.cat([c.inner_weight_ih, c.inner_weight_hh], dim=1), c.inner_bias], []),
}


def supports(cell: RecurrentCell | type[RecurrentCell]) -> bool:
    """Whether a cell (or cell class) has Triton kernels."""
    return (cell if isinstance(cell, type) else type(cell)) in _SPECS


# --------------------------------------------------------------------------- the time loop


class _Steps:
    """Processing order and state slots: a (T + 1, B, H) state buffer holds the state entering time t
    at slot ``s_in(t)``; forward runs t = 0..T-1 (slots t -> t + 1), reverse t = T-1..0 (slots t + 1 -> t)."""

    def __init__(self, T: int, reverse: bool):
        self.T, self.reverse = T, reverse
        self.order = list(range(T - 1, -1, -1)) if reverse else list(range(T))

    def s_in(self, t: int) -> int:
        return t + 1 if self.reverse else t

    def s_out(self, t: int) -> int:
        return t if self.reverse else t + 1

    @property
    def first(self) -> int:
        return self.T if self.reverse else 0

    @property
    def last(self) -> int:
        return 0 if self.reverse else self.T

    def entering(self, buffer: Tensor) -> Tensor:
        """The (T, B, H) states entering each step, by time."""
        return buffer[1:] if self.reverse else buffer[:-1]


def _state_buffer(init: Tensor, st: _Steps) -> Tensor:
    buffer = init.new_empty(st.T + 1, *init.shape)
    buffer[st.first].copy_(init)
    return buffer


# Tile widths of the gated cells' step kernels, (units, reduction depth), by (B, H); TILES, when set,
# overrides them (benchmarks/gpu_sweep.py sweeps it).
TILES: tuple[int, int] | None = None


def _tile(B: int, H: int) -> tuple[int, int]:
    """Units per gated-cell tile: 32, or 16 where that leaves under 64 tiles to spread over the GPU;
    and the depth of each ``tl.dot`` over the hidden units."""
    if TILES is not None:
        return TILES
    BH = 32 if _cdiv(B, BB) * _cdiv(H, 32) >= 64 else 16
    return BH, BK


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _mm(a: Tensor, w: Tensor, c: Tensor, accumulate: bool = False) -> None:
    """``c = a w`` (``+=`` with ``accumulate``) for a step's few rows, on contiguous 2-D tensors."""
    (M, K), N = a.shape, w.shape[1]
    BH = 32 if _cdiv(M, BB) * _cdiv(N, 32) >= 64 else 16
    load().step_mm[(_cdiv(M, BB), _cdiv(N, BH))](a, w, c, M, K, N, ACC=accumulate, BB=BB, BH=BH, BK=BK)


def _pow2(n: int) -> int:
    return 1 << max(4, (n - 1).bit_length())


_ACTS = {"peephole": 5, "cifg": 4, "janet": 3}


def _forward(kind: str, xp: Tensor, state: list[Tensor], params: list[Tensor], lens: Tensor, st: _Steps,
             options: list[float], train: bool) -> tuple[Tensor, list[Tensor], dict[str, Tensor]]:
    """Run the loop; returns the output, the (T + 1, B, H) state buffers and what backward needs."""
    tk = load()
    T, B, G = xp.shape
    H = state[0].shape[1]
    # SRU keeps its state in registers: (T + 1) slots only for the final one.
    S = [_state_buffer(s, st) if kind != "sru" else s.new_empty(1, B, H).expand(st.T + 1, B, H) for s in state]
    out = xp.new_empty(T, B, H)
    saved: dict[str, Tensor] = {}
    if kind in _ACTS:
        ut = params[0].t().contiguous()  # (H, G): a tile reads its gates' columns contiguously
        acts = xp.new_empty(T if train else 1, B, _ACTS[kind] * H)
        BH, BKH = _tile(B, H)
        grid = (_cdiv(B, BB), _cdiv(H, BH))
        beta = xp.new_full((1,), options[0]) if kind == "janet" else None  # in xp's precision, not a float32 scalar
        # The kernel and its fixed arguments are chosen once; a step passes only its time and slots.
        fixed = dict(B=B, H=H, TRAIN=train, BB=BB, BH=BH, BK=BKH)
        if kind == "peephole":
            step = functools.partial(tk.peephole_fwd[grid], xp, ut, params[1], S[0], S[1], out, acts, lens, **fixed)
        elif kind == "cifg":
            step = functools.partial(tk.cifg_fwd[grid], xp, ut, S[0], S[1], out, acts, lens, **fixed)
        else:
            step = functools.partial(tk.janet_fwd[grid], xp, ut, S[0], out, acts, lens, beta=beta, **fixed)
        for t in st.order:
            step(t=t, s_in=st.s_in(t), s_out=st.s_out(t))
        saved["acts"] = acts
    elif kind == "sru":
        final_h, final_c = S[0][st.last], S[1][st.last]
        cs = xp.new_empty(T if train else 1, B, H)
        tk.sru_fwd[(_cdiv(B * H, ELEMENTS),)](
            xp, params[0], params[1], state[0], state[1], out, final_h, final_c, cs, lens, T, B, H,
            REVERSE=st.reverse, TANH=options[0] > 0, TRAIN=train, BLOCK=ELEMENTS)
        saved["cs"] = cs
    elif kind == "ln_lstm":
        U, gh, gc, bc = params
        ut = U.t().contiguous()
        r = xp.new_empty(B, G)
        acts = xp.new_empty(T if train else 1, B, 10 * H)
        rstd = xp.new_empty(T if train else 1, B, 2)
        for t in st.order:
            _mm(S[0][st.s_in(t)], ut, r)
            tk.ln_lstm_fwd[(B,)](xp, r, gh, gc, bc, S[0], S[1], out, acts, rstd, lens, t, st.s_in(t), st.s_out(t),
                                 B, H, options[0], options[1], TRAIN=train, BLOCK=_pow2(H))
        saved.update(acts=acts, rstd=rstd)
    elif kind == "nested_lstm":
        U, W, bias = params
        ut, wt = U.t().contiguous(), W.t().contiguous()
        r, ri = xp.new_empty(B, G), xp.new_empty(B, G)
        z = xp.new_empty(T if train else 1, B, 2 * H)
        acts = xp.new_empty(T if train else 1, B, 10 * H)
        grid = (_cdiv(B * H, ELEMENTS),)
        for t in st.order:
            ta = t if train else 0
            _mm(S[0][st.s_in(t)], ut, r)
            tk.nested_outer_fwd[grid](xp, r, S[1], z, acts, t, ta, st.s_in(t), B, H, BLOCK=ELEMENTS)
            _mm(z[ta], wt, ri)
            tk.nested_inner_fwd[grid](ri, bias, S[0], S[1], S[2], out, acts, lens, t, ta, st.s_in(t), st.s_out(t),
                                      B, H, TRAIN=train, BLOCK=ELEMENTS)
        saved.update(z=z, acts=acts)
    else:
        raise ValueError(f"no Triton kernel for {kind!r}")
    return out, S, saved


def _backward(kind: str, dout: Tensor, dfinal: list[Tensor], S: list[Tensor], saved: dict[str, Tensor],
              xp: Tensor, params: list[Tensor], lens: Tensor, st: _Steps, options: list[float]):
    """-> (dxp, [d initial state], [d params])."""
    tk = load()
    T, B, G = xp.shape
    H = dout.shape[2]
    back = st.order[::-1]  # processing order of backward
    dxp = xp.new_empty(T, B, G)
    if kind == "sru":
        dh0, dc0 = dout.new_empty(B, H), dout.new_empty(B, H)
        dvb = dout.new_empty(4, B, H)
        tk.sru_bwd[(_cdiv(B * H, ELEMENTS),)](
            xp, params[0], params[1], saved["cs"], dout, dfinal[0], dfinal[1], dxp, dh0, dc0, dvb, lens, T, B, H,
            REVERSE=st.reverse, TANH=options[0] > 0, BLOCK=ELEMENTS)
        sums = dvb.sum(1)  # (4, H): dv_f, dv_r, db_f, db_r
        return dxp, [dh0, dc0], [sums[:2].reshape(-1), sums[2:].reshape(-1)]
    U = params[0]
    dstate = [d.clone() for d in dfinal]
    H_in = st.entering(S[0]).reshape(T * B, H)
    if kind in _ACTS:
        BH, BKH = _tile(B, H)
        grid = (_cdiv(B, BB), _cdiv(H, BH))
        dp = dout.new_zeros(3, B, H) if kind == "peephole" else None
        fixed = dict(B=B, H=H, BB=BB, BH=BH, BK=BKH)
        if kind == "peephole":
            step = functools.partial(tk.peephole_bwd[grid], dxp, U, params[1], S[1], saved["acts"], dout, dstate[0],
                                     dstate[1], dp, lens, **fixed)
        elif kind == "cifg":
            step = functools.partial(tk.cifg_bwd[grid], dxp, U, S[1], saved["acts"], dout, dstate[0], dstate[1], lens,
                                     **fixed)
        else:
            step = functools.partial(tk.janet_bwd[grid], dxp, U, S[0], saved["acts"], dout, dstate[0], lens, **fixed)
        for k, t in enumerate(back):
            step(t=t, t_prev=back[k - 1] if k else 0, s_in=st.s_in(t), HAS_PREV=k > 0)
        _mm(dxp[back[-1]], U, dstate[0], accumulate=True)  # what the last step's dA adds to dh_0
        dU = dxp.view(T * B, G).t().mm(H_in)
        extra = [dp.sum(1)] if kind == "peephole" else []
        return dxp, dstate, [dU, *extra]
    if kind == "ln_lstm":
        _, gh, gc, _ = params
        dr = dout.new_empty(T, B, G)
        dsum = dout.new_zeros(B, 6 * H)
        for t in back:
            tk.ln_lstm_bwd[(B,)](dxp, dr, gh, gc, S[1], saved["acts"], saved["rstd"], dout, dstate[0], dstate[1],
                                 dsum, lens, t, st.s_in(t), B, H, BLOCK=_pow2(H))
            _mm(dr[t], U, dstate[0], accumulate=True)
        dU = dr.view(T * B, G).t().mm(H_in)
        sums = dsum.sum(0)
        return dxp, dstate, [dU, sums[:G], sums[G : G + H], sums[G + H :]]
    # nested_lstm
    _, W, _ = params
    dai = dout.new_empty(T, B, G)
    dao, dz = dout.new_empty(B, H), dout.new_empty(B, 2 * H)
    grid = (_cdiv(B * H, ELEMENTS),)
    for t in back:
        tk.nested_inner_bwd[grid](dai, dao, saved["acts"], S[2], dout, dstate[0], dstate[1], dstate[2], lens, t,
                                  st.s_in(t), B, H, BLOCK=ELEMENTS)
        _mm(dai[t], W, dz)
        tk.nested_outer_bwd[grid](dxp, dao, dz, saved["acts"], S[1], dstate[1], lens, t, st.s_in(t), B, H,
                                  BLOCK=ELEMENTS)
        _mm(dxp[t], U, dstate[0], accumulate=True)
    dU = dxp.view(T * B, G).t().mm(H_in)
    dW = dai.view(T * B, G).t().mm(saved["z"].view(T * B, 2 * H))
    return dxp, dstate, [dU, dW, dai.sum((0, 1))]


# --------------------------------------------------------------------------- CUDA graphs


class _GraphCache:
    """Recorded loops by key (kind, shapes, dtype, device, direction, pass), least recently used out.

    A loop is recorded the second time its key comes: a batch shape seen once (variable-length
    training draws many) runs its launches directly instead of paying for a recording.
    """

    def __init__(self, size: int = 64, remember: int = 4096):
        self.size, self.remember = size, remember
        self.entries: OrderedDict[tuple, tuple[torch.cuda.CUDAGraph, list[Tensor], object]] = OrderedDict()
        self.seen: OrderedDict[tuple, None] = OrderedDict()  # keys met once, not recorded

    def run(self, key: tuple, fn: Callable[..., object], inputs: list[Tensor]) -> object:
        """``fn(*inputs)``, replayed from a graph recorded on static copies of ``inputs`` once
        ``key`` has come before.

        A replay's result (tensors, or lists and dicts of them) is cloned out of the graph's
        memory, so later replays do not overwrite what the caller keeps.
        """
        entry = self.entries.get(key)
        if entry is None:
            if key not in self.seen:
                self.seen[key] = None
                while len(self.seen) > self.remember:
                    self.seen.popitem(last=False)
                return fn(*inputs)
            del self.seen[key]
            # Ordinary tensors even in inference mode: every later call copies its inputs into
            # them, which an inference tensor refuses outside inference mode.
            with torch.inference_mode(False), torch.no_grad():
                static = [x.clone() for x in inputs]
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                fn(*static)  # warms the allocator outside the recording
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                result = fn(*static)
            entry = (graph, static, result)
            self.entries[key] = entry
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)
        else:
            self.entries.move_to_end(key)
        graph, static, result = entry
        for dst, src in zip(static, inputs):
            dst.copy_(src)
        graph.replay()
        return _clone(result)


def _clone(obj):
    if isinstance(obj, Tensor):
        return obj.clone()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_clone(v) for v in obj)
    return obj


_GRAPHS = _GraphCache()


def _key(*parts) -> tuple:
    parts = (*parts, TILES)
    return tuple((tuple(p.shape), p.dtype, str(p.device)) if isinstance(p, Tensor) else p for p in parts)


# --------------------------------------------------------------------------- autograd


class _GpuRecurrence(torch.autograd.Function):
    """``(xp, state_0, params) -> (output (T, B, H), *state_T)`` through the Triton loop."""

    @staticmethod
    def forward(ctx, kind, options, reverse, num_states, lens, xp, *rest):
        state, params = [s.contiguous() for s in rest[:num_states]], [p.contiguous() for p in rest[num_states:]]
        st = _Steps(xp.shape[0], reverse)
        xp = xp.contiguous()

        def run(xp, lens, *tensors):
            return _forward(kind, xp, list(tensors[:num_states]), list(tensors[num_states:]), lens, st, options, True)

        inputs = [xp, lens, *state, *params]
        if _graphs(xp, kind):
            out, S, saved = _GRAPHS.run(_key("fwd", kind, reverse, *inputs, *options), run, inputs)
        else:
            out, S, saved = run(*inputs)
        ctx.meta = (kind, options, st, num_states, list(saved))
        ctx.save_for_backward(lens, xp, *params, *S, *saved.values())
        return (out, *(s[st.last] for s in S))

    @staticmethod
    @once_differentiable
    def backward(ctx, dout, *dfinal):
        kind, options, st, num_states, names = ctx.meta
        lens, xp, *rest = ctx.saved_tensors
        num_params = len(rest) - num_states - len(names)
        params, S = list(rest[:num_params]), list(rest[num_params : num_params + num_states])
        saved = dict(zip(names, rest[num_params + num_states :]))
        dout, dfinal = dout.contiguous(), [d.contiguous() for d in dfinal]

        def run(dout, lens, xp, *tensors):
            dfin, S_, rest_ = tensors[:num_states], tensors[num_states : 2 * num_states], tensors[2 * num_states :]
            params_, saved_ = list(rest_[:num_params]), dict(zip(names, rest_[num_params:]))
            return _backward(kind, dout, list(dfin), list(S_), saved_, xp, params_, lens, st, options)

        inputs = [dout, lens, xp, *dfinal, *S, *params, *saved.values()]
        if _graphs(xp, kind):
            dxp, dstate, dparams = _GRAPHS.run(_key("bwd", kind, st.reverse, *inputs, *options), run, inputs)
        else:
            dxp, dstate, dparams = run(*inputs)
        return (None,) * 5 + (dxp, *dstate, *dparams)


@functools.lru_cache(maxsize=64)
def _full_lengths(T: int, B: int, device: torch.device) -> Tensor:
    """``(B,)`` lengths ``T`` (int32), made once per shape: a launch saved per call (never written to).
    Made outside inference mode, as ``recurrent._full_lengths`` is: autograd saves it."""
    with torch.inference_mode(False):
        return torch.full((B,), T, dtype=torch.int32, device=device)


def run_cell(cell: RecurrentCell, x: Tensor, state: tuple[Tensor, ...] | None, lengths: Tensor | None,
             reverse: bool) -> tuple[Tensor, tuple[Tensor, ...]]:
    """One layer and direction on the Triton kernels; the contract of ``Recurrent._run_direction``.

    ``x (T, B, I)``, ``state`` of ``(B, H)`` or ``None`` for zeros, ``lengths (B,)`` or ``None`` for all ``T``.
    """
    kind, params, options = _SPECS[type(cell)](cell)
    T, B = x.shape[:2]
    if state is None:
        state = cell.init_state(B, x)
    if lengths is None:
        lens = _full_lengths(T, B, x.device)
    else:
        lens = lengths.to(device=x.device, dtype=torch.int32)
    xp = cell.project(x)
    n = len(state)
    tensors = (xp, *state, *params)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        result = _GpuRecurrence.apply(kind, options, reverse, n, lens, *tensors)
        return result[0], tuple(result[1:])
    st = _Steps(T, reverse)
    with torch.no_grad():
        inputs = [xp.contiguous(), lens, *(s.contiguous() for s in state), *(p.contiguous() for p in params)]

        def run(xp, lens, *tensors):
            out, S, _ = _forward(kind, xp, list(tensors[:n]), list(tensors[n:]), lens, st, options, False)
            return out, [s[st.last] for s in S]

        if _graphs(xp, kind):
            out, finals = _GRAPHS.run(_key("infer", kind, reverse, *inputs, *options), run, inputs)
        else:
            out, finals = run(*inputs)
    return out, tuple(finals)
