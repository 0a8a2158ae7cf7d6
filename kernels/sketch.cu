// LESS's gradient features: Adam's preconditioning and a CountSketch of materialised per-rollout
// gradients ([count, P] row-major, f32, from rollout_grad.cu).
//
// precondition_sketch_f32: out[i, b] = Σ_{p in bucket b} sign_p · Γ_p(grad[i, p]) with
// Γ_p(g) = m′ / √(v′ + ε), m′ = β₁m_p + (1 − β₁)g, v′ = β₂v_p + (1 − β₂)g². Preconditioning is
// not linear in g, so it cannot fold into the projection directions. One thread per (rollout,
// output): it walks its bucket's parameters (grouped by the host, ascending within a bucket) in
// order, the same order as the CPU twin, so every output is one fixed f32 chain of at most the
// bucket's size terms, with no atomics.
#include "common.cuh"

extern "C" __global__ void precondition_sketch_f32(const float* __restrict__ grad,  // [count, P]
                                                   const float* __restrict__ m,     // [P]
                                                   const float* __restrict__ v,     // [P]
                                                   float beta1, float beta2, float eps,
                                                   const long long* __restrict__ start, // [k + 1]
                                                   const long long* __restrict__ members, // [P]
                                                   const float* __restrict__ signs, // [P]
                                                   long long n_params, int k,
                                                   float* __restrict__ out) {       // [count, k]
    const long long i = blockIdx.x;
    const int b = blockIdx.y * blockDim.x + threadIdx.x;
    if (b >= k) return;
    const float* g = grad + i * n_params;
    float acc = 0.0f;
    for (long long t = start[b]; t < start[b + 1]; ++t) {
        const long long p = members[t];
        const float gp = g[p];
        const float m1 = beta1 * m[p] + (1.0f - beta1) * gp;
        const float v1 = beta2 * v[p] + (1.0f - beta2) * gp * gp;
        acc += signs[t] * (m1 / sqrtf(v1 + eps));
    }
    out[i * k + b] = acc;
}
