//! Parity with the reference implementations, on fixtures written by `tools/fixtures/metrics.py`
//! (sklearn 1.9.1, skimage 0.26.0, anomalib 2.7.0 and 2.2.0, the MVTec AD evaluation code and VAND's
//! `cal_pro_score`). Regenerate with `/work/pyenv/bin/python tools/fixtures/metrics.py`.
//!
//! Tolerances, and why:
//! * sklearn AUROC / AP / F1-max, the CLIP-AD AUPRO: `1e-12`. Both sides work in `f64` on identical tie
//!   groups and thresholds; only the summation order differs (≈ 1e-16 per term).
//! * anomalib values (AUPRO new and legacy, trapezoid AUPR, F1Max) and the MVTec reference AUPRO: `1e-6`.
//!   torchmetrics and anomalib compute rates in `float32` (and the MVTec code casts its FPRs to `float32`),
//!   so their results carry ≈ 1e-7 relative rounding that accumulates over the curve; we compute in `f64`.
//! * Curve points `1e-15` (same points; values within a few ulps), thresholds and connected components:
//!   exact.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;

use serde_json::Value;
use vlad_metrics::{
    ApConvention, MapShape, PixelEvaluator, ProConvention, binary_metrics, clip_ad_thresholds, label_components,
    precision_recall_curve, roc_curve,
};

const EXACT_F64: f64 = 1e-12;
const FLOAT32_REFERENCE: f64 = 1e-6;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/metrics")
}

fn expected() -> Value {
    let path = fixture_dir().join("expected.json");
    serde_json::from_reader(BufReader::new(File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))))
        .unwrap()
}

fn read_npy<T: npyz::Deserialize>(name: &str) -> (Vec<T>, Vec<u64>) {
    let path = fixture_dir().join(name);
    let file = File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(BufReader::new(file)).unwrap();
    let shape = npy.shape().to_vec();
    (npy.into_vec().unwrap(), shape)
}

fn assert_close(what: &str, got: Option<f64>, want: &Value, tolerance: f64) {
    match (got, want.as_f64()) {
        (Some(g), Some(w)) => assert!((g - w).abs() <= tolerance, "{what}: got {g:.17}, want {w:.17} (tol {tolerance:e})"),
        (None, None) if want.is_null() => {}
        (g, _) => panic!("{what}: got {g:?}, want {want}"),
    }
}

/// Curve points: the same points, values within a few ulps (sklearn's array-API division is not
/// always the correctly rounded quotient of the two integer counts).
fn assert_all_close(what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: number of points");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-15, "{what}[{i}]: got {g:.17}, want {w:.17}");
    }
}

fn cases(section: &str) -> BTreeMap<String, Value> {
    expected()[section].as_object().unwrap().clone().into_iter().collect()
}

#[test]
fn binary_metrics_match_sklearn_and_anomalib() {
    let cases = cases("binary");
    assert!(cases.len() >= 10);
    for (name, case) in cases {
        let (scores, _) = read_npy::<f32>(&format!("binary_{name}_scores.npy"));
        let (labels, _) = read_npy::<u8>(&format!("binary_{name}_labels.npy"));
        let m = binary_metrics(&scores, &labels).unwrap();
        assert_eq!(m.positives, case["positives"].as_u64().unwrap(), "{name}");
        if case.get("sklearn_auroc_warning").is_some() {
            // sklearn: "Only one class is present in y_true" (NaN); we report undefined.
            assert_eq!((m.auroc, m.average_precision, m.aupr_trapezoid, m.f1_max), (None, None, None, None), "{name}");
            continue;
        }
        assert_close(&format!("{name} auroc"), m.auroc, &case["auroc"], EXACT_F64);
        assert_close(&format!("{name} ap"), m.ap(ApConvention::Step), &case["ap"], EXACT_F64);
        assert_close(&format!("{name} f1"), m.f1_max.map(|f| f.f1), &case["f1_max"], EXACT_F64);
        if let Some(trap) = case.get("aupr_trapezoid") {
            assert_close(&format!("{name} trapezoid"), m.ap(ApConvention::Trapezoid), trap, FLOAT32_REFERENCE);
            assert_close(&format!("{name} anomalib step"), m.average_precision, &case["anomalib_aupr_step"], FLOAT32_REFERENCE);
            assert_close(&format!("{name} anomalib f1"), m.f1_max.map(|f| f.f1), &case["anomalib_f1_max"], FLOAT32_REFERENCE);
            let threshold = case["anomalib_f1_threshold"].as_f64().unwrap() as f32;
            assert_eq!(m.f1_max.unwrap().threshold, threshold, "{name} F1 threshold");
        }
        if let Some(roc) = case.get("roc_curve") {
            let curve = roc_curve(&scores, &labels).unwrap().unwrap();
            let floats = |v: &Value| v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect::<Vec<_>>();
            assert_all_close(&format!("{name} roc fpr"), &curve.fpr, &floats(&roc["fpr"]));
            assert_all_close(&format!("{name} roc tpr"), &curve.tpr, &floats(&roc["tpr"]));
            let thresholds: Vec<f32> =
                roc["thresholds"].as_array().unwrap().iter().map(|x| x.as_f64().map_or(f32::INFINITY, |t| t as f32)).collect();
            assert_eq!(curve.thresholds, thresholds, "{name} roc thresholds");
            let pr = precision_recall_curve(&scores, &labels).unwrap().unwrap();
            let want = &case["pr_curve"];
            assert_all_close(&format!("{name} pr recall"), &pr.recall, &floats(&want["recall"]));
            assert_all_close(&format!("{name} pr precision"), &pr.precision, &floats(&want["precision"]));
            assert_eq!(
                pr.thresholds,
                floats(&want["thresholds"]).into_iter().map(|t| t as f32).collect::<Vec<_>>(),
                "{name} pr thresholds"
            );
        }
    }
}

