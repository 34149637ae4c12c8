//! Training VAND natively (`spec/baselines.md` §4.6, the official `train.py`).
//!
//! Only the linear layers learn; CLIP stays frozen on the plain device. Per batch the taps go
//! through the layers, each tap's logits are upsampled to S and softmaxed
//! ([`super::training_probabilities`]), and the loss is `Σ_taps Focal(P, M) + Dice(P_A, M)`. Adam
//! with lr 1e-3 and betas (0.5, 0.999), batch 8, seed 111, a checkpoint per epoch. The official
//! runs: MVTec 3 epochs with the mosaic (`aug_rate` 0.2), VisA 15 epochs without; both on the
//! auxiliary dataset's **test** split. The official run uses fp16 autocast without a GradScaler;
//! here everything is f32.
//!
//! Data (`dataset.py`): PIL bicubic `Resize((S, S))` + CLIP normalisation; the mask resized
//! bilinearly as a 0/255 image and thresholded at 0.5. With probability `aug_rate` a sample is
//! replaced by a 2×2 mosaic of four images of its class (a defect folder uniformly, `good`
//! included, then a file in it; audit V4), from a stream per (seed, epoch, sample); torch's and
//! Python's random streams are not reproduced.
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{Module, Param, ParamId};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use vlad_clip::{ClipModel, ClipTokenizer, VisionForward};
use vlad_data::augment::{MosaicPolicy, Planar, choose_mosaic_tiles, mosaic_2x2};
use vlad_data::load::{MaskRule, open_image, open_mask, resize_binary_mask};
use vlad_data::{DatasetIndex, Label, Sample, SeededRng, Split};
use vlad_imaging::{CLIP_MEAN, CLIP_STD, Filter, GrayImage, RgbImage};
use vlad_metrics::{MapShape, binary_metrics, pixel_metrics};

use super::{LinearLayers, VandConfig, checkpoint, logit_differences, text_prototypes, training_probabilities};
use crate::{DetectError, Detector};
use crate::losses::{binary_dice_loss, focal_loss};

/// Focal γ and smoothing, Dice smoothing of `loss.py`.
const FOCAL_GAMMA: f64 = 2.0;
const FOCAL_SMOOTH: f64 = 1e-5;
const DICE_SMOOTH: f64 = 1.0;

/// `Σ_taps FocalLoss(P, M) + BinaryDiceLoss(P[:, 1], M)` for probabilities `[B, 2, S, S]` per tap
/// and 0/1 masks `[B, S, S]`; also the per-tap values.
pub fn seg_loss(probs: &[Tensor<4>], masks: Tensor<3>) -> (Tensor<1>, Vec<Tensor<1>>) {
    let parts: Vec<Tensor<1>> = probs
        .iter()
        .map(|p| {
            let [b, _, s, w] = p.dims();
            let anomalous = p.clone().narrow(1, 1, 1).reshape([b, s, w]);
            focal_loss(p.clone(), masks.clone(), FOCAL_GAMMA, FOCAL_SMOOTH) + binary_dice_loss(anomalous, masks.clone(), DICE_SMOOTH)
        })
        .collect();
    let total = parts.iter().cloned().reduce(|a, b| a + b).expect("at least one tap");
    (total, parts)
}

/// The loss of one batch from the tap features `taps` (`[B, T, D]` each, CLS first, on the plain
/// device: VAND's raw residual stream, CLIP-AD's original-path taps), 0/1 `masks` `[B, S, S]` and
/// `text` `[B, 2, E]` (the prototypes of each image's class); `layers` may live on the autodiff
/// device (the frozen features join it as constants). Also the per-tap losses.
pub fn batch_loss(layers: &LinearLayers, taps: Vec<Tensor<3>>, masks: Tensor<3>, text: Tensor<3>, image_size: usize) -> (Tensor<1>, Vec<Tensor<1>>) {
    let device = layers.fc[0].weight.device();
    let [_, t, _] = taps[0].dims();
    let g = ((t - 1) as f64).sqrt().round() as usize;
    let lift3 = |x: Tensor<3>| if device.is_autodiff() { x.autodiff() } else { x };
    let taps: Vec<Tensor<3>> = taps.into_iter().map(lift3).collect();
    let text = lift3(text);
    let masks = lift3(masks);
    let probs: Vec<Tensor<4>> = logit_differences(layers, &taps, &text, g).into_iter().map(|d| training_probabilities(d, image_size)).collect();
    seg_loss(&probs, masks)
}

