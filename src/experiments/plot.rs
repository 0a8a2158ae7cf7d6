//! Plots as SVG and PNG, drawn by plotters with a vendored font (the machines mprm runs on have
//! no system fonts, and a plot without labels is no use).
//!
//! Plot specs are plain data (serde), so `mprm report` can redraw every figure from the saved
//! results without rerunning anything.

use std::ops::Range;
use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{BoldPoints, Ranged};
use plotters::coord::types::RangedCoordf64;
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

/// Font sizes in pixels. All even on purpose: plotters 0.3.7 places each bitmap glyph at
/// `(size / 2 + glyph top) as i32`, and that cast truncates toward zero, so with an odd size a
/// glyph above the baseline and one near it (a '.') round in opposite directions and the point
/// floats a pixel high ("0·247"). With an even size the sum is a whole number and every glyph
/// shares one baseline.
const TITLE_PX: u32 = 22;
const TEXT_PX: u32 = 14;

/// Canvas of a heatmap, and of a line plot's data area before the legend column is added.
const SIZE: (u32, u32) = (900, 560);

/// Tick labels per axis of a line plot; the tick formatter asks plotters for the same points.
const TICKS: usize = 10;

/// Where a line's method comes from, so that related methods share a hue family and a dash
/// pattern while their markers tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// BIS and the label-mixture selectors it builds on.
    Bis,
    /// Baselines that rank by a per-rollout score.
    Score,
    /// Baselines that rank by a gradient (norm or similarity).
    Gradient,
    /// Anything else (the theory plots' measured and formula curves).
    Other,
}

impl Family {
    /// The family of a series by its legend label: selector rows are labelled by method
    /// (`bis α=0.2` is a BIS row). Deriving it from the label keeps [`Series`] and every call
    /// site as they are; the tests check that every known selector name lands in a family.
    fn of(name: &str) -> Family {
        match name.split_whitespace().next().unwrap_or("") {
            "bis" | "mixed" | "reliable" | "bis-tracin" => Family::Bis,
            "random" | "low-mc" | "top-mc" | "mixture" | "el2n" => Family::Score,
            "grand" | "gradnorm-teacher" | "gradnorm-ckpt" | "less" | "tracin" | "influence"
            | "oracle" => Family::Gradient,
            _ => Family::Other,
        }
    }

