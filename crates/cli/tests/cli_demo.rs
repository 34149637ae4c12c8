//! The main job (`vlad demo`, what `cargo run --release` runs) end to end, shrunk: synthetic data,
//! the random tiny backbone, both trainers, the evaluation of every detector, overlays and the
//! summary. Checks what a user relies on: the loud warning, every output file, a well-formed table
//! with metrics in [0, 1], and that a folder the demo did not write is never touched.
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vlad-cli-demo-{}-{name}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    dir
}

#[test]
fn demo_runs_end_to_end_on_the_random_backbone() {
    let out = scratch("run");
    let run = Command::new(env!("CARGO_BIN_EXE_vlad"))
        .args(["demo", "--out", out.to_str().unwrap(), "--per-class", "3", "--epochs", "1", "--image-size", "64"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "demo failed:\n{stderr}");
    assert!(stderr.contains("NO PRETRAINED WEIGHTS"), "the random backbone must be announced loudly:\n{stderr}");
    assert!(stdout.contains("Random tiny backbone"), "{stdout}");
    for detector in ["zero-shot", "winclip", "aa-clip", "bayes-pfl", "vand", "clip-ad", "clip-ad-plus", "anomaly-clip", "ada-clip"] {
        let row = stdout.lines().find(|l| l.starts_with(&format!("| {detector} |"))).unwrap_or_else(|| panic!("no table row for {detector}:\n{stdout}"));
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cells.len(), 8, "{row}");
        for cell in &cells[1..6] {
            let v: f64 = cell.parse().unwrap_or_else(|_| panic!("{detector}: `{cell}` is not a number in {row}"));
            assert!((0.0..=100.0).contains(&v), "{row}");
        }
        let json: Value = serde_json::from_str(&std::fs::read_to_string(out.join(format!("results/{detector}.json"))).unwrap()).unwrap();
        assert_eq!(json["dataset"]["classes"].as_array().unwrap().len(), 3, "{detector}");
        assert!(out.join(format!("overlays/{detector}")).is_dir(), "{detector}: no overlays");
    }
    assert!(out.join("runs/aa-clip/image_adapter.safetensors").is_file());
    assert!(out.join("runs/bayes-pfl/epoch_post_1_1.bpk").is_file());
    assert!(out.join("runs/bayes-pfl/epoch_post_2_2.bpk").is_file());
    assert!(out.join("runs/vand/epoch_1.safetensors").is_file());
    assert!(out.join("runs/clip-ad/epoch_1.safetensors").is_file());
    assert!(out.join("runs/anomaly-clip/epoch_1.safetensors").is_file());
    assert!(out.join("runs/ada-clip/epoch_1.safetensors").is_file());
    let montage = image::open(out.join("overlays.png")).unwrap();
    assert!(montage.width() > 192 * 10 && montage.height() > 192 * 2, "montage {}×{}", montage.width(), montage.height());
    assert!(out.join("results.md").is_file());

    // Bayes-PFL's official stage rule (validation-driven) on the demo's data and backbone.
    let pfl = out.join("pfl-official");
    let run = Command::new(env!("CARGO_BIN_EXE_vlad"))
        .args(["train", "bayes-pfl", "--weights", out.join("backbone-random-tiny.bpk").to_str().unwrap()])
        .args(["--data", out.join("data").to_str().unwrap(), "--classes", "weave,wood", "--val-data", out.join("data").to_str().unwrap()])
        .args(["--val-classes", "washer,pill", "--epochs", "2", "--batch-size", "4", "--max-steps", "1", "--image-size", "64", "--taps", "1,2,3,4"])
        .args(["--out", pfl.to_str().unwrap(), "--val-samples", "2"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let records: Vec<Value> = std::fs::read_to_string(pfl.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 2);
    for r in &records {
        let ap = r["validation_pixel_ap"].as_f64().expect("validation ran");
        assert!((0.0..=1.0).contains(&ap) && r["validation_image_ap"].as_f64().is_some(), "{r}");
    }
    // The first epoch always improves on the initial best of 0 (the official rule).
    assert_eq!(records[0]["decision"], "Improved");
    assert!(pfl.join("epoch_post_2_1.bpk").is_file());

    // MVFA-AD few-shot (shots from the test split, the official selection on that test split) and zero-shot
    // (selected on --val-data), then evaluated with and without the few-shot memory.
    let weights = out.join("backbone-random-tiny.bpk");
    let data = out.join("data");
    let mvfa = |extra: &[&str], dir: &str| {
        Command::new(env!("CARGO_BIN_EXE_vlad"))
            .args(["train", "mvfa", "--weights", weights.to_str().unwrap(), "--data", data.to_str().unwrap(), "--epochs", "2", "--image-size", "64"])
            .args(extra)
            .args(["--out", out.join(dir).to_str().unwrap()])
            .output()
            .unwrap()
    };
    let few = mvfa(&["--classes", "washer", "--shots", "1", "--shots-split", "test", "--select-on-target-test"], "mvfa-few");
    assert!(few.status.success(), "{}", String::from_utf8_lossy(&few.stderr));
    let selections: Vec<Value> = std::fs::read_to_string(out.join("mvfa-few/selections.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(selections.len(), 2, "one scoring per epoch");
    for s in &selections {
        let class = &s["classes"][0];
        assert_eq!(class["class_name"], "washer");
        assert!(class["images"].as_u64().unwrap() >= 2 && (0.0..=1.0).contains(&class["pixel_auroc"].as_f64().unwrap()), "{s}");
    }
    assert!(out.join("mvfa-few/best.safetensors").is_file() && out.join("mvfa-few/last.safetensors").is_file());
    // Several classes are refused for few-shot, and an existing run is not replaced without --force.
    let refused = mvfa(&["--shots", "1", "--shots-split", "test"], "mvfa-few");
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("one class at a time"), "{}", String::from_utf8_lossy(&refused.stderr));
    let refused = mvfa(&["--classes", "washer", "--shots", "1", "--shots-split", "test"], "mvfa-few");
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("already exists"), "{}", String::from_utf8_lossy(&refused.stderr));
    let zero = mvfa(&["--protocol", "zero-shot", "--classes", "weave", "--max-steps", "2", "--val-data", data.to_str().unwrap(), "--val-classes", "pill"], "mvfa-zero");
    assert!(zero.status.success(), "{}", String::from_utf8_lossy(&zero.stderr));
    let zero_scorings = std::fs::read_to_string(out.join("mvfa-zero/selections.jsonl")).unwrap().lines().count();
    assert!(zero_scorings >= 2, "zero-shot scores within each epoch, got {zero_scorings}");
    for shots in [None, Some("1")] {
        let mut eval = Command::new(env!("CARGO_BIN_EXE_vlad"));
        eval.args(["eval", "--detector", "mvfa", "--checkpoint", out.join("mvfa-few/best.safetensors").to_str().unwrap(), "--weights", weights.to_str().unwrap()])
            .args(["--data", data.to_str().unwrap(), "--classes", "washer", "--out", out.join("mvfa-eval.json").to_str().unwrap(), "--force"]);
        if let Some(k) = shots {
            eval.args(["--shots", k]);
        }
        let run = eval.output().unwrap();
        assert!(run.status.success(), "mvfa eval (shots {shots:?}): {}", String::from_utf8_lossy(&run.stderr));
    }

    // A rerun replaces the demo's own folder; a folder it did not write is refused untouched.
    let foreign = scratch("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("precious.txt"), "keep me").unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_vlad")).args(["demo", "--out", foreign.to_str().unwrap()]).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("was not written by `vlad demo`"));
    assert_eq!(std::fs::read_to_string(foreign.join("precious.txt")).unwrap(), "keep me");
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::remove_dir_all(&foreign).unwrap();
}
