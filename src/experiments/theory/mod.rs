//! Theory checks: the paper's formulas against measurements on the simulator, and on the
//! learned-policy world with its linear teacher and verifier standing in for the simulator's
//! truth ([`truth`] says what changes there).
//!
//! The paper (§3, App. F) argues from a teacher–student logistic model that a rollout is
//! informative when its steps are uncertain *and* its labels reliable, but it never measures a
//! gradient. The simulator knows everything the argument assumes (the teacher w*, each step's
//! q*, its true correctness and the success rate r behind its MC score), so each claim can be
//! measured directly, with a confidence interval:
//!
//! | check | module | what is compared |
//! |---|---|---|
//! | Eq. 5 | [`noise`] | per-step ‖g‖² at w* with Y ~ Bernoulli(q*), against q*(1−q*)‖ϕ‖², in bins of q* |
//! | Eq. 6 | [`noise`] | the same with symmetric flips at rate η, against [(1−4η)q*(1−q*)+η]‖ϕ‖² |
//! | Lemma 2 | [`mixture`] | Monte Carlo E[p̂(1−p̂)] against θ_x − A(x)/n, and the bias sandwich [0, θ_x/n] |
//! | Lemma 3 | [`reliability`] | η_eff(k) = I_τ(a+k, b+N−k): monotone, against simulated posteriors and the simulator's own unreliability |
//! | informativeness | [`informativeness`] | which rollout scores predict the useful part a(x) of a rollout's update and its one-step clean dev-loss change |
//! | Finding 6 | [`informativeness`] | the signal S(x) and measured gradient norms against BIS and its parts |
//!
//! Everything is measured on the linear head (the theory's model) whatever `[train].head` says;
//! training runs use the experiment's protocol otherwise. Every random draw comes from a stream
//! keyed by (seed, check, index), so the results are byte-identical across runs and thread
//! counts; the expensive parts (learning-rate tuning, training to the checkpoints, the
//! per-rollout measurements) are cells, so an interrupted run resumes.

pub mod empirical;
pub mod informativeness;
pub mod mixture;
pub mod noise;
pub mod reliability;
mod render;
mod run;
mod summary;
pub mod truth;

pub use informativeness::{Finding6, Informativeness};
pub use mixture::MixtureCheck;
pub use noise::NoiseCheck;
pub use reliability::ReliabilityCheck;
pub use run::{Setup, TeacherView, TheoryConfig, TheoryResults, render, run};
use run::{StreamKind, cell_key, derived_seed, stream};
pub use summary::all_checks as derived_checks;
