//! Rollout selection: per-source quotas over a ranking, exactly as the reference BIS script does
//! it, for any selector.
//!
//! A [`Selector`] only assigns each rollout of a source a key (higher is kept first). Everything
//! else is shared: the quota `max(1, trunc(m · ρ))` computed in f64, a stable descending sort so
//! ties keep file order, the chosen rollouts written back in line order, dropped rollouts never
//! back-filled, and the per-source report. New selectors (gradient-based ones included) plug in by
//! implementing the trait.

pub mod baselines;
pub mod bis;
pub mod pipeline;
mod selector;

pub use selector::{Selector, SourceView, check_ratio, choose_top, quota, select_source};
