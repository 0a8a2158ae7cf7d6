// Materialised per-rollout gradient vectors, for projections and summed gradients.
//
// Norms never need these (see linear_stats.cu and mlp_stats.cu); projecting a gradient onto
// arbitrary directions does. Block (i, y) computes parameters y·blockDim + tid, stepping by
// gridDim.y·blockDim, of rollout `first + i`, each as a sum over the rollout's steps in order.
// Residuals come from the stats kernels. Parameter order is the Rust side's flattened order:
// linear w[0..d], b; mlp W₁ row-major [h, d], b₁, w₂, b₂.
#include "common.cuh"

template <typename T>
__device__ void linear_grad(const T* __restrict__ x, const long long* __restrict__ offsets,
                            const float* __restrict__ resid, int d, int first,
                            float* __restrict__ grad) { // [count, d + 1]
    const int i = first + blockIdx.x;
    const long long s0 = offsets[i];
    const long long s1 = offsets[i + 1];
    const long long n_params = (long long)d + 1;
    for (long long p = (long long)blockIdx.y * blockDim.x + threadIdx.x; p < n_params;
         p += (long long)gridDim.y * blockDim.x) {
        float g = 0.0f;
        for (long long j = s0; j < s1; ++j) g += resid[j] * (p < d ? mprm_load(x, j * d + p) : 1.0f);
        grad[(long long)blockIdx.x * n_params + p] = g;
    }
}

template <typename T>
__device__ void mlp_grad(const T* __restrict__ x, const long long* __restrict__ offsets,
                         const float* __restrict__ resid, const float* __restrict__ act,
                         const float* __restrict__ e, int d, int h, int first,
                         float* __restrict__ grad) { // [count, h·d + 2h + 1]
    const int i = first + blockIdx.x;
    const long long s0 = offsets[i];
    const long long s1 = offsets[i + 1];
    const long long n_w1 = (long long)h * d;
    const long long n_params = n_w1 + 2LL * h + 1;
    for (long long p = (long long)blockIdx.y * blockDim.x + threadIdx.x; p < n_params;
         p += (long long)gridDim.y * blockDim.x) {
        float g = 0.0f;
        for (long long j = s0; j < s1; ++j) {
            float t;
            if (p < n_w1) {
                t = e[j * h + p / d] * mprm_load(x, j * d + p % d);
            } else if (p < n_w1 + h) {
                t = e[j * h + (p - n_w1)];
            } else if (p < n_w1 + 2LL * h) {
                t = act[j * h + (p - n_w1 - h)];
            } else {
                t = 1.0f;
            }
            g += resid[j] * t;
        }
        grad[(long long)blockIdx.x * n_params + p] = g;
    }
}

#define MPRM_LINEAR_GRAD(NAME, T)                                                             \
    extern "C" __global__ void NAME(const T* x, const long long* offsets, const float* resid, \
                                    int d, int first, float* grad) {                          \
        linear_grad<T>(x, offsets, resid, d, first, grad);                                    \
    }

#define MPRM_MLP_GRAD(NAME, T)                                                                \
    extern "C" __global__ void NAME(const T* x, const long long* offsets, const float* resid, \
                                    const float* act, const float* e, int d, int h,           \
                                    int first, float* grad) {                                 \
        mlp_grad<T>(x, offsets, resid, act, e, d, h, first, grad);                            \
    }

MPRM_LINEAR_GRAD(linear_grad_f32, float)
MPRM_LINEAR_GRAD(linear_grad_bf16, unsigned short)
MPRM_MLP_GRAD(mlp_grad_f32, float)
MPRM_MLP_GRAD(mlp_grad_bf16, unsigned short)
