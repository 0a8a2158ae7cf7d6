// Per-rollout gradient statistics of the MLP head z = w₂·φ(W₁h + b₁) + b₂, after the forward
// GEMM has produced W₁h for every step.
//
// mlp_step_f32 (one block per step): adds b₁, applies φ in place (U becomes the activations A),
// writes e_j = w₂ ⊙ φ'(u_j) to E, and reduces z_j and ‖a_j‖².
//
// mlp_stats_<dtype> (one block per rollout): residuals r_j = c(σ(z_j) − y_j), then the four
// parameter groups of gradient-methods §3.3 without materialising per-rollout W₁ gradients:
// ‖∇W₁‖² = Σ_{j,k} r_j r_k (e_j·e_k)(h_j·h_k) (ghost form) when the rollout is shorter than
// `ghost_limit` = d·h/(d + h), otherwise the direct ‖Σ_j r_j e_j h_jᵀ‖²; ‖∇b₁‖² = ‖Σ r_j e_j‖²,
// ‖∇w₂‖² = ‖Σ r_j a_j‖², ‖∇b₂‖² = (Σ r_j)². The centred variants use r_j − r̄.
// Every thread computes the rollout's scalar recurrences itself (same inputs, same bits), so no
// shared array is sized by the step count.
//
// Output per rollout (MLP_OUT floats): loss, ‖∇W₁‖², ‖∇b₁‖², ‖∇w₂‖², ‖∇b₂‖², centred total,
// Σ_j ‖∇ℓ_j‖², ‖r‖².
#include "common.cuh"

#define MLP_OUT 8

extern "C" __global__ void mlp_step_f32(float* __restrict__ u,         // [S, h] in: W₁h, out: a
                                        float* __restrict__ e_out,     // [S, h] w₂ ⊙ φ'(u)
                                        const float* __restrict__ b1,  // [h]
                                        const float* __restrict__ w2,  // [h]
                                        float b2, int h, int act,
                                        float* __restrict__ z,         // [S]
                                        float* __restrict__ a_sq) {    // [S] ‖a_j‖²
    __shared__ float scratch[32 * 2];
    const long long j = blockIdx.x;
    float part[2] = {0.0f, 0.0f};
    for (int m = threadIdx.x; m < h; m += blockDim.x) {
        const long long at = j * h + m;
        const float pre = u[at] + b1[m];
        const float a = mprm_act(act, pre);
        u[at] = a;
        e_out[at] = w2[m] * mprm_act_deriv(act, pre);
        part[0] += w2[m] * a;
        part[1] += a * a;
    }
    mprm_group_sum<2>(part, scratch, true);
    if (threadIdx.x == 0) {
        z[j] = part[0] + b2;
        a_sq[j] = part[1];
    }
}

__device__ __forceinline__ float mlp_resid(const float* z, const float* y, long long j, float c) {
    return c * (mprm_sigmoid(z[j]) - y[j]);
}

