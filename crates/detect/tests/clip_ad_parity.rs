//! CLIP-AD against the official code (fixtures of `tools/fixtures/clip_ad.py`, which runs the
//! official `test.py`, `test_ft.py` and `train.py` on the tiny MVTec layout of
//! `tests/fixtures/vand/data`): the staged dual path with its in-place aliasing, the prototypes
//! (mean and DBSCAN with both parameter sets), the SDP and SDP+ maps (σ 8 and 2) and s_text, one
//! SDP+ training step, DBSCAN against scikit-learn, and the released checkpoint format.
//!
//! Tolerance (the detector rule): max |diff| ≤ 1e-4 · max |reference|; the DBSCAN prototypes are
//! f16 values, compared to one f16 unit in the last place (2⁻¹¹ relative).
#![cfg(feature = "train")]
mod common;
mod linear_common;

use std::path::PathBuf;

use burn::module::Module;
use burn::tensor::{Tensor, TensorData};
use common::{assert_close, device, values};
use vlad_clip::weights::WeightFile;
use vlad_clip::{ClipConfig, ClipModel, ClipTokenizer, VisionForward};
use vlad_detect::clip_ad::dbscan::{dbscan, largest_cluster};
use vlad_detect::clip_ad::train::{ClipAdMethod, official_options};
use vlad_detect::clip_ad::{ClipAd, ClipAdConfig, ClipAdOptions, Rvs, TOP_LEVEL_KEY, staged_dual_path, text_prototypes};
use vlad_detect::vand::checkpoint;
use vlad_detect::vand::train::{LinearLayerMethod, batch_loss, load_batch, step, trainable};
use vlad_detect::{Detector, MapRange, SetFusion};

const TOL: f64 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    linear_common::fixture("clip_ad", name)
}

fn npy(name: &str) -> (Vec<usize>, Vec<f32>) {
    linear_common::npy("clip_ad", name)
}

fn config() -> serde_json::Value {
    linear_common::json("clip_ad", "config.json")
}

/// The hash-weight backbone, with the fixture's power-of-two factors on the text tower (they keep
/// the prompts apart; see the fixture script).
fn tiny_backbone() -> ClipModel {
    linear_common::hash_backbone(&config(), &device())
}

fn images() -> Tensor<4> {
    let (shape, v) = npy("images.npy");
    Tensor::from_data(TensorData::new(v, shape), &device())
}

/// The official settings of the test runs (`--rep_vec mean`, see the fixture script).
fn sdp_config(model: &ClipModel, sigma: f64) -> ClipAdConfig {
    ClipAdConfig { rvs: Rvs::Mean, sigma: Some(sigma), ..ClipAdConfig::for_backbone(&model.config) }
}

fn layers(model: &ClipModel, file: &str) -> vlad_detect::vand::LinearLayers {
    let file = checkpoint::open_keyed(&fixture(file), TOP_LEVEL_KEY).unwrap();
    checkpoint::load_weight_file(&file, &model.config, Some(&[3, 6, 9, 12]), &device()).unwrap().layers
}

#[test]
fn dual_path_taps_match_encode_image_with_the_aliasing() {
    let model = tiny_backbone();
    let config = sdp_config(&model, 8.0);
    assert_eq!(config.taps, vec![3, 6, 9, 12]);
    let taps = staged_dual_path(&model.visual, images(), &config.taps, false).unwrap();
    let surgery: Vec<f32> = taps.surgery.iter().flat_map(|t| values(t.clone())).collect();
    let original: Vec<f32> = taps.original.iter().flat_map(|t| values(t.clone())).collect();
    assert_close("surgery taps S_k", &surgery, &npy("surgery.npy").1, TOL);
    assert_close("original taps O_k (aliased)", &original, &npy("original.npy").1, TOL);
    // The aliasing is real: O_3 is block 4's mid state, not the residual stream after block 3.
    let clean = staged_dual_path(&model.visual, images(), &config.taps, true).unwrap();
    let plain = model.visual.forward(images(), VisionForward { taps: &[3, 6, 9, 12], ..Default::default() }).unwrap();
    for (k, (c, p)) in clean.original.iter().zip(&plain.taps).enumerate() {
        assert_close(&format!("clean O_{} = X_k", 3 * (k + 1)), &values(c.clone()), &values(p.clone()), 1e-6);
    }
    let (o3_official, x3) = (values(taps.original[0].clone()), values(plain.taps[0].clone()));
    let gap = o3_official.iter().zip(&x3).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(gap > 1e-3, "O_3 should differ from X_3 (aliasing), max |diff| {gap}");
    assert_close("O_12 is clean", &values(taps.original[3].clone()), &values(plain.taps[3].clone()), 1e-6);
}

