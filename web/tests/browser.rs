//! Backbone and detector parity in a real browser (headless Chromium), on WebGPU (SwiftShader in
//! CI) and on the CPU fallback, against the same open_clip fixtures as the native tests.
#![cfg(target_arch = "wasm32")]
use std::collections::BTreeMap;

use burn::tensor::{Device, Tensor, TensorData};
use vlad_clip::model::LoadOptions;
use vlad_clip::weights::{Entry, WeightFile, WriteOptions, burnpack_bytes};
use vlad_clip::{Activation, ClipConfig, ClipModel, ClipTokenizer, VisionForward};
use vlad_detect::Detector;
use vlad_detect::aa_clip::checkpoint::{image_tensors, load_weight_files, safetensors_bytes, text_tensors};
use vlad_detect::aa_clip::{AaClip, AaClipConfig, AaClipOptions, ImageAdapter, TextAdapter};
use vlad_detect::bayes_pfl::checkpoint::vlad_entries;
use vlad_detect::vand::{LinearLayers, VandConfig};
use vlad_detect::bayes_pfl::{BayesPfl, BayesPflHead, BayesPflOptions, DeadWeights, HeadConfig, Stage, StageChoice, load_checkpoint};
use wasm_bindgen::JsValue;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

#[path = "parity/detectors.rs"]
mod detectors;

thread_local! {
    static GPU: std::cell::RefCell<Option<Device>> = const { std::cell::RefCell::new(None) };
}

/// The WebGPU device, initialised once per page (one wgpu runtime per process).
async fn gpu() -> Device {
    if let Some(device) = GPU.with(|g| g.borrow().clone()) {
        return device;
    }
    let device = Device::wgpu_options().init_async().await.expect("WebGPU adapter (Chromium with --enable-unsafe-webgpu)");
    GPU.with(|g| *g.borrow_mut() = Some(device.clone()));
    device
}

const WEIGHTS: &[u8] = include_bytes!("../../tests/fixtures/clip/tiny_hf.safetensors");
const X32: &[u8] = include_bytes!("../../tests/fixtures/clip/x32.npy");
const PROMPTS: &str = include_str!("../../tests/fixtures/clip/prompts.json");

/// Reads a little-endian f32 `.npy` (v1.0, C order) — the fixtures' format. Parsed here rather
/// than with `npyz`, whose dependencies would change the features of crates shared with the page
/// build and force a second compilation of burn in CI.
fn npy(bytes: &[u8]) -> (Vec<usize>, Vec<f32>) {
    assert_eq!(&bytes[..6], b"\x93NUMPY", "not an .npy file");
    assert_eq!(bytes[6], 1, "only .npy v1.0 is used by the fixtures");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).expect("ASCII header");
    assert!(header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"), "{header}");
    let shape_text = &header[header.find("'shape': (").expect("shape") + 10..];
    let shape: Vec<usize> = shape_text[..shape_text.find(')').unwrap()]
        .split(',')
        .filter(|d| !d.trim().is_empty())
        .map(|d| d.trim().parse().unwrap())
        .collect();
    let data: Vec<f32> = bytes[10 + header_len..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    assert_eq!(data.len(), shape.iter().product::<usize>(), "{header}");
    (shape, data)
}

macro_rules! reference {
    ($name:literal) => {
        npy(include_bytes!(concat!("../../tests/fixtures/clip/", $name))).1
    };
}

/// The issue's rule: cosine ≥ 0.99999 and max |diff| ≤ 1e-4 · max |reference|.
fn assert_parity(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}");
    let (mut dot, mut ng, mut nw, mut diff, mut scale) = (0f64, 0f64, 0f64, 0f64, 0f64);
    for (&g, &w) in got.iter().zip(want) {
        let (g, w) = (g as f64, w as f64);
        dot += g * w;
        ng += g * g;
        nw += w * w;
        diff = diff.max((g - w).abs());
        scale = scale.max(w.abs());
    }
    let cosine = dot / (ng.sqrt() * nw.sqrt());
    web_sys_log(&format!("{what}: cosine {cosine:.9}, max abs diff {diff:.3e} (max |ref| {scale:.3e})"));
    assert!(cosine >= 0.99999 && diff <= 1e-4 * scale, "{what}: cosine {cosine}, diff {diff}, scale {scale}");
}

fn web_sys_log(s: &str) {
    wasm_bindgen_test::console_log!("{}", s);
}

