//! `vlad eval` end to end with the built-in baseline detector, run as a user would: on a synthetic
//! dataset written by `vlad data synth`, and on the committed synthetic fixture against a Python
//! reference of the whole pipeline (`tools/fixtures/eval.py`).
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use vlad_data::load::resize_binary_mask;
use vlad_data::{LoadOptions, MaskRule, Split};
use vlad_metrics::{MapShape, ProConvention};

const METRICS: [&str; 7] = ["image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_ap", "pixel_f1_max", "aupro"];

fn vlad() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vlad"))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vlad-cli-eval-{}-{name}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/eval")
}

fn output(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

fn run(cmd: &mut Command) -> Output {
    let out = output(cmd);
    assert!(out.status.success(), "{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn read_map(path: &Path) -> (Vec<u64>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    (npy.shape().to_vec(), npy.into_vec::<f32>().unwrap())
}

fn class<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["classes"].as_array().unwrap().iter().find(|c| c["class"] == name).unwrap_or_else(|| panic!("no class {name}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12
}

#[test]
fn eval_on_synthetic_data_reports_tables_curves_maps_and_skipped_images() {
    let root = scratch("synth");
    let (data, maps, plots, results) = (root.join("data"), root.join("maps"), root.join("plots"), root.join("out/results.json"));
    run(vlad().args(["data", "synth", "--classes", "washer,pill", "--per-class", "6", "--size", "64", "--seed", "5", "--out"]).arg(&data));
    // One unreadable test image: it must be reported, skipped and listed, not stop the run.
    let corrupt = data.join("pill/test/good/000.png");
    std::fs::write(&corrupt, b"not a png").unwrap();

    let eval = |extra: &[&str]| {
        let mut cmd = vlad();
        cmd.args(["eval", "--detector", "baseline", "--baseline-size", "32", "--baseline-patch", "8", "--batch", "4", "--data"])
            .arg(&data)
            .arg("--save-maps")
            .arg(&maps)
            .arg("--plots")
            .arg(&plots)
            .arg("--out")
            .arg(&results)
            .args(extra);
        cmd
    };
    let out = run(&mut eval(&[]));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.starts_with("| class | I-AUROC | I-AP | I-F1max | P-AUROC | P-AP | P-F1max | AUPRO |"), "{stdout}");
    assert!(stdout.contains("| washer |") && stdout.contains("| pill |") && stdout.contains("| mean |"), "{stdout}");
    assert!(stderr.contains("pill/test/good/000.png"), "the skipped file is named on stderr: {stderr}");

    // The results JSON: provenance, protocol, every metric as a fraction.
    let report = read_json(&results);
    assert_eq!(report["vlad_version"], env!("CARGO_PKG_VERSION"));
    let command: Vec<&str> = report["command"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(&command[1..4], ["eval", "--detector", "baseline"]);
    assert!(report["date"].as_str().unwrap().ends_with('Z'));
    assert_eq!(report["detector"]["name"], "baseline");
    assert_eq!(report["detector"]["options"]["baseline-size"], "32");
    assert_eq!((report["detector"]["input_size"].as_u64(), report["detector"]["map_size"].as_u64()), (Some(32), Some(32)));
    assert_eq!(report["detector"]["grid"], 4);
    assert_eq!(report["dataset"]["format"], "meta-json");
    assert_eq!(report["dataset"]["classes"], serde_json::json!(["washer", "pill"]));
    let protocol = &report["protocol"];
    assert_eq!((protocol["mask_rule"].as_str(), protocol["pro"].as_str(), protocol["ap"].as_str()), (Some("nearest"), Some("anomalib"), Some("step")));
    assert_eq!((protocol["shots"].as_str(), protocol["set_fusion"]["applied"].as_str()), (Some("all"), Some("none")));
    assert!(report["deployable"].is_null(), "no fusion, no separate deployable table");
    for row in report["classes"].as_array().unwrap().iter().chain(std::iter::once(&report["mean"])) {
        for key in METRICS {
            let v = row[key].as_f64().unwrap_or_else(|| panic!("{key} undefined in {row}"));
            assert!((0.0..=1.0).contains(&v), "{key} = {v}");
        }
    }
    let pill = class(&report, "pill");
    assert_eq!((pill["images"].as_u64(), pill["skipped"].as_u64(), pill["references"].as_u64()), (Some(5), Some(1), Some(6)));
    assert_eq!((pill["normal"].as_u64(), pill["anomalous"].as_u64()), (Some(1), Some(4)));
    let skipped = report["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1);
    assert_eq!((skipped[0]["image"].as_str(), skipped[0]["role"].as_str()), (Some("pill/test/good/000.png"), Some("test")));
    assert!(skipped[0]["error"].as_str().unwrap().contains("000.png"));
    let mean = &report["mean"];
    for key in METRICS {
        let per_class: Vec<f64> = report["classes"].as_array().unwrap().iter().map(|c| c[key].as_f64().unwrap()).collect();
        assert!(close(mean[key].as_f64().unwrap(), per_class.iter().sum::<f64>() / 2.0), "{key}: unweighted mean");
    }

    // Tables beside the JSON.
    let csv = std::fs::read_to_string(root.join("out/results.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "class,image_auroc,image_ap,image_f1_max,pixel_auroc,pixel_ap,pixel_f1_max,aupro");
    assert_eq!(lines.len(), 4);
    assert!(lines[3].starts_with("mean,"));
    let md = std::fs::read_to_string(root.join("out/results.md")).unwrap();
    assert!(md.contains("| mean |") && md.contains("AUPRO: anomalib"));

    // Curves as PNG images with the expected size.
    for name in ["pill", "washer"] {
        for kind in ["roc", "pr", "pro"] {
            let png = plots.join(format!("{name}_{kind}.png"));
            let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
            let image = vlad_imaging::open_rgb(&png).unwrap();
            assert_eq!(image.dimensions(), (720, 540));
        }
    }
    assert_eq!(report["outputs"]["plots"].as_array().unwrap().len(), 6);

    // Consistency: the metrics of a class equal vlad-metrics run directly on the saved maps, the
    // reported scores and the masks loaded with the same rule.
    let index = vlad_data::open_dataset(&data, &Default::default()).unwrap();
    let images: Vec<&Value> = report["images"].as_array().unwrap().iter().filter(|r| r["class"] == "washer").collect();
    let samples: Vec<_> = index.select("washer", Split::Test).collect();
    assert_eq!(images.len(), samples.len());
    let (mut all_maps, mut all_masks, mut scores, mut labels) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (record, sample) in images.iter().zip(&samples) {
        assert_eq!(record["image"].as_str().unwrap(), index.relative(&sample.image_path).to_str().unwrap());
        let (shape, map) = read_map(Path::new(record["map"].as_str().unwrap()));
        assert_eq!(shape, vec![32, 32]);
        // The score is the map's maximum.
        assert_eq!(record["score"].as_f64().unwrap() as f32, map.iter().copied().fold(f32::MIN, f32::max));
        all_maps.extend(map);
        let loaded = vlad_data::load_sample(sample, &LoadOptions::default()).unwrap();
        all_masks.extend(resize_binary_mask(&loaded.mask, 32, 32, MaskRule::Nearest).as_raw().iter().map(|&v| u8::from(v != 0)));
        scores.push(record["score"].as_f64().unwrap() as f32);
        labels.push(record["label"] == "anomalous");
    }
    assert!(maps.join("washer/test/good/000.npy").is_file(), "maps mirror the dataset layout");
    let image = vlad_metrics::binary_metrics(&scores, &labels).unwrap();
    let pixel = vlad_metrics::pixel_metrics(&all_maps, &all_masks, MapShape::new(samples.len(), 32, 32), Some(ProConvention::Anomalib)).unwrap();
    let washer = class(&report, "washer");
    let direct = [
        image.auroc,
        image.average_precision,
        image.f1_max.map(|f| f.f1),
        pixel.binary.auroc,
        pixel.binary.average_precision,
        pixel.binary.f1_max.map(|f| f.f1),
        pixel.aupro,
    ];
    for (key, want) in METRICS.iter().zip(direct) {
        assert!(close(washer[key].as_f64().unwrap(), want.unwrap()), "{key}: {} vs {want:?}", washer[key]);
    }

    // Nothing is overwritten without --force.
    let refused = output(&mut eval(&[]));
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("already exist"));
    run(&mut eval(&["--force", "--classes", "washer", "--pro", "clipad", "--shots", "2"]));
    let again = read_json(&results);
    assert_eq!(again["classes"].as_array().unwrap().len(), 1);
    assert_eq!((again["protocol"]["pro"].as_str(), again["protocol"]["shots"].as_str()), (Some("clip-ad"), Some("2")));
    assert_eq!(class(&again, "washer")["references"], 2);
    std::fs::remove_dir_all(root).ok();
}

/// The baseline evaluated on a committed synthetic dataset equals the same pipeline written in
/// Python: PIL decoding and bicubic resize, NumPy baseline, PIL NEAREST masks, scikit-learn AUROC /
/// AP / F1-max and the official MVTec AUPRO (`tools/fixtures/eval.py`).
///
/// Tolerances: image scores are maxima of maps that agree to f32 rounding, and the image scores of
/// a class are at least 1.5 % apart, so the image metrics agree to f64 rounding (1e-9). Some
/// distinct pixel values are only about one ulp apart (smallest relative gap 6e-8 on this fixture),
/// so another summation order could swap such neighbours: a swap moves pixel AUROC by 1/(P·N)
/// (about 1e-6 here) and AP, F1-max and AUPRO by O(1/(P·rank)); 1e-4 admits a few swaps away from
/// the top ranks. On the flex backend every value currently agrees to 1e-15.
#[test]
fn baseline_metrics_match_the_python_reference_pipeline() {
    let root = scratch("reference");
    let results = root.join("results.json");
    let data = fixtures().join("synth");
    run(vlad()
        .args(["eval", "--detector", "baseline", "--baseline-size", "32", "--baseline-patch", "8", "--format", "mvtec", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&results));
    let report = read_json(&results);
    let reference = read_json(&fixtures().join("synth_reference.json"));
    for (name, want) in reference["classes"].as_object().unwrap() {
        let got = class(&report, name);
        assert_eq!(got["images"], want["images"], "{name}");
        for key in METRICS {
            let (g, w) = (got[key].as_f64().unwrap(), want[key].as_f64().unwrap());
            let tol = if key.starts_with("image") { 1e-9 } else { 1e-4 };
            assert!((g - w).abs() <= tol, "{name} {key}: vlad {g} vs reference {w}");
        }
    }
    std::fs::remove_dir_all(root).ok();
}

#[test]
fn bad_requests_are_clear_errors() {
    let data = fixtures().join("synth");
    let fail = |args: &[&str]| {
        let out = output(vlad().args(["eval", "--detector", "baseline", "--baseline-size", "32", "--baseline-patch", "8", "--data"]).arg(&data).args(args));
        assert!(!out.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = fail(&["--classes", "bottle"]);
    assert!(err.contains("\"bottle\"") && err.contains("washer"), "{err}");
    let err = fail(&["--shots", "50"]);
    assert!(err.contains("6 normal images") && err.contains("50 are needed"), "{err}");
    let err = fail(&["--weights", "x.pt"]);
    assert!(err.contains("takes no --weights"), "{err}");
    let err = fail(&["--batch-size", "0"]);
    assert!(err.contains("--batch-size"), "{err}");
    let out = output(vlad().args(["eval", "--detector", "baseline", "--data", "/nonexistent/vlad-data"]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/vlad-data"));
}
