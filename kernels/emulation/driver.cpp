// Runs one of mprm's CUDA kernels on the CPU through cuda_emu.h.
//
// Build (kernels/ on the include path, the .cu files are included unchanged):
//   g++ -std=c++20 -O1 -pthread -I kernels kernels/emulation/driver.cpp -o emu_driver
// Use:
//   emu_driver --list            prints every kernel symbol it can run, one a line
//   emu_driver IN OUT            runs the launch described by IN, writes the buffers to OUT
//
// IN (little-endian): "MPRMEMU1", u32 name length, name, u32 grid[3], u32 block[3],
// u32 shared bytes, u64 schedule seed, u32 argument count, then per argument (in the kernel's
// parameter order) a one-byte kind and its value: 'i' i32, 'l' i64, 'f' f32, or 'b' a buffer:
// u32 element size, u64 byte count, bytes. OUT: every buffer after the run, in argument
// order, each as u64 byte count and bytes (inputs included; the caller picks the outputs).
#include "emulation/cuda_emu.h"

#include "linear_stats.cu"
#include "gemm.cu"
#include "mlp_stats.cu"
#include "rollout_grad.cu"
#include "project.cu"
#include "gram.cu"
#include "sketch.cu"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <type_traits>
#include <utility>

namespace {

struct Arg {
    char kind = 0;
    long long i = 0;
    float f = 0;
    unsigned elem = 0;
    std::vector<unsigned char> bytes;
};

[[noreturn]] void fail(const std::string& msg) {
    std::cerr << "emu_driver: " << msg << "\n";
    std::exit(2);
}

template <typename T> T read(std::istream& in) {
    T v{};
    in.read(reinterpret_cast<char*>(&v), sizeof(T));
    if (!in) fail("truncated input");
    return v;
}

template <typename P> P get(std::vector<Arg>& args, size_t k) {
    if (k >= args.size()) fail("too few arguments");
    Arg& a = args[k];
    if constexpr (std::is_pointer_v<P>) {
        using E = std::remove_cv_t<std::remove_pointer_t<P>>;
        if (a.kind != 'b' || a.elem != sizeof(E))
            fail("argument " + std::to_string(k) + ": expected a buffer of " +
                 std::to_string(sizeof(E)) + "-byte elements");
        return reinterpret_cast<P>(a.bytes.data());
    } else if constexpr (std::is_same_v<P, float>) {
        if (a.kind != 'f') fail("argument " + std::to_string(k) + ": expected f32");
        return a.f;
    } else if constexpr (std::is_same_v<P, long long>) {
        if (a.kind != 'l') fail("argument " + std::to_string(k) + ": expected i64");
        return a.i;
    } else {
        static_assert(std::is_same_v<P, int>, "unsupported kernel parameter type");
        if (a.kind != 'i') fail("argument " + std::to_string(k) + ": expected i32");
        return (int)a.i;
    }
}

using Runner = std::function<void(std::vector<Arg>&, dim3, dim3, unsigned, unsigned long long)>;

template <typename... P, size_t... I>
void run_with(void (*k)(P...), std::vector<Arg>& args, dim3 g, dim3 b, unsigned sh,
              unsigned long long seed, std::index_sequence<I...>) {
    if (args.size() != sizeof...(P))
        fail("expected " + std::to_string(sizeof...(P)) + " arguments, got " +
             std::to_string(args.size()));
    cuda_emu::launch(k, g, b, sh, seed, get<P>(args, I)...);
}

template <typename... P> Runner runner(void (*k)(P...)) {
    return [k](std::vector<Arg>& args, dim3 g, dim3 b, unsigned sh, unsigned long long seed) {
        run_with(k, args, g, b, sh, seed, std::index_sequence_for<P...>{});
    };
}

const std::map<std::string, Runner>& kernels() {
#define K(name) {#name, runner(&name)}
    static const std::map<std::string, Runner> m = {
        K(linear_stats_f32), K(linear_stats_bf16), K(gemm_nt_f32),     K(gemm_nt_bf16),
        K(mlp_step_f32),     K(mlp_stats_f32),     K(mlp_stats_bf16),  K(linear_grad_f32),
        K(linear_grad_bf16), K(mlp_grad_f32),      K(mlp_grad_bf16),   K(project_f32),
        K(column_sum_f32),   K(weighted_gram_f32), K(weighted_gram_bf16), K(gram_accumulate_f64),
        K(precondition_sketch_f32),
    };
#undef K
    return m;
}

} // namespace

int main(int argc, char** argv) {
    if (argc == 2 && std::string(argv[1]) == "--list") {
        for (auto& [name, _] : kernels()) std::cout << name << "\n";
        return 0;
    }
    if (argc != 3) fail("usage: emu_driver --list | emu_driver IN OUT");
    std::ifstream in(argv[1], std::ios::binary);
    if (!in) fail(std::string("cannot open ") + argv[1]);
    char magic[8];
    in.read(magic, 8);
    if (!in || std::memcmp(magic, "MPRMEMU1", 8) != 0) fail("bad magic");
    std::string name(read<unsigned>(in), '\0');
    in.read(name.data(), (std::streamsize)name.size());
    dim3 grid{read<unsigned>(in), read<unsigned>(in), read<unsigned>(in)};
    dim3 block{read<unsigned>(in), read<unsigned>(in), read<unsigned>(in)};
    const unsigned shared = read<unsigned>(in);
    const auto seed = read<unsigned long long>(in);
    std::vector<Arg> args(read<unsigned>(in));
    for (auto& a : args) {
        a.kind = read<char>(in);
        switch (a.kind) {
        case 'i': a.i = read<int>(in); break;
        case 'l': a.i = read<long long>(in); break;
        case 'f': a.f = read<float>(in); break;
        case 'b': {
            a.elem = read<unsigned>(in);
            a.bytes.resize(read<unsigned long long>(in));
            in.read(reinterpret_cast<char*>(a.bytes.data()), (std::streamsize)a.bytes.size());
            if (!in) fail("truncated buffer");
            break;
        }
        default: fail(std::string("unknown argument kind ") + a.kind);
        }
    }
    auto it = kernels().find(name);
    if (it == kernels().end()) fail("unknown kernel " + name);
    if (block.x * block.y * block.z == 0 || block.x * block.y * block.z > 1024)
        fail("block size outside 1..1024");
    it->second(args, grid, block, shared, seed);
    std::ofstream out(argv[2], std::ios::binary);
    for (auto& a : args) {
        if (a.kind != 'b') continue;
        const unsigned long long n = a.bytes.size();
        out.write(reinterpret_cast<const char*>(&n), 8);
        out.write(reinterpret_cast<const char*>(a.bytes.data()), (std::streamsize)n);
    }
    if (!out) fail(std::string("cannot write ") + argv[2]);
    return 0;
}
