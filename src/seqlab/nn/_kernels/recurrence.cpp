// Fused CPU recurrences for every seqlab cell: those torch has no kernel for, and GRU and the
// Elman RNN, whose torch CPU kernels train slowly (LSTM runs as the peephole kernel with p = 0).
//
// Every kernel follows the same plan (the recipe of Appleyard, Kocisky &
// Blunsom 2016, "Optimizing Performance of Recurrent Neural Networks on
// GPUs", sec. 3, applied to the CPU):
//
//   * the input projection xp = x W^T + b of all T steps is one GEMM
//     (backward: dx = dxp W and dW = dxp^T x, one GEMM each) -- except SRU,
//     whose loop has no recurrent GEMM and projects each step's rows inside
//     it (see sru_forward);
//   * forward: per step one recurrent GEMM into a scratch buffer, then one
//     pointwise loop that does all gate math and writes the new state;
//   * backward through time: per step one pointwise loop for the gate
//     derivatives dA_t and one GEMM dh_{t-1} += dA_t U; the weight gradients
//     dU = sum_t dA_t^T h_{t-1} are ONE GEMM over all steps after the loop;
//   * threads: a step couples only the units of one batch row, so each thread
//     takes its own block of rows through all steps, with one-thread GEMMs and
//     no synchronisation inside the time loop (for_row_blocks); only when the
//     recurrent weights outgrow one core's L2 and each thread would get few
//     rows do the threads share each step.
//
// Buffers that backward needs are indexed by time t (not by processing
// order), so the reverse direction needs no flips: ``S[t]`` is the state
// *entering* the step at time t.  Variable lengths follow the reference loop
// (seqlab.nn.Recurrent, impl="reference"): a step at t >= length[b] carries
// the state of sequence b through unchanged and outputs 0, so the reverse
// direction starts every sequence at its own last step.
//
// Notation: T steps, B batch, H hidden, G = gates * H, σ sigmoid.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/utils/pybind.h>  // pybind11 with the Tensor type caster; lighter than torch/extension.h
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/functions/basic_ops.h>  // DelayedError

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include <unistd.h>  // sysconf

#ifdef SEQLAB_USE_FBGEMM
#include <fbgemm/Fbgemm.h>  // the int8 GEMMs inside libtorch_cpu (torch's dynamic quantisation runs on them)
#endif

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#ifdef SEQLAB_USE_BLAS
// The BLAS that libtorch_cpu exports (MKL on x86); the loader defines
// SEQLAB_USE_BLAS only after checking that both symbols are there.
extern "C" {
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*, const int*,
            const float*, const int*, const float*, float*, const int*);
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*, const int*,
            const double*, const int*, const double*, double*, const int*);
}
#endif

#ifdef SEQLAB_USE_MKL_PACK
// MKL's packed GEMM (float only): a weight used at every step is packed once
// per sequence instead of once per GEMM call.  Defined by the loader only when
// libtorch_cpu exports these symbols.
extern "C" {
size_t sgemm_pack_get_size_(const char*, const int*, const int*, const int*);
void sgemm_pack_(const char*, const char*, const int*, const int*, const int*, const float*, const float*, const int*,
                 float*);
void sgemm_compute_(const char*, const char*, const int*, const int*, const int*, const float*, const int*,
                    const float*, const int*, const float*, float*, const int*);
}
#endif

namespace seqlab {

using at::Tensor;

// The activations must be inlined into the pointwise loops to vectorize; GCC
// stops inlining in large functions unless told.
#if defined(__GNUC__)
#define SEQLAB_INLINE inline __attribute__((always_inline))
#else
#define SEQLAB_INLINE inline
#endif

// A reduction with several accumulators that GCC 12 leaves scalar when it is
// inlined into a parallel lambda (float only; found with -fopt-info-vec) is
// kept in a function of its own, where it vectorizes.
#if defined(__GNUC__)
#define SEQLAB_OUTLINE __attribute__((noinline))
#else
#define SEQLAB_OUTLINE
#endif

// ---------------------------------------------------------------------------
// Activations.  float: branch-free so that the pointwise loops vectorize
// (libm's expf is a call the compiler cannot vectorize); double: libm, for
// the float64 tests and gradcheck.
// ---------------------------------------------------------------------------

template <typename T>
struct Act;

template <>
struct Act<double> {
  static SEQLAB_INLINE double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
  static SEQLAB_INLINE double tanh(double x) { return std::tanh(x); }
};

// The bounds of exp's argument in Act<float>.  They are variables, not constants, because with
// constants GCC turns each clamp into a select of precomputed results at the end of the
// activation (with the compares and blends that takes); with bounds it cannot see it clamps
// with vmaxps/vminps.  `kExpLow > x ? kExpLow : x` is exactly vmaxps(kExpLow, x), which returns
// x when x is NaN.  Measured on an AMD EPYC (Zen 3): a sigmoid and a tanh took 0.78x the time.
// Never written.
float kExpLow = -80.0f, kExpHigh = 80.0f;

template <>
struct Act<float> {
  // exp(x) = 2^n (1 + p) with n = round(x / ln 2) and p = expm1(r) for
  // r = x - n ln 2 in [-ln2/2, ln2/2].  ln 2 is split in two (Cody & Waite
  // 1980) so that r keeps its low bits; p is the Taylor series to r^7, whose
  // truncation error (< 6e-9) is below float resolution.  Returns 2^n.
  // x is clamped to [-80, 80]: no subnormal numbers (slow on x86) appear, and
  // the activations change by less than 2e-35.  n comes from adding 1.5 * 2^23
  // to x / ln 2: the sum rounds to an integer, which then sits in its low
  // mantissa bits, so that 2^n is built from those bits without a rounding
  // instruction or a conversion to int: against floor() and a cast, an
  // activation took about a quarter less time on a Xeon, with the same
  // results.  A NaN input gives a NaN p, which carries through whatever 2^n
  // its bits make.
  static SEQLAB_INLINE float scale_expm1(float x, float& p) {
    constexpr float kShifter = 12582912.0f;  // 1.5 * 2^23, bits 0x4B400000
    x = kExpLow > x ? kExpLow : x;  // NaN stays NaN; see kExpLow
    x = kExpHigh < x ? kExpHigh : x;
    const float shifted = x * 1.44269504088896341f + kShifter;
    const float n = shifted - kShifter;
    const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
    p = r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 + r * (1.0f / 720 + r * (1.0f / 5040)))))));
    uint32_t bits;
    std::memcpy(&bits, &shifted, sizeof bits);
    bits = (bits - 0x4B400000u + 127u) << 23;  // unsigned: wraps instead of overflowing
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return scale;
  }
  static SEQLAB_INLINE float sigmoid(float x) {
    float p;
    const float s = scale_expm1(-x, p);
    return 1.0f / (1.0f + (s + s * p));
  }
  // tanh|x| = -m / (2 + m) with m = expm1(-2|x|): accurate near 0 as well.
  static SEQLAB_INLINE float tanh(float x) {
    float p;
    const float s = scale_expm1(-2.0f * std::fabs(x), p);
    const float m = (s - 1.0f) + s * p;
    const float t = -m / (2.0f + m);
    return std::copysign(t, x);
  }
};

// ---------------------------------------------------------------------------
// Buffers.  A training step allocates tens of MB (projections, gate
// activations, gradients) and frees them in the backward pass; fresh pages
// from the OS cost a page fault each (about 0.5 ms per MB measured on a VM),
// which rivals the arithmetic.  Like torch's CUDA caching allocator, the pool
// keeps freed blocks and hands them out again for the same size class.
// ---------------------------------------------------------------------------

class Pool {
 public:
  static Pool& get() {
    static Pool* pool = new Pool();  // never destroyed: tensors may outlive static destructors
    return *pool;
  }

  Tensor empty(at::IntArrayRef sizes, const at::TensorOptions& options) {
    int64_t numel = 1;
    for (int64_t n : sizes) numel *= n;
    const size_t bytes = size_class(static_cast<size_t>(numel) * options.dtype().itemsize());
    void* p = take(bytes);
    return at::from_blob(p, sizes, [bytes](void* q) { Pool::get().give(q, bytes); }, options);
  }

 private:
  // Sizes round up to 1/8 of their power of two (at least 4 KiB), so that
  // sequences of slightly different lengths share blocks.
  static size_t size_class(size_t bytes) {
    size_t step = 4096;
    while (step * 16 <= bytes) step *= 2;
    return std::max<size_t>(step, (bytes + step - 1) / step * step);
  }

  void* take(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(bytes);
      if (it != free_.end()) {
        void* p = it->second;
        free_.erase(it);
        idle_ -= bytes;
        return p;
      }
    }
    void* p = std::aligned_alloc(64, bytes);
    TORCH_CHECK(p != nullptr, "seqlab kernels: out of memory allocating ", bytes, " bytes");
    return p;
  }

  void give(void* p, size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (idle_ + bytes <= kMaxIdle) {
        free_.emplace(bytes, p);
        idle_ += bytes;
        return;
      }
    }
    std::free(p);
  }

  static constexpr size_t kMaxIdle = size_t(512) << 20;  // idle blocks kept, at most
  std::mutex mutex_;
  std::multimap<size_t, void*> free_;
  size_t idle_ = 0;
};

inline Tensor fresh(at::IntArrayRef sizes, const at::TensorOptions& options) {
  return Pool::get().empty(sizes, options);
}

// One core's L2 cache in bytes (1 MiB where the system does not say).
inline int64_t l2_bytes() {
  static const int64_t bytes = [] {
    long n = -1;
#ifdef _SC_LEVEL2_CACHE_SIZE
    n = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    return n > 0 ? static_cast<int64_t>(n) : int64_t(1) << 20;
  }();
  return bytes;
}

// ---------------------------------------------------------------------------
// GEMM on row-major buffers: BLAS directly when available (no dispatcher or
// tensor allocation inside the time loop), else ATen on borrowed memory.
// ---------------------------------------------------------------------------

template <typename T>
Tensor borrow(const T* p, int64_t rows, int64_t cols, int64_t ld) {
  return at::from_blob(const_cast<T*>(p), {rows, cols}, {ld, 1},
                       at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
}

#ifdef SEQLAB_USE_BLAS
inline void blas(char ta, char tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb,
                 float beta, float* c, int ldc) {
  sgemm_(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}
inline void blas(char ta, char tb, int m, int n, int k, double alpha, const double* a, int lda, const double* b,
                 int ldb, double beta, double* c, int ldc) {
  dgemm_(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}
#endif

// Row-major C (m, n) = beta C + op(A) op(B), op(X) = X ('N') or X^T ('T'):
// A is (m, k), or (k, m) when transposed; B is (k, n), or (n, k).  beta is 0 or 1.
template <typename T>
void gemm(char ta, char tb, int64_t m, int64_t n, int64_t k, const T* a, const T* b, T beta, T* c) {
  const int64_t lda = ta == 'N' ? k : m, ldb = tb == 'N' ? n : k;
#ifdef SEQLAB_USE_BLAS
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: the BLAS call with A and B swapped.
  blas(tb, ta, n, m, k, T(1), b, ldb, a, lda, beta, c, n);
#else
  const Tensor A = ta == 'N' ? borrow(a, m, k, lda) : borrow(a, k, m, lda).t();
  const Tensor Bm = tb == 'N' ? borrow(b, k, n, ldb) : borrow(b, n, k, ldb).t();
  Tensor out = borrow(c, m, n, n);
  if (beta == T(0))
    at::mm_out(out, A, Bm);
  else
    out.addmm_(A, Bm);
#endif
}

// A weight that every step multiplies: C (m, n) = beta C + A (m, k) op(W) with
// op(W) = W^T for W (n, k) (``transposed``), or W for W (k, n).  m is the batch,
// of which a call takes the rows b0..b1.
template <typename T>
class BlasStepGemm {
 public:
  BlasStepGemm(const T* w, int64_t /*m*/, int64_t n, int64_t k, bool transposed)
      : w_(w), n_(n), k_(k), transposed_(transposed) {}
  int64_t bytes() const { return n_ * k_ * static_cast<int64_t>(sizeof(T)); }
  void operator()(const T* a, T beta, T* c, int64_t b0, int64_t b1) const {
    if (transposed_)
      gemm<T>('N', 'T', b1 - b0, n_, k_, a + b0 * k_, w_, beta, c + b0 * n_);
    else
      gemm<T>('N', 'N', b1 - b0, n_, k_, a + b0 * k_, w_, beta, c + b0 * n_);
  }

 private:
  const T* w_;
  int64_t n_, k_;
  bool transposed_;
};

// The step GEMM of double (and of float where no faster one is built).
template <typename T>
class StepGemm : public BlasStepGemm<T> {
 public:
  using BlasStepGemm<T>::BlasStepGemm;
};

#if defined(__AVX2__) && defined(__FMA__)
#define SEQLAB_PANEL_GEMM 1
// The per-step GEMMs have few rows (a thread's block of the batch, 8-64 here)
// against weights of 64 KiB-4 MiB, a shape the BLAS is not tuned for: MKL's
// packed GEMM ran at 55-80 GFLOP/s on one AMD EPYC core for (8-64) x 256 x 1024,
// this kernel at 80-99 (the core's big-GEMM rate is about 93).  op(W) is packed
// once into panels of two vectors' width, [k][2 V::lanes] each (zero-padded past
// n), so that the micro-kernel streams a panel with two vector loads per k while
// up to V::rows rows of A are broadcast against it: 2 V::rows accumulators in
// registers (12 of the 16 AVX2 registers, 24 of the 32 AVX-512 ones).  The
// piece of a panel that a row block passes over (kDepth x 2 vectors) stays in L1.
struct Avx2 {
  using Reg = __m256;
  static constexpr int64_t lanes = 8, rows = 6, depth = 512;
  static SEQLAB_INLINE Reg zero() { return _mm256_setzero_ps(); }
  static SEQLAB_INLINE Reg load(const float* p) { return _mm256_loadu_ps(p); }
  static SEQLAB_INLINE Reg broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static SEQLAB_INLINE Reg fmadd(Reg a, Reg b, Reg c) { return _mm256_fmadd_ps(a, b, c); }
  static SEQLAB_INLINE Reg add(Reg a, Reg b) { return _mm256_add_ps(a, b); }
  static SEQLAB_INLINE void store(float* p, Reg a) { _mm256_storeu_ps(p, a); }
};

#ifdef __AVX512F__
#define SEQLAB_PANEL512_GEMM 1
struct Avx512 {
  using Reg = __m512;
  static constexpr int64_t lanes = 16, rows = 12, depth = 256;
  static SEQLAB_INLINE Reg zero() { return _mm512_setzero_ps(); }
  static SEQLAB_INLINE Reg load(const float* p) { return _mm512_loadu_ps(p); }
  static SEQLAB_INLINE Reg broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static SEQLAB_INLINE Reg fmadd(Reg a, Reg b, Reg c) { return _mm512_fmadd_ps(a, b, c); }
  static SEQLAB_INLINE Reg add(Reg a, Reg b) { return _mm512_add_ps(a, b); }
  static SEQLAB_INLINE void store(float* p, Reg a) { _mm512_storeu_ps(p, a); }
};
#endif

template <class V>
class PanelGemm {
 public:
  PanelGemm(const float* w, int64_t n, int64_t k, bool transposed)
      : n_(n), k_(k), panels_((n + kPanel - 1) / kPanel) {
    packed_ = fresh({panels_ * k * kPanel}, at::kFloat);
    float* p = data_ = packed_.data_ptr<float>();
    // Read W in its own row order: a panel (k x 64 bytes) stays in L1 while it is filled.
    at::parallel_for(0, panels_, 1, [&](int64_t q0, int64_t q1) {
      for (int64_t q = q0; q < q1; ++q) {
        float* pq = p + q * k * kPanel;
        const int64_t width = std::min(kPanel, n - q * kPanel);
        if (width < kPanel) std::fill(pq, pq + k * kPanel, 0.0f);
        if (transposed) {
          for (int64_t j = 0; j < width; ++j)
            for (int64_t i = 0; i < k; ++i) pq[i * kPanel + j] = w[(q * kPanel + j) * k + i];
        } else {
          for (int64_t i = 0; i < k; ++i) std::memcpy(pq + i * kPanel, w + i * n + q * kPanel, width * sizeof(float));
        }
      }
    });
  }
  // beta is 0 or 1 (all the kernels need).  Inside a row block one thread does the
  // whole product; outside one, the panels are shared out over the threads.
  void operator()(const float* a, float beta, float* c, int64_t b0, int64_t b1) const {
    const bool add = beta != 0.0f;
    a += b0 * k_, c += b0 * n_;
    const int64_t m = b1 - b0;
    const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 16) / std::max<int64_t>(1, m * k_ * kPanel));
    at::parallel_for(0, panels_, grain, [&](int64_t q0, int64_t q1) {
      for (int64_t q = q0; q < q1; ++q) panel<false>(a, k_, m, q, add, c);
    });
  }

  // The same product for a long A of m rows, (m, k), or stored transposed, (k, m), when
  // ``a_transposed``: the whole-sequence GEMMs.  Each thread takes an equal share of the
  // rows (ATen cuts [0, m) into one piece per thread) through every panel in groups of
  // group_rows().  Shared out as whole groups instead, 1024 rows made 15 and 14 groups
  // of 36 for 2 threads: on a Zen 4 the even shares took 0.96x the time there and 0.89x
  // at 512 rows (dW^T and dU^T at H = 256 and 128).  On an AMD EPYC this beat MKL's GEMM
  // at the issue-4 input projections (`seqlab bench cells` times both as its GEMM reference).
  void product(const float* a, bool a_transposed, int64_t m, float beta, float* c) const {
    const bool add = beta != 0.0f;
    const int64_t group = group_rows();
    at::parallel_for(0, m, kGroupRows, [&](int64_t b0, int64_t b1) {
      for (int64_t r0 = b0; r0 < b1; r0 += group) {
        const int64_t rows = std::min(group, b1 - r0);
        for (int64_t q = 0; q < panels_; ++q) {
          if (a_transposed)
            panel<true>(a + r0, m, rows, q, add, c + r0 * n_);
          else
            panel<false>(a + r0 * k_, k_, rows, q, add, c + r0 * n_);
        }
      }
    });
  }

  // Rows of A that product() takes through all the panels at a time.  Where the packed weight fits
  // in a core's L2: kGroupRows, the per-step pattern (those rows stay in L1 while the panels stream
  // past from L2).  Where it does not, the panels come from L3 once per group whatever its size, so
  // the group grows until its rows fill a quarter of L2 (126 rows at k = 256 with 512 KiB).  On a
  // Zen 3 (512 KiB of L2) lstm, gru and peephole then took 0.97-1.00x the time at issue 4's first
  // two shapes, training and inference (benchmarks/kernel_ab.py, 20 rounds).  G2P's float32 greedy
  // decoding (one thread, 384-deep products of 2,000 rows) did not move beyond benchmarks/g2p_ab.py's
  // noise: 1.044x and 1.007x the words/s in two runs (6 and 10 pairs).
  int64_t group_rows() const {
    const int64_t bytes = static_cast<int64_t>(sizeof(float)), l2 = l2_bytes();
    if (panels_ * kPanel * k_ * bytes <= l2) return kGroupRows;
    return std::max(kGroupRows, l2 / 4 / (k_ * bytes) / kRows * kRows);
  }

 private:
  using Reg = typename V::Reg;
  static constexpr int64_t kLanes = V::lanes, kPanel = 2 * V::lanes, kRows = V::rows, kDepth = V::depth;
  static constexpr int64_t kGroupRows = 3 * V::rows;

  // A[r, i] of A (rows, k) with row stride lda, or of A stored transposed (k, rows) with row stride lda.
  template <bool TA>
  static SEQLAB_INLINE const float* elem(const float* a, int64_t lda, int64_t r, int64_t i) {
    return TA ? a + i * lda + r : a + r * lda + i;
  }

  // C[0:R, 0:kPanel] (+)= A[0:R, 0:kl] P_q[0:kl] for R <= kRows rows, ldc the row stride of C.
  template <int R, bool TA>
  SEQLAB_INLINE void micro(const float* a, int64_t lda, const float* pq, int64_t kl, bool add, float* c,
                           int64_t ldc) const {
    Reg lo[R], hi[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) lo[r] = V::zero(), hi[r] = V::zero();
#pragma GCC unroll 4
    for (int64_t i = 0; i < kl; ++i) {
      const Reg w0 = V::load(pq + i * kPanel), w1 = V::load(pq + i * kPanel + kLanes);
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) {
        const Reg x = V::broadcast(elem<TA>(a, lda, r, i));
        lo[r] = V::fmadd(x, w0, lo[r]);
        hi[r] = V::fmadd(x, w1, hi[r]);
      }
    }
    // Every loop over r is unrolled: an accumulator indexed at run time would live in memory.
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      float* cr = c + r * ldc;
      if (add) lo[r] = V::add(lo[r], V::load(cr)), hi[r] = V::add(hi[r], V::load(cr + kLanes));
      V::store(cr, lo[r]);
      V::store(cr + kLanes, hi[r]);
    }
  }

  template <int R, bool TA>
  SEQLAB_INLINE void micro_upto(int64_t rows, const float* a, int64_t lda, const float* pq, int64_t kl, bool add,
                                float* c, int64_t ldc) const {
    if constexpr (R > 1) {
      if (rows < R) return micro_upto<R - 1, TA>(rows, a, lda, pq, kl, add, c, ldc);
    }
    micro<R, TA>(a, lda, pq, kl, add, c, ldc);
  }

  // R rows against panel q; a last panel narrower than kPanel columns goes through a scratch tile.
  template <bool TA>
  SEQLAB_INLINE void rows(int64_t R, const float* a, int64_t lda, const float* pq, int64_t kl, bool add, float* c,
                          int64_t width) const {
    float tile[kRows * kPanel];
    const bool whole = width == kPanel;
    float* out = whole ? c : tile;
    const int64_t ld = whole ? n_ : kPanel;
    micro_upto<kRows, TA>(R, a, lda, pq, kl, whole && add, out, ld);
    if (whole) return;
    for (int64_t r = 0; r < R; ++r)
      for (int64_t j = 0; j < width; ++j) c[r * n_ + j] = (add ? c[r * n_ + j] : 0.0f) + tile[r * kPanel + j];
  }

  // All m rows against panel q, in blocks of at most kRows rows of near-equal size (8 rows with kRows = 6:
  // 4 + 4, not 6 + 2), and over k in pieces of kDepth so that the piece of the panel stays near L1.
  // Rows of A a multiple of 4 KiB apart (dx = dxp W and dh += dA U at H = 256: 4H floats) all fall
  // into one set of L1, which holds 8 lines on a Zen 4 (12 on recent Xeons): those go at most 8 at a
  // time.  With 12, dxp W took 1.1-1.4x the time on the Zen 4 (1600 or 2560 rows, 1024 or 2048 deep;
  // 6 at a time measured the same as 8).
  template <bool TA>
  void panel(const float* a, int64_t lda, int64_t m, int64_t q, bool add, float* c) const {
    const float* pq = data_ + q * k_ * kPanel;
    const bool aliased = !TA && (lda * static_cast<int64_t>(sizeof(float))) % 4096 == 0;
    const int64_t most = aliased ? std::min<int64_t>(kRows, 8) : kRows;
    const int64_t width = std::min(kPanel, n_ - q * kPanel), blocks = (m + most - 1) / most;
    for (int64_t k0 = 0; k0 < k_; k0 += kDepth) {
      const int64_t kl = std::min(kDepth, k_ - k0);
      for (int64_t blk = 0, r0 = 0; blk < blocks; ++blk) {
        const int64_t R = m / blocks + (blk < m % blocks ? 1 : 0);
        rows<TA>(R, elem<TA>(a, lda, r0, k0), lda, pq + k0 * kPanel, kl, add || k0 > 0, c + r0 * n_ + q * kPanel,
                 width);
        r0 += R;
      }
    }
  }

  Tensor packed_;
  float* data_;  // packed_'s memory (Tensor::data_ptr checks the type at every call)
  int64_t n_, k_, panels_;
};
#endif

