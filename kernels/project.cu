// Reductions over materialised per-rollout gradients ([count, P] row-major, f32).
//
// project_f32: out[i, k] = ⟨grad_i, dir_k⟩, one block per (rollout, direction), block-reduced
// in a fixed order. A building block with a CPU twin: the engine projects through gemm_nt_f32,
// which reads each gradient row once per 32 directions rather than once per direction. column_sum_f32: out[p] = Σ_i grad[i, p] in row order, one thread per
// parameter; the host adds the per-chunk sums in f64.
#include "common.cuh"

extern "C" __global__ void project_f32(const float* __restrict__ grad, // [count, P]
                                       const float* __restrict__ dirs, // [k, P]
                                       long long n_params, int k,
                                       float* __restrict__ out) {      // [count, k]
    __shared__ float scratch[32];
    const long long i = blockIdx.x;
    const int dir = blockIdx.y;
    float part[1] = {0.0f};
    for (long long p = threadIdx.x; p < n_params; p += blockDim.x)
        part[0] += grad[i * n_params + p] * dirs[(long long)dir * n_params + p];
    mprm_group_sum<1>(part, scratch, true);
    if (threadIdx.x == 0) out[i * k + dir] = part[0];
}

extern "C" __global__ void column_sum_f32(const float* __restrict__ grad, // [count, P]
                                          long long n_params, int count,
                                          float* __restrict__ out) {      // [P]
    const long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= n_params) return;
    float acc = 0.0f;
    for (int i = 0; i < count; ++i) acc += grad[(long long)i * n_params + p];
    out[p] = acc;
}
