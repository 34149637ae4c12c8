//! Training AA-CLIP natively (`spec/aa-clip.md` §7–§8, the official `train.py`).
//!
//! **Stage 1** trains the text adapters (3 adapters and the EOT projector). The image side is a
//! frozen "surgery" copy of CLIP: from block 6 on (`DPAM_layer = 20`) attention is replaced by V-V
//! attention; its patch tokens at levels 6/12/18/24 go through `ln_post`, `visual.proj` and an L2
//! norm, and the normalised CLIP image embedding is added to every patch (not renormalised). The
//! anchors are recomputed with gradients for every class of the batch; the loss is the
//! segmentation loss of the training maps plus `0.1·(mean_b ⟨T_N, T_A⟩)²`. Adam(1e-5, β = (0.5,
//! 0.999)), batch 16, 5 epochs, no schedule.
//!
//! **Stage 2** trains the image adapters (6 adapters, 4 `seg_proj`, `det_proj`) with the anchors
//! of the trained text adapter fixed: `CE(det·[T_N, T_A], label) + Σ_levels L_seg`. Adam(5e-4,
//! β = (0.5, 0.999)) with `MultiStepLR([16000, 32000], 0.5)` stepped per iteration, batch 2,
//! 20 epochs; a checkpoint per epoch (the paper uses epoch 15).
//!
//! `L_seg(P, M) = Focal(P, M) + Dice(P_N, 1 − M) + Dice(P_A, M)` on the training probabilities
//! (bilinear upsampling to S with `align_corners = true`, then softmax over the two channels).
//!
//! **Official quirks, reproduced by default** (`fix_official_quirks = false`):
//! 1. the stage-1 loss is *assigned* in the loop over levels, so only the last level (24) counts
//!    (issues #29, #38); fixed: the four levels are summed (the orthogonal term once);
//! 2. the surgery attention reads the sequence-first stream as batch-first, so its softmax runs
//!    across the images of the batch at each token (`spec/clip.md` §7.3); fixed: over the tokens
//!    of each image.
//!
//! The backbone stays on the plain device and takes no gradients; the adapters live on the
//! autodiff device (tensors of both kinds mix, the plain ones acting as constants).
use burn::module::{Module, Param, ParamId};
use burn::nn::Linear;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};
use vlad_clip::{ClipModel, VisionForward, VvAttention};

use super::adapters::{Adapter, ClassTokens, ImageAdapter, Projector, TextAdapter, anchors, vision_features};
use super::scoring::{similarity, training_probabilities};
use super::AaClipConfig;
use crate::DetectError;
use crate::losses::{binary_dice_loss, focal_loss};
use crate::prompts::l2_normalize;

pub mod data;
pub mod run;

pub use run::{EpochRecord, Quiet, Stage, TrainObserver, TrainOptions, TrainSummary, Validation, measure_calibration, train, validate};

/// Focal loss γ of the official criterion.
pub const FOCAL_GAMMA: f64 = 2.0;
/// Focal loss label smoothing / log guard.
pub const FOCAL_SMOOTH: f64 = 1e-5;
/// Dice smoothing.
pub const DICE_SMOOTH: f64 = 1.0;

/// `calculate_seg_loss`: `Focal(P, M) + Dice(P_N, 1 − M) + Dice(P_A, M)` for probabilities
/// `[B, 2, S, S]` and masks `[B, 1, S, S]` (0/1).
pub fn seg_loss(probs: Tensor<4>, masks: Tensor<4>) -> Tensor<1> {
    let [b, _, s, w] = probs.dims();
    let m = masks.reshape([b, s, w]);
    let focal = focal_loss(probs.clone(), m.clone(), FOCAL_GAMMA, FOCAL_SMOOTH);
    let normal = probs.clone().narrow(1, 0, 1).reshape([b, s, w]);
    let anomalous = probs.narrow(1, 1, 1).reshape([b, s, w]);
    focal + binary_dice_loss(normal, m.clone().neg().add_scalar(1.0), DICE_SMOOTH) + binary_dice_loss(anomalous, m, DICE_SMOOTH)
}

/// `F.cross_entropy(logits, labels)` (mean over the batch) for logits `[B, C]`.
pub fn cross_entropy(logits: Tensor<2>, labels: &[usize]) -> Tensor<1> {
    let [b, c] = logits.dims();
    assert_eq!(labels.len(), b, "{} labels for {b} logits", labels.len());
    let mut onehot = vec![0f32; b * c];
    for (i, &l) in labels.iter().enumerate() {
        assert!(l < c, "label {l} outside {c} classes");
        onehot[i * c + l] = 1.0;
    }
    let onehot = Tensor::<2>::from_data(TensorData::new(onehot, [b, c]), &logits.device());
    (log_softmax(logits, 1) * onehot).sum_dim(1).mean().neg()
}

