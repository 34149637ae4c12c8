//! Shared helpers for the parity tests: fixture paths, .npy reading, the backend under test and
//! the tolerance rule of the backbone issue.
#![allow(dead_code)]
use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};

/// `tests/fixtures/clip/<name>` at the workspace root.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/clip").join(name)
}

/// Reads an f32 .npy file: (shape, values).
pub fn npy(name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    (shape, npy.into_vec::<f32>().unwrap())
}

/// A fixture as a tensor.
pub fn npy_tensor<const D: usize>(name: &str, device: &Device) -> Tensor<D> {
    let (shape, values) = npy(name);
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// The backend under test: `VLAD_TEST_BACKEND=wgpu` selects wgpu (Vulkan; lavapipe on a CPU-only
/// machine) in builds with the `wgpu` feature; the default is flex.
pub fn device() -> Device {
    let name = std::env::var("VLAD_TEST_BACKEND").unwrap_or_else(|_| "flex".into());
    vlad_clip::device_for(vlad_clip::Backend::parse(&name).unwrap()).unwrap()
}

/// Values of a tensor on the host.
pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
}

/// The backbone issue's rule: cosine ≥ 0.99999 and max |diff| ≤ 1e-4 · max |reference|.
/// Returns (cosine, max abs diff, max |reference|) for reporting.
pub fn assert_parity(what: &str, got: &[f32], want: &[f32]) -> (f64, f64, f64) {
    assert_eq!(got.len(), want.len(), "{what}: {} values, reference has {}", got.len(), want.len());
    let (mut dot, mut ng, mut nw, mut max_diff, mut max_ref) = (0f64, 0f64, 0f64, 0f64, 0f64);
    for (&g, &w) in got.iter().zip(want) {
        let (g, w) = (g as f64, w as f64);
        dot += g * w;
        ng += g * g;
        nw += w * w;
        max_diff = max_diff.max((g - w).abs());
        max_ref = max_ref.max(w.abs());
    }
    let cosine = dot / (ng.sqrt() * nw.sqrt()).max(f64::MIN_POSITIVE);
    eprintln!("{what}: cosine {cosine:.9}, max abs diff {max_diff:.3e} (max |ref| {max_ref:.3e})");
    assert!(cosine >= 0.99999, "{what}: cosine {cosine} < 0.99999");
    assert!(max_diff <= 1e-4 * max_ref, "{what}: max abs diff {max_diff:e} > 1e-4 × {max_ref:e}");
    (cosine, max_diff, max_ref)
}
