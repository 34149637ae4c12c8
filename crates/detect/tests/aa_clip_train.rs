//! AA-CLIP training against the official `train.py` (fixtures of `tools/fixtures/aa_clip.py`,
//! which ran `train_text_adapter` and `train_image_adapter` for one batch): the loss of one step
//! of each stage, the gradients of every adapter weight, and the weights after the Adam step; the
//! same for stage 1 with both quirks fixed; and the losses on their own.
//!
//! Tolerances: losses to 1e-5 relative; gradients max |diff| ≤ 1e-4 · max |reference| (the
//! detector rule; they pass through 24 blocks); Adam updates max |Δ diff| ≤ 1e-3 · lr, a bound
//! that still catches a wrong β, ε or learning rate (each changes the update by ≥ 1e-3 · lr).
#![cfg(feature = "train")]
mod aa_clip_common;

use std::collections::BTreeMap;

use aa_clip_common::{assert_close, config, device, fixture, image_size, npy_tensor, tiny_backbone, values};
use burn::nn::Linear;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Tensor, TensorData};
use vlad_clip::ClipTokenizer;
use vlad_clip::weights::WeightFile;
use vlad_detect::aa_clip::checkpoint::{self, image_tensors, text_tensors};
use vlad_detect::aa_clip::train::{cross_entropy, seg_loss, stage1_loss, stage2_loss, surgery_features, trainable_image, trainable_text};
use vlad_detect::aa_clip::{AaClipWeights, ClassTokens, anchors, class_tokens, prompts};
use vlad_detect::losses::{binary_dice_loss, focal_loss};

fn scalar(name: &str) -> f64 {
    config()["scalars"][name].as_f64().unwrap()
}

fn load(files: &[&str]) -> AaClipWeights {
    let model = tiny_backbone(&device());
    let paths: Vec<_> = files.iter().map(|f| fixture(f)).collect();
    checkpoint::load_files(&paths, &model.config, &device()).unwrap()
}

/// A safetensors fixture of gradients, keyed like the official state dict.
fn reference(name: &str) -> BTreeMap<String, Vec<f32>> {
    let file = WeightFile::open(&fixture(name), None).unwrap();
    file.entries.iter().map(|(k, e)| (k.clone(), e.to_f32(k).unwrap())).collect()
}

/// The gradient of a linear weight in PyTorch's `[out, in]` layout.
fn grad(linear: &Linear, grads: &burn::tensor::Gradients) -> Vec<f32> {
    values(linear.weight.val().grad(grads).expect("the weight has a gradient").transpose())
}

fn batch() -> (Tensor<4>, Tensor<4>, Vec<String>, Vec<usize>) {
    let cfg = config();
    let classes: Vec<String> = serde_json::from_value(cfg["batch_classes"].clone()).unwrap();
    let labels: Vec<usize> = serde_json::from_value(cfg["labels"].clone()).unwrap();
    (npy_tensor("images.npy", &device()), npy_tensor("masks.npy", &device()), classes, labels)
}

fn assert_loss(what: &str, got: f64, want: f64) {
    eprintln!("{what}: {got} (official {want})");
    assert!((got - want).abs() <= 1e-5 * want.abs(), "{what}: {got} vs official {want}");
}

fn class_setup(classes: &[String]) -> (Vec<ClassTokens>, Vec<usize>) {
    let tokenizer = ClipTokenizer::openai().unwrap();
    let mut distinct: Vec<String> = Vec::new();
    for c in classes {
        if !distinct.contains(c) {
            distinct.push(c.clone());
        }
    }
    let tokens = distinct.iter().map(|c| class_tokens(&tokenizer, &prompts::real_name(c).0).unwrap()).collect();
    let index = classes.iter().map(|c| distinct.iter().position(|d| d == c).unwrap()).collect();
    (tokens, index)
}

