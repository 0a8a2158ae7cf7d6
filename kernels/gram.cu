// Weighted Gram matrix of augmented step rows, the Hessian of influence functions:
// G = Σ_j w_j x̃_j x̃_jᵀ with x̃_j = [x_j; 1] (p = d + 1 columns).
//
// Grid: (column tiles, column tiles, step slices). A block owns one 32 × 32 tile of G (upper
// triangle only: blocks below the diagonal return at once) and the steps of one slice; it walks
// them 32 at a time through shared memory, each of its 32 × 8 threads accumulating four entries
// in f32, in step order. Each slice writes its own partial tile to out[slice, p, p], and
// gram_accumulate_f64 adds the slices in f64 in slice order into a running sum that stays on the
// device across launches, so every entry is the same sum in the same order on every run, the f32
// rounding is bounded by the slice length, and only the final p × p matrix crosses to the host.
#include "common.cuh"

#define GRAM_TILE 32
#define GRAM_ROWS_PER_THREAD 4

template <typename T>
__device__ float gram_load(const T* __restrict__ x, long long step, int col, int d) {
    if (col < d) return mprm_load(x, step * d + col);
    return col == d ? 1.0f : 0.0f;
}

template <typename T>
__device__ void weighted_gram(const T* __restrict__ x,       // [S, d]
                              const float* __restrict__ w,   // [S]
                              long long n_steps, int d, int slice_len,
                              float* __restrict__ out) {     // [slices, p, p]
    if (blockIdx.x > blockIdx.y) return;
    __shared__ float r_tile[GRAM_TILE][GRAM_TILE + 1];  // [step][row column]
    __shared__ float k_tile[GRAM_TILE][GRAM_TILE + 1];  // [step][col column], weighted
    const int p = d + 1;
    const int tx = threadIdx.x;
    const int ty = threadIdx.y;
    const int row0 = blockIdx.x * GRAM_TILE;
    const int col0 = blockIdx.y * GRAM_TILE;
    const long long first = (long long)blockIdx.z * slice_len;
    const long long end = first + slice_len;
    const long long last = end < n_steps ? end : n_steps;
    float acc[GRAM_ROWS_PER_THREAD] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (long long s0 = first; s0 < last; s0 += GRAM_TILE) {
#pragma unroll
        for (int i = 0; i < GRAM_ROWS_PER_THREAD; ++i) {
            const int t = ty + 8 * i;            // step within the tile
            const long long step = s0 + t;
            const bool in = step < last;
            const int rc = row0 + tx;
            const int kc = col0 + tx;
            r_tile[t][tx] = (in && rc < p) ? gram_load(x, step, rc, d) : 0.0f;
            k_tile[t][tx] = (in && kc < p) ? w[step] * gram_load(x, step, kc, d) : 0.0f;
        }
        __syncthreads();
#pragma unroll 8
        for (int t = 0; t < GRAM_TILE; ++t) {
            const float kv = k_tile[t][tx];
#pragma unroll
            for (int i = 0; i < GRAM_ROWS_PER_THREAD; ++i) acc[i] += r_tile[t][ty + 8 * i] * kv;
        }
        __syncthreads();
    }
    float* tile_out = out + (long long)blockIdx.z * p * p;
#pragma unroll
    for (int i = 0; i < GRAM_ROWS_PER_THREAD; ++i) {
        const int r = row0 + ty + 8 * i;
        const int c = col0 + tx;
        if (r < p && c < p) tile_out[(long long)r * p + c] = acc[i];
    }
}

#define MPRM_WEIGHTED_GRAM(NAME, T)                                                          \
    extern "C" __global__ void NAME(const T* x, const float* w, long long n_steps, int d,    \
                                    int slice_len, float* out) {                             \
        weighted_gram<T>(x, w, n_steps, d, slice_len, out);                                  \
    }

MPRM_WEIGHTED_GRAM(weighted_gram_f32, float)
MPRM_WEIGHTED_GRAM(weighted_gram_bf16, unsigned short)

// acc[e] += Σ_s tiles[s, e] for every entry e of the upper triangle (row ≤ column), the slices
// added one at a time in slice order, in f64: the same additions, in the same order, as a host
// loop over the downloaded tiles would make. Entries below the diagonal are left alone (the Gram
// kernel's diagonal tiles write some of them; the host mirrors the upper triangle instead).
// One thread per entry of the p × p matrix, in row-major order.
extern "C" __global__ void gram_accumulate_f64(const float* __restrict__ tiles,  // [slices, p, p]
                                               long long n_slices, int p,
                                               double* __restrict__ acc) {       // [p, p]
    const long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long entries = (long long)p * p;
    if (e >= entries) return;
    const long long row = e / p;
    const long long col = e - row * p;
    if (col < row) return;
    double sum = acc[e];
    for (long long s = 0; s < n_slices; ++s) sum += (double)tiles[s * entries + e];
    acc[e] = sum;
}
