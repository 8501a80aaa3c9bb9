"""Triton kernels of the recurrences on the GPU (glue and autograd: ``gpu.py``).

The plan is recurrence.cpp's (Appleyard, Kocisky & Blunsom 2016, sec. 3),
cut along the GPU's grain:

* the gated cells (peephole/plain LSTM, CIFG, JANET) take one launch per
  step, over tiles of ``BB`` batch rows by ``BH`` units: each tile computes
  its slice of every gate's recurrent GEMM ``h_{t-1} Uᵀ`` with ``tl.dot``
  and does the gate math on it in registers, so the gate pre-activations
  never go to memory.  Backward is the same shape: a tile computes its slice
  of ``dh_{t-1} = dA_{t+1} U`` and the gate derivatives ``dA_t`` from it.
* SRU has no recurrent GEMM: each element ``(b, j)`` of its state runs
  through all ``T`` steps in one launch, forward and backward.
* the layer-normalized LSTM normalizes whole rows of ``h Uᵀ`` (``4H``) and
  of ``c`` (``H``), so one program takes one batch row; its recurrent GEMM is
  a launch of its own per step (``step_mm``).
* the Nested LSTM runs two GEMMs per step (outer, then inner) as ``step_mm``
  launches, with one elementwise launch after each.

Buffers follow recurrence.cpp: indexed by time ``t`` (not by processing
order).  States live in ``(T + 1, B, H)`` buffers, slot ``s_in`` holding the
state entering the step and ``s_out`` the state it leaves.  A step at
``t >= length[b]`` carries row ``b``'s state through unchanged and outputs 0.
All pointers are row-major and contiguous; row offsets are int64.  The step
and slot numbers are not specialized on: Triton would otherwise compile a
kernel again for t = 1 and for t divisible by 16.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _tanh(x):
    return 2.0 * _sigmoid(2.0 * x) - 1.0


@triton.jit
def _tile(B, H, BB: tl.constexpr, BH: tl.constexpr):
    """This program's batch rows (int64) and units, and the mask of those inside (B, H)."""
    rows = (tl.program_id(0) * BB + tl.arange(0, BB)).to(tl.int64)
    cols = tl.program_id(1) * BH + tl.arange(0, BH)
    return rows, cols, (rows[:, None] < B) & (cols[None, :] < H)


@triton.jit
def _active(lens, rows, B, t):
    """(BB, 1): whether step t lies inside each row's sequence."""
    return (t < tl.load(lens + rows, mask=rows < B, other=0))[:, None]


@triton.jit
def _leave_step(hs, cs, out, lens, t, s_out, B, H, rows, cols, m, h, c, h_prev, c_prev):
    """Store the (h, c) state leaving step t (the entering one where t is past a row's length)
    and the output (0 there)."""
    active = _active(lens, rows, B, t)
    there = (s_out * B + rows[:, None]) * H + cols[None, :]
    tl.store(hs + there, tl.where(active, h, h_prev), mask=m)
    tl.store(cs + there, tl.where(active, c, c_prev), mask=m)
    tl.store(out + (t * B + rows[:, None]) * H + cols[None, :], tl.where(active, h, 0.0), mask=m)


@triton.jit
def _tile_gemm(a_ptr, lda, w_ptr, ldw, w_col0, rows, cols, M, K, N,
               BB: tl.constexpr, BH: tl.constexpr, BK: tl.constexpr):
    """``sum_k a[rows, k] w[k, w_col0 + cols]`` over ``k < K``: a (M, lda), w (K, ldw), cols < N."""
    acc = tl.zeros((BB, BH), dtype=a_ptr.dtype.element_ty)
    for k0 in range(0, K, BK):
        ks = k0 + tl.arange(0, BK)
        a = tl.load(a_ptr + rows[:, None] * lda + ks[None, :], mask=(rows[:, None] < M) & (ks[None, :] < K), other=0.0)
        w = tl.load(w_ptr + ks[:, None] * ldw + w_col0 + cols[None, :],
                    mask=(ks[:, None] < K) & (cols[None, :] < N), other=0.0)
        acc += tl.dot(a, w, input_precision="ieee")
    return acc


@triton.jit
def _gates_gemm(a_ptr, w_ptr, G, rows, cols, B, H, NG: tl.constexpr,
                BB: tl.constexpr, BH: tl.constexpr, BK: tl.constexpr):
    """``a (B, H)`` times columns ``q H + cols`` of ``w (H, G)`` for the ``NG`` gates q at once,
    so that each piece of ``a`` is loaded once for all of them; unused accumulators stay 0."""
    acc0 = tl.zeros((BB, BH), dtype=a_ptr.dtype.element_ty)
    acc1 = tl.zeros((BB, BH), dtype=a_ptr.dtype.element_ty)
    acc2 = tl.zeros((BB, BH), dtype=a_ptr.dtype.element_ty)
    acc3 = tl.zeros((BB, BH), dtype=a_ptr.dtype.element_ty)
    for k0 in range(0, H, BK):
        ks = k0 + tl.arange(0, BK)
        a = tl.load(a_ptr + rows[:, None] * H + ks[None, :], mask=(rows[:, None] < B) & (ks[None, :] < H), other=0.0)
        wp = w_ptr + ks[:, None] * G + cols[None, :]
        wm = (ks[:, None] < H) & (cols[None, :] < H)
        acc0 += tl.dot(a, tl.load(wp, mask=wm, other=0.0), input_precision="ieee")
        if NG > 1:
            acc1 += tl.dot(a, tl.load(wp + H, mask=wm, other=0.0), input_precision="ieee")
        if NG > 2:
            acc2 += tl.dot(a, tl.load(wp + 2 * H, mask=wm, other=0.0), input_precision="ieee")
        if NG > 3:
            acc3 += tl.dot(a, tl.load(wp + 3 * H, mask=wm, other=0.0), input_precision="ieee")
    return acc0, acc1, acc2, acc3


