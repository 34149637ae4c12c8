//! The detectors' parity fixtures in the browser: the same references the native tests use
//! (open_clip/anomalib for zero-shot CLIP and WinCLIP, the official AA-CLIP, Bayes-PFL and VAND code),
//! run on WebGPU and on the CPU backend. Tolerance as natively: max |diff| ≤ 1e-4 · max |ref|.
use std::collections::{BTreeMap, VecDeque};

use burn::tensor::{Device, Tensor, TensorData};
use vlad_clip::model::LoadOptions;
use vlad_clip::weights::{Entry, WeightFile, WeightReader};
use vlad_clip::{Activation, ClipConfig, ClipModel};
use vlad_detect::Detector;
use vlad_detect::aa_clip::checkpoint::load_weight_files;
use vlad_detect::aa_clip::{AaClip, AaClipOptions, Domain};
use vlad_detect::bayes_pfl::{BayesPfl, BayesPflOptions, FixedNoise, NoiseMode, StageChoice, load_checkpoint};
use vlad_detect::ada_clip::{AdaClip, AdaClipOptions, KMeansSeeding};
use vlad_detect::anomaly_clip::{AnomalyClip, AnomalyClipOptions};
use vlad_detect::clip_ad::{ClipAd, ClipAdConfig, ClipAdOptions, Rvs};
use vlad_detect::vand::{Vand, VandOptions};
use vlad_detect::winclip::{WinClip, WinClipConfig};
use vlad_detect::zero_shot::{ZeroShotClip, ZeroShotConfig, ZeroShotPrompts};

use super::{npy, read_any, web_sys_log};

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    #[wasm_bindgen::prelude::wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(f: &js_sys::Function, ms: i32) -> i32;
}

/// Hands the page back to the browser for a moment. Submitting a GPU detection is synchronous
/// work on the page's thread (cubecl compiles each new kernel to WGSL in WebAssembly: 7–12 s per
/// AA-CLIP stage the first time on SwiftShader); without a break between stages the renderer
/// stops answering the test driver, which gives up after 30 s.
pub async fn yield_to_browser() {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        set_timeout(&resolve, 0);
    });
    wasm_bindgen_futures::JsFuture::from(promise).await.expect("setTimeout resolves");
}

/// max |got − want| ≤ 1e-4 · max |want|, NaN anywhere fails (the detector issues' rule).
fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: {} values, reference has {}", got.len(), want.len());
    let (mut diff, mut scale) = (0f64, 0f64);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(g.is_finite() && w.is_finite(), "{what}[{i}]: got {g}, reference {w}");
        diff = diff.max((g as f64 - w as f64).abs());
        scale = scale.max((w as f64).abs());
    }
    web_sys_log(&format!("{what}: max abs diff {diff:.3e} (max |ref| {scale:.3e}, {} values)", want.len()));
    assert!(diff <= 1e-4 * scale, "{what}: max abs diff {diff:e} > 1e-4 × {scale:e}");
}

fn tensor4(bytes: &[u8], device: &Device) -> Tensor<4> {
    let (shape, values) = npy(bytes);
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// The hash-weight backbone a fixture config describes (`clip`, `manifest`, optional power-of-two
/// `scales`; values from `vlad_clip::weights::hashed_parameter`), as the native tests build it.
fn hash_backbone(cfg: &serde_json::Value, device: &Device) -> ClipModel {
    let clip = ClipConfig::from_json(&cfg["clip"].to_string()).unwrap();
    let mut entries = BTreeMap::new();
    for item in cfg["manifest"].as_array().unwrap() {
        let name = item[0].as_str().unwrap();
        let shape: Vec<usize> = item[1].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
        let scale = cfg["scales"][name].as_f64().unwrap_or(1.0) as f32;
        let values = vlad_clip::weights::hashed_parameter(name, &shape).into_iter().map(|v| v * scale).collect();
        entries.insert(name.to_string(), Entry::from_values(shape, values));
    }
    let mut reader = WeightReader::new("hash backbone", entries, device);
    let model = ClipModel::from_reader(&clip, &mut reader);
    assert!(reader.finish(false).unwrap().is_complete());
    model
}

macro_rules! detect_fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../../tests/fixtures/detect/", $name))
    };
}

// ------------------------------------------------------------------ zero-shot CLIP and WinCLIP

