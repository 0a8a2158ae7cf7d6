// A CPU emulation of the parts of the CUDA execution model that mprm's kernels use, so the
// unchanged `kernels/*.cu` sources compile as C++20 (g++ -std=c++20 -pthread) and run on a CPU.
//
// Model: a launch runs its blocks one after another; a block runs every CUDA thread as its own
// `std::thread`. `threadIdx`/`blockIdx`/`blockDim`/`gridDim` are thread_local. `__shared__` is
// `static` storage, which is correct because only one block (of one kernel) runs at a time.
// `__syncthreads` is a barrier over the block's threads (std::barrier's semantics); a thread
// that returns from the kernel drops out of it (`arrive_and_drop`), as exited threads do on
// sm_70+. Warp shuffles go through a per-warp exchange buffer guarded by a per-warp barrier
// (write, wait, read, wait).
// A non-zero schedule seed makes every thread yield or sleep for a random few microseconds
// before each barrier, so two seeds give two different interleavings.
//
// Limits (what a pass here does NOT prove):
//  * memory model: threads are real OS threads, so only races that real interleavings expose on
//    this CPU (x86: strong ordering) show up; no GPU memory-model weakness is reproduced, and
//    there is no race detector;
//  * no performance meaning at all (thousands of OS threads, barriers through the kernel);
//  * not NVRTC: g++ accepts and rejects different things, unknown pragmas (`#pragma unroll`)
//    are ignored, device math (expf, erff, ...) is glibc's, not CUDA's (both within a few ulp),
//    and g++ does not contract a*b+c into FMAs as NVCC does, so the bits differ from a GPU run;
//  * warp shuffles assume the warp's active threads all take part (full-mask use only), and
//    independent thread scheduling inside a warp is not modelled beyond real threads;
//  * no bounds checking of global memory beyond what the host buffers' sizes make visible.
#pragma once

#include <condition_variable>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <math.h>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
};

inline thread_local dim3 threadIdx;
inline thread_local dim3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

#define __global__
#define __launch_bounds__(...)
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

namespace cuda_emu {

// std::barrier's semantics (arrive_and_wait, arrive_and_drop) with blocking waits: libstdc++'s
// std::barrier spins and yields while waiting, which starves the last arrivals when hundreds
// of threads share two cores; a mutex and a condition variable do not.
class Barrier {
  public:
    explicit Barrier(std::ptrdiff_t n) : expected_(n) {}
    void arrive_and_wait() {
        std::unique_lock<std::mutex> lock(mutex_);
        const unsigned long long phase = phase_;
        if (++arrived_ == expected_) {
            complete();
            return;
        }
        cv_.wait(lock, [&] { return phase_ != phase; });
    }
    // Leaves for good: later phases complete without this thread.
    void arrive_and_drop() {
        std::unique_lock<std::mutex> lock(mutex_);
        --expected_;
        if (expected_ > 0 && arrived_ == expected_) complete();
    }