@triton.jit
def step_mm(a, w, c, M, K, N, ACC: tl.constexpr, BB: tl.constexpr, BH: tl.constexpr, BK: tl.constexpr):
    """``c (M, N) = a (M, K) w (K, N)``, or ``+=`` with ``ACC``: the per-step GEMM of the cells whose
    gate math needs whole rows.  cuBLAS runs these few-row products as one long K loop in one
    thread block (about 20-50 us each on an H200, measured); tiles over rows and columns take a few."""
    rows = (tl.program_id(0) * BB + tl.arange(0, BB)).to(tl.int64)
    cols = tl.program_id(1) * BH + tl.arange(0, BH)
    acc = _tile_gemm(a, K, w, N, 0, rows, cols, M, K, N, BB, BH, BK)
    m = (rows[:, None] < M) & (cols[None, :] < N)
    p = c + rows[:, None] * N + cols[None, :]
    if ACC:
        acc += tl.load(p, mask=m, other=0.0)
    tl.store(p, acc, mask=m)


# ---------------------------------------------------------------------------
# Peephole LSTM; the plain LSTM is p = 0.  Gates i, f, g, o; p (3, H) rows p_i, p_f, p_o.
# acts (T, B, 5H) = i, f, g, o, tanh(c_t).  dp (3, B, H): per-element sums over t.
# ---------------------------------------------------------------------------


@triton.jit(do_not_specialize=["t", "s_in", "s_out"])
def peephole_fwd(xp, ut, p, hs, cs, out, acts, lens, t, s_in, s_out, B, H,
                 TRAIN: tl.constexpr, BB: tl.constexpr, BH: tl.constexpr, BK: tl.constexpr):
    rows, cols, m = _tile(B, H, BB, BH)
    G = 4 * H
    h_in = hs + s_in * B * H
    x = xp + (t * B + rows[:, None]) * G + cols[None, :]
    r_i, r_f, r_g, r_o = _gates_gemm(h_in, ut, G, rows, cols, B, H, 4, BB, BH, BK)
    a_i = tl.load(x, mask=m, other=0.0) + r_i
    a_f = tl.load(x + H, mask=m, other=0.0) + r_f
    a_g = tl.load(x + 2 * H, mask=m, other=0.0) + r_g
    a_o = tl.load(x + 3 * H, mask=m, other=0.0) + r_o
    p_i = tl.load(p + cols, mask=cols < H, other=0.0)[None, :]
    p_f = tl.load(p + H + cols, mask=cols < H, other=0.0)[None, :]
    p_o = tl.load(p + 2 * H + cols, mask=cols < H, other=0.0)[None, :]
    here = (s_in * B + rows[:, None]) * H + cols[None, :]
    h_prev = tl.load(hs + here, mask=m, other=0.0)
    c_prev = tl.load(cs + here, mask=m, other=0.0)
    i = _sigmoid(a_i + p_i * c_prev)
    f = _sigmoid(a_f + p_f * c_prev)
    g = _tanh(a_g)
    c = f * c_prev + i * g
    o = _sigmoid(a_o + p_o * c)
    tc = _tanh(c)
    h = o * tc
    _leave_step(hs, cs, out, lens, t, s_out, B, H, rows, cols, m, h, c, h_prev, c_prev)
    if TRAIN:
        a = acts + (t * B + rows[:, None]) * (5 * H) + cols[None, :]
        tl.store(a, i, mask=m)
        tl.store(a + H, f, mask=m)
        tl.store(a + 2 * H, g, mask=m)
        tl.store(a + 3 * H, o, mask=m)
        tl.store(a + 4 * H, tc, mask=m)


@triton.jit(do_not_specialize=["t", "t_prev", "s_in"])
def peephole_bwd(da, u, p, cs, acts, dout, dhc, dcc, dp, lens, t, t_prev, s_in, B, H,
                 HAS_PREV: tl.constexpr, BB: tl.constexpr, BH: tl.constexpr, BK: tl.constexpr):
    rows, cols, m = _tile(B, H, BB, BH)
    G = 4 * H
    own = rows[:, None] * H + cols[None, :]
    dh = tl.load(dhc + own, mask=m, other=0.0)
    if HAS_PREV:  # dh_t += dA_{t'} U, t' the step processed before this one
        dh += _tile_gemm(da + t_prev * B * G, G, u, H, 0, rows, cols, B, G, H, BB, BH, BK)
    dc_in = tl.load(dcc + own, mask=m, other=0.0)
    step = (t * B + rows[:, None]) * H + cols[None, :]
    a = acts + (t * B + rows[:, None]) * (5 * H) + cols[None, :]
    i = tl.load(a, mask=m, other=0.0)
    f = tl.load(a + H, mask=m, other=0.0)
    g = tl.load(a + 2 * H, mask=m, other=0.0)
    o = tl.load(a + 3 * H, mask=m, other=0.0)
    tc = tl.load(a + 4 * H, mask=m, other=0.0)
    c_prev = tl.load(cs + (s_in * B + rows[:, None]) * H + cols[None, :], mask=m, other=0.0)
    p_i = tl.load(p + cols, mask=cols < H, other=0.0)[None, :]
    p_f = tl.load(p + H + cols, mask=cols < H, other=0.0)[None, :]
    p_o = tl.load(p + 2 * H + cols, mask=cols < H, other=0.0)[None, :]
    active = _active(lens, rows, B, t)
    dh_t = dh + tl.load(dout + step, mask=m, other=0.0)
    da_o = dh_t * tc * o * (1.0 - o)
    dc = dc_in + dh_t * o * (1.0 - tc * tc) + da_o * p_o
    da_i = dc * g * i * (1.0 - i)
    da_f = dc * c_prev * f * (1.0 - f)
    da_g = dc * i * (1.0 - g * g)
    d = da + (t * B + rows[:, None]) * G + cols[None, :]
    tl.store(d, tl.where(active, da_i, 0.0), mask=m)
    tl.store(d + H, tl.where(active, da_f, 0.0), mask=m)
    tl.store(d + 2 * H, tl.where(active, da_g, 0.0), mask=m)
    tl.store(d + 3 * H, tl.where(active, da_o, 0.0), mask=m)
    tl.store(dhc + own, tl.where(active, 0.0, dh), mask=m)  # the next launch adds dA_t U
    tl.store(dcc + own, tl.where(active, dc * f + da_i * p_i + da_f * p_f, dc_in), mask=m)
    c = f * c_prev + i * g
    q = dp + rows[:, None] * H + cols[None, :]
    tl.store(q, tl.load(q, mask=m, other=0.0) + tl.where(active, da_i * c_prev, 0.0), mask=m)
    tl.store(q + B * H, tl.load(q + B * H, mask=m, other=0.0) + tl.where(active, da_f * c_prev, 0.0), mask=m)
    tl.store(q + 2 * B * H, tl.load(q + 2 * B * H, mask=m, other=0.0) + tl.where(active, da_o * c, 0.0), mask=m)


