#!/usr/bin/env bash
# Races `mprm select bis` against the plain-Python builder (benches/bis_reference.py) on a
# VisualPRM400K-scale raw corpus, side by side in one invocation, and checks that the two
# outputs are byte-identical.
#
#   benches/select.sh [CORPUS_DIR]        (default bench-data/select; generated when missing)
#
# Environment: MPRM (binary, default target/release/mprm), PYTHON (default python3),
# RATIOS (default "0.25 0.1"), ALPHA_FOR_0.1 = 0.2 as in the BIS README.
set -euo pipefail
cd "$(dirname "$0")/.."
MPRM=${MPRM:-target/release/mprm}
PYTHON=${PYTHON:-python3}
DATA=${1:-bench-data/select}
RATIOS=${RATIOS:-"0.25 0.1"}
export MPRM_NO_PROGRESS=1

[ -x "$MPRM" ] || cargo build --release
if [ ! -d "$DATA/annotations" ]; then
  echo "generating a VisualPRM400K-scale corpus in $DATA (mprm synth --scale 1)" >&2
  "$MPRM" synth --out "$DATA" --scale 1 --dim 8 --seed 1 >&2
fi
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(free -g | awk '/Mem:/{print $2}') GiB"
echo "corpus: $(ls "$DATA"/annotations/*.jsonl | wc -l) files, $(cat "$DATA"/annotations/*.jsonl | wc -l) lines, $(du -sh "$DATA/annotations" | cut -f1)"
# Warm the page cache once so neither side pays for the first read.
cat "$DATA"/annotations/*.jsonl > /dev/null

measure() { # label, output file, command... → prints "wall_s max_rss_kb"
  local label=$1 out=$2; shift 2
  /usr/bin/time -f "%e %M" -o /tmp/mprm-bench-time "$@" > /dev/null 2>/tmp/mprm-bench-err || {
    echo "$label failed:" >&2; cat /tmp/mprm-bench-err >&2; exit 1; }
  cat /tmp/mprm-bench-time
}

printf '\n| ratio | α | python wall (s) | mprm wall (s) | speed-up | python peak RSS (MiB) | mprm peak RSS (MiB) | RSS ratio | identical |\n'
printf '|---|---|---|---|---|---|---|---|---|\n'
for ratio in $RATIOS; do
  alpha=0.05; [ "$ratio" = "0.1" ] && alpha=0.2
  py_out=$(mktemp /tmp/bis-py.XXXX.jsonl); rs_out=$(mktemp /tmp/bis-rs.XXXX.jsonl)
  read -r py_s py_kb < <(measure python "$py_out" "$PYTHON" benches/bis_reference.py --annotations-dir "$DATA/annotations" --alpha "$alpha" --top-ratio "$ratio" --output "$py_out")
  read -r rs_s rs_kb < <(measure mprm "$rs_out" "$MPRM" select bis --annotations-dir "$DATA/annotations" --alpha "$alpha" --top-ratio "$ratio" --output "$rs_out")
  same=no; cmp -s "$py_out" "$rs_out" && same=yes
  awk -v r="$ratio" -v a="$alpha" -v ps="$py_s" -v rs="$rs_s" -v pk="$py_kb" -v rk="$rs_kb" -v same="$same" \
    'BEGIN { printf "| %s | %s | %.2f | %.2f | %.1f× | %.0f | %.0f | %.1f× | %s |\n", r, a, ps, rs, ps/rs, pk/1024, rk/1024, pk/rk, same }'
  rm -f "$py_out" "$rs_out"
  [ "$same" = yes ] || { echo "outputs differ" >&2; exit 1; }
done