/// Compares the update of an Adam step (new − old) with the official one, element by element where
/// the reference gradient (`grads`, keyed by the tensor name without `prefix`) is significant:
/// |g| > 1e-4 · max |g|, the gradient check's own tolerance. A first Adam step is
/// lr · g / (|g| + ε), so below that level the gradients agree only to within their tolerance and
/// the step's size is not determined by them (the Bayes-PFL training test uses the same rule);
/// there the step is only bounded by lr, as Adam's first step always is (up to f32 rounding).
fn assert_update(
    what: &str,
    before: &[(String, Vec<usize>, Vec<f32>)],
    after: &[(String, Vec<usize>, Vec<f32>)],
    official: &[(String, Vec<usize>, Vec<f32>)],
    lr: f64,
    grads: &BTreeMap<String, Vec<f32>>,
    prefix: &str,
) {
    for ((b, a), o) in before.iter().zip(after).zip(official) {
        assert_eq!((&a.0, &a.1), (&o.0, &o.1));
        let ours: Vec<f32> = a.2.iter().zip(&b.2).map(|(x, y)| x - y).collect();
        let theirs: Vec<f32> = o.2.iter().zip(&b.2).map(|(x, y)| x - y).collect();
        let grad = grads.get(a.0.strip_prefix(prefix).unwrap_or(&a.0));
        let max_grad = grad.map_or(0.0, |g| g.iter().fold(0f32, |m, v| m.max(v.abs())));
        let significant = |i: usize| grad.is_none_or(|g| g[i].abs() > 1e-4 * max_grad);
        let (mut max_diff, mut kept) = (0f64, 0);
        for (i, (x, y)) in ours.iter().zip(&theirs).enumerate() {
            if significant(i) {
                max_diff = max_diff.max((x - y).abs() as f64);
                kept += 1;
            } else {
                // |Δ| ≤ lr, up to the f32 rounding of `after − before` at the parameter's size.
                let bound = lr + 2.0 * f32::EPSILON as f64 * (b.2[i] as f64).abs().max((a.2[i] as f64).abs());
                assert!((*x as f64).abs() <= bound, "{what} {}[{i}]: a first Adam step of {x:e} exceeds lr {lr:e}", a.0);
            }
        }
        let max_step = theirs.iter().map(|x| x.abs() as f64).fold(0.0, f64::max);
        eprintln!("{what} {}: max |Δ diff| {max_diff:.3e} on {kept} of {} elements (max |Δ| {max_step:.3e}, lr {lr:e})", a.0, ours.len());
        assert!(max_step > 0.5 * lr, "{what} {}: the official step is too small to compare", a.0);
        assert!(max_diff <= 1e-3 * lr, "{what} {}: update differs by {max_diff:e}", a.0);
    }
}

fn adam() -> burn::optim::ModuleOptimizer {
    AdamConfig::new().with_beta_1(0.5).with_beta_2(0.999).with_epsilon(1e-8).init()
}

#[test]
fn losses_match_the_official_criterion() {
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture("losses.json")).unwrap()).unwrap();
    let tensor = |v: &serde_json::Value| {
        let shape: Vec<usize> = serde_json::from_value(v["shape"].clone()).unwrap();
        let values: Vec<f32> = serde_json::from_value(v["values"].clone()).unwrap();
        Tensor::<4>::from_data(TensorData::new(values, shape), &device())
    };
    let probs = tensor(&j["probs"]);
    let target = tensor(&j["target"]);
    let [b, _, h, w] = probs.dims();
    let m = target.clone().reshape([b, h, w]);
    let get = |t: Tensor<1>| values(t)[0] as f64;
    assert_loss("focal", get(focal_loss(probs.clone(), m.clone(), 2.0, 1e-5)), j["focal"].as_f64().unwrap());
    let normal = probs.clone().narrow(1, 0, 1).reshape([b, h, w]);
    let anomalous = probs.clone().narrow(1, 1, 1).reshape([b, h, w]);
    assert_loss("dice anomalous", get(binary_dice_loss(anomalous, m.clone(), 1.0)), j["dice_anomalous"].as_f64().unwrap());
    assert_loss("dice normal", get(binary_dice_loss(normal, m.neg().add_scalar(1.0), 1.0)), j["dice_normal"].as_f64().unwrap());
    assert_loss("seg loss", get(seg_loss(probs, target)), j["seg_loss"].as_f64().unwrap());
    // F.cross_entropy on [[1, 2], [0.5, -1]] with labels [1, 0]: mean(log(1+e^-1), log(1+e^-1.5)).
    let logits = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 2.0, 0.5, -1.0], [2, 2]), &device());
    let want = ((1.0f64 + (-1.0f64).exp()).ln() + (1.0f64 + (-1.5f64).exp()).ln()) / 2.0;
    assert_loss("cross entropy", get(cross_entropy(logits, &[1, 0])), want);
}

