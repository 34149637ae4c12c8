//! AnomalyCLIP against the official code (fixtures of `tools/fixtures/anomaly_clip.py`, which runs
//! the official `test.py` and `train.py` on the tiny MVTec layout of `tests/fixtures/vand/data`):
//! the released checkpoint format, the learned prompts through the text tower with deep prompts,
//! the DPAM maps with tap 24 (the released models) and with taps 6/12/18/24, the image score, and
//! one training step's losses and gradients.
//!
//! Tolerance (the detector rule): max |diff| ≤ 1e-4 · max |reference|.
#![cfg(feature = "train")]
mod common;
mod linear_common;

use burn::module::Module;
use burn::tensor::Tensor;
use common::{assert_close, device, values};
use linear_common::{hash_backbone, json, npy, test_samples};
use vlad_clip::weights::WeightFile;
use vlad_detect::Detector;
use vlad_detect::anomaly_clip::train::{batch_loss, trainable};
use vlad_detect::anomaly_clip::{AnomalyClip, AnomalyClipOptions, checkpoint};
use vlad_detect::vand::train::load_batch;

const TOL: f64 = 1e-4;
const DIR: &str = "anomaly_clip";

fn detector(taps: Option<Vec<usize>>) -> AnomalyClip {
    let model = hash_backbone(&json(DIR, "config.json"), &device());
    let weights = checkpoint::load_weight_file(&checkpoint::open(&linear_common::fixture(DIR, "prompt_learner.pth")).unwrap(), &model.config, &device()).unwrap();
    assert_eq!((weights.config.n_ctx, weights.config.depth, weights.config.t_n_ctx), (12, 9, 4));
    assert!(weights.frame.is_some() && weights.notes.iter().any(|n| n.contains("16 compound_prompt_projections")), "{:?}", weights.notes);
    let options = AnomalyClipOptions { image_size: Some(28), taps, ..Default::default() };
    AnomalyClip::from_weights(model, weights, options).unwrap()
}

fn images() -> Tensor<4> {
    let samples = test_samples();
    let refs: Vec<&vlad_data::Sample> = samples.iter().collect();
    load_batch(&refs, 28, &vec![None; 4], &device()).unwrap().0
}

#[test]
fn text_features_match_encode_text_learn() {
    let clip = detector(None);
    assert_close("text features (deep prompts, f16-rounded)", &values(clip.text().clone()), &npy(DIR, "text.npy").1, TOL);
}

#[test]
fn maps_and_image_score_match_test_py() {
    let mut clip = detector(None);
    assert_eq!(clip.config().taps, vec![24]);
    clip.set_class("bottle").unwrap();
    let out = clip.detect(images()).unwrap();
    assert_close("map (tap 24, σ 4)", &values(out.map), &npy(DIR, "map_24.npy").1, TOL);
    assert_close("image score", &values(out.image_score), &npy(DIR, "image_score.npy").1, TOL);
    let multi = detector(Some(vec![6, 12, 18, 24])).detect(images()).unwrap();
    assert_close("map (taps 6/12/18/24)", &values(multi.map), &npy(DIR, "map_multi.npy").1, TOL);
}

