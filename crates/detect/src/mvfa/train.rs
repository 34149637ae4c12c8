//! Training MVFA-AD's adapters natively (`spec/baselines.md` §7, the official `train_few.py` and
//! `train_zero.py` at a30bf7b).
//!
//! **One step** (batch 1, [`image_loss`]): the adapted forward of `CLIP_Inplanted`; per tap the
//! `det` patch tokens (CLS dropped, normalised) give `mean_patches softmax(100·n(det)·T)₁`, and
//! the image loss is `Σ_taps BCEWithLogits(that mean, y)` — a probability fed as a logit, kept for
//! parity ([`DetLoss::Official`]; [`DetLoss::Corrected`] is `BCE` on the probability). Images of a
//! segmentation dataset (`CLASS_INDEX > 0`, [`MvfaHead::Segmentation`]) add
//! `Σ_taps Focal(P, M) + Dice(P₁, M)` on `P = softmax(up_ac(100·n(seg)·T))` at S (mask `> 0.5`),
//! and **both** adapter lists step on the sum; images of a classification dataset step the `det`
//! adapters only (the official code has one Adam per list and calls only `det_optimizer.step()`).
//! Adam (not AdamW) with betas (0.5, 0.999), ε 1e-8; seed 111.
//!
//! **Few-shot** (`train_few.py`, lr 1e-3, 50 epochs): the K anomalous shots with their masks and
//! the K normal shots (zero masks), each augmented 11 ways ([`super::augment`]), labels 1 / 0,
//! shuffled every epoch; after every epoch the memory is rebuilt from the augmented normal shots
//! and the model is scored. **Zero-shot** (`train_zero.py`, lr 1e-4, 50 epochs): leave one dataset
//! out — every image of the other datasets' `test` splits, each with its own dataset's text
//! prototypes and head, scored five times an epoch (before steps `0, n/5, 2n/5, …`).
//!
//! **Selection** (the score `test()` returns): segmentation head `pixel AUROC + image AUROC` of the
//! set-normalised maps (few-shot: `max` of the fused map as the image score; zero-shot: the `det`
//! score), classification head the image AUROC alone; few-shot keeps a checkpoint when the score
//! rises (`>`), zero-shot when it does not fall (`>=`). The official scripts select on the
//! **target test set**; here the validation samples are whatever the caller passes — by default
//! held-out data (the unused `valid` images of the target for few-shot, the source datasets'
//! `valid` splits for zero-shot) — and the official choice is the caller's explicit option.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{Module, Param, ParamId};
use burn::nn::Linear;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use vlad_clip::ClipModel;
use vlad_data::load::{LoadOptions, MaskRule, load_sample};
use vlad_data::{Sample, SeededRng};
use vlad_imaging::Filter;
use vlad_metrics::{MapShape, binary_metrics, pixel_metrics};

use super::{ClipAdapter, Mvfa, MvfaAdapters, MvfaConfig, MvfaHead, MvfaOptions, augment, checkpoint, image_features, patch_logits, real_name};
use crate::losses::{binary_dice_loss, focal_loss};
use crate::postprocess::{AxisMap, apply_square, tokens_to_grid};
use crate::vand::train::{EpochRecord, RunFiles, TrainObserver, Validation};
use crate::{DetectError, Detector};

/// The image-level loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DetLoss {
    /// `BCEWithLogitsLoss` on the mean patch *probability* (the official code): per tap
    /// `softplus(p) − y·p`, which can never reach zero.
    Official,
    /// `BCELoss` on the probability (PyTorch's log clamp at −100).
    Corrected,
}

/// Which official script a run follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Protocol {
    /// `train_few.py`: the target's K labelled shots, augmented.
    FewShot,
    /// `train_zero.py`: the other datasets' test splits (leave one dataset out).
    ZeroShot,
}

/// When a run scores the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Schedule {
    /// After every epoch (`train_few.py`).
    AfterEpoch,
    /// `n` times an epoch, before steps `0, ⌊N/n⌋, …` (`train_zero.py`: 5).
    Within(usize),
}

