// afmask._ext.conv_forward / conv_backward_input: the tap loops of
// afmask/fl/conv.py (the time convolution without an im2col buffer) in C++.
//
// The arithmetic is the Python loop's, call for call: the same GEMMs in the same
// order on the same pointers, each output block starting as the bias, then the
// ReLU, so the two give the same bits. What moves here is what surrounds the GEMMs: one ctypes call per
// tap, and the bias, ReLU and ReLU-mask passes, which NumPy made over the whole
// output while C++ makes them over each block while it is in the cache.
//
// The GEMM is the cblas_?gemm of the OpenBLAS NumPy itself loaded: Python finds
// it (conv.py, _Cblas) and passes its address and whether its integers are
// 64-bit (ILP64). Nothing here links against a BLAS.
//
// Arrays are C-contiguous, time-major, all of one dtype (float32 or float64):
// a phase of the padded input (rows, N, C), the taps (k, C, O) and, for the
// backward, the taps transposed (k, O, C), the output and its gradient (nx, N, O). A wrong dtype, layout or shape raises before any work.

#include "conv_time.h"

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace py = pybind11;

namespace {

constexpr int kRowMajor = 101, kNoTrans = 111;

template <typename T, typename I>
using GemmFn = void (*)(int, int, int, I, I, I, T, const T *, I, const T *, I, T, T *, I);

// C (m x n, leading dim ldc) += A (m x k) B (k x n), row-major.
template <typename T>
struct Gemm {
    std::uintptr_t fn;
    bool ilp64;

    void operator()(long long m, long long n, long long k, const T *a, long long lda, const T *b, long long ldb, T *c,
                    long long ldc) const {
        if (ilp64) {
            reinterpret_cast<GemmFn<T, std::int64_t>>(fn)(kRowMajor, kNoTrans, kNoTrans, m, n, k, T(1), a, lda, b,
                                                          ldb, T(1), c, ldc);
        } else {
            reinterpret_cast<GemmFn<T, int>>(fn)(kRowMajor, kNoTrans, kNoTrans, int(m), int(n), int(k), T(1), a,
                                                 int(lda), b, int(ldb), T(1), c, int(ldc));
        }
    }
};

std::string shape_str(const py::array &a) {
    std::string s = "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
    return s + (a.ndim() == 1 ? ",)" : ")");
}

// The data of a C-contiguous array of dtype T and the given rank; shape entries -1 are free.
template <typename T>
T *data_of(py::handle obj, const char *name, const std::vector<py::ssize_t> &shape, bool written) {
    if (!py::isinstance<py::array>(obj)) throw py::type_error(std::string(name) + ": expected a numpy.ndarray");
    auto a = py::reinterpret_borrow<py::array>(obj);
    if (!a.dtype().equal(py::dtype::of<T>())) {
        throw py::type_error(std::string(name) + ": expected dtype " + std::string(py::str(py::dtype::of<T>())) +
                             ", got " + std::string(py::str(a.dtype())));
    }
    if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string(name) + ": expected a C-contiguous array");
    bool ok = a.ndim() == py::ssize_t(shape.size());
    for (size_t i = 0; ok && i < shape.size(); ++i) ok = shape[i] < 0 || a.shape(i) == shape[i];
    if (!ok) throw py::value_error(std::string(name) + ": unexpected shape " + shape_str(a));
    if (written && !a.writeable()) throw py::value_error(std::string(name) + ": is written but read-only");
    return static_cast<T *>(const_cast<void *>(a.data()));
}

struct Taps {
    py::ssize_t k, C, O;
};

template <typename T>
Taps taps_of(py::handle w) {
    data_of<T>(w, "the taps", {-1, -1, -1}, false);
    auto a = py::reinterpret_borrow<py::array>(w);
    return {a.shape(0), a.shape(1), a.shape(2)};
}

