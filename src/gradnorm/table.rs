//! Per-rollout score tables: one row per rollout, written as CSV, Parquet or safetensors.
//!
//! `mprm gradnorm` writes the rollout's identity (index, source, line), its label statistics
//! (n_steps, p_pos, R, BIS) and every gradient statistic; the format follows the output file's
//! extension. Floats are written in full precision (shortest round-trip text in CSV), and every
//! file is written atomically.
//!
//! * CSV: a header row, comma-separated, strings quoted when they need it.
//! * Parquet: one REQUIRED column per table column (DOUBLE, FLOAT, INT64, or UTF8 BYTE_ARRAY),
//!   uncompressed, row groups of 2²⁰ rows.
//! * safetensors: one 1-D tensor per numeric column; a string column becomes I32 codes plus a
//!   JSON list `<name>_values` in the metadata; `projected` is one [R, k] F32 tensor.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use parquet::basic::{ConvertedType, Repetition, Type as PhysicalType};
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, FloatType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;
use safetensors::Dtype;

use crate::data::features::FeatureBundle;
use crate::data::label_stats::LabelStats;
use crate::data::safetensors_io::{SafetensorsWriter, TensorSpec};
use crate::error::{Error, IoContext, Result};
use crate::output::{AtomicFile, push_csv_field};

use super::RolloutGradStats;

/// One column's values.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Integers.
    I64(Vec<i64>),
    /// Doubles.
    F64(Vec<f64>),
    /// Floats.
    F32(Vec<f32>),
    /// Strings.
    Str(Vec<String>),
}

impl Column {
    fn len(&self) -> usize {
        match self {
            Column::I64(v) => v.len(),
            Column::F64(v) => v.len(),
            Column::F32(v) => v.len(),
            Column::Str(v) => v.len(),
        }
    }

    fn cell(&self, row: usize, out: &mut String) {
        use std::fmt::Write as _;
        match self {
            Column::I64(v) => write!(out, "{}", v[row]),
            // Debug is the shortest text that parses back to the same float, with an exponent
            // for very small or large values (Display would spell out hundreds of zeros).
            Column::F64(v) => write!(out, "{:?}", v[row]),
            Column::F32(v) => write!(out, "{:?}", v[row]),
            Column::Str(v) => {
                push_csv_field(out, &v[row]);
                Ok(())
            }
        }
        .expect("writing to a String cannot fail");
    }
}

/// Named columns of equal length, plus an optional [R, k] matrix of projections.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    /// Columns in output order.
    pub columns: Vec<(String, Column)>,
    /// k and the row-major [R, k] projections (`proj_0 … proj_{k−1}` in CSV and Parquet).
    pub projected: Option<(usize, Vec<f32>)>,
}

