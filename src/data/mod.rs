//! Everything mprm reads and writes about rollouts.

pub mod bench;
pub mod convert;
pub mod features;
pub mod fingerprint;
pub mod ids;
pub mod label_stats;
pub mod labels;
pub mod lines;
pub mod prm_line;
pub mod pyjson;
pub mod raw;
pub mod rollout;
pub mod safetensors_io;
pub mod stats;
