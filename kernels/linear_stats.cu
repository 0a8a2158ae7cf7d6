// Per-rollout gradient statistics of a linear head, in one fused pass over the CSR step matrix.
//
// A rollout belongs to a "group" of threads: one warp (small d, several rollouts per block) or
// the whole block (large d). Each thread owns the columns tid, tid + G, ... (up to
// LINEAR_VEC of them) and keeps w, g = Σ r_j h_j and s = Σ h_j for those columns in registers.
// For each step row: load the thread's columns once, group-reduce (w·h, ‖h‖²), form the
// residual, and fold the row into g and s while it is still in registers. After the last row a
// second group reduction gives ‖g‖² and the centred ‖g − r̄ s‖². Each feature byte is read
// exactly once; every sum has a fixed order.
//
// Output per rollout (LINEAR_OUT floats): loss, ‖∇w‖², ‖∇b‖² = (Σr)², centred, Σ_j ‖∇ℓ_j‖²,
// ‖r‖². The residual of every step goes to `resid` (used to materialise gradients later).
#include "common.cuh"

#define LINEAR_VEC 16
#define LINEAR_OUT 6
// Most threads a block of this kernel may have. Written into the kernels as a launch bound, so
// the compiler keeps each thread's registers within what that many threads can share (ptxas
// 13.0, sm_90: 121-125 registers; without the bound a 1024-thread block would not launch).
#define LINEAR_MAX_THREADS 512

template <typename T>
__device__ void linear_stats(
    const T* __restrict__ x,               // [S, d] features of this chunk
    const long long* __restrict__ offsets, // [R + 1] step offsets, chunk-relative
    const float* __restrict__ y,           // [S] targets
    const float* __restrict__ w,           // [d]
    float b, int d, int n_rollouts, int mean_reduction,
    int rollouts_per_block,                // 1: the block is one group; > 1: one warp each
    float* __restrict__ out,               // [R, LINEAR_OUT]
    float* __restrict__ resid)             // [S]
{
    __shared__ float scratch[32 * 2];
    const bool whole_block = rollouts_per_block == 1;
    const int group_size = whole_block ? blockDim.x : 32;
    const int tid = whole_block ? threadIdx.x : (threadIdx.x & 31);
    const int rollout = whole_block ? blockIdx.x : blockIdx.x * rollouts_per_block + (threadIdx.x >> 5);
    // Warp groups past the end stay idle; no whole-block barrier is used in that mode.
    if (rollout >= n_rollouts) return;

    const long long s0 = offsets[rollout];
    const long long s1 = offsets[rollout + 1];
    const int n = (int)(s1 - s0);
    const float c = mean_reduction ? 1.0f / (float)n : 1.0f;

    float wv[LINEAR_VEC], g[LINEAR_VEC], s[LINEAR_VEC];
#pragma unroll
    for (int e = 0; e < LINEAR_VEC; ++e) {
        const int col = tid + e * group_size;
        wv[e] = col < d ? w[col] : 0.0f;
        g[e] = 0.0f;
        s[e] = 0.0f;
    }
    float loss = 0.0f, sum_r = 0.0f, sum_r2 = 0.0f, sum_step = 0.0f;
    for (long long j = s0; j < s1; ++j) {
        const long long base = j * (long long)d;
        float xv[LINEAR_VEC];
        float part[2] = {0.0f, 0.0f};
#pragma unroll
        for (int e = 0; e < LINEAR_VEC; ++e) {
            const int col = tid + e * group_size;
            xv[e] = col < d ? mprm_load(x, base + col) : 0.0f;
            part[0] += wv[e] * xv[e];
            part[1] += xv[e] * xv[e];
        }
        mprm_group_sum<2>(part, scratch, whole_block);
        const float z = part[0] + b;
        const float yj = y[j];
        const float r = c * (mprm_sigmoid(z) - yj);
        loss += c * mprm_bce(z, yj);
        sum_r += r;
        sum_r2 += r * r;
        sum_step += r * r * (part[1] + 1.0f);
        if (tid == 0) resid[j] = r;
#pragma unroll
        for (int e = 0; e < LINEAR_VEC; ++e) {
            g[e] += r * xv[e];
            s[e] += xv[e];
        }
    }
    const float r_bar = sum_r / (float)n;
    float acc[2] = {0.0f, 0.0f};
#pragma unroll
    for (int e = 0; e < LINEAR_VEC; ++e) {
        acc[0] += g[e] * g[e];
        const float gc = g[e] - r_bar * s[e];
        acc[1] += gc * gc;
    }
    mprm_group_sum<2>(acc, scratch, whole_block);
    if (tid == 0) {
        float* o = out + (long long)rollout * LINEAR_OUT;
        o[0] = loss;
        o[1] = acc[0];
        o[2] = sum_r * sum_r;
        o[3] = acc[1];
        o[4] = sum_step;
        o[5] = sum_r2;
    }
}

#define MPRM_LINEAR_STATS(NAME, T)                                                             \
    extern "C" __global__ void __launch_bounds__(LINEAR_MAX_THREADS)                           \
    NAME(const T* x, const long long* offsets, const float* y, const float* w, float b, int d, \
         int n_rollouts, int mean_reduction, int rollouts_per_block, float* out,               \
         float* resid) {                                                                       \
        linear_stats<T>(x, offsets, y, w, b, d, n_rollouts, mean_reduction,                    \
                        rollouts_per_block, out, resid);                                       \
    }

MPRM_LINEAR_STATS(linear_stats_f32, float)
MPRM_LINEAR_STATS(linear_stats_bf16, unsigned short)
