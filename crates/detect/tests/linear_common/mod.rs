//! Shared helpers of the VAND and CLIP-AD tests: their fixture folders (written by
//! `tools/fixtures/vand.py` and `tools/fixtures/clip_ad.py`), the hash-weight backbones those
//! scripts ran the official code with, and the tiny MVTec layout both used.
#![allow(dead_code)]
use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::tensor::Device;
use vlad_clip::weights::{Entry, WeightFile, WeightFormat, WeightReader};
use vlad_clip::{ClipConfig, ClipModel};

/// `tests/fixtures/<dir>/<name>` at the workspace root.
pub fn fixture(dir: &str, name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(dir).join(name)
}

/// An f32 .npy fixture: (shape, values).
pub fn npy(dir: &str, name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(fixture(dir, name)).unwrap_or_else(|e| panic!("{dir}/{name}: {e}"));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().iter().map(|&d| d as usize).collect();
    (shape, npy.into_vec::<f32>().unwrap())
}

/// A JSON fixture.
pub fn json(dir: &str, name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(dir, name)).unwrap_or_else(|e| panic!("{dir}/{name}: {e}"))).unwrap()
}

/// The backbone a fixture config describes: `clip` (a vlad-clip config object, or a preset name
/// for the full-size runs), `manifest` (names and shapes) and optional power-of-two `scales`, the
/// values from `vlad_clip::weights::hashed_parameter`.
pub fn hash_backbone(config: &serde_json::Value, device: &Device) -> ClipModel {
    let clip = match &config["clip"] {
        serde_json::Value::String(preset) => ClipConfig::preset(preset).unwrap(),
        other => ClipConfig::from_json(&other.to_string()).unwrap(),
    };
    let mut entries = BTreeMap::new();
    for item in config["manifest"].as_array().unwrap() {
        let name = item[0].as_str().unwrap();
        let shape: Vec<usize> = item[1].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        let scale = config["scales"][name].as_f64().unwrap_or(1.0) as f32;
        let values = vlad_clip::weights::hashed_parameter(name, &shape).into_iter().map(|v| v * scale).collect();
        entries.insert(name.to_string(), Entry::from_values(shape, values));
    }
    let mut reader = WeightReader::new("hash backbone", entries, device);
    let model = ClipModel::from_reader(&clip, &mut reader);
    let report = reader.finish(false).unwrap();
    assert!(report.is_complete(), "{report}");
    model
}

/// Linear layers `fc.0..fc.3` `[E, D]` + bias with hash values, as a weight file (the full-size
/// runs generate them instead of shipping 10 MB).
pub fn hash_linear_layers(d: usize, e: usize) -> WeightFile {
    let mut entries = BTreeMap::new();
    for i in 0..4 {
        for (name, shape) in [(format!("fc.{i}.weight"), vec![e, d]), (format!("fc.{i}.bias"), vec![e])] {
            let values = vlad_clip::weights::hashed_parameter(&name, &shape);
            entries.insert(name, Entry::from_values(shape, values));
        }
    }
    WeightFile { origin: "hash linear layers".into(), format: WeightFormat::Safetensors, metadata: BTreeMap::new(), entries, skipped: vec![] }
}

/// The tiny MVTec layout of `tests/fixtures/vand/data`.
pub fn dataset() -> (PathBuf, vlad_data::DatasetIndex) {
    let root = fixture("vand", "data");
    let index = vlad_data::open_dataset(&root, &Default::default()).unwrap();
    (root, index)
}

/// Samples of `split` by their paths relative to the dataset root, in the given order.
pub fn samples(paths: &[String], split: vlad_data::Split) -> Vec<vlad_data::Sample> {
    let (root, index) = dataset();
    paths
        .iter()
        .map(|p| index.split(split).find(|s| s.image_path == root.join(p)).unwrap_or_else(|| panic!("{p} is not indexed")).clone())
        .collect()
}

/// The test split in the official order (`meta.json`, as the DataLoaders read it).
pub fn test_samples() -> Vec<vlad_data::Sample> {
    let meta = json("vand", "data/meta.json");
    let paths: Vec<String> = meta["test"]["bottle"].as_array().unwrap().iter().map(|i| i["img_path"].as_str().unwrap().to_string()).collect();
    samples(&paths, vlad_data::Split::Test)
}

/// Every `step`-th value from `offset` along both image axes of `[N, S, S]` maps (how the
/// full-size fixtures keep their maps small).
pub fn subsample(maps: &[f32], s: usize, offset: usize, step: usize) -> Vec<f32> {
    let n = maps.len() / (s * s);
    let mut out = Vec::new();
    for i in 0..n {
        for y in (offset..s).step_by(step) {
            for x in (offset..s).step_by(step) {
                out.push(maps[i * s * s + y * s + x]);
            }
        }
    }
    out
}

/// Per-map maxima of `[N, S·S]` maps.
pub fn maxima(maps: &[f32], len: usize) -> Vec<f32> {
    maps.chunks(len).map(|m| m.iter().copied().fold(f32::NEG_INFINITY, f32::max)).collect()
}

/// The MVFA-AD detector of `tools/fixtures/mvfa.py`: its hash backbone, the adapters.pth it ran
/// the official code with (taps 6/12/18/24, bottleneck 32), input 24, class Brain.
pub fn mvfa_detector() -> vlad_detect::mvfa::Mvfa {
    use vlad_detect::Detector;
    use vlad_detect::mvfa::{Mvfa, MvfaOptions, checkpoint};
    let device = crate::common::device();
    let model = hash_backbone(&json("mvfa", "config.json"), &device);
    let weights = checkpoint::load_weight_file(&checkpoint::open(&fixture("mvfa", "adapters.pth")).unwrap(), &model.config, &device).unwrap();
    assert_eq!((weights.config.taps.clone(), weights.config.bottleneck), (vec![6, 12, 18, 24], 32));
    let mut mvfa = Mvfa::from_weights(model, weights, MvfaOptions { image_size: Some(24), ..Default::default() }).unwrap();
    mvfa.set_class("Brain").unwrap();
    mvfa
}