/// What differs between the methods that train VAND's linear layers: VAND itself and CLIP-AD's
/// SDP+ (another backbone, other taps, other prototypes, its own validation detector and file).
pub trait LinearLayerMethod {
    /// Short name (progress streams, messages).
    fn name(&self) -> &'static str;
    /// Taps, input side, widths.
    fn config(&self) -> &VandConfig;
    /// The frozen tap features of a batch (`[B, T, D]` per tap, CLS first; no gradients).
    fn features(&self, pixels: Tensor<4>) -> Result<Vec<Tensor<3>>, DetectError>;
    /// The prototypes `[2, E]` (normal, anomalous) of a training class.
    fn prototypes(&self, class_name: &str) -> Result<Tensor<2>, DetectError>;
    /// The method's detector with these layers (for validation).
    fn detector(&self, layers: LinearLayers) -> Result<Box<dyn Detector>, DetectError>;
    /// Writes a checkpoint.
    fn save(&self, path: &Path, layers: &LinearLayers, epoch: usize) -> Result<(), DetectError>;
    /// The backbone's plain device.
    fn device(&self) -> Device;
}

/// VAND's side of [`LinearLayerMethod`]: the raw taps, the 35-template ensemble, our safetensors.
pub struct VandMethod<'a> {
    /// The frozen backbone (exact GELU and rule A for the official model).
    pub clip: &'a ClipModel,
    /// The model.
    pub config: VandConfig,
    tokenizer: ClipTokenizer,
}

impl<'a> VandMethod<'a> {
    /// VAND on `clip` with `config`.
    pub fn new(clip: &'a ClipModel, config: VandConfig) -> Result<Self, DetectError> {
        config.validate(&clip.config)?;
        Ok(Self { clip, config, tokenizer: ClipTokenizer::openai()? })
    }
}

impl LinearLayerMethod for VandMethod<'_> {
    fn name(&self) -> &'static str {
        "vand"
    }

    fn config(&self) -> &VandConfig {
        &self.config
    }

    fn features(&self, pixels: Tensor<4>) -> Result<Vec<Tensor<3>>, DetectError> {
        Ok(self.clip.visual.forward(pixels, VisionForward { taps: &self.config.taps, ..Default::default() })?.taps)
    }

    fn prototypes(&self, class_name: &str) -> Result<Tensor<2>, DetectError> {
        text_prototypes(self.clip, &self.tokenizer, class_name)
    }

    fn detector(&self, layers: LinearLayers) -> Result<Box<dyn Detector>, DetectError> {
        let options = super::VandOptions { keep_backbone_settings: true, ..Default::default() };
        Ok(Box::new(super::Vand::new(self.clip.clone(), layers, self.config.clone(), options)?))
    }

    fn save(&self, path: &Path, layers: &LinearLayers, epoch: usize) -> Result<(), DetectError> {
        checkpoint::save(path, layers, &self.config, Some(epoch))
    }

    fn device(&self) -> Device {
        self.clip.visual.proj.device()
    }
}

/// Training options; [`TrainOptions::official`] holds `train.py`'s values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    /// The model.
    pub config: VandConfig,
    /// Epochs (official: 3 on MVTec, 15 on VisA).
    pub epochs: usize,
    /// Learning rate (1e-3).
    pub lr: f64,
    /// Adam β₁, β₂ ((0.5, 0.999)); ε is PyTorch's 1e-8.
    pub betas: (f32, f32),
    /// Batch size (8).
    pub batch_size: usize,
    /// Probability of the 2×2 mosaic (official 0.2 on MVTec, 0 on VisA).
    pub aug_rate: f64,
    /// Seed of initialisation, shuffling and the mosaic (111).
    pub seed: u64,
    /// Shuffle the samples every epoch (VAND's `shuffle=True`; CLIP-AD trains in dataset order).
    pub shuffle: bool,
    /// Write a checkpoint every this many epochs (`save_freq`; the last epoch is always saved).
    pub save_every: usize,
    /// Stop each epoch after this many steps (`None`: the whole epoch).
    pub max_steps_per_epoch: Option<usize>,
    /// Batch size of validation passes.
    pub eval_batch_size: usize,
}

impl TrainOptions {
    /// `train.py` around `config` (the VisA run: 15 epochs, no mosaic).
    pub fn official(config: VandConfig) -> Self {
        Self { config, epochs: 15, lr: 1e-3, betas: (0.5, 0.999), batch_size: 8, aug_rate: 0.0, seed: 111, shuffle: true, save_every: 1, max_steps_per_epoch: None, eval_batch_size: 4 }
    }