/// Training options; [`TrainOptions::official`] holds the scripts' values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    /// The model.
    pub config: MvfaConfig,
    /// The protocol.
    pub protocol: Protocol,
    /// Epochs (50).
    pub epochs: usize,
    /// Learning rate (few-shot 1e-3, zero-shot 1e-4).
    pub lr: f64,
    /// Adam betas ((0.5, 0.999)).
    pub betas: (f32, f32),
    /// The image loss.
    pub det_loss: DetLoss,
    /// Seed of the initialisation and the shuffling (111).
    pub seed: u64,
    /// Stop each epoch after this many steps.
    pub max_steps_per_epoch: Option<usize>,
    /// When to score the model.
    pub schedule: Schedule,
    /// Images per forward pass when scoring.
    pub eval_batch_size: usize,
}

impl TrainOptions {
    /// The official script of `protocol` around `config`.
    pub fn official(config: MvfaConfig, protocol: Protocol) -> Self {
        let (lr, schedule) = match protocol {
            Protocol::FewShot => (1e-3, Schedule::AfterEpoch),
            Protocol::ZeroShot => (1e-4, Schedule::Within(5)),
        };
        Self { config, protocol, epochs: 50, lr, betas: (0.5, 0.999), det_loss: DetLoss::Official, seed: 111, max_steps_per_epoch: None, schedule, eval_batch_size: 1 }
    }

    /// Whether a score replaces the best one (few-shot `>`, zero-shot `>=`).
    pub fn improves(&self, score: f64, best: Option<f64>) -> bool {
        match (best, self.protocol) {
            (None, _) => true,
            (Some(b), Protocol::FewShot) => score > b,
            (Some(b), Protocol::ZeroShot) => score >= b,
        }
    }
}

/// Freshly initialised adapters from a seeded stream: PyTorch's default `Linear` init (uniform in
/// ±1/√fan_in; torch's own stream is not reproduced).
pub fn init_adapters(config: &MvfaConfig, clip: &vlad_clip::ClipConfig, seed: u64, device: &Device) -> MvfaAdapters {
    let mut adapters = MvfaAdapters::new(config, clip, device);
    let linear = |l: &mut Linear, label: &str| {
        let [i, o] = l.weight.lazy_shape().dims();
        let bound = 1.0 / (i as f64).sqrt();
        let mut r = SeededRng::derive(seed, &format!("mvfa/init/{label}"));
        let values: Vec<f32> = (0..i * o).map(|_| ((2.0 * r.uniform() - 1.0) * bound) as f32).collect();
        l.weight = Param::from_tensor(Tensor::from_data(TensorData::new(values, [i, o]), device));
    };
    for (list, adapters) in [("seg", &mut adapters.seg), ("det", &mut adapters.det)] {
        for (i, a) in adapters.iter_mut().enumerate() {
            linear(&mut a.fc1, &format!("{list}.{i}.fc1"));
            linear(&mut a.fc2, &format!("{list}.{i}.fc2"));
        }
    }
    adapters
}

/// Fixed parameter ids (for the optimiser state) and the autodiff copy on `device`.
pub fn trainable(mut adapters: MvfaAdapters, device: &Device) -> MvfaAdapters {
    let mut id = 0x3F_FA00_0000u64;
    let mut fix = |a: &mut ClipAdapter| {
        for l in [&mut a.fc1, &mut a.fc2] {
            id += 1;
            l.weight = Param::initialized(ParamId::from(id), l.weight.val()).set_require_grad(true);
        }
    };
    adapters.seg.iter_mut().chain(adapters.det.iter_mut()).for_each(&mut fix);
    adapters.fork(&device.clone().autodiff()).train()
}

/// The loss of one image and its parts.
pub struct ImageLoss {
    /// What the step minimises (det + seg for the segmentation head, det alone otherwise).
    pub total: Tensor<1>,
    /// `Σ_taps` image loss.
    pub det: Tensor<1>,
    /// `Σ_taps Focal + Dice` (segmentation head only).
    pub seg: Option<Tensor<1>>,
}

