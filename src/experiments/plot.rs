//! Plots as SVG and PNG, drawn by plotters with a vendored font (the machines mprm runs on have
//! no system fonts, and a plot without labels is no use).
//!
//! Plot specs are plain data (serde), so `mprm report` can redraw every figure from the saved
//! results without rerunning anything.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{Error, Result};
use crate::output::{TempPath, write_text};

static FONT: &[u8] = include_bytes!("fonts/DejaVuSans.ttf");

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .map_err(|_| ())
            .expect("the vendored DejaVu Sans is a valid font");
    });
}

/// One line of a line plot.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// Points `(x, y, ci half-width)`; a missing half-width draws no error bar.
    pub points: Vec<(f64, f64, Option<f64>)>,
    /// Draw as a dashed horizontal reference (only the first point's y is used).
    #[serde(default)]
    pub reference: bool,
}

/// A figure.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Plot {
    /// Lines with optional error bars.
    Lines {
        /// Title.
        title: String,
        /// x-axis label.
        x_label: String,
        /// y-axis label.
        y_label: String,
        /// The lines.
        series: Vec<Series>,
    },
    /// A grid of values with a colour scale and the numbers printed in the cells.
    Heatmap {
        /// Title.
        title: String,
        /// x-axis label.
        x_label: String,
        /// y-axis label.
        y_label: String,
        /// Column labels (x).
        x_ticks: Vec<String>,
        /// Row labels (y).
        y_ticks: Vec<String>,
        /// `values[row][col]`; missing cells are left blank.
        values: Vec<Vec<Option<f64>>>,
    },
}

/// Twelve distinguishable colours (enough for every selector of the comparison).
const PALETTE: [RGBColor; 12] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(0, 0, 128),
    RGBColor(0, 0, 0),
];

const SIZE: (u32, u32) = (900, 560);