// The phases of the padded input (or of its gradient): phase ph must hold every row a tap of it reads.
template <typename T>
std::vector<T *> phases_of(const py::list &phases, const char *name, py::ssize_t s, py::ssize_t k, py::ssize_t nx,
                           py::ssize_t N, py::ssize_t C, bool written, std::vector<py::ssize_t> *sizes) {
    if (py::ssize_t(phases.size()) != s) {
        throw py::value_error(std::string(name) + ": expected " + std::to_string(s) + " phases (the stride), got " +
                              std::to_string(phases.size()));
    }
    std::vector<T *> out;
    for (py::ssize_t ph = 0; ph < s; ++ph) {
        const std::string what = std::string(name) + "[" + std::to_string(ph) + "]";
        T *p = data_of<T>(phases[ph], what.c_str(), {-1, N, C}, written);
        const py::ssize_t rows = py::reinterpret_borrow<py::array>(phases[ph]).shape(0);
        const py::ssize_t need = ph < k ? (k - 1 - ph) / s + nx : 0;
        if (rows < need) {
            throw py::value_error(what + ": " + std::to_string(rows) + " rows, the taps read " + std::to_string(need));
        }
        out.push_back(p);
        if (sizes) sizes->push_back(rows);
    }
    return out;
}

template <typename T>
void forward_impl(const py::list &phases, py::handle wk_, py::handle bias_, py::handle out_, py::ssize_t s, bool relu,
                  py::ssize_t block_rows, Gemm<T> gemm) {
    const Taps t = taps_of<T>(wk_);
    const T *wk = data_of<T>(wk_, "wk", {t.k, t.C, t.O}, false);
    T *out = data_of<T>(out_, "out", {-1, -1, t.O}, true);
    auto oa = py::reinterpret_borrow<py::array>(out_);
    const py::ssize_t nx = oa.shape(0), N = oa.shape(1);
    const T *bias = bias_.is_none() ? nullptr : data_of<T>(bias_, "bias", {t.O}, false);
    std::vector<T *> ph = phases_of<T>(phases, "phases", s, t.k, nx, N, t.C, false, nullptr);
    const py::ssize_t tb = std::max<py::ssize_t>(block_rows / std::max<py::ssize_t>(N, 1), 1);
    py::gil_scoped_release nogil;
    for (py::ssize_t t0 = 0; t0 < nx; t0 += tb) {
        const py::ssize_t t1 = std::min(t0 + tb, nx), rows = (t1 - t0) * N;
        T *oc = out + t0 * N * t.O;
        // the block starts as the bias and every tap accumulates (beta = 1): OpenBLAS's beta = 0 is a zeroing
        // pass of its own, and the bias would be one more
        for (py::ssize_t r = 0; r < rows; ++r) {
            if (bias)
                std::memcpy(oc + r * t.O, bias, sizeof(T) * t.O);
            else
                std::memset(oc + r * t.O, 0, sizeof(T) * t.O);
        }
        for (py::ssize_t j = 0; j < t.k; ++j) {
            const T *src = ph[j % s] + (j / s + t0) * N * t.C;
            gemm(rows, t.O, t.C, src, t.C, wk + j * t.C * t.O, t.O, oc, t.O);
        }
        if (relu)  // as NumPy's maximum(oc, 0): a NaN stays NaN
            for (py::ssize_t e = 0; e < rows * t.O; ++e) oc[e] = oc[e] < T(0) ? T(0) : oc[e];
    }
}

// out = g * (relu_out > 0), as NumPy's multiply by the mask (a NaN or inf in g stays one). Written without a
// branch and on unaliased pointers so that it vectorises: a branch on a random mask took 5 us per 1000 elements.
template <typename T>
void mask_by_relu(T *__restrict out, const T *__restrict g, const T *__restrict relu_out, py::ssize_t n) {
    for (py::ssize_t e = 0; e < n; ++e) {
        const T m = relu_out[e] > T(0);  // (the ternary form was left a branch: trapping comparisons)
        out[e] = g[e] * m;
    }
}