/// The loss of one image `pixels` `[1, 3, S, S]` with its `mask` `[1, S, S]` (binarised here,
/// `> 0.5`) and label against the text prototypes `text` `[2, E]` of its dataset.
#[allow(clippy::too_many_arguments)]
pub fn image_loss(clip: &ClipModel, adapters: &MvfaAdapters, config: &MvfaConfig, text: &Tensor<2>, pixels: Tensor<4>, mask: Tensor<3>, label: u8, head: MvfaHead, det_loss: DetLoss) -> Result<ImageLoss, DetectError> {
    let [b, _, _, _] = pixels.dims();
    if b != 1 {
        return Err(DetectError::Invalid(format!("MVFA trains one image per step (as the official code), got a batch of {b}")));
    }
    let s = config.image_size;
    let g = clip.visual.grid_for(s);
    let l = g * g;
    let features = image_features(clip, adapters, config, pixels)?;
    let autodiff = features.det[0].is_autodiff();
    let lift2 = |t: Tensor<2>| if autodiff && !t.is_autodiff() { t.autodiff() } else { t };
    let text = lift2(text.clone());
    let y = label as f32;
    let mut det: Option<Tensor<1>> = None;
    for tokens in &features.det {
        let p = softmax(patch_logits(tokens, &text), 2).narrow(2, 1, 1).reshape([l]).mean_dim(0);
        let term = match det_loss {
            // BCEWithLogits(x, y) = max(x, 0) − x·y + ln(1 + e^−|x|) = softplus(x) − x·y for x > 0.
            DetLoss::Official => p.clone().exp().log1p() - p.mul_scalar(y),
            DetLoss::Corrected => {
                let log = |t: Tensor<1>| t.log().clamp_min(-100.0);
                (log(p.clone()).mul_scalar(y) + log(p.neg().add_scalar(1.0)).mul_scalar(1.0 - y)).neg()
            }
        };
        det = Some(det.map_or(term.clone(), |acc| acc + term));
    }
    let det = det.expect("at least one tap");
    if head == MvfaHead::Classification {
        return Ok(ImageLoss { total: det.clone(), det, seg: None });
    }
    let mask = mask.greater_elem(0.5).float();
    let mask = if autodiff && !mask.is_autodiff() { mask.autodiff() } else { mask };
    let up = AxisMap::bilinear(g, s, true);
    let mut seg: Option<Tensor<1>> = None;
    for tokens in &features.seg {
        let logits = patch_logits(tokens, &text);
        let grid = |c: usize| apply_square(tokens_to_grid(logits.clone().narrow(2, c, 1).reshape([1, l]), g), &up);
        let p = softmax(Tensor::stack::<4>(vec![grid(0), grid(1)], 1), 1);
        let term = focal_loss(p.clone(), mask.clone(), 2.0, 1e-5) + binary_dice_loss(p.narrow(1, 1, 1).reshape([1, s, s]), mask.clone(), 1.0);
        seg = Some(seg.map_or(term.clone(), |acc| acc + term));
    }
    let seg = seg.expect("at least one tap");
    Ok(ImageLoss { total: det.clone() + seg.clone(), det, seg: Some(seg) })
}

/// One training image held in memory: pixels `[3, S, S]` (unnormalised), mask `[S, S]`, label,
/// and the dataset (class) whose prompts and head it uses.
#[derive(Debug, Clone)]
pub struct TrainImage {
    /// `[3, S, S]` in [0, 1].
    pub pixels: Vec<f32>,
    /// `[S, S]`, 0/1.
    pub mask: Vec<f32>,
    /// 0 normal, 1 anomalous.
    pub label: u8,
    /// The dataset (class) name.
    pub class_name: String,
}

/// Where a step's image comes from.
pub enum TrainSet<'a> {
    /// Few-shot: the augmented shots of one class.
    InMemory(Vec<TrainImage>),
    /// Zero-shot: files, loaded at each step.
    Files(&'a [Sample]),
}

impl TrainSet<'_> {
    fn len(&self) -> usize {
        match self {
            TrainSet::InMemory(v) => v.len(),
            TrainSet::Files(v) => v.len(),
        }
    }
}

/// `Resize((S, S), BICUBIC)` + `ToTensor` of a sample and its mask (`Resize(NEAREST)`, `> 0.5`):
/// `([3·S·S], [S·S])`.
pub fn load_image(sample: &Sample, size: usize) -> Result<(Vec<f32>, Vec<f32>), DetectError> {
    let s = size as u32;
    let loaded = load_sample(sample, &LoadOptions { size: Some((s, s)), image_filter: Filter::Bicubic, mask_rule: MaskRule::Nearest }).map_err(|e| DetectError::Invalid(e.to_string()))?;
    let n = size * size;
    let mut pixels = vec![0.0f32; 3 * n];
    for (i, p) in loaded.image.pixels().enumerate() {
        for c in 0..3 {
            pixels[c * n + i] = p[c] as f32 / 255.0;
        }
    }
    let mask = loaded.mask.pixels().map(|p| if p[0] > 127 { 1.0 } else { 0.0 }).collect();
    Ok((pixels, mask))
}

