//! Every integration test of mprm, in one test binary.
//!
//! One binary links burn, cubecl-cuda, parquet and plotters once instead of once per file, which
//! is most of a cold CI run on two cores. Each former test file is a module here; filter with the
//! module name, e.g. `cargo test --release --features cuda --test it gradnorm::`.
//!
//! Tests that need a CUDA device are `#[ignore = "needs a CUDA device"]`, so on a machine without
//! one they show as ignored rather than passed; the GPU script runs them with `--ignored`.

mod common;
mod train_support;

mod architecture;
mod cli_train;
mod data;
mod experiments_lr;
mod experiments_selection;
mod experiments_theory;
mod features_bundle;
mod first_hour;
mod gradient_runs;
mod gradnorm;
mod hardening;
mod influence;
mod kernels_compile;
mod select;
mod sim_pipeline;
mod sim_synth;
mod train;
mod world;
