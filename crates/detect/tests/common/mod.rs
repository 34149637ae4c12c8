//! Shared helpers of the detector parity tests: fixture paths (`tests/fixtures/detect`, written by
//! `tools/fixtures/detect_baselines.py`), .npy reading, the backend under test, the tiny model and
//! the tolerance rule of the detector issue.
#![allow(dead_code)]
use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use vlad_clip::model::LoadOptions;
use vlad_clip::weights::WeightFile;
use vlad_clip::{Activation, ClipConfig, ClipModel};

/// `tests/fixtures/detect/<name>` at the workspace root.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/detect").join(name)
}

/// Reads an f32 .npy fixture: (shape, values).
pub fn npy(name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap_or_else(|e| panic!("{name}: {e}"));
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    (shape, npy.into_vec::<f32>().unwrap_or_else(|e| panic!("{name}: {e}")))
}

/// A fixture as a tensor.
pub fn npy_tensor<const D: usize>(name: &str, device: &Device) -> Tensor<D> {
    let (shape, values) = npy(name);
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// A JSON fixture.
pub fn json(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))).unwrap()
}

/// The backend under test: `VLAD_TEST_BACKEND=wgpu` selects wgpu in builds with the `wgpu`
/// feature; the default is flex.
pub fn device() -> Device {
    let name = std::env::var("VLAD_TEST_BACKEND").unwrap_or_else(|_| "flex".into());
    vlad_clip::device_for(vlad_clip::Backend::parse(&name).unwrap()).unwrap()
}

/// Values of a tensor on the host.
pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
}

/// The tiny random CLIP of the fixtures (6×6 grid at 48 px) with the given activation.
pub fn tiny_model(activation: Activation) -> ClipModel {
    let config = ClipConfig::from_json(&std::fs::read_to_string(fixture("tiny_config.json")).unwrap()).unwrap().with_activation(activation);
    let weights = WeightFile::open(&fixture("tiny.safetensors"), None).unwrap();
    let (model, report) = ClipModel::load(&config, &weights, &device(), LoadOptions::default()).unwrap();
    assert!(report.is_complete(), "{report}");
    model
}

/// The detector issue's rule: max |diff| ≤ `relative` · max |reference| (1e-4 for maps and scores).
/// Returns the max abs diff for reporting; NaN anywhere fails.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], relative: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: {} values, reference has {}", got.len(), want.len());
    let mut max_diff = 0f64;
    let mut max_ref = 0f64;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(g.is_finite() == w.is_finite(), "{what}[{i}]: got {g}, reference {w}");
        if w.is_finite() {
            max_diff = max_diff.max((g as f64 - w as f64).abs());
            max_ref = max_ref.max((w as f64).abs());
        }
    }
    eprintln!("{what}: max abs diff {max_diff:.3e} (max |ref| {max_ref:.3e}, {} values)", want.len());
    assert!(max_diff <= relative * max_ref, "{what}: max abs diff {max_diff:e} > {relative:e} × {max_ref:e}");
    max_diff
}

/// [`assert_close`] with the 1e-4.
pub fn assert_parity(what: &str, got: &[f32], want: &[f32]) -> f64 {
    assert_close(what, got, want, 1e-4)
}