# ---------------------------------------------------------------------------
# CIFG: gates i, g, o; c_t = c_{t-1} + i (g - c_{t-1}).  acts (T, B, 4H) = i, g, o, tanh(c_t).
# ---------------------------------------------------------------------------


@triton.jit(do_not_specialize=["t", "s_in", "s_out"])
def cifg_fwd(xp, ut, hs, cs, out, acts, lens, t, s_in, s_out, B, H,
             TRAIN: tl.constexpr, BB: tl.constexpr, BH: tl.constexpr, BK: tl.constexpr):
    rows, cols, m = _tile(B, H, BB, BH)
    G = 3 * H
    h_in = hs + s_in * B * H
    x = xp + (t * B + rows[:, None]) * G + cols[None, :]
    r_i, r_g, r_o, _ = _gates_gemm(h_in, ut, G, rows, cols, B, H, 3, BB, BH, BK)
    a_i = tl.load(x, mask=m, other=0.0) + r_i
    a_g = tl.load(x + H, mask=m, other=0.0) + r_g
    a_o = tl.load(x + 2 * H, mask=m, other=0.0) + r_o
    here = (s_in * B + rows[:, None]) * H + cols[None, :]
    h_prev = tl.load(hs + here, mask=m, other=0.0)
    c_prev = tl.load(cs + here, mask=m, other=0.0)
    i = _sigmoid(a_i)
    g = _tanh(a_g)
    o = _sigmoid(a_o)
    c = c_prev + i * (g - c_prev)
    tc = _tanh(c)
    h = o * tc
    _leave_step(hs, cs, out, lens, t, s_out, B, H, rows, cols, m, h, c, h_prev, c_prev)
    if TRAIN:
        a = acts + (t * B + rows[:, None]) * (4 * H) + cols[None, :]
        tl.store(a, i, mask=m)
        tl.store(a + H, g, mask=m)
        tl.store(a + 2 * H, o, mask=m)
        tl.store(a + 3 * H, tc, mask=m)


@triton.jit(do_not_specialize=["t", "t_prev", "s_in"])
def cifg_bwd(da, u, cs, acts, dout, dhc, dcc, lens, t, t_prev, s_in, B, H,
             HAS_PREV: tl.constexpr, BB: tl.constexpr, BH: tl.constexpr, BK: tl.constexpr):
    rows, cols, m = _tile(B, H, BB, BH)
    G = 3 * H
    own = rows[:, None] * H + cols[None, :]
    dh = tl.load(dhc + own, mask=m, other=0.0)
    if HAS_PREV:
        dh += _tile_gemm(da + t_prev * B * G, G, u, H, 0, rows, cols, B, G, H, BB, BH, BK)
    dc_in = tl.load(dcc + own, mask=m, other=0.0)
    a = acts + (t * B + rows[:, None]) * (4 * H) + cols[None, :]
    i = tl.load(a, mask=m, other=0.0)
    g = tl.load(a + H, mask=m, other=0.0)
    o = tl.load(a + 2 * H, mask=m, other=0.0)
    tc = tl.load(a + 3 * H, mask=m, other=0.0)
    c_prev = tl.load(cs + (s_in * B + rows[:, None]) * H + cols[None, :], mask=m, other=0.0)
    active = _active(lens, rows, B, t)
    dh_t = dh + tl.load(dout + (t * B + rows[:, None]) * H + cols[None, :], mask=m, other=0.0)
    dc = dc_in + dh_t * o * (1.0 - tc * tc)
    d = da + (t * B + rows[:, None]) * G + cols[None, :]
    tl.store(d, tl.where(active, dc * (g - c_prev) * i * (1.0 - i), 0.0), mask=m)
    tl.store(d + H, tl.where(active, dc * i * (1.0 - g * g), 0.0), mask=m)
    tl.store(d + 2 * H, tl.where(active, dh_t * tc * o * (1.0 - o), 0.0), mask=m)
    tl.store(dhc + own, tl.where(active, 0.0, dh), mask=m)
    tl.store(dcc + own, tl.where(active, dc * (1.0 - i), dc_in), mask=m)