async fn read(t: Tensor<2>) -> Vec<f32> {
    t.into_data_async().await.unwrap().convert::<f32>().try_into_vec::<f32>().unwrap()
}

async fn check_backbone(device: &Device, tag: &str) {
    let file = WeightFile::from_bytes(WEIGHTS.to_vec(), "tiny_hf.safetensors").unwrap();
    let prompts: Vec<String> = serde_json::from_str(PROMPTS).unwrap();
    let ids = ClipTokenizer::openai().unwrap().tokenize_batch(&prompts).unwrap();
    let (shape, x) = npy(X32);
    for (activation, name) in [(Activation::QuickGelu, "quick"), (Activation::Gelu, "exact")] {
        let config = ClipConfig::preset("tiny").unwrap().with_activation(activation);
        let (model, _) = ClipModel::load(&config, &file, device, LoadOptions::default()).unwrap();
        let pixels = Tensor::<4>::from_data(TensorData::new(x.clone(), shape.clone()), device);
        let out = model.visual.forward(pixels, VisionForward { taps: &[1, 2, 3, 4], ..Default::default() }).unwrap();
        let image = read(model.visual.pool(out.last)).await;
        let want_image = if name == "quick" { reference!("quick_image_emb.npy") } else { reference!("exact_image_emb.npy") };
        assert_parity(&format!("{tag} {name} image embedding"), &image, &want_image);
        let taps = Tensor::cat(out.taps, 0);
        let [t, n, d] = taps.dims();
        let taps = read(taps.reshape([t * n, d])).await;
        let want_taps = if name == "quick" { reference!("quick_taps.npy") } else { reference!("exact_taps.npy") };
        assert_parity(&format!("{tag} {name} taps"), &taps, &want_taps);
        let text = read(model.encode_text(&ids).unwrap()).await;
        let want_text = if name == "quick" { reference!("quick_text_emb.npy") } else { reference!("exact_text_emb.npy") };
        assert_parity(&format!("{tag} {name} text embedding"), &text, &want_text);
    }
}

#[wasm_bindgen_test]
async fn backbone_parity_on_webgpu_and_cpu() {
    check_backbone(&gpu().await, "webgpu").await;
    check_backbone(&Device::flex(), "cpu").await;
}

#[wasm_bindgen_test]
async fn baseline_detector_parity_on_webgpu_and_cpu() {
    for (device, tag) in [(gpu().await, "webgpu"), (Device::flex(), "cpu")] {
        detectors::zero_shot(&device, tag).await;
        detectors::winclip(&device, tag).await;
    }
}

#[wasm_bindgen_test]
async fn vand_parity_on_the_cpu() {
    detectors::vand(&Device::flex(), "cpu").await;
}

#[wasm_bindgen_test]
async fn vand_parity_on_webgpu() {
    detectors::vand(&gpu().await, "webgpu").await;
}

#[wasm_bindgen_test]
async fn clip_ad_parity_on_the_cpu() {
    detectors::clip_ad(&Device::flex(), "cpu").await;
}

#[wasm_bindgen_test]
async fn clip_ad_parity_on_webgpu() {
    detectors::clip_ad(&gpu().await, "webgpu").await;
}

#[wasm_bindgen_test]
async fn anomaly_clip_parity_on_the_cpu() {
    detectors::anomaly_clip(&Device::flex(), "cpu").await;
}

#[wasm_bindgen_test]
async fn anomaly_clip_parity_on_webgpu() {
    detectors::anomaly_clip(&gpu().await, "webgpu").await;
}

#[wasm_bindgen_test]
async fn ada_clip_parity_on_the_cpu() {
    detectors::ada_clip(&Device::flex(), "cpu").await;
}

#[wasm_bindgen_test]
async fn ada_clip_parity_on_webgpu() {
    detectors::ada_clip(&gpu().await, "webgpu").await;
}

#[wasm_bindgen_test]
async fn mvfa_parity_on_the_cpu() {
    detectors::mvfa(&Device::flex(), "cpu").await;
}

#[wasm_bindgen_test]
async fn mvfa_parity_on_webgpu() {
    detectors::mvfa(&gpu().await, "webgpu").await;
}

#[wasm_bindgen_test]
async fn aa_clip_parity_on_the_cpu() {
    detectors::aa_clip(&Device::flex(), "cpu").await;
}

#[wasm_bindgen_test]
async fn bayes_pfl_parity_on_the_cpu() {
    detectors::bayes_pfl(&Device::flex(), "cpu").await;
}

