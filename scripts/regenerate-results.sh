#!/usr/bin/env bash
# Regenerates the committed results under experiments/results/ (the only command that writes
# there; `mprm experiment` alone writes to the git-ignored experiments/runs/).
#
#   scripts/regenerate-results.sh [main|selection|theory ...]     (default: all three)
#
# Finished cells are reused from each folder's git-ignored cells/ cache, so an interrupted run
# resumes. On 2 cores: main about 1 minute, selection about 4, theory about 6 (after the build).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
names=("$@")
if [ ${#names[@]} -eq 0 ]; then names=(main selection theory); fi
for name in "${names[@]}"; do
  echo "=== $name"
  target/release/mprm experiment "experiments/$name.toml" --out "experiments/results/$name"
done
