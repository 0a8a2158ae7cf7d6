#!/usr/bin/env bash
# Cost of every selector on the VisualPRM400K-scale bundle (565,096 rollouts, d = 256, f32, with a
# bench for the methods that read labelled dev data), as wall time and peak resident memory,
# each as a ratio to BIS measured in the same invocation. Every method runs as `mprm select`
# from the bundle alone, so a method pays for everything it trains (EL2N's proxies, LESS's
# warm-up, the reference run of TracIn / influence / the oracle / the hybrid, each its own).
#
#   benches/gradient_cost.sh [CORPUS_DIR] [OUT_MD]
#       (default bench-data/synth-565k-d256, generated when missing; OUT_MD default stdout)
# Environment: MPRM (binary, default target/release/mprm), HEADS (default "linear mlp"),
# METHODS (default every selector), PROXY_LR (default 0.03), DEVICE (default cpu).
set -euo pipefail
cd "$(dirname "$0")/.."
MPRM=${MPRM:-target/release/mprm}
DATA=${1:-bench-data/synth-565k-d256}
OUT=${2:-/dev/stdout}
HEADS=${HEADS:-"linear mlp"}
METHODS=${METHODS:-"bis grand el2n less tracin influence oracle bis-tracin"}
PROXY_LR=${PROXY_LR:-0.03}
DEVICE=${DEVICE:-cpu}
export MPRM_NO_PROGRESS=1

[ -x "$MPRM" ] || cargo build --release
if [ ! -f "$DATA/features.safetensors" ]; then
  echo "generating the 565,096-rollout corpus in $DATA (mprm synth --scale 1 --dim 256)" >&2
  "$MPRM" synth --out "$DATA" --preset paper --scale 1 --dim 256 --seed 1 >&2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Warm the page cache so that no method pays for the first read of the features.
cat "$DATA/features.safetensors" > /dev/null

{
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(free -g | awk '/Mem:/{print $2}') GiB; device $DEVICE"
echo "bundle: $("$MPRM" bundle-info "$DATA/features.safetensors" | cut -d: -f2- | cut -c1-80)"
echo "settings: top-ratio 0.1, proxy lr $PROXY_LR, batch 512, 1 epoch; GraNd 10 inits; EL2N 4 proxies × 10% of the run; LESS 5% warm-up × 4 epochs, 256 dims; reference run 4 checkpoints; mlp hidden 64"
echo
echo "| head | method | wall (s) | × BIS | peak RSS (MiB) | × BIS |"
echo "|---|---|---|---|---|---|"
} > "$work/table.md"
for head in $HEADS; do
  hidden=()
  [ "$head" = mlp ] && hidden=(--hidden 64)
  bis_s=""; bis_kb=""
  for method in $METHODS; do
    /usr/bin/time -f "%e %M" -o "$work/time" "$MPRM" select "$method" \
      --bundle "$DATA/features.safetensors" --top-ratio 0.1 --ids "$work/ids.tsv" \
      --bench "$DATA/bench.jsonl" --bench-features "$DATA/bench.safetensors" \
      --head "$head" "${hidden[@]}" --proxy-lr "$PROXY_LR" --proxy-batch 512 \
      --device "$DEVICE" --seed 1 > /dev/null 2> "$work/err" \
      || { echo "$method ($head) failed:" >&2; cat "$work/err" >&2; exit 1; }
    read -r secs kb < "$work/time"
    if [ "$method" = bis ]; then bis_s=$secs; bis_kb=$kb; fi
    awk -v h="$head" -v m="$method" -v s="$secs" -v k="$kb" -v bs="$bis_s" -v bk="$bis_kb" \
      'BEGIN { printf "| %s | %s | %.2f | %.1f | %.0f | %.1f |\n", h, m, s, s / (bs > 0.01 ? bs : 0.01), k / 1024, k / bk }' \
      >> "$work/table.md"
    echo "$head $method: ${secs}s ${kb}KiB" >&2
  done
done
cat "$work/table.md" > "$OUT"
