//! Line charts as PNG images (ROC, precision–recall and PRO curves of `vlad eval --plots`), drawn
//! with plotters' bitmap backend and an embedded font, so no system font is looked up.
//!
//! The font is a subset of DejaVu Sans (licence and provenance in `assets/fonts/`).
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow};
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

/// DejaVu Sans reduced to the characters the charts use.
static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans-subset.ttf");

/// Image size in pixels.
const WIDTH: u32 = 720;
const HEIGHT: u32 = 540;

/// Series colours (Tableau 10: blue, orange, green, red).
const COLORS: [RGBColor; 4] = [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44), RGBColor(214, 39, 40)];

/// One curve: points in drawing order and the legend text (with its area).
pub struct Curve {
    /// Legend entry, e.g. `pixel (AUROC 0.912)`.
    pub label: String,
    /// X coordinates.
    pub x: Vec<f64>,
    /// Y coordinates, as many as `x`.
    pub y: Vec<f64>,
}

/// A straight reference segment and its legend text.
pub struct ReferenceLine {
    /// Start point.
    pub from: (f64, f64),
    /// End point.
    pub to: (f64, f64),
    /// Legend entry.
    pub label: String,
}

/// A chart: title, axis labels and ranges, curves, and an optional dashed reference line.
pub struct Chart {
    /// Title above the plot.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// X range.
    pub x_range: (f64, f64),
    /// Y range.
    pub y_range: (f64, f64),
    /// The curves, coloured in order.
    pub curves: Vec<Curve>,
    /// A grey dashed segment, e.g. the chance diagonal of a ROC plot.
    pub reference: Option<ReferenceLine>,
    /// Where the legend goes (where the curves usually are not).
    pub legend: SeriesLabelPosition,
}

fn font_registered() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| register_font("sans-serif", FontStyle::Normal, FONT).is_ok());
    if ok { Ok(()) } else { Err(anyhow!("the embedded plot font could not be parsed")) }
}

/// The points of a step curve drawn as sklearn's `PrecisionRecallDisplay` draws one
/// (`drawstyle="steps-post"`): each value holds until the next point's x.
pub fn steps_post(x: &[f64], y: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut xs = Vec::with_capacity(2 * x.len());
    let mut ys = Vec::with_capacity(2 * y.len());
    for i in 0..x.len().min(y.len()) {
        if i > 0 {
            xs.push(x[i]);
            ys.push(y[i - 1]);
        }
        xs.push(x[i]);
        ys.push(y[i]);
    }
    (xs, ys)
}

/// Dashes along a segment, as short line pieces (plotters 0.3 has no dashed stroke for paths).
fn dashes(from: (f64, f64), to: (f64, f64), count: usize) -> Vec<Vec<(f64, f64)>> {
    let at = |t: f64| (from.0 + t * (to.0 - from.0), from.1 + t * (to.1 - from.1));
    (0..count).map(|i| vec![at(i as f64 / count as f64), at((i as f64 + 0.5) / count as f64)]).collect()
}

/// Draws `chart` and writes it to `path` as PNG.
pub fn save_png(chart: &Chart, path: &Path) -> Result<()> {
    font_registered()?;
    for c in &chart.curves {
        if c.x.len() != c.y.len() {
            anyhow::bail!("internal: curve `{}` has {} x and {} y values", c.label, c.x.len(), c.y.len());
        }
    }
    let mut buffer = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    draw(chart, &mut buffer).map_err(|e| anyhow!("cannot draw `{}`: {e}", chart.title))?;
    let image = vlad_imaging::RgbImage::from_raw(WIDTH, HEIGHT, buffer).context("internal: plot buffer size")?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    image.save(path).with_context(|| format!("cannot write {}", path.display()))
}

fn draw(chart: &Chart, buffer: &mut [u8]) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::with_buffer(buffer, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let (x0, x1) = chart.x_range;
    let (y0, y1) = chart.y_range;
    let mut plot = ChartBuilder::on(&root)
        .caption(&chart.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    plot.configure_mesh()
        .x_desc(chart.x_label.as_str())
        .y_desc(chart.y_label.as_str())
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(210, 210, 210))
        .x_label_formatter(&|v| format!("{v:.2}"))
        .y_label_formatter(&|v| format!("{v:.2}"))
        .draw()?;
    if let Some(line) = &chart.reference {
        let grey = RGBColor(150, 150, 150);
        for (i, dash) in dashes(line.from, line.to, 40).into_iter().enumerate() {
            let series = plot.draw_series(LineSeries::new(dash, grey.stroke_width(1)))?;
            if i == 0 {
                series.label(line.label.as_str()).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 8, y)], grey.stroke_width(1)));
            }
        }
    }
    for (i, curve) in chart.curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        plot.draw_series(LineSeries::new(curve.x.iter().copied().zip(curve.y.iter().copied()), color.stroke_width(2)))?
            .label(curve.label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3)));
    }
    plot.configure_series_labels()
        .position(chart.legend.clone())
        .label_font(("sans-serif", 16))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(120, 120, 120))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png_with_curves_text_and_legend() {
        let dir = std::env::temp_dir().join(format!("vlad-plot-{}", std::process::id()));
        let path = dir.join("roc.png");
        let chart = Chart {
            title: "bottle: ROC".into(),
            x_label: "false-positive rate".into(),
            y_label: "true-positive rate".into(),
            x_range: (0.0, 1.0),
            y_range: (0.0, 1.0),
            curves: vec![Curve { label: "image (AUROC 0.750)".into(), x: vec![0.0, 0.5, 0.5, 1.0], y: vec![0.0, 0.5, 1.0, 1.0] }],
            reference: Some(ReferenceLine { from: (0.0, 0.0), to: (1.0, 1.0), label: "chance".into() }),
            legend: SeriesLabelPosition::LowerRight,
        };
        save_png(&chart, &path).unwrap();
        let image = vlad_imaging::open_rgb(&path).unwrap();
        assert_eq!(image.dimensions(), (WIDTH, HEIGHT));
        // The curve's colour and dark text pixels are both present.
        let pixels: Vec<[u8; 3]> = image.pixels().map(|p| p.0).collect();
        assert!(pixels.contains(&[31, 119, 180]), "no curve pixels");
        assert!(pixels.iter().filter(|p| p.iter().all(|&c| c < 80)).count() > 200, "no text pixels");
        let bad = Chart { curves: vec![Curve { label: "x".into(), x: vec![0.0], y: vec![] }], ..chart };
        assert!(save_png(&bad, &path).unwrap_err().to_string().contains("1 x and 0 y"));
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn steps_hold_each_value_until_the_next_x() {
        let (x, y) = steps_post(&[1.0, 0.5, 0.0], &[0.5, 0.8, 1.0]);
        assert_eq!(x, vec![1.0, 0.5, 0.5, 0.0, 0.0]);
        assert_eq!(y, vec![0.5, 0.5, 0.8, 0.8, 1.0]);
    }
}
