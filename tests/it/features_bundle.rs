//! The features bundle format: one test per validation rule, each asserting that the error
//! names the file and the offending tensor, plus a round trip of a valid file.
//!
//! Broken files are written tensor by tensor with the low-level safetensors writer, the way a
//! foreign exporter might produce them; the bundle writer itself never writes an invalid shape.

use std::collections::BTreeMap;
use std::path::Path;

use mprm::Error;
use mprm::data::features::FeatureBundle;
use mprm::data::safetensors_io::{SafetensorsWriter, TensorSpec};
use safetensors::Dtype;

/// One tensor of a bundle under construction: dtype, shape, little-endian bytes.
#[derive(Clone)]
struct Raw {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

fn f32s(shape: &[usize], v: &[f32]) -> Raw {
    Raw {
        dtype: Dtype::F32,
        shape: shape.to_vec(),
        bytes: bytemuck::cast_slice(v).to_vec(),
    }
}

fn i64s(v: &[i64]) -> Raw {
    Raw {
        dtype: Dtype::I64,
        shape: vec![v.len()],
        bytes: bytemuck::cast_slice(v).to_vec(),
    }
}

fn i32s(v: &[i32]) -> Raw {
    Raw {
        dtype: Dtype::I32,
        shape: vec![v.len()],
        bytes: bytemuck::cast_slice(v).to_vec(),
    }
}

/// A valid bundle: 3 rollouts (2 + 1 + 3 steps), d = 2, two sources, with teacher tensors.
fn valid() -> BTreeMap<&'static str, Raw> {
    let feats: Vec<f32> = (0..12).map(|i| i as f32 * 0.25 - 1.0).collect();
    BTreeMap::from([
        ("features", f32s(&[6, 2], &feats)),
        ("offsets", i64s(&[0, 2, 3, 6])),
        ("mc_scores", f32s(&[6], &[1.0, 0.0625, 0.0, 1.0, 0.5, 0.0])),
        ("source", i32s(&[0, 1, 1])),
        ("line", i64s(&[0, 0, 1])),
        ("labels", f32s(&[6], &[1.0, 1.0, 0.0, 1.0, 1.0, 0.0])),
        ("teacher_q", f32s(&[6], &[0.9, 0.4, 0.2, 0.95, 0.7, 0.1])),
        (
            "true_correct",
            Raw {
                dtype: Dtype::U8,
                shape: vec![6],
                bytes: vec![1, 0, 0, 1, 1, 0],
            },
        ),
        ("w_star", f32s(&[2], &[0.5, -2.0])),
        ("b_star", f32s(&[1], &[0.25])),
    ])
}

fn write(path: &Path, tensors: &BTreeMap<&'static str, Raw>) {
    let specs: Vec<TensorSpec> = tensors
        .iter()
        .map(|(name, t)| TensorSpec::new(name, t.dtype, &t.shape))
        .collect();
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), "mprm-features/1".to_string());
    meta.insert("sources".to_string(), r#"["a", "b"]"#.to_string());
    let mut w = SafetensorsWriter::create(path, &specs, &meta).unwrap();
    for (name, t) in tensors {
        w.write(name, 0, &t.bytes).unwrap();
    }
    w.finish().unwrap();
}