#ifdef SEQLAB_USE_MKL_PACK
class MklPackedGemm {
 public:
  // Column-major, C^T (n, m) = op(W)^T (n, k) A^T (k, m): W is BLAS's "A" matrix, packed here once.
  MklPackedGemm(const float* w, int64_t m, int64_t n, int64_t k, bool transposed) : n_(n), k_(k) {
    const char id = 'A', trans = transposed ? 'T' : 'N';
    const int M = n, N = m, K = k, ld = transposed ? k : n;
    const float one = 1;
    const size_t bytes = sgemm_pack_get_size_(&id, &M, &N, &K);
    packed_ = fresh({static_cast<int64_t>(bytes / sizeof(float)) + 16}, at::kFloat);
    sgemm_pack_(&id, &trans, &M, &N, &K, &one, w, &ld, packed_.data_ptr<float>());
  }
  void operator()(const float* a, float beta, float* c, int64_t b0, int64_t b1) const {
    const char ta = 'P', tb = 'N';
    const int M = n_, N = b1 - b0, K = k_, lda = n_, ldb = k_, ldc = n_;
    sgemm_compute_(&ta, &tb, &M, &N, &K, packed_.data_ptr<float>(), &lda, a + b0 * k_, &ldb, &beta, c + b0 * n_, &ldc);
  }

 private:
  Tensor packed_;
  int64_t n_, k_;
};
#endif

// Which of them runs the float step GEMMs: on other CPUs than Intel's, the
// widest PanelGemm built (PanelGemm<Avx2> beat MKL on an AMD EPYC without
// AVX-512, see above; on a Zen 4 PanelGemm<Avx512> beat MKL in every cell, and
// the AVX2 panels in training, with inference within 2% of them);
// on Intel CPUs with AVX-512, "auto": PanelGemm<Avx512> for weights that fit in
// one core's L2, MKL's packed GEMM for larger ones, which it streams better
// from L3; on Intel CPUs with AVX2 only, MKL's packed GEMM
// (benchmarks/step_gemm.py times every kind; docs/results/step_gemm_cpu.md, Xeon,
// and step_gemm_cpu_amd.md).
// step_gemm() in the module switches at run time (the tests run every kind).
enum class StepKind { kBlas, kPanel, kPanel512, kMklPacked, kAuto };

inline StepKind default_step_kind() {
#if defined(SEQLAB_PANEL512_GEMM) && defined(SEQLAB_USE_MKL_PACK)
  __builtin_cpu_init();
  return __builtin_cpu_is("intel") ? StepKind::kAuto : StepKind::kPanel512;
#elif defined(SEQLAB_PANEL512_GEMM)
  return StepKind::kPanel512;
#elif defined(SEQLAB_PANEL_GEMM) && defined(SEQLAB_USE_MKL_PACK)
  __builtin_cpu_init();
  return __builtin_cpu_is("intel") ? StepKind::kMklPacked : StepKind::kPanel;
#elif defined(SEQLAB_PANEL_GEMM)
  return StepKind::kPanel;
#elif defined(SEQLAB_USE_MKL_PACK)
  return StepKind::kMklPacked;
#else
  return StepKind::kBlas;
#endif
}

inline std::atomic<StepKind>& step_kind() {
  static std::atomic<StepKind> kind{default_step_kind()};
  return kind;
}

template <>
class StepGemm<float> {
 public:
  StepGemm(const float* w, int64_t m, int64_t n, int64_t k, bool transposed) : blas_(w, m, n, k, transposed) {
    StepKind kind = step_kind().load();
    if (kind == StepKind::kAuto)
      kind = n * k * static_cast<int64_t>(sizeof(float)) < l2_bytes() ? StepKind::kPanel512 : StepKind::kMklPacked;
#ifdef SEQLAB_PANEL_GEMM
    if (kind == StepKind::kPanel) panel_.emplace(w, n, k, transposed);
#endif
#ifdef SEQLAB_PANEL512_GEMM
    if (kind == StepKind::kPanel512) panel512_.emplace(w, n, k, transposed);
#endif
#ifdef SEQLAB_USE_MKL_PACK
    if (kind == StepKind::kMklPacked) mkl_.emplace(w, m, n, k, transposed);
#endif
    (void)kind;
  }
  int64_t bytes() const { return blas_.bytes(); }
  void operator()(const float* a, float beta, float* c, int64_t b0, int64_t b1) const {
#ifdef SEQLAB_PANEL_GEMM
    if (panel_) return (*panel_)(a, beta, c, b0, b1);
#endif
#ifdef SEQLAB_PANEL512_GEMM
    if (panel512_) return (*panel512_)(a, beta, c, b0, b1);
#endif
#ifdef SEQLAB_USE_MKL_PACK
    if (mkl_) return (*mkl_)(a, beta, c, b0, b1);
#endif
    blas_(a, beta, c, b0, b1);
  }

 private:
  BlasStepGemm<float> blas_;
#ifdef SEQLAB_PANEL_GEMM
  std::optional<PanelGemm<Avx2>> panel_;
#endif
#ifdef SEQLAB_PANEL512_GEMM
  std::optional<PanelGemm<Avx512>> panel512_;
#endif
#ifdef SEQLAB_USE_MKL_PACK
  std::optional<MklPackedGemm> mkl_;
#endif
};

#ifdef SEQLAB_USE_FBGEMM
// An int8 product for inference: R = a W^T with W (n, k) held in int8 with a scale per row
// (symmetric, zero point 0), and each call's rows of a quantised to unsigned 7-bit integers with
// one scale and zero point (from the min and max over those rows; 7 bits so that fbgemm's pairs of
// u8 x s8 products cannot overflow 16 bits, as torch's dynamic quantisation does on x86).  fbgemm
// multiplies in int8 with int32 sums and turns them back into float, column j of R:
//   R_j = s_a s_W[j] (q_a q_W[j]^T - z_a sum(q_W[j])) (+ bias_j).
// As a recurrence's step product (operator()) a is h and W is U; Int8Linear holds one for a layer.
class Int8StepGemm {
 public:
  Int8StepGemm(const int8_t* w, int64_t n, int64_t k, const float* scales, const float* bias = nullptr)
      : n_(n), k_(k), scales_(scales, scales + n), zeros_(n, 0),
        packed_(fbgemm::matrix_op_t::Transpose, k, n, w, k, nullptr, 1), sums_(n) {
    for (int64_t j = 0; j < n; ++j) {
      int32_t sum = 0;
      for (int64_t i = 0; i < k; ++i) sum += w[j * k + i];
      sums_[j] = sum;
    }
    if (bias != nullptr) bias_.assign(bias, bias + n);
  }
  int64_t rows() const { return n_; }
  int64_t cols() const { return k_; }
  int64_t bytes() const { return n_ * k_; }
  bool has_bias() const { return !bias_.empty(); }

  // The scale and zero point of m rows of a (k floats each); the range always holds 0, so that 0 is exact.
  std::pair<float, int32_t> quantisation(const float* a, int64_t m) const {
    float lo = 0.0f, hi = 0.0f;
    if (m * k_ > 0) fbgemm::FindMinMax(a, &lo, &hi, m * k_);
    lo = std::min(lo, 0.0f), hi = std::max(hi, 0.0f);
    const float s = hi > lo ? (hi - lo) / 127.0f : 1.0f;
    return {s, static_cast<int32_t>(std::clamp(std::nearbyint(-lo / s), 0.0f, 127.0f))};
  }

  // c (m, n) = the product of m rows of a quantised with (s, z): the share of thread ``part`` of ``parts``.
  // ``sums`` (m, n) int32 scratch that the parts share (each writes its own rows); null: this thread's own.
  void product(const float* a, int64_t m, std::pair<float, int32_t> q, float* c, int part = 0, int parts = 1,
               int32_t* sums = nullptr) const {
    const auto [s, z] = q;
    thread_local std::vector<int32_t> own;
    if (sums == nullptr) {
      own.resize(static_cast<size_t>(m * n_));
      sums = own.data();
    }
    fbgemm::PackAWithQuantRowOffset<uint8_t> packed_rows(fbgemm::matrix_op_t::NoTranspose, m, k_, a, k_, nullptr, s,
                                                         z, 1, nullptr);
    fbgemm::DoNothing<float, float> done;
    fbgemm::ReQuantizeForFloat<false, fbgemm::QuantizationGranularity::OUT_CHANNEL> to_float(
        done, s, scales_.data(), z, zeros_.data(), packed_rows.getRowOffsetBuffer(), sums_.data(),
        bias_.empty() ? nullptr : bias_.data(), n_);
    fbgemm::fbgemmPacked(packed_rows, packed_, c, sums, n_, to_float, part, parts);
  }

  // The step product of rows [b0, b1) of a, quantised on their own, into the same rows of c.
  void operator()(const float* a, float beta, float* c, int64_t b0, int64_t b1) const {
    TORCH_CHECK(beta == 0.0f, "seqlab kernels: the int8 step product overwrites its output");
    const int64_t m = b1 - b0;
    if (m <= 0) return;
    const float* rows = a + b0 * k_;
    product(rows, m, quantisation(rows, m), c + b0 * n_);
  }

 private:
  int64_t n_, k_;
  std::vector<float> scales_, bias_;
  std::vector<int32_t> zeros_;  // W's zero points: 0 (symmetric)
  mutable fbgemm::PackBMatrix<int8_t> packed_;  // fbgemm takes it by reference; a call only reads it
  std::vector<int32_t> sums_;  // column sums of q_W, for a's zero point
};

// A linear layer for inference, y = x W^T + b, in int8 (Int8StepGemm): W packed once for fbgemm
// when the layer is made.  Every call quantises all its rows of x with one scale and zero point,
// so the result does not depend on the number of threads, which share the rows of the product.
class Int8Linear {
 public:
  // q (n, k) int8, scales (n) float32, bias (n) float32 or None.
  Int8Linear(const Tensor& q_in, const Tensor& scales_in, const std::optional<Tensor>& bias_in)
      : gemm_(checked(q_in, scales_in, bias_in)) {}

  // x (..., k) float32 -> (..., n).
  Tensor operator()(const Tensor& x_in) const {
    const int64_t n = gemm_.rows(), k = gemm_.cols();
    TORCH_CHECK(x_in.device().is_cpu() && x_in.scalar_type() == at::kFloat && x_in.dim() >= 1 && x_in.size(-1) == k,
                "seqlab kernels: Int8Linear takes float32 CPU input with ", k, " features, got ", x_in.sizes(), " ",
                x_in.scalar_type());
    const Tensor x = x_in.contiguous();
    const int64_t m = x.numel() / k;
    std::vector<int64_t> shape = x.sizes().vec();
    shape.back() = n;
    Tensor out = at::empty(shape, x.options());
    if (m == 0) return out;
    const float* a = x.data_ptr<float>();
    float* c = out.data_ptr<float>();
    const auto q = gemm_.quantisation(a, m);
    // A thread per 64 rows at most: fbgemm splits the rows among the parts.
    const int parts = static_cast<int>(std::clamp<int64_t>(m / 64, 1, at::get_num_threads()));
    if (parts == 1) {
      gemm_.product(a, m, q, c);
    } else {
      std::vector<int32_t> sums(static_cast<size_t>(m * n));  // one scratch for all parts, not one each
      at::parallel_for(0, parts, 1, [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; ++p) gemm_.product(a, m, q, c, static_cast<int>(p), parts, sums.data());
      });
    }
    return out;
  }

  // The packed weight, for a recurrence's step products (forward_projected_int8).
  const Int8StepGemm& gemm() const { return gemm_; }

 private:
  static Int8StepGemm checked(const Tensor& q_in, const Tensor& scales_in, const std::optional<Tensor>& bias_in) {
    const Tensor q = q_in.contiguous(), scales = scales_in.contiguous().to(at::kFloat);
    TORCH_CHECK(q.device().is_cpu() && q.scalar_type() == at::kChar && q.dim() == 2 && scales.numel() == q.size(0),
                "seqlab kernels: Int8Linear takes an int8 weight (n, k) and n float32 scales");
    Tensor bias;
    if (bias_in.has_value()) {
      bias = bias_in->contiguous().to(at::kFloat);
      TORCH_CHECK(bias.numel() == q.size(0), "seqlab kernels: Int8Linear takes one bias per output");
    }
    return Int8StepGemm(q.data_ptr<int8_t>(), q.size(0), q.size(1), scales.data_ptr<float>(),
                        bias.defined() ? bias.data_ptr<float>() : nullptr);
  }

  Int8StepGemm gemm_;
};
#endif

// The whole-sequence products (and the weight-gradient rings below) run on
// seqlab's panels where they run the per-step GEMMs (PanelGemm::product; on such
// CPUs they also beat MKL's GEMM), else on the BLAS.
// AVX2's narrower panels read a transposed A (the weight gradients' x^T or
// dxp^T) at 6 floats a row, which ran at 0.7x MKL's rate on the Zen 4: those
// stay with the BLAS.
inline bool panel_products(bool a_transposed) {
  const StepKind kind = step_kind().load();
  return kind == StepKind::kPanel512 || (kind == StepKind::kPanel && !a_transposed);
}

// C (m, n) (+)= op(A) op(B) on the panels (beta 0 or 1): A (m, k), or stored (k, m) when
// ``a_transposed``; B (k, n), or stored (n, k) when ``b_transposed``.  Only while
// panel_products(a_transposed).
inline void panel_product(const float* a, bool a_transposed, int64_t m, const float* b, bool b_transposed, int64_t n,
                          int64_t k, float beta, float* c) {
#ifdef SEQLAB_PANEL512_GEMM
  if (step_kind().load() == StepKind::kPanel512)
    return PanelGemm<Avx512>(b, n, k, b_transposed).product(a, a_transposed, m, beta, c);
#endif
#ifdef SEQLAB_PANEL_GEMM
  PanelGemm<Avx2>(b, n, k, b_transposed).product(a, a_transposed, m, beta, c);
#endif
}

// out (m, n) = a (m, k) b (k, n), 2-d operands each contiguous or the transpose of a
// contiguous matrix; out contiguous.
inline void mm_into(Tensor& out, const Tensor& a, const Tensor& b) {
  const auto plain = [](const Tensor& m) { return m.is_contiguous() || m.t().is_contiguous(); };
  const bool a_transposed = !a.is_contiguous(), b_transposed = !b.is_contiguous();
  if (a.scalar_type() == at::kFloat && panel_products(a_transposed) && out.is_contiguous() && plain(a) && plain(b) &&
      a.size(1) > 0) {
    return panel_product(a.data_ptr<float>(), a_transposed, a.size(0), b.data_ptr<float>(), b_transposed, b.size(1),
                         b.size(0), 0.0f, out.data_ptr<float>());
  }
  at::mm_out(out, a, b);
}