/// The stage-1 image features: the surgery model's levels through `ln_post`, `visual.proj` and an
/// L2 norm, plus the normalised CLIP image embedding (`[B, L, E]` per level; no gradients).
pub fn surgery_features(clip: &ClipModel, config: &AaClipConfig, pixels: Tensor<4>, batch_axis_quirk: bool) -> Result<Vec<Tensor<3>>, DetectError> {
    let vv = VvAttention::Replace { from_block: config.surgery_from_block, batch_axis_quirk };
    let surgery = clip.visual.forward(pixels.clone(), VisionForward { taps: &config.levels, vv: Some(vv), hook: None, prompts: None })?;
    let global = l2_normalize(clip.visual.encode_image(pixels)?);
    let [b, e] = global.dims();
    let global = global.reshape([b, 1, e]);
    Ok(surgery
        .taps
        .into_iter()
        .map(|tap| {
            let [b, t, d] = tap.dims();
            let patches = clip.visual.project(clip.visual.ln_post(tap.slice([0..b, 1..t, 0..d])));
            (l2_normalize(patches) + global.clone()).detach()
        })
        .collect())
}

/// The parts of a stage-1 loss.
pub struct Stage1Loss {
    /// What is back-propagated.
    pub total: Tensor<1>,
    /// Segmentation loss per level.
    pub seg: Vec<Tensor<1>>,
    /// `(mean_b ⟨T_N, T_A⟩)²` (before the weight).
    pub orthogonal: Tensor<1>,
}

/// Stage-1 loss of a batch. `features` come from [`surgery_features`], `masks` are `[B, 1, S, S]`,
/// `classes` the prompt tokens of the distinct classes and `sample_class[b]` the class index of
/// sample `b`. With `all_levels` every level counts; otherwise only the last (official).
#[allow(clippy::too_many_arguments)]
pub fn stage1_loss(
    clip: &ClipModel,
    text: &TextAdapter,
    config: &AaClipConfig,
    features: &[Tensor<3>],
    masks: Tensor<4>,
    classes: &[ClassTokens],
    sample_class: &[usize],
    text_norm_weight: f64,
    all_levels: bool,
) -> Result<Stage1Loss, DetectError> {
    let size = masks.dims()[2];
    let class_anchors = anchors(clip, Some(text), config, classes)?;
    let per_sample = Tensor::stack(sample_class.iter().map(|&c| class_anchors[c].clone()).collect(), 0);
    let [b, e, _] = per_sample.dims();
    let seg: Vec<Tensor<1>> = features.iter().map(|f| seg_loss(training_probabilities(similarity(f.clone(), per_sample.clone()), size), masks.clone())).collect();
    let normal = per_sample.clone().narrow(2, 0, 1).reshape([b, e]);
    let anomalous = per_sample.narrow(2, 1, 1).reshape([b, e]);
    let orthogonal = (normal * anomalous).sum_dim(1).mean().powf_scalar(2.0);
    let seg_total = if all_levels {
        seg.iter().cloned().reduce(|a, b| a + b).expect("at least one level")
    } else {
        seg.last().expect("at least one level").clone()
    };
    Ok(Stage1Loss { total: seg_total + orthogonal.clone().mul_scalar(text_norm_weight), seg, orthogonal })
}

/// The parts of a stage-2 loss.
pub struct Stage2Loss {
    /// What is back-propagated.
    pub total: Tensor<1>,
    /// Cross-entropy of the image-level logits.
    pub ce: Tensor<1>,
    /// Segmentation loss per level.
    pub seg: Vec<Tensor<1>>,
}

/// Stage-2 loss of a batch: pixels `[B, 3, S, S]`, masks `[B, 1, S, S]`, labels (0 normal, 1
/// anomalous) and per-sample anchors `[B, E, 2]` of the (fixed) text adapter.
pub fn stage2_loss(clip: &ClipModel, image: &ImageAdapter, config: &AaClipConfig, pixels: Tensor<4>, masks: Tensor<4>, labels: &[usize], anchors: Tensor<3>) -> Result<Stage2Loss, DetectError> {
    let size = masks.dims()[2];
    let features = vision_features(clip, image, config, pixels)?;
    let [b, e] = features.det.dims();
    let logits = features.det.reshape([b, 1, e]).matmul(anchors.clone()).reshape([b, 2]);
    let ce = cross_entropy(logits, labels);
    let seg: Vec<Tensor<1>> = features.seg.iter().map(|f| seg_loss(training_probabilities(similarity(f.clone(), anchors.clone()), size), masks.clone())).collect();
    let total = seg.iter().cloned().fold(ce.clone(), |a, b| a + b);
    Ok(Stage2Loss { total, ce, seg })
}

