//! `vlad metrics`: image and pixel metrics of one class from `.npy` files (crate `vlad-metrics`).
//!
//! Scores are float32 `[N]` with labels uint8/bool `[N]`; maps are float32 `[N, H, W]` with masks
//! uint8/bool `[N, H, W]` (non-zero = anomalous). `--json` prints one object with the keys
//! `image_auroc`, `image_ap`, `image_f1_max`, `pixel_auroc`, `pixel_ap`, `pixel_f1_max`, `aupro` as
//! fractions in [0, 1]: keys of inputs not given are omitted, undefined values are `null`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value, json};
use vlad_metrics::{ApConvention, BinaryMetrics, MapShape, PixelEvaluator, PixelMetrics, ProConvention};

use super::eval::ProChoice;

/// Arguments of `vlad metrics`.
#[derive(clap::Args, Debug)]
pub struct MetricsArgs {
    /// Image scores, float32 [N].
    #[arg(long, value_name = "S.npy", requires = "labels")]
    scores: Option<PathBuf>,
    /// Image labels, uint8 or bool [N] (non-zero = anomalous).
    #[arg(long, value_name = "L.npy", requires = "scores")]
    labels: Option<PathBuf>,
    /// Anomaly maps, float32 [N, H, W].
    #[arg(long, value_name = "M.npy", requires = "masks")]
    maps: Option<PathBuf>,
    /// Ground-truth masks, uint8 or bool [N, H, W] (non-zero = anomalous).
    #[arg(long, value_name = "K.npy", requires = "maps")]
    masks: Option<PathBuf>,
    /// AUPRO convention: anomalib (= official MVTec, anomalib ≥ 2.3), anomalib-legacy (anomalib ≤ 2.2),
    /// clipad (VAND / AnomalyCLIP, 200 thresholds, rescaled FPR), or none.
    #[arg(long, value_enum, default_value_t = ProChoice::Anomalib)]
    pro: ProChoice,
    /// AP definition: step (sklearn, the papers) or trapezoid (anomalib ≤ 2.6 AUPR).
    #[arg(long, value_enum, default_value_t = ApChoice::Step)]
    ap: ApChoice,
    /// Print one JSON object instead of the human-readable report.
    #[arg(long)]
    json: bool,
}


#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ApChoice {
    Step,
    Trapezoid,
}

/// Runs `vlad metrics`.
pub fn run(args: MetricsArgs) -> Result<()> {
    if args.scores.is_none() && args.maps.is_none() {
        bail!("nothing to evaluate: give --scores S.npy --labels L.npy and/or --maps M.npy --masks K.npy");
    }
    let ap = match args.ap {
        ApChoice::Step => ApConvention::Step,
        ApChoice::Trapezoid => ApConvention::Trapezoid,
    };
    let image = match (&args.scores, &args.labels) {
        (Some(scores_path), Some(labels_path)) => {
            let (scores, scores_shape) = read_f32(scores_path)?;
            expect_rank(scores_path, &scores_shape, 1, "[N]")?;
            let (labels, labels_shape) = read_labels(labels_path)?;
            if labels_shape != scores_shape {
                bail!(
                    "{}: shape {labels_shape:?} does not match the scores' {scores_shape:?} in {}",
                    labels_path.display(),
                    scores_path.display()
                );
            }
            let metrics = vlad_metrics::binary_metrics(&scores, &labels)
                .with_context(|| format!("{} / {}", scores_path.display(), labels_path.display()))?;
            Some(metrics)
        }
        _ => None,
    };
    let pixel = match (&args.maps, &args.masks) {
        (Some(maps_path), Some(masks_path)) => {
            let (maps, maps_shape) = read_f32(maps_path)?;
            expect_rank(maps_path, &maps_shape, 3, "[N, H, W]")?;
            let (masks, masks_shape) = read_labels(masks_path)?;
            if masks_shape != maps_shape {
                bail!(
                    "{}: shape {masks_shape:?} does not match the maps' {maps_shape:?} in {}",
                    masks_path.display(),
                    maps_path.display()
                );
            }
            let shape = MapShape::new(maps_shape[0], maps_shape[1], maps_shape[2]);
            let evaluator = PixelEvaluator::new(&maps, &masks, shape)
                .with_context(|| format!("{} / {}", maps_path.display(), masks_path.display()))?;
            Some((shape, evaluator.metrics(args.pro.convention())))
        }
        _ => None,
    };
    if args.json {
        println!("{}", serde_json::to_string(&json_report(image.as_ref(), pixel.as_ref().map(|p| &p.1), ap))?);
    } else {
        print!("{}", text_report(image.as_ref(), pixel.as_ref(), ap));
    }
    Ok(())
}