// a (m, k) b (k, n) into a pooled buffer.
inline Tensor mm_fresh(const Tensor& a, const Tensor& b) {
  Tensor out = fresh({a.size(0), b.size(1)}, a.options());
  mm_into(out, a, b);
  return out;
}

// The sum of equal-shape (r, c) matrices, transposed: (c, r), contiguous, added
// in the order given.  Tiles of 32 x 32 that stay in L1, shared out over the
// threads by rows of the result.
template <typename T>
Tensor transposed_sum(const std::vector<Tensor>& ms) {
  const int64_t r = ms[0].size(0), c = ms[0].size(1);
  Tensor out = fresh({c, r}, ms[0].options());
  std::vector<const T*> src;
  for (const Tensor& m : ms) src.push_back(m.data_ptr<T>());
  T* dst = out.data_ptr<T>();
  constexpr int64_t kTile = 32;
  at::parallel_for(0, (c + kTile - 1) / kTile, 1, [&](int64_t q0, int64_t q1) {
    for (int64_t j0 = q0 * kTile; j0 < std::min(c, q1 * kTile); j0 += kTile)
      for (int64_t i0 = 0; i0 < r; i0 += kTile) {
        const int64_t i1 = std::min(r, i0 + kTile), j1 = std::min(c, j0 + kTile);
        for (int64_t j = j0; j < j1; ++j) {
#pragma omp simd
          for (int64_t i = i0; i < i1; ++i) dst[j * r + i] = src[0][i * c + j];
          for (size_t k = 1; k < src.size(); ++k)
#pragma omp simd
            for (int64_t i = i0; i < i1; ++i) dst[j * r + i] += src[k][i * c + j];
        }
      }
  });
  return out;
}

// The sums over the rows of m (rows, cols) as (1, rows) x m: the BLAS reads m once,
// at about 2.5x the speed of m.sum(0) for the (T B, G) gradients here.
inline Tensor column_sums(const Tensor& m) {
  Tensor out = fresh({1, m.size(1)}, m.options());
  at::mm_out(out, at::ones({1, m.size(0)}, m.options()), m);
  return out.view({m.size(1)});
}

// ---------------------------------------------------------------------------
// Loops.
// ---------------------------------------------------------------------------

// Pointwise work per parallel task: below this a task is not worth a thread.
constexpr int64_t kGrain = 4096;

// The time loop of a recurrence, f(b0, b1) on blocks of whole batch rows, one
// block per thread.  A step couples only the units of one row (its row of the
// recurrent GEMM included), so each thread takes its rows through all T steps
// with one-thread GEMMs and never waits for another: no fork and join per step
// (about 2 us each, against 15-100 us of arithmetic per step at the issue-4
// shapes).  But then every thread reads all of the recurrent weights
// (weight_bytes) at every step, doing 2 * rows FLOPs per weight.  Where the
// weights do not fit in one core's L2, f(0, B) runs on the calling thread
// instead and the GEMMs and pointwise loops inside it split their work over
// the threads at each step (each thread takes the same panels of the weights
// every step), in two cases:
// - a thread would have fewer than kMinBlockRows rows: the reading would
//   dominate.  (With 8 float rows or more a thread's GEMM does at least 4 FLOPs
//   per weight byte it streams from L3 or memory; there the row blocks measured
//   2-15% faster than the split on an AMD EPYC with 512 KiB of L2.)
// - a thread would have at most kSplitRows rows and its share of the weights
//   fits in 3/4 of its L2, where they then stay from step to step.  On an Intel
//   Xeon (2 MiB of L2, 2 threads) the split took 0.80-0.97x the time of the row
//   blocks with 8-32 rows a thread (nested_lstm at H = 256: 3 MiB of weights;
//   peephole and ln_lstm at H = 384: 2.3 MiB), 0.98-1.02x with 48 and 0.97-1.03x
//   with 64.  This case needs kMinSplitBytes of weights or more: below that a
//   step's GEMMs are too short for the split's forks and joins (two to four a
//   step).  On an AMD EPYC (Zen 3) with 512 KiB of L2, where weights of 576-768
//   KiB had shares that fit, the row blocks took 0.83-0.99x the time of the
//   split (peephole at H = 192, nested_lstm at H = 128; 16-64 rows).
constexpr int64_t kMinBlockRows = 8;
constexpr int64_t kSplitRows = 32;
constexpr int64_t kMinSplitBytes = int64_t(1) << 20;

template <typename F>
inline void for_row_blocks(int64_t B, int64_t weight_bytes, const F& f) {
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  const int64_t rows = (B + threads - 1) / threads;
  const bool share_fits =
      threads > 1 && weight_bytes >= kMinSplitBytes && weight_bytes / threads <= l2_bytes() * 3 / 4;
  if (weight_bytes > l2_bytes() && (rows < kMinBlockRows || (rows <= kSplitRows && share_fits))) return f(0, B);
  at::parallel_for(0, B, rows, f);
}

// f(b, j0, j1) over the units of rows b0..b1 in contiguous pieces: in parallel
// when called outside a row block, in order inside one (ATen runs a nested
// parallel_for inline).
template <typename F>
inline void for_units(int64_t b0, int64_t b1, int64_t H, int64_t grain, const F& f) {
  at::parallel_for(b0 * H, b1 * H, grain, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end;) {
      const int64_t b = n / H, j0 = n % H, j1 = std::min(H, j0 + (end - n));
      f(b, j0, j1);
      n += j1 - j0;
    }
  });
}

// f(b) for the rows b0..b1, the same way; ``width`` is the work per row.
template <typename F>
inline void for_rows(int64_t b0, int64_t b1, int64_t width, const F& f) {
  at::parallel_for(b0, b1, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, width)), [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) f(b);
  });
}

template <typename T>
inline void copy_span(T* dst, const T* src, int64_t j0, int64_t j1) {
  std::memcpy(dst + j0, src + j0, sizeof(T) * (j1 - j0));
}

template <typename T>
inline void zero_span(T* dst, int64_t j0, int64_t j1) {
  std::memset(dst + j0, 0, sizeof(T) * (j1 - j0));
}

// Processing order s = 0..T-1 -> time t; the slot where the state entering
// step s lives (by time when training, two alternating slots otherwise).
struct Steps {
  int64_t T;
  bool reverse;
  bool train;
  int64_t time(int64_t s) const { return reverse ? T - 1 - s : s; }
  int64_t slot(int64_t s) const { return train ? time(s) : (s & 1); }
  int64_t slots() const { return train ? T : 2; }
  int64_t act(int64_t t) const { return train ? t : 0; }
  int64_t acts() const { return train ? T : 1; }
};

// A (n, B, w) buffer addressed by slot.
template <typename T>
struct Buf {
  T* p;
  int64_t B, w;
  T* at(int64_t slot) const { return p + slot * B * w; }
  T* row(int64_t slot, int64_t b) const { return p + (slot * B + b) * w; }
};

template <typename T>
Buf<T> buf(const Tensor& x) {
  return {x.data_ptr<T>(), x.size(1), x.size(2)};
}

template <typename T>
const T* cptr(const Tensor& x) {
  return x.data_ptr<T>();
}

// State buffers: one (slots, B, H) tensor per state component, slot(0) holding the initial state.
inline Tensor state_buffer(const Tensor& init, const Steps& st) {
  Tensor s = fresh({st.slots(), init.size(0), init.size(1)}, init.options());
  if (st.T > 0) s[st.slot(0)].copy_(init);
  return s;
}

// Where step s writes its new state: the next step's slot, or the final state.
template <typename T>
inline T* next_state(const Tensor& buffer, const Tensor& final, const Steps& st, int64_t s) {
  return s + 1 < st.T ? buf<T>(buffer).at(st.slot(s + 1)) : final.data_ptr<T>();
}

// ---------------------------------------------------------------------------
// Peephole LSTM (Gers & Schmidhuber 2000); the plain LSTM is the case P = 0.
//   i = σ(a_i + p_i c_{t-1})  f = σ(a_f + p_f c_{t-1})  g = tanh(a_g)
//   c_t = f c_{t-1} + i g     o = σ(a_o + p_o c_t)      h_t = o tanh(c_t)
// params: U (4H, H), P (3, H) rows (p_i, p_f, p_o).
// saved: Hs, Cs (T, B, H) states entering each step; acts (T, B, 4H) = i, f, g, o.
// Backward recomputes c_t and tanh(c_t) from them: against saving tanh(c_t), H
// floats less written and read per row and step.
// ---------------------------------------------------------------------------

// The time loop with any recurrent product: ``recurrent(h, 0, R, b0, b1)`` writes rows b0..b1 of
// R = h U^T (B, 4H); ``recurrent.bytes()`` is the weight it streams per step.
template <typename T, class Recurrent>
std::vector<Tensor> peephole_loop(const Tensor& xp, const T* xb, const std::vector<Tensor>& state, const Tensor& P,
                                  const Recurrent& recurrent, const int64_t* len, Steps st) {
  using A = Act<T>;
  const int64_t B = xp.size(1), H = state[0].size(1), G = 4 * H;
  Tensor out = fresh({st.T, B, H}, xp.options());
  Tensor hT = fresh({B, H}, xp.options()), cT = fresh({B, H}, xp.options());
  Tensor Hs = state_buffer(state[0], st), Cs = state_buffer(state[1], st);
  Tensor acts = fresh({st.acts(), B, 4 * H}, xp.options());
  Tensor R = fresh({B, G}, xp.options());
  const T *p_i = cptr<T>(P), *p_f = p_i + H, *p_o = p_i + 2 * H;
  const Buf<T> X = buf<T>(xp), O = buf<T>(out), AC = buf<T>(acts), HS = buf<T>(Hs), CS = buf<T>(Cs);
  T* const r_all = R.data_ptr<T>();
  for_row_blocks(B, recurrent.bytes(), [&](int64_t b0, int64_t b1) {
    for (int64_t s = 0; s < st.T; ++s) {
      const int64_t t = st.time(s);
      const T* hp = HS.at(st.slot(s));
      const T* cp = CS.at(st.slot(s));
      T* hn = next_state<T>(Hs, hT, st, s);
      T* cn = next_state<T>(Cs, cT, st, s);
      recurrent(hp, T(0), r_all, b0, b1);  // R = h_{t-1} U^T  (B, 4H)
      for_units(b0, b1, H, kGrain / 4, [&](int64_t b, int64_t j0, int64_t j1) {
        const T *hp_b = hp + b * H, *cp_b = cp + b * H;
        T *hn_b = hn + b * H, *cn_b = cn + b * H, *out_b = O.row(t, b);
        if (t >= len[b]) {
          copy_span(hn_b, hp_b, j0, j1), copy_span(cn_b, cp_b, j0, j1), zero_span(out_b, j0, j1);
          return;
        }
        const T* x = X.row(t, b);
        const T* r = r_all + b * G;
        T* a = AC.row(st.act(t), b);
#pragma omp simd
        for (int64_t j = j0; j < j1; ++j) {
          const T c_tm1 = cp_b[j];
          const T i = A::sigmoid(x[j] + xb[j] + r[j] + p_i[j] * c_tm1);
          const T f = A::sigmoid(x[H + j] + xb[H + j] + r[H + j] + p_f[j] * c_tm1);
          const T g = A::tanh(x[2 * H + j] + xb[2 * H + j] + r[2 * H + j]);
          const T c = f * c_tm1 + i * g;
          const T o = A::sigmoid(x[3 * H + j] + xb[3 * H + j] + r[3 * H + j] + p_o[j] * c);
          const T tc = A::tanh(c);
          a[j] = i, a[H + j] = f, a[2 * H + j] = g, a[3 * H + j] = o;
          cn_b[j] = c;
          hn_b[j] = out_b[j] = o * tc;
        }
      });
    }
  });
  if (st.T == 0) hT.copy_(state[0]), cT.copy_(state[1]);
  if (!st.train) return {out, hT, cT};
  return {out, hT, cT, Hs, Cs, acts};
}

template <typename T>
std::vector<Tensor> peephole_forward(const Tensor& xp, const T* xb, const std::vector<Tensor>& state,
                                     const std::vector<Tensor>& params, const int64_t* len, Steps st) {
  const int64_t B = xp.size(1), H = state[0].size(1);
  const StepGemm<T> recurrent(cptr<T>(params[0]), B, 4 * H, H, true);
  return peephole_loop<T>(xp, xb, state, params[1], recurrent, len, st);
}

template <typename T>
std::vector<Tensor> peephole_backward(const Tensor& dout, const std::vector<Tensor>& dfinal,
                                      const std::vector<Tensor>& saved, const std::vector<Tensor>& params,
                                      const int64_t* len, Steps st) {
  using A = Act<T>;
  const Tensor &Hs = saved[0], &Cs = saved[1], &acts = saved[2];
  const Tensor &U = params[0], &P = params[1];
  const int64_t B = dout.size(1), H = dout.size(2), G = 4 * H;
  Tensor dA = fresh({st.T, B, G}, dout.options());
  const StepGemm<T> recurrent(cptr<T>(U), B, H, G, false);
  Tensor dH = dfinal[0].clone(), dC = dfinal[1].clone();  // (B, H): d/d state leaving the current step
  Tensor dP = fresh({B, 3 * H}, dout.options()).zero_();       // per-row sums, reduced over B at the end
  const T *p_i = cptr<T>(P), *p_f = p_i + H, *p_o = p_i + 2 * H;
  const Buf<T> DA = buf<T>(dA), AC = buf<T>(acts), CS = buf<T>(Cs), GO = buf<T>(dout);
  T *const dh_all = dH.data_ptr<T>(), *const dc_all = dC.data_ptr<T>(), *const dp_all = dP.data_ptr<T>();
  for_row_blocks(B, recurrent.bytes(), [&](int64_t b0, int64_t b1) {
    for (int64_t s = st.T - 1; s >= 0; --s) {
      const int64_t t = st.time(s);
      for_units(b0, b1, H, kGrain / 4, [&](int64_t b, int64_t j0, int64_t j1) {
        T* da = DA.row(t, b);
        if (t >= len[b]) {
          for (int64_t k = 0; k < 4; ++k) zero_span(da + k * H, j0, j1);
          return;  // the state, and so its gradient, passes through
        }
        const T *a = AC.row(t, b), *cp = CS.row(t, b), *go = GO.row(t, b);
        T *dh_b = dh_all + b * H, *dc_b = dc_all + b * H, *dp = dp_all + b * 3 * H;
#pragma omp simd
        for (int64_t j = j0; j < j1; ++j) {
          const T i = a[j], f = a[H + j], g = a[2 * H + j], o = a[3 * H + j];
          const T c_tm1 = cp[j], c = f * c_tm1 + i * g, tc = A::tanh(c);
          const T dh = dh_b[j] + go[j];
          const T da_o = dh * tc * o * (1 - o);
          const T dc = dc_b[j] + dh * o * (1 - tc * tc) + da_o * p_o[j];
          const T da_i = dc * g * i * (1 - i);
          const T da_f = dc * c_tm1 * f * (1 - f);
          da[j] = da_i, da[H + j] = da_f, da[2 * H + j] = dc * i * (1 - g * g), da[3 * H + j] = da_o;
          dc_b[j] = dc * f + da_i * p_i[j] + da_f * p_f[j];
          dh_b[j] = 0;  // the GEMM below adds dA_t U
          dp[j] += da_i * c_tm1, dp[H + j] += da_f * c_tm1, dp[2 * H + j] += da_o * c;
        }
      });
      recurrent(DA.at(t), T(1), dh_all, b0, b1);  // dh_{t-1} += dA_t U
    }
  });
  Tensor dU = mm_fresh(dA.view({st.T * B, G}).t(), Hs.view({st.T * B, H}));  // (4H, H), one GEMM
  return {dA, dH, dC, dU, dP.view({B, 3, H}).sum(0)};
}

// ---------------------------------------------------------------------------
// Cells with one state h.
// ---------------------------------------------------------------------------

// The time loops of a cell with one state h (Elman RNN, GRU, JANET).  Forward: R = h_{t-1} U^T at each step,
// then units(x, r, h_{t-1}, h_t, out, acts, j0, j1) on the units j0..j1 of every row still within its
// length (a row past it keeps its state and outputs 0); returns [out, h_T], and for training also
// [Hs (T, B, H) states entering each step, acts (T, B, acts_width)].
template <typename T, typename Units>
std::vector<Tensor> one_state_forward(const Tensor& xp, const Tensor& h0, const Tensor& U, int64_t acts_width,
                                      const int64_t* len, Steps st, const Units& units) {
  const int64_t B = xp.size(1), H = h0.size(1), G = U.size(0);
  Tensor out = fresh({st.T, B, H}, xp.options());
  Tensor hT = fresh({B, H}, xp.options());
  Tensor Hs = state_buffer(h0, st);
  Tensor acts = fresh({st.acts(), B, acts_width}, xp.options());
  Tensor R = fresh({B, G}, xp.options());
  const StepGemm<T> recurrent(cptr<T>(U), B, G, H, true);
  const Buf<T> X = buf<T>(xp), O = buf<T>(out), AC = buf<T>(acts), HS = buf<T>(Hs);
  T* const r_all = R.data_ptr<T>();
  for_row_blocks(B, recurrent.bytes(), [&](int64_t b0, int64_t b1) {
    for (int64_t s = 0; s < st.T; ++s) {
      const int64_t t = st.time(s);
      const T* hp = HS.at(st.slot(s));
      T* hn = next_state<T>(Hs, hT, st, s);
      recurrent(hp, T(0), r_all, b0, b1);  // R = h_{t-1} U^T  (B, G)
      for_units(b0, b1, H, kGrain / 3, [&](int64_t b, int64_t j0, int64_t j1) {
        const T* hp_b = hp + b * H;
        T *hn_b = hn + b * H, *out_b = O.row(t, b);
        if (t >= len[b]) {
          copy_span(hn_b, hp_b, j0, j1), zero_span(out_b, j0, j1);
          return;
        }
        units(X.row(t, b), r_all + b * G, hp_b, hn_b, out_b, AC.row(st.act(t), b), j0, j1);
      });
    }
  });
  if (st.T == 0) hT.copy_(h0);
  if (!st.train) return {out, hT};
  return {out, hT, Hs, acts};
}

