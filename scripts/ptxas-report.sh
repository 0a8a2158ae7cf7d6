#!/usr/bin/env bash
# Registers, spills and shared memory of every CUDA kernel, as ptxas sees them.
#
# Emits PTX through `mprm kernels ptx` (the engine's own NVRTC path) and assembles each file with
# `ptxas -v` from NVIDIA's nvcc wheel. Needs a cuda-feature build of mprm and libnvrtc.so.13 on
# LD_LIBRARY_PATH. Spills in a hot kernel are a performance bug worth a look.
#
#   scripts/ptxas-report.sh [sm_90]
# Environment: MPRM_BIN (default target/release/mprm, built with --features cuda if absent),
#              MPRM_PTXAS (default: ptxas from the .venv's nvidia cu13 wheel).
set -euo pipefail
cd "$(dirname "$0")/.."
arch="${1:-sm_90}"

bin="${MPRM_BIN:-target/release/mprm}"
if [ ! -x "$bin" ]; then
  cargo build --release --features cuda --quiet
fi
ptxas="${MPRM_PTXAS:-}"
if [ -z "$ptxas" ]; then
  ptxas="$(.venv/bin/python -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13", "bin", "ptxas"))')"
fi
if [ ! -x "$ptxas" ]; then
  echo "ptxas not found at $ptxas (pip install nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88)" >&2
  exit 2
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$bin" kernels ptx --out "$work" --arch "compute_${arch#sm_}" >/dev/null

printf '%-22s %-20s %5s %12s %12s %8s %8s\n' file kernel regs spill-stores spill-loads smem stack
status=0
for ptx in "$work"/*.ptx; do
  log="$("$ptxas" -arch="$arch" -v "$ptx" -o "$work/out.cubin" 2>&1)" || { echo "$log" >&2; status=1; continue; }
  echo "$log" | awk -v file="$(basename "$ptx" .ptx).cu" '
    /Compiling entry function/ { match($0, /'\''[^'\'']+'\''/); kernel = substr($0, RSTART + 1, RLENGTH - 2) }
    /bytes stack frame/ { stack = $1; stores = $5; loads = $9 }
    /Used [0-9]+ registers/ {
      regs = $0; sub(/.*Used /, "", regs); sub(/ registers.*/, "", regs)
      smem = 0
      if (match($0, /[0-9]+ bytes smem/)) { smem = substr($0, RSTART, RLENGTH); sub(/ bytes smem/, "", smem) }
      printf "%-22s %-20s %5s %12s %12s %8s %8s\n", file, kernel, regs, stores, loads, smem, stack
    }'
done
exit $status