    fn check(&self) -> Result<(), DetectError> {
        let mut problems = Vec::new();
        if self.epochs == 0 || self.batch_size == 0 || self.eval_batch_size == 0 || self.save_every == 0 {
            problems.push("epochs, batch sizes and the save interval must be at least 1".to_string());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            problems.push(format!("learning rate must be positive, got {}", self.lr));
        }
        if !(0.0..1.0).contains(&self.betas.0) || !(0.0..1.0).contains(&self.betas.1) {
            problems.push(format!("Adam betas must be in [0, 1), got {:?}", self.betas));
        }
        if !(0.0..=1.0).contains(&self.aug_rate) {
            problems.push(format!("aug_rate must be in [0, 1], got {}", self.aug_rate));
        }
        if problems.is_empty() { Ok(()) } else { Err(DetectError::Invalid(format!("VAND training options: {}", problems.join("; ")))) }
    }
}

/// One sample as `([3, S, S] normalised pixels, [S, S] 0/1 mask)`; with `mosaic` the four given
/// tiles replace it.
fn load_sample(sample: &Sample, size: usize, mosaic: Option<&[Sample; 4]>) -> Result<(Vec<f32>, Vec<f32>), DetectError> {
    let data_error = |e: vlad_data::DataError| DetectError::Invalid(e.to_string());
    let read = |s: &Sample| -> Result<(RgbImage, GrayImage), DetectError> {
        let image = open_image(&s.image_path).map_err(data_error)?;
        let (w, h) = image.dimensions();
        let mask = match (&s.mask_path, s.label) {
            (Some(path), Label::Anomalous) => {
                let mask = open_mask(path).map_err(data_error)?;
                if mask.dimensions() != (w, h) {
                    return Err(DetectError::Invalid(format!("{}: mask is {:?}, its image {} is {:?}", path.display(), mask.dimensions(), s.image_path.display(), (w, h))));
                }
                mask
            }
            _ => GrayImage::new(w, h),
        };
        Ok((image, mask))
    };
    let (image, mask) = match mosaic {
        Some(tiles) => {
            let loaded: Vec<(RgbImage, GrayImage)> = tiles.iter().map(read).collect::<Result<_, _>>()?;
            mosaic_2x2([(&loaded[0].0, &loaded[0].1), (&loaded[1].0, &loaded[1].1), (&loaded[2].0, &loaded[2].1), (&loaded[3].0, &loaded[3].1)]).map_err(data_error)?
        }
        None => read(sample)?,
    };
    let s = size as u32;
    let image = vlad_imaging::resize_rgb(&image, s, s, Filter::Bicubic);
    let mask = resize_binary_mask(&mask, s, s, MaskRule::BilinearThreshold);
    let planar = Planar::from_image_and_mask(&image, &mask, CLIP_MEAN, CLIP_STD).map_err(data_error)?;
    let mut data = planar.data;
    let mask: Vec<f32> = data.split_off(3 * size * size).into_iter().map(|v| if v != 0.0 { 1.0 } else { 0.0 }).collect();
    Ok((data, mask))
}

/// A batch on `device`: pixels `[B, 3, S, S]`, masks `[B, S, S]`, class names.
pub fn load_batch(samples: &[&Sample], size: usize, mosaics: &[Option<[Sample; 4]>], device: &Device) -> Result<(Tensor<4>, Tensor<3>, Vec<String>), DetectError> {
    let loaded: Vec<(Vec<f32>, Vec<f32>)> = samples.par_iter().zip(mosaics).map(|(s, m)| load_sample(s, size, m.as_ref())).collect::<Result<_, _>>()?;
    let n = samples.len();
    let (mut pixels, mut masks) = (Vec::with_capacity(n * 3 * size * size), Vec::with_capacity(n * size * size));
    for (p, m) in loaded {
        pixels.extend(p);
        masks.extend(m);
    }
    Ok((
        Tensor::from_data(TensorData::new(pixels, [n, 3, size, size]), device),
        Tensor::from_data(TensorData::new(masks, [n, size, size]), device),
        samples.iter().map(|s| s.class_name.clone()).collect(),
    ))
}

