// afmask's fused mask step in OpenCL C (built at run time by pyopencl; see afmask/kernels/opencl.py).
//
// The same layout and arithmetic as the CUDA kernel (mask_step.cu) and the CPU
// extension (csrc/mask_step.cpp): float32 arrays in ArrayFire orientation,
// column-major. x, m, mgrad are (2K, T); eps is (2K, T, S); mag, xgrad are
// (K, T, S). The re/im pair of bin k in frame t is adjacent, so a pair is one
// float2 and pair index i = k + K*t (+ K*T*s) addresses x, m, mgrad (as float2)
// and mag, xgrad (as float) alike.
//
// Rounding as on the CPU: no contraction of a*b+c into an FMA (the pragma), and
// the host builds with -cl-fp32-correctly-rounded-divide-sqrt so that sqrt and
// '/' are IEEE-rounded (OpenCL allows 3 ulp otherwise). Sums of squares and
// counts are accumulated in double (cl_khr_fp64) and reduced per work-group;
// the host adds the groups' partial sums in float64.

#pragma OPENCL FP_CONTRACT OFF
#pragma OPENCL EXTENSION cl_khr_fp64 : enable

#define AFMASK_FLT_MAX 3.402823466e+38f

inline bool afmask_finite(float v) { return fabs(v) <= AFMASK_FLT_MAX; }

// Sum v over the work-group (local size a power of two) into part[group id].
inline void afmask_group_sum(double v, __local double *scratch, __global double *part) {
    const size_t lid = get_local_id(0);
    scratch[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (size_t off = get_local_size(0) / 2; off > 0; off >>= 1) {
        if (lid < off) scratch[lid] += scratch[lid + off];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) part[get_group_id(0)] = scratch[0];
    barrier(CLK_LOCAL_MEM_FENCE);  // scratch is reused by the next sum
}

// mag[i] = |x + eps*m| of pair i over all (k, t, s); part[g] = count of
// non-finite magnitudes seen by group g. n = K*T*S pairs, KT = K*T.
__kernel void afmask_forward(__global const float2 *restrict x, __global const float2 *restrict eps,
                             __global const float2 *restrict m, __global float *restrict mag, const uint n,
                             const uint KT, __global double *restrict part, __local double *scratch) {
    double bad = 0.0;
    for (uint i = get_global_id(0); i < n; i += get_global_size(0)) {
        const uint p = i % KT;  // the (k, t) pair of x and m; eps and mag carry s as well
        const float2 xv = x[p], mv = m[p], ev = eps[i];
        const float re = xv.x + ev.x * mv.x;
        const float im = xv.y + ev.y * mv.y;
        const float a = sqrt(re * re + im * im);
        mag[i] = a;
        bad += (a <= AFMASK_FLT_MAX) ? 0.0 : 1.0;
    }
    afmask_group_sum(bad, scratch, part);
}

// One work-item per (k, t) pair: mgrad = mean over s of xgrad * (eps*eps*m + eps*x) / |x~|
// (0 where |x~| == 0) - coef*m; if update, m <- m - lr*mgrad where that is finite.
// part[g], part[G + g], part[2G + g] (G groups): ||m_next||^2, ||mgrad||^2 and the
// count of non-finite values of group g, all as in the CUDA and CPU kernels.
__kernel void afmask_backward(__global const float *restrict xgrad, __global const float2 *restrict x,
                              __global const float2 *restrict eps, __global float2 *restrict m,
                              __global float2 *restrict mgrad, const uint KT, const uint S, const double coef,
                              const float lr, const int update, __global double *restrict part,
                              __local double *scratch) {
    double sq_m = 0.0, sq_g = 0.0, bad = 0.0;
    for (uint i = get_global_id(0); i < KT; i += get_global_size(0)) {
        const float2 xv = x[i], mv = m[i];
        float g0 = 0.0f, g1 = 0.0f;
        for (uint s = 0; s < S; ++s) {
            const ulong is = i + (ulong)KT * s;
            const float2 ev = eps[is];
            const float xg = xgrad[is];
            const float re = xv.x + ev.x * mv.x;
            const float im = xv.y + ev.y * mv.y;
            const float a = sqrt(re * re + im * im);
            const float q0 = (ev.x * ev.x * mv.x + ev.x * xv.x) / a;
            const float q1 = (ev.y * ev.y * mv.y + ev.y * xv.y) / a;
            const bool nz = a != 0.0f;
            const float t0 = nz ? xg * q0 : 0.0f, t1 = nz ? xg * q1 : 0.0f;
            // Sample order and a first term taken as is, like the CPU kernel.
            g0 = s == 0 ? t0 : g0 + t0;
            g1 = s == 0 ? t1 : g1 + t1;
            bad += (a <= AFMASK_FLT_MAX && afmask_finite(xg)) ? 0.0 : 1.0;
        }
        if (S > 1) {
            g0 = g0 / (float)S;
            g1 = g1 / (float)S;
        }
        // coef*m in double: a float32 coef overflows for a tiny ||m||.
        const float mg0 = g0 - (float)(coef * (double)mv.x), mg1 = g1 - (float)(coef * (double)mv.y);
        mgrad[i] = (float2)(mg0, mg1);
        const float n0 = update ? mv.x - lr * mg0 : mv.x, n1 = update ? mv.y - lr * mg1 : mv.y;
        const bool ok0 = afmask_finite(mg0) && afmask_finite(n0), ok1 = afmask_finite(mg1) && afmask_finite(n1);
        const float s0 = ok0 ? n0 : mv.x, s1 = ok1 ? n1 : mv.y;
        if (update) m[i] = (float2)(s0, s1);
        sq_m += (double)s0 * s0 + (double)s1 * s1;
        sq_g += (double)mg0 * mg0 + (double)mg1 * mg1;
        bad += (ok0 ? 0.0 : 1.0) + (ok1 ? 0.0 : 1.0);
    }
    const size_t groups = get_num_groups(0);
    afmask_group_sum(sq_m, scratch, part);
    afmask_group_sum(sq_g, scratch, part + groups);
    afmask_group_sum(bad, scratch, part + 2 * groups);
}