#[wasm_bindgen_test]
async fn aa_clip_parity_on_webgpu() {
    detectors::aa_clip(&gpu().await, "webgpu").await;
}

#[wasm_bindgen_test]
async fn bayes_pfl_parity_on_webgpu() {
    detectors::bayes_pfl(&gpu().await, "webgpu").await;
}

// ---------------------------------------------------------------- trained detectors (AA-CLIP, Bayes-PFL)

/// The tiny backbone of the Bayes-PFL fixtures (text width = embedding size, as Bayes-PFL needs)
/// as burnpack bytes with its config in the metadata, the way the page receives weights. Its
/// fixture stores only the used rows of the token table; the rest are zeros here.
fn bayes_backbone_bytes() -> Vec<u8> {
    let config = ClipConfig::from_json(include_str!("../../tests/fixtures/bayes_pfl/tiny_config.json")).unwrap();
    let file = WeightFile::from_bytes(include_bytes!("../../tests/fixtures/bayes_pfl/clip.safetensors").to_vec(), "clip.safetensors").unwrap();
    let mut entries = file.entries;
    let (vocab, width) = (config.text.vocab_size, config.text.width);
    entries.insert("token_embedding.weight".into(), Entry::from_values(vec![vocab, width], (0..vocab * width).map(|i| ((i % 97) as f32 - 48.0) * 1e-3).collect()));
    let metadata = BTreeMap::from([("vlad.clip_config".to_string(), config.to_json())]);
    burnpack_bytes(&entries, &WriteOptions { f16: false, overwrite: false, metadata }).unwrap()
}

/// Deterministic values in [−0.5, 0.5) (an LCG), for weights whose exact values do not matter.
fn pseudo_random(seed: u64) -> impl FnMut() -> f32 {
    let mut state = seed;
    move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }
}

/// An AA-CLIP adapter pair for `clip` with pseudo-random weights (the adapters start at zero,
/// which would make the norm matching 0/0), as the safetensors bytes vlad writes.
fn aa_clip_checkpoint(clip: &ClipConfig) -> Vec<u8> {
    let device = Device::flex();
    let config = AaClipConfig::for_backbone(clip);
    let mut tensors = text_tensors(&TextAdapter::new(&config, &device)).unwrap();
    tensors.extend(image_tensors(&ImageAdapter::new(&config, &device)).unwrap());
    let mut next = pseudo_random(7);
    for (_, _, values) in &mut tensors {
        values.iter_mut().for_each(|v| *v = 0.2 * next());
    }
    safetensors_bytes(&tensors, &BTreeMap::new()).unwrap()
}

/// VAND linear layers for `clip` with pseudo-random weights, as the safetensors bytes vlad writes
/// (config in the metadata).
fn vand_checkpoint(clip: &ClipConfig) -> Vec<u8> {
    let config = VandConfig::for_backbone(clip);
    let mut tensors = vlad_detect::vand::checkpoint::tensors(&LinearLayers::new(&config, &Device::flex())).unwrap();
    let mut next = pseudo_random(13);
    for (_, _, values) in &mut tensors {
        values.iter_mut().for_each(|v| *v = 0.2 * next());
    }
    let metadata = BTreeMap::from([(vlad_detect::vand::checkpoint::META_CONFIG.to_string(), serde_json::to_string(&config).unwrap())]);
    safetensors_bytes(&tensors, &metadata).unwrap()
}

/// An AnomalyCLIP prompt learner for `clip` (12 contexts, deep prompts for the text blocks after
/// the first, up to depth 9) with pseudo-random values, without buffers (the engine builds the
/// frame from the backbone), as safetensors.
fn anomaly_clip_checkpoint(clip: &ClipConfig) -> Vec<u8> {
    let w = clip.text.width;
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = vec![("ctx_pos".into(), vec![1, 1, 12, w], vec![]), ("ctx_neg".into(), vec![1, 1, 12, w], vec![])];
    for i in 0..clip.text.layers.min(9) - 1 {
        tensors.push((format!("compound_prompts_text.{i}"), vec![4, w], vec![]));
    }
    let mut next = pseudo_random(17);
    for (_, shape, values) in &mut tensors {
        *values = (0..shape.iter().product::<usize>()).map(|_| 0.02 * next()).collect();
    }
    safetensors_bytes(&tensors, &BTreeMap::new()).unwrap()
}