/// Prototypes `[2, E]` of every class of `samples`, on the backbone's device.
pub fn class_prototypes(method: &dyn LinearLayerMethod, samples: &[Sample]) -> Result<BTreeMap<String, Tensor<2>>, DetectError> {
    let mut out = BTreeMap::new();
    for s in samples {
        if !out.contains_key(&s.class_name) {
            out.insert(s.class_name.clone(), method.prototypes(&s.class_name)?);
        }
    }
    Ok(out)
}

fn stack_text(prototypes: &BTreeMap<String, Tensor<2>>, classes: &[String]) -> Tensor<3> {
    Tensor::stack(classes.iter().map(|c| prototypes[c].clone()).collect(), 0)
}

/// Validation metrics (per class, then the plain mean over classes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    /// Images evaluated.
    pub images: usize,
    /// Mean pixel AUROC over the classes where it is defined.
    pub pixel_auroc: Option<f64>,
    /// Mean image AUROC of the detector's single-image score (VAND zero-shot: the text probability).
    pub image_auroc: Option<f64>,
    /// `(class, pixel AUROC, image AUROC)`.
    pub per_class: Vec<(String, Option<f64>, Option<f64>)>,
}

/// Pixel AUROC of [`Detection::map`](crate::Detection) and image AUROC of the single-image score
/// of `detector` on `samples` (unaugmented, grouped by class, `batch_size` at a time).
pub fn validate(detector: &mut dyn Detector, samples: &[Sample], batch_size: usize) -> Result<Validation, DetectError> {
    let device = detector.device();
    let mut by_class: BTreeMap<&str, Vec<&Sample>> = BTreeMap::new();
    for sample in samples {
        by_class.entry(sample.class_name.as_str()).or_default().push(sample);
    }
    let host = |t: Tensor<3>| t.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| DetectError::Invalid(format!("cannot read a validation result back: {e:?}")));
    let metrics_error = |e: vlad_metrics::MetricsError| DetectError::Invalid(format!("validation metrics: {e}"));
    let s = detector.preprocess().size as usize;
    let mut rows = Vec::new();
    for (class, members) in by_class {
        detector.set_class(class)?;
        let (mut maps, mut masks, mut scores, mut labels) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for chunk in members.chunks(batch_size.max(1)) {
            let (pixels, batch_masks, _) = load_batch(chunk, s, &vec![None; chunk.len()], &device)?;
            let out = detector.detect(pixels)?;
            maps.extend(host(out.map)?);
            masks.extend(host(batch_masks)?.into_iter().map(|m| (m > 0.5) as u8));
            scores.extend(host(out.image_score.unsqueeze::<3>())?);
            labels.extend(chunk.iter().map(|s| s.label.as_int()));
        }
        let n = labels.len();
        let pixel = pixel_metrics(&maps, &masks, MapShape::new(n, s, s), None).map_err(metrics_error)?.binary.auroc;
        let image = binary_metrics(&scores, &labels).map_err(metrics_error)?.auroc;
        rows.push((class.to_string(), pixel, image));
    }
    let mean = |v: Vec<f64>| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    Ok(Validation {
        images: samples.len(),
        pixel_auroc: mean(rows.iter().filter_map(|r| r.1).collect()),
        image_auroc: mean(rows.iter().filter_map(|r| r.2).collect()),
        per_class: rows,
    })
}

/// What an epoch did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch, 1-based.
    pub epoch: usize,
    /// Steps taken.
    pub steps: usize,
    /// Mean loss.
    pub loss: f64,
    /// Mean loss per tap.
    pub tap_losses: Vec<f64>,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Validation after the epoch.
    pub validation: Option<Validation>,
    /// Checkpoint written (if any this epoch).
    pub checkpoint: Option<PathBuf>,
}

impl EpochRecord {
    /// The record of an epoch from its summed losses (`part_sums`: per tap or per loss term).
    pub fn from_sums(epoch: usize, steps: usize, loss_sum: f64, part_sums: &[f64], started: Instant, validation: Option<Validation>, checkpoint: Option<PathBuf>) -> Self {
        let n = steps.max(1) as f64;
        Self { epoch, steps, loss: loss_sum / n, tap_losses: part_sums.iter().map(|s| s / n).collect(), seconds: started.elapsed().as_secs_f64(), validation, checkpoint }
    }
}

/// Progress callbacks (the CLI draws bars with them).
pub trait TrainObserver {
    /// The initial layers were validated (before the first step).
    fn on_untrained(&mut self, _validation: &Validation) {}
    /// Training starts: epochs and steps per epoch.
    fn on_start(&mut self, _epochs: usize, _steps_per_epoch: usize) {}
    /// A step finished.
    fn on_step(&mut self, _epoch: usize, _step: usize, _loss: f64) {}
    /// An epoch finished.
    fn on_epoch(&mut self, _record: &EpochRecord) {}
}

