#!/usr/bin/env bash
# The one GPU session of issue 4, scripted: correctness of the CUDA kernels against the CPU
# engine and the f64 oracle, kernel timings with CUDA events, device copy bandwidth, and the
# PyTorch baselines on the same bundles, ending in one summary table.
#
#   scripts/gpu-check.sh [MPRM_BINARY]        (default ./mprm; a stripped release build with
#                                              --features cuda, carried to the GPU machine)
# Environment: MPRM_GPU_WORK (scratch folder for the bundles, ~11 GB, default /tmp/mprm-gpu, or
#              /tmp/mprm-gpu-quick with QUICK=1, so that a dry run's small bundles are never taken
#              for the full ones),
#              MPRM_GPU_RESULTS (where the JSON timings and membw.txt go, default the scratch
#              folder; on a lent machine point it at $OUT so they come back even if a later step
#              is cut off), PHASES (default "fixtures bundles check time torch world": any subset,
#              in that order, so that each can run in its own call of at most 10 minutes;
#              "fixtures" needs no bundle (the built-in fixtures and the `cuda_` tests),
#              "bundles" only makes the bundles, which the later phases make too if they are
#              missing, and bundles already in the scratch folder are reused),
#              BUNDLES (default all four: "d64_f32 d1000_f32 d4096_bf16 d4096_f32"; the bundles
#              the later phases use, so that a phase cut off by its call's limit can be finished
#              in the next call on the bundles it did not reach), PYTHON (default python3),
#              QUICK=1 (smaller bundles, for a dry run), MPRM_TEST_BIN (the `it` test binary).
#
# Every step prints as it finishes and a failing step does not stop the rest; the exit status is
# 1 when any step failed. Everything printed is also appended to gpu-check.log in the results
# folder, so a call cut off at its limit still brings back what ran. The step limits below are
# upper bounds, not estimates: no phase has yet run on a device. Over all four bundles the limits
# of the `check` and `time` phases add up to more than one 600-second call: if a call is cut off,
# run the rest of that phase with BUNDLES.
set -uo pipefail
cd "$(dirname "$0")/.."
bin="$(realpath "${1:-./mprm}")"
if [ "${QUICK:-0}" = 1 ]; then work="${MPRM_GPU_WORK:-/tmp/mprm-gpu-quick}"; else work="${MPRM_GPU_WORK:-/tmp/mprm-gpu}"; fi
results="${MPRM_GPU_RESULTS:-$work}"
phases=" ${PHASES:-fixtures bundles check time torch world} "
py="${PYTHON:-python3}"
mkdir -p "$work" "$results"
exec > >(tee -a "$results/gpu-check.log") 2>&1
phase() { [[ "$phases" == *" $1 "* ]]; }
export MPRM_NO_PROGRESS=1
start=$(date +%s)
failures=0
say() { printf '\n=== [%4ss] %s\n' "$(( $(date +%s) - start ))" "$*"; }
run() { # run LIMIT_S CMD...: a step with a time limit; counts failures
  local limit=$1; shift
  timeout "$limit" "$@"; local rc=$?
  if [ $rc -ne 0 ]; then echo "!!! step failed (exit $rc): $*"; failures=$((failures + 1)); fi
  return 0
}