# ---------------------------------------------------------------------------
# JANET: gates s, c; h = c_t = σ(s) c_{t-1} + (1 - σ(s - β)) tanh(a_c); β is a 1-element tensor.
# acts (T, B, 3H) = σ(s), σ(s - β), tanh(a_c).
# ---------------------------------------------------------------------------


@triton.jit(do_not_specialize=["t", "s_in", "s_out"])
def janet_fwd(xp, ut, hs, out, acts, lens, t, s_in, s_out, B, H, beta,
              TRAIN: tl.constexpr, BB: tl.constexpr, BH: tl.constexpr, BK: tl.constexpr):
    rows, cols, m = _tile(B, H, BB, BH)
    G = 2 * H
    h_in = hs + s_in * B * H
    x = xp + (t * B + rows[:, None]) * G + cols[None, :]
    r_s, r_c, _, _ = _gates_gemm(h_in, ut, G, rows, cols, B, H, 2, BB, BH, BK)
    a_s = tl.load(x, mask=m, other=0.0) + r_s
    a_c = tl.load(x + H, mask=m, other=0.0) + r_c
    h_prev = tl.load(hs + (s_in * B + rows[:, None]) * H + cols[None, :], mask=m, other=0.0)
    f = _sigmoid(a_s)
    v = _sigmoid(a_s - tl.load(beta))
    g = _tanh(a_c)
    h = f * h_prev + (1.0 - v) * g
    active = _active(lens, rows, B, t)
    tl.store(hs + (s_out * B + rows[:, None]) * H + cols[None, :], tl.where(active, h, h_prev), mask=m)
    tl.store(out + (t * B + rows[:, None]) * H + cols[None, :], tl.where(active, h, 0.0), mask=m)
    if TRAIN:
        a = acts + (t * B + rows[:, None]) * (3 * H) + cols[None, :]
        tl.store(a, f, mask=m)
        tl.store(a + H, v, mask=m)
        tl.store(a + 2 * H, g, mask=m)


@triton.jit(do_not_specialize=["t", "t_prev", "s_in"])
def janet_bwd(da, u, hs, acts, dout, dhc, lens, t, t_prev, s_in, B, H,
              HAS_PREV: tl.constexpr, BB: tl.constexpr, BH: tl.constexpr, BK: tl.constexpr):
    rows, cols, m = _tile(B, H, BB, BH)
    G = 2 * H
    own = rows[:, None] * H + cols[None, :]
    dh = tl.load(dhc + own, mask=m, other=0.0)
    if HAS_PREV:
        dh += _tile_gemm(da + t_prev * B * G, G, u, H, 0, rows, cols, B, G, H, BB, BH, BK)
    a = acts + (t * B + rows[:, None]) * (3 * H) + cols[None, :]
    f = tl.load(a, mask=m, other=0.0)
    v = tl.load(a + H, mask=m, other=0.0)
    g = tl.load(a + 2 * H, mask=m, other=0.0)
    h_prev = tl.load(hs + (s_in * B + rows[:, None]) * H + cols[None, :], mask=m, other=0.0)
    active = _active(lens, rows, B, t)
    dc = dh + tl.load(dout + (t * B + rows[:, None]) * H + cols[None, :], mask=m, other=0.0)
    d = da + (t * B + rows[:, None]) * G + cols[None, :]
    tl.store(d, tl.where(active, dc * h_prev * f * (1.0 - f) - dc * g * v * (1.0 - v), 0.0), mask=m)
    tl.store(d + H, tl.where(active, dc * (1.0 - v) * (1.0 - g * g), 0.0), mask=m)
    tl.store(dhc + own, tl.where(active, dc * f, dh), mask=m)


# ---------------------------------------------------------------------------
# SRU: xp (T, B, 4H) = W x, W_f x, W_r x, highway; v (2H) = v_f, v_r; b (2H) = b_f, b_r.
#   f = σ(a_f + v_f c + b_f)  r = σ(a_r + v_r c + b_r)
#   c_t = wx + f (c_{t-1} - wx)   h_t = hw + r (g(c_t) - hw)
# One program runs BLOCK elements (b, j) through every step.  cs (T, B, H): c entering step t.
# dvb (4, B, H): per-element sums of dv_f, dv_r, db_f, db_r.
# ---------------------------------------------------------------------------


@triton.jit
def sru_fwd(xp, v, bias, h0, c0, out, hT, cT, cs, lens, T, B, H,
            REVERSE: tl.constexpr, TANH: tl.constexpr, TRAIN: tl.constexpr, BLOCK: tl.constexpr):
    e = (tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)).to(tl.int64)
    m = e < B * H
    b = e // H
    j = e % H
    n = tl.load(lens + b, mask=m, other=0)
    v_f = tl.load(v + j, mask=m, other=0.0)
    v_r = tl.load(v + H + j, mask=m, other=0.0)
    b_f = tl.load(bias + j, mask=m, other=0.0)
    b_r = tl.load(bias + H + j, mask=m, other=0.0)
    h = tl.load(h0 + e, mask=m, other=0.0)
    c = tl.load(c0 + e, mask=m, other=0.0)
    for s in range(0, T):
        if REVERSE:
            t = T - 1 - s
        else:
            t = s
        x = xp + (t * B + b) * (4 * H) + j
        wx = tl.load(x, mask=m, other=0.0)
        f = _sigmoid(tl.load(x + H, mask=m, other=0.0) + v_f * c + b_f)
        r = _sigmoid(tl.load(x + 2 * H, mask=m, other=0.0) + v_r * c + b_r)
        hw = tl.load(x + 3 * H, mask=m, other=0.0)
        if TRAIN:
            tl.store(cs + t * B * H + e, c, mask=m)
        c_new = wx + f * (c - wx)
        if TANH:
            g = _tanh(c_new)
        else:
            g = c_new
        h_new = hw + r * (g - hw)
        active = t < n
        tl.store(out + t * B * H + e, tl.where(active, h_new, 0.0), mask=m)
        c = tl.where(active, c_new, c)
        h = tl.where(active, h_new, h)
    tl.store(hT + e, h, mask=m)
    tl.store(cT + e, c, mask=m)