/// An observer that ignores everything.
pub struct Quiet;
impl TrainObserver for Quiet {}

/// Gives the layers fixed parameter ids and moves them to the autodiff copy of `device`.
pub fn trainable(mut layers: LinearLayers, device: &Device) -> LinearLayers {
    for (i, fc) in layers.fc.iter_mut().enumerate() {
        fc.weight = Param::initialized(ParamId::from(0x7A4D_0000 + 2 * i as u64), fc.weight.val()).set_require_grad(true);
        if let Some(b) = fc.bias.take() {
            fc.bias = Some(Param::initialized(ParamId::from(0x7A4D_0001 + 2 * i as u64), b.val()).set_require_grad(true));
        }
    }
    layers.fork(&device.clone().autodiff()).train()
}

/// One optimiser step on a batch of tap features; returns the loss before the step and the per-tap
/// losses.
pub fn step(
    layers: LinearLayers,
    optimizer: &mut ModuleOptimizer,
    options: &TrainOptions,
    taps: Vec<Tensor<3>>,
    masks: Tensor<3>,
    text: Tensor<3>,
) -> Result<(LinearLayers, f64, Vec<f64>), DetectError> {
    let (loss, parts) = batch_loss(&layers, taps, masks, text, options.config.image_size);
    let scalar = |t: Tensor<1>| t.into_data().convert::<f64>().try_into_vec::<f64>().map(|v| v[0]).map_err(|e| DetectError::Invalid(format!("{e:?}")));
    let value = scalar(loss.clone())?;
    if !value.is_finite() {
        return Err(DetectError::Invalid(format!("training: the loss is {value}")));
    }
    let parts = parts.into_iter().map(scalar).collect::<Result<Vec<_>, _>>()?;
    let grads = GradientsParams::from_grads(loss.backward(), &layers);
    let layers = optimizer.step(options.lr, layers, grads);
    Ok((layers, value, parts))
}

/// What a run produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainSummary {
    /// Per-epoch records.
    pub epochs: Vec<EpochRecord>,
    /// The last checkpoint.
    pub checkpoint: PathBuf,
    /// Validation of the initial layers (when validation data was given).
    pub untrained: Option<Validation>,
}

/// The files of a training run in `out`: one `epoch_N.safetensors` per epoch (refused when one
/// exists, unless overwriting is allowed) and `metrics.jsonl`, appended one record per epoch.
pub struct RunFiles {
    /// The checkpoint of each epoch (index 0: epoch 1).
    pub checkpoints: Vec<PathBuf>,
    log: std::fs::File,
    log_path: PathBuf,
}

impl RunFiles {
    /// Creates `out` and opens the log.
    pub fn create(out: &Path, epochs: usize, overwrite: bool) -> Result<Self, DetectError> {
        let io = |e: std::io::Error, p: &Path| DetectError::Invalid(format!("{}: {e}", p.display()));
        std::fs::create_dir_all(out).map_err(|e| io(e, out))?;
        let checkpoints: Vec<PathBuf> = (1..=epochs).map(|e| out.join(format!("epoch_{e}.safetensors"))).collect();
        if !overwrite && let Some(existing) = checkpoints.iter().find(|p| p.exists()) {
            return Err(DetectError::Invalid(format!("{} already exists (choose another output directory or allow overwriting)", existing.display())));
        }
        let log_path = out.join("metrics.jsonl");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).map_err(|e| io(e, &log_path))?;
        Ok(Self { checkpoints, log, log_path })
    }

    /// Appends an epoch's record to `metrics.jsonl`.
    pub fn record(&mut self, record: &EpochRecord) -> Result<(), DetectError> {
        writeln!(self.log, "{}", serde_json::to_string(record).expect("record serialises")).map_err(|e| DetectError::Invalid(format!("{}: {e}", self.log_path.display())))
    }

    /// Logs a finished epoch, tells the observer and keeps the record.
    pub fn close_epoch(&mut self, record: EpochRecord, observer: &mut dyn TrainObserver, records: &mut Vec<EpochRecord>) -> Result<(), DetectError> {
        self.record(&record)?;
        observer.on_epoch(&record);
        records.push(record);
        Ok(())
    }
}