fn stack_images(images: &[(Vec<f32>, Vec<f32>)], size: usize, device: &Device) -> (Tensor<4>, Tensor<4>) {
    let k = images.len();
    let pixels: Vec<f32> = images.iter().flat_map(|(p, _)| p.iter().copied()).collect();
    let masks: Vec<f32> = images.iter().flat_map(|(_, m)| m.iter().copied()).collect();
    (Tensor::from_data(TensorData::new(pixels, [k, 3, size, size]), device), Tensor::from_data(TensorData::new(masks, [k, 1, size, size]), device))
}

fn host<const D: usize>(t: Tensor<D>, what: &str) -> Result<Vec<f32>, DetectError> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| DetectError::Invalid(format!("cannot read {what} back: {e:?}")))
}

/// `train_few.py`'s training images: `augment(abnormal, masks)` labelled 1 then `augment(normal)`
/// (zero masks) labelled 0, each `[11·K]` batch-major.
pub fn few_shot_images(abnormal: &[Sample], normal: &[Sample], size: usize, device: &Device) -> Result<Vec<TrainImage>, DetectError> {
    if abnormal.is_empty() || normal.is_empty() {
        return Err(DetectError::Invalid(format!("MVFA few-shot training needs anomalous and normal shots, got {} and {}", abnormal.len(), normal.len())));
    }
    let class_name = abnormal[0].class_name.clone();
    let load = |set: &[Sample]| set.iter().map(|s| load_image(s, size)).collect::<Result<Vec<_>, _>>();
    let (a_pixels, a_masks) = stack_images(&load(abnormal)?, size, device);
    let (n_pixels, _) = stack_images(&load(normal)?, size, device);
    let n = size * size;
    let a_pixels = host(augment::augment(a_pixels), "augmented shots")?;
    let a_masks = host(augment::augment_masks(a_masks), "augmented masks")?;
    let n_pixels = host(augment::augment(n_pixels), "augmented shots")?;
    let mut out = Vec::new();
    for (p, m) in a_pixels.chunks(3 * n).zip(a_masks.chunks(n)) {
        out.push(TrainImage { pixels: p.to_vec(), mask: m.iter().map(|&v| if v > 0.5 { 1.0 } else { 0.0 }).collect(), label: 1, class_name: class_name.clone() });
    }
    for p in n_pixels.chunks(3 * n) {
        out.push(TrainImage { pixels: p.to_vec(), mask: vec![0.0; n], label: 0, class_name: class_name.clone() });
    }
    Ok(out)
}

/// The selection score of a set and its parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassSelection {
    /// The class.
    pub class_name: String,
    /// Images scored.
    pub images: usize,
    /// The head it is scored with.
    pub segmentation: bool,
    /// Pixel AUROC of the set-normalised map (segmentation head).
    pub pixel_auroc: Option<f64>,
    /// Image AUROC of the set-normalised score.
    pub image_auroc: Option<f64>,
    /// `pixel + image` (segmentation head) or `image`, as `test()` returns.
    pub score: f64,
}

fn min_max(v: &[f32]) -> Vec<f32> {
    let (lo, hi) = v.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
    let span = hi - lo;
    v.iter().map(|x| if span > 0.0 { (x - lo) / span } else { 0.0 }).collect()
}