// Backward: units(acts, h_{t-1}, dout, dh, da, dr, j0, j1) turns dh (d/d h_t, the gradient from later
// steps without dout_t) into the step's gradients: da = d/d (W x) for the projection's GEMMs, dr =
// d/d (h_{t-1} U^T) where it differs (separate; else dr is da), and dh = the direct path to h_{t-1},
// to which the GEMM then adds dr U.  Returns [dA, dH, dU] and the (T, B, G) dR when separate.
template <typename T, typename Units>
std::vector<Tensor> one_state_backward(const Tensor& dout, const Tensor& dfinal, const Tensor& Hs,
                                       const Tensor& acts, const Tensor& U, bool separate, const int64_t* len,
                                       Steps st, const Units& units) {
  const int64_t B = dout.size(1), H = dout.size(2), G = U.size(0);
  Tensor dA = fresh({st.T, B, G}, dout.options());
  Tensor dR = separate ? fresh({st.T, B, G}, dout.options()) : dA;
  const StepGemm<T> recurrent(cptr<T>(U), B, H, G, false);
  Tensor dH = dfinal.clone();  // (B, H): d/d state leaving the current step
  const Buf<T> DA = buf<T>(dA), DR = buf<T>(dR), AC = buf<T>(acts), HS = buf<T>(Hs), GO = buf<T>(dout);
  T* const dh_all = dH.data_ptr<T>();
  for_row_blocks(B, recurrent.bytes(), [&](int64_t b0, int64_t b1) {
    for (int64_t s = st.T - 1; s >= 0; --s) {
      const int64_t t = st.time(s);
      for_units(b0, b1, H, kGrain / 4, [&](int64_t b, int64_t j0, int64_t j1) {
        T *da = DA.row(t, b), *dr = DR.row(t, b);
        if (t >= len[b]) {
          for (int64_t k = 0; k < G / H; ++k) {
            zero_span(da + k * H, j0, j1);
            if (separate) zero_span(dr + k * H, j0, j1);  // else dr is da
          }
          return;  // the state, and so its gradient, passes through
        }
        units(AC.row(t, b), HS.row(t, b), GO.row(t, b), dh_all + b * H, da, dr, j0, j1);
      });
      recurrent(DR.at(t), T(1), dh_all, b0, b1);  // dh_{t-1} += dR_t U
    }
  });
  Tensor dU = mm_fresh(dR.view({st.T * B, G}).t(), Hs.view({st.T * B, H}));  // (G, H), one GEMM
  if (separate) return {dA, dH, dU, dR};
  return {dA, dH, dU};
}

// ---------------------------------------------------------------------------
// Elman RNN (Elman 1990) in torch.nn.RNN's formulation: h_t = φ(W x + b + h_{t-1} U^T), φ = tanh or
// ReLU (options[0] = 1).  The projection carries both of torch's biases.  params: U (H, H).
// saved: Hs, acts (T, B, H) = h_t, from which φ' is taken (1 - h² for tanh; for ReLU 1 where
// h > 0, else 0, as torch's at 0).
// ---------------------------------------------------------------------------

template <typename T>
std::vector<Tensor> elman_forward(const Tensor& xp, const T* xb, const std::vector<Tensor>& state,
                                  const std::vector<Tensor>& params, const int64_t* len, Steps st, bool relu) {
  using A = Act<T>;
  const int64_t H = state[0].size(1);
  const auto units = [&](auto is_relu) {
    return [&, is_relu](const T* x, const T* r, const T*, T* hn, T* out, T* a, int64_t j0, int64_t j1) {
#pragma omp simd
      for (int64_t j = j0; j < j1; ++j) {
        const T pre = x[j] + xb[j] + r[j];
        const T h = decltype(is_relu)::value ? std::max(pre, T(0)) : A::tanh(pre);
        a[j] = hn[j] = out[j] = h;
      }
    };
  };
  if (relu) return one_state_forward<T>(xp, state[0], params[0], H, len, st, units(std::true_type{}));
  return one_state_forward<T>(xp, state[0], params[0], H, len, st, units(std::false_type{}));
}

template <typename T>
std::vector<Tensor> elman_backward(const Tensor& dout, const std::vector<Tensor>& dfinal,
                                   const std::vector<Tensor>& saved, const std::vector<Tensor>& params,
                                   const int64_t* len, Steps st, bool relu) {
  const auto units = [&](auto is_relu) {
    return [&, is_relu](const T* a, const T*, const T* go, T* dh_b, T* da, T*, int64_t j0, int64_t j1) {
#pragma omp simd
      for (int64_t j = j0; j < j1; ++j) {
        const T h = a[j], dh = dh_b[j] + go[j];
        da[j] = decltype(is_relu)::value ? (h > T(0) ? dh : T(0)) : dh * (1 - h * h);
        dh_b[j] = 0;  // no direct path: the GEMM adds dA_t U
      }
    };
  };
  if (relu)
    return one_state_backward<T>(dout, dfinal[0], saved[0], saved[1], params[0], false, len, st,
                                 units(std::true_type{}));
  return one_state_backward<T>(dout, dfinal[0], saved[0], saved[1], params[0], false, len, st,
                               units(std::false_type{}));
}

// ---------------------------------------------------------------------------
// GRU (Cho et al. 2014) in torch.nn.GRU's formulation, gate order r, z, n:
//   r = σ(a_r + R_r + b_hr)   z = σ(a_z + R_z + b_hz)   n = tanh(a_n + r (R_n + b_hn))
//   h_t = n + z (h_{t-1} - n)        with a = W x + b_i, R = h_{t-1} U^T
// params: U (3H, H), b_h (3H).  saved: Hs, acts (T, B, 4H) = r, z, n, R_n + b_hn.  The
// recurrent side's gradient differs from the input side's in its n part (times r), so backward
// keeps both: dA for the projection's GEMMs, dR for dU, b_h and dh_{t-1}.
// ---------------------------------------------------------------------------

template <typename T>
std::vector<Tensor> gru_forward(const Tensor& xp, const T* xb, const std::vector<Tensor>& state,
                                const std::vector<Tensor>& params, const int64_t* len, Steps st) {
  using A = Act<T>;
  const int64_t H = state[0].size(1);
  const T* bh = cptr<T>(params[1]);
  return one_state_forward<T>(
      xp, state[0], params[0], 4 * H, len, st,
      [&](const T* x, const T* q, const T* hp, T* hn, T* out, T* a, int64_t j0, int64_t j1) {
#pragma omp simd
        for (int64_t j = j0; j < j1; ++j) {
          const T r = A::sigmoid(x[j] + xb[j] + q[j] + bh[j]);
          const T z = A::sigmoid(x[H + j] + xb[H + j] + q[H + j] + bh[H + j]);
          const T rn = q[2 * H + j] + bh[2 * H + j];
          const T n = A::tanh(x[2 * H + j] + xb[2 * H + j] + r * rn);
          a[j] = r, a[H + j] = z, a[2 * H + j] = n, a[3 * H + j] = rn;
          hn[j] = out[j] = n + z * (hp[j] - n);
        }
      });
}

template <typename T>
std::vector<Tensor> gru_backward(const Tensor& dout, const std::vector<Tensor>& dfinal,
                                 const std::vector<Tensor>& saved, const std::vector<Tensor>& params,
                                 const int64_t* len, Steps st) {
  const int64_t H = dout.size(2);
  std::vector<Tensor> g = one_state_backward<T>(
      dout, dfinal[0], saved[0], saved[1], params[0], true, len, st,
      [&](const T* a, const T* hp, const T* go, T* dh_b, T* da, T* dr, int64_t j0, int64_t j1) {
#pragma omp simd
        for (int64_t j = j0; j < j1; ++j) {
          const T r = a[j], z = a[H + j], n = a[2 * H + j], rn = a[3 * H + j];
          const T dh = dh_b[j] + go[j];
          const T da_n = dh * (1 - z) * (1 - n * n);
          const T da_r = da_n * rn * r * (1 - r);
          const T da_z = dh * (hp[j] - n) * z * (1 - z);
          da[j] = dr[j] = da_r;
          da[H + j] = dr[H + j] = da_z;
          da[2 * H + j] = da_n;
          dr[2 * H + j] = da_n * r;
          dh_b[j] = dh * z;  // the GEMM adds dR_t U
        }
      });
  g.back() = column_sums(g.back().view({-1, 3 * H}));  // d b_h = the rows' sum of dR
  return g;
}

// ---------------------------------------------------------------------------
// CIFG (Greff et al. 2017): f = 1 - i.  Gate order i, g, o.
//   c_t = c_{t-1} + i (g - c_{t-1})     h_t = σ(a_o) tanh(c_t)
// params: U (3H, H).  saved: Hs, Cs, acts (T, B, 3H) = i, g, o (backward
// recomputes c_t and tanh(c_t), as peephole's does).
// ---------------------------------------------------------------------------

template <typename T>
std::vector<Tensor> cifg_forward(const Tensor& xp, const T* xb, const std::vector<Tensor>& state,
                                 const std::vector<Tensor>& params, const int64_t* len, Steps st) {
  using A = Act<T>;
  const int64_t B = xp.size(1), H = state[0].size(1), G = 3 * H;
  const Tensor& U = params[0];
  Tensor out = fresh({st.T, B, H}, xp.options());
  Tensor hT = fresh({B, H}, xp.options()), cT = fresh({B, H}, xp.options());
  Tensor Hs = state_buffer(state[0], st), Cs = state_buffer(state[1], st);
  Tensor acts = fresh({st.acts(), B, 3 * H}, xp.options());
  Tensor R = fresh({B, G}, xp.options());
  const StepGemm<T> recurrent(cptr<T>(U), B, G, H, true);
  const Buf<T> X = buf<T>(xp), O = buf<T>(out), AC = buf<T>(acts), HS = buf<T>(Hs), CS = buf<T>(Cs);
  T* const r_all = R.data_ptr<T>();
  for_row_blocks(B, recurrent.bytes(), [&](int64_t b0, int64_t b1) {
    for (int64_t s = 0; s < st.T; ++s) {
      const int64_t t = st.time(s);
      const T* hp = HS.at(st.slot(s));
      const T* cp = CS.at(st.slot(s));
      T* hn = next_state<T>(Hs, hT, st, s);
      T* cn = next_state<T>(Cs, cT, st, s);
      recurrent(hp, T(0), r_all, b0, b1);
      for_units(b0, b1, H, kGrain / 3, [&](int64_t b, int64_t j0, int64_t j1) {
        const T *hp_b = hp + b * H, *cp_b = cp + b * H;
        T *hn_b = hn + b * H, *cn_b = cn + b * H, *out_b = O.row(t, b);
        if (t >= len[b]) {
          copy_span(hn_b, hp_b, j0, j1), copy_span(cn_b, cp_b, j0, j1), zero_span(out_b, j0, j1);
          return;
        }
        const T* x = X.row(t, b);
        const T* r = r_all + b * G;
        T* a = AC.row(st.act(t), b);
#pragma omp simd
        for (int64_t j = j0; j < j1; ++j) {
          const T i = A::sigmoid(x[j] + xb[j] + r[j]);
          const T g = A::tanh(x[H + j] + xb[H + j] + r[H + j]);
          const T o = A::sigmoid(x[2 * H + j] + xb[2 * H + j] + r[2 * H + j]);
          const T c = cp_b[j] + i * (g - cp_b[j]);
          const T tc = A::tanh(c);
          a[j] = i, a[H + j] = g, a[2 * H + j] = o;
          cn_b[j] = c;
          hn_b[j] = out_b[j] = o * tc;
        }
      });
    }
  });
  if (st.T == 0) hT.copy_(state[0]), cT.copy_(state[1]);
  if (!st.train) return {out, hT, cT};
  return {out, hT, cT, Hs, Cs, acts};
}

template <typename T>
std::vector<Tensor> cifg_backward(const Tensor& dout, const std::vector<Tensor>& dfinal,
                                  const std::vector<Tensor>& saved, const std::vector<Tensor>& params,
                                  const int64_t* len, Steps st) {
  using A = Act<T>;
  const Tensor &Hs = saved[0], &Cs = saved[1], &acts = saved[2];
  const Tensor& U = params[0];
  const int64_t B = dout.size(1), H = dout.size(2), G = 3 * H;
  Tensor dA = fresh({st.T, B, G}, dout.options());
  const StepGemm<T> recurrent(cptr<T>(U), B, H, G, false);
  Tensor dH = dfinal[0].clone(), dC = dfinal[1].clone();
  const Buf<T> DA = buf<T>(dA), AC = buf<T>(acts), CS = buf<T>(Cs), GO = buf<T>(dout);
  T *const dh_all = dH.data_ptr<T>(), *const dc_all = dC.data_ptr<T>();
  for_row_blocks(B, recurrent.bytes(), [&](int64_t b0, int64_t b1) {
    for (int64_t s = st.T - 1; s >= 0; --s) {
      const int64_t t = st.time(s);
      for_units(b0, b1, H, kGrain / 4, [&](int64_t b, int64_t j0, int64_t j1) {
        T* da = DA.row(t, b);
        if (t >= len[b]) {
          for (int64_t k = 0; k < 3; ++k) zero_span(da + k * H, j0, j1);
          return;
        }
        const T *a = AC.row(t, b), *cp = CS.row(t, b), *go = GO.row(t, b);
        T *dh_b = dh_all + b * H, *dc_b = dc_all + b * H;
#pragma omp simd
        for (int64_t j = j0; j < j1; ++j) {
          const T i = a[j], g = a[H + j], o = a[2 * H + j];
          const T tc = A::tanh(cp[j] + i * (g - cp[j]));
          const T dh = dh_b[j] + go[j];
          const T dc = dc_b[j] + dh * o * (1 - tc * tc);
          da[j] = dc * (g - cp[j]) * i * (1 - i);
          da[H + j] = dc * i * (1 - g * g);
          da[2 * H + j] = dh * tc * o * (1 - o);
          dc_b[j] = dc * (1 - i);
          dh_b[j] = 0;
        }
      });
      recurrent(DA.at(t), T(1), dh_all, b0, b1);
    }
  });
  Tensor dU = mm_fresh(dA.view({st.T * B, G}).t(), Hs.view({st.T * B, H}));
  return {dA, dH, dC, dU};
}

// ---------------------------------------------------------------------------
// JANET (van der Westhuizen & Lasenby 2018, eq. 6).  Gate order s, c; h = c.
//   c_t = σ(s) c_{t-1} + (1 - σ(s - β)) tanh(a_c)
// params: U (2H, H); option beta.  saved: Hs, acts (T, B, 3H) = σ(s), σ(s - β), tanh(a_c).
// ---------------------------------------------------------------------------

template <typename T>
std::vector<Tensor> janet_forward(const Tensor& xp, const T* xb, const std::vector<Tensor>& state,
                                  const std::vector<Tensor>& params, const int64_t* len, Steps st, T beta) {
  using A = Act<T>;
  const int64_t H = state[0].size(1);
  return one_state_forward<T>(
      xp, state[0], params[0], 3 * H, len, st,
      [&](const T* x, const T* r, const T* hp, T* hn, T* out, T* a, int64_t j0, int64_t j1) {
#pragma omp simd
        for (int64_t j = j0; j < j1; ++j) {
          const T pre = x[j] + xb[j] + r[j];
          const T f = A::sigmoid(pre), u = A::sigmoid(pre - beta);
          const T g = A::tanh(x[H + j] + xb[H + j] + r[H + j]);
          a[j] = f, a[H + j] = u, a[2 * H + j] = g;
          hn[j] = out[j] = f * hp[j] + (1 - u) * g;
        }
      });
}

template <typename T>
std::vector<Tensor> janet_backward(const Tensor& dout, const std::vector<Tensor>& dfinal,
                                   const std::vector<Tensor>& saved, const std::vector<Tensor>& params,
                                   const int64_t* len, Steps st) {
  const int64_t H = dout.size(2);
  return one_state_backward<T>(
      dout, dfinal[0], saved[0], saved[1], params[0], false, len, st,
      [&](const T* a, const T* hp, const T* go, T* dh_b, T* da, T*, int64_t j0, int64_t j1) {
#pragma omp simd
        for (int64_t j = j0; j < j1; ++j) {
          const T f = a[j], u = a[H + j], g = a[2 * H + j];
          const T dc = dh_b[j] + go[j];
          da[j] = dc * hp[j] * f * (1 - f) - dc * g * u * (1 - u);
          da[H + j] = dc * (1 - u) * (1 - g * g);
          dh_b[j] = dc * f;  // the direct path c_{t-1} -> c_t; the GEMM adds dA_t U
        }
      });
}

// Rows per GEMM in the loops that gather several steps of a row block: SRU's
// training forward projects x for about 128 rows at once, and the backward
// passes of SRU (dW) and ln_lstm (dU) add a weight gradient's share of about
// 128 rows at once.  Such GEMMs run efficiently while their
// blocks stay in L2.  Against one dW GEMM over a (T, B, G) dxp after the loop,
// the training step took 2-8% less time at the issue-4 shapes; the chunked
// forward (with f, r kept apart from xp) took 3-5% off again at the second and
// third shapes and was within 1% at the first.
constexpr int64_t kWeightGradRows = 128;

// A weight gradient of one row block, sum over its steps of grad_t^T in_t (G, P):
// each step puts its m rows of the input (P wide) and of the gradient (G wide)
// into rings of about kWeightGradRows rows, and every few steps one GEMM adds the
// rings up while they are in cache.  On the BLAS the sum is kept as its transpose
// (P, G), the orientation MKL ran faster on an Intel Xeon; on the panels as (G, P).
template <typename T>
class GradRing {
 public:
  GradRing(int64_t m, int64_t P, int64_t G, const at::TensorOptions& options)
      : m_(m), P_(P), G_(G), steps_(std::max<int64_t>(1, kWeightGradRows / m)),
        transposed_(!(std::is_same_v<T, float> && panel_products(true))),
        in_(fresh({steps_ * m, P}, options)), grad_(fresh({steps_ * m, G}, options)),
        sum_(transposed_ ? fresh({P, G}, options) : fresh({G, P}, options)) {}
  // Where this step's gradient rows go (m rows of G).
  T* grad_slot() const { return grad_.data_ptr<T>() + filled_ * m_ * G_; }
  // This step's input rows (m rows of P, contiguous); then the step is complete.
  void add_step(const T* in_rows) {
    std::memcpy(in_.data_ptr<T>() + filled_ * m_ * P_, in_rows, sizeof(T) * m_ * P_);
    if (++filled_ == steps_) flush();
  }
  // The block's sum after its last step: (P, G) when transposed(), else (G, P).
  bool transposed() const { return transposed_; }
  Tensor finish() {
    flush();
    return sum_;
  }

 private:
  void flush() {
    if (!filled_) return;
    const int64_t rows = filled_ * m_;
    const T beta = started_ ? T(1) : T(0);
    if constexpr (std::is_same_v<T, float>) {
      if (!transposed_) {
        panel_product(grad_.data_ptr<T>(), true, G_, in_.data_ptr<T>(), false, P_, rows, beta, sum_.data_ptr<T>());
        started_ = true, filled_ = 0;
        return;
      }
    }
    gemm<T>('T', 'N', P_, G_, rows, in_.data_ptr<T>(), grad_.data_ptr<T>(), beta, sum_.data_ptr<T>());
    started_ = true, filled_ = 0;
  }
  int64_t m_, P_, G_, steps_, filled_ = 0;
  bool transposed_, started_ = false;
  Tensor in_, grad_, sum_;
};