fn stage1(fixed: bool) {
    let plain = device();
    let ad = plain.clone().autodiff();
    let clip = tiny_backbone(&plain);
    let weights = load(&["text_adapter.pth", "image_adapter.pth"]);
    let config = weights.config.clone();
    let before = text_tensors(weights.text.as_ref().unwrap()).unwrap();
    let text = trainable_text(weights.text.unwrap(), &ad);
    let (pixels, masks, classes, _) = batch();
    let (tokens, index) = class_setup(&classes);
    let features = surgery_features(&clip, &config, pixels, !fixed).unwrap();
    let loss = stage1_loss(&clip, &text, &config, &features, masks, &tokens, &index, 0.1, fixed).unwrap();
    let name = if fixed { "stage1_fixed" } else { "stage1" };
    assert_loss(&format!("{name} loss"), values(loss.total.clone())[0] as f64, scalar(&format!("{name}_loss")));
    let grads = loss.total.backward();
    let want = reference(&format!("{name}_grads.safetensors"));
    for (i, a) in text.adapters.iter().enumerate() {
        assert_close(&format!("{name} grad text_adapter.{i}"), &grad(&a.fc, &grads), &want[&format!("{i}.fc.0.weight")], 1e-4);
    }
    let n = text.adapters.len();
    assert_close(&format!("{name} grad text_adapter.{n} (projector)"), &grad(&text.projector.fc, &grads), &want[&format!("{n}.fc.0.weight")], 1e-4);
    if !fixed {
        let grads = GradientsParams::from_grads(grads, &text);
        let text = adam().step(1e-5, text, grads);
        let after = text_tensors(&burn::module::Module::valid(&text)).unwrap();
        let official = text_tensors(load(&["text_adapter_step1.pth", "image_adapter.pth"]).text.as_ref().unwrap()).unwrap();
        assert_update("stage1 Adam", &before, &after, &official, 1e-5, &want, "text_adapter.");
    }
}

#[test]
fn stage1_step_matches_train_text_adapter() {
    stage1(false);
}

#[test]
fn stage1_with_fixed_quirks_matches_the_patched_reference() {
    stage1(true);
}

#[test]
fn stage2_step_matches_train_image_adapter() {
    let plain = device();
    let ad = plain.clone().autodiff();
    let clip = tiny_backbone(&plain);
    // The official run trains stage 2 with the anchors of the text adapter after its stage-1 step.
    let trained_text = load(&["text_adapter_step1.pth", "image_adapter.pth"]);
    let config = trained_text.config.clone();
    let before = image_tensors(&trained_text.image).unwrap();
    let image = trainable_image(trained_text.image, &ad);
    let (pixels, masks, classes, labels) = batch();
    let (tokens, index) = class_setup(&classes);
    let class_anchors = anchors(&clip, trained_text.text.as_ref(), &config, &tokens).unwrap();
    let per_sample = Tensor::stack(index.iter().map(|&i| class_anchors[i].clone()).collect(), 0);
    let loss = stage2_loss(&clip, &image, &config, pixels, masks, &labels, per_sample).unwrap();
    assert_loss("stage2 loss", values(loss.total.clone())[0] as f64, scalar("stage2_loss"));
    let grads = loss.total.backward();
    let want = reference("stage2_grads.safetensors");
    for (i, a) in image.layer_adapters.iter().enumerate() {
        assert_close(&format!("stage2 grad layer_adapters.{i}"), &grad(&a.fc, &grads), &want[&format!("layer_adapters.{i}.fc.0.weight")], 1e-4);
    }
    for (k, p) in image.seg_proj.iter().enumerate() {
        assert_close(&format!("stage2 grad seg_proj.{k}"), &grad(&p.fc, &grads), &want[&format!("seg_proj.{k}.fc.weight")], 1e-4);
    }
    assert_close("stage2 grad det_proj", &grad(&image.det_proj.fc, &grads), &want["det_proj.fc.weight"], 1e-4);
    let grads = GradientsParams::from_grads(grads, &image);
    let image = adam().step(5e-4, image, grads);
    let after = image_tensors(&burn::module::Module::valid(&image)).unwrap();
    let official = image_tensors(&load(&["image_adapter_step1.pth"]).image).unwrap();
    assert_update("stage2 Adam", &before, &after, &official, 5e-4, &want, "image_adapter.");
    let _ = image_size();
}