#[test]
fn prototypes_match_mean_and_dbscan() {
    let model = tiny_backbone();
    let tokenizer = ClipTokenizer::openai().unwrap();
    for (file, rvs, tol) in [
        ("text_mean.npy", Rvs::Mean, TOL),
        ("text_dbscan_mvtec.npy", Rvs::official_for("mvtec"), 1.0 / 2048.0),
        ("text_dbscan_visa.npy", Rvs::official_for("visa"), 1.0 / 2048.0),
    ] {
        let (shape, want) = npy(file);
        let per = shape[1] * shape[2];
        for (i, class) in ["bottle", "metal_nut"].iter().enumerate() {
            let (text, notes) = text_prototypes(&model, &tokenizer, class, rvs).unwrap();
            assert!(notes.is_empty(), "{notes:?}");
            assert_close(&format!("{file} {class}"), &values(text.transpose()), &want[i * per..(i + 1) * per], tol);
        }
    }
}

#[test]
fn sdp_map_and_text_score_match_test_py() {
    let model = tiny_backbone();
    let config = sdp_config(&model, 8.0);
    let mut sdp = ClipAd::new(model, None, config, ClipAdOptions::default()).unwrap();
    assert_eq!(sdp.name(), "clip-ad");
    sdp.set_class("bottle").unwrap();
    let out = sdp.detect(images()).unwrap();
    assert_close("SDP map (σ 8)", &values(out.map.clone()), &npy("sdp_map.npy").1, TOL);
    assert_close("SDP s_text", &values(out.components[0].1.clone()), &npy("sdp_text.npy").1, TOL);
    let SetFusion::MinMax { map_weight, component_weight, map_range, normalize_component, .. } = sdp.set_fusion() else { panic!() };
    assert_eq!((map_weight, component_weight, map_range, normalize_component), (1.0, 1.0, MapRange::Statistics, true));
}

#[test]
fn sdp_plus_maps_match_test_ft_py() {
    let model = tiny_backbone();
    for (sigma, file) in [(8.0, "sdp_plus_map.npy"), (2.0, "sdp_plus_map_s2.npy")] {
        let layers = layers(&model, "linear.pth");
        let mut plus = ClipAd::new(model.clone(), Some(layers), sdp_config(&model, sigma), ClipAdOptions::default()).unwrap();
        assert_eq!(plus.name(), "clip-ad-plus");
        plus.set_class("bottle").unwrap();
        let out = plus.detect(images()).unwrap();
        assert_close(&format!("SDP+ map (σ {sigma})"), &values(out.map), &npy(file).1, TOL);
        assert_close("SDP+ s_text", &values(out.components[0].1.clone()), &npy("sdp_plus_text.npy").1, TOL);
    }
}

