//! WinCLIP and 1-shot WinCLIP+ on the full-size ViT-B-16-plus-240 (240 px, 15×15 grid, 196 + 169
//! windows) against anomalib 2.7.0. A full-size checkpoint does not fit in the fixtures, so both
//! sides generate the same weights and inputs from a hash of the tensor name and element index
//! (`hash_values`, bit-identical to `tools/fixtures/detect_baselines.py`); the fixtures hold only
//! the names/shapes and the reference outputs. Tolerance: the max |diff| ≤ 1e-4 ·
//! max |reference|.
//!
//! Slow on a CPU (the 231-prompt ensemble through the full text tower, 366 vision passes per
//! image): `cargo test -p vlad-detect --release --test winclip_full_size -- --ignored`.
mod common;

use std::collections::BTreeMap;

use burn::tensor::{Tensor, TensorData};
use common::{assert_parity, device, json, npy, values};
use vlad_clip::model::LoadOptions;
use vlad_clip::weights::{Entry, WeightFile, WeightFormat};
use vlad_clip::{ClipConfig, ClipModel};
use vlad_detect::Detector;
use vlad_detect::winclip::{WinClip, WinClipConfig};

/// `n` values in [-1, 1): `fixture_hash(name, i) >> 48`, centred, over 2^15.
fn hash_values(name: &str, n: usize) -> Vec<f32> {
    (0..n as u64).map(|i| ((vlad_clip::weights::fixture_hash(name, i) >> 48) as i64 - 32768) as f32 / 32768.0).collect()
}

/// LayerNorm scales `1 + v/16`, everything else `v/32` (rounded from f64 like numpy's astype).
fn hash_parameter(name: &str, shape: &[usize]) -> Vec<f32> {
    let n = shape.iter().product::<usize>().max(1);
    let is_scale = name.ends_with("weight") && shape.len() == 1;
    hash_values(name, n).into_iter().map(|v| if is_scale { (1.0 + v as f64 / 16.0) as f32 } else { (v as f64 / 32.0) as f32 }).collect()
}

fn hash_images(prefix: &str, count: usize) -> Tensor<4> {
    let n = 3 * 240 * 240;
    let values: Vec<f32> = (0..count).flat_map(|i| hash_values(&format!("{prefix}{i}"), n)).map(|v| v * 2.0).collect();
    Tensor::from_data(TensorData::new(values, [count, 3, 240, 240]), &device())
}

fn model() -> ClipModel {
    let manifest: BTreeMap<String, Vec<usize>> = serde_json::from_value(json("full_manifest.json")).unwrap();
    let entries = manifest.into_iter().map(|(name, shape)| {
        let values = hash_parameter(&name, &shape);
        (name, Entry::from_values(shape, values))
    });
    let file = WeightFile {
        origin: "hash-generated ViT-B-16-plus-240".into(),
        format: WeightFormat::Safetensors,
        metadata: BTreeMap::new(),
        entries: entries.collect(),
        skipped: vec![],
    };
    let config = ClipConfig::preset("ViT-B-16-plus-240").unwrap();
    let (model, report) = ClipModel::load(&config, &file, &device(), LoadOptions::default()).unwrap();
    assert!(report.is_complete(), "{report}");
    model
}

#[test]
fn hash_generator_matches_python() {
    let probe = npy("full_image0_probe.npy").1; // image0[:, :2, :4]
    let image: Vec<f32> = hash_values("image0", 3 * 240 * 240).into_iter().map(|v| v * 2.0).collect();
    let mine: Vec<f32> = (0..3)
        .flat_map(|c| (0..2).flat_map(move |y| (0..4).map(move |x| (c, y, x))))
        .map(|(c, y, x)| image[c * 240 * 240 + y * 240 + x])
        .collect();
    assert_eq!(mine, probe);
}

#[test]
#[ignore = "full-size model on the CPU takes minutes; run with --ignored (release recommended)"]
fn full_size_winclip_matches_anomalib() {
    let started = std::time::Instant::now();
    let mut d = WinClip::new(model(), WinClipConfig::default()).unwrap();
    assert_eq!(d.grid(), 15);
    d.set_class("bottle").unwrap();
    assert_parity("full text prototypes", &values(d.text_prototypes().unwrap()), &npy("full_text.npy").1);
    let x = hash_images("image", 2);
    let e = d.embeddings(x.clone()).unwrap();
    assert_eq!(e.windows[0].dims(), [2, 196, 640]);
    assert_eq!(e.windows[1].dims(), [2, 169, 640]);
    assert_eq!(e.patches.dims(), [2, 225, 896]);
    assert_parity("full image embedding", &values(e.image), &npy("full_image_embedding.npy").1);

    let out = d.detect(x.clone()).unwrap();
    assert_eq!(out.map.dims(), [2, 240, 240]);
    assert_parity("full zero-shot image score", &values(out.image_score), &npy("full_zero_image_score.npy").1);
    assert_parity("full zero-shot patch map", &values(out.patch_map), &npy("full_zero_patch_map.npy").1);
    assert_parity("full zero-shot map (image 0)", &values(out.map.slice([0..1, 0..240, 0..240])), &npy("full_zero_map.npy").1);

    d.fit_reference(hash_images("reference", 1)).unwrap();
    let out = d.detect(x).unwrap();
    assert_parity("full 1-shot image score", &values(out.image_score), &npy("full_few_image_score.npy").1);
    assert_parity("full 1-shot patch map", &values(out.patch_map), &npy("full_few_patch_map.npy").1);
    assert_parity("full 1-shot map (image 0)", &values(out.map.slice([0..1, 0..240, 0..240])), &npy("full_few_map.npy").1);
    eprintln!("full-size WinCLIP parity in {:.1} s", started.elapsed().as_secs_f64());
}