@triton.jit
def sru_bwd(xp, v, bias, cs, dout, dhT, dcT, dxp, dh0, dc0, dvb, lens, T, B, H,
            REVERSE: tl.constexpr, TANH: tl.constexpr, BLOCK: tl.constexpr):
    e = (tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)).to(tl.int64)
    m = e < B * H
    b = e // H
    j = e % H
    n = tl.load(lens + b, mask=m, other=0)
    v_f = tl.load(v + j, mask=m, other=0.0)
    v_r = tl.load(v + H + j, mask=m, other=0.0)
    b_f = tl.load(bias + j, mask=m, other=0.0)
    b_r = tl.load(bias + H + j, mask=m, other=0.0)
    dh = tl.load(dhT + e, mask=m, other=0.0)  # d/d the h state; only the final one is read
    dc = tl.load(dcT + e, mask=m, other=0.0)
    s_vf = tl.zeros((BLOCK,), dtype=dh.dtype)
    s_vr = tl.zeros((BLOCK,), dtype=dh.dtype)
    s_bf = tl.zeros((BLOCK,), dtype=dh.dtype)
    s_br = tl.zeros((BLOCK,), dtype=dh.dtype)
    for s in range(0, T):
        if REVERSE:
            t = s
        else:
            t = T - 1 - s
        x = xp + (t * B + b) * (4 * H) + j
        c_prev = tl.load(cs + t * B * H + e, mask=m, other=0.0)
        wx = tl.load(x, mask=m, other=0.0)
        f = _sigmoid(tl.load(x + H, mask=m, other=0.0) + v_f * c_prev + b_f)
        r = _sigmoid(tl.load(x + 2 * H, mask=m, other=0.0) + v_r * c_prev + b_r)
        hw = tl.load(x + 3 * H, mask=m, other=0.0)
        c = wx + f * (c_prev - wx)
        if TANH:
            g = _tanh(c)
        else:
            g = c
        active = t < n
        dh_t = dh + tl.load(dout + t * B * H + e, mask=m, other=0.0)
        dr = dh_t * (g - hw) * r * (1.0 - r)
        if TANH:
            dcn = dc + dh_t * r * (1.0 - g * g)
        else:
            dcn = dc + dh_t * r
        df = dcn * (c_prev - wx) * f * (1.0 - f)
        d = dxp + (t * B + b) * (4 * H) + j
        tl.store(d, tl.where(active, dcn * (1.0 - f), 0.0), mask=m)
        tl.store(d + H, tl.where(active, df, 0.0), mask=m)
        tl.store(d + 2 * H, tl.where(active, dr, 0.0), mask=m)
        tl.store(d + 3 * H, tl.where(active, dh_t * (1.0 - r), 0.0), mask=m)
        s_vf += tl.where(active, df * c_prev, 0.0)
        s_vr += tl.where(active, dr * c_prev, 0.0)
        s_bf += tl.where(active, df, 0.0)
        s_br += tl.where(active, dr, 0.0)
        dc = tl.where(active, dcn * f + df * v_f + dr * v_r, dc)
        dh = tl.where(active, 0.0, dh)
    tl.store(dh0 + e, dh, mask=m)
    tl.store(dc0 + e, dc, mask=m)
    tl.store(dvb + e, s_vf, mask=m)
    tl.store(dvb + B * H + e, s_vr, mask=m)
    tl.store(dvb + 2 * B * H + e, s_bf, mask=m)
    tl.store(dvb + 3 * B * H + e, s_br, mask=m)


# ---------------------------------------------------------------------------
# Layer-normalized LSTM, one program per batch row.  xp = LN(W x) + b comes in
# whole; r = h_{t-1} Uᵀ from cuBLAS.  gh (4H) gain of LN(h Uᵀ); gc, bc (H) of LN(c).
# acts (T, B, 10H) = i, f, g, o, nr (4H: normalized r), nc (normalized c), tanh(gc nc + bc).
# rstd (T, B, 2) = 1/σ of r and of c.  dsum (B, 6H): per-row sums of dgh (4H), dgc, dbc.
# ---------------------------------------------------------------------------


