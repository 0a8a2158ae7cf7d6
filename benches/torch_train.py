"""PyTorch CPU baseline for `cargo bench --bench train`: the same model and protocol as mprm's
Burn trainer, timed the same way.

Model: Linear(d, h) -> GELU (erf form) or ReLU -> Linear(h, 1), or Linear(d, 1) (hidden 0). Protocol per optimiser step: gather the step
rows of 512 shuffled rollouts, weighted BCE-with-logits (micro-batch-mean weights, micro-batches
of 2 rollouts), backward, global-norm clipping at 1.0, AdamW (0.9, 0.999, 1e-8, wd 0.05), and
Hugging Face's warm-up + cosine schedule; the loss is read back every step (as mprm does to stop
on NaN). Prints one JSON line with the throughput.

Data comes from the folder the Rust bench writes: meta.json, features.f32 [S, d],
offsets.i64 [R + 1], targets.f32 [S].
"""

import argparse
import json
import math
import os
import time

import torch
import torch.nn.functional as F


def load(folder):
    with open(os.path.join(folder, "meta.json")) as f:
        meta = json.load(f)

    def tensor(name, dtype):
        with open(os.path.join(folder, name), "rb") as f:
            return torch.frombuffer(bytearray(f.read()), dtype=dtype)

    d = meta["dim"]
    features = tensor("features.f32", torch.float32).view(-1, d)
    offsets = tensor("offsets.i64", torch.int64)
    targets = tensor("targets.f32", torch.float32)
    return meta, features, offsets, targets


def lr_factor(step, total, warmup):
    if step < warmup:
        return step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))


def run(meta, features, offsets, targets, seed):
    torch.manual_seed(seed)
    d, h = meta["dim"], meta["hidden"]
    batch, micro = meta["global_batch"], meta["micro_batch"]
    n = offsets.numel() - 1
    total = math.ceil(n / batch)
    warmup = math.ceil(total * meta["warmup_fraction"])
    if h == 0:
        model = torch.nn.Linear(d, 1)
    else:
        act = {"gelu": torch.nn.GELU(), "relu": torch.nn.ReLU()}[meta["activation"]]
        model = torch.nn.Sequential(torch.nn.Linear(d, h), act, torch.nn.Linear(h, 1))
    params = list(model.parameters())
    opt = torch.optim.AdamW(
        params, lr=meta["lr"], betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, total, warmup)
    )
    perm = torch.randperm(n)
    lengths = offsets[1:] - offsets[:-1]
    start = time.perf_counter()
    last = float("nan")
    for step in range(total):
        ids = perm[step * batch : (step + 1) * batch]
        lens = lengths[ids]
        first = offsets[ids]
        n_steps = int(lens.sum())
        # Row index of every step of the batch, rollouts in batch order.
        base = torch.repeat_interleave(first - (torch.cumsum(lens, 0) - lens), lens)
        rows = base + torch.arange(n_steps)
        x = features[rows]
        y = targets[rows]
        # micro-batch-mean weights: 1 / (K * steps of the step's micro-batch)
        mb = torch.arange(ids.numel()) // micro
        k = int(mb[-1]) + 1
        mb_steps = torch.zeros(k, dtype=torch.int64).index_add_(0, mb, lens)
        w = torch.repeat_interleave(1.0 / (k * mb_steps.to(torch.float32)[mb]), lens)
        z = model(x).squeeze(1)
        loss = (F.binary_cross_entropy_with_logits(z, y, reduction="none") * w).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        last = loss.item()
    seconds = time.perf_counter() - start
    return seconds, total, last


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="0 = torch's default")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    meta, features, offsets, targets = load(args.data)
    seconds, steps, last = run(meta, features, offsets, targets, args.seed)
    n = offsets.numel() - 1
    print(
        json.dumps(
            {
                "framework": f"torch {torch.__version__}",
                "threads": torch.get_num_threads(),
                "rollouts": n,
                "optimizer_steps": steps,
                "seconds": seconds,
                "rollouts_per_second": n / seconds,
                "final_loss": last,
            }
        )
    )


if __name__ == "__main__":
    main()