impl Plot {
    /// Writes `stem.svg` and `stem.png` into `dir` (atomically).
    pub fn save(&self, dir: &Path, stem: &str) -> Result<()> {
        register_font();
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
            self.draw(&root)?;
        }
        write_text(dir.join(format!("{stem}.svg")), &svg)?;
        // The bitmap backend picks the encoder from the extension, so the temporary name must
        // still end in `.png`.
        let png = TempPath::for_dest(dir.join(format!("{stem}.png")))?;
        let tmp_png = png.tmp().with_extension("tmp.png");
        {
            let root = BitMapBackend::new(&tmp_png, SIZE).into_drawing_area();
            self.draw(&root)?;
        }
        std::fs::rename(&tmp_png, png.tmp()).map_err(|e| Error::io(&tmp_png, e))?;
        png.commit()
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let err = |e: &dyn std::fmt::Display| Error::Other(format!("plot: {e}"));
        root.fill(&WHITE).map_err(|e| err(&e))?;
        match self {
            Plot::Lines {
                title,
                x_label,
                y_label,
                series,
            } => {
                let all: Vec<&(f64, f64, Option<f64>)> =
                    series.iter().flat_map(|s| &s.points).collect();
                let finite = |v: f64| v.is_finite();
                let xs = all.iter().map(|p| p.0).filter(|v| finite(*v));
                let (x0, x1) = min_max(xs);
                let ys = all.iter().flat_map(|p| {
                    let e = p.2.filter(|e| e.is_finite()).unwrap_or(0.0);
                    [p.1 - e, p.1 + e]
                });
                let (y0, y1) = min_max(ys.filter(|v| finite(*v)));
                let pad_x = ((x1 - x0) * 0.03).max(1e-9);
                let pad_y = ((y1 - y0) * 0.08).max(1e-9);
                let mut chart = ChartBuilder::on(root)
                    .caption(title, ("sans-serif", 22))
                    .margin(14)
                    .x_label_area_size(44)
                    .y_label_area_size(64)
                    .build_cartesian_2d((x0 - pad_x)..(x1 + pad_x), (y0 - pad_y)..(y1 + pad_y))
                    .map_err(|e| err(&e))?;
                chart
                    .configure_mesh()
                    .x_desc(x_label.as_str())
                    .y_desc(y_label.as_str())
                    .label_style(("sans-serif", 14))
                    .draw()
                    .map_err(|e| err(&e))?;
                for (i, s) in series.iter().enumerate() {
                    let color = PALETTE[i % PALETTE.len()];
                    let style = ShapeStyle::from(&color).stroke_width(2);
                    if s.reference {
                        let y = s.points.first().map_or(f64::NAN, |p| p.1);
                        chart
                            .draw_series(DashedLineSeries::new(
                                vec![(x0 - pad_x, y), (x1 + pad_x, y)],
                                8,
                                5,
                                style,
                            ))
                            .map_err(|e| err(&e))?
                            .label(s.name.as_str())
                            .legend(move |(x, y)| {
                                PathElement::new(vec![(x, y), (x + 18, y)], color)
                            });
                        continue;
                    }
                    let pts: Vec<(f64, f64)> = s.points.iter().map(|p| (p.0, p.1)).collect();
                    chart
                        .draw_series(LineSeries::new(pts.clone(), style))
                        .map_err(|e| err(&e))?
                        .label(s.name.as_str())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
                    chart
                        .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                        .map_err(|e| err(&e))?;
                    chart
                        .draw_series(
                            s.points
                                .iter()
                                .filter_map(|&(x, y, e)| {
                                    e.filter(|e| e.is_finite()).map(|e| (x, y, e))
                                })
                                .map(|(x, y, e)| {
                                    ErrorBar::new_vertical(x, y - e, y, y + e, color, 6)
                                }),
                        )
                        .map_err(|e| err(&e))?;
                }
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::LowerRight)
                    .label_font(("sans-serif", 13))
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .draw()
                    .map_err(|e| err(&e))?;
            }
            Plot::Heatmap {
                title,
                x_label,
                y_label,
                x_ticks,
                y_ticks,
                values,
            } => {
                let (lo, hi) = min_max(
                    values
                        .iter()
                        .flatten()
                        .filter_map(|v| *v)
                        .filter(|v| v.is_finite()),
                );
                let (nx, ny) = (x_ticks.len(), y_ticks.len());
                if nx == 0 || ny == 0 {
                    root.present().map_err(|e| err(&e))?;
                    return Ok(());
                }
                // Segmented axes put each tick label at the centre of its cell, not on an edge;
                // the row labels get as much room as the longest one needs.
                let longest = y_ticks.iter().map(|t| t.chars().count()).max().unwrap_or(0);
                let mut chart = ChartBuilder::on(root)
                    .caption(title, ("sans-serif", 22))
                    .margin(14)
                    .x_label_area_size(50)
                    .y_label_area_size((30 + 7 * longest).clamp(60, 260) as u32)
                    .build_cartesian_2d((0..nx - 1).into_segmented(), (0..ny - 1).into_segmented())
                    .map_err(|e| err(&e))?;
                let label = |ticks: &[String], v: &SegmentValue<usize>| match v {
                    SegmentValue::CenterOf(i) => ticks.get(*i).cloned().unwrap_or_default(),
                    _ => String::new(),
                };
                chart
                    .configure_mesh()
                    .disable_mesh()
                    .x_desc(x_label.as_str())
                    .y_desc(y_label.as_str())
                    .x_labels(nx)
                    .y_labels(ny)
                    .x_label_formatter(&|v| label(x_ticks, v))
                    .y_label_formatter(&|v| label(y_ticks, v))
                    .label_style(("sans-serif", 13))
                    .draw()
                    .map_err(|e| err(&e))?;
                let at = SegmentValue::Exact;
                for (r, row) in values.iter().enumerate() {
                    for (c, v) in row.iter().enumerate() {
                        let Some(v) = v.filter(|v| v.is_finite()) else {
                            continue;
                        };
                        let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
                        let color = ViridisRGB::get_color(t as f32);
                        chart
                            .draw_series(std::iter::once(Rectangle::new(
                                [(at(c), at(r)), (at(c + 1), at(r + 1))],
                                color.filled(),
                            )))
                            .map_err(|e| err(&e))?;
                        let text_color = if t > 0.6 { BLACK } else { WHITE };
                        chart
                            .draw_series(std::iter::once(Text::new(
                                format!("{v:.3}"),
                                (SegmentValue::CenterOf(c), SegmentValue::CenterOf(r)),
                                ("sans-serif", 13)
                                    .into_font()
                                    .color(&text_color)
                                    .pos(Pos::new(HPos::Center, VPos::Center)),
                            )))
                            .map_err(|e| err(&e))?;
                    }
                }
            }
        }
        root.present().map_err(|e| err(&e))?;
        Ok(())
    }
}

fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_svg_and_png_deterministically() {
        let dir = tempfile::tempdir().unwrap();
        let plot = Plot::Lines {
            title: "curve".into(),
            x_label: "budget".into(),
            y_label: "F1".into(),
            series: vec![
                Series {
                    name: "bis".into(),
                    points: vec![(0.1, 0.6, Some(0.01)), (0.25, 0.65, None)],
                    reference: false,
                },
                Series {
                    name: "full".into(),
                    points: vec![(0.0, 0.64, None)],
                    reference: true,
                },
            ],
        };
        plot.save(dir.path(), "a").unwrap();
        plot.save(dir.path(), "b").unwrap();
        let svg = std::fs::read_to_string(dir.path().join("a.svg")).unwrap();
        assert!(svg.contains("budget") && svg.contains("curve"));
        assert_eq!(
            svg,
            std::fs::read_to_string(dir.path().join("b.svg")).unwrap()
        );
        let png = std::fs::read(dir.path().join("a.png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        assert_eq!(png, std::fs::read(dir.path().join("b.png")).unwrap());
        let heat = Plot::Heatmap {
            title: "h".into(),
            x_label: "R".into(),
            y_label: "mix".into(),
            x_ticks: vec!["a".into(), "b".into()],
            y_ticks: vec!["c".into()],
            values: vec![vec![Some(1.0), None]],
        };
        heat.save(dir.path(), "h").unwrap();
        assert!(dir.path().join("h.png").exists());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 6, "{names:?}");
    }
}
