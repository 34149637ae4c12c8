//! Per-class results and macro averages (spec §1: metrics per class, unweighted mean over classes).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::binary::{ApConvention, BinaryMetrics};
use crate::pixel::PixelMetrics;
use crate::pro::ProConvention;

/// One reported metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Image-level AUROC.
    ImageAuroc,
    /// Image-level AP.
    ImageAp,
    /// Image-level F1-max.
    ImageF1Max,
    /// Pixel-level AUROC.
    PixelAuroc,
    /// Pixel-level AP.
    PixelAp,
    /// Pixel-level F1-max.
    PixelF1Max,
    /// AUPRO.
    Aupro,
}

impl Metric {
    /// Every metric, in table order.
    pub const ALL: [Metric; 7] = [
        Metric::ImageAuroc,
        Metric::ImageAp,
        Metric::ImageF1Max,
        Metric::PixelAuroc,
        Metric::PixelAp,
        Metric::PixelF1Max,
        Metric::Aupro,
    ];

    /// The snake_case key used in JSON and CSV (`image_auroc`, …, `aupro`).
    pub fn key(self) -> &'static str {
        match self {
            Metric::ImageAuroc => "image_auroc",
            Metric::ImageAp => "image_ap",
            Metric::ImageF1Max => "image_f1_max",
            Metric::PixelAuroc => "pixel_auroc",
            Metric::PixelAp => "pixel_ap",
            Metric::PixelF1Max => "pixel_f1_max",
            Metric::Aupro => "aupro",
        }
    }

    /// A short column header for human-readable tables.
    pub fn header(self) -> &'static str {
        match self {
            Metric::ImageAuroc => "I-AUROC",
            Metric::ImageAp => "I-AP",
            Metric::ImageF1Max => "I-F1max",
            Metric::PixelAuroc => "P-AUROC",
            Metric::PixelAp => "P-AP",
            Metric::PixelF1Max => "P-F1max",
            Metric::Aupro => "AUPRO",
        }
    }
}

/// How undefined per-class values enter a macro average.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UndefinedPolicy {
    /// Leave them out of the mean (and say so in a note). The default.
    #[default]
    Skip,
    /// Count them as 0, as AA-CLIP, AdaCLIP and Bayes-PFL print them; only for table parity.
    Zero,
}

/// Metrics of one class, as fractions in [0, 1]; `None` where undefined or not computed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// Class name.
    pub class: String,
    /// Image AUROC.
    pub image_auroc: Option<f64>,
    /// Image AP.
    pub image_ap: Option<f64>,
    /// Image F1-max.
    pub image_f1_max: Option<f64>,
    /// Pixel AUROC.
    pub pixel_auroc: Option<f64>,
    /// Pixel AP.
    pub pixel_ap: Option<f64>,
    /// Pixel F1-max.
    pub pixel_f1_max: Option<f64>,
    /// AUPRO.
    pub aupro: Option<f64>,
    /// Why values are missing (e.g. "image metrics undefined: all 60 images are anomalous").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

fn single_label_note(level: &str, unit: &str, m: &BinaryMetrics) -> Option<String> {
    let total = m.positives + m.negatives;
    if m.negatives == 0 {
        Some(format!("{level} metrics undefined: all {total} {unit} are anomalous"))
    } else if m.positives == 0 {
        Some(format!("{level} metrics undefined: all {total} {unit} are normal"))
    } else {
        None
    }
}

impl ClassMetrics {
    /// An empty row for `class`.
    pub fn new(class: impl Into<String>) -> Self {
        Self { class: class.into(), ..Self::default() }
    }

    /// A row from image-level and pixel-level results, with AP under `ap`; notes say why values are
    /// undefined.
    pub fn from_results(
        class: impl Into<String>,
        image: Option<&BinaryMetrics>,
        pixel: Option<&PixelMetrics>,
        ap: ApConvention,
    ) -> Self {
        let mut row = Self::new(class);
        if let Some(m) = image {
            row.image_auroc = m.auroc;
            row.image_ap = m.ap(ap);
            row.image_f1_max = m.f1_max.map(|f| f.f1);
            row.notes.extend(single_label_note("image", "images", m));
        }
        if let Some(p) = pixel {
            let m = &p.binary;
            row.pixel_auroc = m.auroc;
            row.pixel_ap = m.ap(ap);
            row.pixel_f1_max = m.f1_max.map(|f| f.f1);
            row.notes.extend(single_label_note("pixel", "pixels", m));
            if let Some(convention) = p.pro_convention {
                row.aupro = p.aupro;
                if p.aupro.is_none() {
                    row.notes.push(match p.regions {
                        Some(0) => "AUPRO undefined: no anomalous region".to_string(),
                        _ if m.negatives == 0 => "AUPRO undefined: no normal pixel".to_string(),
                        _ => format!("AUPRO ({}) undefined: degenerate curve (too few distinct scores)", convention.name()),
                    });
                }
            }
        }
        row
    }