// The row blocks' sums of one weight gradient (their rings' results), added in
// the order of their rows (the same result at every run): (G, P).
template <typename T>
class BlockSums {
 public:
  void add(int64_t b0, GradRing<T>& ring) {
    const bool transposed = ring.transposed();
    Tensor sum = ring.finish();
    std::lock_guard<std::mutex> lock(mutex_);
    transposed_ = transposed;
    parts_.emplace_back(b0, std::move(sum));
  }
  Tensor total() {
    std::sort(parts_.begin(), parts_.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<Tensor> sums;
    for (auto& kv : parts_) sums.push_back(kv.second);
    if (transposed_) return transposed_sum<T>(sums);
    for (size_t k = 1; k < sums.size(); ++k) sums[0].add_(sums[k]);
    return sums[0];
  }

 private:
  std::mutex mutex_;
  bool transposed_ = true;
  std::vector<std::pair<int64_t, Tensor>> parts_;
};

// ---------------------------------------------------------------------------
// Layer-normalized LSTM (Ba, Kiros & Hinton 2016, sec. 3.1):
//   a = LN(W x_t; α_1) + LN(h_{t-1} U^T; α_2) + b
//   c_t = σ(a_f) c_{t-1} + σ(a_i) tanh(a_g)
//   h_t = σ(a_o) tanh(LN(c_t; γ, β))
// LN(v)_k = (v_k - mean v) / sqrt(var v + eps) * gain_k (+ shift_k), biased var.
// The kernel normalizes W x itself (xp = W x, no bias), so that the input
// side needs no separate LayerNorm and bias passes over (T, B, 4H).  Backward
// does the input side's LayerNorm backward row by row in the time loop, right
// after the row's gate derivatives, while they are still in cache.
// params: U (4H, H), α_1 (4H), b (4H), α_2 (4H), γ (H), β (H);
// options: the three eps.
// saved: xp, Hs, Cs; nhat (T, B, 4H) normalized h U^T; acts (T, B, 4H) = i, f,
// g, o; stats (T, B, 5) = mean and rstd of W x, rstd of h U^T and of c_t, mean
// of c_t; the final c.  Backward recomputes ĉ (normalized c_t) and tanh(γ ĉ +
// β) from c_t, which it reads one step earlier anyway: against storing them,
// 2H floats less written and read per row and step.
// ---------------------------------------------------------------------------

// mean and 1 / sqrt(var + eps) of v[0..n), in one pass: the sums of d = v - v[0]
// and of d², var = mean(d²) - mean(d)².  Shifting by a sample keeps mean(d) of
// the order of the spread, so the subtraction loses few bits (the "shifted
// data" algorithm; Chan, Golub & LeVeque 1983).
template <typename T>
SEQLAB_INLINE void moments(const T* v, int64_t n, T eps, T& mean, T& rstd) {
  const T shift = v[0];
  T sum = 0, sq = 0;
#pragma omp simd reduction(+ : sum, sq)
  for (int64_t k = 0; k < n; ++k) {
    const T d = v[k] - shift;
    sum += d, sq += d * d;
  }
  const T m = sum / n;
  mean = shift + m;
  rstd = 1 / std::sqrt(std::max(sq / n - m * m, T(0)) + eps);
}

template <typename T>
std::vector<Tensor> ln_lstm_forward(const Tensor& xp, const std::vector<Tensor>& state, const std::vector<Tensor>& params,
                                    const int64_t* len, Steps st, T eps_x, T eps_r, T eps_c) {
  using A = Act<T>;
  const int64_t B = xp.size(1), H = state[0].size(1), G = 4 * H;
  const Tensor& U = params[0];
  const T *alpha1 = cptr<T>(params[1]), *bias = cptr<T>(params[2]), *alpha2 = cptr<T>(params[3]);
  const T *gamma = cptr<T>(params[4]), *shift = cptr<T>(params[5]);
  Tensor out = fresh({st.T, B, H}, xp.options());
  Tensor hT = fresh({B, H}, xp.options()), cT = fresh({B, H}, xp.options());
  Tensor Hs = state_buffer(state[0], st), Cs = state_buffer(state[1], st);
  Tensor nhat = fresh({st.acts(), B, G}, xp.options());
  Tensor acts = fresh({st.acts(), B, 4 * H}, xp.options());
  Tensor stats = fresh({st.acts(), B, 5}, xp.options());
  Tensor R = fresh({B, G}, xp.options());
  const StepGemm<T> recurrent(cptr<T>(U), B, G, H, true);
  const Buf<T> X = buf<T>(xp), O = buf<T>(out), N = buf<T>(nhat), AC = buf<T>(acts), S = buf<T>(stats);
  const Buf<T> HS = buf<T>(Hs), CS = buf<T>(Cs);
  T* const r_all = R.data_ptr<T>();
  for_row_blocks(B, recurrent.bytes(), [&](int64_t b0, int64_t b1) {
    for (int64_t s = 0; s < st.T; ++s) {
      const int64_t t = st.time(s), k = st.act(t);
      const T* hp = HS.at(st.slot(s));
      const T* cp = CS.at(st.slot(s));
      T* hn = next_state<T>(Hs, hT, st, s);
      T* cn = next_state<T>(Cs, cT, st, s);
      recurrent(hp, T(0), r_all, b0, b1);  // R = h_{t-1} U^T  (B, 4H)
      for_rows(b0, b1, 8 * G, [&](int64_t b) {
        const T *hp_b = hp + b * H, *cp_b = cp + b * H;
        T *hn_b = hn + b * H, *cn_b = cn + b * H, *out_b = O.row(t, b);
        if (t >= len[b]) {
          copy_span(hn_b, hp_b, 0, H), copy_span(cn_b, cp_b, 0, H), zero_span(out_b, 0, H);
          return;
        }
        const T *x = X.row(t, b), *r = r_all + b * G;
        T *n = N.row(k, b), *a = AC.row(k, b), *stat = S.row(k, b);
        T mean_x, rstd_x, mean_r, rstd_r, mean_c, rstd_c;
        moments(x, G, eps_x, mean_x, rstd_x);
        moments(r, G, eps_r, mean_r, rstd_r);
#pragma omp simd
        for (int64_t q = 0; q < G; ++q) {
          n[q] = (r[q] - mean_r) * rstd_r;
          // The gate pre-activations, kept in the row of acts until the gate loop below.
          a[q] = alpha1[q] * (x[q] - mean_x) * rstd_x + bias[q] + alpha2[q] * n[q];
        }
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const T i = A::sigmoid(a[j]), f = A::sigmoid(a[H + j]), g = A::tanh(a[2 * H + j]);
          const T o = A::sigmoid(a[3 * H + j]);
          a[j] = i, a[H + j] = f, a[2 * H + j] = g, a[3 * H + j] = o;
          cn_b[j] = f * cp_b[j] + i * g;
        }
        moments(cn_b, H, eps_c, mean_c, rstd_c);
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const T chat = (cn_b[j] - mean_c) * rstd_c;
          hn_b[j] = out_b[j] = a[3 * H + j] * A::tanh(gamma[j] * chat + shift[j]);
        }
        stat[0] = mean_x, stat[1] = rstd_x, stat[2] = rstd_r, stat[3] = rstd_c, stat[4] = mean_c;
      });
    }
  });
  if (st.T == 0) hT.copy_(state[0]), cT.copy_(state[1]);
  if (!st.train) return {out, hT, cT};
  return {out, hT, cT, xp, Hs, Cs, nhat, acts, stats, cT.clone()};
}

// Cell-norm backward of one row, first half: recomputes ĉ = (c_t - mean) rstd and tc = tanh(γ ĉ + β)
// into ct (2H: ĉ, tc), accumulates dγ += dy ĉ and dβ += dy for dy = dh_t o (1 - tc²) and returns the
// means of dĉ = dy γ and dĉ ĉ.
template <typename T>
SEQLAB_OUTLINE void ln_cell_sums(const T* a, const T* c, T mean, T rstd, const T* dh, const T* go, const T* gamma,
                                 const T* shift, T* d_gamma, T* d_shift, int64_t H, T* ct, T& m1, T& m2) {
  using A = Act<T>;
  T s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
  for (int64_t j = 0; j < H; ++j) {
    const T chat = (c[j] - mean) * rstd;
    const T tc = A::tanh(gamma[j] * chat + shift[j]);
    ct[j] = chat, ct[H + j] = tc;
    const T o = a[3 * H + j];
    const T dy = (dh[j] + go[j]) * o * (1 - tc * tc);
    d_gamma[j] += dy * chat;
    d_shift[j] += dy;
    s1 += dy * gamma[j];
    s2 += dy * gamma[j] * chat;
  }
  m1 = s1 / H, m2 = s2 / H;
}

// Recurrent-norm backward of one row: dr = rstd (da α_2 - mean(da α_2) - n̂ mean(da α_2 n̂)).
template <typename T>
SEQLAB_OUTLINE void ln_recurrent_backward(const T* da, const T* alpha2, const T* n, T rstd, int64_t G, T* dr) {
  T s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
  for (int64_t q = 0; q < G; ++q) {
    const T dn = da[q] * alpha2[q];
    s1 += dn, s2 += dn * n[q];
  }
  const T u1 = s1 / G, u2 = s2 / G;
#pragma omp simd
  for (int64_t q = 0; q < G; ++q) dr[q] = rstd * (da[q] * alpha2[q] - u1 - n[q] * u2);
}

// Input-norm backward of one row: adds the row's share of dα_1, db and dα_2 to
// the sums and turns da into d/d (W x) in place.
template <typename T>
SEQLAB_OUTLINE void ln_input_backward(T* da, const T* x, const T* n, const T* alpha1, T mean, T rstd, int64_t G,
                                      T* d_alpha1, T* d_bias, T* d_alpha2) {
  T s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
  for (int64_t q = 0; q < G; ++q) {
    const T d = da[q], xhat = (x[q] - mean) * rstd;
    d_alpha1[q] += d * xhat, d_bias[q] += d, d_alpha2[q] += d * n[q];
    s1 += d * alpha1[q], s2 += d * alpha1[q] * xhat;
  }
  const T w1 = s1 / G, w2 = s2 / G;
#pragma omp simd
  for (int64_t q = 0; q < G; ++q) da[q] = rstd * (da[q] * alpha1[q] - w1 - (x[q] - mean) * rstd * w2);
}

template <typename T>
std::vector<Tensor> ln_lstm_backward(const Tensor& dout, const std::vector<Tensor>& dfinal,
                                     const std::vector<Tensor>& saved, const Tensor& x, const Tensor& W,
                                     const std::vector<Tensor>& params, const int64_t* len, Steps st, bool need_dx) {
  const Tensor &xp = saved[0], &Hs = saved[1], &Cs = saved[2], &nhat = saved[3], &acts = saved[4], &stats = saved[5];
  const Tensor& c_last = saved[6];
  const Tensor& U = params[0];
  const T *alpha1 = cptr<T>(params[1]), *alpha2 = cptr<T>(params[3]), *gamma = cptr<T>(params[4]);
  const T* shift = cptr<T>(params[5]);
  const int64_t B = dout.size(1), H = dout.size(2), G = 4 * H, I = x.size(2);
  // The weight gradients: where W and U together take at most half of a core's L2, in the loop:
  // dx_t = dxp_t W for the block's rows, and dU^T and dW^T from rings of dR_t = d/d (h_{t-1} U^T)
  // and d/d (W x) (4-5% less time each at T=200, B=16, H=128).  With larger weights that slowed
  // the step (in-loop dx 3% at H=256; the dU ring 1-7% at H = 256-512 on a Zen 4 with the panels'
  // products, within 1% when it was first measured with MKL's), so dxp and dR are kept for
  // whole-sequence GEMMs after the loop.
  const bool in_loop = G * (I + H) * static_cast<int64_t>(sizeof(T)) <= l2_bytes() / 2;
  Tensor dxp = in_loop ? Tensor() : fresh({st.T, B, G}, dout.options());
  Tensor dR = in_loop ? Tensor() : fresh({st.T, B, G}, dout.options());
  T* const dR_all = in_loop ? nullptr : dR.data_ptr<T>();
  Tensor dx = need_dx ? fresh({st.T, B, I}, dout.options()) : Tensor();
  T* const dx_all = need_dx ? dx.data_ptr<T>() : nullptr;
  T* const dxp_all = in_loop ? nullptr : dxp.data_ptr<T>();
  const T* const x_all = x.data_ptr<T>();
  std::optional<StepGemm<T>> input_back;  // dx_t = dxp_t W
  if (in_loop) input_back.emplace(cptr<T>(W), B, I, G, false);
  Tensor dH = dfinal[0].clone(), dC = dfinal[1].clone();
  // Per-row (or per-row-block) sums for γ and β, reduced over B at the end (as are those for α_1, b
  // and α_2).
  Tensor dP = fresh({B, 2 * H}, dout.options()).zero_();
  const StepGemm<T> recurrent(cptr<T>(U), B, H, G, false);
  const Buf<T> X = buf<T>(xp), N = buf<T>(nhat), AC = buf<T>(acts);
  const T* const hs_all = Hs.data_ptr<T>();
  BlockSums<T> dU, dW;
  const Buf<T> S = buf<T>(stats), CS = buf<T>(Cs), GO = buf<T>(dout);
  T *const dh_all = dH.data_ptr<T>(), *const dc_all = dC.data_ptr<T>(), *const dp_all = dP.data_ptr<T>();
  Tensor sums = fresh({B, 3 * G}, dout.options()).zero_();  // per row: dα_1, db, dα_2
  T* const sums_all = sums.data_ptr<T>();
  Tensor cell = fresh({B, 2 * H}, dout.options());  // per row: ĉ and tanh(γ ĉ + β) of the step
  T* const cell_all = cell.data_ptr<T>();
  const T* const c_last_all = c_last.data_ptr<T>();
  for_row_blocks(B, recurrent.bytes(), [&](int64_t b0, int64_t b1) {
    // With small weights dR_t and h_{t-1} of the block's rows go into rings for dU^T, as in SRU's
    // backward, and d/d (W x) and x into rings for dW^T.
    const int64_t m = b1 - b0;
    // Inside a thread's row block its rows run in order on this thread, so they share one row of the
    // parameter sums (the block's first, kept in L1; about 1% less time at H=256); where the rows run
    // in parallel (for_row_blocks' fallback), each keeps its own.
    const bool blockwise = at::in_parallel_region();
    std::optional<GradRing<T>> rec_ring, in_ring;
    if (in_loop) rec_ring.emplace(m, H, G, dout.options()), in_ring.emplace(m, I, G, dout.options());
    for (int64_t s = st.T - 1; s >= 0; --s) {
      const int64_t t = st.time(s);
      T* const slot = in_loop ? rec_ring->grad_slot() : dR_all + (t * B + b0) * G;
      T* const gslot = in_loop ? in_ring->grad_slot() : dxp_all + (t * B + b0) * G;  // d/d (W x), rows b0..b1
      for_rows(b0, b1, 8 * G, [&](int64_t b) {
        const int64_t row = blockwise ? b0 : b;
        T *da = gslot + (b - b0) * G, *dr = slot + (b - b0) * G;
        if (t >= len[b]) {
          zero_span(da, 0, G), zero_span(dr, 0, G);
          return;
        }
        const T *a = AC.row(t, b), *cp = CS.row(t, b), *go = GO.row(t, b);
        T *dh_b = dh_all + b * H, *dc_b = dc_all + b * H;
        T *d_gamma = dp_all + row * 2 * H, *d_shift = d_gamma + H;
        const T rstd_r = S.row(t, b)[2], rstd_c = S.row(t, b)[3], mean_c = S.row(t, b)[4];
        // c_t, the state that left this step: the next step's slot, or the final c.
        const T* c_t = s + 1 < st.T ? CS.row(st.time(s + 1), b) : c_last_all + b * H;
        // h = o tanh(y), y = γ ĉ + β; LN backward: dc = rstd (dĉ - mean(dĉ) - ĉ mean(dĉ ĉ)), dĉ = dy γ.
        T m1, m2;
        T* const ct = cell_all + b * 2 * H;
        ln_cell_sums(a, c_t, mean_c, rstd_c, dh_b, go, gamma, shift, d_gamma, d_shift, H, ct, m1, m2);
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
          const T i = a[j], f = a[H + j], g = a[2 * H + j], o = a[3 * H + j], chat = ct[j], tc = ct[H + j];
          const T dh = dh_b[j] + go[j];
          const T dchat = dh * o * (1 - tc * tc) * gamma[j];
          const T dc = dc_b[j] + rstd_c * (dchat - m1 - chat * m2);
          da[j] = dc * g * i * (1 - i);
          da[H + j] = dc * cp[j] * f * (1 - f);
          da[2 * H + j] = dc * i * (1 - g * g);
          da[3 * H + j] = dh * tc * o * (1 - o);
          dc_b[j] = dc * f;
          dh_b[j] = 0;
        }
        ln_recurrent_backward(da, alpha2, N.row(t, b), rstd_r, G, dr);
        // The input side's LayerNorm backward while the row is in cache: da becomes d/d (W x), and
        // the step's share of dα_1, db and dα_2 goes to the row's sums.
        const T* stat = S.row(t, b);
        T* acc = sums_all + row * 3 * G;
        ln_input_backward(da, X.row(t, b), N.row(t, b), alpha1, stat[0], stat[1], G, acc, acc + G, acc + 2 * G);
      });
      recurrent(slot, T(1), dh_all + b0 * H, 0, m);  // dh_{t-1} += dR_t U
      if (in_loop && need_dx) (*input_back)(gslot, T(0), dx_all + (t * B + b0) * I, 0, m);
      if (in_loop) rec_ring->add_step(hs_all + (t * B + b0) * H), in_ring->add_step(x_all + (t * B + b0) * I);
    }
    if (in_loop) dU.add(b0, *rec_ring), dW.add(b0, *in_ring);
  });
  // With larger weights, dx, dW and dU as one GEMM each over all steps.
  Tensor dW_total, dU_total;
  if (in_loop) {
    dW_total = dW.total(), dU_total = dU.total();
  } else {
    dU_total = mm_fresh(dR.view({st.T * B, G}).t(), Hs.view({st.T * B, H}));
    const Tensor dxp2 = dxp.view({st.T * B, G}), x2 = x.view({st.T * B, I});
    dW_total = mm_fresh(dxp2.t(), x2);
    if (need_dx) {
      Tensor dx2 = dx.view({st.T * B, I});
      mm_into(dx2, dxp2, W);
    }
  }
  Tensor p = sums.sum(0), q = dP.sum(0);
  return {dW_total, dH, dC, dU_total, p.slice(0, 0, G), p.slice(0, G, 2 * G), p.slice(0, 2 * G, 3 * G),
          q.slice(0, 0, H), q.slice(0, H, 2 * H), dx};
}

// ---------------------------------------------------------------------------
// Nested LSTM (Moniz & Krueger 2018, sec. 3), depth 2:
//   i, f, o = σ(a_·)  g = tanh(a_g)   z = [x̃, h̃] = [i g, f c_{t-1}]
//   b = z [V_i, V_h]^T + b̃          (one GEMM with K = 2H per step)
//   c̃_t = σ(b_f) c̃_{t-1} + σ(b_i) tanh(b_g)    c_t = σ(b_o) tanh(c̃_t)
//   h_t = o tanh(c_t)
// params: U (4H, H), V_i (4H, H), V_h (4H, H), b̃ (4H).
// saved: Hs, Cs, Ks (inner c̃) entering each step; outer (T, B, 4H) = i, f, g, o;
// Z (T, B, 2H); inner (T, B, 4H) = ĩ, f̃, g̃, õ; V = [V_i, V_h] (4H, 2H).  Backward
// recomputes c̃_t, tanh(c̃_t), c_t and tanh(c_t) from the inner gates and c̃_{t-1}:
// against saving the two tanh, 2H floats less written and read per row and step.
// ---------------------------------------------------------------------------

