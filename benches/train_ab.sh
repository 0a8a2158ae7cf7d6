#!/usr/bin/env bash
# Two builds of `cargo bench --bench train` alternated in one invocation, ROUNDS rounds per head
# (each round: the build's own burn-vs-PyTorch comparison, median of 3). Build the two
# binaries first (`cargo bench --bench train --no-run` at each commit, with CARGO_TARGET_DIR apart)
# and set MPRM_PYTHON to a Python with torch.
#
#   benches/train_ab.sh OLD_BENCH_BINARY NEW_BENCH_BINARY [ROUNDS]
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 OLD_BENCH_BINARY NEW_BENCH_BINARY [ROUNDS]" >&2
  exit 2
fi
old=$1
new=$2
rounds=${3:-3}
export MPRM_BENCH_REPEATS=${MPRM_BENCH_REPEATS:-3}
for head in mlp linear; do
  for r in $(seq "$rounds"); do
    for which in old new; do
      bin=$old
      [ "$which" = new ] && bin=$new
      MPRM_BENCH_HEAD=$head "$bin" 2>&1 | grep -E "median|ratio" | sed "s/^/$head $which round $r: /"
    done
  done
done