fn json_report(image: Option<&BinaryMetrics>, pixel: Option<&PixelMetrics>, ap: ApConvention) -> Value {
    let mut out = Map::new();
    if let Some(m) = image {
        out.insert("image_auroc".into(), json!(m.auroc));
        out.insert("image_ap".into(), json!(m.ap(ap)));
        out.insert("image_f1_max".into(), json!(m.f1_max.map(|f| f.f1)));
    }
    if let Some(p) = pixel {
        out.insert("pixel_auroc".into(), json!(p.binary.auroc));
        out.insert("pixel_ap".into(), json!(p.binary.ap(ap)));
        out.insert("pixel_f1_max".into(), json!(p.binary.f1_max.map(|f| f.f1)));
        if p.pro_convention.is_some() {
            out.insert("aupro".into(), json!(p.aupro));
        }
    }
    Value::Object(out)
}

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "undefined".to_string(), |v| format!("{:6.2} %", v * 100.0))
}

fn binary_lines(m: &BinaryMetrics, ap: ApConvention, unit: &str) -> String {
    if m.positives == 0 || m.negatives == 0 {
        let which = if m.positives == 0 { "normal" } else { "anomalous" };
        return format!("  AUROC, AP, F1-max: undefined (all {} {unit} are {which})\n", m.positives + m.negatives);
    }
    let ap_name = match ap {
        ApConvention::Step => "step-wise, sklearn",
        ApConvention::Trapezoid => "trapezoid, anomalib ≤ 2.6",
    };
    let mut s = format!("  AUROC   {}\n  AP      {}   ({ap_name})\n", percent(m.auroc), percent(m.ap(ap)));
    if let Some(f1) = m.f1_max {
        s += &format!(
            "  F1-max  {}   (threshold {}, precision {:.4}, recall {:.4})\n",
            percent(Some(f1.f1)),
            f1.threshold,
            f1.precision,
            f1.recall
        );
    }
    s
}

fn text_report(image: Option<&BinaryMetrics>, pixel: Option<&(MapShape, PixelMetrics)>, ap: ApConvention) -> String {
    let mut s = String::new();
    if let Some(m) = image {
        s += &format!("image: {} images ({} normal, {} anomalous)\n", m.positives + m.negatives, m.negatives, m.positives);
        s += &binary_lines(m, ap, "images");
    }
    if let Some((shape, p)) = pixel {
        let m = &p.binary;
        let total = m.positives + m.negatives;
        s += &format!(
            "pixel: {} × {} × {} = {total} pixels ({:.2} % anomalous)\n",
            shape.n,
            shape.height,
            shape.width,
            m.positives as f64 / total as f64 * 100.0
        );
        s += &binary_lines(m, ap, "pixels");
        if let Some(convention) = p.pro_convention {
            let name = match convention {
                ProConvention::Anomalib => "anomalib ≥ 2.3 / official MVTec: exact curve, FPR ≤ 0.3, ÷ 0.3",
                ProConvention::AnomalibLegacy => "anomalib ≤ 2.2: per-region resampled curves",
                ProConvention::ClipAd => "CLIP-AD: 200 thresholds, FPR < 0.3 rescaled to [0, 1]",
            };
            s += &format!("  AUPRO   {}   ({name}; {} regions)\n", percent(p.aupro), p.regions.unwrap_or(0));
        }
    }
    s
}