  private:
    void complete() {
        arrived_ = 0;
        ++phase_;
        cv_.notify_all();
    }
    std::mutex mutex_;
    std::condition_variable cv_;
    std::ptrdiff_t expected_;
    std::ptrdiff_t arrived_ = 0;
    unsigned long long phase_ = 0;
};

struct Warp {
    explicit Warp(std::ptrdiff_t n) : size((int)n), barrier(n) {}
    int size;
    Barrier barrier;
    unsigned int buf[32] = {};
};

struct ThreadState {
    Barrier* block = nullptr;
    Warp* warp = nullptr;
    int lane = 0;
    unsigned long long seed = 0;
    std::mt19937_64 rng;
};

inline thread_local ThreadState self;

// A random yield or short sleep (only with a non-zero seed): changes which thread arrives first.
inline void perturb() {
    if (self.seed == 0) return;
    // Mostly cheap (nothing or a yield); an occasional short sleep reorders arrivals more.
    const auto r = self.rng() % 16;
    if (r < 8) return;
    if (r < 15) {
        std::this_thread::yield();
        return;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(1 + self.rng() % 8));
}

inline unsigned int shfl(unsigned int v, int src_lane) {
    Warp& w = *self.warp;
    perturb();
    w.buf[self.lane] = v;
    w.barrier.arrive_and_wait();
    const unsigned int out = (src_lane >= 0 && src_lane < w.size) ? w.buf[src_lane] : v;
    perturb();
    w.barrier.arrive_and_wait(); // nobody overwrites buf before everyone has read it
    return out;
}

template <typename T> inline unsigned int to_bits(T v) {
    static_assert(sizeof(T) == 4, "32-bit shuffles only");
    unsigned int u;
    std::memcpy(&u, &v, 4);
    return u;
}
template <typename T> inline T from_bits(unsigned int u) {
    T v;
    std::memcpy(&v, &u, 4);
    return v;
}

// Runs `kernel` (a callable taking no arguments; it reads the thread_local indices) over the
// grid, block by block, one std::thread per CUDA thread.
inline void launch_fn(const std::function<void()>& kernel, dim3 grid, dim3 block,
                      unsigned long long seed) {
    const int n = (int)(block.x * block.y * block.z);
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                Barrier block_barrier(n);
                std::vector<std::unique_ptr<Warp>> warps;
                for (int w0 = 0; w0 < n; w0 += 32)
                    warps.push_back(std::make_unique<Warp>(std::min(32, n - w0)));
                std::vector<std::thread> threads;
                threads.reserve(n);
                for (int t = 0; t < n; ++t) {
                    threads.emplace_back([&, t] {
                        threadIdx = dim3{t % block.x, (t / block.x) % block.y,
                                         t / (block.x * block.y)};
                        blockIdx = dim3{bx, by, bz};
                        blockDim = block;
                        gridDim = grid;
                        self.block = &block_barrier;
                        self.warp = warps[t / 32].get();
                        self.lane = t % 32;
                        self.seed = seed;
                        self.rng.seed(seed * 0x9E3779B97F4A7C15ull +
                                      (((unsigned long long)bx << 40) ^
                                       ((unsigned long long)by << 20) ^ bz) * 1315423911ull +
                                      (unsigned long long)t);
                        kernel();
                        // An exited thread no longer takes part in barriers (sm_70+).
                        self.warp->barrier.arrive_and_drop();
                        block_barrier.arrive_and_drop();
                    });
                }
                for (auto& th : threads) th.join();
            }
}

// launch(kernel, grid, block, shared_bytes, args...): the `<<<grid, block, shared>>>` of this
// emulation. Dynamic shared memory is not supported (the kernels use none).
template <typename... P, typename... A>
void launch(void (*kernel)(P...), dim3 grid, dim3 block, unsigned shared_bytes,
            unsigned long long seed, A... args) {
    if (shared_bytes != 0) throw std::runtime_error("dynamic shared memory is not emulated");
    launch_fn([&] { kernel(args...); }, grid, block, seed);
}

} // namespace cuda_emu

inline void __syncthreads() {
    cuda_emu::perturb();
    cuda_emu::self.block->arrive_and_wait();
}

inline float __uint_as_float(unsigned int u) { return cuda_emu::from_bits<float>(u); }
inline unsigned int __float_as_uint(float f) { return cuda_emu::to_bits(f); }

template <typename T> inline T __shfl_xor_sync(unsigned /*mask*/, T v, int lane_mask) {
    return cuda_emu::from_bits<T>(
        cuda_emu::shfl(cuda_emu::to_bits(v), cuda_emu::self.lane ^ lane_mask));
}
template <typename T> inline T __shfl_down_sync(unsigned /*mask*/, T v, unsigned delta) {
    return cuda_emu::from_bits<T>(
        cuda_emu::shfl(cuda_emu::to_bits(v), cuda_emu::self.lane + (int)delta));
}
template <typename T> inline T __shfl_sync(unsigned /*mask*/, T v, int src) {
    return cuda_emu::from_bits<T>(cuda_emu::shfl(cuda_emu::to_bits(v), src & 31));
}
