// afmask._ext: the hot step of the mask experiment as one fused pass on the CPU.
//
// Layout convention (the one of the whole package, see CONTRIBUTING.md):
// arrays keep ArrayFire's dim order and are column-major in memory, i.e.
// NumPy float32 arrays in Fortran order. x, m, mgrad are (2K, T); eps is
// (2K, T, S) or (2K, T) for S = 1; mag and xgrad are (K, T, S) or (K, T).
// Element (j, t, s) of a (2K, T, S) array sits at j + 2K*t + 2K*T*s, so the
// re/im pair of bin k is adjacent and a frame is one contiguous column.
//
// Nothing is converted: a wrong dtype, byte order, layout, shape, a
// non-contiguous, misaligned or read-only output, or an output that overlaps
// an input raises TypeError/ValueError naming the argument, before any work.
//
// Non-finite policy: every call returns how many non-finite values it met
// (see forward/backward below); it never raises for them, so that the
// Python wrapper decides (it raises NonFiniteError by default). The in-place
// update never writes a non-finite value into m.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "conv_time.h"

#include <cfloat>
#include <cmath>
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

// SIMD: SSE2 wherever it is the baseline (x86-64); AVX besides, chosen at run
// time, where the compiler can target it per function (GCC, Clang).
// Define AFMASK_NO_SIMD to build the portable scalar code only.
#if !defined(AFMASK_NO_SIMD) && (defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2))
#define AFMASK_SSE2 1
#include <emmintrin.h>
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define AFMASK_AVX 1
#include <immintrin.h>
#define AFMASK_AVX_FN __attribute__((target("avx,popcnt")))
#endif
#endif

#ifdef AFMASK_OPENMP
#include <omp.h>
#define AFMASK_PRAGMA(x) _Pragma(#x)
#else
#define AFMASK_PRAGMA(x)
#endif

namespace py = pybind11;

