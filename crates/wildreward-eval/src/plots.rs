//! PNG plots of a report with plotters' bitmap backend: the threshold curve, per-subset bars and the
//! reliability diagram. Text is drawn with ab_glyph from the DejaVu Sans font embedded by the
//! `dejavu` crate, so no system font library is needed.

use crate::report::{Calibration, Report};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::path::Path;
use std::sync::OnceLock;

/// Registers the embedded font under plotters' `sans-serif` family (once per process).
fn fonts() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
                .map_err(|_| "the embedded DejaVu Sans font did not load".to_string())
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

fn draw_err<E: std::fmt::Debug>(path: &Path) -> impl FnOnce(E) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("plot {}: {e:?}", path.display())
}

/// One bar: a label, a value in [0, 1] and an optional interval.
pub struct Bar {
    /// Axis label.
    pub label: String,
    /// Height.
    pub value: f64,
    /// 95% interval drawn as a whisker.
    pub ci: Option<[f64; 2]>,
    /// Colour index (RM-Bench: 0 easy, 1 normal, 2 hard).
    pub colour: usize,
}

const BAR_COLOURS: [RGBColor; 3] = [
    RGBColor(76, 114, 176),
    RGBColor(221, 132, 82),
    RGBColor(196, 78, 82),
];

/// Writes every plot that fits the report into `dir`; returns the file names.
pub fn write_all(report: &Report, dir: &Path) -> anyhow::Result<Vec<String>> {
    fonts()?;
    let mut written = Vec::new();
    if report.threshold_curve.iter().any(|p| p.pairs > 0) {
        threshold_curve(report, &dir.join("threshold_curve.png"))?;
        written.push("threshold_curve.png".to_string());
    }
    let bars = bars_of(report);
    if !bars.is_empty() {
        subset_bars(
            &bars,
            &format!("{}: accuracy by subset", report.bench),
            &dir.join("subsets.png"),
        )?;
        written.push("subsets.png".to_string());
    }
    if let Some(cal) = &report.calibration {
        reliability(cal, &dir.join("reliability.png"))?;
        written.push("reliability.png".to_string());
    }
    Ok(written)
}

/// The bars of the subset plot: RM-Bench's easy / normal / hard per domain, else each subset.
pub fn bars_of(report: &Report) -> Vec<Bar> {
    if let Some(rm) = &report.rm_bench {
        return rm
            .domains
            .iter()
            .chain(std::iter::once((&"overall".to_string(), &rm.overall)))
            .flat_map(|(d, s)| {
                [("easy", s.easy), ("normal", s.normal), ("hard", s.hard)]
                    .into_iter()
                    .enumerate()
                    .map(move |(colour, (k, v))| Bar {
                        label: format!("{d} {k}"),
                        value: v,
                        ci: None,
                        colour,
                    })
            })
            .collect();
    }
    report
        .subsets
        .iter()
        .map(|(k, g)| Bar {
            label: k.clone(),
            value: g.accuracy,
            ci: Some(g.ci95),
            colour: 0,
        })
        .collect()
}

/// A captioned [0, 1] × [0, 1] chart with its axes drawn (no light mesh), as both line plots use.
fn unit_square_chart<'a, 'b>(
    root: &'a DrawingArea<BitMapBackend<'b>, plotters::coord::Shift>,
    caption: &str,
    (x_desc, y_desc): (&str, &str),
    path: &Path,
) -> anyhow::Result<
    ChartContext<
        'a,
        BitMapBackend<'b>,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
> {
    let mut chart = ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..1.0f64, 0.0..1.0f64)
        .map_err(draw_err(path))?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(draw_err(path))?;
    Ok(chart)
}