/// Writes `tensors`, opens the file, and checks the error names `tensor` and the file.
fn rejects(tensors: BTreeMap<&'static str, Raw>, tensor: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");
    write(&path, &tensors);
    let err = FeatureBundle::open(&path).expect_err("an invalid bundle must be rejected");
    match &err {
        Error::Bundle {
            path: p, tensor: t, ..
        } => {
            assert_eq!(t, tensor, "wrong tensor blamed: {err}");
            assert_eq!(p, &path);
        }
        other => panic!("expected a bundle error naming `{tensor}`, got {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("bad.safetensors") && msg.contains(tensor),
        "{msg}"
    );
    msg
}

fn with(name: &'static str, raw: Raw) -> BTreeMap<&'static str, Raw> {
    let mut t = valid();
    t.insert(name, raw);
    t
}

#[test]
fn valid_bundle_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.safetensors");
    write(&path, &valid());
    let b = FeatureBundle::open(&path).unwrap();
    assert_eq!((b.n_rollouts(), b.n_steps(), b.dim()), (3, 6, 2));
    assert_eq!(b.rollout_steps(2), 3..6);
    assert_eq!(b.step_rows(5..6).to_f32_vec(), vec![1.5, 1.75]);
    assert_eq!(b.source_name(1), "b");
    // Saving and reopening gives the same content.
    let again = dir.path().join("again.safetensors");
    b.save(&again).unwrap();
    let c = FeatureBundle::open(&again).unwrap();
    assert_eq!(c.features().to_f32_vec(), b.features().to_f32_vec());
    assert_eq!(c.offsets(), b.offsets());
    assert_eq!(c.mc_scores(), b.mc_scores());
    assert_eq!(c.labels(), b.labels());
    assert_eq!(c.teacher(), b.teacher());
    assert_eq!(c.line(), b.line());
}

#[test]
fn features_must_be_a_float_matrix() {
    rejects(with("features", f32s(&[12], &[0.0; 12])), "features");
    rejects(with("features", i32s(&[0; 12])), "features");
}

#[test]
fn offsets_must_start_at_zero() {
    let msg = rejects(with("offsets", i64s(&[1, 2, 3, 6])), "offsets");
    assert!(msg.contains("starts at 1"), "{msg}");
}

#[test]
fn offsets_must_not_decrease() {
    let msg = rejects(with("offsets", i64s(&[0, 3, 2, 6])), "offsets");
    assert!(msg.contains("decreases"), "{msg}");
}

#[test]
fn offsets_must_end_at_the_step_count() {
    let msg = rejects(with("offsets", i64s(&[0, 2, 3, 5])), "offsets");
    assert!(msg.contains("expected S = 6"), "{msg}");
}

#[test]
fn offsets_must_not_be_negative() {
    rejects(with("offsets", i64s(&[0, -2, 3, 6])), "offsets");
}

#[test]
fn scores_need_one_entry_per_step() {
    rejects(with("mc_scores", f32s(&[5], &[1.0; 5])), "mc_scores");
}

#[test]
fn features_must_not_hold_nan() {
    let mut feats = vec![0.5f32; 12];
    feats[7] = f32::NAN;
    let msg = rejects(with("features", f32s(&[6, 2], &feats)), "features");
    assert!(msg.contains("step 3"), "{msg}");
}

#[test]
fn scores_must_not_hold_nan() {
    rejects(
        with(
            "mc_scores",
            f32s(&[6], &[1.0, f32::NAN, 0.0, 1.0, 0.5, 0.0]),
        ),
        "mc_scores",
    );
}

#[test]
fn scores_must_lie_in_the_unit_interval() {
    let msg = rejects(
        with("mc_scores", f32s(&[6], &[1.0, 0.5, 1.0625, 1.0, 0.5, 0.0])),
        "mc_scores",
    );
    assert!(msg.contains("step 2"), "{msg}");
    rejects(
        with("mc_scores", f32s(&[6], &[1.0, 0.5, -0.0625, 1.0, 0.5, 0.0])),
        "mc_scores",
    );
}

#[test]
fn source_indices_must_name_a_source() {
    let msg = rejects(with("source", i32s(&[0, 2, 1])), "source");
    assert!(msg.contains("rollout 1"), "{msg}");
    rejects(with("source", i32s(&[0, -1, 1])), "source");
}

#[test]
fn source_needs_one_entry_per_rollout() {
    rejects(with("source", i32s(&[0, 1])), "source");
}

#[test]
fn required_tensors_must_be_present() {
    for name in ["features", "offsets", "mc_scores", "source"] {
        let mut t = valid();
        t.remove(name);
        let msg = rejects(t, name);
        assert!(msg.contains("missing"), "{msg}");
    }
}

#[test]
fn optional_tensors_are_checked_when_present() {
    rejects(with("line", i64s(&[0, 1])), "line");
    rejects(
        with("labels", f32s(&[6], &[1.0, 2.0, 0.0, 1.0, 1.0, 0.0])),
        "labels",
    );
    rejects(
        with("teacher_q", f32s(&[6], &[0.9, 1.4, 0.2, 0.95, 0.7, 0.1])),
        "teacher_q",
    );
    rejects(with("w_star", f32s(&[3], &[0.5, -2.0, 1.0])), "w_star");
    rejects(
        with(
            "true_correct",
            Raw {
                dtype: Dtype::U8,
                shape: vec![6],
                bytes: vec![1, 0, 2, 1, 1, 0],
            },
        ),
        "true_correct",
    );
    let mut t = valid();
    t.remove("true_correct");
    rejects(t, "true_correct");
}

#[test]
fn a_rejected_bundle_is_an_error_not_a_panic_for_garbage_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.safetensors");
    std::fs::write(&path, b"not a safetensors file at all").unwrap();
    let err = FeatureBundle::open(&path).unwrap_err();
    assert!(matches!(err, Error::Bundle { .. }), "{err}");
    assert!(err.to_string().contains("garbage.safetensors"));
}

