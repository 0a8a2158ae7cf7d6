//! Training PRM heads on step features with Burn, under the paper's protocol.
//!
//! A run trains one model ([`crate::prm_model::ModelSpec`]: `linear`, `mlp` or `context`) on the step
//! features of a bundle, optionally restricted to a selected subset, for ⌈N/512⌉ AdamW steps
//! per epoch (single pass by default) with warm-up + cosine decay, BCE on hard (`s > τ`), soft,
//! true or explicit labels, global-norm clipping, and the reference's micro-batch-mean loss
//! reduction or the paper's rollout sum. It checkpoints every K steps (Burn record, the head as
//! `head.safetensors`, AdamW state), evaluates on the bench at each checkpoint, and resumes to
//! exactly the run it would have been.
//!
//! * [`config`]: the TOML config.
//! * [`loss`], [`schedule`], [`plan`]: the pieces of the protocol.
//! * [`train_loop`]: the loop, generic over the autodiff backend.
//! * [`checkpoint`]: what is saved and how it is restored.
//! * [`execute`]: a run on a resolved device, through [`crate::device::burn`].
//!
//! The learning rate of the paper (1e-5) is for fine-tuning an 8B model; a head on features needs
//! its own, chosen on the bench's dev split with [`lr_sweep`] (`mprm tune-lr`).

pub mod checkpoint;
pub mod config;
pub mod loss;
pub mod plan;
mod run;
pub mod run_record;
pub mod schedule;
pub mod train_loop;

pub use config::TrainConfig;
pub use run::{LrTrial, RunData, execute, load_data, lr_sweep, lr_trial, run};
pub use train_loop::{ClipAt, EvalLog, RunOptions, StepLog, TrainInputs, TrainOutcome};
