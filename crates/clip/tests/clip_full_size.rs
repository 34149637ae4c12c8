//! Full-size architectures: files with the names and shapes of real checkpoints (manifests
//! recorded from open_clip and transformers by `tools/fixtures/clip.py`) filled with random
//! values load without a missing, unused or mis-shaped tensor, and both towers run.
mod common;

use std::collections::BTreeMap;

use common::{device, fixture, values};
use vlad_clip::model::LoadOptions;
use vlad_clip::weights::{Entry, WeightFile, WeightFormat};
use vlad_clip::{ClipConfig, ClipModel, ClipTokenizer};

fn manifest(arch: &str, naming: &str) -> BTreeMap<String, Vec<usize>> {
    let all: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture("manifests.json")).unwrap()).unwrap();
    serde_json::from_value(all[arch][naming].clone()).unwrap()
}

/// A file with the manifest's names and shapes and small pseudo-random values (LayerNorm scales
/// near 1 so that activations stay in a realistic range).
fn random_file(arch: &str, naming: &str) -> WeightFile {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let entries = manifest(arch, naming)
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let is_norm_scale = name.ends_with("weight") && shape.len() == 1;
            let values = (0..n).map(|_| if is_norm_scale { 1.0 + 0.1 * next() } else { 0.04 * next() }).collect();
            (name, Entry::from_values(shape, values))
        })
        .collect();
    WeightFile { origin: format!("random {arch} ({naming} names)"), format: WeightFormat::Safetensors, metadata: BTreeMap::new(), entries, skipped: vec![] }
}

fn load_and_run(arch: &str, naming: &str) {
    let device = device();
    let config = ClipConfig::preset(arch).unwrap();
    let file = random_file(arch, naming);
    let (model, report) = ClipModel::load(&config, &file, &device, LoadOptions::default()).unwrap();
    assert!(report.is_complete(), "{report}");
    let s = config.vision.image_size;
    let x = burn::tensor::Tensor::<4>::ones([1, 3, s, s], &device);
    let image = values(model.encode_image(x).unwrap());
    assert_eq!(image.len(), config.embed_dim);
    assert!(image.iter().all(|v| v.is_finite()));
    let ids = ClipTokenizer::openai().unwrap().tokenize_batch(&["a photo of a damaged object."]).unwrap();
    let text = values(model.encode_text(&ids).unwrap());
    assert_eq!(text.len(), config.embed_dim);
    assert!(text.iter().all(|v| v.is_finite()));
    eprintln!("{arch} ({naming} names): {} tensors loaded, {} ignored", report.loaded, report.ignored.len());
}

#[test]
fn vit_b_32_openai_names() {
    load_and_run("ViT-B-32", "openai");
}

#[test]
fn vit_b_16_openai_and_hf_names() {
    load_and_run("ViT-B-16", "openai");
    load_and_run("ViT-B-16", "hf");
}

#[test]
fn vit_b_16_plus_240_openai_names() {
    load_and_run("ViT-B-16-plus-240", "openai");
}

#[test]
fn vit_l_14_openai_names() {
    load_and_run("ViT-L-14", "openai");
}

#[test]
fn vit_l_14_336_openai_and_hf_names() {
    load_and_run("ViT-L-14-336", "openai");
    load_and_run("ViT-L-14-336", "hf");
}
