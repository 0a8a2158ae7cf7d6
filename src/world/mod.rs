//! A second world for the theory, where nobody chooses the label noise: a small policy solves
//! procedurally generated multi-step problems, Monte Carlo continuations of its own rollouts
//! give the step scores, and an exact verifier gives the truth.
//!
//! Built so far (the foundation the policy and the annotation stand on):
//! * [`problems`]: four sources of integer problems with a per-problem difficulty knob;
//! * [`verify`]: each step's correctness, the prefix's and the final answer's;
//! * [`tokens`]: the policy's character vocabulary and a trace's text layout, whose step
//!   separator plays the paper's `<prm>` token;
//! * [`traces`]: the policy's training traces, a controllable share with a corrected slip;
//! * [`policy`]: the policy, a small decoder-only transformer in Burn with a key/value cache;
//! * [`sample`]: batched temperature sampling with the cache, one random stream per row;
//! * [`learn`]: the policy's training loop (next-token cross-entropy, AdamW, warm-up + cosine);
//! * [`annotate`]: rollouts parsed and verified, their Monte Carlo scores (VisualPRM400K's
//!   semantics, early stop included) and the policy's hidden state at each step end.
//!
//! * [`engine`]: the policy's forward written directly over its weights, the CPU sampler;
//! * [`train_engine`]: its training written directly over its weights (packed traces, a
//!   hand-written backward pass), the CPU trainer;
//! * [`teacher`]: the linear-logistic teacher fitted to the verifier's labels;
//! * [`build`]: `mprm world`, which runs all of it and writes a corpus folder in `mprm synth`'s
//!   layout (annotations, features, truth, bench, manifest);
//! * [`portrait`]: the world's statistics beside the paper's Table 1 and the simulator's;
//! * [`truth`]: the verifier's view of every step read back (the theory checks use it).

pub mod annotate;
pub mod build;
pub mod engine;
pub mod learn;
pub mod policy;
pub mod portrait;
pub mod problems;
pub mod sample;
pub mod teacher;
pub mod tokens;
pub mod traces;
pub mod train_engine;
pub mod truth;
pub mod verify;

pub use build::{WorldConfig, WorldManifest, build_world};