#[test]
fn one_sdp_plus_training_step_matches_train_py() {
    let model = tiny_backbone();
    let sdp = sdp_config(&model, 8.0);
    let options = official_options(&sdp, &model.config);
    assert_eq!((options.lr, options.betas, options.epochs, options.shuffle, options.seed), (1e-4, (0.9, 0.999), 5, false, 42));
    let method = ClipAdMethod::new(&model, sdp).unwrap();
    // The training batch: the test split in dataset order, loaded as train.py does.
    let paths: Vec<String> = serde_json::from_value(config()["test_images"].clone()).unwrap();
    let samples = linear_common::samples(&paths, vlad_data::Split::Test);
    let refs: Vec<&vlad_data::Sample> = samples.iter().collect();
    let (pixels, masks, classes) = load_batch(&refs, 28, &vec![None; 4], &device()).unwrap();
    assert_close("training images", &values(pixels.clone()), &npy("images.npy").1, 1e-5);
    let text = method.prototypes("bottle").unwrap();
    let text = Tensor::stack(classes.iter().map(|_| text.clone()).collect(), 0);
    let trained = trainable(layers(&model, "linear.pth"), &device());
    let (loss, _) = batch_loss(&trained, method.features(pixels.clone()).unwrap(), masks.clone(), text.clone(), 28);
    let got = values(loss.clone())[0] as f64;
    let want = config()["train_loss"].as_f64().unwrap();
    assert!((got - want).abs() <= 5e-5, "loss {got} vs logged {want}");
    let grads = loss.backward();
    let reference = WeightFile::open(&fixture("train_grads.safetensors"), None).unwrap();
    for (i, fc) in trained.fc.iter().enumerate() {
        let gw = values(fc.weight.grad(&grads).unwrap().transpose());
        let gb = values(fc.bias.as_ref().unwrap().grad(&grads).unwrap());
        assert_close(&format!("grad fc.{i}.weight"), &gw, &reference.entries[&format!("fc.{i}.weight")].to_f32("w").unwrap(), TOL);
        assert_close(&format!("grad fc.{i}.bias"), &gb, &reference.entries[&format!("fc.{i}.bias")].to_f32("b").unwrap(), TOL);
    }
    let mut optimizer = burn::optim::AdamConfig::new().with_beta_1(0.9).with_beta_2(0.999).with_epsilon(1e-8).init();
    let (stepped, _, _) = step(trained, &mut optimizer, &options, method.features(pixels).unwrap(), masks, text).unwrap();
    let after = layers(&model, "linear_step1.pth");
    for (i, (ours, theirs)) in stepped.valid().fc.iter().zip(&after.fc).enumerate() {
        assert_close(&format!("fc.{i}.weight after one step"), &values(ours.weight.val()), &values(theirs.weight.val()), TOL);
        assert_close(&format!("fc.{i}.bias after one step"), &values(ours.bias.as_ref().unwrap().val()), &values(theirs.bias.as_ref().unwrap().val()), TOL);
    }
}

#[test]
fn dbscan_matches_scikit_learn() {
    let cfg = config();
    let points: Vec<Vec<f32>> = serde_json::from_value(cfg["dbscan_points"].clone()).unwrap();
    let dim = points[0].len();
    let flat: Vec<f32> = points.iter().flatten().copied().collect();
    let unit: Vec<f32> = points
        .iter()
        .flat_map(|p| {
            let n = p.iter().map(|v| v * v).sum::<f32>().sqrt();
            p.iter().map(move |v| v / n)
        })
        .collect();
    for case in cfg["dbscan_cases"].as_array().unwrap() {
        let eps = case["eps"].as_f64().unwrap();
        let min_samples = case["min_samples"].as_u64().unwrap() as usize;
        let want: Vec<i64> = serde_json::from_value(case["labels"].clone()).unwrap();
        let data = if case["unit"].as_bool().unwrap_or(false) { &unit } else { &flat };
        assert_eq!(dbscan(data, dim, eps, min_samples), want, "eps {eps} min_samples {min_samples}");
    }
    assert_eq!(largest_cluster(&[-1, 2, 2, 0, 1, 1]), Some(1));
}

#[test]
fn released_checkpoint_format_loads_and_bad_files_are_named() {
    let model = tiny_backbone();
    let file = checkpoint::open_keyed(&fixture("linear.pth"), TOP_LEVEL_KEY).unwrap();
    let loaded = checkpoint::load_weight_file(&file, &model.config, Some(&[3, 6, 9, 12]), &device()).unwrap();
    assert_eq!(loaded.layers.fc.len(), 4);
    // Read with VAND's key the file has no state dict: the error names the file and the key.
    let err = checkpoint::open(&fixture("linear.pth")).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("linear.pth") && err.contains("trainable_linearlayer"), "{err}");
    // A wrong backbone (another vision width) is named with both shapes.
    let mut wrong = ClipConfig::from_json(&config()["clip"].to_string()).unwrap();
    wrong.vision.width = 64;
    let e = checkpoint::load_weight_file(&file, &wrong, Some(&[3, 6, 9, 12]), &device()).unwrap_err().to_string();
    assert!(e.contains("32") && e.contains("64"), "{e}");
}
