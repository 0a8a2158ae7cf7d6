//! Rollout selection: per-source quotas over a ranking, as the reference BIS script does it.

pub mod bis;
pub mod ids;