#[test]
fn a_renamed_tensor_is_named_with_the_expected_name() {
    for (from, to, hint) in [
        ("line", "lines", "did you mean `line`?"),
        ("teacher_q", "teacher", "did you mean `teacher_q`?"),
        ("labels", "label", "did you mean `labels`?"),
    ] {
        let mut t = valid();
        let raw = t.remove(from).unwrap();
        t.insert(to, raw);
        let msg = rejects(t, to);
        assert!(msg.contains("not a features-bundle tensor"), "{msg}");
        assert!(msg.contains(hint), "{msg}");
        assert!(
            msg.contains("`features`, `offsets`, `mc_scores`, `source`, `line`, `labels`, `teacher_q`, `true_correct`, `w_star`, `b_star`"),
            "{msg}"
        );
    }
    // A name like no known one gets the list without a guess.
    let msg = rejects(with("extra", f32s(&[1], &[0.0])), "extra");
    assert!(!msg.contains("did you mean"), "{msg}");
}

/// Writes a safetensors file by hand: `header` JSON, then `data_len` zero bytes.
fn raw_file(path: &Path, header: &str, data_len: usize) {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(std::iter::repeat_n(0u8, data_len));
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_bad_header_entry_names_its_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hdr.safetensors");
    let ok = r#""features": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}"#;
    for (entry, data_len, tensor, reason) in [
        (
            r#""offsets": {"dtype": "I64", "shape": [3], "data_offsets": [16, 32]}"#,
            32,
            "offsets",
            "shape [3] of I64 needs 24 bytes but data_offsets [16, 32] span 16",
        ),
        (
            r#""offsets": {"dtype": "I65", "shape": [2], "data_offsets": [16, 32]}"#,
            32,
            "offsets",
            "unknown variant `I65`",
        ),
        (
            r#""offsets": {"dtype": "I64", "shape": [2], "data_offsets": [16, 32]}"#,
            24,
            "offsets",
            "data_offsets [16, 32] run past the end of the data (24 bytes)",
        ),
        (
            r#""offsets": {"dtype": "I64", "shape": [2], "data_offsets": [24, 40]}"#,
            40,
            "offsets",
            "data_offsets [24, 40] leave a gap after tensor `features`, which ends at 16",
        ),
        (
            r#""offsets": {"dtype": "I64", "shape": [2], "data_offsets": [8, 24]}"#,
            24,
            "offsets",
            "data_offsets [8, 24] overlap after tensor `features`, which ends at 16",
        ),
    ] {
        raw_file(&path, &format!("{{{ok}, {entry}}}"), data_len);
        let err = FeatureBundle::open(&path).unwrap_err();
        match &err {
            Error::Bundle { tensor: t, .. } => assert_eq!(t, tensor, "{err}"),
            other => panic!("expected a bundle error, got {other}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains("hdr.safetensors: tensor `offsets`: header entry:")
                && msg.contains(reason),
            "{msg}"
        );
    }
    // Extra bytes after the last tensor are the file's fault, not a tensor's.
    raw_file(&path, &format!("{{{ok}}}"), 20);
    let msg = FeatureBundle::open(&path).unwrap_err().to_string();
    assert!(
        msg.contains("4 bytes after the last tensor's data (the tensors end at 16 of 20)"),
        "{msg}"
    );
}
