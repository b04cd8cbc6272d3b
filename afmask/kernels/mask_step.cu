// afmask's fused mask step on the GPU (compiled at run time by CuPy's
// RawModule / NVRTC, or ahead of time with nvcc for a check).
//
// Same layout and maths as csrc/mask_step.cpp: float32 arrays in ArrayFire
// orientation, column-major. x, m, mgrad are (2K, T); eps is (2K, T, S);
// mag, xgrad are (K, T, S). The re/im pair of bin k in frame t is adjacent,
// so a pair is one float2 (the wrapper checks 8-byte alignment) and pair
// index i = k + K*t (+ K*T*s) addresses x, m, mgrad (as float2) and mag,
// xgrad (as float) alike.
//
// Compile with --fmad=false so that every product and sum rounds as on the
// CPU reference (sqrtf and '/' are IEEE-rounded by default).
//
// No headers: NVRTC compiles this without the C++ standard library.

#define AFMASK_FLT_MAX 3.402823466e+38f
#define AFMASK_BLOCK 256

__device__ __forceinline__ bool afmask_finite(float v) { return fabsf(v) <= AFMASK_FLT_MAX; }

// float2 is built into NVRTC; make_float2 comes from a header, so build it by hand.
__device__ __forceinline__ float2 afmask_float2(float a, float b) {
    float2 r;
    r.x = a;
    r.y = b;
    return r;
}

__device__ __forceinline__ double afmask_warp_sum(double v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
    return v;
}

// Sums v over the block into *acc with one atomic per block (double atomicAdd: sm_60+).
__device__ __forceinline__ void afmask_block_add(double v, double *acc) {
    __shared__ double part[AFMASK_BLOCK / 32];
    const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    v = afmask_warp_sum(v);
    __syncthreads();  // part[] may still be read by a previous call
    if (lane == 0) part[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < (blockDim.x + 31) / 32 ? part[lane] : 0.0;
        v = afmask_warp_sum(v);
        if (lane == 0 && v != 0.0) atomicAdd(acc, v);
    }
}

// mag[i] = |x + eps*m| of pair i over all (k, t, s); acc[0] += count of
// non-finite magnitudes. n = K*T*S pairs, KT = K*T.
extern "C" __global__ void __launch_bounds__(AFMASK_BLOCK)
    afmask_forward(const float2 *__restrict__ x, const float2 *__restrict__ eps, const float2 *__restrict__ m,
                   float *__restrict__ mag, unsigned n, unsigned KT, double *__restrict__ acc) {
    double bad = 0.0;
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const unsigned p = i % KT;  // the (k, t) pair of x and m; eps and mag carry s as well
        const float2 xv = x[p], mv = m[p], ev = eps[i];
        const float re = xv.x + ev.x * mv.x;
        const float im = xv.y + ev.y * mv.y;
        const float a = sqrtf(re * re + im * im);
        mag[i] = a;
        bad += !(a <= AFMASK_FLT_MAX);
    }
    afmask_block_add(bad, acc);
}

// One thread per (k, t) pair: mgrad = mean over s of xgrad * (eps*eps*m + eps*x) / |x~|
// (0 where |x~| == 0) - coef*m; if update, m <- m - lr*mgrad where that is finite.
// acc[0] += ||m_next||^2, acc[1] += ||mgrad||^2, acc[2] += count of non-finite
// values (pairs with a non-finite |x~| or xgrad, elements with a non-finite
// mgrad or m_next), all as in the CPU kernel.
extern "C" __global__ void __launch_bounds__(AFMASK_BLOCK)
    afmask_backward(const float *__restrict__ xgrad, const float2 *__restrict__ x, const float2 *__restrict__ eps,
                    float2 *__restrict__ m, float2 *__restrict__ mgrad, unsigned KT, unsigned S, double coef, float lr,
                    int update, double *__restrict__ acc) {
    double sq_m = 0.0, sq_g = 0.0, bad = 0.0;
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < KT; i += gridDim.x * blockDim.x) {
        const float2 xv = x[i], mv = m[i];
        float g0 = 0.0f, g1 = 0.0f;
        for (unsigned s = 0; s < S; ++s) {
            const unsigned long long is = i + (unsigned long long)KT * s;
            const float2 ev = eps[is];
            const float xg = xgrad[is];
            const float re = xv.x + ev.x * mv.x;
            const float im = xv.y + ev.y * mv.y;
            const float a = sqrtf(re * re + im * im);
            const float q0 = (ev.x * ev.x * mv.x + ev.x * xv.x) / a;
            const float q1 = (ev.y * ev.y * mv.y + ev.y * xv.y) / a;
            const bool nz = a != 0.0f;
            const float t0 = nz ? xg * q0 : 0.0f, t1 = nz ? xg * q1 : 0.0f;
            // Sample order and a first term taken as is, like the CPU kernel.
            g0 = s == 0 ? t0 : g0 + t0;
            g1 = s == 0 ? t1 : g1 + t1;
            bad += !(a <= AFMASK_FLT_MAX && afmask_finite(xg));
        }
        if (S > 1) {
            g0 = g0 / (float)S;
            g1 = g1 / (float)S;
        }
        // coef*m in double: a float32 coef overflows for a tiny ||m||.
        const float mg0 = g0 - (float)(coef * mv.x), mg1 = g1 - (float)(coef * mv.y);
        mgrad[i] = afmask_float2(mg0, mg1);
        const float n0 = update ? mv.x - lr * mg0 : mv.x, n1 = update ? mv.y - lr * mg1 : mv.y;
        const bool ok0 = afmask_finite(mg0) && afmask_finite(n0), ok1 = afmask_finite(mg1) && afmask_finite(n1);
        const float s0 = ok0 ? n0 : mv.x, s1 = ok1 ? n1 : mv.y;
        if (update) m[i] = afmask_float2(s0, s1);
        sq_m += (double)s0 * s0 + (double)s1 * s1;
        sq_g += (double)mg0 * mg0 + (double)mg1 * mg1;
        bad += !ok0 + !ok1;
    }
    afmask_block_add(sq_m, acc);
    afmask_block_add(sq_g, acc + 1);
    afmask_block_add(bad, acc + 2);
}