    /// The value of `metric`.
    pub fn get(&self, metric: Metric) -> Option<f64> {
        match metric {
            Metric::ImageAuroc => self.image_auroc,
            Metric::ImageAp => self.image_ap,
            Metric::ImageF1Max => self.image_f1_max,
            Metric::PixelAuroc => self.pixel_auroc,
            Metric::PixelAp => self.pixel_ap,
            Metric::PixelF1Max => self.pixel_f1_max,
            Metric::Aupro => self.aupro,
        }
    }

    /// Sets the value of `metric`.
    pub fn set(&mut self, metric: Metric, value: Option<f64>) {
        let slot = match metric {
            Metric::ImageAuroc => &mut self.image_auroc,
            Metric::ImageAp => &mut self.image_ap,
            Metric::ImageF1Max => &mut self.image_f1_max,
            Metric::PixelAuroc => &mut self.pixel_auroc,
            Metric::PixelAp => &mut self.pixel_ap,
            Metric::PixelF1Max => &mut self.pixel_f1_max,
            Metric::Aupro => &mut self.aupro,
        };
        *slot = value;
    }
}

/// Per-class rows of one dataset plus the conventions they were computed with.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsTable {
    /// One row per class, in report order.
    pub classes: Vec<ClassMetrics>,
    /// The AP definition used for `image_ap` and `pixel_ap`.
    pub ap_convention: ApConvention,
    /// The AUPRO convention, if AUPRO was computed.
    pub pro_convention: Option<ProConvention>,
}

impl MetricsTable {
    /// Metrics that at least one class reports (defined or not computed columns are dropped).
    fn reported(&self) -> Vec<Metric> {
        Metric::ALL
            .into_iter()
            .filter(|&m| {
                self.classes.iter().any(|c| c.get(m).is_some())
                    || (m == Metric::Aupro && self.pro_convention.is_some() && !self.classes.is_empty())
            })
            .collect()
    }

    /// Unweighted mean over classes of every metric. Under [`UndefinedPolicy::Skip`] a metric's mean
    /// covers the classes where it is defined (a note says how many were left out); under
    /// [`UndefinedPolicy::Zero`] undefined values count as 0 — the repositories' convention.
    /// A metric no class defines stays `None`.
    pub fn macro_mean(&self, policy: UndefinedPolicy) -> ClassMetrics {
        let mut mean = ClassMetrics::new("mean");
        for metric in Metric::ALL {
            let values: Vec<Option<f64>> = self.classes.iter().map(|c| c.get(metric)).collect();
            let defined: Vec<f64> = values.iter().flatten().copied().collect();
            if defined.is_empty() {
                continue;
            }
            let undefined = values.len() - defined.len();
            let value = match policy {
                UndefinedPolicy::Skip => defined.iter().sum::<f64>() / defined.len() as f64,
                UndefinedPolicy::Zero => defined.iter().sum::<f64>() / values.len() as f64,
            };
            mean.set(metric, Some(value));
            if undefined > 0 {
                mean.notes.push(match policy {
                    UndefinedPolicy::Skip => format!(
                        "{}: mean of {} classes ({undefined} undefined left out)",
                        metric.key(),
                        defined.len()
                    ),
                    UndefinedPolicy::Zero => {
                        format!("{}: {undefined} undefined counted as 0 (repository convention)", metric.key())
                    }
                });
            }
        }
        mean
    }

    fn cell(value: Option<f64>, policy: UndefinedPolicy) -> Option<f64> {
        match policy {
            UndefinedPolicy::Skip => value,
            UndefinedPolicy::Zero => Some(value.unwrap_or(0.0)),
        }
    }

