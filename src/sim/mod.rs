//! The calibrated simulator (docs to come).

pub mod calibrate;
pub mod model;
pub mod numeric;
pub mod preset;
pub mod rng;