fn baselines_backbone(activation: Activation, device: &Device) -> ClipModel {
    let config = ClipConfig::from_json(include_str!("../../../tests/fixtures/detect/tiny_config.json")).unwrap().with_activation(activation);
    let file = WeightFile::from_bytes(detect_fixture!("tiny.safetensors").to_vec(), "tiny.safetensors").unwrap();
    let (model, report) = ClipModel::load(&config, &file, device, LoadOptions::default()).unwrap();
    assert!(report.is_complete(), "{report}");
    model
}

/// Plain zero-shot CLIP against open_clip's towers (tools/fixtures/detect_baselines.py).
pub async fn zero_shot(device: &Device, tag: &str) {
    let cases: [(ZeroShotPrompts, Option<f64>, &[u8], &[u8], &[u8]); 3] = [
        (
            ZeroShotPrompts::Single,
            None,
            detect_fixture!("zs_single_raw_image_score.npy"),
            detect_fixture!("zs_single_raw_patch_map.npy"),
            detect_fixture!("zs_single_raw_map.npy"),
        ),
        (
            ZeroShotPrompts::Single,
            Some(4.0),
            detect_fixture!("zs_single_sigma4_image_score.npy"),
            detect_fixture!("zs_single_sigma4_patch_map.npy"),
            detect_fixture!("zs_single_sigma4_map.npy"),
        ),
        (
            ZeroShotPrompts::WinClipEnsemble,
            None,
            detect_fixture!("zs_winclip_raw_image_score.npy"),
            detect_fixture!("zs_winclip_raw_patch_map.npy"),
            detect_fixture!("zs_winclip_raw_map.npy"),
        ),
    ];
    for (prompts, sigma, score, patch, map) in cases {
        let what = format!("{tag} zero-shot {prompts:?} σ={sigma:?}");
        let mut config = ZeroShotConfig::new(48);
        config.prompts = prompts;
        config.smoothing_sigma = sigma;
        let mut detector = ZeroShotClip::new(baselines_backbone(Activation::QuickGelu, device), config).unwrap();
        detector.set_class("bottle").unwrap();
        yield_to_browser().await;
        let out = detector.detect(tensor4(detect_fixture!("tiny_images.npy"), device)).unwrap();
        assert_close(&format!("{what} image score"), &read_any(out.image_score).await, &npy(score).1);
        assert_close(&format!("{what} patch map"), &read_any(out.patch_map).await, &npy(patch).1);
        assert_close(&format!("{what} map"), &read_any(out.map).await, &npy(map).1);
    }
}

/// WinCLIP and WinCLIP+ (2 references) against anomalib's `WinClipModel`.
pub async fn winclip(device: &Device, tag: &str) {
    let mut detector = WinClip::new(baselines_backbone(Activation::Gelu, device), WinClipConfig::default()).unwrap();
    detector.set_class("bottle").unwrap();
    yield_to_browser().await;
    let images = || tensor4(detect_fixture!("tiny_images.npy"), device);
    let out = detector.detect(images()).unwrap();
    assert_close(&format!("{tag} WinCLIP zero-shot image score"), &read_any(out.image_score).await, &npy(detect_fixture!("wc_zero_image_score.npy")).1);
    assert_close(&format!("{tag} WinCLIP zero-shot map"), &read_any(out.map).await, &npy(detect_fixture!("wc_zero_map.npy")).1);
    detector.fit_reference(tensor4(detect_fixture!("tiny_refs.npy"), device)).unwrap();
    yield_to_browser().await;
    let out = detector.detect(images()).unwrap();
    assert_close(&format!("{tag} WinCLIP+ 2-shot image score"), &read_any(out.image_score).await, &npy(detect_fixture!("wc_few_image_score.npy")).1);
    assert_close(&format!("{tag} WinCLIP+ 2-shot map"), &read_any(out.map).await, &npy(detect_fixture!("wc_few_map.npy")).1);
}

// ------------------------------------------------------------------ AA-CLIP

macro_rules! aa_fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../../tests/fixtures/aa_clip/", $name))
    };
}