namespace {

// Threads for the OpenMP loops; 0 = the OpenMP default. A global rather than
// omp_set_num_threads because that one is per calling thread.
int g_threads = 0;

// Below this many (k, t, s) pairs a parallel region costs more than it saves.
constexpr long long kParallelMinPairs = 1 << 14;

// The parallel loops hand out frames in chunks of this many (dynamic schedule):
// a static split stalls on a thread that the OS has descheduled, which on a
// machine shared with other work multiplied the step's time several times.

struct View {
    float *data = nullptr;
    std::vector<py::ssize_t> shape;
    py::ssize_t nbytes = 0;
};

std::string shape_str(const std::vector<py::ssize_t> &s) {
    std::ostringstream o;
    o << "(";
    for (size_t i = 0; i < s.size(); ++i) o << (i ? ", " : "") << s[i];
    o << (s.size() == 1 ? ",)" : ")");
    return o.str();
}

// Checks one argument without converting it: ndarray, float32 in native byte
// order, Fortran-contiguous, aligned, writeable if it is written.
View check(py::handle obj, const char *name, bool written) {
    if (!py::isinstance<py::array>(obj)) {
        throw py::type_error(std::string(name) + ": expected a numpy.ndarray of float32, got " +
                             std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
    }
    auto arr = py::reinterpret_borrow<py::array>(obj);
    if (!arr.dtype().equal(py::dtype::of<float>())) {
        throw py::type_error(std::string(name) + ": expected dtype float32 (native byte order), got " +
                             std::string(py::str(arr.dtype())) + "; convert explicitly with .astype(np.float32)");
    }
    View v;
    v.shape.assign(arr.shape(), arr.shape() + arr.ndim());
    if (!(arr.flags() & py::array::f_style)) {
        throw py::value_error(std::string(name) + ": expected a Fortran-ordered (column-major, ArrayFire layout) "
                              "contiguous array of shape " + shape_str(v.shape) +
                              ", got a C-ordered or strided one; create it with order='F' "
                              "(np.asfortranarray copies)");
    }
    if (written && !arr.writeable()) {
        throw py::value_error(std::string(name) + ": is written in place but the array is read-only");
    }
    const void *p = arr.data();
    if (reinterpret_cast<std::uintptr_t>(p) % alignof(float) != 0) {
        throw py::value_error(std::string(name) + ": data pointer is not aligned to 4 bytes");
    }
    v.data = static_cast<float *>(const_cast<void *>(p));
    v.nbytes = arr.nbytes();
    return v;
}

void expect_shape(const View &v, const char *name, const std::vector<py::ssize_t> &want) {
    if (v.shape != want) {
        throw py::value_error(std::string(name) + ": expected shape " + shape_str(want) + ", got " +
                              shape_str(v.shape));
    }
}

bool overlaps(const View &a, const View &b) {
    auto a0 = reinterpret_cast<std::uintptr_t>(a.data), b0 = reinterpret_cast<std::uintptr_t>(b.data);
    return a.nbytes > 0 && b.nbytes > 0 && a0 < b0 + b.nbytes && b0 < a0 + a.nbytes;
}

void expect_disjoint(const View &out, const char *out_name, const View &in, const char *in_name) {
    if (overlaps(out, in)) {
        throw py::value_error(std::string(out_name) + ": shares memory with " + in_name +
                              "; the output must be a separate array");
    }
}

struct Dims {
    py::ssize_t K, T, S;
    std::vector<py::ssize_t> xshape, kshape;  // (2K, T) and the (K, T[, S]) shape of mag/xgrad
};

// K and T come from x; S from eps, which is (2K, T) or (2K, T, S).
Dims dims_of(const View &x, const View &eps) {
    if (x.shape.size() != 2 || x.shape[0] < 2 || x.shape[0] % 2 != 0 || x.shape[1] < 1) {
        throw py::value_error("x: expected shape (2K, T) with K >= 1, T >= 1 (interleaved re/im rows), got " +
                              shape_str(x.shape));
    }
    Dims d;
    d.K = x.shape[0] / 2;
    d.T = x.shape[1];
    d.xshape = x.shape;
    if (eps.shape.size() == 2) {
        d.S = 1;
        expect_shape(eps, "eps", x.shape);
        d.kshape = {d.K, d.T};
    } else if (eps.shape.size() == 3) {
        d.S = eps.shape[2];
        if (d.S < 1) throw py::value_error("eps: expected S >= 1 noise samples, got shape " + shape_str(eps.shape));
        expect_shape(eps, "eps", {x.shape[0], x.shape[1], d.S});
        d.kshape = {d.K, d.T, d.S};
    } else {
        throw py::value_error("eps: expected shape (2K, T) or (2K, T, S) with (2K, T) = " + shape_str(x.shape) +
                              ", got " + shape_str(eps.shape));
    }
    return d;
}

inline bool finite(float v) {
    // Vectorises (and + compare) where std::isfinite may not; NaN compares false.
    return std::fabs(v) <= FLT_MAX;
}

// mag[k, t, s] = sqrt(re^2 + im^2) of x + eps*m; returns the number of
// non-finite magnitudes (any NaN/Inf in x, eps or m, or an overflow of re^2).
long long forward_kernel(const float *x, const float *eps, const float *m, float *mag, py::ssize_t K,
                         py::ssize_t T, py::ssize_t S) {
    const long long cols = static_cast<long long>(T) * S;
    long long bad = 0;
    AFMASK_PRAGMA(omp parallel for schedule(dynamic, 16) reduction(+ : bad)
                  num_threads(g_threads > 0 ? g_threads : omp_get_max_threads())
                  if (cols * K >= kParallelMinPairs))
    for (long long c = 0; c < cols; ++c) {
        const long long t = c % T;  // column c = t + T*s
        const float *xc = x + 2 * K * t;
        const float *mc = m + 2 * K * t;
        const float *ec = eps + 2 * K * c;
        float *oc = mag + K * c;
        long long bad_c = 0;
        AFMASK_PRAGMA(omp simd reduction(+ : bad_c))
        for (py::ssize_t k = 0; k < K; ++k) {
            // Same operations in the same order as the reference: x + eps*m.
            const float re = xc[2 * k] + ec[2 * k] * mc[2 * k];
            const float im = xc[2 * k + 1] + ec[2 * k + 1] * mc[2 * k + 1];
            const float a = std::sqrt(re * re + im * im);
            oc[k] = a;
            bad_c += !(a <= FLT_MAX);
        }
        bad += bad_c;
    }
    return bad;
}

struct BackwardResult {
    double m_sqnorm_next = 0.0, mgrad_sqnorm = 0.0;
    long long nonfinite = 0;
};

// ---------------------------------------------------------------------------
// One (k, t, s) pair, scalar: the portable path and the SIMD path's remainder.
// Both round every operation alike (no FMA contraction on x86-64 without -mfma),
// so they agree bit for bit.

// Data term of a pair, the note's xGrad(j/2) * (eps*eps*m + eps*x) / backinput,
// with 0 where the magnitude is 0 (the C++ gives NaN there). Returns whether
// the magnitude or xgrad is non-finite.
inline bool pair_term(float x0, float x1, float e0, float e1, float m0, float m1, float xg, float &t0, float &t1) {
    const float re = x0 + e0 * m0;
    const float im = x1 + e1 * m1;
    const float a = std::sqrt(re * re + im * im);  // recomputed: cheaper than reading mag back
    const float p0 = xg * ((e0 * e0 * m0 + e0 * x0) / a);
    const float p1 = xg * ((e1 * e1 * m1 + e1 * x1) / a);
    const bool nz = a != 0.0f;
    t0 = nz ? p0 : 0.0f;
    t1 = nz ? p1 : 0.0f;
    return !(finite(a) && finite(xg));
}

// mgrad = g - coef*m (that product in double, see py_backward); m_out = m - lr*mgrad
// if UPDATE and both are finite, else m. Returns whether both were finite.
template <bool UPDATE>
inline bool finish(float g, float m0, double coef, float lr, float &mg, float &m_out) {
    mg = g - static_cast<float>(coef * m0);
    const float n = UPDATE ? m0 - lr * mg : m0;
    const bool ok = finite(mg) && finite(n);
    m_out = ok ? n : m0;
    return ok;
}

struct ColumnSums {
    double sq_m = 0.0, sq_g = 0.0;
    long long bad = 0;
};

// Pairs [k0, K) of frame t with S == 1, finished and written.
template <bool UPDATE>
void s1_pairs_scalar(const float *xc, const float *ec, const float *xgc, float *mc, float *gc, py::ssize_t k0,
                     py::ssize_t K, double coef, float lr, ColumnSums &cs) {
    for (py::ssize_t k = k0; k < K; ++k) {
        const float m0 = mc[2 * k], m1 = mc[2 * k + 1];
        float t0, t1, mg0, mg1, s0, s1;
        const bool bad = pair_term(xc[2 * k], xc[2 * k + 1], ec[2 * k], ec[2 * k + 1], m0, m1, xgc[k], t0, t1);
        const bool ok0 = finish<UPDATE>(t0, m0, coef, lr, mg0, s0);
        const bool ok1 = finish<UPDATE>(t1, m1, coef, lr, mg1, s1);
        gc[2 * k] = mg0;
        gc[2 * k + 1] = mg1;
        if (UPDATE) {
            mc[2 * k] = s0;
            mc[2 * k + 1] = s1;
        }
        cs.sq_m += static_cast<double>(s0) * s0 + static_cast<double>(s1) * s1;
        cs.sq_g += static_cast<double>(mg0) * mg0 + static_cast<double>(mg1) * mg1;
        cs.bad += bad + !ok0 + !ok1;
    }
}

// Pairs [k0, K) of one noise sample: the data term written (first) or added to gc.
void sample_pairs_scalar(const float *xc, const float *ec, const float *mc, const float *xgc, float *gc,
                         py::ssize_t k0, py::ssize_t K, bool first, ColumnSums &cs) {
    for (py::ssize_t k = k0; k < K; ++k) {
        float t0, t1;
        cs.bad += pair_term(xc[2 * k], xc[2 * k + 1], ec[2 * k], ec[2 * k + 1], mc[2 * k], mc[2 * k + 1], xgc[k], t0, t1);
        gc[2 * k] = first ? t0 : gc[2 * k] + t0;
        gc[2 * k + 1] = first ? t1 : gc[2 * k + 1] + t1;
    }
}

// Elements [j0, J) for S > 1: mgrad = gc/S - coef*m, m updated.
template <bool UPDATE>
void finish_elements_scalar(float *mc, float *gc, py::ssize_t j0, py::ssize_t J, float fS, double coef, float lr,
                            ColumnSums &cs) {
    for (py::ssize_t j = j0; j < J; ++j) {
        float mg, s0;
        const bool ok = finish<UPDATE>(gc[j] / fS, mc[j], coef, lr, mg, s0);
        gc[j] = mg;
        if (UPDATE) mc[j] = s0;
        cs.sq_m += static_cast<double>(s0) * s0;
        cs.sq_g += static_cast<double>(mg) * mg;
        cs.bad += !ok;
    }
}

#ifdef AFMASK_SSE2
// ---------------------------------------------------------------------------
// SSE2 (every x86-64 CPU): four pairs at a time, the same operations in the same
// order as the scalar code above. Written with intrinsics because GCC does not
// vectorise the pair loop: the re/im lanes share one magnitude and one
// zero test, which its SLP vectoriser gives up on (it ran the scalar loop).

inline void load_pairs(const float *p, __m128 &re, __m128 &im) {
    const __m128 a = _mm_loadu_ps(p), b = _mm_loadu_ps(p + 4);  // [r0 i0 r1 i1] [r2 i2 r3 i3]
    re = _mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    im = _mm_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
}

inline void store_pairs(float *p, __m128 re, __m128 im) {
    _mm_storeu_ps(p, _mm_unpacklo_ps(re, im));
    _mm_storeu_ps(p + 4, _mm_unpackhi_ps(re, im));
}

inline __m128 finite4(__m128 v) {  // all ones where finite (NaN compares false)
    const __m128 abs_mask = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff));
    return _mm_cmple_ps(_mm_and_ps(v, abs_mask), _mm_set1_ps(FLT_MAX));
}

inline __m128 select4(__m128 mask, __m128 a, __m128 b) {
    return _mm_or_ps(_mm_and_ps(mask, a), _mm_andnot_ps(mask, b));
}

// Counts true lanes: each all-ones lane adds -1 (one paddd instead of a popcount).
inline void count_true4(__m128 mask, __m128i &acc) { acc = _mm_sub_epi32(acc, _mm_castps_si128(mask)); }

inline long long hsum_epi32(__m128i v) {
    alignas(16) std::int32_t lanes[4];
    _mm_store_si128(reinterpret_cast<__m128i *>(lanes), v);
    return static_cast<long long>(lanes[0]) + lanes[1] + lanes[2] + lanes[3];
}

inline void add_squares(__m128 v, __m128d &acc) {
    const __m128d lo = _mm_cvtps_pd(v), hi = _mm_cvtps_pd(_mm_movehl_ps(v, v));
    acc = _mm_add_pd(acc, _mm_add_pd(_mm_mul_pd(lo, lo), _mm_mul_pd(hi, hi)));
}

inline double hsum(__m128d v) { return _mm_cvtsd_f64(_mm_add_sd(v, _mm_unpackhi_pd(v, v))); }