fn read_npy<T>(path: &Path, read: fn(&[u8]) -> Result<T, vlad_data::npy::NpyError>) -> Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    read(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Reads a little-endian float32 array and its shape (refuses other dtypes, naming the file: the
/// metrics are defined on float32 scores, and a silent conversion could merge distinct scores into
/// ties; convert with `.astype(np.float32)`).
pub(crate) fn read_f32(path: &Path) -> Result<(Vec<f32>, Vec<usize>)> {
    read_npy(path, vlad_data::npy::read_f32)
}

/// Reads a uint8 or bool array (non-zero = anomalous) and its shape.
fn read_labels(path: &Path) -> Result<(Vec<u8>, Vec<usize>)> {
    read_npy(path, vlad_data::npy::read_u8_or_bool)
}

fn expect_rank(path: &Path, shape: &[usize], rank: usize, expected: &str) -> Result<()> {
    if shape.len() != rank {
        bail!("{}: shape {shape:?}, expected {expected}", path.display());
    }
    if shape.contains(&0) {
        bail!("{}: shape {shape:?} has no values", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_npy(path: &Path, descr: &str, shape: &[usize], data: &[u8]) {
        let dims = match shape {
            [one] => format!("({one},)"),
            _ => format!("({})", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
        };
        let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}");
        header.push_str(&" ".repeat((64 - (10 + header.len() + 1) % 64) % 64));
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        std::fs::write(path, out).unwrap();
    }

    fn f32_bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn args(dir: &Path, pro: ProChoice) -> MetricsArgs {
        MetricsArgs {
            scores: Some(dir.join("s.npy")),
            labels: Some(dir.join("l.npy")),
            maps: Some(dir.join("m.npy")),
            masks: Some(dir.join("k.npy")),
            pro,
            ap: ApChoice::Step,
            json: true,
        }
    }

    #[test]
    fn reads_inputs_and_reports_every_key() {
        let dir = std::env::temp_dir().join(format!("vlad-metrics-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_npy(&dir.join("s.npy"), "<f4", &[4], &f32_bytes(&[0.1, 0.4, 0.35, 0.8]));
        write_npy(&dir.join("l.npy"), "|b1", &[4], &[0, 0, 1, 1]);
        write_npy(&dir.join("m.npy"), "<f4", &[2, 2, 2], &f32_bytes(&[0.9, 0.2, 0.1, 0.3, 0.2, 0.1, 0.0, 0.4]));
        write_npy(&dir.join("k.npy"), "|u1", &[2, 2, 2], &[255, 0, 0, 0, 0, 0, 0, 0]);
        let a = args(&dir, ProChoice::Anomalib);
        let (scores, _) = read_f32(a.scores.as_ref().unwrap()).unwrap();
        let (labels, _) = read_labels(a.labels.as_ref().unwrap()).unwrap();
        let image = vlad_metrics::binary_metrics(&scores, &labels).unwrap();
        let (maps, _) = read_f32(a.maps.as_ref().unwrap()).unwrap();
        let (masks, _) = read_labels(a.masks.as_ref().unwrap()).unwrap();
        let pixel = PixelEvaluator::new(&maps, &masks, MapShape::new(2, 2, 2)).unwrap().metrics(Some(ProConvention::Anomalib));
        let report = json_report(Some(&image), Some(&pixel), ApConvention::Step);
        let keys: Vec<&str> = report.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 7, "{keys:?}");
        assert_eq!(report["image_auroc"], json!(0.75));
        assert_eq!(report["pixel_auroc"], json!(1.0));
        assert_eq!(report["aupro"], json!(1.0));
        assert!(run(a).is_ok());
        let text = text_report(Some(&image), Some(&(MapShape::new(2, 2, 2), pixel)), ApConvention::Step);
        assert!(text.contains("AUROC    75.00 %"), "{text}");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn rejects_wrong_dtype_and_shape_with_file_names() {
        let dir = std::env::temp_dir().join(format!("vlad-metrics-cli-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_npy(&dir.join("s.npy"), "<f8", &[2], &[0; 16]);
        write_npy(&dir.join("l.npy"), "<i8", &[2], &[0; 16]);
        write_npy(&dir.join("m.npy"), "<f4", &[2, 2], &f32_bytes(&[0.0; 4]));
        let err = read_f32(&dir.join("s.npy")).unwrap_err().to_string();
        assert!(err.contains("s.npy") && err.contains("<f8") && err.contains("float32"), "{err}");
        let err = read_labels(&dir.join("l.npy")).unwrap_err().to_string();
        assert!(err.contains("l.npy") && err.contains("<i8") && err.contains("uint8"), "{err}");
        let (_, shape) = read_f32(&dir.join("m.npy")).unwrap();
        let err = expect_rank(&dir.join("m.npy"), &shape, 3, "[N, H, W]").unwrap_err().to_string();
        assert!(err.contains("m.npy") && err.contains("[2, 2]") && err.contains("[N, H, W]"), "{err}");
        let mut a = args(&dir, ProChoice::None);
        (a.maps, a.masks) = (None, None);
        let err = run(a).unwrap_err().to_string();
        assert!(err.contains("s.npy"), "{err}");
        std::fs::remove_dir_all(dir).ok();
    }
}