/// AA-CLIP's maps and image score with the official adapter files (`.pth`, read from bytes),
/// industrial and medical, against the official test script.
pub async fn aa_clip(device: &Device, tag: &str) {
    let cfg: serde_json::Value = serde_json::from_str(include_str!("../../../tests/fixtures/aa_clip/config.json")).unwrap();
    let image_size = cfg["image_size"].as_u64().unwrap() as usize;
    let model = hash_backbone(&cfg, device);
    let files = [
        WeightFile::from_bytes(aa_fixture!("text_adapter.pth").to_vec(), "text_adapter.pth").unwrap(),
        WeightFile::from_bytes(aa_fixture!("image_adapter.pth").to_vec(), "image_adapter.pth").unwrap(),
    ];
    let images = || tensor4(aa_fixture!("images.npy"), device);
    for (domain, want) in [(Domain::Industrial, &aa_fixture!("map_industrial.npy")[..]), (Domain::Medical, &aa_fixture!("map_medical.npy")[..])] {
        let weights = load_weight_files(&files, &model.config, device).unwrap();
        let options = AaClipOptions { image_size: Some(image_size), domain: Some(domain), ..Default::default() };
        let mut detector = AaClip::new(model.clone(), weights, options).unwrap();
        detector.set_class("bottle").unwrap();
        yield_to_browser().await;
        let out = detector.detect(images()).unwrap();
        assert_close(&format!("{tag} AA-CLIP map ({domain:?})"), &read_any(out.map).await, &npy(want).1);
        if domain == Domain::Industrial {
            assert_close(&format!("{tag} AA-CLIP image score (det)"), &read_any(out.image_score).await, &npy(aa_fixture!("image_raw.npy")).1);
        }
    }
}

// ------------------------------------------------------------------ Bayes-PFL

macro_rules! bp_fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../../tests/fixtures/bayes_pfl/", $name))
    };
}

/// Bayes-PFL with the official head file (`{'MyModel': …}` `.pth`, read from bytes) and the
/// recorded noise, two images of one run (pcb1, then screw), against the official test loop: the
/// per-layer maps, the final map (raw and σ = 8) and both image-score components.
pub async fn bayes_pfl(device: &Device, tag: &str) {
    let config = ClipConfig::from_json(include_str!("../../../tests/fixtures/bayes_pfl/tiny_config.json")).unwrap();
    let mut file = WeightFile::from_bytes(bp_fixture!("clip.safetensors").to_vec(), "clip.safetensors").unwrap();
    // The fixture keeps only the token rows the prompts use; the rest of the table is zero.
    let ids: Vec<usize> = serde_json::from_str(include_str!("../../../tests/fixtures/bayes_pfl/token_ids.json")).unwrap();
    let rows = npy(bp_fixture!("token_rows.npy")).1;
    let (vocab, width) = (config.text.vocab_size, config.text.width);
    let mut table = vec![0f32; vocab * width];
    for (i, &id) in ids.iter().enumerate() {
        table[id * width..(id + 1) * width].copy_from_slice(&rows[i * width..(i + 1) * width]);
    }
    file.entries.insert("token_embedding.weight".into(), Entry::from_values(vec![vocab, width], table));
    let (model, report) = ClipModel::load(&config, &file, device, LoadOptions::default()).unwrap();
    assert!(report.is_complete(), "{report}");

    let head = WeightFile::from_bytes_with_key(bp_fixture!("head.pth").to_vec(), "head.pth", Some("MyModel")).unwrap();
    let checkpoint = load_checkpoint(&head, device, StageChoice::FromFile, false).unwrap();
    let options = BayesPflOptions { taps: vec![1, 2, 3, 4], image_size: 48, samples: 2, noise: NoiseMode::Zero, ..BayesPflOptions::default() };
    let mut detector = BayesPfl::from_checkpoint(model, checkpoint, options).unwrap();
    let refs = WeightFile::from_bytes(bp_fixture!("infer.safetensors").to_vec(), "infer.safetensors").unwrap();
    let values = |key: &str| refs.entries[key].to_f32(key).unwrap();
    detector.set_noise(Box::new(FixedNoise {
        context: VecDeque::from([values("img0_eps_context"), values("img1_eps_context")]),
        normal: VecDeque::from([values("eps_normal")]),
        abnormal: VecDeque::from([values("eps_abnormal")]),
    }));
    let images = Tensor::<4>::from_data(TensorData::new(values("images"), refs.entries["images"].shape.clone()), device);
    for (i, class) in ["pcb1", "screw"].into_iter().enumerate() {
        detector.set_class(class).unwrap();
        yield_to_browser().await;
        let out = detector.forward(images.clone().slice([i..i + 1, 0..3, 0..48, 0..48]), true).unwrap();
        let p = format!("img{i}");
        let layer_maps = Tensor::cat(out.layers.iter().map(|l| l.map.clone().reshape([-1])).collect(), 0);
        assert_close(&format!("{tag} Bayes-PFL {class} per-layer maps"), &read_any(layer_maps).await, &values(&format!("{p}_layer_maps")));
        assert_close(&format!("{tag} Bayes-PFL {class} map"), &read_any(out.map).await, &values(&format!("{p}_map")));
        assert_close(&format!("{tag} Bayes-PFL {class} map σ=8"), &read_any(out.smoothed).await, &values(&format!("{p}_map_sigma8")));
        assert_close(&format!("{tag} Bayes-PFL {class} s_text"), &read_any(out.s_text).await, &values(&format!("{p}_s_text")));
        assert_close(&format!("{tag} Bayes-PFL {class} s_map"), &read_any(out.s_map).await, &values(&format!("{p}_s_map")));
    }
}