template <typename T>
__device__ void mlp_stats(const T* __restrict__ x,               // [S, d]
                          const long long* __restrict__ offsets, // [R + 1]
                          const float* __restrict__ y,           // [S]
                          const float* __restrict__ act,         // [S, h] activations a
                          const float* __restrict__ e,           // [S, h] w₂ ⊙ φ'(u)
                          const float* __restrict__ z,           // [S]
                          const float* __restrict__ a_sq,        // [S]
                          int d, int h, int mean_reduction, float ghost_limit,
                          float* __restrict__ out,               // [R, MLP_OUT]
                          float* __restrict__ resid) {           // [S]
    __shared__ float scratch[32 * 4];
    const int tid = threadIdx.x;
    const int rollout = blockIdx.x;
    const long long s0 = offsets[rollout];
    const long long s1 = offsets[rollout + 1];
    const int n = (int)(s1 - s0);
    const float c = mean_reduction ? 1.0f / (float)n : 1.0f;

    float loss = 0.0f, sum_r = 0.0f, sum_r2 = 0.0f;
    for (long long j = s0; j < s1; ++j) {
        const float r = mlp_resid(z, y, j, c);
        loss += c * mprm_bce(z[j], y[j]);
        sum_r += r;
        sum_r2 += r * r;
        if (tid == 0) resid[j] = r;
    }
    const float r_bar = sum_r / (float)n;
    const bool ghost = (float)n < ghost_limit;

    // Pairs (j, k): the diagonal always (for Σ_j ‖∇ℓ_j‖²), the rest only in the ghost form.
    float w1 = 0.0f, w1_c = 0.0f, sum_step = 0.0f;
    for (long long j = s0; j < s1; ++j) {
        const float rj = mlp_resid(z, y, j, c);
        const long long k_end = ghost ? s1 : j + 1;
        for (long long k = j; k < k_end; ++k) {
            float part[2] = {0.0f, 0.0f};
            for (int m = tid; m < h; m += blockDim.x) part[0] += e[j * h + m] * e[k * h + m];
            for (int col = tid; col < d; col += blockDim.x)
                part[1] += mprm_load(x, j * d + col) * mprm_load(x, k * d + col);
            mprm_group_sum<2>(part, scratch, true);
            const float rk = mlp_resid(z, y, k, c);
            const float kernel = part[0] * part[1];
            const float mult = k == j ? 1.0f : 2.0f;
            w1 += mult * rj * rk * kernel;
            w1_c += mult * (rj - r_bar) * (rk - r_bar) * kernel;
            if (k == j) sum_step += rj * rj * (part[0] * (part[1] + 1.0f) + a_sq[j] + 1.0f);
        }
    }
    if (!ghost) {
        float part[2] = {0.0f, 0.0f};
        const long long n_w1 = (long long)h * d;
        for (long long p = tid; p < n_w1; p += blockDim.x) {
            const long long m = p / d;
            const long long col = p % d;
            float g = 0.0f, g_c = 0.0f;
            for (long long j = s0; j < s1; ++j) {
                const float rj = mlp_resid(z, y, j, c);
                const float t = e[j * h + m] * mprm_load(x, j * d + col);
                g += rj * t;
                g_c += (rj - r_bar) * t;
            }
            part[0] += g * g;
            part[1] += g_c * g_c;
        }
        mprm_group_sum<2>(part, scratch, true);
        w1 = part[0];
        w1_c = part[1];
    }
    float small[4] = {0.0f, 0.0f, 0.0f, 0.0f}; // ‖∇b₁‖², centred, ‖∇w₂‖², centred
    for (int m = tid; m < h; m += blockDim.x) {
        float gb = 0.0f, gb_c = 0.0f, gw = 0.0f, gw_c = 0.0f;
        for (long long j = s0; j < s1; ++j) {
            const float rj = mlp_resid(z, y, j, c);
            gb += rj * e[j * h + m];
            gb_c += (rj - r_bar) * e[j * h + m];
            gw += rj * act[j * h + m];
            gw_c += (rj - r_bar) * act[j * h + m];
        }
        small[0] += gb * gb;
        small[1] += gb_c * gb_c;
        small[2] += gw * gw;
        small[3] += gw_c * gw_c;
    }
    mprm_group_sum<4>(small, scratch, true);
    if (tid == 0) {
        float* o = out + (long long)rollout * MLP_OUT;
        o[0] = loss;
        o[1] = w1;
        o[2] = small[0];
        o[3] = small[2];
        o[4] = sum_r * sum_r;
        o[5] = w1_c + small[1] + small[3];
        o[6] = sum_step;
        o[7] = sum_r2;
    }
}

#define MPRM_MLP_STATS(NAME, T)                                                               \
    extern "C" __global__ void NAME(const T* x, const long long* offsets, const float* y,     \
                                    const float* act, const float* e, const float* z,         \
                                    const float* a_sq, int d, int h, int mean_reduction,      \
                                    float ghost_limit, float* out, float* resid) {            \
        mlp_stats<T>(x, offsets, y, act, e, z, a_sq, d, h, mean_reduction, ghost_limit, out,  \
                     resid);                                                                  \
    }

MPRM_MLP_STATS(mlp_stats_f32, float)
MPRM_MLP_STATS(mlp_stats_bf16, unsigned short)
