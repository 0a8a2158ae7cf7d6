"""NumPy baseline for `mprm gradnorm` with a linear head (the CPU benchmark of issue 4).

Computes, for every rollout of a features bundle, the same statistics mprm does for the linear
head at the bundle's teacher (w*, b*) with hard MC labels (s > 0) and the mean or sum reduction:
loss, grad_sq_w, grad_sq_b, grad_sq, centered_grad_sq, sum_step_grad_sq, resid_sq.

It is written the way a careful NumPy user would: vectorised per chunk of rollouts (to bound
memory), a BLAS matrix-vector product for the logits, `np.add.reduceat` for per-step scalars, and
for the [S, d] segment sums a gather by rollout length followed by `sum(axis=1)` (about 3x faster
than `np.add.reduceat(..., axis=0)` on this layout), f32 data with f32 arithmetic. The feature
matrix is memory-mapped, as in mprm.

    python benches/numpy_gradnorm.py BUNDLE [--reduction mean|sum] [--repeats N] [--out X.npz]
        [--json T.json] [--compare MPRM.safetensors [MORE.safetensors ...]]
"""

import argparse
import json
import time

import numpy as np

from mprm_bundle import read_bundle, read_columns, widen

COLUMNS = ["loss", "grad_sq_w", "grad_sq_b", "grad_sq", "centered_grad_sq", "sum_step_grad_sq",
           "resid_sq"]


def by_length_groups(off):
    """For each rollout length L: the rollouts of that length and their row indices [R_L * L]."""
    n = np.diff(off)
    groups = []
    for length in np.unique(n):
        sel = np.nonzero(n == length)[0]
        rows = (off[sel][:, None] + np.arange(length)[None, :]).ravel()
        groups.append((sel, rows, int(length)))
    return groups


def segment_rows_sum(a, groups, n_roll):
    """Sum of the rows of each rollout: [S, d] -> [R, d]."""
    out = np.empty((n_roll, a.shape[1]), dtype=a.dtype)
    for sel, rows, length in groups:
        out[sel] = a[rows].reshape(len(sel), length, -1).sum(axis=1)
    return out


def gradnorm_linear(b, reduction="mean", chunk_rollouts=32768, dtype=np.float32):
    feats, dt = b["features"], b["features_dtype"]
    off = b["offsets"]
    w = b["w_star"].astype(dtype)
    bias = dtype(b["b_star"])
    y_all = (b["mc_scores"] > 0).astype(dtype)
    n_roll = len(off) - 1
    out = {k: np.empty(n_roll, dtype=np.float64) for k in COLUMNS}
    for a in range(0, n_roll, chunk_rollouts):
        e = min(a + chunk_rollouts, n_roll)
        s0, s1 = off[a], off[e]
        x = widen(dt, feats[s0:s1]).astype(dtype, copy=False)
        starts = off[a:e] - s0
        n = np.diff(off[a:e + 1]).astype(dtype)
        c = 1.0 / n if reduction == "mean" else np.ones_like(n)
        c_step = np.repeat(c, n.astype(np.int64))
        y = y_all[s0:s1]
        z = x @ w + bias
        sig = 1.0 / (1.0 + np.exp(-z))
        r = c_step * (sig - y)
        bce = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
        sq = np.einsum("ij,ij->i", x, x)
        groups = by_length_groups(np.append(starts, s1 - s0))
        g = segment_rows_sum(x * r[:, None], groups, e - a)
        s = segment_rows_sum(x, groups, e - a)
        sum_r = np.add.reduceat(r, starts)
        r_bar = sum_r / n
        gw = np.einsum("ij,ij->i", g, g)
        gc = g - r_bar[:, None] * s
        out["loss"][a:e] = np.add.reduceat(c_step * bce, starts)
        out["grad_sq_w"][a:e] = gw
        out["grad_sq_b"][a:e] = sum_r * sum_r
        out["grad_sq"][a:e] = gw + sum_r * sum_r
        out["centered_grad_sq"][a:e] = np.einsum("ij,ij->i", gc, gc)
        out["sum_step_grad_sq"][a:e] = np.add.reduceat(r * r * (sq + 1), starts)
        out["resid_sq"][a:e] = np.add.reduceat(r * r, starts)
    return out


def compare(ours, mprm_path):
    """Max relative error per statistic (floored at 1e-6 of the column's largest value)."""
    theirs = read_columns(mprm_path)
    worst = {}
    for k in COLUMNS:
        want = theirs[k]
        got = ours[k]
        floor = max(1e-6 * np.abs(want).max(), np.finfo(np.float64).tiny)
        rel = np.abs(got - want) / np.maximum(np.abs(want), floor)
        worst[k] = float(rel.max())
    return worst


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle")
    ap.add_argument("--reduction", default="mean", choices=["mean", "sum"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out")
    ap.add_argument("--json")
    ap.add_argument("--compare", nargs="+", default=[],
                    help="mprm gradnorm tables to check (the first is reported as max_rel_err_vs_mprm)")
    args = ap.parse_args()
    b = read_bundle(args.bundle)
    if b["w_star"] is None:
        raise SystemExit("the bundle has no teacher (w_star, b_star); the baseline needs one")
    n_roll = len(b["offsets"]) - 1
    n_steps = int(b["offsets"][-1])
    d = b["features"].shape[1]
    feature_bytes = n_steps * d * b["features"].dtype.itemsize
    times = []
    for _ in range(max(args.repeats, 1)):
        t = time.perf_counter()
        out = gradnorm_linear(b, args.reduction)
        times.append(time.perf_counter() - t)
    med = float(np.median(times))
    result = {"name": "numpy linear", "median_s": med, "min_s": min(times), "rollouts": n_roll,
              "steps": n_steps, "feature_bytes": feature_bytes,
              "rollouts_per_s": n_roll / med, "gb_per_s": feature_bytes / med / 1e9}
    print(f"numpy: {n_roll} rollouts, median {med:.3f} s, {n_roll / med:.0f} rollouts/s, "
          f"{feature_bytes / med / 1e9:.2f} GB/s")
    if args.out:
        np.savez(args.out, **out)
    if args.compare:
        # The timed f32 run carries NumPy's own f32 rounding; the agreement check reruns the
        # same code in f64, so what remains is mprm's error.
        exact = gradnorm_linear(b, args.reduction, dtype=np.float64)
        result["max_rel_err_by_table"] = {}
        for i, path in enumerate(args.compare):
            worst32 = compare(out, path)
            worst = compare(exact, path)
            result["max_rel_err_by_table"][path] = worst
            if i == 0:
                result["max_rel_err_vs_mprm"] = worst
                result["max_rel_err_f32_vs_mprm"] = worst32
            print(f"  {path}:")
            for k in COLUMNS:
                print(f"    max rel err {k:<18} numpy f64 {worst[k]:.3e}   numpy f32 {worst32[k]:.3e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