    /// Colours of the family, most prominent first. Hues do not overlap between families:
    /// BIS reds and browns, score baselines blues and teals, gradient baselines purples and
    /// magentas. References are black or grey, which no family uses.
    fn colours(self) -> &'static [RGBColor] {
        match self {
            Family::Bis => &[
                RGBColor(178, 24, 43),
                RGBColor(244, 109, 67),
                RGBColor(140, 81, 10),
                RGBColor(253, 174, 97),
                RGBColor(215, 48, 39),
            ],
            Family::Score => &[
                RGBColor(8, 81, 156),
                RGBColor(66, 146, 198),
                RGBColor(1, 133, 113),
                RGBColor(128, 205, 193),
                RGBColor(37, 52, 148),
            ],
            Family::Gradient => &[
                RGBColor(118, 42, 131),
                RGBColor(197, 27, 125),
                RGBColor(153, 112, 171),
                RGBColor(241, 182, 218),
                RGBColor(64, 0, 75),
            ],
            Family::Other => &[
                RGBColor(31, 119, 180),
                RGBColor(255, 127, 14),
                RGBColor(44, 160, 44),
                RGBColor(214, 39, 40),
                RGBColor(148, 103, 189),
                RGBColor(140, 86, 75),
                RGBColor(227, 119, 194),
                RGBColor(188, 189, 34),
                RGBColor(23, 190, 207),
            ],
        }
    }

    /// Line pattern: solid for BIS, short dashes for score baselines, long dashes for gradient
    /// baselines, so a family can be told apart even in greyscale.
    fn dash(self) -> Dash {
        match self {
            Family::Bis | Family::Other => Dash::Solid,
            Family::Score => Dash::Dashed(6, 4),
            Family::Gradient => Dash::Dashed(14, 4),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dash {
    Solid,
    /// Dash and gap lengths in pixels.
    Dashed(u32, u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    Circle,
    Square,
    Triangle,
    Diamond,
    Ring,
    Cross,
}

/// Marker shapes in order of use within a family.
const MARKERS: [Marker; 6] = [
    Marker::Circle,
    Marker::Triangle,
    Marker::Square,
    Marker::Diamond,
    Marker::Ring,
    Marker::Cross,
];

/// How one series is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Look {
    colour: RGBColor,
    dash: Dash,
    /// `None` for references (a dashed rule without points).
    marker: Option<Marker>,
    width: u32,
}

/// Looks of the series in order: each series takes the next colour and marker of its family,
/// so the same selectors in the same order always look the same.
fn looks(series: &[Series]) -> Vec<Look> {
    let mut used = [0usize; 4];
    let mut references = 0;
    series
        .iter()
        .map(|s| {
            if s.reference {
                // The first reference (full data, the untrained base) is black, later ones grey;
                // both are long-dashed rules without markers, unlike every method's line.
                let colour = if references == 0 {
                    BLACK
                } else {
                    RGBColor(120, 120, 120)
                };
                references += 1;
                return Look {
                    colour,
                    dash: Dash::Dashed(10, 6),
                    marker: None,
                    width: 2,
                };
            }
            let family = Family::of(&s.name);
            let slot = &mut used[family as usize];
            let i = *slot;
            *slot += 1;
            let colours = family.colours();
            Look {
                colour: colours[i % colours.len()],
                dash: family.dash(),
                marker: Some(MARKERS[i % MARKERS.len()]),
                width: 2,
            }
        })
        .collect()
}

/// Text as the PNG rasteriser should get it. plotters lays bitmap glyphs out by advance width
/// only and ignores each glyph's own horizontal offset, so a zero-width combining mark written
/// after its letter (`p` + U+0302) lands to the letter's right. Written before the letter it is
/// drawn from the same pen position as the letter, i.e. over it. SVG text is left as is: the
/// viewer's text engine composes marks itself.
fn png_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut base: Option<char> = None;
    let mut marks = String::new();
    let flush = |out: &mut String, base: &mut Option<char>, marks: &mut String| {
        out.push_str(marks);
        marks.clear();
        if let Some(b) = base.take() {
            out.push(b);
        }
    };
    for c in text.chars() {
        if is_combining(c) {
            marks.push(c);
        } else {
            flush(&mut out, &mut base, &mut marks);
            base = Some(c);
        }
    }
    // Marks are collected after their base, so the base waiting in `base` goes out after them.
    flush(&mut out, &mut base, &mut marks);
    out
}

/// Unicode's combining diacritical mark blocks (the marks that draw over the previous letter).
fn is_combining(c: char) -> bool {
    matches!(c as u32,
        0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F)
}

/// Decimals that show every tick of `lo..hi` exactly (plotters picks round tick values, so a
/// few decimals always suffice), at most 6.
fn tick_decimals(lo: f64, hi: f64) -> usize {
    let ticks = RangedCoordf64::from(lo..hi).key_points(BoldPoints(TICKS));
    let tolerance = 1e-9 * (hi - lo).abs().max(f64::MIN_POSITIVE);
    (0..=6)
        .find(|&d| {
            let scale = 10f64.powi(d as i32);
            ticks
                .iter()
                .all(|t| ((t * scale).round() / scale - t).abs() <= tolerance)
        })
        .unwrap_or(6)
}

/// A tick label: fixed decimals, ASCII digits and '-', never "-0".
fn tick_label(v: f64, decimals: usize) -> String {
    let scale = 10f64.powi(decimals as i32);
    let r = (v * scale).round() / scale;
    // Adding 0.0 turns -0.0 into 0.0.
    format!("{:.decimals$}", r + 0.0)
}

impl Plot {
    /// Writes `stem.svg` and `stem.png` into `dir` (atomically).
    pub fn save(&self, dir: &Path, stem: &str) -> Result<()> {
        register_font();
        let size = self.canvas();
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
            self.draw(&root, &|t| t.to_string())?;
        }
        write_text(dir.join(format!("{stem}.svg")), &svg)?;
        // The bitmap backend picks the encoder from the extension, so the temporary name must
        // still end in `.png`.
        let png = TempPath::for_dest(dir.join(format!("{stem}.png")))?;
        let tmp_png = png.tmp().with_extension("tmp.png");
        {
            let root = BitMapBackend::new(&tmp_png, size).into_drawing_area();
            self.draw(&root, &png_text)?;
        }
        std::fs::rename(&tmp_png, png.tmp()).map_err(|e| Error::io(&tmp_png, e))?;
        png.commit()
    }

    /// Canvas size: line plots get a legend column right of the data area, as wide as the
    /// longest label needs, so the legend never covers a line.
    fn canvas(&self) -> (u32, u32) {
        match self {
            Plot::Lines { series, .. } => (SIZE.0 + legend_width(series), SIZE.1),
            Plot::Heatmap { .. } => SIZE,
        }
    }

    /// Every string the figure prints except numbers: title, axis labels, legend and tick
    /// labels (what the glyph test checks).
    #[cfg(test)]
    fn texts(&self) -> Vec<&str> {
        match self {
            Plot::Lines {
                title,
                x_label,
                y_label,
                series,
            } => [title, x_label, y_label]
                .into_iter()
                .chain(series.iter().map(|s| &s.name))
                .map(String::as_str)
                .collect(),
            Plot::Heatmap {
                title,
                x_label,
                y_label,
                x_ticks,
                y_ticks,
                ..
            } => [title, x_label, y_label]
                .into_iter()
                .chain(x_ticks)
                .chain(y_ticks)
                .map(String::as_str)
                .collect(),
        }
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        text: &dyn Fn(&str) -> String,
    ) -> Result<()> {
        let err = |e: &dyn std::fmt::Display| Error::Other(format!("plot: {e}"));
        root.fill(&WHITE).map_err(|e| err(&e))?;
        match self {
            Plot::Lines {
                title,
                x_label,
                y_label,
                series,
            } => {
                let (xr, yr) = data_ranges(series);
                let (dx, dy) = (
                    tick_decimals(xr.start, xr.end),
                    tick_decimals(yr.start, yr.end),
                );
                let (data_area, legend_area) = root.split_horizontally(SIZE.0);
                let mut chart = ChartBuilder::on(&data_area)
                    .caption(text(title), ("sans-serif", TITLE_PX))
                    .margin(14)
                    .x_label_area_size(44)
                    .y_label_area_size(64)
                    .build_cartesian_2d(xr.clone(), yr)
                    .map_err(|e| err(&e))?;
                chart
                    .configure_mesh()
                    .x_desc(text(x_label))
                    .y_desc(text(y_label))
                    .x_labels(TICKS)
                    .y_labels(TICKS)
                    .x_label_formatter(&|v| tick_label(*v, dx))
                    .y_label_formatter(&|v| tick_label(*v, dy))
                    .label_style(("sans-serif", TEXT_PX))
                    .draw()
                    .map_err(|e| err(&e))?;
                let looks = looks(series);
                for (s, look) in series.iter().zip(&looks) {
                    let style = ShapeStyle::from(&look.colour).stroke_width(look.width);
                    let pts: Vec<(f64, f64)> = if s.reference {
                        let y = s.points.first().map_or(f64::NAN, |p| p.1);
                        vec![(xr.start, y), (xr.end, y)]
                    } else {
                        s.points.iter().map(|p| (p.0, p.1)).collect()
                    };
                    match look.dash {
                        Dash::Solid => chart.draw_series(LineSeries::new(pts.clone(), style)),
                        Dash::Dashed(on, off) => {
                            chart.draw_series(DashedLineSeries::new(pts.clone(), on, off, style))
                        }
                    }
                    .map_err(|e| err(&e))?;
                    let Some(marker) = look.marker else {
                        continue;
                    };
                    chart
                        .draw_series(
                            s.points
                                .iter()
                                .filter_map(|&(x, y, e)| {
                                    e.filter(|e| e.is_finite()).map(|e| (x, y, e))
                                })
                                .map(|(x, y, e)| {
                                    ErrorBar::new_vertical(x, y - e, y, y + e, look.colour, 6)
                                }),
                        )
                        .map_err(|e| err(&e))?;
                    for p in &pts {
                        let at = chart.backend_coord(p);
                        draw_marker(root, at, marker, look.colour).map_err(|e| err(&e))?;
                    }
                }
                // The legend column: one row per series with its line pattern, marker and label.
                let row = 24;
                for (i, (s, look)) in series.iter().zip(&looks).enumerate() {
                    let y = 56 + row * i as i32;
                    draw_sample(&legend_area, (6, y), (42, y), look).map_err(|e| err(&e))?;
                    if let Some(marker) = look.marker {
                        draw_marker(&legend_area, (24, y), marker, look.colour)
                            .map_err(|e| err(&e))?;
                    }
                    legend_area
                        .draw(&Text::new(
                            text(&s.name),
                            (50, y),
                            ("sans-serif", TEXT_PX)
                                .into_font()
                                .color(&BLACK)
                                .pos(Pos::new(HPos::Left, VPos::Center)),
                        ))
                        .map_err(|e| err(&e))?;
                }
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
                    .caption(text(title), ("sans-serif", TITLE_PX))
                    .margin(14)
                    .x_label_area_size(50)
                    .y_label_area_size((30 + 8 * longest).clamp(60, 280) as u32)
                    .build_cartesian_2d((0..nx - 1).into_segmented(), (0..ny - 1).into_segmented())
                    .map_err(|e| err(&e))?;
                let label = |ticks: &[String], v: &SegmentValue<usize>| match v {
                    SegmentValue::CenterOf(i) => ticks.get(*i).map(|t| text(t)).unwrap_or_default(),
                    _ => String::new(),
                };
                chart
                    .configure_mesh()
                    .disable_mesh()
                    .x_desc(text(x_label))
                    .y_desc(text(y_label))
                    .x_labels(nx)
                    .y_labels(ny)
                    .x_label_formatter(&|v| label(x_ticks, v))
                    .y_label_formatter(&|v| label(y_ticks, v))
                    .label_style(("sans-serif", TEXT_PX))
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
                                cell_label(v),
                                (SegmentValue::CenterOf(c), SegmentValue::CenterOf(r)),
                                ("sans-serif", TEXT_PX)
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

/// A heatmap cell's number (three decimals, never "-0.000").
fn cell_label(v: f64) -> String {
    tick_label(v, 3)
}

/// Width of the legend column: the longest label at the legend font plus the line sample.
fn legend_width(series: &[Series]) -> u32 {
    register_font();
    let font = ("sans-serif", TEXT_PX).into_font();
    let widest = series
        .iter()
        .map(|s| font.box_size(&png_text(&s.name)).map_or(0, |(w, _)| w))
        .max()
        .unwrap_or(0);
    (widest + 70).clamp(120, 420)
}

/// A marker centred on the pixel `at` of `area`.
fn draw_marker<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    at: (i32, i32),
    marker: Marker,
    colour: RGBColor,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let (x, y) = at;
    let fill = colour.filled();
    match marker {
        Marker::Circle => area.draw(&Circle::new(at, 4, fill)),
        Marker::Ring => area.draw(&Circle::new(at, 4, colour.stroke_width(2))),
        Marker::Square => area.draw(&Rectangle::new([(x - 4, y - 4), (x + 4, y + 4)], fill)),
        Marker::Triangle => area.draw(&Polygon::new(
            vec![(x, y - 6), (x + 5, y + 4), (x - 5, y + 4)],
            fill,
        )),
        Marker::Diamond => area.draw(&Polygon::new(
            vec![(x, y - 6), (x + 5, y), (x, y + 6), (x - 5, y)],
            fill,
        )),
        Marker::Cross => area.draw(&Cross::new(at, 5, colour.stroke_width(2))),
    }
}

/// The legend's line sample from `a` to `b` in the series' pattern.
fn draw_sample<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    a: (i32, i32),
    b: (i32, i32),
    look: &Look,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let style = ShapeStyle::from(&look.colour).stroke_width(look.width);
    match look.dash {
        Dash::Solid => area.draw(&PathElement::new(vec![a, b], style)),
        Dash::Dashed(on, off) => {
            let mut x = a.0;
            while x < b.0 {
                let end = (x + on as i32).min(b.0);
                area.draw(&PathElement::new(vec![(x, a.1), (end, b.1)], style))?;
                x = end + off as i32;
            }
            Ok(())
        }
    }
}

/// The axes' ranges: the data's extent plus a small margin. The x range comes from the
/// methods' points only: a reference is a horizontal rule whose stored x is a placeholder (0), and
/// counting it would stretch a budget axis that starts at 5% down to 0.
fn data_ranges(series: &[Series]) -> (Range<f64>, Range<f64>) {
    let finite = |v: &f64| v.is_finite();
    let methods = series.iter().filter(|s| !s.reference);
    let any_method = series.iter().any(|s| !s.reference);
    let (x0, x1) = min_max(
        methods
            .chain(series.iter().filter(|_| !any_method))
            .flat_map(|s| &s.points)
            .map(|p| p.0)
            .filter(finite),
    );
    let ys = series.iter().flat_map(|s| {
        // A reference draws only its first point's y.
        let n = if s.reference { 1 } else { s.points.len() };
        s.points.iter().take(n).flat_map(|p| {
            let e = p.2.filter(|e| e.is_finite()).unwrap_or(0.0);
            [p.1 - e, p.1 + e]
        })
    });
    let (y0, y1) = min_max(ys.filter(finite));
    let pad_x = ((x1 - x0) * 0.03).max(1e-9);
    let pad_y = ((y1 - y0) * 0.08).max(1e-9);
    ((x0 - pad_x)..(x1 + pad_x), (y0 - pad_y)..(y1 + pad_y))
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

    use ab_glyph::{Font, FontRef, GlyphId};

    use crate::experiments::report::Rendered;

    /// The figures of the committed results, rendered as `mprm report` renders them.
    fn committed_figures() -> Vec<(String, Plot)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/results/main");
        let read = |sub: &str| std::fs::read_to_string(dir.join(sub).join("results.json")).unwrap();
        let theory: crate::experiments::theory::TheoryResults =
            serde_json::from_str(&read("theory")).unwrap();
        let selection: crate::experiments::selection::SelectionResults =
            serde_json::from_str(&read("selection")).unwrap();
        let mut plots: Vec<(String, Plot)> = Vec::new();
        for r in [
            crate::experiments::theory::render(&theory),
            crate::experiments::selection::render(
                &selection,
                crate::experiments::config::CorpusKind::Synth,
            ),
        ] {
            let Rendered { plots: p, .. } = r;
            plots.extend(p);
        }
        plots
    }

    /// Characters of `texts` (as the PNG path prepares them) that the vendored font has no glyph
    /// for, in order of first appearance.
    fn missing_glyphs<'a>(texts: impl IntoIterator<Item = &'a str>) -> Vec<char> {
        let font = FontRef::try_from_slice(FONT).unwrap();
        let mut missing = Vec::new();
        for t in texts {
            for c in png_text(t).chars() {
                if font.glyph_id(c) == GlyphId(0) && !missing.contains(&c) {
                    missing.push(c);
                }
            }
        }
        missing
    }

    /// Each letter with its combining marks, reading the marks as following their letter
    /// (Unicode's order) or as leading it (the order the PNG path hands plotters).
    fn clusters(text: &str, marks_lead: bool) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut pending = String::new();
        for c in text.chars() {
            if !is_combining(c) {
                out.push(c.to_string() + &pending);
                pending.clear();
            } else if marks_lead {
                pending.push(c);
            } else if let Some(last) = out.last_mut() {
                last.push(c);
            } else {
                out.push(c.to_string());
            }
        }
        if !pending.is_empty() {
            out.push(pending);
        }
        out
    }

    /// Whether the PNG text puts every mark where plotters draws it over its own letter.
    fn marks_placed(text: &str, png: &str) -> bool {
        clusters(text, false) == clusters(png, true)
    }

    #[test]
    fn every_figure_character_has_a_png_glyph() {
        let figures = committed_figures();
        assert!(figures.len() >= 12, "{}", figures.len());
        let mut texts: Vec<String> = figures
            .iter()
            .flat_map(|(_, p)| p.texts())
            .map(str::to_string)
            .collect();
        // The labels include the selector rows and the p̂(1−p̂) score, so the check covers
        // Greek letters, the minus sign, the times sign and a combining mark.
        let all: String = texts.concat();
        for c in ['α', '−', '×', '\u{302}'] {
            assert!(all.contains(c), "the committed labels no longer use {c:?}");
        }
        // Numbers: tick labels at every precision, negative and tiny values, heatmap cells.
        for v in [-28.312, -0.0001, 0.05, 1e-7, 85.0, 63_840.0] {
            texts.extend((0..=6).map(|d| tick_label(v, d)));
            texts.push(cell_label(v));
        }
        assert_eq!(missing_glyphs(texts.iter().map(String::as_str)), vec![]);
        for t in &texts {
            assert!(marks_placed(t, &png_text(t)), "{t:?}");
        }
        // The check can fail: a character outside DejaVu Sans is reported, once.
        assert_eq!(missing_glyphs(["ok 漢字漢"]), vec!['漢', '字']);
        // And text handed over unchanged would leave the hat beside its letter.
        assert!(!marks_placed("p\u{302}(", "p\u{302}("));
    }

    #[test]
    fn combining_marks_go_before_their_letter() {
        assert_eq!(png_text("p\u{302}(1−p\u{302})"), "\u{302}p(1−\u{302}p)");
        assert_eq!(png_text("a\u{302}\u{301}b"), "\u{302}\u{301}ab");
        assert_eq!(png_text("plain"), "plain");
        assert_eq!(png_text(""), "");
    }

    #[test]
    fn font_sizes_share_a_baseline() {
        // Odd sizes put '.' a pixel above the digits in PNGs (see TITLE_PX).
        for size in [TITLE_PX, TEXT_PX] {
            assert_eq!(size % 2, 0, "{size}");
        }
    }

    #[test]
    fn tick_labels_are_plain_and_exact() {
        assert_eq!(tick_label(-0.0001, 2), "0.00");
        assert_eq!(tick_label(-28.3124, 3), "-28.312");
        assert_eq!(tick_label(0.05, 2), "0.05");
        assert_eq!(cell_label(-0.2614), "-0.261");
        assert_eq!(tick_decimals(0.0365, 0.5135), 2);
        assert_eq!(tick_decimals(50.0, 90.0), 0);
    }

    #[test]
    fn budget_axis_starts_at_the_data_not_at_the_reference() {
        let series = vec![
            Series {
                name: "bis".into(),
                points: vec![(0.05, 70.0, Some(1.0)), (0.5, 84.0, None)],
                reference: false,
            },
            Series {
                name: "full data".into(),
                points: vec![(0.0, 86.0, None)],
                reference: true,
            },
        ];
        let (x, y) = data_ranges(&series);
        assert!(x.start > 0.03 && x.start < 0.05, "{x:?}");
        assert!(x.end > 0.5 && x.end < 0.52, "{x:?}");
        assert!(y.start < 69.0 && y.end > 86.0, "{y:?}");
    }

    #[test]
    fn selector_families_and_looks_are_distinct() {
        use crate::select::baselines::BASELINE_NAMES;
        use crate::select::baselines::GRADIENT_NAMES;
        for name in BASELINE_NAMES.iter().chain(&GRADIENT_NAMES) {
            assert_ne!(Family::of(name), Family::Other, "{name} has no family");
        }
        assert_eq!(Family::of("bis α=0.2"), Family::Bis);
        let (_, budgets) = committed_figures()
            .into_iter()
            .find(|(stem, _)| stem == "budgets")
            .unwrap();
        let Plot::Lines { series, .. } = budgets else {
            panic!("budgets is a line plot")
        };
        assert!(series.len() >= 11, "{}", series.len());
        let looks = looks(&series);
        let look = |name: &str| looks[series.iter().position(|s| s.name == name).unwrap()];
        for (i, a) in looks.iter().enumerate() {
            for b in &looks[..i] {
                assert!(
                    (a.colour, a.marker) != (b.colour, b.marker),
                    "two series look alike: {a:?}"
                );
            }
        }
        let (random, el2n) = (look("random"), look("el2n"));
        assert_ne!(random.colour, el2n.colour);
        assert_ne!(random.marker, el2n.marker);
        let (less, full) = (look("less"), look("full data"));
        assert_ne!(less.colour, full.colour);
        assert_ne!(less.dash, full.dash);
        assert_eq!(full.marker, None);
        assert_ne!(look("bis").dash, look("gradnorm-teacher").dash);
    }

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
