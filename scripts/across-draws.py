#!/usr/bin/env python3
"""Combines a selection experiment's per-draw paired deltas into one table over corpus draws.

    scripts/across-draws.py experiments/results/gradient/linear

reads DIR/corpus-*/selection/{delta_vs_bis,delta_vs_bis_auc,delta_vs_bis_best_of_n_min}.json
(each cell: the mean over training seeds of a selector's paired difference from BIS) and writes
DIR/across-draws.md: per cell, the mean of the draws' means, a 95% Student-t interval over the
draws (n − 1 degrees of freedom; the draws are the replication unit, the seeds inside a draw are
already averaged) and each draw's mean in corpus-seed order. Standard library only.
"""

import json
import math
import os
import sys

# Two-sided 95% quantiles of Student's t, by degrees of freedom.
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}

TABLES = [
    ("delta_vs_bis", "Overall − BIS"),
    ("delta_vs_bis_auc", "AUC − BIS"),
    ("delta_vs_bis_best_of_n_min", "best-of-N (min) − BIS"),
]


def fail(msg):
    sys.exit(f"across-draws: {msg}")


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        fail(f"{path}: {e}")


def cell(draw_means):
    n = len(draw_means)
    mean = sum(draw_means) / n
    if n < 2:
        return f"{mean:+.2f} (one draw)"
    sd = math.sqrt(sum((x - mean) ** 2 for x in draw_means) / (n - 1))
    half = T975[n - 1] * sd / math.sqrt(n)
    each = "/".join(f"{x:+.1f}" for x in draw_means)
    return f"{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}] ({each})"


def main():
    if len(sys.argv) != 2:
        fail("usage: across-draws.py RESULTS_DIR (holding corpus-*/selection/)")
    root = sys.argv[1]
    draws = sorted(
        d for d in os.listdir(root)
        if d.startswith("corpus-") and os.path.isdir(os.path.join(root, d, "selection"))
    )
    if not draws:
        fail(f"{root}: no corpus-*/selection folders")
    if len(draws) - 1 > max(T975):
        fail(f"{len(draws)} draws: extend the t table")
    out = [
        f"# {os.path.basename(os.path.normpath(root))}: paired deltas against BIS over corpus draws",
        "",
        f"Draws: {', '.join(draws)}. Each cell: the mean of the draws' means (each draw's mean is "
        "over its training seeds, as in its own `selection/` table), a 95% Student-t interval "
        f"over the {len(draws)} draws ({len(draws) - 1} degrees of freedom), and each draw's mean "
        "in the order above. Written by `scripts/across-draws.py` from the per-draw JSON tables.",
        "",
    ]
    for name, title in TABLES:
        per_draw = [load(os.path.join(root, d, "selection", f"{name}.json")) for d in draws]
        columns = per_draw[0]["columns"]
        if any(t["columns"] != columns for t in per_draw):
            fail(f"{name}: the draws' tables have different columns")
        out += [f"## {title} (×100)", "", "| " + " | ".join(columns) + " |",
                "|" + "---|" * len(columns)]
        names = [r[0]["text"] for r in per_draw[0]["rows"]]
        for i, selector in enumerate(names):
            rows = []
            for d, t in zip(draws, per_draw):
                if i >= len(t["rows"]) or t["rows"][i][0]["text"] != selector:
                    fail(f"{d} {name}: row {i} is not {selector}")
                rows.append(t["rows"][i])
            cells = [selector]
            for c in range(1, len(columns)):
                values = [r[c]["ci"]["mean"] for r in rows if r[c].get("kind") == "ci"]
                cells.append(cell(values) if len(values) == len(rows) else "—")
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    target = os.path.join(root, "across-draws.md")
    tmp = target + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(out))
    os.replace(tmp, target)
    print(target)


if __name__ == "__main__":
    main()