/// Xavier-uniform values `U(−a, a)`, `a = √(6/(fan_in + fan_out))`, for a `[d_in, d_out]` weight,
/// drawn from a seeded stream (the official `nn.init.xavier_uniform_`; the stream differs from
/// torch's).
fn xavier(linear: &mut Linear, seed: u64, label: &str) {
    let [d_in, d_out] = linear.weight.lazy_shape().dims();
    let bound = (6.0 / (d_in + d_out) as f64).sqrt();
    let mut rng = vlad_data::SeededRng::derive(seed, label);
    let values: Vec<f32> = (0..d_in * d_out).map(|_| rng.range_f64(-bound, bound) as f32).collect();
    let device = linear.weight.lazy_device();
    linear.weight = Param::from_tensor(Tensor::from_data(TensorData::new(values, [d_in, d_out]), &device));
}

/// Freshly initialised text adapter (Xavier-uniform, seeded).
pub fn init_text_adapter(config: &AaClipConfig, seed: u64, device: &Device) -> TextAdapter {
    let mut text = TextAdapter::new(config, device);
    for (i, a) in text.adapters.iter_mut().enumerate() {
        xavier(&mut a.fc, seed, &format!("aa-clip/init/text_adapter.{i}"));
    }
    xavier(&mut text.projector.fc, seed, "aa-clip/init/text_adapter.projector");
    text
}

/// Freshly initialised image adapter (Xavier-uniform, seeded).
pub fn init_image_adapter(config: &AaClipConfig, seed: u64, device: &Device) -> ImageAdapter {
    let mut image = ImageAdapter::new(config, device);
    for (i, a) in image.layer_adapters.iter_mut().enumerate() {
        xavier(&mut a.fc, seed, &format!("aa-clip/init/layer_adapters.{i}"));
    }
    for (k, p) in image.seg_proj.iter_mut().enumerate() {
        xavier(&mut p.fc, seed, &format!("aa-clip/init/seg_proj.{k}"));
    }
    xavier(&mut image.det_proj.fc, seed, "aa-clip/init/det_proj");
    image
}

fn stable_id(linear: &mut Linear, id: u64) {
    let value = linear.weight.val();
    linear.weight = Param::initialized(ParamId::from(id), value).set_require_grad(true);
}

/// Gives the text adapter's parameters fixed ids (the optimizer state is keyed by them, so a
/// resumed run finds its Adam moments again) and moves it to the training `device`.
pub fn trainable_text(mut text: TextAdapter, device: &Device) -> TextAdapter {
    let n = text.adapters.len();
    for (i, a) in text.adapters.iter_mut().enumerate() {
        stable_id(&mut a.fc, 0xAAC1_1000 + i as u64);
    }
    stable_id(&mut text.projector.fc, 0xAAC1_1000 + n as u64);
    // `fork` keeps `require_grad` only of tensors that had it, and a plain-device tensor cannot;
    // `train` marks every parameter of the autodiff copy as a tracked leaf.
    text.fork(device).train()
}

/// [`trainable_text`] for the image adapter.
pub fn trainable_image(mut image: ImageAdapter, device: &Device) -> ImageAdapter {
    let mut id = 0xAAC1_2000;
    let mut next = |l: &mut Linear| {
        stable_id(l, id);
        id += 1;
    };
    image.layer_adapters.iter_mut().for_each(|a: &mut Adapter| next(&mut a.fc));
    image.seg_proj.iter_mut().for_each(|p: &mut Projector| next(&mut p.fc));
    next(&mut image.det_proj.fc);
    image.fork(device).train()
}

/// `lr · γ^(number of milestones ≤ iteration)`: PyTorch's `MultiStepLR` stepped once per
/// iteration, read before the step of 0-based `iteration`.
pub fn multistep_lr(base: f64, milestones: &[usize], gamma: f64, iteration: usize) -> f64 {
    base * gamma.powi(milestones.iter().filter(|&&m| m <= iteration).count() as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multistep_schedule_halves_at_the_milestones() {
        let lr = |i| multistep_lr(5e-4, &[16000, 32000], 0.5, i);
        assert_eq!((lr(0), lr(15999), lr(16000), lr(31999), lr(32000)), (5e-4, 5e-4, 2.5e-4, 2.5e-4, 1.25e-4));
    }
}
