//! VAND / APRIL-GAN against the official code (fixtures of `tools/fixtures/vand.py`, which runs
//! the official `test.py` and `train.py` on a tiny MVTec-layout dataset): the positional resize,
//! checkpoint import, taps, the CLS embedding, text prototypes, the zero-shot and few-shot maps and
//! image scores, the few-shot set fusion, and one training step (loss, gradients, Adam update);
//! plus our checkpoint round trip and the errors for damaged files.
//!
//! Tolerance (the detector rule): max |diff| ≤ 1e-4 · max |reference| for every tensor.
#![cfg(feature = "train")]
mod common;
mod linear_common;

use std::path::PathBuf;

use burn::module::Module;
use burn::tensor::{Tensor, TensorData};
use common::{assert_close, device, values};
use vlad_clip::ClipModel;
use vlad_clip::weights::WeightFile;
use vlad_detect::vand::train::{TrainOptions, batch_loss, load_batch, step, trainable};
use vlad_detect::vand::{Vand, VandOptions, checkpoint, text_prototypes};
use vlad_detect::{Detector, MapRange, SetFusion};

const TOL: f64 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    linear_common::fixture("vand", name)
}

fn npy(name: &str) -> (Vec<usize>, Vec<f32>) {
    linear_common::npy("vand", name)
}

fn config() -> serde_json::Value {
    linear_common::json("vand", "config.json")
}

/// The hash-weight backbone of the fixtures (QuickGELU as the OpenAI stand-in; the detector
/// switches it to exact GELU and rule A).
fn tiny_backbone() -> ClipModel {
    linear_common::hash_backbone(&config(), &device())
}

fn detector(file: &str) -> Vand {
    let model = tiny_backbone();
    let weights = checkpoint::load_weight_file(&checkpoint::open(&fixture(file)).unwrap(), &model.config, None, &device()).unwrap();
    let options = VandOptions { image_size: Some(config()["image_size"].as_u64().unwrap() as usize), ..Default::default() };
    Vand::from_weights(model, weights, options).unwrap()
}

fn images() -> Tensor<4> {
    let (shape, v) = npy("images.npy");
    Tensor::from_data(TensorData::new(v, shape), &device())
}

#[test]
fn positional_table_taps_and_image_embedding_match_encode_image() {
    let vand = detector("linear.pth");
    let model = vand.model();
    let g = vand.grid();
    assert_eq!(g, 7);
    assert_close("pos_embed (resize_pos_embed, rule A)", &values(model.visual.positional_embedding_for(g)), &npy("pos_embed.npy").1, 1e-6);
    let out = model.visual.forward(images(), vlad_clip::VisionForward { taps: &[6, 12, 18, 24], ..Default::default() }).unwrap();
    let taps: Vec<f32> = out.taps.iter().flat_map(|t| values(t.clone())).collect();
    assert_close("taps 6/12/18/24 (CLS included)", &taps, &npy("taps.npy").1, TOL);
    assert_close("image features (ln_post(CLS) @ proj)", &values(model.visual.pool(out.last)), &npy("image_features.npy").1, TOL);
}

#[test]
fn our_preprocessing_of_the_pngs_gives_the_official_inputs() {
    let samples = linear_common::test_samples();
    let refs: Vec<&vlad_data::Sample> = samples.iter().collect();
    let (pixels, masks, classes) = load_batch(&refs, 28, &vec![None; refs.len()], &device()).unwrap();
    assert!(classes.iter().all(|c| c == "bottle"));
    // PIL bicubic squash + normalisation: the same bytes through the same arithmetic, f32.
    assert_close("preprocessed images", &values(pixels), &npy("images.npy").1, 1e-5);
    assert_eq!(values(masks), npy("masks.npy").1, "masks (PIL bilinear of the 0/255 mask, > 0.5)");
}

#[test]
fn text_prototypes_match_the_prompt_ensemble() {
    let vand = detector("linear.pth");
    let tokenizer = vlad_clip::ClipTokenizer::openai().unwrap();
    let (shape, want) = npy("text.npy");
    let per = shape[1] * shape[2];
    for (i, class) in config()["text_classes"].as_array().unwrap().iter().enumerate() {
        let class = class.as_str().unwrap();
        // Official layout [E, 2]; ours [2, E].
        let got = values(text_prototypes(vand.model(), &tokenizer, class).unwrap().transpose());
        assert_close(&format!("prototypes {class}"), &got, &want[i * per..(i + 1) * per], TOL);
    }
}