// Data terms of 4 pairs (t0: the re rows, t1: the im rows) given m's re/im rows;
// returns the mask of good pairs.
inline __m128 pair_terms4(const float *xc, const float *ec, __m128 m0, __m128 m1, const float *xgc, __m128 &t0,
                          __m128 &t1) {
    __m128 x0, x1, e0, e1;
    load_pairs(xc, x0, x1);
    load_pairs(ec, e0, e1);
    const __m128 xg = _mm_loadu_ps(xgc);
    const __m128 re = _mm_add_ps(x0, _mm_mul_ps(e0, m0));
    const __m128 im = _mm_add_ps(x1, _mm_mul_ps(e1, m1));
    const __m128 a = _mm_sqrt_ps(_mm_add_ps(_mm_mul_ps(re, re), _mm_mul_ps(im, im)));
    const __m128 mid0 = _mm_add_ps(_mm_mul_ps(_mm_mul_ps(e0, e0), m0), _mm_mul_ps(e0, x0));
    const __m128 mid1 = _mm_add_ps(_mm_mul_ps(_mm_mul_ps(e1, e1), m1), _mm_mul_ps(e1, x1));
    const __m128 nz = _mm_cmpneq_ps(a, _mm_setzero_ps());  // NaN != 0, as in the scalar code
    t0 = _mm_and_ps(nz, _mm_mul_ps(xg, _mm_div_ps(mid0, a)));
    t1 = _mm_and_ps(nz, _mm_mul_ps(xg, _mm_div_ps(mid1, a)));
    return _mm_and_ps(finite4(a), finite4(xg));
}

// finish() on 4 elements; returns the mask of finite ones.
template <bool UPDATE>
inline __m128 finish4(__m128 g, __m128 m, __m128d coef, __m128 lr, __m128 &mg, __m128 &s) {
    const __m128d lo = _mm_mul_pd(coef, _mm_cvtps_pd(m)), hi = _mm_mul_pd(coef, _mm_cvtps_pd(_mm_movehl_ps(m, m)));
    mg = _mm_sub_ps(g, _mm_movelh_ps(_mm_cvtpd_ps(lo), _mm_cvtpd_ps(hi)));
    const __m128 n = UPDATE ? _mm_sub_ps(m, _mm_mul_ps(lr, mg)) : m;
    const __m128 ok = _mm_and_ps(finite4(mg), finite4(n));
    s = select4(ok, n, m);
    return ok;
}

template <bool UPDATE>
py::ssize_t s1_pairs_simd(const float *xc, const float *ec, const float *xgc, float *mc, float *gc, py::ssize_t K,
                          double coef, float lr, ColumnSums &cs) {
    const __m128d c = _mm_set1_pd(coef);
    const __m128 l = _mm_set1_ps(lr);
    __m128d acc_m = _mm_setzero_pd(), acc_g = _mm_setzero_pd();
    __m128i n_good = _mm_setzero_si128();
    py::ssize_t k = 0;
    for (; k + 4 <= K; k += 4) {
        __m128 t0, t1, m0, m1, mg0, mg1, s0, s1;
        load_pairs(mc + 2 * k, m0, m1);
        count_true4(pair_terms4(xc + 2 * k, ec + 2 * k, m0, m1, xgc + k, t0, t1), n_good);
        count_true4(finish4<UPDATE>(t0, m0, c, l, mg0, s0), n_good);
        count_true4(finish4<UPDATE>(t1, m1, c, l, mg1, s1), n_good);
        store_pairs(gc + 2 * k, mg0, mg1);
        if (UPDATE) store_pairs(mc + 2 * k, s0, s1);
        add_squares(s0, acc_m);
        add_squares(s1, acc_m);
        add_squares(mg0, acc_g);
        add_squares(mg1, acc_g);
    }
    cs.sq_m += hsum(acc_m);
    cs.sq_g += hsum(acc_g);
    cs.bad += 3 * k - hsum_epi32(n_good);  // 4 pairs and 8 elements per step: 12 checks
    return k;
}

py::ssize_t sample_pairs_simd(const float *xc, const float *ec, const float *mc, const float *xgc, float *gc,
                              py::ssize_t K, bool first, ColumnSums &cs) {
    __m128i n_good = _mm_setzero_si128();
    py::ssize_t k = 0;
    for (; k + 4 <= K; k += 4) {
        __m128 t0, t1, m0, m1;
        load_pairs(mc + 2 * k, m0, m1);
        count_true4(pair_terms4(xc + 2 * k, ec + 2 * k, m0, m1, xgc + k, t0, t1), n_good);
        __m128 u0 = _mm_unpacklo_ps(t0, t1), u1 = _mm_unpackhi_ps(t0, t1);  // back to the re/im order of gc
        if (!first) {
            u0 = _mm_add_ps(_mm_loadu_ps(gc + 2 * k), u0);
            u1 = _mm_add_ps(_mm_loadu_ps(gc + 2 * k + 4), u1);
        }
        _mm_storeu_ps(gc + 2 * k, u0);
        _mm_storeu_ps(gc + 2 * k + 4, u1);
    }
    cs.bad += k - hsum_epi32(n_good);
    return k;
}

template <bool UPDATE>
py::ssize_t finish_elements_simd(float *mc, float *gc, py::ssize_t J, float fS, double coef, float lr,
                                 ColumnSums &cs) {
    const __m128d c = _mm_set1_pd(coef);
    const __m128 l = _mm_set1_ps(lr), S4 = _mm_set1_ps(fS);
    __m128d acc_m = _mm_setzero_pd(), acc_g = _mm_setzero_pd();
    __m128i n_good = _mm_setzero_si128();
    py::ssize_t j = 0;
    for (; j + 4 <= J; j += 4) {
        __m128 mg, s0;
        const __m128 g = _mm_div_ps(_mm_loadu_ps(gc + j), S4);
        count_true4(finish4<UPDATE>(g, _mm_loadu_ps(mc + j), c, l, mg, s0), n_good);
        _mm_storeu_ps(gc + j, mg);
        if (UPDATE) _mm_storeu_ps(mc + j, s0);
        add_squares(s0, acc_m);
        add_squares(mg, acc_g);
    }
    cs.sq_m += hsum(acc_m);
    cs.sq_g += hsum(acc_g);
    cs.bad += j - hsum_epi32(n_good);
    return j;
}

#ifdef AFMASK_AVX
// ---------------------------------------------------------------------------
// AVX: eight pairs at a time, the SSE2 code on 256-bit vectors. Its shuffles
// work within 128-bit halves, so the de-interleaved rows hold pairs in the order
// 0 1 4 5 | 2 3 6 7; xgrad is loaded in that order and unpacking restores the
// memory order on the way out. Every operation is elementwise, so the order
// changes nothing but the order of the float64 sums.

AFMASK_AVX_FN inline void avx_load_pairs(const float *p, __m256 &re, __m256 &im) {
    const __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
    re = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    im = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
}

AFMASK_AVX_FN inline __m256 avx_load_bins(const float *p) {  // 8 bins in the order 0 1 4 5 | 2 3 6 7
    const __m128d lo = _mm_castps_pd(_mm_loadu_ps(p)), hi = _mm_castps_pd(_mm_loadu_ps(p + 4));
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_castpd_ps(_mm_unpacklo_pd(lo, hi))),
                                _mm_castpd_ps(_mm_unpackhi_pd(lo, hi)), 1);
}

AFMASK_AVX_FN inline void avx_store_pairs(float *p, __m256 re, __m256 im) {
    _mm256_storeu_ps(p, _mm256_unpacklo_ps(re, im));
    _mm256_storeu_ps(p + 8, _mm256_unpackhi_ps(re, im));
}

AFMASK_AVX_FN inline __m256 avx_finite(__m256 v) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    return _mm256_cmp_ps(_mm256_and_ps(v, abs_mask), _mm256_set1_ps(FLT_MAX), _CMP_LE_OQ);
}

AFMASK_AVX_FN inline int avx_count_true(__m256 mask) { return __builtin_popcount(_mm256_movemask_ps(mask)); }

AFMASK_AVX_FN inline void avx_add_squares(__m256 v, __m256d &acc) {
    const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(v)), hi = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
    acc = _mm256_add_pd(acc, _mm256_add_pd(_mm256_mul_pd(lo, lo), _mm256_mul_pd(hi, hi)));
}