fn threshold_curve(report: &Report, path: &Path) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err(path))?;
    let mut chart = unit_square_chart(
        &root,
        &format!(
            "{}: accuracy and coverage of pairs with |Δr| ≥ t",
            report.bench
        ),
        ("reward-gap threshold t", "share"),
        path,
    )?;
    let accuracy: Vec<(f64, f64)> = report
        .threshold_curve
        .iter()
        .filter_map(|p| Some((p.threshold, p.accuracy?)))
        .collect();
    let coverage: Vec<(f64, f64)> = report
        .threshold_curve
        .iter()
        .map(|p| (p.threshold, p.coverage))
        .collect();
    chart
        .draw_series(LineSeries::new(accuracy.clone(), BLUE.stroke_width(3)))
        .map_err(draw_err(path))?
        .label("accuracy")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(3)));
    chart
        .draw_series(accuracy.iter().map(|&p| Circle::new(p, 3, BLUE.filled())))
        .map_err(draw_err(path))?;
    chart
        .draw_series(
            AreaSeries::new(coverage, 0.0, RED.mix(0.15)).border_style(RED.stroke_width(2)),
        )
        .map_err(draw_err(path))?
        .label("coverage")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .position(SeriesLabelPosition::LowerLeft)
        .draw()
        .map_err(draw_err(path))?;
    root.present().map_err(draw_err(path))?;
    Ok(())
}

/// A bar chart of accuracies in [0, 1], with whiskers where an interval is given.
pub fn subset_bars(bars: &[Bar], title: &str, path: &Path) -> anyhow::Result<()> {
    fonts()?;
    let width = (140 + 150 * bars.len()).clamp(640, 2400) as u32;
    let root = BitMapBackend::new(path, (width, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err(path))?;
    let n = bars.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(60)
        .y_label_area_size(56)
        .build_cartesian_2d((0..n.saturating_sub(1)).into_segmented(), 0.0..1.0f64)
        .map_err(draw_err(path))?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .disable_x_mesh()
        .x_labels(n.max(1) + 1)
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => bars.get(*i).map(|b| b.label.clone()).unwrap_or_default(),
            _ => String::new(),
        })
        .y_desc("accuracy")
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(draw_err(path))?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, b)| {
            let colour = BAR_COLOURS[b.colour % BAR_COLOURS.len()];
            let mut r = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), b.value),
                ],
                colour.filled(),
            );
            r.set_margin(0, 0, 8, 8);
            r
        }))
        .map_err(draw_err(path))?;
    chart
        .draw_series(bars.iter().enumerate().filter_map(|(i, b)| {
            let [lo, hi] = b.ci?;
            Some(PathElement::new(
                vec![
                    (SegmentValue::CenterOf(i), lo),
                    (SegmentValue::CenterOf(i), hi),
                ],
                BLACK.stroke_width(2),
            ))
        }))
        .map_err(draw_err(path))?;
    // The coin-flip line for pairwise accuracy.
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(SegmentValue::Exact(0), 0.5), (SegmentValue::Last, 0.5)],
            RED.mix(0.6).stroke_width(1),
        )))
        .map_err(draw_err(path))?;
    root.present().map_err(draw_err(path))?;
    Ok(())
}

fn reliability(cal: &Calibration, path: &Path) -> anyhow::Result<()> {
    let root = BitMapBackend::new(path, (640, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err(path))?;
    let mut chart = unit_square_chart(
        &root,
        &format!("reliability of P(y > k), ECE {:.3}", cal.ece),
        ("predicted probability", "observed frequency"),
        path,
    )?;
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(0.0, 0.0), (1.0, 1.0)],
            BLACK.mix(0.5).stroke_width(1),
        )))
        .map_err(draw_err(path))?;
    let points: Vec<(f64, f64)> = cal
        .bins
        .iter()
        .filter_map(|b| Some((b.confidence?, b.observed?)))
        .collect();
    chart
        .draw_series(cal.bins.iter().filter_map(|b| {
            let observed = b.observed?;
            Some(Rectangle::new(
                [(b.lo + 0.01, 0.0), (b.hi - 0.01, observed)],
                BLUE.mix(0.25).filled(),
            ))
        }))
        .map_err(draw_err(path))?;
    chart
        .draw_series(LineSeries::new(points.clone(), BLUE.stroke_width(3)))
        .map_err(draw_err(path))?;
    chart
        .draw_series(points.iter().map(|&p| Circle::new(p, 4, BLUE.filled())))
        .map_err(draw_err(path))?;
    root.present().map_err(draw_err(path))?;
    Ok(())
}
