//! Shared helpers of the AA-CLIP tests: fixtures written by `tools/fixtures/aa_clip.py` (which runs
//! the official code), the tiny hash-weight backbone they were made with, the backend under test
//! and the tolerance rule.
#![allow(dead_code)]
use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use vlad_clip::weights::{Entry, WeightReader};
use vlad_clip::{ClipConfig, ClipModel};

/// `tests/fixtures/aa_clip/<name>` at the workspace root.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/aa_clip").join(name)
}

/// Reads an f32 .npy fixture: (shape, values).
pub fn npy(name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap_or_else(|e| panic!("{name}: {e}"));
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    (shape, npy.into_vec::<f32>().unwrap_or_else(|e| panic!("{name}: {e}")))
}

/// A fixture as a tensor on `device`.
pub fn npy_tensor<const D: usize>(name: &str, device: &Device) -> Tensor<D> {
    let (shape, values) = npy(name);
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// `config.json`.
pub fn config() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("config.json")).unwrap()).unwrap()
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

/// The fixture script's hash rule (`vlad_clip::weights::hashed_parameter`).
pub fn hash_parameter(name: &str, shape: &[usize]) -> Vec<f32> {
    vlad_clip::weights::hashed_parameter(name, shape)
}

/// The tiny backbone of the fixtures (24 vision blocks, 12 text blocks, exact GELU) on `device`.
pub fn tiny_backbone(device: &Device) -> ClipModel {
    let cfg = config();
    let clip = ClipConfig::from_json(&cfg["clip"].to_string()).unwrap();
    let mut entries = BTreeMap::new();
    for item in cfg["manifest"].as_array().unwrap() {
        let name = item[0].as_str().unwrap();
        let shape: Vec<usize> = item[1].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        let values = hash_parameter(name, &shape);
        entries.insert(name.to_string(), Entry::from_values(shape, values));
    }
    let mut reader = WeightReader::new("hash backbone", entries, device);
    let model = ClipModel::from_reader(&clip, &mut reader);
    let report = reader.finish(false).unwrap();
    assert!(report.is_complete(), "{report}");
    model
}

/// Input side of the fixtures.
pub fn image_size() -> usize {
    config()["image_size"].as_u64().unwrap() as usize
}

/// max |got − want| ≤ `relative` · max |want| (NaN anywhere fails); returns the max abs diff.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], relative: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: {} values, reference has {}", got.len(), want.len());
    let mut max_diff = 0f64;
    let mut max_ref = 0f64;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(g.is_finite() && w.is_finite(), "{what}[{i}]: got {g}, reference {w}");
        max_diff = max_diff.max((g as f64 - w as f64).abs());
        max_ref = max_ref.max((w as f64).abs());
    }
    eprintln!("{what}: max abs diff {max_diff:.3e} (max |ref| {max_ref:.3e}, {} values)", want.len());
    assert!(max_diff <= relative * max_ref, "{what}: max abs diff {max_diff:e} > {relative:e} × {max_ref:e}");
    max_diff
}