AFMASK_AVX_FN inline double avx_hsum(__m256d v) {
    const __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

AFMASK_AVX_FN inline __m256 avx_pair_terms(const float *xc, const float *ec, __m256 m0, __m256 m1, const float *xgc,
                                           __m256 &t0, __m256 &t1) {
    __m256 x0, x1, e0, e1;
    avx_load_pairs(xc, x0, x1);
    avx_load_pairs(ec, e0, e1);
    const __m256 xg = avx_load_bins(xgc);
    const __m256 re = _mm256_add_ps(x0, _mm256_mul_ps(e0, m0));
    const __m256 im = _mm256_add_ps(x1, _mm256_mul_ps(e1, m1));
    const __m256 a = _mm256_sqrt_ps(_mm256_add_ps(_mm256_mul_ps(re, re), _mm256_mul_ps(im, im)));
    const __m256 mid0 = _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(e0, e0), m0), _mm256_mul_ps(e0, x0));
    const __m256 mid1 = _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(e1, e1), m1), _mm256_mul_ps(e1, x1));
    const __m256 nz = _mm256_cmp_ps(a, _mm256_setzero_ps(), _CMP_NEQ_UQ);  // NaN != 0, as in the scalar code
    t0 = _mm256_and_ps(nz, _mm256_mul_ps(xg, _mm256_div_ps(mid0, a)));
    t1 = _mm256_and_ps(nz, _mm256_mul_ps(xg, _mm256_div_ps(mid1, a)));
    return _mm256_and_ps(avx_finite(a), avx_finite(xg));
}

template <bool UPDATE>
AFMASK_AVX_FN inline __m256 avx_finish(__m256 g, __m256 m, __m256d coef, __m256 lr, __m256 &mg, __m256 &s) {
    const __m128 lo = _mm256_cvtpd_ps(_mm256_mul_pd(coef, _mm256_cvtps_pd(_mm256_castps256_ps128(m))));
    const __m128 hi = _mm256_cvtpd_ps(_mm256_mul_pd(coef, _mm256_cvtps_pd(_mm256_extractf128_ps(m, 1))));
    mg = _mm256_sub_ps(g, _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1));
    const __m256 n = UPDATE ? _mm256_sub_ps(m, _mm256_mul_ps(lr, mg)) : m;
    const __m256 ok = _mm256_and_ps(avx_finite(mg), avx_finite(n));
    // and/andnot/or, not blendv: GCC 12 turns that blendv into per-lane branches.
    s = _mm256_or_ps(_mm256_and_ps(ok, n), _mm256_andnot_ps(ok, m));
    return ok;
}

template <bool UPDATE>
AFMASK_AVX_FN py::ssize_t s1_pairs_avx(const float *xc, const float *ec, const float *xgc, float *mc, float *gc,
                                       py::ssize_t K, double coef, float lr, ColumnSums &cs) {
    const __m256d c = _mm256_set1_pd(coef);
    const __m256 l = _mm256_set1_ps(lr);
    __m256d acc_m = _mm256_setzero_pd(), acc_g = _mm256_setzero_pd();
    long long n_good = 0;
    py::ssize_t k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 t0, t1, m0, m1, mg0, mg1, s0, s1;
        avx_load_pairs(mc + 2 * k, m0, m1);
        n_good += avx_count_true(avx_pair_terms(xc + 2 * k, ec + 2 * k, m0, m1, xgc + k, t0, t1));
        n_good += avx_count_true(avx_finish<UPDATE>(t0, m0, c, l, mg0, s0));
        n_good += avx_count_true(avx_finish<UPDATE>(t1, m1, c, l, mg1, s1));
        avx_store_pairs(gc + 2 * k, mg0, mg1);
        if (UPDATE) avx_store_pairs(mc + 2 * k, s0, s1);
        avx_add_squares(s0, acc_m);
        avx_add_squares(s1, acc_m);
        avx_add_squares(mg0, acc_g);
        avx_add_squares(mg1, acc_g);
    }
    cs.sq_m += avx_hsum(acc_m);
    cs.sq_g += avx_hsum(acc_g);
    cs.bad += 3 * k - n_good;
    return k;
}

AFMASK_AVX_FN py::ssize_t sample_pairs_avx(const float *xc, const float *ec, const float *mc, const float *xgc,
                                           float *gc, py::ssize_t K, bool first, ColumnSums &cs) {
    long long n_good = 0;
    py::ssize_t k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 t0, t1, m0, m1;
        avx_load_pairs(mc + 2 * k, m0, m1);
        n_good += avx_count_true(avx_pair_terms(xc + 2 * k, ec + 2 * k, m0, m1, xgc + k, t0, t1));
        __m256 u0 = _mm256_unpacklo_ps(t0, t1), u1 = _mm256_unpackhi_ps(t0, t1);
        if (!first) {
            u0 = _mm256_add_ps(_mm256_loadu_ps(gc + 2 * k), u0);
            u1 = _mm256_add_ps(_mm256_loadu_ps(gc + 2 * k + 8), u1);
        }
        _mm256_storeu_ps(gc + 2 * k, u0);
        _mm256_storeu_ps(gc + 2 * k + 8, u1);
    }
    cs.bad += k - n_good;
    return k;
}

template <bool UPDATE>
AFMASK_AVX_FN py::ssize_t finish_elements_avx(float *mc, float *gc, py::ssize_t J, float fS, double coef, float lr,
                                              ColumnSums &cs) {
    const __m256d c = _mm256_set1_pd(coef);
    const __m256 l = _mm256_set1_ps(lr), S8 = _mm256_set1_ps(fS);
    __m256d acc_m = _mm256_setzero_pd(), acc_g = _mm256_setzero_pd();
    long long n_good = 0;
    py::ssize_t j = 0;
    for (; j + 8 <= J; j += 8) {
        __m256 mg, s0;
        const __m256 g = _mm256_div_ps(_mm256_loadu_ps(gc + j), S8);
        n_good += avx_count_true(avx_finish<UPDATE>(g, _mm256_loadu_ps(mc + j), c, l, mg, s0));
        _mm256_storeu_ps(gc + j, mg);
        if (UPDATE) _mm256_storeu_ps(mc + j, s0);
        avx_add_squares(s0, acc_m);
        avx_add_squares(mg, acc_g);
    }
    cs.sq_m += avx_hsum(acc_m);
    cs.sq_g += avx_hsum(acc_g);
    cs.bad += j - n_good;
    return j;
}
#endif  // AFMASK_AVX
#endif  // AFMASK_SSE2

// SIMD levels: 0 scalar, 1 SSE2, 2 AVX.
int best_simd_level() {
#if defined(AFMASK_AVX)
    static const int level = (__builtin_cpu_supports("avx") && __builtin_cpu_supports("popcnt")) ? 2 : 1;
    return level;
#elif defined(AFMASK_SSE2)
    return 1;
#else
    return 0;
#endif
}

const char *simd_name(int level) { return level == 2 ? "avx" : level == 1 ? "sse2" : "none"; }