// ------------------------------------------------------------------ VAND / APRIL-GAN

macro_rules! vand_fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../../tests/fixtures/vand/", $name))
    };
}

/// VAND with the official `{'trainable_linearlayer': …}` file read from bytes, against the
/// official `test.py`: the zero-shot map and text score, then the few-shot map with the two
/// reference PNGs of the Python run's `k_shot.txt`, decoded and preprocessed as the page does.
pub async fn vand(device: &Device, tag: &str) {
    let cfg: serde_json::Value = serde_json::from_str(include_str!("../../../tests/fixtures/vand/config.json")).unwrap();
    let model = hash_backbone(&cfg, device);
    let bytes = vand_fixture!("linear.pth").to_vec();
    let key = vlad_detect::vand::checkpoint::top_level_key(&bytes);
    let file = WeightFile::from_bytes_with_key(bytes, "linear.pth", key).unwrap();
    let weights = vlad_detect::vand::checkpoint::load_weight_file(&file, &model.config, None, device).unwrap();
    let options = VandOptions { image_size: Some(cfg["image_size"].as_u64().unwrap() as usize), ..Default::default() };
    let mut detector = Vand::from_weights(model, weights, options).unwrap();
    web_sys_log(&format!("{tag} VAND: encoding the 420 prompts"));
    detector.set_class("bottle").unwrap();
    yield_to_browser().await;
    web_sys_log(&format!("{tag} VAND: zero-shot detection"));
    let out = detector.detect(tensor4(vand_fixture!("images.npy"), device)).unwrap();
    assert_close(&format!("{tag} VAND zero-shot map"), &read_any(out.map).await, &npy(vand_fixture!("zero_map.npy")).1);
    assert_close(&format!("{tag} VAND text score"), &read_any(out.image_score).await, &npy(vand_fixture!("zero_score.npy")).1);
    assert_eq!(cfg["k_shot"], serde_json::json!(["bottle/train/good/000.png", "bottle/train/good/001.png"]));
    let pre = detector.preprocess();
    let references: Vec<Vec<f32>> = [&vand_fixture!("data/bottle/train/good/000.png")[..], &vand_fixture!("data/bottle/train/good/001.png")[..]]
        .iter()
        .map(|png| pre.to_chw(&vlad_imaging::decode_rgb(png).unwrap()))
        .collect();
    web_sys_log(&format!("{tag} VAND: few-shot memory"));
    detector.fit_reference(pre.batch(&references, device).unwrap()).unwrap();
    yield_to_browser().await;
    web_sys_log(&format!("{tag} VAND: few-shot detection"));
    let out = detector.detect(tensor4(vand_fixture!("images.npy"), device)).unwrap();
    assert_close(&format!("{tag} VAND few-shot map"), &read_any(out.map).await, &npy(vand_fixture!("few_map.npy")).1);
}

// ------------------------------------------------------------------ CLIP-AD

macro_rules! clip_ad_fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../../tests/fixtures/clip_ad/", $name))
    };
}