#[test]
fn one_training_step_matches_train_py() {
    let clip = detector(None);
    let cfg = json(DIR, "config.json");
    let samples = test_samples();
    let refs: Vec<&vlad_data::Sample> = samples.iter().collect();
    let (pixels, masks, _) = load_batch(&refs, 28, &vec![None; 4], &device()).unwrap();
    let labels: Vec<usize> = samples.iter().map(|s| s.label.as_int() as usize).collect();
    let file = checkpoint::open(&linear_common::fixture(DIR, "prompt_learner.pth")).unwrap();
    let frame = checkpoint::load_weight_file(&file, &clip.model().config, &device()).unwrap().frame.unwrap();
    let learner = trainable(clip.learner().clone(), &device());
    let (total, image, local) = batch_loss(clip.model(), &learner, &frame, clip.config(), pixels, masks, &labels).unwrap();
    let (image_v, local_v) = (values(image)[0] as f64, 4.0 * values(local)[0] as f64);
    let (want_image, want_local) = (cfg["image_loss"].as_f64().unwrap(), cfg["weighted_local_loss"].as_f64().unwrap());
    // The log prints 4 decimals.
    assert!((image_v - want_image).abs() <= 5e-5, "image loss {image_v} vs logged {want_image}");
    assert!((local_v - want_local).abs() <= 5e-5, "4 × local loss {local_v} vs logged {want_local}");
    let grads = total.backward();
    // All gradients against the official step with `.half()` as an fp32 straight-through (the same
    // function); the contexts also against the unpatched step (the cast does not touch them). The
    // unpatched deep-prompt gradients carry fp16 rounding of each prompt's rows (the fixture
    // script's note) and are not a 1e-4 reference.
    let fp32 = WeightFile::open(&linear_common::fixture(DIR, "train_grads_fp32.safetensors"), None).unwrap();
    let official = WeightFile::open(&linear_common::fixture(DIR, "train_grads.safetensors"), None).unwrap();
    let check = |file: &WeightFile, tag: &str, name: &str, got: Tensor<2>| {
        assert_close(&format!("grad {name} ({tag})"), &values(got), &file.entries[name].to_f32(name).unwrap(), TOL)
    };
    for (name, p) in [("ctx_pos", &learner.ctx_pos), ("ctx_neg", &learner.ctx_neg)] {
        check(&fp32, "fp32 reference", name, p.grad(&grads).unwrap());
        check(&official, "official", name, p.grad(&grads).unwrap());
    }
    for (i, p) in learner.compound_prompts_text.iter().enumerate() {
        check(&fp32, "fp32 reference", &format!("compound_prompts_text.{i}"), p.grad(&grads).unwrap());
    }
}

#[test]
fn our_checkpoints_round_trip_and_bad_files_are_named() {
    let clip = detector(None);
    let file = checkpoint::open(&linear_common::fixture(DIR, "prompt_learner.pth")).unwrap();
    let frame = checkpoint::load_weight_file(&file, &clip.model().config, &device()).unwrap().frame.unwrap();
    let bytes = checkpoint::to_bytes(&clip.learner().clone().valid(), &frame, clip.config()).unwrap();
    let back = checkpoint::load_weight_file(&WeightFile::from_bytes(bytes, "ours.safetensors").unwrap(), &clip.model().config, &device()).unwrap();
    assert_eq!(values(back.learner.ctx_neg.val()), values(clip.learner().ctx_neg.val()));
    assert_eq!(back.config, *clip.config());
    // Damaged: a deep prompt of the wrong width, an unknown key, a missing context.
    let mut tensors = checkpoint::tensors(clip.learner(), &frame).unwrap();
    let t = tensors.iter_mut().find(|t| t.0 == "compound_prompts_text.3").unwrap();
    t.1 = vec![4, 63];
    t.2.truncate(4 * 63);
    tensors.push(("trainable_linearlayer.fc.0.bias".into(), vec![3], vec![0.0; 3]));
    let file = WeightFile::from_bytes(vlad_detect::checkpoint_io::safetensors_bytes(&tensors, &Default::default()).unwrap(), "bad.safetensors").unwrap();
    let e = checkpoint::load_weight_file(&file, &clip.model().config, &device()).err().map(|e| e.to_string()).unwrap();
    assert!(e.contains("bad.safetensors") && e.contains("compound_prompts_text.3") && e.contains("[4, 63]") && e.contains("[4, 64]"), "{e}");
    let none = WeightFile::from_bytes(vlad_detect::checkpoint_io::safetensors_bytes(&[("fc.0.bias".into(), vec![2], vec![0.0; 2])], &Default::default()).unwrap(), "vand.safetensors").unwrap();
    let e = checkpoint::load_weight_file(&none, &clip.model().config, &device()).err().map(|e| e.to_string()).unwrap();
    assert!(e.contains("vand.safetensors") && e.contains("ctx_pos"), "{e}");
}