/// The official `test()` of one class on `samples` (all of `detector`'s current class; memory
/// fitted for few-shot).
pub fn select_class(detector: &Mvfa, samples: &[Sample], batch_size: usize) -> Result<ClassSelection, DetectError> {
    let device = detector.device();
    let s = detector.config().image_size;
    let (mut zero, mut few, mut det, mut few_det, mut masks, mut labels) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let fewshot = detector.memory().is_some();
    for chunk in samples.chunks(batch_size.max(1)) {
        let loaded = chunk.iter().map(|x| load_image(x, s)).collect::<Result<Vec<_>, _>>()?;
        let (pixels, batch_masks) = stack_images(&loaded, s, &device);
        let out = detector.detect(pixels)?;
        let component = |list: &[(String, Tensor<1>)], name: &str| list.iter().find(|(n, _)| n == name).map(|(_, t)| t.clone());
        let map_component = |name: &str| out.map_components.iter().find(|(n, _)| n == name).map(|(_, t)| t.clone());
        if fewshot {
            zero.extend(host(map_component("zero").expect("few-shot detections carry the zero map"), "maps")?);
            few.extend(host(map_component("few").expect("few-shot detections carry the few map"), "maps")?);
            few_det.extend(host(component(&out.components, "few_det").expect("few-shot detections carry few_det"), "scores")?);
        } else {
            zero.extend(host(out.map.clone(), "maps")?);
        }
        det.extend(host(component(&out.components, "det").expect("MVFA detections carry det"), "scores")?);
        masks.extend(host(batch_masks, "masks")?.into_iter().map(|m| (m > 0.5) as u8));
        labels.extend(chunk.iter().map(|x| x.label.as_int()));
    }
    let n = labels.len();
    let metrics = |e: vlad_metrics::MetricsError| DetectError::Invalid(format!("selection metrics: {e}"));
    let segmentation = detector.head() == MvfaHead::Segmentation;
    let (map, image): (Vec<f32>, Vec<f32>) = match (fewshot, segmentation) {
        (true, true) => {
            let fused: Vec<f32> = min_max(&zero).iter().zip(min_max(&few)).map(|(a, b)| 0.5 * a + 0.5 * b).collect();
            let image = fused.chunks(s * s).map(|m| m.iter().copied().fold(f32::NEG_INFINITY, f32::max)).collect();
            (fused, image)
        }
        (true, false) => (Vec::new(), min_max(&det).iter().zip(min_max(&few_det)).map(|(a, b)| 0.5 * a + 0.5 * b).collect()),
        (false, _) => (min_max(&zero), min_max(&det)),
    };
    let image_auroc = binary_metrics(&image, &labels).map_err(metrics)?.auroc;
    let pixel_auroc = if segmentation { pixel_metrics(&map, &masks, MapShape::new(n, s, s), None).map_err(metrics)?.binary.auroc } else { None };
    let score = if segmentation { pixel_auroc.unwrap_or(0.0) + image_auroc.unwrap_or(0.0) } else { image_auroc.unwrap_or(0.0) };
    Ok(ClassSelection { class_name: detector_class(samples), images: n, segmentation, pixel_auroc, image_auroc, score })
}

fn detector_class(samples: &[Sample]) -> String {
    samples.first().map(|s| s.class_name.clone()).unwrap_or_default()
}

/// A scoring of the model: per class and the mean selection score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// Epoch (1-based) and step within it (0 = before the epoch's first step) it was taken at.
    pub epoch: usize,
    /// Steps into the epoch.
    pub step: usize,
    /// Per class.
    pub classes: Vec<ClassSelection>,
    /// The mean of the classes' scores.
    pub score: f64,
}

impl Selection {
    /// As VAND's [`Validation`] record (the fused metrics).
    pub fn validation(&self) -> Validation {
        let mean = |v: Vec<f64>| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        Validation {
            images: self.classes.iter().map(|c| c.images).sum(),
            pixel_auroc: mean(self.classes.iter().filter_map(|c| c.pixel_auroc).collect()),
            image_auroc: mean(self.classes.iter().filter_map(|c| c.image_auroc).collect()),
            per_class: self.classes.iter().map(|c| (c.class_name.clone(), c.pixel_auroc, c.image_auroc)).collect(),
        }
    }
}

/// What a run scores on and with which references.
pub struct SelectionData<'a> {
    /// The samples, grouped by class inside.
    pub samples: &'a [Sample],
    /// Few-shot: the normal shots whose augmentations form the memory.
    pub normal_shots: Option<&'a [Sample]>,
}

/// Scores `adapters` on `data` (the official `test()` per class, averaged).
pub fn select(clip: &ClipModel, adapters: &MvfaAdapters, config: &MvfaConfig, data: &SelectionData<'_>, batch_size: usize, epoch: usize, step: usize) -> Result<Selection, DetectError> {
    let mut detector = Mvfa::new(clip.clone(), adapters.clone(), config.clone(), MvfaOptions { keep_backbone_settings: true, ..Default::default() })?;
    let mut by_class: BTreeMap<&str, Vec<Sample>> = BTreeMap::new();
    for sample in data.samples {
        by_class.entry(sample.class_name.as_str()).or_default().push(sample.clone());
    }
    let s = config.image_size;
    let device = clip.visual.proj.device();
    let mut classes = Vec::new();
    for (class, members) in by_class {
        detector.set_class(class)?;
        if let Some(shots) = data.normal_shots {
            let loaded = shots.iter().filter(|x| x.class_name == class).map(|x| load_image(x, s)).collect::<Result<Vec<_>, _>>()?;
            if loaded.is_empty() {
                return Err(DetectError::Invalid(format!("MVFA selection: no normal shots of {class:?} for the memory")));
            }
            detector.fit_reference(stack_images(&loaded, s, &device).0)?;
        }
        classes.push(select_class(&detector, &members, batch_size)?);
    }
    if classes.is_empty() {
        return Err(DetectError::Invalid("MVFA selection: no samples".into()));
    }
    let score = classes.iter().map(|c| c.score).sum::<f64>() / classes.len() as f64;
    Ok(Selection { epoch, step, classes, score })
}