template <typename T>
std::vector<Tensor> nested_forward(const Tensor& xp, const T* xb, const std::vector<Tensor>& state,
                                   const std::vector<Tensor>& params, const int64_t* len, Steps st) {
  using A = Act<T>;
  const int64_t B = xp.size(1), H = state[0].size(1), G = 4 * H;
  const Tensor& U = params[0];
  Tensor V = fresh({G, 2 * H}, xp.options());  // [V_i, V_h]  (4H, 2H)
  V.slice(1, 0, H).copy_(params[1]);
  V.slice(1, H, 2 * H).copy_(params[2]);
  const T* bias = cptr<T>(params[3]);
  Tensor out = fresh({st.T, B, H}, xp.options());
  Tensor hT = fresh({B, H}, xp.options()), cT = fresh({B, H}, xp.options()), kT = fresh({B, H}, xp.options());
  Tensor Hs = state_buffer(state[0], st), Cs = state_buffer(state[1], st), Ks = state_buffer(state[2], st);
  Tensor outer = fresh({st.acts(), B, G}, xp.options());
  Tensor Z = fresh({st.acts(), B, 2 * H}, xp.options()).zero_();
  Tensor inner = fresh({st.acts(), B, 4 * H}, xp.options());
  Tensor R = fresh({B, G}, xp.options()), Q = fresh({B, G}, xp.options());
  const StepGemm<T> recurrent(cptr<T>(U), B, G, H, true), inner_gemm(V.data_ptr<T>(), B, G, 2 * H, true);
  const Buf<T> X = buf<T>(xp), O = buf<T>(out), OUTER = buf<T>(outer), ZB = buf<T>(Z), INNER = buf<T>(inner);
  const Buf<T> HS = buf<T>(Hs), CS = buf<T>(Cs), KS = buf<T>(Ks);
  T *const r_all = R.data_ptr<T>(), *const q_all = Q.data_ptr<T>();
  for_row_blocks(B, recurrent.bytes() + inner_gemm.bytes(), [&](int64_t b0, int64_t b1) {
    for (int64_t s = 0; s < st.T; ++s) {
      const int64_t t = st.time(s), k = st.act(t);
      const T *hp = HS.at(st.slot(s)), *cp = CS.at(st.slot(s)), *kp = KS.at(st.slot(s));
      T *hn = next_state<T>(Hs, hT, st, s), *cn = next_state<T>(Cs, cT, st, s), *kn = next_state<T>(Ks, kT, st, s);
      recurrent(hp, T(0), r_all, b0, b1);
      for_units(b0, b1, H, kGrain / 4, [&](int64_t b, int64_t j0, int64_t j1) {
        if (t >= len[b]) return;  // z stays 0 (zeros at allocation; rows are only written when valid)
        const T *x = X.row(t, b), *r = r_all + b * G, *cp_b = cp + b * H;
        T *a = OUTER.row(k, b), *z = ZB.row(k, b);
#pragma omp simd
        for (int64_t j = j0; j < j1; ++j) {
          const T i = A::sigmoid(x[j] + xb[j] + r[j]);
          const T f = A::sigmoid(x[H + j] + xb[H + j] + r[H + j]);
          const T g = A::tanh(x[2 * H + j] + xb[2 * H + j] + r[2 * H + j]);
          const T o = A::sigmoid(x[3 * H + j] + xb[3 * H + j] + r[3 * H + j]);
          a[j] = i, a[H + j] = f, a[2 * H + j] = g, a[3 * H + j] = o;
          z[j] = i * g, z[H + j] = f * cp_b[j];
        }
      });
      inner_gemm(ZB.at(k), T(0), q_all, b0, b1);  // Q = z V^T  (B, 4H)
      for_units(b0, b1, H, kGrain / 4, [&](int64_t b, int64_t j0, int64_t j1) {
        const T *hp_b = hp + b * H, *cp_b = cp + b * H, *kp_b = kp + b * H;
        T *hn_b = hn + b * H, *cn_b = cn + b * H, *kn_b = kn + b * H, *out_b = O.row(t, b);
        if (t >= len[b]) {
          copy_span(hn_b, hp_b, j0, j1), copy_span(cn_b, cp_b, j0, j1), copy_span(kn_b, kp_b, j0, j1);
          zero_span(out_b, j0, j1);
          return;
        }
        const T *q = q_all + b * G, *a = OUTER.row(k, b);
        T* m = INNER.row(k, b);
        // Two passes: each activation's chain (polynomial, then a division) is long, and one pass
        // chaining the gates, tanh(k) and tanh(c) kept too few units in flight to hide it.
#pragma omp simd
        for (int64_t j = j0; j < j1; ++j) {
          const T i = A::sigmoid(q[j] + bias[j]);
          const T f = A::sigmoid(q[H + j] + bias[H + j]);
          const T g = A::tanh(q[2 * H + j] + bias[2 * H + j]);
          const T o = A::sigmoid(q[3 * H + j] + bias[3 * H + j]);
          m[j] = i, m[H + j] = f, m[2 * H + j] = g, m[3 * H + j] = o;
          kn_b[j] = f * kp_b[j] + i * g;
        }
#pragma omp simd
        for (int64_t j = j0; j < j1; ++j) {
          const T c = m[3 * H + j] * A::tanh(kn_b[j]);
          cn_b[j] = c;
          hn_b[j] = out_b[j] = a[3 * H + j] * A::tanh(c);
        }
      });
    }
  });
  if (st.T == 0) hT.copy_(state[0]), cT.copy_(state[1]), kT.copy_(state[2]);
  if (!st.train) return {out, hT, cT, kT};
  return {out, hT, cT, kT, Hs, Cs, Ks, outer, Z, inner, V};
}

template <typename T>
std::vector<Tensor> nested_backward(const Tensor& dout, const std::vector<Tensor>& dfinal,
                                    const std::vector<Tensor>& saved, const std::vector<Tensor>& params,
                                    const int64_t* len, Steps st) {
  using A = Act<T>;
  const Tensor &Hs = saved[0], &Cs = saved[1], &Ks = saved[2], &outer = saved[3], &Z = saved[4], &inner = saved[5],
               &V = saved[6];
  const Tensor& U = params[0];
  const int64_t B = dout.size(1), H = dout.size(2), G = 4 * H;
  Tensor dA = fresh({st.T, B, G}, dout.options());  // outer pre-activations
  Tensor dQ = fresh({st.T, B, G}, dout.options());  // inner pre-activations
  const StepGemm<T> recurrent(cptr<T>(U), B, H, G, false), inner_gemm(V.data_ptr<T>(), B, 2 * H, G, false);
  Tensor dZ = fresh({B, 2 * H}, dout.options());
  Tensor dH = dfinal[0].clone(), dC = dfinal[1].clone(), dK = dfinal[2].clone();
  const Buf<T> DA = buf<T>(dA), DQ = buf<T>(dQ), OUTER = buf<T>(outer), INNER = buf<T>(inner), KS = buf<T>(Ks);
  const Buf<T> CS = buf<T>(Cs), GO = buf<T>(dout);
  T *const dh_all = dH.data_ptr<T>(), *const dc_all = dC.data_ptr<T>(), *const dk_all = dK.data_ptr<T>();
  T* const dz_all = dZ.data_ptr<T>();
  for_row_blocks(B, recurrent.bytes() + inner_gemm.bytes(), [&](int64_t b0, int64_t b1) {
    for (int64_t s = st.T - 1; s >= 0; --s) {
      const int64_t t = st.time(s);
      for_units(b0, b1, H, kGrain / 4, [&](int64_t b, int64_t j0, int64_t j1) {
        T *da = DA.row(t, b), *dq = DQ.row(t, b);
        if (t >= len[b]) {
          for (int64_t g = 0; g < 4; ++g) zero_span(da + g * H, j0, j1), zero_span(dq + g * H, j0, j1);
          return;
        }
        const T *a = OUTER.row(t, b), *m = INNER.row(t, b);
        const T *kp = KS.row(t, b), *go = GO.row(t, b);
        T *dh_b = dh_all + b * H, *dc_b = dc_all + b * H, *dk_b = dk_all + b * H;
#pragma omp simd
        for (int64_t j = j0; j < j1; ++j) {
          const T o = a[3 * H + j];
          const T i = m[j], f = m[H + j], g = m[2 * H + j], oi = m[3 * H + j];
          const T tk = A::tanh(f * kp[j] + i * g), tc = A::tanh(oi * tk);
          const T dh = dh_b[j] + go[j];
          da[3 * H + j] = dh * tc * o * (1 - o);
          const T dc = dc_b[j] + dh * o * (1 - tc * tc);
          const T dk = dk_b[j] + dc * oi * (1 - tk * tk);
          dq[j] = dk * g * i * (1 - i);
          dq[H + j] = dk * kp[j] * f * (1 - f);
          dq[2 * H + j] = dk * i * (1 - g * g);
          dq[3 * H + j] = dc * tk * oi * (1 - oi);
          dk_b[j] = dk * f;
        }
      });
      inner_gemm(DQ.at(t), T(0), dz_all, b0, b1);  // dz = dQ_t V  (B, 2H)
      for_units(b0, b1, H, kGrain / 4, [&](int64_t b, int64_t j0, int64_t j1) {
        if (t >= len[b]) return;  // dA row zeroed above
        const T *a = OUTER.row(t, b), *cp = CS.row(t, b), *dz = dz_all + b * 2 * H;
        T *da = DA.row(t, b), *dh_b = dh_all + b * H, *dc_b = dc_all + b * H;
#pragma omp simd
        for (int64_t j = j0; j < j1; ++j) {
          const T i = a[j], f = a[H + j], g = a[2 * H + j];
          const T dx = dz[j], dhk = dz[H + j];  // d x̃, d h̃
          da[j] = dx * g * i * (1 - i);
          da[H + j] = dhk * cp[j] * f * (1 - f);
          da[2 * H + j] = dx * i * (1 - g * g);
          dc_b[j] = dhk * f;
          dh_b[j] = 0;
        }
      });
      recurrent(DA.at(t), T(1), dh_all, b0, b1);
    }
  });
  Tensor dU = mm_fresh(dA.view({st.T * B, G}).t(), Hs.view({st.T * B, H}));
  Tensor dV = mm_fresh(dQ.view({st.T * B, G}).t(), Z.view({st.T * B, 2 * H}));  // (4H, 2H), one GEMM
  Tensor dbias = dQ.view({st.T * B, G}).sum(0);
  return {dA, dH, dC, dK, dU, dV.slice(1, 0, H), dV.slice(1, H, 2 * H), dbias};
}

// ---------------------------------------------------------------------------
// SRU (Lei et al. 2018, eq. 3-7).  xp = [W x, W_f x, W_r x (, W_h x)] (T, B, 3H or 4H).
//   f = σ(a_f + v_f c_{t-1} + b_f)   r = σ(a_r + v_r c_{t-1} + b_r)
//   c_t = f c_{t-1} + (1 - f) W x    h_t = r g(c_t) + (1 - r) highway
// No matrix touches the state, so the time loop is pointwise and memory-bound:
// over (T, B, ·) buffers that do not fit in cache it streams xp, x, c and the
// outputs at about 12 GB/s on two cores.  So the input projection is not one
// GEMM before the loop, as in the other kernels, but part of it: each thread
// takes its block of batch rows through all steps (for_row_blocks), computing
// its rows of xp = x W^T (StepGemm) for one step (inference) or a few steps
// (training, kWeightGradRows rows) and at once the gate math on them while they
// are in cache; xp itself is never kept.  Training keeps c_t and the gates f
// and r (with W_h x when there is one), so backward recomputes no sigmoid and
// never needs W x:
//   dL/da_f = dc (c_{t-1} - W x) f (1 - f) = dc f (c_{t-1} - c_t).
// Backward computes dx_t = dxp_t W (+ the highway's gradient) for its rows
// right after their gate derivatives, and adds their share of
// dW^T = x^T dxp every few steps from a small ring of dxp and x rows still in
// cache: no (T, B, G) dxp is written and read back.  Each row block sums its
// own dW^T, and the blocks' sums are added in row order (for a given thread
// count the result is the same at every run, as the BLAS's own split of one
// big GEMM over threads is).
// params: v (2H), b (2H); the highway is x itself when ``plain`` (input size ==
// hidden size, no W_h); option: g = tanh (1) or identity (0).
// saved: gates (T, B, 2H or 3H) = [f, r (, W_h x)], c_0 (B, H), Cn (T, B, H) c after each step.
// ---------------------------------------------------------------------------

// One step of units j0..j1 of one row; c (the state) is updated in place.
// Training (Train) keeps c_t and the gates f, r (, and a projected highway) in ``gates``.
template <typename T, bool Tanh, bool Train>
SEQLAB_INLINE void sru_units(const T* x, const T* highway, const T* v, const T* bias, T* c, T* h, T* out, T* c_saved,
                             T* gates, int64_t H, int64_t j0, int64_t j1) {
  using A = Act<T>;
#pragma omp simd
  for (int64_t j = j0; j < j1; ++j) {
    const T c_tm1 = c[j], wx = x[j], hw = highway[j];
    const T f = A::sigmoid(x[H + j] + v[j] * c_tm1 + bias[j]);
    const T r = A::sigmoid(x[2 * H + j] + v[H + j] * c_tm1 + bias[H + j]);
    const T cc = wx + f * (c_tm1 - wx);  // = f c_{t-1} + (1 - f) W x_t
    const T g = Tanh ? A::tanh(cc) : cc;
    const T hh = hw + r * (g - hw);  // = r g(c_t) + (1 - r) highway
    c[j] = cc;
    h[j] = out[j] = hh;
    if (Train) c_saved[j] = cc, gates[j] = f, gates[H + j] = r;
  }
}

// Backward of one step from the kept gates f, r (see above).
template <typename T, bool Tanh>
SEQLAB_INLINE void sru_units_backward(const T* gates, const T* highway, const T* c_prev, const T* c_now, const T* go,
                                      const T* v, T* dh_b, T* dc_b, T* dv_b, T* db_b, T* d, T* d_highway, int64_t H,
                                      int64_t j0, int64_t j1) {
#pragma omp simd
  for (int64_t j = j0; j < j1; ++j) {
    const T c_tm1 = c_prev[j], c_t = c_now[j], hw = highway[j];
    const T f = gates[j], r = gates[H + j];
    const T g = Tanh ? Act<T>::tanh(c_t) : c_t;
    const T dh = dh_b[j] + go[j];
    const T dg = dh * r;
    const T dc = dc_b[j] + (Tanh ? dg * (1 - g * g) : dg);
    const T da_f = dc * f * (c_tm1 - c_t);
    const T da_r = dh * (g - hw) * r * (1 - r);
    d[j] = dc * (1 - f), d[H + j] = da_f, d[2 * H + j] = da_r, d_highway[j] = dh * (1 - r);
    dv_b[j] += da_f * c_tm1, dv_b[H + j] += da_r * c_tm1;
    db_b[j] += da_f, db_b[H + j] += da_r;
    dc_b[j] = dc * f + da_f * v[j] + da_r * v[H + j];
    dh_b[j] = 0;  // h_{t-1} does not feed step t
  }
}


template <typename T>
std::vector<Tensor> sru_forward(const Tensor& x, const Tensor& W, const std::vector<Tensor>& state,
                                const std::vector<Tensor>& params, const int64_t* len, Steps st, bool use_tanh,
                                bool plain) {
  const int64_t B = x.size(1), I = x.size(2), H = state[0].size(1), G = W.size(0), S = plain ? 2 * H : 3 * H;
  const T *v = cptr<T>(params[0]), *bias = cptr<T>(params[1]);
  Tensor out = fresh({st.T, B, H}, x.options());
  Tensor hT = state[0].clone(), cT = state[1].clone();  // updated in place through time
  const StepGemm<T> projection(cptr<T>(W), B, G, I, true);
  const Buf<T> X = buf<T>(x), O = buf<T>(out);
  T *h = hT.data_ptr<T>(), *c = cT.data_ptr<T>();
  if (!st.train) {
    // Inference: each step's rows of xp into one scratch, then its gate math while they are in L1.
    Tensor xp = fresh({B, G}, x.options());
    T* const a_all = xp.data_ptr<T>();
    for_row_blocks(B, projection.bytes(), [&](int64_t b0, int64_t b1) {
      for (int64_t s = 0; s < st.T; ++s) {
        const int64_t t = st.time(s);
        projection(X.at(t), T(0), a_all, b0, b1);
        for_units(b0, b1, H, kGrain / 4, [&](int64_t b, int64_t j0, int64_t j1) {
          T* out_b = O.row(t, b);
          if (t >= len[b]) return zero_span(out_b, j0, j1);
          const T* a = a_all + b * G;
          const T* hw = plain ? X.row(t, b) : a + 3 * H;
          T *h_b = h + b * H, *c_b = c + b * H;
          if (use_tanh) sru_units<T, true, false>(a, hw, v, bias, c_b, h_b, out_b, nullptr, nullptr, H, j0, j1);
          else sru_units<T, false, false>(a, hw, v, bias, c_b, h_b, out_b, nullptr, nullptr, H, j0, j1);
        });
      }
    });
    return {out, hT, cT};
  }
  // Training keeps c after each step and the gates f, r (, W_h x) of each step.
  Tensor Cn = fresh({st.T, B, H}, x.options()), gates = fresh({st.T, B, S}, x.options());
  const Buf<T> C = buf<T>(Cn), GS = buf<T>(gates);
  for_row_blocks(B, projection.bytes(), [&](int64_t b0, int64_t b1) {
    const int64_t m = b1 - b0, chunk = std::max<int64_t>(1, kWeightGradRows / m);
    // xp of the block's rows for a few steps at once, one GEMM with chunk * m rows.
    Tensor xring = fresh({chunk * m, I}, x.options()), xpring = fresh({chunk * m, G}, x.options());
    T *const xr = xring.data_ptr<T>(), *const xpr = xpring.data_ptr<T>();
    for (int64_t s0 = 0; s0 < st.T; s0 += chunk) {
      const int64_t k = std::min(chunk, st.T - s0);
      for (int64_t i = 0; i < k; ++i) std::memcpy(xr + i * m * I, X.row(st.time(s0 + i), b0), sizeof(T) * m * I);
      projection(xr, T(0), xpr, 0, k * m);
      for (int64_t i = 0; i < k; ++i) {
        const int64_t t = st.time(s0 + i);
        for_units(b0, b1, H, kGrain / 4, [&](int64_t b, int64_t j0, int64_t j1) {
          T* out_b = O.row(t, b);
          if (t >= len[b]) return zero_span(out_b, j0, j1);
          const T* a = xpr + (i * m + b - b0) * G;
          const T* hw = plain ? X.row(t, b) : a + 3 * H;
          T *h_b = h + b * H, *c_b = c + b * H;
          T* g_b = GS.row(t, b);
          if (!plain) std::memcpy(g_b + 2 * H + j0, hw + j0, sizeof(T) * (j1 - j0));
          if (use_tanh) sru_units<T, true, true>(a, hw, v, bias, c_b, h_b, out_b, C.row(t, b), g_b, H, j0, j1);
          else sru_units<T, false, true>(a, hw, v, bias, c_b, h_b, out_b, C.row(t, b), g_b, H, j0, j1);
        });
      }
    }
  });
  return {out, hT, cT, gates, state[1], Cn};
}