impl Table {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, |(_, c)| c.len())
    }

    /// Columns with the projections split into `proj_i` columns.
    fn flat_columns(&self) -> Vec<(String, Column)> {
        let mut cols = self.columns.clone();
        if let Some((k, v)) = &self.projected {
            for i in 0..*k {
                cols.push((
                    format!("proj_{i}"),
                    Column::F32(v.iter().skip(i).step_by(*k).copied().collect()),
                ));
            }
        }
        cols
    }

    /// Writes the table in the format named by `path`'s extension (csv, parquet, safetensors).
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        match TableFormat::of(path)? {
            TableFormat::Csv => self.write_csv(path),
            TableFormat::Parquet => self.write_parquet(path),
            TableFormat::Safetensors => self.write_safetensors(path),
        }
    }

    /// Writes CSV with a header row.
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        let cols = self.flat_columns();
        let mut file = AtomicFile::create(path)?;
        let header: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
        let mut line = header.join(",");
        line.push('\n');
        file.write_all(line.as_bytes()).at(path)?;
        for row in 0..self.rows() {
            line.clear();
            for (i, (_, c)) in cols.iter().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                c.cell(row, &mut line);
            }
            line.push('\n');
            file.write_all(line.as_bytes()).at(path)?;
        }
        file.commit()
    }

    /// Writes an uncompressed Parquet file with one REQUIRED column per table column.
    pub fn write_parquet(&self, path: &Path) -> Result<()> {
        let pq = |e: parquet::errors::ParquetError| {
            Error::Other(format!("{}: writing parquet: {e}", path.display()))
        };
        let cols = self.flat_columns();
        let fields = cols
            .iter()
            .map(|(name, c)| {
                let (physical, converted) = match c {
                    Column::I64(_) => (PhysicalType::INT64, ConvertedType::NONE),
                    Column::F64(_) => (PhysicalType::DOUBLE, ConvertedType::NONE),
                    Column::F32(_) => (PhysicalType::FLOAT, ConvertedType::NONE),
                    Column::Str(_) => (PhysicalType::BYTE_ARRAY, ConvertedType::UTF8),
                };
                Type::primitive_type_builder(name, physical)
                    .with_repetition(Repetition::REQUIRED)
                    .with_converted_type(converted)
                    .build()
                    .map(Arc::new)
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(pq)?;
        let schema = Type::group_type_builder("mprm_rollouts")
            .with_fields(fields)
            .build()
            .map_err(pq)?;
        let props = Arc::new(WriterProperties::builder().build());
        let file = AtomicFile::create(path)?;
        let mut writer = SerializedFileWriter::new(file, Arc::new(schema), props).map_err(pq)?;
        const GROUP: usize = 1 << 20;
        let rows = self.rows();
        for start in (0..rows.max(1)).step_by(GROUP) {
            let end = (start + GROUP).min(rows);
            let mut group = writer.next_row_group().map_err(pq)?;
            for (_, c) in &cols {
                let mut col = group.next_column().map_err(pq)?.ok_or_else(|| {
                    Error::Other("parquet schema has fewer columns than the table".into())
                })?;
                match c {
                    Column::I64(v) => col
                        .typed::<Int64Type>()
                        .write_batch(&v[start..end], None, None)
                        .map(drop),
                    Column::F64(v) => col
                        .typed::<DoubleType>()
                        .write_batch(&v[start..end], None, None)
                        .map(drop),
                    Column::F32(v) => col
                        .typed::<FloatType>()
                        .write_batch(&v[start..end], None, None)
                        .map(drop),
                    Column::Str(v) => {
                        let bytes: Vec<ByteArray> = v[start..end]
                            .iter()
                            .map(|s| ByteArray::from(s.as_str()))
                            .collect();
                        col.typed::<ByteArrayType>()
                            .write_batch(&bytes, None, None)
                            .map(drop)
                    }
                }
                .map_err(pq)?;
                col.close().map_err(pq)?;
            }
            group.close().map_err(pq)?;
        }
        writer.into_inner().map_err(pq)?.commit()
    }

    /// Writes one tensor per column (see the module docs for strings and projections).
    pub fn write_safetensors(&self, path: &Path) -> Result<()> {
        let r = self.rows();
        let mut specs = Vec::new();
        let mut meta = BTreeMap::new();
        let mut codes: Vec<(String, Vec<i32>)> = Vec::new();
        for (name, c) in &self.columns {
            let dtype = match c {
                Column::I64(_) => Dtype::I64,
                Column::F64(_) => Dtype::F64,
                Column::F32(_) => Dtype::F32,
                Column::Str(v) => {
                    let mut values: Vec<String> = Vec::new();
                    let mut index = BTreeMap::new();
                    let code = v
                        .iter()
                        .map(|s| {
                            *index.entry(s.clone()).or_insert_with(|| {
                                values.push(s.clone());
                                values.len() as i32 - 1
                            })
                        })
                        .collect();
                    meta.insert(
                        format!("{name}_values"),
                        serde_json::to_string(&values).expect("strings serialise"),
                    );
                    codes.push((name.clone(), code));
                    Dtype::I32
                }
            };
            specs.push(TensorSpec::new(name, dtype, &[r]));
        }
        if let Some((k, _)) = &self.projected {
            specs.push(TensorSpec::new("projected", Dtype::F32, &[r, *k]));
        }
        let mut w = SafetensorsWriter::create(path, &specs, &meta)?;
        for (name, c) in &self.columns {
            match c {
                Column::I64(v) => w.write_all(name, v)?,
                Column::F64(v) => w.write_all(name, v)?,
                Column::F32(v) => w.write_all(name, v)?,
                Column::Str(_) => {
                    let (_, code) = codes.iter().find(|(n, _)| n == name).expect("coded above");
                    w.write_all(name, code)?
                }
            }
        }
        if let Some((_, v)) = &self.projected {
            w.write_all("projected", v)?;
        }
        w.finish()
    }
}

/// The file formats a [`Table`] can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    /// `.csv`
    Csv,
    /// `.parquet`
    Parquet,
    /// `.safetensors`
    Safetensors,
}