#[test]
fn zero_shot_map_and_score_match_test_py() {
    let mut vand = detector("linear.pth");
    vand.set_class("bottle").unwrap();
    assert_eq!(vand.set_fusion(), SetFusion::None);
    let out = vand.detect(images()).unwrap();
    assert_eq!(out.map.dims(), [4, 28, 28]);
    assert_close("zero-shot map", &values(out.map), &npy("zero_map.npy").1, TOL);
    assert_close("zero-shot image score (text probability)", &values(out.image_score), &npy("zero_score.npy").1, TOL);
    assert_close("text component", &values(out.components[0].1.clone()), &npy("zero_score.npy").1, TOL);
}

#[test]
fn few_shot_map_text_and_fused_score_match_test_py() {
    let mut vand = detector("linear.pth");
    vand.set_class("bottle").unwrap();
    // The official draw (k_shot.txt of the Python run): torch's generator cannot be replayed.
    let kshot: Vec<String> = config()["k_shot"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect();
    assert_eq!(kshot.len(), 2);
    let refs = linear_common::samples(&kshot, vlad_data::Split::Train);
    let refs: Vec<&vlad_data::Sample> = refs.iter().collect();
    let (reference, _, _) = load_batch(&refs, 28, &vec![None; refs.len()], &device()).unwrap();
    vand.fit_reference(reference).unwrap();
    let out = vand.detect(images()).unwrap();
    let map = values(out.map);
    assert_close("few-shot map", &map, &npy("few_map.npy").1, TOL);
    let text = values(out.components[0].1.clone());
    assert_close("few-shot text probability", &text, &npy("few_text.npy").1, TOL);
    // The set fusion the evaluation harness applies: 0.5·(text + minmax over the class of max map).
    let SetFusion::MinMax { map_weight, component_weight, map_range, normalize_component, .. } = vand.set_fusion() else { panic!("few-shot fuses") };
    assert_eq!((map_weight, component_weight, map_range, normalize_component), (0.5, 0.5, MapRange::Statistics, false));
    let maxima: Vec<f32> = map.chunks(28 * 28).map(|m| m.iter().copied().fold(f32::MIN, f32::max)).collect();
    let (lo, hi) = maxima.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let fused: Vec<f32> = maxima.iter().zip(&text).map(|(m, t)| 0.5 * (t + (m - lo) / (hi - lo))).collect();
    assert_close("few-shot fused image score", &fused, &npy("few_fused.npy").1, TOL);
    // The deployable single-image score.
    let single = values(out.image_score);
    for ((s, m), t) in single.iter().zip(&maxima).zip(&text) {
        assert!((s - 0.5 * (t + m)).abs() <= 1e-5, "{s} vs 0.5·({t} + {m})");
    }
}

#[test]
fn one_training_step_matches_train_py() {
    let vand = detector("linear.pth");
    let model = vand.model().clone();
    let options = TrainOptions::official(vand.config().clone());
    let samples = linear_common::test_samples();
    let refs: Vec<&vlad_data::Sample> = samples.iter().collect();
    let (pixels, masks, classes) = load_batch(&refs, 28, &vec![None; refs.len()], &device()).unwrap();
    let tokenizer = vlad_clip::ClipTokenizer::openai().unwrap();
    let text = text_prototypes(&model, &tokenizer, "bottle").unwrap();
    let text = Tensor::stack(classes.iter().map(|_| text.clone()).collect(), 0);
    let layers = trainable(vand.layers().clone(), &device());
    let features = || model.visual.forward(pixels.clone(), vlad_clip::VisionForward { taps: &vand.config().taps, ..Default::default() }).unwrap().taps;
    // Loss and gradients.
    let (loss, _) = batch_loss(&layers, features(), masks.clone(), text.clone(), 28);
    let want_loss = config()["train_loss"].as_f64().unwrap();
    let got_loss = values(loss.clone())[0] as f64;
    // The log prints 4 decimals.
    assert!((got_loss - want_loss).abs() <= 5e-5, "loss {got_loss} vs logged {want_loss}");
    let grads = loss.backward();
    let want = WeightFile::open(&fixture("train_grads.safetensors"), None).unwrap();
    for (i, fc) in layers.fc.iter().enumerate() {
        let gw = fc.weight.grad(&grads).unwrap().transpose();
        let gb = fc.bias.as_ref().unwrap().grad(&grads).unwrap();
        assert_close(&format!("grad fc.{i}.weight"), &values(gw), &want.entries[&format!("fc.{i}.weight")].to_f32("w").unwrap(), TOL);
        assert_close(&format!("grad fc.{i}.bias"), &values(gb), &want.entries[&format!("fc.{i}.bias")].to_f32("b").unwrap(), TOL);
    }
    // One Adam step gives the official epoch_1.pth.
    let mut optimizer = burn::optim::AdamConfig::new().with_beta_1(0.5).with_beta_2(0.999).with_epsilon(1e-8).init();
    let (stepped, _, _) = step(layers, &mut optimizer, &options, features(), masks, text).unwrap();
    let after = checkpoint::load_weight_file(&checkpoint::open(&fixture("linear_step1.pth")).unwrap(), &model.config, None, &device()).unwrap();
    for (i, (ours, theirs)) in stepped.valid().fc.iter().zip(&after.layers.fc).enumerate() {
        assert_close(&format!("fc.{i}.weight after one step"), &values(ours.weight.val()), &values(theirs.weight.val()), TOL);
        assert_close(&format!("fc.{i}.bias after one step"), &values(ours.bias.as_ref().unwrap().val()), &values(theirs.bias.as_ref().unwrap().val()), TOL);
    }
}

#[test]
fn checkpoints_round_trip_and_bad_files_are_named_errors() {
    let vand = detector("linear.pth");
    let model = vand.model().clone();
    let dir = std::env::temp_dir().join(format!("vand-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ours.safetensors");
    checkpoint::save(&path, vand.layers(), vand.config(), Some(3)).unwrap();
    let back = checkpoint::load_weight_file(&checkpoint::open(&path).unwrap(), &model.config, None, &device()).unwrap();
    assert_eq!((back.epoch, &back.config), (Some(3), vand.config()));
    for (a, b) in back.layers.fc.iter().zip(&vand.layers().fc) {
        assert_eq!(values(a.weight.val()), values(b.weight.val()));
    }
    let entries = |drop: Option<&str>, extra: Option<(&str, Vec<usize>)>, reshape: Option<(&str, Vec<usize>)>| {
        let mut tensors = checkpoint::tensors(vand.layers()).unwrap();
        tensors.retain(|t| Some(t.0.as_str()) != drop);
        if let Some((name, shape)) = extra {
            let n = shape.iter().product();
            tensors.push((name.to_string(), shape, vec![0.0; n]));
        }
        if let Some((name, shape)) = reshape {
            let t = tensors.iter_mut().find(|t| t.0 == name).unwrap();
            t.2 = vec![0.0; shape.iter().product()];
            t.1 = shape;
        }
        let bytes = vlad_detect::checkpoint_io::safetensors_bytes(&tensors, &Default::default()).unwrap();
        WeightFile::from_bytes(bytes, "damaged.safetensors").unwrap()
    };
    let err = |file: WeightFile| checkpoint::load_weight_file(&file, &model.config, None, &device()).unwrap_err().to_string();
    let e = err(entries(Some("fc.2.bias"), None, None));
    assert!(e.contains("damaged.safetensors") && e.contains("fc.2.bias"), "{e}");
    let e = err(entries(None, Some(("prompt_learner.ctx", vec![2, 3])), None));
    assert!(e.contains("damaged.safetensors") && e.contains("prompt_learner.ctx"), "{e}");
    let e = err(entries(None, None, Some(("fc.1.weight", vec![16, 31]))));
    assert!(e.contains("damaged.safetensors") && e.contains("fc.1.weight") && e.contains("16, 31") && e.contains("16, 32"), "{e}");
    let e = err(entries(Some("fc.3.weight"), None, None));
    assert!(e.contains("fc.3.weight"), "{e}");
    // Three layers for a backbone whose default is four taps: named, with the way out.
    let mut three = checkpoint::tensors(vand.layers()).unwrap();
    three.retain(|t| !t.0.starts_with("fc.3."));
    let file = WeightFile::from_bytes(vlad_detect::checkpoint_io::safetensors_bytes(&three, &Default::default()).unwrap(), "three.safetensors").unwrap();
    let e = checkpoint::load_weight_file(&file, &model.config, None, &device()).unwrap_err().to_string();
    assert!(e.contains("3 linear layers") && e.contains("give the tapped blocks"), "{e}");
    assert!(checkpoint::load_weight_file(&file, &model.config, Some(&[8, 16, 24]), &device()).is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}