/// Freshly initialised AdaCLIP tensors for `clip` (the released depth 4 / length 5, or fewer
/// blocks), as our safetensors.
fn ada_clip_checkpoint(clip: &ClipConfig) -> Vec<u8> {
    use vlad_detect::ada_clip::{AdaClipConfig, AdaClipLearned, checkpoint};
    let config = AdaClipConfig::for_backbone(clip);
    checkpoint::to_bytes(&AdaClipLearned::new(&config, clip, &Device::flex()), &config).unwrap()
}

/// A freshly initialised Bayes-PFL head (3 flows, 4 RCA layers) for `clip`, as vlad's burnpack.
fn bayes_pfl_checkpoint(clip: &ClipConfig) -> Vec<u8> {
    let device = Device::flex();
    let config = HeadConfig { num_flows: 3, ..HeadConfig::official(clip.vision.width, clip.text.width) };
    let head = BayesPflHead::new(&config, &device).unwrap();
    let dead = DeadWeights::initialized(&config, pseudo_random(11));
    let (entries, metadata) = vlad_entries(&head, &dead, Stage::Two).unwrap();
    burnpack_bytes(&entries, &WriteOptions { f16: false, overwrite: false, metadata }).unwrap()
}

fn bayes_backbone(device: &Device) -> ClipModel {
    let file = WeightFile::from_bytes(bayes_backbone_bytes(), "tiny backbone").unwrap();
    let config = ClipConfig::from_json(&file.metadata["vlad.clip_config"]).unwrap();
    ClipModel::load(&config, &file, device, LoadOptions::default()).unwrap().0
}

/// Checks a detection: a finite score and a finite, non-constant `size × size` map.
async fn check_detection(what: &str, detector: &dyn Detector, size: usize, device: &Device) {
    let pre = detector.preprocess();
    let rgb: Vec<u8> = (0..40 * 30 * 4).map(|i| (i * 37 % 251) as u8).collect();
    let image = vlad_imaging::rgb_from_rgba_bytes(&rgb, 40, 30).unwrap();
    let x = pre.batch(&[pre.to_chw(&image)], device).unwrap();
    let detection = detector.detect(x).unwrap();
    let score = read_any(detection.image_score).await;
    let map = read_any(detection.map).await;
    web_sys_log(&format!("{what}: score {score:?}, map of {} values", map.len()));
    assert_eq!(score.len(), 1, "{what}");
    assert!(score[0].is_finite(), "{what}: score {}", score[0]);
    assert_eq!(map.len(), size * size, "{what}");
    assert!(map.iter().all(|v| v.is_finite()), "{what}: map not finite");
    let (lo, hi) = map.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    assert!(hi > lo, "{what}: constant map {lo}");
}

async fn read_any<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data_async().await.unwrap().convert::<f32>().try_into_vec::<f32>().unwrap()
}

/// AA-CLIP and Bayes-PFL built from checkpoint bytes on `device`, detecting one image each.
async fn check_trained_detectors(device: &Device, tag: &str) {
    let model = bayes_backbone(device);
    let aa_file = WeightFile::from_bytes(aa_clip_checkpoint(&model.config), "aa-clip.safetensors").unwrap();
    let weights = load_weight_files(std::slice::from_ref(&aa_file), &model.config, device).unwrap();
    let mut aa = AaClip::new(model.clone(), weights, AaClipOptions { image_size: Some(48), ..Default::default() }).unwrap();
    aa.set_class("bottle").unwrap();
    check_detection(&format!("{tag} AA-CLIP"), &aa, 48, device).await;

    let bp_file = WeightFile::from_bytes(bayes_pfl_checkpoint(&model.config), "bayes-pfl.bpk").unwrap();
    let checkpoint = load_checkpoint(&bp_file, device, StageChoice::FromFile, false).unwrap();
    let options = BayesPflOptions { taps: vec![1, 2, 3, 4], image_size: 48, samples: 2, ..Default::default() };
    let mut bp = BayesPfl::from_checkpoint(model, checkpoint, options).unwrap();
    bp.set_class("bottle").unwrap();
    check_detection(&format!("{tag} Bayes-PFL"), &bp, 48, device).await;
}

#[wasm_bindgen_test]
async fn trained_detectors_on_the_cpu() {
    check_trained_detectors(&Device::flex(), "cpu").await;
}