// Returns [dW (G, I), dh_0, dc_0, dv, db, dx (T, B, I) or undefined without need_dx].
template <typename T>
std::vector<Tensor> sru_backward(const Tensor& dout, const std::vector<Tensor>& dfinal, const std::vector<Tensor>& saved,
                                 const Tensor& x, const Tensor& W, const std::vector<Tensor>& params,
                                 const int64_t* len, Steps st, bool use_tanh, bool plain, bool need_dx) {
  const Tensor &gates_all = saved[0], &c0 = saved[1], &Cn = saved[2];
  const T* v = cptr<T>(params[0]);
  const int64_t B = dout.size(1), H = dout.size(2), I = x.size(2), G = W.size(0);
  // dx = dxp W + (plain) the highway's gradient, which the pointwise pass writes into dx first.
  Tensor dx = need_dx || plain ? fresh({st.T, B, I}, dout.options()) : Tensor();
  Tensor dH = dfinal[0].clone(), dC = dfinal[1].clone();
  Tensor dv = fresh({B, 2 * H}, dout.options()).zero_();  // per-row (or per-row-block) sums, as are db's
  Tensor db = fresh({B, 2 * H}, dout.options()).zero_();
  const StepGemm<T> projection(cptr<T>(W), B, I, G, false);
  const Buf<T> X = buf<T>(x), GS = buf<T>(gates_all), C = buf<T>(Cn), GO = buf<T>(dout);
  const T* c_init = c0.data_ptr<T>();
  T *const dh_all = dH.data_ptr<T>(), *const dc_all = dC.data_ptr<T>();
  T *const dv_all = dv.data_ptr<T>(), *const db_all = db.data_ptr<T>();
  T* const dx_all = dx.defined() ? dx.data_ptr<T>() : nullptr;
  // dW^T = x^T dxp: from rings in the time loop (2-8% less time than one GEMM after the loop,
  // measured with MKL's products), except on the panels with weights over half of a core's L2:
  // there one product over a (T, B, G) dxp after the loop took 0.91-0.98x the time of the rings
  // at the first two issue-4 shapes (AMD EPYC, Zen 4; at the third, W of 192 KiB, 1.00-1.04x).
  const bool in_loop = !(std::is_same_v<T, float> && panel_products(true)) ||
                       G * I * static_cast<int64_t>(sizeof(T)) <= l2_bytes() / 2;
  Tensor dxp = in_loop ? Tensor() : fresh({st.T, B, G}, dout.options());
  T* const dxp_all = in_loop ? nullptr : dxp.data_ptr<T>();
  BlockSums<T> dW;
  for_row_blocks(B, projection.bytes(), [&](int64_t b0, int64_t b1) {
    const int64_t m = b1 - b0;
    std::optional<GradRing<T>> ring;  // dW^T = x^T dxp of these rows
    if (in_loop) ring.emplace(m, I, G, dout.options());
    const bool blockwise = at::in_parallel_region();
    for (int64_t s = st.T - 1; s >= 0; --s) {
      const int64_t t = st.time(s);
      T* const slot = in_loop ? ring->grad_slot() : dxp_all + (t * B + b0) * G;  // dxp_t of rows b0..b1
      for_units(b0, b1, H, kGrain / 8, [&](int64_t b, int64_t j0, int64_t j1) {
        T* d = slot + (b - b0) * G;
        T* d_hw = plain ? dx_all + (t * B + b) * I : d + 3 * H;
        if (t >= len[b]) {
          for (int64_t k = 0; k < 3; ++k) zero_span(d + k * H, j0, j1);
          return zero_span(d_hw, j0, j1);
        }
        const int64_t t_prev = st.reverse ? t + 1 : t - 1;
        const bool first = st.reverse ? t_prev >= len[b] : t_prev < 0;
        const T* c_prev = first ? c_init + b * H : C.row(t_prev, b);
        const T *gates = GS.row(t, b), *hw = plain ? X.row(t, b) : gates + 2 * H;  // f, r (, W_h x)
        T *dh_b = dh_all + b * H, *dc_b = dc_all + b * H;
        // Inside a thread's row block the rows run in order on it: they share the block's first row
        // of the sums (kept in L1), as in ln_lstm's backward.
        const int64_t row = blockwise ? b0 : b;
        T *dv_b = dv_all + row * 2 * H, *db_b = db_all + row * 2 * H;
        if (use_tanh)
          sru_units_backward<T, true>(gates, hw, c_prev, C.row(t, b), GO.row(t, b), v, dh_b, dc_b, dv_b, db_b, d,
                                      d_hw, H, j0, j1);
        else
          sru_units_backward<T, false>(gates, hw, c_prev, C.row(t, b), GO.row(t, b), v, dh_b, dc_b, dv_b, db_b, d,
                                       d_hw, H, j0, j1);
      });
      if (need_dx) projection(slot, plain ? T(1) : T(0), dx_all + (t * B + b0) * I, 0, m);
      if (in_loop) ring->add_step(X.row(t, b0));
    }
    if (in_loop) dW.add(b0, *ring);
  });
  Tensor dW_total = in_loop ? dW.total() : mm_fresh(dxp.view({st.T * B, G}).t(), x.view({st.T * B, I}));
  return {dW_total, dH, dC, dv.sum(0), db.sum(0), need_dx ? dx : Tensor()};
}

// ---------------------------------------------------------------------------
// Entry points.
// ---------------------------------------------------------------------------

void check(const Tensor& x, const std::vector<Tensor>& tensors, const Tensor& lengths) {
  TORCH_CHECK(x.device().is_cpu() && x.dim() == 3, "seqlab kernels: x must be a (T, B, I) CPU tensor");
  for (const Tensor& t : tensors)
    TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == x.scalar_type(),
                "seqlab kernels: every tensor must be on the CPU with x's dtype");
  TORCH_CHECK(lengths.scalar_type() == at::kLong && lengths.numel() == x.size(1), "seqlab kernels: lengths (B,) int64");
}

std::vector<Tensor> contiguous(const std::vector<Tensor>& xs) {
  std::vector<Tensor> out;
  out.reserve(xs.size());
  for (const Tensor& x : xs) out.push_back(x.contiguous());
  return out;
}

// How many state and recurrent-parameter tensors each kind takes (a wrong count would index past the lists).
void check_arity(const std::string& kind, size_t states, size_t params) {
  static const std::map<std::string, std::pair<size_t, size_t>> arity{
      {"peephole", {2, 2}}, {"cifg", {2, 1}}, {"janet", {1, 1}}, {"gru", {1, 2}}, {"elman", {1, 1}},
      {"ln_lstm", {2, 6}},  {"nested_lstm", {3, 4}}, {"sru", {2, 2}}};
  const auto it = arity.find(kind);
  TORCH_CHECK(it != arity.end(), "seqlab kernels: unknown kind ", kind);
  TORCH_CHECK(states == it->second.first && params == it->second.second, "seqlab kernels: ", kind, " takes ",
              it->second.first, " state and ", it->second.second, " parameter tensors, got ", states, " and ", params);
}

// One layer and direction.  x (T, B, I); proj = [W (G, I)] or [W, b (G)]: the
// input projection xp = x W^T of every step is one GEMM here, into a pooled
// buffer (the kernels add b, if any, in their pointwise pass).  Returns [output (T, B, H), final state..., saved for backward...].
// forward() and forward_projected(): with ``projected`` x_in is already x W^T (T, B, G) of the
// caller's x, for inference from products computed elsewhere (a table of an embedding's rows, an int8
// GEMM); SRU, which projects inside its time loop, cannot take one.
std::vector<Tensor> run_forward(const std::string& kind, const Tensor& x_in, const std::vector<Tensor>& proj_in,
                                const std::vector<Tensor>& state_in, const std::vector<Tensor>& params_in,
                                const Tensor& lengths_in, bool reverse, const std::vector<double>& options, bool train,
                                bool projected) {
  std::vector<Tensor> proj = contiguous(proj_in), state = contiguous(state_in), params = contiguous(params_in);
  const Tensor x = x_in.contiguous(), lengths = lengths_in.contiguous();
  check(x, proj, lengths), check(x, state, lengths), check(x, params, lengths);
  check_arity(kind, state.size(), params.size());
  const int64_t* len = lengths.data_ptr<int64_t>();
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), G = proj[0].size(0);
  const Steps st{T, reverse, train};
  TORCH_CHECK(proj.size() > 1 || (kind != "peephole" && kind != "cifg" && kind != "janet" && kind != "nested_lstm" &&
                                   kind != "gru" && kind != "elman"),
              "seqlab kernels: ", kind, " takes its input projection as [W, b]");
  TORCH_CHECK(!projected || (kind != "sru" && I == G), "seqlab kernels: forward_projected takes x W^T of ", G,
              " columns and no SRU, got ", kind, " with ", I);
  // xp = x W^T without the bias b: the kernels that have one add it in their pointwise pass,
  // which is cheaper than addmm's broadcast copy of b into every row before the GEMM.  SRU
  // projects inside its time loop.
  Tensor xp;
  if (projected) {
    xp = x;
  } else if (kind != "sru") {
    xp = fresh({T, B, G}, x.options());
    Tensor xp2 = xp.view({T * B, G});
    mm_into(xp2, x.view({T * B, I}), proj[0].t());
  }
  std::vector<Tensor> result;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "seqlab_forward", [&] {
    const scalar_t* xb = proj.size() > 1 ? cptr<scalar_t>(proj[1]) : nullptr;
    if (kind == "peephole")
      result = peephole_forward<scalar_t>(xp, xb, state, params, len, st);
    else if (kind == "cifg")
      result = cifg_forward<scalar_t>(xp, xb, state, params, len, st);
    else if (kind == "gru")
      result = gru_forward<scalar_t>(xp, xb, state, params, len, st);
    else if (kind == "elman")
      result = elman_forward<scalar_t>(xp, xb, state, params, len, st, options.at(0) != 0.0);
    else if (kind == "janet")
      result = janet_forward<scalar_t>(xp, xb, state, params, len, st, static_cast<scalar_t>(options.at(0)));
    else if (kind == "ln_lstm")
      result = ln_lstm_forward<scalar_t>(xp, state, params, len, st, static_cast<scalar_t>(options.at(0)),
                                        static_cast<scalar_t>(options.at(1)), static_cast<scalar_t>(options.at(2)));
    else if (kind == "nested_lstm")
      result = nested_forward<scalar_t>(xp, xb, state, params, len, st);
    else if (kind == "sru")
      result = sru_forward<scalar_t>(x, proj[0], state, params, len, st, options.at(0) != 0.0, options.at(1) != 0.0);
    else
      TORCH_CHECK(false, "seqlab kernels: unknown kind ", kind);
  });
  return result;
}

std::vector<Tensor> forward(const std::string& kind, const Tensor& x, const std::vector<Tensor>& proj,
                            const std::vector<Tensor>& state, const std::vector<Tensor>& params,
                            const Tensor& lengths, bool reverse, const std::vector<double>& options, bool train) {
  return run_forward(kind, x, proj, state, params, lengths, reverse, options, train, false);
}

std::vector<Tensor> forward_projected(const std::string& kind, const Tensor& xp, const std::vector<Tensor>& proj,
                                      const std::vector<Tensor>& state, const std::vector<Tensor>& params,
                                      const Tensor& lengths, bool reverse, const std::vector<double>& options) {
  return run_forward(kind, xp, proj, state, params, lengths, reverse, options, false, true);
}

#ifdef SEQLAB_USE_FBGEMM
// Inference of one LSTM layer and direction from its input products xp = x W^T (T, B, 4H), float32,
// with the recurrent product in int8: ``recurrent`` is U (4H, H) as an Int8Linear without bias,
// packed once when it was made; b (4H) both biases summed.  Returns [output (T, B, H), h_T, c_T].
std::vector<Tensor> forward_projected_int8(const Tensor& xp_in, const Tensor& b_in, const std::vector<Tensor>& state_in,
                                           const Int8Linear& recurrent_in, const Tensor& lengths_in, bool reverse) {
  const Tensor xp = xp_in.contiguous(), b = b_in.contiguous(), lengths = lengths_in.contiguous();
  std::vector<Tensor> state = contiguous(state_in);
  check(xp, {b}, lengths), check(xp, state, lengths);
  TORCH_CHECK(xp.scalar_type() == at::kFloat, "seqlab kernels: the int8 recurrence takes float32 input products");
  TORCH_CHECK(state.size() == 2, "seqlab kernels: an LSTM state is (h, c)");
  const int64_t B = xp.size(1), H = state[0].size(1), G = 4 * H;
  const Int8StepGemm& recurrent = recurrent_in.gemm();
  TORCH_CHECK(xp.size(2) == G && b.numel() == G && recurrent.rows() == G && recurrent.cols() == H &&
                  !recurrent.has_bias(),
              "seqlab kernels: forward_projected_int8 takes xp (T, B, 4H), b (4H) and U (4H, H) as an Int8Linear "
              "without bias");
  TORCH_CHECK(lengths.numel() == B, "seqlab kernels: one length per row");
  const Tensor no_peephole = at::zeros({3, H}, xp.options());
  return peephole_loop<float>(xp, b.data_ptr<float>(), state, no_peephole, recurrent, lengths.data_ptr<int64_t>(),
                              Steps{xp.size(0), reverse, false});
}
#endif

// Backward of forward(): [dx, dW, (db), d state_0..., d params...]; dx is None unless need_dx (the
// input does not always require grad, and then its GEMM is skipped).
std::vector<Tensor> backward(const std::string& kind, const Tensor& dout_in, const std::vector<Tensor>& dfinal_in,
                             const std::vector<Tensor>& saved_in, const Tensor& x_in,
                             const std::vector<Tensor>& proj_in, const std::vector<Tensor>& params_in,
                             const Tensor& lengths_in, bool reverse, const std::vector<double>& options,
                             bool need_dx) {
  std::vector<Tensor> dfinal = contiguous(dfinal_in), saved = contiguous(saved_in);
  std::vector<Tensor> proj = contiguous(proj_in), params = contiguous(params_in);
  const Tensor dout = dout_in.contiguous(), x = x_in.contiguous(), lengths = lengths_in.contiguous();
  check(x, dfinal, lengths), check(x, {dout}, lengths);
  const int64_t* len = lengths.data_ptr<int64_t>();
  const int64_t T = x.size(0), B = x.size(1), I = x.size(2), G = proj[0].size(0);
  const Steps st{T, reverse, true};
  std::vector<Tensor> grads;
  AT_DISPATCH_FLOATING_TYPES(dout.scalar_type(), "seqlab_backward", [&] {
    if (kind == "peephole")
      grads = peephole_backward<scalar_t>(dout, dfinal, saved, params, len, st);
    else if (kind == "cifg")
      grads = cifg_backward<scalar_t>(dout, dfinal, saved, params, len, st);
    else if (kind == "gru")
      grads = gru_backward<scalar_t>(dout, dfinal, saved, params, len, st);
    else if (kind == "elman")
      grads = elman_backward<scalar_t>(dout, dfinal, saved, params, len, st, options.at(0) != 0.0);
    else if (kind == "janet")
      grads = janet_backward<scalar_t>(dout, dfinal, saved, params, len, st);
    else if (kind == "ln_lstm")
      grads = ln_lstm_backward<scalar_t>(dout, dfinal, saved, x, proj[0], params, len, st, need_dx);
    else if (kind == "nested_lstm")
      grads = nested_backward<scalar_t>(dout, dfinal, saved, params, len, st);
    else if (kind == "sru")
      grads = sru_backward<scalar_t>(dout, dfinal, saved, x, proj[0], params, len, st, options.at(0) != 0.0,
                                     options.at(1) != 0.0, need_dx);
    else
      TORCH_CHECK(false, "seqlab kernels: unknown kind ", kind);
  });
  // The projection's backward, one GEMM each over all steps: dx = dxp W, dW = dxp^T x, db = sum dxp
  // (the SRU and ln_lstm kernels return dW and dx themselves: their first and last results).
  const bool done = kind == "sru" || kind == "ln_lstm";
  const Tensor x2 = x.view({T * B, I});
  const Tensor dxp = done ? Tensor() : grads[0].view({T * B, G});
  Tensor dx;
  if (done) {
    dx = grads.back();
    grads.pop_back();
  } else if (need_dx) {
    dx = fresh({T, B, I}, x.options());
    Tensor dx2 = dx.view({T * B, I});
    mm_into(dx2, dxp, proj[0]);
  }
  Tensor dW = done ? grads[0] : mm_fresh(dxp.t(), x2);
  std::vector<Tensor> result{need_dx ? dx : Tensor(), dW};
  if (proj.size() > 1) result.push_back(column_sums(dxp));
  result.insert(result.end(), grads.begin() + 1, grads.end());
  return result;
}

// The autograd node of one layer and direction, in C++ so that a training step
// through a layer pays no Python around the kernels: a Python
// torch.autograd.Function cost 60-130 us more per forward and backward at the
// issue-4 shapes (its own Python and the interpreter's data, evicted by the
// kernels, coming back into cache), about 5% of an SRU training step there.
// tensors = [x, projection..., state..., params...]; the outputs are
// [output, final state...].  Differentiable once, like @once_differentiable:
// backward under create_graph gives results whose backward raises.
struct Recurrence : torch::autograd::Function<Recurrence> {
  using Ctx = torch::autograd::AutogradContext;
  using Vars = torch::autograd::variable_list;

  static Vars forward(Ctx* ctx, const Tensor& lengths, at::TensorList tensors, const std::string& kind,
                      int64_t num_proj, int64_t num_states, bool reverse, const std::vector<double>& options) {
    const auto slice = [&](int64_t i, int64_t n) { return std::vector<Tensor>(tensors.begin() + i, tensors.begin() + i + n); };
    const int64_t num_params = static_cast<int64_t>(tensors.size()) - 1 - num_proj - num_states;
    TORCH_CHECK(num_params >= 0, "seqlab kernels: fewer tensors than projection and state");
    const std::vector<Tensor> proj = slice(1, num_proj), params = slice(1 + num_proj + num_states, num_params);
    std::vector<Tensor> result =
        seqlab::forward(kind, tensors[0], proj, slice(1 + num_proj, num_states), params, lengths, reverse, options, true);
    ctx->saved_data["kind"] = kind;
    ctx->saved_data["sizes"] = std::vector<int64_t>{num_proj, num_states, num_params};
    ctx->saved_data["reverse"] = reverse;
    ctx->saved_data["options"] = options;
    ctx->saved_data["hidden"] = result[0].size(2);
    Vars keep{lengths, tensors[0]};
    keep.insert(keep.end(), proj.begin(), proj.end());
    keep.insert(keep.end(), params.begin(), params.end());
    keep.insert(keep.end(), result.begin() + 1 + num_states, result.end());
    ctx->save_for_backward(keep);
    ctx->set_materialize_grads(false);  // backward makes the zeros it needs itself, in one op each
    result.resize(1 + num_states);
    return result;
  }