#[test]
fn connected_components_match_skimage_label() {
    for (name, case) in cases("pixel") {
        let (masks, shape) = read_npy::<u8>(&format!("pixel_{name}_masks.npy"));
        let (labels, _) = read_npy::<i32>(&format!("pixel_{name}_labels.npy"));
        let (h, w) = (shape[1] as usize, shape[2] as usize);
        let mut regions = 0;
        for (mask, want) in masks.chunks(h * w).zip(labels.chunks(h * w)) {
            let comps = label_components(mask, h, w);
            let got: Vec<i32> = comps.labels.iter().map(|&l| l as i32).collect();
            assert_eq!(got, want, "{name}");
            regions += comps.count();
        }
        assert_eq!(regions as u64, case["regions"].as_u64().unwrap(), "{name}");
    }
}

#[test]
fn clip_ad_thresholds_match_numpy_arange() {
    for (name, case) in cases("pixel") {
        let (maps, _) = read_npy::<f32>(&format!("pixel_{name}_maps.npy"));
        let (lo, hi) = maps.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        let want: Vec<f32> =
            case["clip_ad_thresholds"].as_array().unwrap().iter().map(|t| t.as_f64().unwrap() as f32).collect();
        assert_eq!(clip_ad_thresholds(lo, hi), want, "{name}");
    }
    assert_eq!(cases("pixel")["clip_ad_201"]["clip_ad_thresholds"].as_array().unwrap().len(), 201);
}

#[test]
fn pixel_metrics_and_aupro_match_references() {
    let cases = cases("pixel");
    assert!(cases.len() >= 9);
    for (name, case) in cases {
        let (maps, shape) = read_npy::<f32>(&format!("pixel_{name}_maps.npy"));
        let (masks, _) = read_npy::<u8>(&format!("pixel_{name}_masks.npy"));
        let shape = MapShape::new(shape[0] as usize, shape[1] as usize, shape[2] as usize);
        let eval = PixelEvaluator::new(&maps, &masks, shape).unwrap();
        let m = eval.binary_metrics();
        let regions = case["regions"].as_u64().unwrap() as usize;
        if case.get("anomalib_aupro_single_label").is_some() {
            // anomalib 2.7 returns 0 here; the metric is undefined.
            assert_eq!((m.auroc, m.average_precision, m.f1_max), (None, None, None), "{name}");
            for convention in [ProConvention::Anomalib, ProConvention::AnomalibLegacy, ProConvention::ClipAd] {
                assert_eq!(eval.aupro(convention), (None, regions), "{name} {convention:?}");
            }
            continue;
        }
        assert_close(&format!("{name} pixel auroc"), m.auroc, &case["pixel_auroc"], EXACT_F64);
        assert_close(&format!("{name} pixel ap"), m.average_precision, &case["pixel_ap"], EXACT_F64);
        assert_close(&format!("{name} pixel f1"), m.f1_max.map(|f| f.f1), &case["pixel_f1_max"], EXACT_F64);

        let (anomalib, n) = eval.aupro(ProConvention::Anomalib);
        assert_eq!(n, regions, "{name}");
        assert_close(&format!("{name} aupro anomalib"), anomalib, &case["aupro_anomalib"], FLOAT32_REFERENCE);
        assert_close(&format!("{name} aupro mvtec"), anomalib, &case["aupro_mvtec_reference"], FLOAT32_REFERENCE);
        let (legacy, _) = eval.aupro(ProConvention::AnomalibLegacy);
        assert_close(&format!("{name} aupro legacy"), legacy, &case["aupro_anomalib_legacy"], FLOAT32_REFERENCE);
        let (clip_ad, _) = eval.aupro(ProConvention::ClipAd);
        assert_close(&format!("{name} aupro clip-ad"), clip_ad, case.get("aupro_clip_ad").unwrap_or(&Value::Null), EXACT_F64);

        // The curve's own area is the reported value.
        for convention in [ProConvention::Anomalib, ProConvention::AnomalibLegacy, ProConvention::ClipAd] {
            let (curve, _) = eval.pro_curve(convention);
            assert_eq!(curve.and_then(|c| c.aupro), eval.aupro(convention).0, "{name} {convention:?}");
        }
    }
}
