// C = A Bᵀ for the MLP head's forward pass: U = H W₁ᵀ ([S, d] × [h, d]ᵀ → [S, h]).
//
// A classic shared-memory tiled GEMM: a 32 × 32 output tile per block of 32 × 8 threads, each
// thread computing four rows of one column. K is walked tile by tile in order, so every output is
// the same sum in the same order on every run. A is f32 or bf16 (features), B and C are f32.
#include "common.cuh"

#define GEMM_TILE 32
#define GEMM_ROWS_PER_THREAD 4

template <typename T>
__device__ void gemm_nt(const T* __restrict__ a,     // [M, K]
                        const float* __restrict__ b, // [N, K]
                        float* __restrict__ c,       // [M, N]
                        long long m_rows, int n_cols, int k_len) {
    __shared__ float a_tile[GEMM_TILE][GEMM_TILE + 1];
    __shared__ float b_tile[GEMM_TILE][GEMM_TILE + 1];
    const int tx = threadIdx.x;
    const int ty = threadIdx.y;
    // Rows on grid.x: M (steps) can exceed grid.y's 65535-block limit, N (hidden) cannot.
    const long long row0 = (long long)blockIdx.x * GEMM_TILE;
    const int col0 = blockIdx.y * GEMM_TILE;
    float acc[GEMM_ROWS_PER_THREAD] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int k0 = 0; k0 < k_len; k0 += GEMM_TILE) {
        const int kk = k0 + tx;
#pragma unroll
        for (int i = 0; i < GEMM_ROWS_PER_THREAD; ++i) {
            const int r = ty + 8 * i;
            const long long ar = row0 + r;
            a_tile[r][tx] = (ar < m_rows && kk < k_len) ? mprm_load(a, ar * k_len + kk) : 0.0f;
            const int bn = col0 + r;
            b_tile[r][tx] = (bn < n_cols && kk < k_len) ? b[(long long)bn * k_len + kk] : 0.0f;
        }
        __syncthreads();
#pragma unroll 8
        for (int t = 0; t < GEMM_TILE; ++t) {
            const float bv = b_tile[tx][t];
#pragma unroll
            for (int i = 0; i < GEMM_ROWS_PER_THREAD; ++i) acc[i] += a_tile[ty + 8 * i][t] * bv;
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < GEMM_ROWS_PER_THREAD; ++i) {
        const long long r = row0 + ty + 8 * i;
        const int col = col0 + tx;
        if (r < m_rows && col < n_cols) c[r * n_cols + col] = acc[i];
    }
}

#define MPRM_GEMM_NT(NAME, T)                                                                \
    extern "C" __global__ void NAME(const T* a, const float* b, float* c, long long m_rows,  \
                                    int n_cols, int k_len) {                                 \
        gemm_nt<T>(a, b, c, m_rows, n_cols, k_len);                                          \
    }

MPRM_GEMM_NT(gemm_nt_f32, float)
MPRM_GEMM_NT(gemm_nt_bf16, unsigned short)