// mgrad = mean_s(data term) - coef*m; if UPDATE, m <- m - lr*mgrad where finite.
// One frame (column) per iteration of the parallel loop; its 2K floats stay in L1.
template <bool UPDATE>
BackwardResult backward_kernel(const float *xgrad, const float *x, const float *eps, float *m, float *mgrad,
                               py::ssize_t K, py::ssize_t T, py::ssize_t S, double coef, float lr, int simd) {
    double sq_m = 0.0, sq_g = 0.0;
    long long bad = 0;
    const py::ssize_t J = 2 * K;
    const float fS = static_cast<float>(S);
    (void)simd;  // unused when built without SIMD
    AFMASK_PRAGMA(omp parallel for schedule(dynamic, 16) reduction(+ : sq_m, sq_g, bad)
                  num_threads(g_threads > 0 ? g_threads : omp_get_max_threads())
                  if (static_cast<long long>(T) * K * S >= kParallelMinPairs))
    for (py::ssize_t t = 0; t < T; ++t) {
        const float *xc = x + J * t;
        float *mc = m + J * t;
        float *gc = mgrad + J * t;
        ColumnSums cs;
        // Each level takes the whole blocks it can from where the previous one stopped.
        if (S == 1) {
            // The common case in one pass: no re-read of the gradient column.
            const float *ec = eps + J * t;
            const float *xgc = xgrad + K * t;
            py::ssize_t k = 0;
#ifdef AFMASK_AVX
            if (simd >= 2) k += s1_pairs_avx<UPDATE>(xc, ec, xgc, mc, gc, K, coef, lr, cs);
#endif
#ifdef AFMASK_SSE2
            if (simd >= 1)
                k += s1_pairs_simd<UPDATE>(xc + 2 * k, ec + 2 * k, xgc + k, mc + 2 * k, gc + 2 * k, K - k, coef, lr, cs);
#endif
            s1_pairs_scalar<UPDATE>(xc, ec, xgc, mc, gc, k, K, coef, lr, cs);
        } else {
            // S > 1: sum the data term over samples in the output column itself
            // (in sample order), then finish it in one pass over the column.
            for (py::ssize_t s = 0; s < S; ++s) {
                const float *ec = eps + J * (t + T * s);
                const float *xgc = xgrad + K * (t + T * s);
                const bool first = s == 0;
                py::ssize_t k = 0;
#ifdef AFMASK_AVX
                if (simd >= 2) k += sample_pairs_avx(xc, ec, mc, xgc, gc, K, first, cs);
#endif
#ifdef AFMASK_SSE2
                if (simd >= 1)
                    k += sample_pairs_simd(xc + 2 * k, ec + 2 * k, mc + 2 * k, xgc + k, gc + 2 * k, K - k, first, cs);
#endif
                sample_pairs_scalar(xc, ec, mc, xgc, gc, k, K, first, cs);
            }
            py::ssize_t j = 0;
#ifdef AFMASK_AVX
            if (simd >= 2) j += finish_elements_avx<UPDATE>(mc, gc, J, fS, coef, lr, cs);
#endif
#ifdef AFMASK_SSE2
            if (simd >= 1) j += finish_elements_simd<UPDATE>(mc + j, gc + j, J - j, fS, coef, lr, cs);
#endif
            finish_elements_scalar<UPDATE>(mc, gc, j, J, fS, coef, lr, cs);
        }
        sq_m += cs.sq_m;
        sq_g += cs.sq_g;
        bad += cs.bad;
    }
    return {sq_m, sq_g, bad};
}

// The forward kernels' arguments (x, eps, m read; mag written), checked the same way for each.
struct ForwardArgs {
    View x, eps, m, mag;
    Dims d;
};

ForwardArgs check_forward(py::handle x_, py::handle eps_, py::handle m_, py::handle mag_) {
    const View x = check(x_, "x", false), eps = check(eps_, "eps", false), m = check(m_, "m", false),
               mag = check(mag_, "mag", true);
    const Dims d = dims_of(x, eps);
    expect_shape(m, "m", d.xshape);
    expect_shape(mag, "mag", d.kshape);
    expect_disjoint(mag, "mag", x, "x");
    expect_disjoint(mag, "mag", eps, "eps");
    expect_disjoint(mag, "mag", m, "m");
    return {x, eps, m, mag, d};
}

long long py_forward(py::handle x_, py::handle eps_, py::handle m_, py::handle mag_) {
    const ForwardArgs a = check_forward(x_, eps_, m_, mag_);
    py::gil_scoped_release release;
    return forward_kernel(a.x.data, a.eps.data, a.m.data, a.mag.data, a.d.K, a.d.T, a.d.S);
}

py::tuple py_backward(py::handle xgrad_, py::handle x_, py::handle eps_, py::handle m_, py::handle mgrad_, double lam,
                      double m_sqnorm, double lr, bool update, const std::string &simd) {
    const View xgrad = check(xgrad_, "xgrad", false), x = check(x_, "x", false), eps = check(eps_, "eps", false),
               m = check(m_, "m", update), mgrad = check(mgrad_, "mgrad", true);
    const Dims d = dims_of(x, eps);
    expect_shape(m, "m", d.xshape);
    expect_shape(xgrad, "xgrad", d.kshape);
    expect_shape(mgrad, "mgrad", d.xshape);
    expect_disjoint(mgrad, "mgrad", x, "x");
    expect_disjoint(mgrad, "mgrad", eps, "eps");
    expect_disjoint(mgrad, "mgrad", m, "m");
    expect_disjoint(mgrad, "mgrad", xgrad, "xgrad");
    if (update) {
        expect_disjoint(m, "m", x, "x");
        expect_disjoint(m, "m", eps, "eps");
        expect_disjoint(m, "m", xgrad, "xgrad");
    }
    if (!std::isfinite(lam)) throw py::value_error("lam: expected a finite number, got " + std::to_string(lam));
    if (lam != 0.0 && !(std::isfinite(m_sqnorm) && m_sqnorm > 0.0)) {
        throw py::value_error("m_sqnorm: expected a finite value > 0 when lam != 0, got " + std::to_string(m_sqnorm));
    }
    if (update && !std::isfinite(lr)) throw py::value_error("lr: expected a finite number, got " + std::to_string(lr));
    int level = best_simd_level();
    if (simd != "auto") {
        const int want = simd == "avx" ? 2 : simd == "sse2" ? 1 : simd == "none" ? 0 : -1;
        if (want < 0) throw py::value_error("simd: expected 'auto', 'avx', 'sse2' or 'none', got '" + simd + "'");
        if (want > level) {
            throw py::value_error(std::string("simd: '") + simd + "' is not available here (best: '" +
                                  simd_name(level) + "')");
        }
        level = want;
    }
    // The regulariser's gradient 2*lam*m/||m||^2 as coef*m in double: a float32 coef
    // would overflow for a tiny ||m|| where the C++'s (2*lam*m)/||m||^2 does not.
    const double coef = lam == 0.0 ? 0.0 : 2.0 * lam / m_sqnorm;
    BackwardResult r;
    {
        py::gil_scoped_release release;
        const float flr = static_cast<float>(lr);
        r = update ? backward_kernel<true>(xgrad.data, x.data, eps.data, m.data, mgrad.data, d.K, d.T, d.S, coef, flr, level)
                   : backward_kernel<false>(xgrad.data, x.data, eps.data, m.data, mgrad.data, d.K, d.T, d.S, coef, flr,
                                            level);
    }
    return py::make_tuple(r.m_sqnorm_next, r.mgrad_sqnorm, r.nonfinite);
}


// ---------------------------------------------------------------------------
// The rest of an iteration around the fused step (afmask.mask.objective, afmask.mask.run): the network
// input's per-sample statistics, its normalisation into the network's time-major layout, the normalisation's
// backward, and the default configuration's update (exp parametrisation, mean-log regulariser, Adam, bound).
// Every float32 operation is the one NumPy does, in the same order (no FMA: the AVX variants target AVX
// only), so the float32 results are NumPy's bit for bit; only the float64 sums add in another order.

// The elementwise loops below are compiled twice, for SSE2 and for AVX, from one body.
#ifdef AFMASK_AVX
#define AFMASK_TWICE(name, params, args)                               \
    AFMASK_AVX_FN void name##_avx params { name##_body args; }         \
    void name##_base params { name##_body args; }                      \
    inline void name params {                                          \
        if (best_simd_level() >= 2) name##_avx args; else name##_base args; \
    }