say "device and libraries"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# NVRTC 13 must be loadable; look in the usual places before giving up.
if ! ldconfig -p 2>/dev/null | grep -q 'libnvrtc.so.13'; then
  for d in /usr/local/cuda/lib64 /usr/local/cuda-13*/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
           $("$py" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13", "lib"))' 2>/dev/null); do
    if [ -e "$d/libnvrtc.so.13" ]; then export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; break; fi
  done
  if [ -z "${LD_LIBRARY_PATH:-}" ] || ! ls "${LD_LIBRARY_PATH%%:*}"/libnvrtc.so.13 >/dev/null 2>&1; then
    found="$(find /usr /opt -name 'libnvrtc.so.13' 2>/dev/null | head -1)"
    if [ -n "$found" ]; then export LD_LIBRARY_PATH="$(dirname "$found")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; fi
  fi
fi
echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
# The NVRTC that will compile the kernels: a 13.1+ one writes PTX that driver 580 refuses.
"$py" - <<'PY' || echo "(could not ask NVRTC its version)"
import ctypes
lib = ctypes.CDLL("libnvrtc.so.13")
major, minor = ctypes.c_int(), ctypes.c_int()
lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
print(f"NVRTC {major.value}.{minor.value}" + ("" if (major.value, minor.value) == (13, 0) else
      "  (not 13.0: if kernels fail to load, put a 13.0 NVRTC first on LD_LIBRARY_PATH)"))
PY
"$bin" --version

if phase fixtures; then
say "kernels compile for this device and match the f64 oracle on the fixtures"
run 120 "$bin" verify --random --device cuda --head linear
run 120 "$bin" verify --random --device cuda --head mlp --hidden 64
run 120 "$bin" verify --random --device cuda --head mlp --hidden 24 --activation relu --reduction sum

# The integration tests marked `#[ignore = "needs a CUDA device"]` (CUDA engine against the CPU
# engine, the Burn CUDA trainer against the CPU one). There is no Rust toolchain on the GPU machine:
# build the test binary here with `cargo test --release --features cuda --no-run`, carry it, and
# point MPRM_TEST_BIN at it.
if [ -n "${MPRM_TEST_BIN:-}" ]; then
  say "the test suite's GPU tests (--ignored)"
  # Only the `cuda_` tests: another ignored test must run alone in its process (burn's dtype).
  run 300 "$MPRM_TEST_BIN" cuda_ --ignored --test-threads 1
fi
fi

if [ "${QUICK:-0}" = 1 ]; then scale=20; else scale=1; fi
# name dim dtype rollouts
bundles=(
  "d64_f32 64 f32 $((400000 / scale))"
  "d1000_f32 1000 f32 $((60000 / scale))"
  "d4096_bf16 4096 bf16 $((120000 / scale))"
  "d4096_f32 4096 f32 $((60000 / scale))"
)
wanted=" ${BUNDLES:-d64_f32 d1000_f32 d4096_bf16 d4096_f32} "
picked=()
for spec in "${bundles[@]}"; do
  set -- $spec
  if [[ "$wanted" == *" $1 "* ]]; then picked+=("$spec"); fi
done
bundles=("${picked[@]}")
chosen() { [[ "$wanted" == *" $1 "* ]]; }
if [ ${#bundles[@]} -eq 0 ]; then echo "!!! BUNDLES names none of the four bundles: $wanted"; exit 2; fi

for spec in "${bundles[@]}"; do
  set -- $spec
  if [ -f "$work/$1.safetensors" ] || ! { phase bundles || phase check || phase time || phase torch; }; then continue; fi
  say "generating $1 ($4 rollouts, d = $2, $3)"
  run 120 "$bin" bench make-bundle --out "$work/$1.safetensors" --rollouts "$4" --dim "$2" --dtype "$3" --seed 7
done

if phase check; then

for spec in "${bundles[@]}"; do
  set -- $spec
  b="$work/$1.safetensors"
  say "$1: CUDA against the CPU engine (linear, both reductions; mlp h=256 gelu)"
  run 120 "$bin" verify --bundle "$b" --device cuda --reference cpu --at teacher --max-rollouts 50000
  run 120 "$bin" verify --bundle "$b" --device cuda --reference cpu --at teacher --reduction sum --max-rollouts 50000
  run 180 "$bin" verify --bundle "$b" --device cuda --reference cpu --head mlp --hidden 256 --max-rollouts 3000
  say "$1: CUDA against the f64 oracle (linear, 400 rollouts)"
  run 120 "$bin" verify --bundle "$b" --device cuda --at teacher --max-rollouts 400
done
fi

if phase time; then
say "device-to-device copy bandwidth"
run 60 bash -c 'set -o pipefail; "$0" bench membw --device cuda --mib 4096 --repeats 20 | tee "$1"' \
  "$bin" "$results/membw.txt"

for spec in "${bundles[@]}"; do
  set -- $spec
  # Besides the kernels, each run times whole calls twice: with the chunks resident (after the
  # first call) and with them released before every call (`rollout_stats, uploading`).
  say "$1: kernel timings (CUDA events, median of 20 after 3 warm-ups), linear head"
  run 150 "$bin" bench gradnorm --bundle "$work/$1.safetensors" --device cuda --at teacher \
    --warmup 3 --repeats 20 --json "$results/time_$1_linear.json"
done
# Each pass is a ~5.6 TFLOP f32 GEMM pair and the uploading timing re-reads 5.5 GB: few repeats.
if chosen d4096_bf16; then
say "d4096_bf16: kernel timings, mlp head h = 1024 (gelu), median of 5 after 1 warm-up"
run 240 "$bin" bench gradnorm --bundle "$work/d4096_bf16.safetensors" --device cuda --head mlp --hidden 1024 \
  --warmup 1 --repeats 5 --json "$results/time_d4096_bf16_mlp.json"
fi
fi

if phase torch; then
if "$py" -c 'import torch, numpy; assert torch.cuda.is_available()' 2>/dev/null; then
  for name in d64_f32 d4096_bf16; do
    chosen "$name" || continue
    say "$name: PyTorch baselines (torch.func vmap, plain loop)"
    run 240 "$py" benches/torch_gradnorm.py "$work/$name.safetensors" --device cuda --repeats 5 \
      --json "$results/torch_$name.json"
  done
else
  say "PyTorch with CUDA (and numpy) is not importable here: no torch baseline"
fi
fi

if phase world; then

say "the learned-policy world on burn-cuda: a small world end to end (policy training, sampling, MC annotation)"
# The CPU build of the same settings takes about a minute on 2 cores; `wall time` is printed.
run 300 "$bin" world --out "$work/world-cuda" --problems 100 --bench-problems 20 --policy-steps 200 \
  --device cuda
run 60 "$bin" stats "$work/world-cuda/annotations"
fi

say "summary of the timings in $results (earlier calls' too, where they wrote to the same folder)"
"$py" - "$results" <<'PY' || echo "(no python: see the timings above)"
import glob, json, os, re, sys
w = sys.argv[1]
bw = os.path.join(w, "membw.txt")
m = re.search(r"copy_gb_per_s=([0-9.]+)", open(bw).read()) if os.path.exists(bw) else None
copy = float(m.group(1)) if m else float("nan")
torch = {}
for f in glob.glob(os.path.join(w, "torch_*.json")):
    name = os.path.basename(f)[len("torch_"):-len(".json")]
    for r in json.load(open(f))["results"]:
        torch[(name, r["name"])] = r
print(f"copy bandwidth (read + write): {copy:.1f} GB/s")
print(f"{'bundle':12} {'head':7} {'kernel':24} {'ms':>9} {'GB/s':>8} {'% copy':>7} {'rollouts/s':>13} {'vs vmap':>8} {'vs loop':>8}")
for f in sorted(glob.glob(os.path.join(w, "time_*.json"))):
    bundle, head = os.path.basename(f)[5:-5].rsplit("_", 1)
    for t in json.load(open(f))["timings"]:
        vm, lp = torch.get((bundle, "torch.func vmap")), torch.get((bundle, "torch loop"))
        ratio = lambda r: f"{r['median_ms'] / t['median_ms']:.1f}x" if r and head == "linear" else "-"
        print(f"{bundle:12} {head:7} {t['name'][:24]:24} {t['median_ms']:9.3f} {t['gb_per_s']:8.1f} "
              f"{100 * t['gb_per_s'] / copy:6.1f}% {t['rollouts_per_s']:13.0f} {ratio(vm):>8} {ratio(lp):>8}")
for (bundle, name), r in sorted(torch.items()):
    print(f"{bundle:12} {'linear':7} {name[:24]:24} {r['median_ms']:9.3f} {r['gb_per_s']:8.1f} "
          f"{100 * r['gb_per_s'] / copy:6.1f}% {r['rollouts_per_s']:13.0f}")
PY
say "done: $failures failed step(s)"
[ "$failures" -eq 0 ]