  static Vars backward(Ctx* ctx, Vars grads) {
    const bool twice = at::GradMode::is_enabled();
    Vars out;
    {
      at::NoGradGuard no_grad;
      const std::vector<int64_t> sizes = ctx->saved_data["sizes"].toIntVector();
      const int64_t num_proj = sizes[0], num_states = sizes[1], num_params = sizes[2];
      const Vars saved = ctx->get_saved_variables();
      const auto part = [&](int64_t i, int64_t n) { return std::vector<Tensor>(saved.begin() + i, saved.begin() + i + n); };
      // Outputs the loss does not use have no gradient: zeros of their shape.
      const Tensor& x = saved[1];
      const int64_t B = x.size(1), hidden_size = ctx->saved_data["hidden"].toInt();
      Tensor dout = grads[0];
      std::vector<Tensor> dfinal(grads.begin() + 1, grads.begin() + 1 + num_states);
      for (int64_t i = 0; i < num_states; ++i)
        if (!dfinal[i].defined()) dfinal[i] = at::zeros({B, hidden_size}, x.options());
      if (!dout.defined()) dout = at::zeros({x.size(0), B, hidden_size}, x.options());
      const bool need_dx = ctx->needs_input_grad(1);  // edges: lengths, x, ...
      std::vector<Tensor> g = seqlab::backward(
          ctx->saved_data["kind"].toStringRef(), dout, dfinal,
          std::vector<Tensor>(saved.begin() + 2 + num_proj + num_params, saved.end()), saved[1], part(2, num_proj),
          part(2 + num_proj, num_params), saved[0], ctx->saved_data["reverse"].toBool(),
          ctx->saved_data["options"].toDoubleVector(), need_dx);
      out.reserve(1 + g.size() + 5);
      out.emplace_back();  // lengths
      out.insert(out.end(), g.begin(), g.end());
    }
    if (twice) {
      // As @once_differentiable: results that require grad, whose own backward raises.
      for (Tensor& t : out)
        if (t.defined()) t = t.detach().requires_grad_(true);
      out = torch::autograd::DelayedError(
                "trying to differentiate twice seqlab's fused recurrence (it is differentiable once)",
                static_cast<int64_t>(out.size()))
                .apply(std::move(out));
    }
    out.resize(out.size() + 5);  // kind, num_proj, num_states, reverse, options
    return out;
  }
};

// [output, final state...] of forward() with an autograd node for backward().
std::vector<Tensor> forward_autograd(const std::string& kind, const Tensor& x, const std::vector<Tensor>& proj,
                                     const std::vector<Tensor>& state, const std::vector<Tensor>& params,
                                     const Tensor& lengths, bool reverse, const std::vector<double>& options) {
  std::vector<Tensor> tensors{x};
  tensors.insert(tensors.end(), proj.begin(), proj.end());
  tensors.insert(tensors.end(), state.begin(), state.end());
  tensors.insert(tensors.end(), params.begin(), params.end());
  return Recurrence::apply(lengths, at::TensorList(tensors), kind, static_cast<int64_t>(proj.size()),
                           static_cast<int64_t>(state.size()), reverse, options);
}

// ---------------------------------------------------------------------------
// Decoder steps (inference, one token at a time): the pointwise part of an
// LSTM step and a dot-product attention step, each one pass over memory
// instead of a chain of ATen ops with a tensor between each two.
// ---------------------------------------------------------------------------

// The optional tensor a pointwise pass adds to ``like``: contiguous, of its shape and dtype, on the
// CPU; undefined where absent.
Tensor addend(const std::optional<Tensor>& given, const Tensor& like, const char* pass) {
  if (!given.has_value()) return Tensor();
  Tensor t = given->contiguous();
  TORCH_CHECK(t.sizes() == like.sizes() && t.scalar_type() == like.scalar_type() && t.device().is_cpu(),
              "seqlab kernels: ", pass, " adds a CPU tensor of the same shape and dtype, got ", t.sizes(), " ",
              t.scalar_type(), " for ", like.sizes(), " ", like.scalar_type());
  return t;
}

// a (B, 4H) gate pre-activations in the order i, f, g, o, plus r (B, 4H) where r is not null (a
// step's recurrent product, so that the caller need not add it first); c (B, H) the cell entering
// the step.  Writes h, c' of the step: c' = σ(a_f) c + σ(a_i) tanh(a_g), h = σ(a_o) tanh(c').
template <typename T, bool kSum>
void lstm_pointwise_rows(const T* a, const T* r, const T* c, T* h, T* c_new, int64_t B, int64_t H) {
  using A = Act<T>;
  for_units(0, B, H, kGrain / 4, [&](int64_t b, int64_t j0, int64_t j1) {
    const T *x = a + b * 4 * H, *c_b = c + b * H;
    T *h_b = h + b * H, *n_b = c_new + b * H;
    if constexpr (kSum) {
      const T* y = r + b * 4 * H;
#pragma omp simd
      for (int64_t j = j0; j < j1; ++j) {
        const T cell = A::sigmoid(x[H + j] + y[H + j]) * c_b[j] +
                       A::sigmoid(x[j] + y[j]) * A::tanh(x[2 * H + j] + y[2 * H + j]);
        n_b[j] = cell;
        h_b[j] = A::sigmoid(x[3 * H + j] + y[3 * H + j]) * A::tanh(cell);
      }
    } else {
#pragma omp simd
      for (int64_t j = j0; j < j1; ++j) {
        const T cell = A::sigmoid(x[H + j]) * c_b[j] + A::sigmoid(x[j]) * A::tanh(x[2 * H + j]);
        n_b[j] = cell;
        h_b[j] = A::sigmoid(x[3 * H + j]) * A::tanh(cell);
      }
    }
  });
}

std::vector<Tensor> lstm_pointwise(const Tensor& a_in, const Tensor& c_in, const std::optional<Tensor>& r_in) {
  const Tensor a = a_in.contiguous(), c = c_in.contiguous();
  TORCH_CHECK(a.dim() == 2 && c.dim() == 2 && a.size(0) == c.size(0) && a.size(1) == 4 * c.size(1),
              "seqlab kernels: lstm_pointwise needs a (B, 4H) and c (B, H), got ", a.sizes(), " and ", c.sizes());
  TORCH_CHECK(a.scalar_type() == c.scalar_type() && a.device().is_cpu() && c.device().is_cpu(),
              "seqlab kernels: lstm_pointwise needs CPU tensors of one dtype");
  const Tensor r = addend(r_in, a, "lstm_pointwise");
  const int64_t B = c.size(0), H = c.size(1);
  Tensor h = fresh({B, H}, c.options()), c_new = fresh({B, H}, c.options());  // pooled: no page faults per step
  pybind11::gil_scoped_release no_gil;
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "seqlab_lstm_pointwise", [&] {
    const scalar_t *x = a.data_ptr<scalar_t>(), *cp = c.data_ptr<scalar_t>();
    scalar_t *hp = h.data_ptr<scalar_t>(), *np = c_new.data_ptr<scalar_t>();
    if (r.defined())
      lstm_pointwise_rows<scalar_t, true>(x, r.data_ptr<scalar_t>(), cp, hp, np, B, H);
    else
      lstm_pointwise_rows<scalar_t, false>(x, nullptr, cp, hp, np, B, H);
  });
  return {h, c_new};
}

// a = tanh(a + b) over rows x cols, in place (b null: a = tanh(a)).
template <typename T>
void add_tanh_rows(T* a, const T* b, int64_t rows, int64_t cols) {
  using A = Act<T>;
  for_units(0, rows, cols, kGrain, [&](int64_t r, int64_t j0, int64_t j1) {
    T* a_r = a + r * cols;
    if (b != nullptr) {
      const T* b_r = b + r * cols;
#pragma omp simd
      for (int64_t j = j0; j < j1; ++j) a_r[j] = A::tanh(a_r[j] + b_r[j]);
    } else {
#pragma omp simd
      for (int64_t j = j0; j < j1; ++j) a_r[j] = A::tanh(a_r[j]);
    }
  });
}

// a = tanh(a + b) in place, a and b of one shape (b may be absent: a = tanh(a)); torch's
// add_ and tanh_ are two passes, and its tanh took about 2.5 ns a float on the Zen 3.
void add_tanh_(Tensor& a, const std::optional<Tensor>& b_in) {
  TORCH_CHECK(a.is_contiguous() && a.device().is_cpu() && (a.scalar_type() == at::kFloat ||
              a.scalar_type() == at::kDouble), "seqlab kernels: add_tanh_ writes a contiguous float CPU tensor");
  const Tensor b = addend(b_in, a, "add_tanh_");
  if (a.numel() == 0) return;
  const int64_t cols = a.dim() > 0 ? a.size(-1) : 1, rows = a.numel() / cols;
  pybind11::gil_scoped_release no_gil;
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "seqlab_add_tanh", [&] {
    add_tanh_rows<scalar_t>(a.data_ptr<scalar_t>(), b.defined() ? b.data_ptr<scalar_t>() : nullptr, rows, cols);
  });
}

// out[0..4) = q · k_j for the four rows k_j = k + j D.
template <typename T>
SEQLAB_OUTLINE void dot4(const T* q, const T* k, int64_t D, T* out) {
  const T *k0 = k, *k1 = k0 + D, *k2 = k1 + D, *k3 = k2 + D;
  T e0 = 0, e1 = 0, e2 = 0, e3 = 0;
#pragma omp simd reduction(+ : e0, e1, e2, e3)
  for (int64_t d = 0; d < D; ++d) {
    const T x = q[d];
    e0 += x * k0[d], e1 += x * k1[d], e2 += x * k2[d], e3 += x * k3[d];
  }
  out[0] = e0, out[1] = e1, out[2] = e2, out[3] = e3;
}

// One query per row against the keys and values of its source: row b reads source
// src[b] (b itself where src is null), so that the beams of a sentence share one copy.
//   e_s = q · k_s at real positions (mask true), α = softmax(e) (0 at padding), context = Σ_s α_s v_s.
// A row without a real position gets NaN weights and context, as torch's softmax gives.
template <typename T>
void dot_attention_rows(const T* q, const T* keys, const T* values, const bool* real, const int64_t* src, T* context,
                        T* weights, int64_t B, int64_t S, int64_t D, int64_t M) {
  for_rows(0, B, S * (D + M), [&](int64_t b) {
    const int64_t r = src ? src[b] : b;
    const T* q_b = q + b * D;
    const bool* real_b = real + r * S;
    T *w = weights + b * S, *ctx = context + b * M;
    // Four positions at a time: four independent sums, where one sum's chain of additions would set
    // the pace (the rows are in cache when the beams of a sentence follow each other).
    const T* k_b = keys + r * S * D;
    int64_t s = 0;
    for (; s + 4 <= S; s += 4) dot4(q_b, k_b + s * D, D, w + s);
    for (; s < S; ++s) {
      const T* k = k_b + s * D;
      T e = 0;
#pragma omp simd reduction(+ : e)
      for (int64_t d = 0; d < D; ++d) e += q_b[d] * k[d];
      w[s] = e;
    }
    T top = -std::numeric_limits<T>::infinity();
    for (s = 0; s < S; ++s)
      if (real_b[s]) top = std::max(top, w[s]);
    T total = 0;
    for (int64_t s = 0; s < S; ++s) {
      w[s] = real_b[s] ? std::exp(w[s] - top) : T(0);
      total += w[s];
    }
    const T nan = std::numeric_limits<T>::quiet_NaN();
    std::fill(ctx, ctx + M, total > 0 ? T(0) : nan);
    for (int64_t s = 0; s < S; ++s) {
      w[s] = total > 0 ? w[s] / total : nan;
      if (!(w[s] != T(0))) continue;  // padding (exactly 0) or a row without real positions (NaN)
      const T alpha = w[s];
      const T* v = values + (r * S + s) * M;
#pragma omp simd
      for (int64_t m = 0; m < M; ++m) ctx[m] += alpha * v[m];
    }
  });
}

// q (B, D), keys (N, S, D), values (N, S, M), mask (N, S) bool, rows (B,) long or None: the source row of
// each query (None: N = B and row b reads source b) -> {context (B, M), weights (B, S)}.
std::vector<Tensor> dot_attention(const Tensor& q_in, const Tensor& keys_in, const Tensor& values_in,
                                  const Tensor& mask_in, const std::optional<Tensor>& rows_in) {
  const Tensor q = q_in.contiguous(), keys = keys_in.contiguous(), values = values_in.contiguous();
  const Tensor mask = mask_in.contiguous();
  TORCH_CHECK(q.dim() == 2 && keys.dim() == 3 && values.dim() == 3 && mask.dim() == 2,
              "seqlab kernels: dot_attention needs q (B, D), keys (N, S, D), values (N, S, M), mask (N, S)");
  const int64_t B = q.size(0), D = q.size(1), N = keys.size(0), S = keys.size(1), M = values.size(2);
  TORCH_CHECK(keys.size(2) == D && values.size(0) == N && values.size(1) == S && mask.size(0) == N &&
                  mask.size(1) == S && mask.scalar_type() == at::kBool && (rows_in.has_value() || N == B),
              "seqlab kernels: dot_attention shapes do not match: q ", q.sizes(), ", keys ", keys.sizes(),
              ", values ", values.sizes(), ", mask ", mask.sizes());
  TORCH_CHECK(keys.scalar_type() == q.scalar_type() && values.scalar_type() == q.scalar_type() && q.device().is_cpu(),
              "seqlab kernels: dot_attention needs CPU tensors of one dtype");
  Tensor rows;
  if (rows_in.has_value()) {
    rows = rows_in->contiguous();
    TORCH_CHECK(rows.dim() == 1 && rows.size(0) == B && rows.scalar_type() == at::kLong && rows.device().is_cpu(),
                "seqlab kernels: dot_attention rows must be a (B,) int64 CPU tensor, got ", rows.sizes());
    TORCH_CHECK(B == 0 || (rows.min().item<int64_t>() >= 0 && rows.max().item<int64_t>() < N),
                "seqlab kernels: dot_attention rows must lie in [0, ", N, ")");
  }
  Tensor context = fresh({B, M}, q.options()), weights = fresh({B, S}, q.options());
  const int64_t* src = rows.defined() ? rows.data_ptr<int64_t>() : nullptr;
  pybind11::gil_scoped_release no_gil;
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "seqlab_dot_attention", [&] {
    dot_attention_rows<scalar_t>(q.data_ptr<scalar_t>(), keys.data_ptr<scalar_t>(), values.data_ptr<scalar_t>(),
                                 mask.data_ptr<bool>(), src, context.data_ptr<scalar_t>(),
                                 weights.data_ptr<scalar_t>(), B, S, D, M);
  });
  return {context, weights};
}

// The float step GEMM: "panel" (seqlab's AVX2 kernel), "panel512" (its AVX-512 form), "mkl"
// (MKL's packed GEMM), "auto" (panel512 or mkl by the weights' size) or "blas" (a BLAS call per
// step); sets it when ``name`` is one that this build has, and returns the current one.  Under
// the panel kinds the whole-sequence products run on the panels too (mm_into).
std::string step_gemm(const std::string& name) {
  static const std::map<std::string, StepKind> kinds{
      {"blas", StepKind::kBlas},
#ifdef SEQLAB_PANEL_GEMM
      {"panel", StepKind::kPanel},
#endif
#if defined(SEQLAB_PANEL512_GEMM)
      {"panel512", StepKind::kPanel512},
#endif
#if defined(SEQLAB_PANEL512_GEMM) && defined(SEQLAB_USE_MKL_PACK)
      {"auto", StepKind::kAuto},
#endif
#ifdef SEQLAB_USE_MKL_PACK
      {"mkl", StepKind::kMklPacked},
#endif
  };
  if (!name.empty()) {
    const auto it = kinds.find(name);
    std::string known;
    for (const auto& kv : kinds) known += (known.empty() ? "" : ", ") + kv.first;
    TORCH_CHECK(it != kinds.end(), "seqlab kernels: step GEMM ", name, " is not in this build (", known, ")");
    step_kind().store(it->second);
  }
  for (const auto& kv : kinds)
    if (kv.second == step_kind().load()) return kv.first;
  return "blas";
}

// a (m, k) b (k, n) the way the kernels run their whole-sequence products (mm_into):
// what the cells benchmark also times as its GEMM reference.
Tensor matmul(const Tensor& a, const Tensor& b) {
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(0), "seqlab kernels: matmul needs (m, k) and (k, n), got ",
              a.sizes(), " and ", b.sizes());
  TORCH_CHECK(a.device().is_cpu() && b.device().is_cpu() && a.scalar_type() == b.scalar_type(),
              "seqlab kernels: matmul needs CPU tensors of one dtype");
  Tensor out = at::empty({a.size(0), b.size(1)}, a.options());
  pybind11::gil_scoped_release no_gil;
  mm_into(out, a, b);
  return out;
}

bool uses_blas() {
#ifdef SEQLAB_USE_BLAS
  return true;
#else
  return false;
#endif
}

}  // namespace seqlab

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "seqlab's fused CPU recurrences (forward and backward through time)";
  using no_gil = pybind11::call_guard<pybind11::gil_scoped_release>;
  m.def("forward", &seqlab::forward, no_gil(),
        "one layer and direction of a cell over the sequence, input projection included");
  m.def("forward_projected", &seqlab::forward_projected, no_gil(),
        "forward() for inference from the input projection x W^T (T, B, G) the caller computed");
  m.def("backward", &seqlab::backward, no_gil(), "backpropagation through time for one layer and direction");
  m.def("forward_autograd", &seqlab::forward_autograd, no_gil(),
        "forward() (training) with an autograd node whose backward runs backward()");
#ifdef SEQLAB_USE_FBGEMM
  // module_local: two builds loaded side by side (benchmarks/kernel_ab.py, g2p_ab.py) each register
  // their own type instead of the second failing on a name the first took.
  pybind11::class_<seqlab::Int8Linear>(m, "Int8Linear",
                                       "y = x W^T + b for inference in int8: W with a scale per row, packed once",
                                       pybind11::module_local())
      .def(pybind11::init<const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&>(),
           pybind11::arg("weight"), pybind11::arg("scales"), pybind11::arg("bias") = pybind11::none())
      .def("__call__", &seqlab::Int8Linear::operator(), no_gil());
  m.def("forward_projected_int8", &seqlab::forward_projected_int8, no_gil(),
        "an LSTM layer and direction for inference from x W^T, with its recurrent product in int8 (fbgemm)");
#endif
  m.def("add_tanh_", &seqlab::add_tanh_, pybind11::arg("a"), pybind11::arg("b") = pybind11::none(),
        "a = tanh(a + b) in place (b absent: tanh(a)), one pass");
  m.def("lstm_pointwise", &seqlab::lstm_pointwise, pybind11::arg("a"), pybind11::arg("c"),
        pybind11::arg("r") = pybind11::none(), "h and c of one LSTM step from its gate pre-activations a (+ r)");
  m.def("dot_attention", &seqlab::dot_attention, pybind11::arg("q"), pybind11::arg("keys"), pybind11::arg("values"),
        pybind11::arg("mask"), pybind11::arg("rows") = pybind11::none(),
        "one query per row: masked softmax of dot products, weighted sum (rows: the source row of each query)");
  m.def("matmul", &seqlab::matmul, "a @ b as the kernels run their whole-sequence products");
  m.def("uses_blas", &seqlab::uses_blas, "whether GEMMs call the BLAS directly");
  m.def("step_gemm", &seqlab::step_gemm, pybind11::arg("name") = "",
        "the float per-step GEMM (panel, panel512, mkl, auto or blas; the panel kinds run the whole-sequence "
        "products too); sets it when a name is given");
}
