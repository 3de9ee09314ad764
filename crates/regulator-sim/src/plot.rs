//! Figures: panels of lines over time, each panel with a left axis (rates) and a right axis
//! (latency), written as SVG and PNG. The font is embedded (`DejaVu Sans`), so no system font
//! or font library is needed.

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use super::Trace;

/// A line of a panel.
#[derive(Debug, Clone)]
pub struct Line {
    /// In the legend.
    pub label: String,
    /// Its colour.
    pub color: RGBColor,
    /// (time in seconds, value).
    pub points: Vec<(f64, f64)>,
    /// On the right axis.
    pub right: bool,
    /// Dashed, for references (targets, capacities).
    pub dashed: bool,
}

/// One panel: a title and its lines.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Above the panel.
    pub title: String,
    /// Left axis description.
    pub left: String,
    /// Right axis description.
    pub right: String,
    /// The lines.
    pub lines: Vec<Line>,
}

/// Colours of the lines every figure has.
pub mod colors {
    use plotters::style::RGBColor;
    /// The `rps` knob.
    pub const KNOB: RGBColor = RGBColor(31, 119, 180);
    /// Queries served per second.
    pub const SERVED: RGBColor = RGBColor(44, 160, 44);
    /// The rate that meets the target.
    pub const SLO_CAPACITY: RGBColor = RGBColor(120, 120, 120);
    /// p99 latency.
    pub const P99: RGBColor = RGBColor(214, 39, 40);
    /// p99 as the daemon measured it.
    pub const MEASURED: RGBColor = RGBColor(148, 103, 189);
    /// The target.
    pub const TARGET: RGBColor = RGBColor(255, 127, 14);
}

/// A figure could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw {path}: {message}")]
pub struct PlotError {
    path: PathBuf,
    message: String,
}

fn fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Both backends measure text to lay it out, so both need the font registered.
        let _ = register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
        let _ = register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold());
    });
}

/// Writes `<stem>.svg` and `<stem>.png`; returns their paths.
///
/// # Errors
/// A file that cannot be written or drawn.
pub fn figure(stem: &Path, title: &str, panels: &[Panel]) -> Result<[PathBuf; 2], PlotError> {
    fonts();
    let size = (
        1200,
        60 + 300 * u32::try_from(panels.len().max(1)).unwrap_or(u32::MAX / 400),
    );
    let svg = stem.with_extension("svg");
    let png = stem.with_extension("png");
    let fail = |path: &Path| {
        let path = path.to_owned();
        move |e: Box<dyn std::error::Error>| PlotError {
            path: path.clone(),
            message: e.to_string(),
        }
    };
    draw(
        &SVGBackend::new(&svg, size).into_drawing_area(),
        title,
        panels,
    )
    .map_err(fail(&svg))?;
    draw(
        &BitMapBackend::new(&png, size).into_drawing_area(),
        title,
        panels,
    )
    .map_err(fail(&png))?;
    Ok([svg, png])
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    panels: &[Panel],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 26, FontStyle::Bold))?;
    let areas = root.split_evenly((panels.len().max(1), 1));
    for (panel, area) in panels.iter().zip(&areas) {
        draw_panel(area, panel)?;
    }
    root.present()?;
    Ok(())
}

fn range(lines: &[&Line]) -> (f64, f64) {
    let max = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max);
    (0.0, if max > 0.0 { max * 1.08 } else { 1.0 })
}

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, panel: &Panel) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let left: Vec<&Line> = panel.lines.iter().filter(|l| !l.right).collect();
    let right: Vec<&Line> = panel.lines.iter().filter(|l| l.right).collect();
    let end = panel
        .lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.0))
        .fold(1.0_f64, f64::max);
    let (l0, l1) = range(&left);
    let (r0, r1) = range(&right);
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 18))
        .margin(8)
        .x_label_area_size(32)
        .y_label_area_size(60)
        .right_y_label_area_size(60)
        .build_cartesian_2d(0.0..end, l0..l1)?
        .set_secondary_coord(0.0..end, r0..r1);
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc(panel.left.as_str())
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .light_line_style(WHITE.mix(0.0))
        .draw()?;
    chart
        .configure_secondary_axes()
        .y_desc(panel.right.as_str())
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .draw()?;
    for line in &left {
        let style = ShapeStyle::from(line.color).stroke_width(if line.dashed { 1 } else { 2 });
        let series = chart.draw_series(LineSeries::new(line.points.iter().copied(), style))?;
        let color = line.color;
        series.label(line.label.as_str()).legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
        });
    }
    for line in &right {
        let style = ShapeStyle::from(line.color).stroke_width(if line.dashed { 1 } else { 2 });
        let series =
            chart.draw_secondary_series(LineSeries::new(line.points.iter().copied(), style))?;
        let color = line.color;
        series.label(line.label.as_str()).legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
        });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()?;
    Ok(())
}

/// A panel per trace: knob, served/s and SLO-capacity on the left; true p99, the p99 the
/// daemon measured and the target (ms) on the right.
#[must_use]
pub fn traces(traces: &[Trace], target: f64) -> Vec<Panel> {
    traces
        .iter()
        .map(|t| {
            let line =
                |label: &str, color, right, dashed, f: &dyn Fn(&super::Period) -> f64| Line {
                    label: label.to_owned(),
                    color,
                    right,
                    dashed,
                    points: t.periods.iter().map(|p| (p.end, f(p))).collect(),
                };
            let s = &t.score;
            Panel {
                title: format!(
                    "{}: compliance {:.0}%, goodput {:.0}%",
                    t.law,
                    s.compliance * 100.0,
                    s.goodput * 100.0
                ),
                left: "queries/s".into(),
                right: "p99 (ms)".into(),
                lines: vec![
                    line("rps knob", colors::KNOB, false, false, &|p| p.knobs.rps),
                    line("served/s", colors::SERVED, false, false, &|p| {
                        p.served / p.length
                    }),
                    line("SLO-capacity", colors::SLO_CAPACITY, false, true, &|p| {
                        p.slo_capacity
                    }),
                    line("p99", colors::P99, true, false, &|p| {
                        p.p99.map_or(0.0, |l| l * 1000.0)
                    }),
                    line("p99 measured", colors::MEASURED, true, false, &|p| {
                        p.signal.map_or(0.0, |l| l * 1000.0)
                    }),
                    line("target", colors::TARGET, true, true, &|_| target * 1000.0),
                ],
            }
        })
        .collect()
}
