#!/usr/bin/env bash
# Two builds of the linear-head CPU gradient engine side by side in one invocation, with this
# machine's memory-read bandwidth before and after: for speed work on the engine, where a ratio
# between builds measured minutes apart on a shared machine would mean little.
#
#   benches/gradnorm_ab.sh OLD_MPRM NEW_MPRM BUNDLE...
# Build the old binary from a worktree of the older commit with its own CARGO_TARGET_DIR.
# Environment: REPEATS (timed runs per measurement, default 5), ROUNDS (alternations, default 2).
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 OLD_MPRM NEW_MPRM BUNDLE..." >&2
  exit 2
fi
old="$1" new="$2"
shift 2
export MPRM_NO_PROGRESS=1
repeats="${REPEATS:-5}" rounds="${ROUNDS:-2}"
for bundle in "$@"; do
  echo "== $bundle"
  "$new" bench membw --device cpu --mib 2048 --repeats 5
  for round in $(seq "$rounds"); do
    for which in old new; do
      bin="$old"
      [ "$which" = new ] && bin="$new"
      printf '%s round %s: ' "$which" "$round"
      "$bin" bench gradnorm --bundle "$bundle" --head linear --at teacher --device cpu \
        --warmup 1 --repeats "$repeats" | tail -1
    done
  done
  "$new" bench membw --device cpu --mib 2048 --repeats 5
done