/// Progress and results of a run.
pub trait MvfaObserver: TrainObserver {
    /// A scoring finished; `best` says whether it was kept.
    fn on_selection(&mut self, _selection: &Selection, _best: bool) {}
}

/// What a run produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MvfaSummary {
    /// Per-epoch records.
    pub epochs: Vec<EpochRecord>,
    /// Every scoring, in order.
    pub selections: Vec<Selection>,
    /// The best scoring (its adapters are `best.safetensors`).
    pub best: Option<Selection>,
    /// The selected checkpoint (`best.safetensors`, else `last.safetensors`).
    pub checkpoint: PathBuf,
    /// The last adapters.
    pub last: PathBuf,
}

fn scalar(t: Tensor<1>) -> Result<f64, DetectError> {
    t.into_data().convert::<f64>().try_into_vec::<f64>().map(|v| v[0]).map_err(|e| DetectError::Invalid(format!("{e:?}")))
}

/// Trains freshly initialised adapters on `set` (text prototypes per class from `clip`),
/// scoring on `selection` when given; writes `best.safetensors`, `last.safetensors`,
/// `metrics.jsonl` and `selections.jsonl` into `out` (refusing to replace a checkpoint unless
/// `overwrite`).
#[allow(clippy::too_many_arguments)]
pub fn train(clip: &ClipModel, set: TrainSet<'_>, selection: Option<&SelectionData<'_>>, options: &TrainOptions, out: &Path, overwrite: bool, observer: &mut dyn MvfaObserver) -> Result<MvfaSummary, DetectError> {
    options.config.validate(&clip.config)?;
    let n = set.len();
    if n == 0 || options.epochs == 0 {
        return Err(DetectError::Invalid("MVFA training: needs images and at least one epoch".into()));
    }
    let (best_path, last_path) = (out.join("best.safetensors"), out.join("last.safetensors"));
    if !overwrite && let Some(existing) = [&best_path, &last_path].into_iter().find(|p| p.exists()) {
        return Err(DetectError::Invalid(format!("{} already exists (choose another output directory or allow overwriting)", existing.display())));
    }
    let mut files = RunFiles::create(out, 0, overwrite)?;
    let selections_path = out.join("selections.jsonl");
    let io = |e: std::io::Error, p: &Path| DetectError::Invalid(format!("{}: {e}", p.display()));
    let mut selections_log = std::fs::OpenOptions::new().create(true).append(true).open(&selections_path).map_err(|e| io(e, &selections_path))?;
    let device = clip.visual.proj.device();
    let s = options.config.image_size;
    let tokenizer = vlad_clip::ClipTokenizer::openai()?;
    let mut texts: BTreeMap<String, Tensor<2>> = BTreeMap::new();
    let mut adapters = trainable(init_adapters(&options.config, &clip.config, options.seed, &device), &device);
    let mut optimizer = AdamConfig::new().with_beta_1(options.betas.0).with_beta_2(options.betas.1).with_epsilon(1e-8).init();
    let steps = options.max_steps_per_epoch.map_or(n, |m| m.min(n));
    observer.on_start(options.epochs, steps);
    let (mut best, mut all, mut records) = (None::<Selection>, Vec::new(), Vec::new());
    let mut score = |adapters: &MvfaAdapters, epoch: usize, step: usize, best: &mut Option<Selection>, all: &mut Vec<Selection>, observer: &mut dyn MvfaObserver| -> Result<Option<Validation>, DetectError> {
        let Some(data) = selection else { return Ok(None) };
        let plain = adapters.valid();
        let result = select(clip, &plain, &options.config, data, options.eval_batch_size, epoch, step)?;
        let keep = options.improves(result.score, best.as_ref().map(|b| b.score));
        if keep {
            checkpoint::save(&best_path, &plain, &options.config)?;
            *best = Some(result.clone());
        }
        use std::io::Write;
        writeln!(selections_log, "{}", serde_json::to_string(&result).expect("selection serialises")).map_err(|e| io(e, &selections_path))?;
        observer.on_selection(&result, keep);
        let validation = result.validation();
        all.push(result);
        Ok(Some(validation))
    };
    for epoch in 1..=options.epochs {
        let started = Instant::now();
        let mut order: Vec<usize> = (0..n).collect();
        SeededRng::derive(options.seed, &format!("mvfa/epoch-{epoch}")).shuffle(&mut order);
        let (mut loss_sum, mut parts, mut taken) = (0.0, vec![0.0; 2], 0usize);
        let mut validation = None;
        for (step_index, &i) in order.iter().take(steps).enumerate() {
            if let Schedule::Within(times) = options.schedule
                && step_index % (steps / times.max(1)).max(1) == 0
            {
                validation = score(&adapters, epoch, step_index, &mut best, &mut all, observer)?;
            }
            let (pixels, mask, label, class_name) = match &set {
                TrainSet::InMemory(images) => {
                    let image = &images[i];
                    (image.pixels.clone(), image.mask.clone(), image.label, image.class_name.clone())
                }
                TrainSet::Files(samples) => {
                    let (p, m) = load_image(&samples[i], s)?;
                    (p, m, samples[i].label.as_int(), samples[i].class_name.clone())
                }
            };
            if !texts.contains_key(&class_name) {
                texts.insert(class_name.clone(), crate::vand::text_prototypes(clip, &tokenizer, real_name(&class_name))?);
            }
            let head = MvfaHead::for_class(&class_name);
            let pixels = Tensor::<4>::from_data(TensorData::new(pixels, [1, 3, s, s]), &device);
            let mask = Tensor::<3>::from_data(TensorData::new(mask, [1, s, s]), &device);
            let loss = image_loss(clip, &adapters, &options.config, &texts[&class_name], pixels, mask, label, head, options.det_loss)?;
            let value = scalar(loss.total.clone())?;
            if !value.is_finite() {
                return Err(DetectError::Invalid(format!("MVFA training: the loss is {value} (epoch {epoch}, step {step_index})")));
            }
            parts[0] += scalar(loss.det)?;
            if let Some(seg) = loss.seg {
                parts[1] += scalar(seg)?;
            }
            let grads = loss.total.backward();
            // A classification dataset steps only the det adapters (`det_optimizer.step()`).
            let grads = match head {
                MvfaHead::Segmentation => GradientsParams::from_grads(grads, &adapters),
                MvfaHead::Classification => GradientsParams::from_grads(grads, &adapters.det),
            };
            adapters = optimizer.step(options.lr, adapters, grads);
            loss_sum += value;
            taken += 1;
            observer.on_step(epoch, step_index, value);
        }
        if options.schedule == Schedule::AfterEpoch {
            validation = score(&adapters, epoch, taken, &mut best, &mut all, observer)?;
        }
        let plain = adapters.valid();
        checkpoint::save(&last_path, &plain, &options.config)?;
        let record = EpochRecord::from_sums(epoch, taken, loss_sum, &parts, started, validation, Some(last_path.clone()));
        files.close_epoch(record, observer, &mut records)?;
    }
    let checkpoint = if best.is_some() { best_path } else { last_path.clone() };
    Ok(MvfaSummary { epochs: records, selections: all, best, checkpoint, last: last_path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn few_shot_keeps_rises_only_and_zero_shot_keeps_ties() {
        let config = MvfaConfig { taps: vec![1], image_size: 16, bottleneck: 8 };
        let few = TrainOptions::official(config.clone(), Protocol::FewShot);
        let zero = TrainOptions::official(config, Protocol::ZeroShot);
        assert!(few.improves(0.5, None) && zero.improves(0.5, None));
        assert!(!few.improves(0.5, Some(0.5)) && zero.improves(0.5, Some(0.5)));
        assert!(few.improves(0.6, Some(0.5)) && !zero.improves(0.4, Some(0.5)));
        assert_eq!((few.lr, zero.lr, few.schedule, zero.schedule), (1e-3, 1e-4, Schedule::AfterEpoch, Schedule::Within(5)));
    }
}
