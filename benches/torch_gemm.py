"""PyTorch CPU side of `cargo bench --bench gemm`: the mlp head's two products per training step
(x @ W and x.T @ g, x.T a transposed view), timed as the Rust side times them: a warm-up, then
5 samples of REPEATS calls, the median in milliseconds per call. Prints one JSON line."""

import argparse
import json
import statistics
import time

import torch

ROWS, DIM, HIDDEN = 3072, 256, 256


def time_ms(repeats, f):
    for _ in range(-(-repeats // 10)):
        f()
    samples = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(repeats):
            f()
        samples.append((time.perf_counter() - t) * 1e3 / repeats)
    return sorted(samples)[len(samples) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--repeats", type=int, default=400)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(ROWS, DIM, generator=gen) - 0.5
    w = torch.rand(DIM, HIDDEN, generator=gen) - 0.5
    g = torch.rand(ROWS, HIDDEN, generator=gen) - 0.5
    y = torch.empty(ROWS, HIDDEN)
    dw = torch.empty(DIM, HIDDEN)
    out = {
        "framework": f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        "x·W": time_ms(args.repeats, lambda: torch.matmul(x, w, out=y)),
        "xᵀ·g": time_ms(args.repeats, lambda: torch.matmul(x.t(), g, out=dw)),
    }
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