@triton.jit(do_not_specialize=["t", "s_in", "s_out"])
def ln_lstm_fwd(xp, r, gh, gc, bc, hs, cs, out, acts, rstd, lens, t, s_in, s_out, B, H, eps_r, eps_c,
                TRAIN: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    j = tl.arange(0, BLOCK)
    m = j < H
    G = 4 * H
    rr = r + row * G + j
    r_i = tl.load(rr, mask=m, other=0.0)
    r_f = tl.load(rr + H, mask=m, other=0.0)
    r_g = tl.load(rr + 2 * H, mask=m, other=0.0)
    r_o = tl.load(rr + 3 * H, mask=m, other=0.0)
    mean = (tl.sum(r_i) + tl.sum(r_f) + tl.sum(r_g) + tl.sum(r_o)) / G
    d_i = tl.where(m, r_i - mean, 0.0)
    d_f = tl.where(m, r_f - mean, 0.0)
    d_g = tl.where(m, r_g - mean, 0.0)
    d_o = tl.where(m, r_o - mean, 0.0)
    var = (tl.sum(d_i * d_i) + tl.sum(d_f * d_f) + tl.sum(d_g * d_g) + tl.sum(d_o * d_o)) / G
    rs = 1.0 / tl.sqrt(var + eps_r)
    x = xp + (t * B + row) * G + j
    i = _sigmoid(tl.load(x, mask=m, other=0.0) + tl.load(gh + j, mask=m, other=0.0) * d_i * rs)
    f = _sigmoid(tl.load(x + H, mask=m, other=0.0) + tl.load(gh + H + j, mask=m, other=0.0) * d_f * rs)
    g = _tanh(tl.load(x + 2 * H, mask=m, other=0.0) + tl.load(gh + 2 * H + j, mask=m, other=0.0) * d_g * rs)
    o = _sigmoid(tl.load(x + 3 * H, mask=m, other=0.0) + tl.load(gh + 3 * H + j, mask=m, other=0.0) * d_o * rs)
    here = (s_in * B + row) * H + j
    there = (s_out * B + row) * H + j
    h_prev = tl.load(hs + here, mask=m, other=0.0)
    c_prev = tl.load(cs + here, mask=m, other=0.0)
    c = f * c_prev + i * g
    mc = tl.sum(tl.where(m, c, 0.0)) / H
    dcm = tl.where(m, c - mc, 0.0)
    rc = 1.0 / tl.sqrt(tl.sum(dcm * dcm) / H + eps_c)
    nc = dcm * rc
    tl_ = _tanh(tl.load(gc + j, mask=m, other=0.0) * nc + tl.load(bc + j, mask=m, other=0.0))
    h = o * tl_
    active = t < tl.load(lens + row)
    tl.store(hs + there, tl.where(active, h, h_prev), mask=m)
    tl.store(cs + there, tl.where(active, c, c_prev), mask=m)
    tl.store(out + (t * B + row) * H + j, tl.where(active, h, 0.0), mask=m)
    if TRAIN:
        a = acts + (t * B + row) * (10 * H) + j
        tl.store(a, i, mask=m)
        tl.store(a + H, f, mask=m)
        tl.store(a + 2 * H, g, mask=m)
        tl.store(a + 3 * H, o, mask=m)
        tl.store(a + 4 * H, d_i * rs, mask=m)
        tl.store(a + 5 * H, d_f * rs, mask=m)
        tl.store(a + 6 * H, d_g * rs, mask=m)
        tl.store(a + 7 * H, d_o * rs, mask=m)
        tl.store(a + 8 * H, nc, mask=m)
        tl.store(a + 9 * H, tl_, mask=m)
        tl.store(rstd + (t * B + row) * 2, rs)
        tl.store(rstd + (t * B + row) * 2 + 1, rc)


@triton.jit(do_not_specialize=["t", "s_in"])
def ln_lstm_bwd(da, dr, gh, gc, cs, acts, rstd, dout, dhc, dcc, dsum, lens, t, s_in, B, H,
                BLOCK: tl.constexpr):
    """Writes dA_t (d xp) and dR_t (d h_{t-1}Uᵀ); the caller then adds dR_t U to dhc."""
    row = tl.program_id(0).to(tl.int64)
    j = tl.arange(0, BLOCK)
    m = j < H
    G = 4 * H
    a = acts + (t * B + row) * (10 * H) + j
    i = tl.load(a, mask=m, other=0.0)
    f = tl.load(a + H, mask=m, other=0.0)
    g = tl.load(a + 2 * H, mask=m, other=0.0)
    o = tl.load(a + 3 * H, mask=m, other=0.0)
    nc = tl.load(a + 8 * H, mask=m, other=0.0)
    tl_ = tl.load(a + 9 * H, mask=m, other=0.0)
    rs = tl.load(rstd + (t * B + row) * 2)
    rc = tl.load(rstd + (t * B + row) * 2 + 1)
    c_prev = tl.load(cs + (s_in * B + row) * H + j, mask=m, other=0.0)
    dh = tl.load(dhc + row * H + j, mask=m, other=0.0)
    dc_in = tl.load(dcc + row * H + j, mask=m, other=0.0)
    active = t < tl.load(lens + row)
    dh_t = dh + tl.load(dout + (t * B + row) * H + j, mask=m, other=0.0)
    da_o = dh_t * tl_ * o * (1.0 - o)
    dl = dh_t * o * (1.0 - tl_ * tl_)  # d/d (gc nc + bc)
    dn = dl * tl.load(gc + j, mask=m, other=0.0)
    dc = dc_in + rc * (dn - tl.sum(dn) / H - nc * (tl.sum(dn * nc) / H))
    da_i = dc * g * i * (1.0 - i)
    da_f = dc * c_prev * f * (1.0 - f)
    da_g = dc * i * (1.0 - g * g)
    d = da + (t * B + row) * G + j
    tl.store(d, tl.where(active, da_i, 0.0), mask=m)
    tl.store(d + H, tl.where(active, da_f, 0.0), mask=m)
    tl.store(d + 2 * H, tl.where(active, da_g, 0.0), mask=m)
    tl.store(d + 3 * H, tl.where(active, da_o, 0.0), mask=m)
    # LayerNorm of r backward: dr = rstd (dn - mean(dn) - n mean(dn n)) over the 4H row, dn = dA gh.
    n_i = tl.load(a + 4 * H, mask=m, other=0.0)
    n_f = tl.load(a + 5 * H, mask=m, other=0.0)
    n_g = tl.load(a + 6 * H, mask=m, other=0.0)
    n_o = tl.load(a + 7 * H, mask=m, other=0.0)
    e_i = da_i * tl.load(gh + j, mask=m, other=0.0)
    e_f = da_f * tl.load(gh + H + j, mask=m, other=0.0)
    e_g = da_g * tl.load(gh + 2 * H + j, mask=m, other=0.0)
    e_o = da_o * tl.load(gh + 3 * H + j, mask=m, other=0.0)
    me = (tl.sum(e_i) + tl.sum(e_f) + tl.sum(e_g) + tl.sum(e_o)) / G
    men = (tl.sum(e_i * n_i) + tl.sum(e_f * n_f) + tl.sum(e_g * n_g) + tl.sum(e_o * n_o)) / G
    q = dr + (t * B + row) * G + j
    tl.store(q, tl.where(active, rs * (e_i - me - n_i * men), 0.0), mask=m)
    tl.store(q + H, tl.where(active, rs * (e_f - me - n_f * men), 0.0), mask=m)
    tl.store(q + 2 * H, tl.where(active, rs * (e_g - me - n_g * men), 0.0), mask=m)
    tl.store(q + 3 * H, tl.where(active, rs * (e_o - me - n_o * men), 0.0), mask=m)
    tl.store(dhc + row * H + j, tl.where(active, 0.0, dh), mask=m)
    tl.store(dcc + row * H + j, tl.where(active, dc * f, dc_in), mask=m)
    s = dsum + row * (6 * H) + j
    tl.store(s, tl.load(s, mask=m, other=0.0) + tl.where(active, da_i * n_i, 0.0), mask=m)
    tl.store(s + H, tl.load(s + H, mask=m, other=0.0) + tl.where(active, da_f * n_f, 0.0), mask=m)
    tl.store(s + 2 * H, tl.load(s + 2 * H, mask=m, other=0.0) + tl.where(active, da_g * n_g, 0.0), mask=m)
    tl.store(s + 3 * H, tl.load(s + 3 * H, mask=m, other=0.0) + tl.where(active, da_o * n_o, 0.0), mask=m)
    tl.store(s + 4 * H, tl.load(s + 4 * H, mask=m, other=0.0) + tl.where(active, dl * nc, 0.0), mask=m)
    tl.store(s + 5 * H, tl.load(s + 5 * H, mask=m, other=0.0) + tl.where(active, dl, 0.0), mask=m)


# ---------------------------------------------------------------------------
# Nested LSTM, elementwise over (b, j) in two halves per step:
#   outer: a = xp_t + h_{t-1} Uᵀ -> i, f, g, o; z = [i g, f c_{t-1}]  (B, 2H), the inner cell's input and state
#   inner: ã = z [W̃ Ũ]ᵀ + b̃ -> ĩ, f̃, g̃, õ; c̃_t = f̃ c̃_{t-1} + ĩ g̃; c_t = õ tanh(c̃_t); h_t = o tanh(c_t)
# acts (T, B, 10H) = i, f, g, o, ĩ, f̃, g̃, õ, tanh(c̃_t), tanh(c_t).
# ---------------------------------------------------------------------------


@triton.jit(do_not_specialize=["t", "ta", "s_in"])
def nested_outer_fwd(xp, r, cs, z, acts, t, ta, s_in, B, H, BLOCK: tl.constexpr):
    """``ta`` is the slot of z and acts: t when training, else 0 (one step's worth is kept)."""
    e = (tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)).to(tl.int64)
    m = e < B * H
    b = e // H
    j = e % H
    G = 4 * H
    x = xp + (t * B + b) * G + j
    rr = r + b * G + j
    i = _sigmoid(tl.load(x, mask=m, other=0.0) + tl.load(rr, mask=m, other=0.0))
    f = _sigmoid(tl.load(x + H, mask=m, other=0.0) + tl.load(rr + H, mask=m, other=0.0))
    g = _tanh(tl.load(x + 2 * H, mask=m, other=0.0) + tl.load(rr + 2 * H, mask=m, other=0.0))
    o = _sigmoid(tl.load(x + 3 * H, mask=m, other=0.0) + tl.load(rr + 3 * H, mask=m, other=0.0))
    c_prev = tl.load(cs + s_in * B * H + e, mask=m, other=0.0)
    zz = z + (ta * B + b) * (2 * H) + j
    tl.store(zz, i * g, mask=m)
    tl.store(zz + H, f * c_prev, mask=m)
    a = acts + (ta * B + b) * (10 * H) + j
    tl.store(a, i, mask=m)
    tl.store(a + H, f, mask=m)
    tl.store(a + 2 * H, g, mask=m)
    tl.store(a + 3 * H, o, mask=m)


