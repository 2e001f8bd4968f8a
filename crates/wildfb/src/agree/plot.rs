//! The confusion matrix of `wildfb agree` as a PNG heat map (rows gold, columns predicted, plus a column
//! for abstentions), drawn like the eval stage's plots: plotters' bitmap backend with the DejaVu Sans
//! font embedded by the `dejavu` crate, so no system font library is needed.

use super::metrics::Scores;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::path::Path;
use std::sync::OnceLock;

fn fonts() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
                .map_err(|_| "the embedded DejaVu Sans font did not load".to_string())
        })
        .clone()
}

const NAMES: [&str; 5] = [
    "1 reject",
    "2 correct",
    "3 neutral",
    "4 engage",
    "5 satisfied",
];

/// Writes the heat map of an agreement report: `decided` (the annotator on the items it decided),
/// `alone` (abstentions and missing items read as neutral, whose extra neutral column is drawn as
/// the abstentions), and the `coverage` for the title.
pub fn confusion_png(
    decided: &Scores,
    alone: &Scores,
    coverage: f64,
    path: &Path,
) -> Result<(), String> {
    fonts()?;
    let err = |e: &dyn std::fmt::Debug| format!("plot: {e:?}");
    let counts = &decided.confusion.counts;
    // Abstentions and missing items per gold row: the alone view's neutral column minus the decided one.
    let alone_counts = &alone.confusion.counts;
    let abstained: Vec<u64> = (0..5).map(|i| alone_counts[i][2] - counts[i][2]).collect();
    let max = counts
        .iter()
        .flatten()
        .chain(abstained.iter())
        .copied()
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let root = BitMapBackend::new(path, (760, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let title = format!(
        "gold vs predicted: κ {} (alone {}), coverage {:.0} %",
        decided.kappa.map_or("–".into(), |k| format!("{k:.2}")),
        alone.kappa.map_or("–".into(), |k| format!("{k:.2}")),
        100.0 * coverage
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(96)
        .build_cartesian_2d(0..6i32, 0..5i32)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(6)
        .y_labels(5)
        .x_label_offset(56)
        .y_label_offset(-50)
        .x_label_formatter(&|x| match *x {
            0..=4 => format!("{}", x + 1),
            5 => "abstained".to_string(),
            _ => String::new(),
        })
        .y_label_formatter(&|y| {
            NAMES
                .get((4 - *y) as usize)
                .map_or(String::new(), |s| s.to_string())
        })
        .x_desc("predicted")
        .y_desc("gold")
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| err(&e))?;
    let cell = |gold: usize, col: usize| -> u64 {
        if col < 5 {
            counts[gold][col]
        } else {
            abstained[gold]
        }
    };
    let cells: Vec<(i32, i32, u64)> = (0..5)
        .flat_map(|g| (0..6).map(move |c| (c as i32, 4 - g as i32, (g, c))))
        .map(|(x, y, (g, c))| (x, y, cell(g, c)))
        .collect();
    chart
        .draw_series(cells.iter().map(|&(x, y, v)| {
            let t = v as f64 / max;
            let shade = (255.0 * (1.0 - 0.8 * t)) as u8;
            let colour = if x == 5 {
                RGBColor(shade, shade, shade)
            } else {
                RGBColor(shade, shade, 255)
            };
            Rectangle::new([(x, y), (x + 1, y + 1)], colour.filled())
        }))
        .map_err(|e| err(&e))?;
    chart
        .draw_series(cells.iter().map(|&(x, y, v)| {
            let colour = if v as f64 / max > 0.6 { WHITE } else { BLACK };
            Text::new(
                v.to_string(),
                (x, y + 1),
                ("sans-serif", 18).into_font().color(&colour),
            )
        }))
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