    /// A Markdown table in percent with `decimals` decimals, a mean row, and the notes as a list below.
    /// Undefined values print as "–" (or 0 under [`UndefinedPolicy::Zero`]).
    pub fn to_markdown(&self, policy: UndefinedPolicy, decimals: usize) -> String {
        let metrics = self.reported();
        let mut out = String::from("| class |");
        for m in &metrics {
            let _ = write!(out, " {} |", m.header());
        }
        out.push_str("\n|---|");
        out.push_str(&"---:|".repeat(metrics.len()));
        out.push('\n');
        let mean = self.macro_mean(policy);
        for row in self.classes.iter().chain(std::iter::once(&mean)) {
            let _ = write!(out, "| {} |", row.class.replace('|', "\\|"));
            for &m in &metrics {
                match Self::cell(row.get(m), policy) {
                    Some(v) => {
                        let _ = write!(out, " {:.*} |", decimals, v * 100.0);
                    }
                    None => out.push_str(" – |"),
                }
            }
            out.push('\n');
        }
        let mut notes = vec![format!("AP: {}", match self.ap_convention {
            ApConvention::Step => "step-wise (sklearn)",
            ApConvention::Trapezoid => "trapezoid (anomalib ≤ 2.6)",
        })];
        if let Some(p) = self.pro_convention {
            notes.push(format!("AUPRO: {}", p.name()));
        }
        for row in self.classes.iter().chain(std::iter::once(&mean)) {
            notes.extend(row.notes.iter().map(|n| format!("{}: {n}", row.class)));
        }
        out.push('\n');
        for note in notes {
            let _ = writeln!(out, "- {note}");
        }
        out
    }

    /// CSV with a header row, one row per class and a final `mean` row; values are fractions with full
    /// precision, undefined values are empty cells (0 under [`UndefinedPolicy::Zero`]).
    pub fn to_csv(&self, policy: UndefinedPolicy) -> String {
        let metrics = self.reported();
        let quote = |s: &str| {
            if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
        };
        let mut out = String::from("class");
        for m in &metrics {
            let _ = write!(out, ",{}", m.key());
        }
        out.push('\n');
        let mean = self.macro_mean(policy);
        for row in self.classes.iter().chain(std::iter::once(&mean)) {
            out.push_str(&quote(&row.class));
            for &m in &metrics {
                out.push(',');
                if let Some(v) = Self::cell(row.get(m), policy) {
                    let _ = write!(out, "{v}");
                }
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> MetricsTable {
        let mut a = ClassMetrics::new("bottle");
        a.image_auroc = Some(0.9);
        a.pixel_auroc = Some(0.8);
        let mut b = ClassMetrics::new("colon, \"cvc\"");
        b.pixel_auroc = Some(0.6);
        b.notes.push("image metrics undefined: all 60 images are anomalous".into());
        MetricsTable { classes: vec![a, b], ..Default::default() }
    }

    #[test]
    fn macro_mean_skips_or_zeroes_undefined() {
        let t = table();
        let skip = t.macro_mean(UndefinedPolicy::Skip);
        assert_eq!(skip.image_auroc, Some(0.9));
        assert!((skip.pixel_auroc.unwrap() - 0.7).abs() < 1e-15);
        assert_eq!(skip.image_ap, None);
        assert_eq!(skip.notes, vec!["image_auroc: mean of 1 classes (1 undefined left out)".to_string()]);
        assert_eq!(t.macro_mean(UndefinedPolicy::Zero).image_auroc, Some(0.45));
    }

    #[test]
    fn renders_markdown_and_csv() {
        let t = table();
        let md = t.to_markdown(UndefinedPolicy::Skip, 1);
        assert!(md.starts_with("| class | I-AUROC | P-AUROC |\n|---|---:|---:|\n| bottle | 90.0 | 80.0 |\n"), "{md}");
        assert!(md.contains("| colon, \"cvc\" | – | 60.0 |"));
        assert!(md.contains("| mean | 90.0 | 70.0 |"));
        let csv = t.to_csv(UndefinedPolicy::Skip);
        assert_eq!(csv.lines().next(), Some("class,image_auroc,pixel_auroc"));
        assert_eq!(csv.lines().nth(2), Some("\"colon, \"\"cvc\"\"\",,0.6"));
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<MetricsTable>(&json).unwrap(), t);
    }
}
