//! How the engines split work: the ghost-norm rule for the mlp's first layer and chunks of
//! rollouts that fit a memory budget.

use std::ops::Range;

/// True when the ghost form ⟨DDᵀ, HHᵀ⟩ is cheaper than materialising the W₁ gradient for a
/// rollout of `n` steps: T < d·h/(d + h) (gradient-methods §3.1, time rule).
pub fn ghost_is_cheaper(n: usize, dim: usize, hidden: usize) -> bool {
    (n as f64) < ghost_limit(dim, hidden)
}

/// The step count below which the ghost form is used: d·h/(d + h).
pub fn ghost_limit(dim: usize, hidden: usize) -> f64 {
    let (d, h) = (dim as f64, hidden as f64);
    d * h / (d + h)
}

/// Splits consecutive rollouts of lengths `lens` into chunks of at most `budget` bytes and
/// `max_steps` steps (a rollout costs `n · per_step + per_rollout` bytes); a rollout larger
/// than the budget gets a chunk of its own. Used by the CUDA engine to stream bundles larger
/// than device memory.
pub fn chunk_rollouts(
    lens: impl IntoIterator<Item = usize>,
    per_step: usize,
    per_rollout: usize,
    budget: usize,
    max_steps: usize,
) -> Vec<Range<usize>> {
    let mut chunks = Vec::new();
    let (mut start, mut steps, mut bytes, mut count) = (0, 0usize, 0usize, 0usize);
    for (k, n) in lens.into_iter().enumerate() {
        let add = n * per_step + per_rollout;
        if k > start && (steps + n > max_steps || bytes + add > budget) {
            chunks.push(start..k);
            start = k;
            steps = 0;
            bytes = 0;
        }
        steps += n;
        bytes += add;
        count = k + 1;
    }
    if start < count {
        chunks.push(start..count);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_respect_the_budget_and_cover_every_rollout() {
        let lens = [3, 1, 4, 1, 5, 9, 2, 6];
        // 10 bytes per step, 1 per rollout, 60-byte budget.
        let chunks = chunk_rollouts(lens, 10, 1, 60, usize::MAX);
        assert_eq!(chunks, vec![0..2, 2..4, 4..5, 5..6, 6..7, 7..8]);
        // A step cap splits too; an oversized rollout still gets its own chunk.
        assert_eq!(
            chunk_rollouts(lens, 10, 1, 1000, 9),
            vec![0..4, 4..5, 5..6, 6..8]
        );
        assert_eq!(
            chunk_rollouts([50, 1], 10, 0, 60, usize::MAX),
            vec![0..1, 1..2]
        );
        assert!(chunk_rollouts([], 10, 1, 60, 9).is_empty());
    }

    #[test]
    fn ghost_rule_matches_reference_example() {
        // §3.3: T = 20, d = 4096, h = 1024 → ghost (limit ≈ 819).
        assert!(ghost_is_cheaper(20, 4096, 1024));
        // Tiny layers: d = h = 2 → limit 1, so even one step uses the direct form.
        assert!(!ghost_is_cheaper(1, 2, 2));
    }
}