impl TableFormat {
    /// The format named by `path`'s extension; an error naming the file otherwise. Commands call
    /// this before any work, so a typo in `--out` costs nothing.
    pub fn of(path: &Path) -> Result<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("csv") => Ok(TableFormat::Csv),
            Some("parquet") => Ok(TableFormat::Parquet),
            Some("safetensors") => Ok(TableFormat::Safetensors),
            _ => Err(Error::invalid(format!(
                "cannot tell the format of {}: use a .csv, .parquet or .safetensors file",
                path.display()
            ))),
        }
    }
}

/// The `mprm gradnorm` table: identity, label statistics (BIS with `alpha` on the MC scores) and
/// every gradient statistic of `stats`.
pub fn gradnorm_table(bundle: &FeatureBundle, stats: &RolloutGradStats, alpha: f64) -> Table {
    let ids = &stats.rollouts;
    let labels: Vec<LabelStats> = ids
        .iter()
        .map(|&i| {
            let scores: Vec<f64> = bundle.mc_scores()[bundle.rollout_steps(i)]
                .iter()
                .map(|&s| s as f64)
                .collect();
            LabelStats::of(&scores)
        })
        .collect();
    let mut columns = vec![
        (
            "index".to_string(),
            Column::I64(ids.iter().map(|&i| i as i64).collect()),
        ),
        (
            "source".to_string(),
            Column::Str(
                ids.iter()
                    .map(|&i| {
                        bundle
                            .meta()
                            .sources
                            .get(bundle.source()[i] as usize)
                            .cloned()
                            .unwrap_or_else(|| bundle.source()[i].to_string())
                    })
                    .collect(),
            ),
        ),
    ];
    if let Some(line) = bundle.line() {
        columns.push((
            "line".into(),
            Column::I64(ids.iter().map(|&i| line[i] as i64).collect()),
        ));
    }
    columns.push((
        "n_steps".into(),
        Column::I64(stats.n_steps.iter().map(|&n| n as i64).collect()),
    ));
    columns.push((
        "p_pos".into(),
        Column::F64(labels.iter().map(|l| l.p_pos).collect()),
    ));
    columns.push((
        "R".into(),
        Column::F64(labels.iter().map(|l| l.reliability).collect()),
    ));
    columns.push((
        "BIS".into(),
        Column::F64(labels.iter().map(|l| l.bis(alpha)).collect()),
    ));
    for (name, v) in stats.columns() {
        columns.push((name, Column::F64(v.to_vec())));
    }
    Table {
        columns,
        projected: stats.projected.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        Table {
            columns: vec![
                ("index".into(), Column::I64(vec![0, 7])),
                ("source".into(), Column::Str(vec!["a,b".into(), "c".into()])),
                ("x".into(), Column::F64(vec![0.1, -2.5e-12])),
            ],
            projected: Some((2, vec![1.0, 2.0, 3.0, 4.0])),
        }
    }

    #[test]
    fn csv_round_trips_floats_and_quotes_strings() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        sample().write(&p).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(
            text,
            "index,source,x,proj_0,proj_1\n0,\"a,b\",0.1,1.0,2.0\n7,c,-2.5e-12,3.0,4.0\n"
        );
    }

    #[test]
    fn safetensors_keeps_columns_and_codes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.safetensors");
        sample().write(&p).unwrap();
        let f = crate::data::safetensors_io::MappedSafetensors::open(&p).unwrap();
        assert_eq!(
            f.require("x").unwrap().to_f32().unwrap(),
            vec![0.1f32, -2.5e-12]
        );
        assert_eq!(f.require("source").unwrap().to_i64().unwrap(), vec![0, 1]);
        assert_eq!(f.metadata()["source_values"], "[\"a,b\",\"c\"]");
        assert_eq!(f.require("projected").unwrap().shape, vec![2, 2]);
    }

    #[test]
    fn parquet_reads_back() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.parquet");
        sample().write(&p).unwrap();
        let reader = SerializedFileReader::new(std::fs::File::open(&p).unwrap()).unwrap();
        let meta = reader.metadata();
        assert_eq!(meta.file_metadata().num_rows(), 2);
        assert_eq!(meta.file_metadata().schema_descr().num_columns(), 5);
        let rows: Vec<String> = reader
            .get_row_iter(None)
            .unwrap()
            .map(|r| r.unwrap().to_string())
            .collect();
        assert!(rows[0].contains("\"a,b\""), "{}", rows[0]);
        assert!(rows[1].contains("proj_1: 4.0"), "{}", rows[1]);
    }

    #[test]
    fn unknown_extension_is_refused() {
        assert!(sample().write("scores.txt").is_err());
    }
}