/// CLIP-AD against the official `test.py` (SDP) and `test_ft.py` (SDP+ with the released
/// `{'linear_layers': …}` format read from bytes), both at σ = 8 with the `mean` prototypes of the
/// fixture run.
pub async fn clip_ad(device: &Device, tag: &str) {
    let cfg: serde_json::Value = serde_json::from_str(include_str!("../../../tests/fixtures/clip_ad/config.json")).unwrap();
    let model = hash_backbone(&cfg, device);
    let config = ClipAdConfig { rvs: Rvs::Mean, ..ClipAdConfig::for_backbone(&model.config) };
    let bytes = clip_ad_fixture!("linear.pth").to_vec();
    let key = vlad_detect::vand::checkpoint::keyed(&bytes, vlad_detect::clip_ad::TOP_LEVEL_KEY);
    let file = WeightFile::from_bytes_with_key(bytes, "linear.pth", key).unwrap();
    let layers = vlad_detect::vand::checkpoint::load_weight_file(&file, &model.config, Some(&config.taps), device).unwrap().layers;
    for (layers, want, what) in [(None, &clip_ad_fixture!("sdp_map.npy")[..], "SDP"), (Some(layers), &clip_ad_fixture!("sdp_plus_map.npy")[..], "SDP+")] {
        let mut detector = ClipAd::new(model.clone(), layers, config.clone(), ClipAdOptions::default()).unwrap();
        detector.set_class("bottle").unwrap();
        yield_to_browser().await;
        let out = detector.detect(tensor4(clip_ad_fixture!("images.npy"), device)).unwrap();
        assert_close(&format!("{tag} CLIP-AD {what} map"), &read_any(out.map).await, &npy(want).1);
        assert_close(&format!("{tag} CLIP-AD {what} s_text"), &read_any(out.components[0].1.clone()).await, &npy(clip_ad_fixture!("sdp_text.npy")).1);
    }
}

/// The tiny layout's four test images in meta.json order (good/000, good/001, broken_large/000,
/// broken_large/001), decoded and preprocessed as the page does.
fn tiny_layout_test_images(pre: &vlad_clip::preprocess::Preprocess) -> Vec<Vec<f32>> {
    let meta: serde_json::Value = serde_json::from_str(include_str!("../../../tests/fixtures/vand/data/meta.json")).unwrap();
    let png = |path: &str| -> &'static [u8] {
        match path {
            "bottle/test/good/000.png" => vand_fixture!("data/bottle/test/good/000.png"),
            "bottle/test/good/001.png" => vand_fixture!("data/bottle/test/good/001.png"),
            "bottle/test/broken_large/000.png" => vand_fixture!("data/bottle/test/broken_large/000.png"),
            "bottle/test/broken_large/001.png" => vand_fixture!("data/bottle/test/broken_large/001.png"),
            other => panic!("unexpected test image {other}"),
        }
    };
    meta["test"]["bottle"].as_array().unwrap().iter().map(|i| pre.to_chw(&vlad_imaging::decode_rgb(png(i["img_path"].as_str().unwrap())).unwrap())).collect()
}

// ------------------------------------------------------------------ AnomalyCLIP

macro_rules! anomaly_clip_fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../../tests/fixtures/anomaly_clip/", $name))
    };
}

/// AnomalyCLIP with the official `{'prompt_learner': …}` file read from bytes, against the
/// official `test.py` with tap 24: the map and the image score. The test images are the tiny
/// layout's PNGs, decoded and preprocessed as the page does.
pub async fn anomaly_clip(device: &Device, tag: &str) {
    let cfg: serde_json::Value = serde_json::from_str(include_str!("../../../tests/fixtures/anomaly_clip/config.json")).unwrap();
    let model = hash_backbone(&cfg, device);
    let bytes = anomaly_clip_fixture!("prompt_learner.pth").to_vec();
    let key = vlad_detect::anomaly_clip::checkpoint::top_level_key(&bytes);
    let file = WeightFile::from_bytes_with_key(bytes, "prompt_learner.pth", key).unwrap();
    let weights = vlad_detect::anomaly_clip::checkpoint::load_weight_file(&file, &model.config, device).unwrap();
    let mut detector = AnomalyClip::from_weights(model, weights, AnomalyClipOptions { image_size: Some(28), ..Default::default() }).unwrap();
    detector.set_class("bottle").unwrap();
    let pre = detector.preprocess();
    let images = tiny_layout_test_images(&pre);
    yield_to_browser().await;
    let out = detector.detect(pre.batch(&images, device).unwrap()).unwrap();
    assert_close(&format!("{tag} AnomalyCLIP map"), &read_any(out.map).await, &npy(anomaly_clip_fixture!("map_24.npy")).1);
    assert_close(&format!("{tag} AnomalyCLIP image score"), &read_any(out.image_score).await, &npy(anomaly_clip_fixture!("image_score.npy")).1);
}