#else
#define AFMASK_TWICE(name, params, args) \
    inline void name params { name##_body args; }
#endif

struct Sums {
    double sum = 0.0, sq = 0.0;
};

// mag of one frame (column) and its float64 sum and sum of squares.
// mag of one frame (column) and its float64 sum and sum of squares. No integer count in the vector loop (it
// would keep the AVX variant to 128-bit vectors): the sums are not finite exactly when a magnitude is not.
#define AFMASK_MAG_COLUMN(xc, ec, mc, oc, K, sx, sq)                                      \
    AFMASK_PRAGMA(omp simd reduction(+ : sx, sq))                                        \
    for (py::ssize_t k = 0; k < K; ++k) {                                                \
        const float re = xc[2 * k] + ec[2 * k] * mc[2 * k];                              \
        const float im = xc[2 * k + 1] + ec[2 * k + 1] * mc[2 * k + 1];                  \
        const float a = std::sqrt(re * re + im * im);                                    \
        oc[k] = a;                                                                       \
        sx += static_cast<double>(a);                                                    \
        sq += static_cast<double>(a) * a;                                                \
    }

inline void mag_stats_cols_body(const float *x, const float *eps, const float *m, float *mag, py::ssize_t K,
                                py::ssize_t t0, py::ssize_t t1, py::ssize_t T, py::ssize_t s, double &sx,
                                double &sq, long long &bad) {
    for (py::ssize_t t = t0; t < t1; ++t) {
        const float *xc = x + 2 * K * t, *mc = m + 2 * K * t, *ec = eps + 2 * K * (t + T * s);
        float *oc = mag + K * (t + T * s);
        double cx = 0.0, cq = 0.0;
        AFMASK_MAG_COLUMN(xc, ec, mc, oc, K, cx, cq)
        if (!(std::fabs(cx) <= DBL_MAX && cq <= DBL_MAX)) {
            for (py::ssize_t k = 0; k < K; ++k) bad += !(oc[k] <= FLT_MAX);
        }
        sx += cx;
        sq += cq;
    }
}
AFMASK_TWICE(mag_stats_cols,
             (const float *x, const float *eps, const float *m, float *mag, py::ssize_t K, py::ssize_t t0,
              py::ssize_t t1, py::ssize_t T, py::ssize_t s, double &sx, double &sq, long long &bad),
             (x, eps, m, mag, K, t0, t1, T, s, sx, sq, bad))

// forward_kernel's magnitudes plus each sample's float64 sum and sum of squares of them.
long long forward_stats_kernel(const float *x, const float *eps, const float *m, float *mag, py::ssize_t K,
                               py::ssize_t T, py::ssize_t S, std::vector<Sums> &sums) {
    long long bad = 0;
    constexpr py::ssize_t chunk = 16;
    for (py::ssize_t s = 0; s < S; ++s) {
        double sx = 0.0, sq = 0.0;
        const long long chunks = (T + chunk - 1) / chunk;
        AFMASK_PRAGMA(omp parallel for schedule(dynamic, 1) reduction(+ : sx, sq, bad)
                      num_threads(g_threads > 0 ? g_threads : omp_get_max_threads())
                      if (static_cast<long long>(T) * K >= kParallelMinPairs))
        for (long long c = 0; c < chunks; ++c) {
            const py::ssize_t t0 = c * chunk, t1 = std::min<py::ssize_t>(T, t0 + chunk);
            mag_stats_cols(x, eps, m, mag, K, t0, t1, T, s, sx, sq, bad);
        }
        sums[s].sum = sx;
        sums[s].sq = sq;
    }
    return bad;
}

py::tuple py_forward_stats(py::handle x_, py::handle eps_, py::handle m_, py::handle mag_) {
    const ForwardArgs a = check_forward(x_, eps_, m_, mag_);
    std::vector<Sums> sums(static_cast<size_t>(a.d.S));
    long long bad;
    {
        py::gil_scoped_release release;
        bad = forward_stats_kernel(a.x.data, a.eps.data, a.m.data, a.mag.data, a.d.K, a.d.T, a.d.S, sums);
    }
    py::list sx, sq;
    for (const Sums &v : sums) {
        sx.append(v.sum);
        sq.append(v.sq);
    }
    return py::make_tuple(bad, sx, sq);
}

// A (T, K, S) view given by its element strides; k must be the contiguous one.
struct Strided3 {
    float *data = nullptr;
    py::ssize_t T = 0, K = 0, S = 0, st = 0, ss = 0;
};

Strided3 check_strided(py::handle obj, const char *name, bool written) {
    if (!py::isinstance<py::array>(obj)) throw py::type_error(std::string(name) + ": expected a numpy.ndarray");
    auto arr = py::reinterpret_borrow<py::array>(obj);
    if (!arr.dtype().equal(py::dtype::of<float>())) {
        throw py::type_error(std::string(name) + ": expected dtype float32 (native byte order), got " +
                             std::string(py::str(arr.dtype())));
    }
    if (arr.ndim() != 3) throw py::value_error(std::string(name) + ": expected a 3-D (T, K, S) array");
    if (written && !arr.writeable()) throw py::value_error(std::string(name) + ": is written but read-only");
    Strided3 v;
    v.T = arr.shape(0);
    v.K = arr.shape(1);
    v.S = arr.shape(2);
    const py::ssize_t f = static_cast<py::ssize_t>(sizeof(float));
    if (arr.strides(0) % f || arr.strides(2) % f || (v.K > 1 && arr.strides(1) != f) ||
        reinterpret_cast<std::uintptr_t>(arr.data()) % alignof(float)) {
        throw py::value_error(std::string(name) + ": expected float32 strides with K contiguous, got strides " +
                              std::to_string(arr.strides(0)) + ", " + std::to_string(arr.strides(1)) + ", " +
                              std::to_string(arr.strides(2)));
    }
    v.st = arr.strides(0) / f;
    v.ss = arr.strides(2) / f;
    v.data = static_cast<float *>(const_cast<void *>(arr.data()));
    return v;
}

// out[t, k, s] = (mag[k, t, s] - mean_s) / stdev_s in float32 (NumPy's subtract and divide by float32 scalars).
inline void normalise_body(const float *mag, const Strided3 &out, const float *mf, const float *sf) {
    for (py::ssize_t s = 0; s < out.S; ++s) {
        const float mu = mf[s], sd = sf[s];
        for (py::ssize_t t = 0; t < out.T; ++t) {
            const float *src = mag + out.K * (t + out.T * s);
            float *dst = out.data + out.st * t + out.ss * s;
            AFMASK_PRAGMA(omp simd)
            for (py::ssize_t k = 0; k < out.K; ++k) dst[k] = (src[k] - mu) / sd;
        }
    }
}
AFMASK_TWICE(normalise, (const float *mag, const Strided3 &out, const float *mf, const float *sf),
             (mag, out, mf, sf))

void py_normalise(py::handle mag_, py::handle out_, const std::vector<double> &mean, const std::vector<double> &stdev) {
    const View mag = check(mag_, "mag", false);
    const Strided3 out = check_strided(out_, "out", true);
    const std::vector<py::ssize_t> want =
        mag.shape.size() == 2 ? std::vector<py::ssize_t>{out.K, out.T} : std::vector<py::ssize_t>{out.K, out.T, out.S};
    if (mag.shape.size() == 2 && out.S != 1) throw py::value_error("out: expected S = 1 for a 2-D mag");
    expect_shape(mag, "mag", want);
    if (static_cast<py::ssize_t>(mean.size()) != out.S || static_cast<py::ssize_t>(stdev.size()) != out.S) {
        throw py::value_error("mean, stdev: expected one value per sample");
    }
    std::vector<float> mf(mean.begin(), mean.end()), sf(stdev.begin(), stdev.end());
    py::gil_scoped_release release;
    normalise(mag.data, out, mf.data(), sf.data());
}

// Per sample: sum(dy) and sum(dy * mag) in float64.
inline void grad_stats_body(const Strided3 &dy, const float *mag, double *sd, double *sdx) {
    for (py::ssize_t s = 0; s < dy.S; ++s) {
        double a = 0.0, b = 0.0;
        for (py::ssize_t t = 0; t < dy.T; ++t) {
            const float *d = dy.data + dy.st * t + dy.ss * s;
            const float *x = mag + dy.K * (t + dy.T * s);
            double ca = 0.0, cb = 0.0;
            AFMASK_PRAGMA(omp simd reduction(+ : ca, cb))
            for (py::ssize_t k = 0; k < dy.K; ++k) {
                ca += static_cast<double>(d[k]);
                cb += static_cast<double>(d[k]) * static_cast<double>(x[k]);
            }
            a += ca;
            b += cb;
        }
        sd[s] = a;
        sdx[s] = b;
    }
}
AFMASK_TWICE(grad_stats, (const Strided3 &dy, const float *mag, double *sd, double *sdx), (dy, mag, sd, sdx))

py::tuple py_grad_stats(py::handle dy_, py::handle mag_) {
    const Strided3 dy = check_strided(dy_, "dy", false);
    const View mag = check(mag_, "mag", false);
    const std::vector<py::ssize_t> want =
        mag.shape.size() == 2 ? std::vector<py::ssize_t>{dy.K, dy.T} : std::vector<py::ssize_t>{dy.K, dy.T, dy.S};
    expect_shape(mag, "mag", want);
    std::vector<double> sd(static_cast<size_t>(dy.S)), sdx(static_cast<size_t>(dy.S));
    {
        py::gil_scoped_release release;
        grad_stats(dy, mag.data, sd.data(), sdx.data());
    }
    return py::make_tuple(py::cast(sd), py::cast(sdx));
}

// xgrad[k, t, s] = (dy[t, k, s] * a_s + mag[k, t, s] * b_s) + c_s in float32: the normalisation's backward
// written into the layout the fused step reads.
inline void norm_backward_body(const Strided3 &dy, const float *mag, float *xg, const float *a, const float *b,
                               const float *c) {
    for (py::ssize_t s = 0; s < dy.S; ++s) {
        const float as = a[s], bs = b[s], cs = c[s];
        for (py::ssize_t t = 0; t < dy.T; ++t) {
            const float *d = dy.data + dy.st * t + dy.ss * s;
            const float *x = mag + dy.K * (t + dy.T * s);
            float *o = xg + dy.K * (t + dy.T * s);
            AFMASK_PRAGMA(omp simd)
            for (py::ssize_t k = 0; k < dy.K; ++k) o[k] = (d[k] * as + x[k] * bs) + cs;
        }
    }
}
AFMASK_TWICE(norm_backward,
             (const Strided3 &dy, const float *mag, float *xg, const float *a, const float *b, const float *c),
             (dy, mag, xg, a, b, c))

void py_norm_backward(py::handle dy_, py::handle mag_, py::handle xg_, const std::vector<double> &a,
                      const std::vector<double> &b, const std::vector<double> &c) {
    const Strided3 dy = check_strided(dy_, "dy", false);
    const View mag = check(mag_, "mag", false), xg = check(xg_, "xgrad", true);
    const std::vector<py::ssize_t> want =
        mag.shape.size() == 2 ? std::vector<py::ssize_t>{dy.K, dy.T} : std::vector<py::ssize_t>{dy.K, dy.T, dy.S};
    expect_shape(mag, "mag", want);
    expect_shape(xg, "xgrad", want);
    expect_disjoint(xg, "xgrad", mag, "mag");
    const py::ssize_t n = static_cast<py::ssize_t>(dy.S);
    if (static_cast<py::ssize_t>(a.size()) != n || static_cast<py::ssize_t>(b.size()) != n ||
        static_cast<py::ssize_t>(c.size()) != n) {
        throw py::value_error("a, b, c: expected one value per sample");
    }
    std::vector<float> af(a.begin(), a.end()), bf(b.begin(), b.end()), cf(c.begin(), c.end());
    py::gil_scoped_release release;
    norm_backward(dy, mag.data, xg.data, af.data(), bf.data(), cf.data());
}

// The default update in one pass over theta, m, the data gradient and Adam's moments:
//   g_reg = c / m; grad = (g + g_reg) * m; m1 = m1*b1 + grad*(1-b1); m2 = m2*b2 + grad*grad*(1-b2);
//   theta' = min(theta - m1*step / (sqrt(m2) + eps'), bound)
// with the float64 sums the log row needs: sum m, sum m^2, sum g_reg^2, sum log|m|, and counts of m that
// are 0, subnormal, Inf or NaN ("special": the caller then runs the generic update, which says why) and of
// non-finite new theta. sum log|m| = ln 2 * sum(exponents) + log(product of the mantissas in [1, 2)), the
// products taken over at most 512 elements (< 2^512, no overflow) in float64: as exact as a sum of logs.
struct UpdateSums {
    double sm = 0.0, sm2 = 0.0, sg2 = 0.0, slog = 0.0;
    long long esum = 0, special = 0, nonfinite = 0;
};

struct UpdateArgs {
    const float *theta, *m, *g, *m1, *m2;
    float *theta_out, *m1_out, *m2_out;
    float c, b1, omb1, b2, omb2, step, epsc, bound;
};

inline void update_range_body(const UpdateArgs &u, py::ssize_t i0, py::ssize_t i1, UpdateSums &r) {
    constexpr py::ssize_t chunk = 512;
    for (py::ssize_t j0 = i0; j0 < i1; j0 += chunk) {
        const py::ssize_t j1 = std::min(i1, j0 + chunk);
        double sm = 0.0, sm2 = 0.0, sg2 = 0.0, prod = 1.0;
        long long esum = 0, special = 0, nonfinite = 0;
        AFMASK_PRAGMA(omp simd reduction(+ : sm, sm2, sg2, esum, special, nonfinite) reduction(* : prod))
        for (py::ssize_t i = j0; i < j1; ++i) {
            const float mi = u.m[i];
            const float greg = u.c / mi;
            const float grad = (u.g[i] + greg) * mi;
            const float n1 = u.m1[i] * u.b1 + grad * u.omb1;
            const float n2 = u.m2[i] * u.b2 + (grad * grad) * u.omb2;
            const float q = (n1 * u.step) / (std::sqrt(n2) + u.epsc);
            const float nt0 = u.theta[i] - q;
            const float nt = nt0 > u.bound ? u.bound : nt0;  // np.minimum: NaN stays NaN
            u.m1_out[i] = n1;
            u.m2_out[i] = n2;
            u.theta_out[i] = nt;
            nonfinite += !(std::fabs(nt) <= FLT_MAX);
            std::uint32_t bits;
            std::memcpy(&bits, &mi, sizeof bits);
            const std::uint32_t e = (bits >> 23) & 0xffu;
            special += (e == 0u) | (e == 0xffu);
            esum += static_cast<long long>(e);
            const std::uint32_t fb = (bits & 0x007fffffu) | 0x3f800000u;  // the mantissa as a float in [1, 2)
            float f;
            std::memcpy(&f, &fb, sizeof f);
            prod *= static_cast<double>(f);
            sm += static_cast<double>(mi);
            sm2 += static_cast<double>(mi) * mi;
            sg2 += static_cast<double>(greg) * greg;
        }
        r.sm += sm;
        r.sm2 += sm2;
        r.sg2 += sg2;
        r.slog += std::log(prod);
        r.esum += esum - 127LL * (j1 - j0);
        r.special += special;
        r.nonfinite += nonfinite;
    }
}
// SSE2 only: its integer lanes (the exponents) need AVX2 in 256-bit vectors, and GCC then left the AVX loop scalar.
inline void update_range(const UpdateArgs &u, py::ssize_t i0, py::ssize_t i1, UpdateSums &r) {
    update_range_body(u, i0, i1, r);
}

py::dict py_update_exp_mean_log(py::handle theta_, py::handle m_, py::handle g_, py::handle m1_, py::handle m2_,
                                 py::handle theta_out_, py::handle m1_out_, py::handle m2_out_, double c, double b1,
                                 double omb1, double b2, double omb2, double step, double epsc, double bound) {
    const View theta = check(theta_, "theta", false), m = check(m_, "m", false), g = check(g_, "g", false),
               m1 = check(m1_, "m1", false), m2 = check(m2_, "m2", false),
               theta_out = check(theta_out_, "theta_out", true), m1_out = check(m1_out_, "m1_out", true),
               m2_out = check(m2_out_, "m2_out", true);
    const View *ins[] = {&theta, &m, &g, &m1, &m2};
    const char *in_names[] = {"theta", "m", "g", "m1", "m2"};
    const View *outs[] = {&theta_out, &m1_out, &m2_out};
    const char *out_names[] = {"theta_out", "m1_out", "m2_out"};
    for (const View *v : ins) expect_shape(*v, "theta, m, g, m1, m2", theta.shape);
    for (int o = 0; o < 3; ++o) {
        expect_shape(*outs[o], out_names[o], theta.shape);
        // elementwise: an output may be its own input (in place), never overlap another array
        for (int i = 0; i < 5; ++i) {
            if (!(outs[o]->data == ins[i]->data && i == (o == 0 ? 0 : o + 2))) expect_disjoint(*outs[o], out_names[o], *ins[i], in_names[i]);
        }
        for (int p = 0; p < o; ++p) expect_disjoint(*outs[o], out_names[o], *outs[p], out_names[p]);
    }
    UpdateArgs u{theta.data, m.data, g.data, m1.data, m2.data, theta_out.data, m1_out.data, m2_out.data,
                 static_cast<float>(c), static_cast<float>(b1), static_cast<float>(omb1), static_cast<float>(b2),
                 static_cast<float>(omb2), static_cast<float>(step), static_cast<float>(epsc),
                 static_cast<float>(bound)};
    py::ssize_t n = 1;
    for (py::ssize_t v : theta.shape) n *= v;
    UpdateSums r;
    {
        py::gil_scoped_release release;
        constexpr py::ssize_t block = 1 << 14;
        const long long blocks = (n + block - 1) / block;
        double sm = 0.0, sm2 = 0.0, sg2 = 0.0, slog = 0.0;
        long long esum = 0, special = 0, nonfinite = 0;
        AFMASK_PRAGMA(omp parallel for schedule(dynamic, 1) reduction(+ : sm, sm2, sg2, slog, esum, special, nonfinite)
                      num_threads(g_threads > 0 ? g_threads : omp_get_max_threads())
                      if (n >= 4 * kParallelMinPairs))
        for (long long b = 0; b < blocks; ++b) {
            UpdateSums part;
            update_range(u, b * block, std::min<py::ssize_t>(n, (b + 1) * block), part);
            sm += part.sm;
            sm2 += part.sm2;
            sg2 += part.sg2;
            slog += part.slog;
            esum += part.esum;
            special += part.special;
            nonfinite += part.nonfinite;
        }
        r.sm = sm, r.sm2 = sm2, r.sg2 = sg2, r.slog = slog, r.esum = esum, r.special = special, r.nonfinite = nonfinite;
    }
    const double sum_log = r.slog + static_cast<double>(r.esum) * 0.69314718055994530942;
    py::dict out;
    out["sum_m"] = r.sm;
    out["sum_m2"] = r.sm2;
    out["sum_greg2"] = r.sg2;
    out["sum_log_m"] = sum_log;
    out["special"] = r.special;
    out["nonfinite"] = r.nonfinite;
    return out;
}

// Attenuation noise eps[2k + r, t, s] = -(u[k, t, s] * x[2k + r, t]): one u per bin for its two rows. The
// negation is exact, so this is u * (-x) bit for bit, without a second copy of the clean FFT.
inline void attenuate_body(const float *u, const float *x, float *eps, py::ssize_t K, py::ssize_t T, py::ssize_t S) {
    for (py::ssize_t s = 0; s < S; ++s) {
        for (py::ssize_t t = 0; t < T; ++t) {
            const float *uc = u + K * (t + T * s), *xc = x + 2 * K * t;
            float *ec = eps + 2 * K * (t + T * s);
            AFMASK_PRAGMA(omp simd)
            for (py::ssize_t k = 0; k < K; ++k) {
                ec[2 * k] = -(uc[k] * xc[2 * k]);
                ec[2 * k + 1] = -(uc[k] * xc[2 * k + 1]);
            }
        }
    }
}
AFMASK_TWICE(attenuate, (const float *u, const float *x, float *eps, py::ssize_t K, py::ssize_t T, py::ssize_t S),
             (u, x, eps, K, T, S))

void py_attenuate(py::handle u_, py::handle x_, py::handle eps_) {
    const View u = check(u_, "u", false), x = check(x_, "x", false), eps = check(eps_, "eps", true);
    const Dims d = dims_of(x, eps);
    expect_shape(u, "u", d.kshape);
    expect_disjoint(eps, "eps", u, "u");
    expect_disjoint(eps, "eps", x, "x");
    py::gil_scoped_release release;
    attenuate(u.data, x.data, eps.data, d.K, d.T, d.S);
}

}  // namespace