template <typename T>
void backward_impl(py::handle g_, py::handle relu_out_, py::handle wkt_, const py::list &dph, py::ssize_t s,
                   py::ssize_t block_rows, py::handle scratch_, Gemm<T> gemm) {
    Taps t = taps_of<T>(wkt_);  // the taps transposed, (k, O, C): a GEMM without a transposed operand is faster
    std::swap(t.C, t.O);
    const T *wkt = data_of<T>(wkt_, "wkt", {t.k, t.O, t.C}, false);
    const T *g = data_of<T>(g_, "g", {-1, -1, t.O}, false);
    auto ga = py::reinterpret_borrow<py::array>(g_);
    const py::ssize_t nx = ga.shape(0), N = ga.shape(1);
    const T *o = relu_out_.is_none() ? nullptr : data_of<T>(relu_out_, "relu_out", {nx, N, t.O}, false);
    std::vector<py::ssize_t> sizes;
    std::vector<T *> d = phases_of<T>(dph, "dph", s, t.k, nx, N, t.C, true, &sizes);
    const py::ssize_t tb = std::max<py::ssize_t>(block_rows / std::max<py::ssize_t>(N, 1), 1);
    T *scratch = nullptr;
    if (o) {
        scratch = data_of<T>(scratch_, "scratch", {-1, t.O}, true);
        if (py::reinterpret_borrow<py::array>(scratch_).shape(0) < std::min(tb, nx) * N)
            throw py::value_error("scratch: fewer rows than one block of the output gradient");
    }
    py::gil_scoped_release nogil;
    for (py::ssize_t ph = 0; ph < s; ++ph) std::memset(d[ph], 0, sizeof(T) * sizes[ph] * N * t.C);
    for (py::ssize_t t0 = 0; t0 < nx; t0 += tb) {
        const py::ssize_t t1 = std::min(t0 + tb, nx), n = (t1 - t0) * N * t.O;
        const T *gc = g + t0 * N * t.O;
        if (o) {
            mask_by_relu(scratch, gc, o + t0 * N * t.O, n);
            gc = scratch;
        }
        for (py::ssize_t j = 0; j < t.k; ++j) {
            T *dst = d[j % s] + (j / s + t0) * N * t.C;
            gemm((t1 - t0) * N, t.C, t.O, gc, t.O, wkt + j * t.O * t.C, t.C, dst, t.C);
        }
    }
}

bool is_double(py::handle w) {
    if (!py::isinstance<py::array>(w)) throw py::type_error("the taps: expected a numpy.ndarray");
    auto dt = py::reinterpret_borrow<py::array>(w).dtype();
    if (dt.equal(py::dtype::of<double>())) return true;
    if (dt.equal(py::dtype::of<float>())) return false;
    throw py::type_error("the taps: expected float32 or float64, got " + std::string(py::str(dt)));
}

void py_conv_forward(const py::list &phases, py::handle wk, py::handle bias, py::handle out, py::ssize_t s, bool relu,
                     py::ssize_t block_rows, std::uintptr_t gemm, bool ilp64) {
    if (s < 1) throw py::value_error("stride must be >= 1");
    if (!gemm) throw py::value_error("gemm: a null function address");
    if (is_double(wk))
        forward_impl<double>(phases, wk, bias, out, s, relu, block_rows, Gemm<double>{gemm, ilp64});
    else
        forward_impl<float>(phases, wk, bias, out, s, relu, block_rows, Gemm<float>{gemm, ilp64});
}

void py_conv_backward_input(py::handle g, py::handle relu_out, py::handle wkt, const py::list &dph, py::ssize_t s,
                            py::ssize_t block_rows, py::handle scratch, std::uintptr_t gemm, bool ilp64) {
    if (s < 1) throw py::value_error("stride must be >= 1");
    if (!gemm) throw py::value_error("gemm: a null function address");
    if (is_double(wkt))
        backward_impl<double>(g, relu_out, wkt, dph, s, block_rows, scratch, Gemm<double>{gemm, ilp64});
    else
        backward_impl<float>(g, relu_out, wkt, dph, s, block_rows, scratch, Gemm<float>{gemm, ilp64});
}

}  // namespace

void register_conv_time(py::module_ &mod) {
    mod.def("conv_forward", &py_conv_forward, py::arg("phases"), py::arg("wk"), py::arg("bias"), py::arg("out"),
            py::arg("s"), py::arg("relu"), py::arg("block_rows"), py::arg("gemm"), py::arg("ilp64"),
            "out (nx, N, O) = the time convolution of the padded input's s phases (rows, N, C) by the taps wk "
            "(k, C, O), plus bias, through a ReLU if asked; gemm is the address of cblas_?gemm for the dtype.");
    mod.def("conv_backward_input", &py_conv_backward_input, py::arg("g"), py::arg("relu_out"), py::arg("wkt"),
            py::arg("dph"), py::arg("s"), py::arg("block_rows"), py::arg("scratch"), py::arg("gemm"),
            py::arg("ilp64"),
            "dph (s phases, rows x N x C, zeroed here) = the gradient of the padded input from g (nx, N, O) and "
            "the transposed taps wkt (k, O, C), masked by relu_out > 0 if given (scratch: one block of g's rows).");
}
