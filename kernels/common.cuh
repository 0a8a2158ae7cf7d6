// Shared device helpers for mprm's kernels.
//
// NVRTC compiles these sources at run time without any CUDA header: bf16 arrives as raw
// `unsigned short` and is widened with a shift (bf16 is the top half of an f32), and integer
// types are spelled as builtin C types. The Rust side inlines this file where a kernel says
// `#include "common.cuh"`, so NVRTC never needs an include path.
//
// Reductions are butterfly (xor) shuffles: every lane ends with the same bits, the order of
// additions is fixed by the lane layout, and nothing uses atomics, so reruns are bit-identical.
#pragma once

#define MPRM_FULL_MASK 0xffffffffu

__device__ __forceinline__ float mprm_load(const float* p, long long i) { return p[i]; }

__device__ __forceinline__ float mprm_load(const unsigned short* p, long long i) {
    return __uint_as_float(((unsigned int)p[i]) << 16);
}

__device__ __forceinline__ float mprm_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(MPRM_FULL_MASK, v, o);
    return v;
}

// Sums N values over a group of threads and gives every thread of the group the totals.
// The group is the calling warp when `whole_block` is false, otherwise the whole block
// (blockDim.x must then be a multiple of 32 and every thread must call this).
// `scratch` holds 32 * N floats of shared memory.
template <int N>
__device__ __forceinline__ void mprm_group_sum(float (&v)[N], float* scratch, bool whole_block) {
#pragma unroll
    for (int k = 0; k < N; ++k) v[k] = mprm_warp_sum(v[k]);
    if (!whole_block) return;
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int n_warps = blockDim.x >> 5;
    if (lane == 0) {
#pragma unroll
        for (int k = 0; k < N; ++k) scratch[k * 32 + warp] = v[k];
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < N; ++k) v[k] = mprm_warp_sum(lane < n_warps ? scratch[k * 32 + lane] : 0.0f);
    // The next call may overwrite scratch: wait until every warp has read it.
    __syncthreads();
}

__device__ __forceinline__ float mprm_sigmoid(float z) {
    if (z >= 0.0f) return 1.0f / (1.0f + expf(-z));
    const float e = expf(z);
    return e / (1.0f + e);
}

// Binary cross-entropy with logits, softplus(z) - y z, stable for large |z|.
__device__ __forceinline__ float mprm_bce(float z, float y) {
    return fmaxf(z, 0.0f) - z * y + log1pf(expf(-fabsf(z)));
}

// Activation codes match the Rust side: 0 = ReLU, 1 = GELU (erf form).
__device__ __forceinline__ float mprm_act(int act, float u) {
    if (act == 0) return fmaxf(u, 0.0f);
    return 0.5f * u * (1.0f + erff(u * 0.70710678118654752f));
}

__device__ __forceinline__ float mprm_act_deriv(int act, float u) {
    if (act == 0) return u > 0.0f ? 1.0f : 0.0f;
    const float cdf = 0.5f * (1.0f + erff(u * 0.70710678118654752f));
    const float pdf = 0.39894228040143268f * expf(-0.5f * u * u);
    return cdf + u * pdf;
}
