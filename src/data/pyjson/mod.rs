//! Python-compatible JSON: `parse` accepts what `json.loads` accepts, `write` reproduces
//! `json.dumps(..., ensure_ascii=False)` bytes, `python` holds the built-ins around them.

pub mod parse;
pub mod python;
pub mod scan;
pub mod write;