/// The message of an engine error.
fn message(e: wasm_bindgen::JsError) -> String {
    let value = JsValue::from(e);
    js_sys::Reflect::get(&value, &"message".into()).unwrap().as_string().unwrap()
}

#[wasm_bindgen_test]
async fn engine_runs_the_trained_detectors_from_checkpoint_bytes() {
    let mut engine = vlad_web::Engine::create(false).await;
    let info = engine.load_weights(bayes_backbone_bytes(), "", "").unwrap();
    assert!(info.contains("\"image_size\":48"), "{info}");
    let config = ClipConfig::from_json(include_str!("../../tests/fixtures/bayes_pfl/tiny_config.json")).unwrap();
    engine.set_class("bottle").unwrap();
    let detectors: Vec<String> = serde_json::from_str(&vlad_web::Engine::detectors()).unwrap();
    for name in ["zero-shot", "winclip", "aa-clip", "bayes-pfl", "vand", "clip-ad", "clip-ad-plus", "anomaly-clip", "ada-clip"] {
        assert!(detectors.iter().any(|d| d == name), "{detectors:?}");
    }

    // Without a checkpoint: a readable error, not a panic.
    let missing = engine.set_detector("aa-clip", "{}").err().map(message);
    assert!(missing.as_deref().is_some_and(|m| m.contains("checkpoint")), "{missing:?}");
    // A damaged PyTorch zip: the file and the problem are named.
    let zip = engine.add_checkpoint("aa-clip", b"PK\x03\x04rest".to_vec(), "adapter.pth").err().map(message);
    assert!(zip.as_deref().is_some_and(|m| m.contains("adapter.pth") && m.contains("PyTorch")), "{zip:?}");

    for (name, bytes, options) in [
        ("aa-clip", aa_clip_checkpoint(&config), r#"{"image_size": 48}"#),
        ("bayes-pfl", bayes_pfl_checkpoint(&config), r#"{"image_size": 48, "samples": 2}"#),
        ("vand", vand_checkpoint(&config), r#"{"image_size": 48}"#),
        ("clip-ad-plus", vand_checkpoint(&config), r#"{"image_size": 48, "rvs": "mean"}"#),
        ("anomaly-clip", anomaly_clip_checkpoint(&config), r#"{"image_size": 48}"#),
        ("ada-clip", ada_clip_checkpoint(&config), r#"{"image_size": 48}"#),
    ] {
        let tensors = engine.add_checkpoint(name, bytes, name).unwrap();
        assert!(tensors >= 3, "{name}: {tensors} tensors");
        engine.set_detector(name, options).unwrap();
        let rgba: Vec<u8> = (0..40 * 30 * 4).map(|i| (i * 37 % 251) as u8).collect();
        let result = engine.score(rgba, 40, 30).await.unwrap();
        let score = js_sys::Reflect::get(&result, &"score".into()).unwrap().as_f64().unwrap();
        assert!(score.is_finite(), "{name}: {score}");
        assert_eq!(engine.last_map().length(), 48 * 48, "{name}");
    }
}

#[wasm_bindgen_test]
async fn engine_scores_an_image_on_the_cpu_fallback() {
    let mut engine = vlad_web::Engine::create(false).await;
    assert_eq!(engine.backend(), "cpu");
    let info = engine.load_weights(WEIGHTS.to_vec(), "tiny", "quick").unwrap();
    assert!(info.contains("\"architecture\":\"tiny\""), "{info}");
    engine.set_detector("zero-shot", r#"{"image_size": 32}"#).unwrap();
    engine.set_class("bottle").unwrap();
    let rgba: Vec<u8> = (0..40 * 30 * 4).map(|i| (i * 37 % 251) as u8).collect();
    let result = engine.score(rgba, 40, 30).await.unwrap();
    let score = js_sys::Reflect::get(&result, &"score".into()).unwrap().as_f64().unwrap();
    assert!((0.0..=1.0).contains(&score), "{score}");
    assert_eq!(engine.last_map().length(), 32 * 32);
}

// ---------------------------------------------------------------- timings (opt-in)

/// Load and inference times of a randomly initialised ViT-B/16 (OpenAI names, f16 burnpack of
/// 300 MB, as the page receives weights) through the engine: `images` images of 640×480 scored
/// at 224². Opt-in (minutes; SwiftShader needs about 7 minutes for one image on 2 cores):
/// `bash tests/browser.sh --timings`.
async fn vit_b_16_times(prefer_gpu: bool, images: usize) {
    let config = ClipConfig::preset("ViT-B-16").unwrap();
    let mut next = pseudo_random(16);
    // Box–Muller from the LCG: the initialisation scales want normal values.
    let mut normal = move || {
        let (u1, u2) = (f64::from(next()) + 0.5, f64::from(next()) + 0.5);
        (-2.0 * u1.max(1e-12).ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    };
    let entries = vlad_clip::weights::random_entries(&config, &mut normal);
    detectors::yield_to_browser().await;
    let bytes = burnpack_bytes(&entries, &WriteOptions { f16: true, overwrite: false, metadata: BTreeMap::new() }).unwrap();
    drop(entries);
    detectors::yield_to_browser().await;
    web_sys_log(&format!("ViT-B/16 random weights: {:.1} MB burnpack (f16)", bytes.len() as f64 / 1e6));
    let (w, h) = (640u32, 480u32);
    let rgba: Vec<u8> = (0..(w * h * 4) as usize).map(|i| (i * 37 % 251) as u8).collect();
    let mut engine = vlad_web::Engine::create(prefer_gpu).await;
    let backend = engine.backend();
    let t = web_time::Instant::now();
    let info = engine.load_weights(bytes, "", "").unwrap();
    let load = t.elapsed();
    assert!(info.contains("ViT-B-16"), "{info}");
    detectors::yield_to_browser().await;
    let t = web_time::Instant::now();
    engine.set_detector("zero-shot", r#"{"image_size": 224}"#).unwrap();
    engine.set_class("bottle").unwrap();
    let setup = t.elapsed();
    web_sys_log(&format!("[{backend}] ViT-B/16: load {load:?}, zero-shot set-up (text tower) {setup:?}"));
    for run in 0..images {
        detectors::yield_to_browser().await;
        let result = engine.score(rgba.clone(), w, h).await.unwrap();
        let timings = js_sys::JSON::stringify(&js_sys::Reflect::get(&result, &"timings".into()).unwrap()).unwrap();
        web_sys_log(&format!("[{backend}] ViT-B/16 image {run} ({w}×{h} → 224²): {}", String::from(timings)));
    }
}

#[wasm_bindgen_test]
#[ignore]
async fn vit_b_16_times_on_the_cpu() {
    vit_b_16_times(false, 3).await;
}

#[wasm_bindgen_test]
#[ignore]
async fn vit_b_16_times_on_webgpu() {
    vit_b_16_times(true, 1).await;
}

/// Decompression bombs on wasm32 (32-bit `usize`): refused by name from the header, by the
/// decoders and by the page's upload check, as natively (crates/imaging/tests/hostile_images.rs).
#[wasm_bindgen_test]
fn bombs_are_refused_by_name_on_wasm32() {
    let bombs: [(&str, &[u8], u32, u32); 4] = [
        ("PNG", include_bytes!("../../tests/fixtures/hostile/bomb.png"), 100_000, 100_000),
        ("JPEG", include_bytes!("../../tests/fixtures/hostile/bomb.jpg"), 65_500, 65_500),
        ("TIFF", include_bytes!("../../tests/fixtures/hostile/bomb.tiff"), 100_000, 100_000),
        ("BMP", include_bytes!("../../tests/fixtures/hostile/bomb.bmp"), 65_535, 65_535),
    ];
    for (format, bytes, w, h) in bombs {
        let limits = vlad_imaging::ImageLimits::default();
        for err in [
            vlad_imaging::checked_dimensions(bytes, &limits).map(|_| ()).unwrap_err(),
            vlad_imaging::decode_rgb_with_limits(bytes, &limits).map(|_| ()).unwrap_err(),
        ] {
            match err {
                vlad_imaging::ImagingError::TooManyPixels { format: f, width, height, .. } => assert_eq!((f, width, height), (format, w, h)),
                other => panic!("{format} bomb: expected TooManyPixels, got {other}"),
            }
        }
        assert!(vlad_web::check_image_header(bytes).is_err(), "{format} bomb passed the page's upload check");
    }
    let normal = include_bytes!("../../tests/fixtures/clip/image.png");
    assert!(vlad_web::check_image_header(normal).is_ok());
    assert!(vlad_web::check_image_size(13_378, 13_376).is_ok(), "13,378 × 13,376 = 178,944,128 ≤ 178,956,970");
    assert!(vlad_web::check_image_size(13_380, 13_376).is_err(), "13,380 × 13,376 = 178,970,880 > 178,956,970");
}
