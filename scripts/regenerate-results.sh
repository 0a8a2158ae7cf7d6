#!/usr/bin/env bash
# Regenerates the committed results under experiments/results/ (the only command that writes
# there; `mprm experiment` alone writes to the git-ignored experiments/runs/).
#
#   scripts/regenerate-results.sh [main|selection|theory|scorecard|regime|selection-v2|theory-v2|
#                                  mechanism|controls|gradient|policy|policy-controls ...]
#                                                                       (default: all of them)
#
# Finished cells are reused from each folder's git-ignored cells/ cache, so an interrupted run
# resumes. On 2 cores, after the build: main about 2.5 minutes, selection about 4 to 13, theory about 6,
# scorecard about 1 (three corpus draws, plus the simulator manifests of both presets), regime
# about 15, selection-v2 and theory-v2 about 3 times their v1 counterparts (three draws each),
# mechanism about 6 (the interventions once, about 3; the theory checks on three draws), controls
# about 3, gradient about 4 per draw of the linear head and about 3 times that for the MLP head,
# policy about 15 per draw (building the learned-policy world is 14 of them; the theory checks on
# it about 1), policy-controls about 5.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  names=(main selection theory scorecard regime selection-v2 theory-v2 mechanism controls gradient
    policy policy-controls)
fi
for name in "${names[@]}"; do
  echo "=== $name"
  if [ "$name" = selection-v2 ] || [ "$name" = theory-v2 ]; then
    # The v2 simulator's full configs, over three corpus draws.
    for seed in 42 43 44; do
      target/release/mprm experiment "experiments/$name.toml" --corpus-seed "$seed" \
        --out "experiments/results/$name/corpus-$seed"
    done
    continue
  fi
  if [ "$name" = gradient ]; then
    # The gradient-based selectors against BIS, both heads, over three corpus draws.
    for head in linear mlp; do
      for seed in 42 43 44; do
        target/release/mprm experiment "experiments/gradient-$head.toml" --corpus-seed "$seed" \
          --out "experiments/results/gradient/$head/corpus-$seed"
      done
      python3 scripts/across-draws.py "experiments/results/gradient/$head"
    done
    continue
  fi
  if [ "$name" = policy ]; then
    # The selection comparison on the learned-policy world, three world draws; each draw's world
    # manifest (its portrait and the teacher fit) is kept beside its results.
    for seed in 42 43 44; do
      out="experiments/results/policy/corpus-$seed"
      target/release/mprm experiment experiments/policy.toml --corpus-seed "$seed" --out "$out"
      cp "$out/corpus/manifest.json" "$out/world-manifest.json"
    done
    python3 scripts/across-draws.py experiments/results/policy
    continue
  fi
  if [ "$name" = policy-controls ]; then
    # The world's negative control: draw 42's world (its saved policy, so run `policy` first)
    # with the MC counts shuffled within sources.
    target/release/mprm experiment experiments/policy-controls.toml \
      --out experiments/results/policy-controls
    cp experiments/results/policy-controls/corpus/manifest.json \
      experiments/results/policy-controls/world-manifest.json
    continue
  fi
  if [ "$name" = mechanism ] || [ "$name" = controls ]; then
    # The theory checks on three corpus draws; the interventions (which draw their own three
    # corpora) run once, with the first.
    for seed in 42 43 44; do
      skip=()
      [ "$seed" = 42 ] || skip=(--skip-intervention)
      target/release/mprm experiment "experiments/$name.toml" --corpus-seed "$seed" \
        "${skip[@]}" --out "experiments/results/$name/corpus-$seed"
    done
    continue
  fi
  if [ "$name" = scorecard ]; then
    # The simulator's held-out scorecard under both presets (Table 1 setting of the issue:
    # --scale 0.1 --seed 7), then the trained-model targets over three corpus draws.
    tmp=$(mktemp -d)
    for preset in paper v1; do
      target/release/mprm synth --preset "$preset" --scale 0.1 --seed 7 --out "$tmp/$preset" \
        | sed "s|$tmp/||" > "experiments/results/scorecard/synth-$preset.txt"
      cp "$tmp/$preset/manifest.json" "experiments/results/scorecard/synth-$preset-manifest.json"
    done
    rm -rf "$tmp"
    for seed in 42 43 44; do
      target/release/mprm experiment experiments/scorecard.toml --corpus-seed "$seed" \
        --out "experiments/results/scorecard/corpus-$seed"
    done
    continue
  fi
  target/release/mprm experiment "experiments/$name.toml" --out "experiments/results/$name"
done