PYBIND11_MODULE(_ext, mod) {
    mod.doc() = "afmask's fused mask step on the CPU: float32, Fortran order (ArrayFire layout), no conversion.";
#ifdef AFMASK_OPENMP
    mod.attr("openmp") = true;
#else
    mod.attr("openmp") = false;
#endif
    mod.def("forward", &py_forward, py::arg("x"), py::arg("eps"), py::arg("m"), py::arg("mag"),
            "Write |x + eps*m| per bin into mag ((K, T[, S]) float32, F order); returns the count of non-finite "
            "magnitudes.");
    mod.def("backward", &py_backward, py::arg("xgrad"), py::arg("x"), py::arg("eps"), py::arg("m"),
            py::arg("mgrad"), py::arg("lam"), py::arg("m_sqnorm"), py::arg("lr"), py::arg("update"),
            py::arg("simd") = "auto",
            "Write mgrad ((2K, T) float32, F order) and, if update, m -= lr*mgrad in place; returns "
            "(||m_next||^2, ||mgrad||^2, nonfinite count). simd: 'auto' (the best here), or 'avx', 'sse2', "
            "'none' (the portable scalar loop) to test each.");
    mod.attr("simd") = py::str(simd_name(best_simd_level()));
    mod.def("forward_stats", &py_forward_stats, py::arg("x"), py::arg("eps"), py::arg("m"), py::arg("mag"),
            "forward, and each sample's float64 sum and sum of squares of the magnitudes: (nonfinite, sums, sumsqs).");
    mod.def("normalise", &py_normalise, py::arg("mag"), py::arg("out"), py::arg("mean"), py::arg("stdev"),
            "out (T, K, S view, K contiguous) = (mag (K, T[, S]) - mean_s) / stdev_s in float32.");
    mod.def("grad_stats", &py_grad_stats, py::arg("dy"), py::arg("mag"),
            "Per sample float64 sum(dy) and sum(dy * mag): dy a (T, K, S) view with K contiguous.");
    mod.def("norm_backward", &py_norm_backward, py::arg("dy"), py::arg("mag"), py::arg("xgrad"), py::arg("a"),
            py::arg("b"), py::arg("c"), "xgrad (K, T[, S]) = (dy * a_s + mag * b_s) + c_s in float32.");
    mod.def("attenuate", &py_attenuate, py::arg("u"), py::arg("x"), py::arg("eps"),
            "eps (2K, T[, S]) = -(u (K, T[, S]) * x (2K, T)), one u for both rows of a bin.");
    mod.def("update_exp_mean_log", &py_update_exp_mean_log, py::arg("theta"), py::arg("m"), py::arg("g"),
            py::arg("m1"), py::arg("m2"), py::arg("theta_out"), py::arg("m1_out"), py::arg("m2_out"), py::arg("c"),
            py::arg("b1"), py::arg("omb1"), py::arg("b2"), py::arg("omb2"), py::arg("step"), py::arg("epsc"),
            py::arg("bound"),
            "The default configuration's update in one pass (see csrc/mask_step.cpp); returns its sums and counts.");
    mod.def(
        "set_num_threads", [](int n) { g_threads = n > 0 ? n : 0; }, py::arg("n"),
        "Threads for the OpenMP loops (0 = OpenMP default); no effect without OpenMP.");
    mod.def(
        "get_num_threads",
        []() {
#ifdef AFMASK_OPENMP
            return g_threads > 0 ? g_threads : omp_get_max_threads();
#else
            return 1;
#endif
        },
        "Threads the OpenMP loops use (1 without OpenMP).");
    register_conv_time(mod);
}