@triton.jit(do_not_specialize=["t", "ta", "s_in", "s_out"])
def nested_inner_fwd(ri, bi, hs, cs, ks, out, acts, lens, t, ta, s_in, s_out, B, H,
                     TRAIN: tl.constexpr, BLOCK: tl.constexpr):
    e = (tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)).to(tl.int64)
    m = e < B * H
    b = e // H
    j = e % H
    G = 4 * H
    rr = ri + b * G + j
    ii = _sigmoid(tl.load(rr, mask=m, other=0.0) + tl.load(bi + j, mask=m, other=0.0))
    fi = _sigmoid(tl.load(rr + H, mask=m, other=0.0) + tl.load(bi + H + j, mask=m, other=0.0))
    gi = _tanh(tl.load(rr + 2 * H, mask=m, other=0.0) + tl.load(bi + 2 * H + j, mask=m, other=0.0))
    oi = _sigmoid(tl.load(rr + 3 * H, mask=m, other=0.0) + tl.load(bi + 3 * H + j, mask=m, other=0.0))
    here = s_in * B * H + e
    there = s_out * B * H + e
    k_prev = tl.load(ks + here, mask=m, other=0.0)
    k = fi * k_prev + ii * gi
    tk = _tanh(k)
    c = oi * tk
    tc = _tanh(c)
    a = acts + (ta * B + b) * (10 * H) + j
    o = tl.load(a + 3 * H, mask=m, other=0.0)
    if TRAIN:
        tl.store(a + 4 * H, ii, mask=m)
        tl.store(a + 5 * H, fi, mask=m)
        tl.store(a + 6 * H, gi, mask=m)
        tl.store(a + 7 * H, oi, mask=m)
        tl.store(a + 8 * H, tk, mask=m)
        tl.store(a + 9 * H, tc, mask=m)
    h = o * tc
    active = t < tl.load(lens + b, mask=m, other=0)
    tl.store(hs + there, tl.where(active, h, tl.load(hs + here, mask=m, other=0.0)), mask=m)
    tl.store(cs + there, tl.where(active, c, tl.load(cs + here, mask=m, other=0.0)), mask=m)
    tl.store(ks + there, tl.where(active, k, k_prev), mask=m)
    tl.store(out + t * B * H + e, tl.where(active, h, 0.0), mask=m)


