//! Python-compatible JSON: the writer reproduces `json.dumps(..., ensure_ascii=False)` bytes.

pub mod write;
