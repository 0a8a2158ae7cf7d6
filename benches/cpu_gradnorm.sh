#!/usr/bin/env bash
# CPU benchmark of issue 4: `mprm gradnorm` (linear head) against benches/numpy_gradnorm.py on the
# same memory-mapped bundle, side by side in one invocation, plus this machine's memory-read
# bandwidth. The bundle (565,096 rollouts, d = 256, f32, ~3.2 GB) is generated once.
#
#   benches/cpu_gradnorm.sh [BUNDLE] [ROLLOUTS]
# Environment: MPRM_PYTHON (default .venv/bin/python, needs numpy), REPEATS (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
bundle="${1:-bench-data/bench_565k_d256_f32.safetensors}"
rollouts="${2:-565096}"
repeats="${REPEATS:-3}"
py="${MPRM_PYTHON:-.venv/bin/python}"
export MPRM_NO_PROGRESS=1

cargo build --release --quiet
bin=target/release/mprm
if [ ! -f "$bundle" ]; then
  "$bin" bench make-bundle --out "$bundle" --rollouts "$rollouts" --dim 256 --dtype f32 --seed 1
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "== machine"
nproc
"$bin" bench membw --device cpu --mib 2048 --repeats 5 | tee "$work/membw.txt"
echo "== mprm (page cache warm after the first run; medians of $repeats)"
"$bin" bench gradnorm --bundle "$bundle" --head linear --at teacher --device cpu \
  --warmup 1 --repeats "$repeats" --json "$work/mprm.json"
echo "== numpy"
"$bin" gradnorm --bundle "$bundle" --head linear --at teacher --device cpu --out "$work/mprm.safetensors" >/dev/null
"$py" benches/numpy_gradnorm.py "$bundle" --repeats "$repeats" --json "$work/numpy.json" --compare "$work/mprm.safetensors"
echo "== summary"
"$py" - "$work" <<'PY'
import json, re, sys
w = sys.argv[1]
m = json.load(open(f"{w}/mprm.json"))["timings"][-1]
n = json.load(open(f"{w}/numpy.json"))
bw = float(re.search(r"read_gb_per_s=([0-9.]+)", open(f"{w}/membw.txt").read()).group(1))
t_m, t_n = m["median_ms"] / 1e3, n["median_s"]
print(f"{'':8} {'median s':>9} {'rollouts/s':>12} {'GB/s':>7} {'% of read bw':>13}")
for name, t, gbs in [("mprm", t_m, m["gb_per_s"]), ("numpy", t_n, n["gb_per_s"])]:
    print(f"{name:8} {t:9.3f} {m['rollouts'] / t:12.0f} {gbs:7.2f} {100 * gbs / bw:12.1f}%")
print(f"speed ratio mprm / numpy: {t_n / t_m:.2f}x   (memory read bandwidth {bw:.2f} GB/s)")
worst = max(n["max_rel_err_vs_mprm"].values())
print(f"numerical agreement: max rel err {worst:.2e} over all statistics")
PY