@triton.jit(do_not_specialize=["t", "s_in"])
def nested_inner_bwd(dai, dao, acts, ks, dout, dhc, dcc, dkc, lens, t, s_in, B, H, BLOCK: tl.constexpr):
    """From dh_t (dhc + dout) to the inner gates' dÃ_t, and dc̃ on to the step before."""
    e = (tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)).to(tl.int64)
    m = e < B * H
    b = e // H
    j = e % H
    G = 4 * H
    a = acts + (t * B + b) * (10 * H) + j
    o = tl.load(a + 3 * H, mask=m, other=0.0)
    ii = tl.load(a + 4 * H, mask=m, other=0.0)
    fi = tl.load(a + 5 * H, mask=m, other=0.0)
    gi = tl.load(a + 6 * H, mask=m, other=0.0)
    oi = tl.load(a + 7 * H, mask=m, other=0.0)
    tk = tl.load(a + 8 * H, mask=m, other=0.0)
    tc = tl.load(a + 9 * H, mask=m, other=0.0)
    k_prev = tl.load(ks + s_in * B * H + e, mask=m, other=0.0)
    active = t < tl.load(lens + b, mask=m, other=0)
    dh = tl.load(dhc + e, mask=m, other=0.0) + tl.load(dout + t * B * H + e, mask=m, other=0.0)
    dc = tl.load(dcc + e, mask=m, other=0.0) + dh * o * (1.0 - tc * tc)
    dk_in = tl.load(dkc + e, mask=m, other=0.0)
    dk = dk_in + dc * oi * (1.0 - tk * tk)
    d = dai + (t * B + b) * G + j
    tl.store(d, tl.where(active, dk * gi * ii * (1.0 - ii), 0.0), mask=m)
    tl.store(d + H, tl.where(active, dk * k_prev * fi * (1.0 - fi), 0.0), mask=m)
    tl.store(d + 2 * H, tl.where(active, dk * ii * (1.0 - gi * gi), 0.0), mask=m)
    tl.store(d + 3 * H, tl.where(active, dc * tk * oi * (1.0 - oi), 0.0), mask=m)
    tl.store(dkc + e, tl.where(active, dk * fi, dk_in), mask=m)
    tl.store(dao + e, tl.where(active, dh * tc * o * (1.0 - o), 0.0), mask=m)  # for the outer half
    tl.store(dhc + e, tl.where(active, 0.0, tl.load(dhc + e, mask=m, other=0.0)), mask=m)


@triton.jit(do_not_specialize=["t", "s_in"])
def nested_outer_bwd(da, dao, dz, acts, cs, dcc, lens, t, s_in, B, H, BLOCK: tl.constexpr):
    """From dz = dÃ_t [W̃ Ũ] to the outer gates' dA_t; dc on to the step before."""
    e = (tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)).to(tl.int64)
    m = e < B * H
    b = e // H
    j = e % H
    G = 4 * H
    a = acts + (t * B + b) * (10 * H) + j
    i = tl.load(a, mask=m, other=0.0)
    f = tl.load(a + H, mask=m, other=0.0)
    g = tl.load(a + 2 * H, mask=m, other=0.0)
    da_o = tl.load(dao + e, mask=m, other=0.0)
    c_prev = tl.load(cs + s_in * B * H + e, mask=m, other=0.0)
    dx = tl.load(dz + b * (2 * H) + j, mask=m, other=0.0)  # d (i g)
    ds = tl.load(dz + b * (2 * H) + H + j, mask=m, other=0.0)  # d (f c_{t-1})
    active = t < tl.load(lens + b, mask=m, other=0)
    d = da + (t * B + b) * G + j
    tl.store(d, tl.where(active, dx * g * i * (1.0 - i), 0.0), mask=m)
    tl.store(d + H, tl.where(active, ds * c_prev * f * (1.0 - f), 0.0), mask=m)
    tl.store(d + 2 * H, tl.where(active, dx * i * (1.0 - g * g), 0.0), mask=m)
    tl.store(d + 3 * H, da_o, mask=m)
    tl.store(dcc + e, tl.where(active, ds * f, tl.load(dcc + e, mask=m, other=0.0)), mask=m)