// ------------------------------------------------------------------ AdaCLIP

macro_rules! ada_clip_fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../../tests/fixtures/ada_clip/", $name))
    };
}

/// AdaCLIP with the official `AdaCLIP_Trainer.save` file read from bytes, against the official
/// `evaluation()` (one k-means stream over the four test images in order): the maps and the HSF
/// image scores, through the page's staged scoring (every read-back awaited, as WebGPU needs).
pub async fn ada_clip(device: &Device, tag: &str) {
    let cfg: serde_json::Value = serde_json::from_str(include_str!("../../../tests/fixtures/ada_clip/config.json")).unwrap();
    let model = hash_backbone(&cfg, device);
    let file = WeightFile::from_bytes(ada_clip_fixture!("ada_clip.pth").to_vec(), "ada_clip.pth").unwrap();
    let weights = vlad_detect::ada_clip::checkpoint::load_weight_file(&file, &model.config, device).unwrap();
    let options = AdaClipOptions { image_size: Some(48), seeding: Some(KMeansSeeding::Stream(111)), ..Default::default() };
    let mut detector = AdaClip::from_weights(model, weights, options).unwrap();
    detector.set_class("bottle").unwrap();
    let pre = detector.preprocess();
    let images = tiny_layout_test_images(&pre);
    yield_to_browser().await;
    let out = vlad_web::detect_async(&detector, pre.batch(&images, device).unwrap()).await.map_err(|_| "detect failed").unwrap();
    assert_close(&format!("{tag} AdaCLIP map"), &read_any(out.map).await, &npy(ada_clip_fixture!("map.npy")).1);
    assert_close(&format!("{tag} AdaCLIP HSF image score"), &read_any(out.image_score).await, &npy(ada_clip_fixture!("image_score.npy")).1);
}

// ------------------------------------------------------------------ MVFA-AD

macro_rules! mvfa_fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../../tests/fixtures/mvfa/", $name))
    };
}

/// MVFA-AD zero-shot with the official `{'seg_adapters', 'det_adapters'}` file read from bytes,
/// against the official `test_zero.test`: the maps and image scores, min–max normalised over the
/// four test images as the official test passes them on.
pub async fn mvfa(device: &Device, tag: &str) {
    use vlad_detect::mvfa::{Mvfa, MvfaOptions};
    let cfg: serde_json::Value = serde_json::from_str(include_str!("../../../tests/fixtures/mvfa/config.json")).unwrap();
    let model = hash_backbone(&cfg, device);
    let file = WeightFile::from_bytes(mvfa_fixture!("adapters.pth").to_vec(), "adapters.pth").unwrap();
    let weights = vlad_detect::mvfa::checkpoint::load_weight_file(&file, &model.config, device).unwrap();
    let mut detector = Mvfa::from_weights(model, weights, MvfaOptions { image_size: Some(24), ..Default::default() }).unwrap();
    detector.set_class("Brain").unwrap();
    let pre = detector.preprocess();
    let pngs: [&[u8]; 4] = [
        mvfa_fixture!("data/Brain_AD/test/good/img/test_000.png"),
        mvfa_fixture!("data/Brain_AD/test/good/img/test_001.png"),
        mvfa_fixture!("data/Brain_AD/test/Ungood/img/test_000.png"),
        mvfa_fixture!("data/Brain_AD/test/Ungood/img/test_001.png"),
    ];
    let images: Vec<Vec<f32>> = pngs.iter().map(|p| pre.to_chw(&vlad_imaging::decode_rgb(p).unwrap())).collect();
    yield_to_browser().await;
    let out = detector.detect(pre.batch(&images, device).unwrap()).unwrap();
    let min_max = |v: Vec<f32>| -> Vec<f32> {
        let (lo, hi) = v.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
        v.iter().map(|x| (x - lo) / (hi - lo)).collect()
    };
    assert_close(&format!("{tag} MVFA map (set-normalised)"), &min_max(read_any(out.map).await), &npy(mvfa_fixture!("map_norm.npy")).1);
    assert_close(&format!("{tag} MVFA image score (set-normalised)"), &min_max(read_any(out.image_score).await), &npy(mvfa_fixture!("score_norm.npy")).1);
}
