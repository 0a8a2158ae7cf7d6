"""PyTorch baselines for `mprm gradnorm` with a linear head, on the same bundle.

Two ways a PyTorch user would get per-rollout gradient norms of the MPRM loss
L = c * sum_j BCE(z_j, y_j), z_j = w.h_j + b, at the bundle's teacher (w*, b*), hard MC labels:

* `vmap`: torch.func.vmap(grad(loss)) over rollouts padded to (B, T_max, d) with a step mask,
  in chunks of rollouts; the centred norm uses g - r_bar * s, the step norms a nested vmap.
* `loop`: one autograd backward per rollout (launch-bound; timed on the first --loop-rollouts
  rollouts and reported per rollout).

Features are moved to the device once (CSR, as mprm holds them); the timed span starts from the
resident CSR rows, so it includes padding. Prints one line per method and optionally writes JSON
and the per-rollout statistics (for comparison with mprm's output).

    python benches/torch_gradnorm.py BUNDLE [--device cuda|cpu] [--reduction mean|sum]
        [--repeats N] [--max-rollouts R] [--loop-rollouts L] [--json T.json] [--compare M.safetensors]
"""

import argparse
import json
import time

import numpy as np
import torch
from torch.func import grad, vmap

from mprm_bundle import read_bundle, read_columns, widen


def loss_fn(params, x, y, mask, c):
    z = x @ params["w"] + params["b"]
    per_step = torch.nn.functional.softplus(z) - y * z
    return c * (per_step * mask).sum()


def step_loss(params, x, y, c):
    z = x @ params["w"] + params["b"]
    return c * (torch.nn.functional.softplus(z) - y * z)


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def padded_index(offsets, t_max):
    """Index of each (rollout, slot) into the CSR rows, -1 for padding."""
    n = np.diff(offsets)
    slots = np.arange(t_max)[None, :]
    idx = offsets[:-1, None] + slots
    return np.where(slots < n[:, None], idx, -1), n


def vmap_stats(params, x_csr, y_csr, idx, n, reduction):
    """All statistics for the rollouts described by idx [B, T] (-1 = padding)."""
    mask = (idx >= 0).to(x_csr.dtype)
    safe = idx.clamp(min=0)
    x = x_csr[safe] * mask[..., None]
    y = y_csr[safe] * mask
    c = 1.0 / n if reduction == "mean" else torch.ones_like(n)
    g = vmap(grad(loss_fn), in_dims=(None, 0, 0, 0, 0))(params, x, y, mask, c)
    gw, gb = g["w"], g["b"]
    z = x @ params["w"] + params["b"]
    r = c[:, None] * (torch.sigmoid(z) - y) * mask
    r_bar = r.sum(1) / n
    s = x.sum(1)
    gc = gw - r_bar[:, None] * s
    per_step = vmap(vmap(grad(step_loss), in_dims=(None, 0, 0, None)), in_dims=(None, 0, 0, 0))(params, x, y, c)
    step_sq = ((per_step["w"] ** 2).sum(-1) + per_step["b"] ** 2) * mask
    loss = vmap(loss_fn, in_dims=(None, 0, 0, 0, 0))(params, x, y, mask, c)
    return {
        "loss": loss, "grad_sq_w": (gw * gw).sum(1), "grad_sq_b": gb * gb,
        "grad_sq": (gw * gw).sum(1) + gb * gb, "centered_grad_sq": (gc * gc).sum(1),
        "sum_step_grad_sq": step_sq.sum(1), "resid_sq": (r * r).sum(1),
    }


def run_vmap(params, x_csr, y_csr, offsets, reduction, chunk):
    dev = x_csr.device
    n_roll = len(offsets) - 1
    out = {}
    for a in range(0, n_roll, chunk):
        e = min(a + chunk, n_roll)
        off = offsets[a:e + 1]
        t_max = int(np.diff(off).max())
        idx, n = padded_index(off, t_max)
        stats = vmap_stats(params, x_csr, y_csr, torch.as_tensor(idx, device=dev),
                           torch.as_tensor(n, device=dev, dtype=x_csr.dtype), reduction)
        for k, v in stats.items():
            out.setdefault(k, []).append(v)
    sync(dev)
    return {k: torch.cat(v) for k, v in out.items()}