/// Batches per epoch for `n` samples, at most `cap`.
pub fn steps_per_epoch(n: usize, batch_size: usize, cap: Option<usize>) -> usize {
    let all = n.div_ceil(batch_size.max(1));
    cap.map_or(all, |m| m.min(all))
}

/// Trains freshly initialised layers for `method` on `samples` (of `index`, which the mosaic draws
/// from), writing `epoch_N.safetensors` and `metrics.jsonl` into `out` (refusing to overwrite a
/// checkpoint unless `overwrite`).
#[allow(clippy::too_many_arguments)]
pub fn train(
    method: &dyn LinearLayerMethod,
    index: &DatasetIndex,
    split: Split,
    samples: &[Sample],
    validation: Option<&[Sample]>,
    options: &TrainOptions,
    out: &Path,
    overwrite: bool,
    observer: &mut dyn TrainObserver,
) -> Result<TrainSummary, DetectError> {
    options.check()?;
    if samples.is_empty() {
        return Err(DetectError::Invalid(format!("{} training: no samples", method.name())));
    }
    let mut files = RunFiles::create(out, options.epochs, overwrite)?;
    let planned = files.checkpoints.clone();
    let device = method.device();
    let name = method.name();
    let prototypes = class_prototypes(method, samples)?;
    let initial = LinearLayers::init(&options.config, options.seed, &device);
    let untrained = match validation {
        Some(v) => Some(validate(method.detector(initial.clone())?.as_mut(), v, options.eval_batch_size)?),
        None => None,
    };
    if let Some(v) = &untrained {
        observer.on_untrained(v);
    }
    let mut layers = trainable(initial, &device);
    let mut optimizer = AdamConfig::new().with_beta_1(options.betas.0).with_beta_2(options.betas.1).with_epsilon(1e-8).init();
    let steps_per_epoch = steps_per_epoch(samples.len(), options.batch_size, options.max_steps_per_epoch);
    observer.on_start(options.epochs, steps_per_epoch);
    let mut records = Vec::new();
    let mut last = planned[0].clone();
    for epoch in 1..=options.epochs {
        let started = Instant::now();
        let mut order: Vec<usize> = (0..samples.len()).collect();
        if options.shuffle {
            SeededRng::derive(options.seed, &format!("{name}/epoch-{epoch}")).shuffle(&mut order);
        }
        let (mut loss_sum, mut tap_sums, mut steps) = (0.0, vec![0.0; options.config.taps.len()], 0usize);
        for (step_index, chunk) in order.chunks(options.batch_size).take(steps_per_epoch).enumerate() {
            let batch: Vec<&Sample> = chunk.iter().map(|&i| &samples[i]).collect();
            let mosaics: Vec<Option<[Sample; 4]>> = chunk
                .iter()
                .map(|&i| {
                    let mut rng = SeededRng::derive(options.seed, &format!("{name}/epoch-{epoch}/sample-{i}"));
                    if options.aug_rate > 0.0 && rng.range_f64(0.0, 1.0) < options.aug_rate {
                        choose_mosaic_tiles(index, &samples[i].class_name, split, MosaicPolicy::Vand, &mut rng).map(Some).map_err(|e| DetectError::Invalid(e.to_string()))
                    } else {
                        Ok(None)
                    }
                })
                .collect::<Result<_, _>>()?;
            let (pixels, masks, classes) = load_batch(&batch, options.config.image_size, &mosaics, &device)?;
            let text = stack_text(&prototypes, &classes);
            let taps = method.features(pixels)?;
            let (next, loss, parts) = step(layers, &mut optimizer, options, taps, masks, text)?;
            layers = next;
            loss_sum += loss;
            tap_sums.iter_mut().zip(&parts).for_each(|(a, b)| *a += b);
            steps += 1;
            observer.on_step(epoch, step_index, loss);
        }
        let plain = layers.valid();
        let checkpoint = (epoch % options.save_every == 0 || epoch == options.epochs).then(|| planned[epoch - 1].clone());
        if let Some(path) = &checkpoint {
            method.save(path, &plain, epoch)?;
            last = path.clone();
        }
        let validation = match validation {
            Some(v) => Some(validate(method.detector(plain.clone())?.as_mut(), v, options.eval_batch_size)?),
            None => None,
        };
        let record = EpochRecord::from_sums(epoch, steps, loss_sum, &tap_sums, started, validation, checkpoint);
        files.close_epoch(record, observer, &mut records)?;
    }
    Ok(TrainSummary { epochs: records, checkpoint: last, untrained })
}
