//! Shared helpers of the Bayes-PFL tests: fixtures written by `tools/fixtures/bayes_pfl.py` (the
//! official code run on a tiny configuration), the tiny backbone, the backend under test and the
//! tolerance rule.
#![allow(dead_code)]
use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::tensor::{Device, Tensor, TensorData};
use vlad_clip::model::LoadOptions;
use vlad_clip::weights::{Entry, WeightFile};
use vlad_clip::{ClipConfig, ClipModel};

/// `tests/fixtures/bayes_pfl/<name>` at the workspace root.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/bayes_pfl").join(name)
}

/// A JSON fixture.
pub fn json(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))).unwrap()
}

/// The tensors of a safetensors fixture: name → (shape, values).
pub struct Tensors(pub BTreeMap<String, (Vec<usize>, Vec<f32>)>);

impl Tensors {
    /// Reads `name`.
    pub fn open(name: &str) -> Self {
        let file = WeightFile::open(&fixture(name), None).unwrap_or_else(|e| panic!("{name}: {e}"));
        Self(file.entries.iter().map(|(k, e)| (k.clone(), (e.shape.clone(), e.to_f32(k).unwrap()))).collect())
    }

    /// Values of `key`.
    pub fn values(&self, key: &str) -> &[f32] {
        &self.0.get(key).unwrap_or_else(|| panic!("fixture tensor `{key}` is missing")).1
    }

    /// Shape of `key`.
    pub fn shape(&self, key: &str) -> &[usize] {
        &self.0.get(key).unwrap_or_else(|| panic!("fixture tensor `{key}` is missing")).0
    }

    /// `key` as a tensor of rank `D`.
    pub fn tensor<const D: usize>(&self, key: &str, device: &Device) -> Tensor<D> {
        let (shape, values) = self.0.get(key).unwrap_or_else(|| panic!("fixture tensor `{key}` is missing"));
        Tensor::from_data(TensorData::new(values.clone(), shape.clone()), device)
    }
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

/// The tiny CLIP of the fixtures (exact GELU, 6×6 grid at 48 px, vocabulary 49409 with the
/// official extra row); the token table is zero except for the stored rows.
pub fn tiny_clip() -> ClipModel {
    let config = ClipConfig::from_json(&std::fs::read_to_string(fixture("tiny_config.json")).unwrap()).unwrap();
    let mut file = WeightFile::open(&fixture("clip.safetensors"), None).unwrap();
    let ids: Vec<usize> = serde_json::from_value(json("token_ids.json")).unwrap();
    let bytes = std::fs::read(fixture("token_rows.npy")).unwrap();
    let rows = npyz::NpyFile::new(&bytes[..]).unwrap().into_vec::<f32>().unwrap();
    let (vocab, width) = (config.text.vocab_size, config.text.width);
    let mut table = vec![0f32; vocab * width];
    for (i, &id) in ids.iter().enumerate() {
        table[id * width..(id + 1) * width].copy_from_slice(&rows[i * width..(i + 1) * width]);
    }
    file.entries.insert("token_embedding.weight".into(), Entry::from_values(vec![vocab, width], table));
    let (model, report) = ClipModel::load(&config, &file, &device(), LoadOptions::default()).unwrap();
    assert!(report.is_complete(), "{report}");
    model
}

/// max |diff| ≤ `relative` · max |reference| (NaN anywhere fails); returns the max abs diff.
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

/// The parity rule of the detector issues: max |diff| ≤ 1e-4 · max |reference|.
pub fn assert_parity(what: &str, got: &[f32], want: &[f32]) -> f64 {
    assert_close(what, got, want, 1e-4)
}
