//! Everything mprm reads and writes about rollouts.

pub mod bench;
pub mod features;
pub mod labels;
pub mod pyjson;
pub mod raw;
pub mod rollout;
pub mod safetensors_io;