def run_loop(w, b, x_csr, y_csr, offsets, reduction, count):
    for i in range(count):
        s0, s1 = int(offsets[i]), int(offsets[i + 1])
        wi = w.detach().clone().requires_grad_(True)
        bi = b.detach().clone().requires_grad_(True)
        c = 1.0 / (s1 - s0) if reduction == "mean" else 1.0
        z = x_csr[s0:s1] @ wi + bi
        loss = c * (torch.nn.functional.softplus(z) - y_csr[s0:s1] * z).sum()
        loss.backward()
        _ = (wi.grad * wi.grad).sum() + bi.grad * bi.grad
    sync(x_csr.device)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--reduction", default="mean", choices=["mean", "sum"])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--max-rollouts", type=int, default=0, help="use only the first R rollouts")
    ap.add_argument("--loop-rollouts", type=int, default=2000)
    ap.add_argument("--chunk", type=int, default=8192)
    ap.add_argument("--json")
    ap.add_argument("--compare")
    args = ap.parse_args()
    dev = torch.device(args.device)
    b = read_bundle(args.bundle)
    offsets = b["offsets"]
    if args.max_rollouts:
        offsets = offsets[: args.max_rollouts + 1]
    n_roll, n_steps = len(offsets) - 1, int(offsets[-1])
    d = b["features"].shape[1]
    x = widen(b["features_dtype"], b["features"][:n_steps])
    x_csr = torch.as_tensor(np.ascontiguousarray(x), device=dev)
    y_csr = torch.as_tensor((b["mc_scores"][:n_steps] > 0).astype(np.float32), device=dev)
    w = torch.as_tensor(b["w_star"], device=dev)
    bias = torch.tensor(b["b_star"], device=dev, dtype=torch.float32)
    params = {"w": w, "b": bias}
    stored_bytes = n_steps * d * b["features"].dtype.itemsize
    results = []

    run_vmap(params, x_csr, y_csr, offsets, args.reduction, args.chunk)  # warm-up
    times = []
    for _ in range(max(args.repeats, 1)):
        t = time.perf_counter()
        stats = run_vmap(params, x_csr, y_csr, offsets, args.reduction, args.chunk)
        times.append(time.perf_counter() - t)
    med = float(np.median(times))
    results.append({"name": "torch.func vmap", "median_ms": med * 1e3, "rollouts": n_roll,
                    "rollouts_per_s": n_roll / med, "gb_per_s": stored_bytes / med / 1e9})

    loop_n = min(args.loop_rollouts, n_roll)
    run_loop(w, bias, x_csr, y_csr, offsets, args.reduction, min(50, loop_n))  # warm-up
    t = time.perf_counter()
    run_loop(w, bias, x_csr, y_csr, offsets, args.reduction, loop_n)
    loop_s = time.perf_counter() - t
    results.append({"name": "torch loop", "median_ms": loop_s / loop_n * n_roll * 1e3,
                    "rollouts": n_roll, "rollouts_per_s": loop_n / loop_s,
                    "gb_per_s": stored_bytes / (loop_s / loop_n * n_roll) / 1e9,
                    "note": f"timed on {loop_n} rollouts, extrapolated"})

    for r in results:
        print(f"RESULT name=\"{r['name']}\" device={dev} median_ms={r['median_ms']:.4f} "
              f"rollouts_per_s={r['rollouts_per_s']:.1f} gb_per_s={r['gb_per_s']:.3f}")
    if args.compare:
        theirs = read_columns(args.compare)
        for k, v in stats.items():
            want = theirs[k][:n_roll]
            got = v.double().cpu().numpy()
            floor = max(1e-6 * np.abs(want).max(), 1e-300)
            err = float((np.abs(got - want) / np.maximum(np.abs(want), floor)).max())
            print(f"  max rel err vs mprm {k:<18} {err:.3e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": str(dev), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
