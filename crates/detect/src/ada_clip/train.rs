//! Training AdaCLIP natively (`spec/baselines.md` §6.5, the official `train.py` and
//! `AdaCLIP_Trainer.train_one_batch`):
//! `L = Focal(score₂, y) + Σ_taps [Focal(P_l, M) + Dice(P_l,a, M) + Dice(P_l,n, 1 − M)]` on the
//! per-tap softmax maps (`aggregation=False`, logits upsampled with `align_corners=True`), AdamW
//! (weight decay 0.01) lr 0.01 with betas (0.5, 0.999), 5 epochs, **batch 1** (the official code
//! supports no other), seed 111, shuffled, HSF active (its k-means labels carry no gradient, the
//! centroid means do; one NumPy-seeded stream over the run as in `train.py`). The dataset's test
//! split is the training data (`BaseDataset` always reads `meta['test']`), with AdaCLIP's mosaic
//! (four distinct images of the class) at `aug_rate` 0.2 for MVTec.
//!
//! The Dice terms reproduce a quirk: `gt.squeeze()` drops the batch axis of the single-image
//! mask, so `BinaryDiceLoss` sees `N = S` and averages the Dice of each of the S image **rows**.
//! Data loading, the observer and the validation are VAND's ([`crate::vand::train`]).
use std::path::Path;
use std::time::Instant;

use burn::module::{Module, Param, ParamId};
use burn::nn::Linear;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use vlad_clip::ClipModel;
use vlad_data::augment::{MosaicPolicy, choose_mosaic_tiles};
use vlad_data::{DatasetIndex, Sample, SeededRng, Split};

use super::{AdaClip, AdaClipConfig, AdaClipLearned, AdaClipOptions, ClassText, HSF_ALPHA, KMeans, LOGIT_SCALE, NUMPY_SEED, NumpyRandom, checkpoint, host_values, hsf_weights, image_features, mean_logits, tap_logits, text_features, top_patches};
use crate::losses::{binary_dice_loss, focal_loss};
use crate::postprocess::{AxisMap, apply_square, tokens_to_grid};
use crate::prompts::l2_normalize;
use crate::vand::train::{EpochRecord, RunFiles, TrainObserver, TrainSummary, load_batch, steps_per_epoch, validate};
use crate::DetectError;

/// Training options; [`TrainOptions::official`] holds `train.py`'s values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    /// The model.
    pub config: AdaClipConfig,
    /// Epochs (5).
    pub epochs: usize,
    /// Learning rate (0.01).
    pub lr: f64,
    /// AdamW betas ((0.5, 0.999)).
    pub betas: (f32, f32),
    /// AdamW weight decay (PyTorch's default 0.01).
    pub weight_decay: f32,
    /// Probability of the mosaic (0.2 on MVTec, 0 elsewhere).
    pub aug_rate: f64,
    /// Seed of the initialisation, shuffling and mosaic (111); the k-means stream starts from
    /// `np.random.seed(111)` as well.
    pub seed: u64,
    /// Stop each epoch after this many steps.
    pub max_steps_per_epoch: Option<usize>,
    /// Batch size of validation passes.
    pub eval_batch_size: usize,
}

impl TrainOptions {
    /// `train.py` around `config` (the MVTec mosaic rate).
    pub fn official(config: AdaClipConfig) -> Self {
        Self { config, epochs: 5, lr: 0.01, betas: (0.5, 0.999), weight_decay: 0.01, aug_rate: 0.2, seed: 111, max_steps_per_epoch: None, eval_batch_size: 1 }
    }
}

/// The official initialisation from a seeded stream (torch's stream is not reproduced): static
/// prompts `N(0, 0.02)`, linear weights and biases uniform in ±1/√fan_in (PyTorch's default).
pub fn init_learned(config: &AdaClipConfig, clip: &vlad_clip::ClipConfig, seed: u64, device: &Device) -> AdaClipLearned {
    let mut learned = AdaClipLearned::new(config, clip, device);
    let rng = |label: &str| SeededRng::derive(seed, &format!("ada-clip/init/{label}"));
    let normal = |r: &mut SeededRng, shape: [usize; 2]| {
        // Box–Muller from two uniforms (1 − u keeps the logarithm finite).
        let values: Vec<f32> = (0..shape[0] * shape[1])
            .map(|_| {
                let (u1, u2) = (1.0 - r.uniform(), r.uniform());
                (0.02 * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
            })
            .collect();
        Param::from_tensor(Tensor::from_data(TensorData::new(values, shape), device))
    };
    let uniform = |r: &mut SeededRng, n: usize, bound: f64| -> Vec<f32> { (0..n).map(|_| ((2.0 * r.uniform() - 1.0) * bound) as f32).collect() };
    let linear = |l: &mut Linear, label: &str| {
        let [i, o] = l.weight.lazy_shape().dims();
        let bound = 1.0 / (i as f64).sqrt();
        let mut r = rng(label);
        l.weight = Param::from_tensor(Tensor::from_data(TensorData::new(uniform(&mut r, i * o, bound), [i, o]), device));
        l.bias = Some(Param::from_tensor(Tensor::from_data(TensorData::new(uniform(&mut r, o, bound), [o]), device)));
    };
    for (i, l) in learned.patch_token_layer.iter_mut().enumerate() {
        linear(l, &format!("patch_token_layer.{i}"));
    }
    linear(&mut learned.cls_token_layer, "cls_token_layer");
    for (i, l) in learned.dynamic_visual.iter_mut().enumerate() {
        linear(l, &format!("dynamic_visual.{i}"));
    }
    for (i, l) in learned.dynamic_text.iter_mut().enumerate() {
        linear(l, &format!("dynamic_text.{i}"));
    }
    let mut r = SeededRng::derive(seed, "ada-clip/init/static");
    for p in learned.text_static.iter_mut().chain(learned.visual_static.iter_mut()) {
        let shape: [usize; 2] = p.lazy_shape().dims();
        *p = normal(&mut r, shape);
    }
    learned
}

/// Fixed parameter ids (for the optimiser state) and the autodiff copy on `device`.
pub fn trainable(mut learned: AdaClipLearned, device: &Device) -> AdaClipLearned {
    let mut id = 0xADA0_0000u64;
    let mut next = || {
        id += 1;
        ParamId::from(id)
    };
    let fix2 = |p: &mut Param<Tensor<2>>, id: ParamId| *p = Param::initialized(id, p.val()).set_require_grad(true);
    let mut linears: Vec<&mut Linear> = learned.patch_token_layer.iter_mut().collect();
    let (cls, dv, dt) = (&mut learned.cls_token_layer, &mut learned.dynamic_visual, &mut learned.dynamic_text);
    linears.push(cls);
    linears.extend(dv.iter_mut());
    linears.extend(dt.iter_mut());
    for l in linears {
        fix2(&mut l.weight, next());
        if let Some(b) = l.bias.as_mut() {
            *b = Param::initialized(next(), b.val()).set_require_grad(true);
        }
    }
    for p in learned.text_static.iter_mut().chain(learned.visual_static.iter_mut()) {
        fix2(p, next());
    }
    learned.fork(&device.clone().autodiff()).train()
}

/// The loss of one image (`pixels` `[1, 3, S, S]`, 0/1 `mask` `[1, S, S]`, label 0/1) of class
/// `class`, its k-means drawing from `rng`: total, the image focal loss and the summed map losses.
#[allow(clippy::too_many_arguments)]
pub fn image_loss(clip: &ClipModel, learned: &AdaClipLearned, config: &AdaClipConfig, class: &ClassText, pixels: Tensor<4>, mask: Tensor<3>, label: usize, rng: &mut NumpyRandom) -> Result<(Tensor<1>, Tensor<1>, Tensor<1>), DetectError> {
    let [b, _, _, _] = pixels.dims();
    if b != 1 {
        return Err(DetectError::Invalid(format!("AdaCLIP trains one image per step (as the official code), got a batch of {b}")));
    }
    let s = config.image_size;
    let g = clip.visual.grid_for(s);
    let l = g * g;
    let features = image_features(clip, learned, config, pixels)?;
    let [_, len, w] = features.dynamic_text.dims();
    let e = clip.config.embed_dim;
    let text = text_features(clip, learned, class, features.dynamic_text.reshape([len, w]))?;
    let patches: Vec<Tensor<2>> = features.patches.iter().map(|p| p.clone().reshape([l, e])).collect();
    let logits = tap_logits(&patches, &text);
    // HSF: the ranking and the labels from host values; the weighted centroid keeps its gradient.
    let cls = features.cls;
    let feature = if config.use_hsf {
        let anomaly = host_values(softmax(mean_logits(&logits).detach(), 1).narrow(1, 1, 1).reshape([l]), "HSF patch ranking")?;
        let order = top_patches(&anomaly, config.k_clusters);
        let index = Tensor::<1, burn::tensor::Int>::from_data(TensorData::new(order.iter().map(|&o| o as i64).collect::<Vec<_>>(), [order.len()]), &cls.device());
        let rows: Vec<Tensor<2>> = patches.iter().map(|p| p.clone().select(0, index.clone())).collect();
        let data = host_values(Tensor::cat(rows.iter().map(|r| r.clone().detach()).collect(), 1), "HSF tokens")?;
        let labels = KMeans::new(config.k_clusters).fit_predict(&data, order.len(), data.len() / order.len(), rng).map_err(|e| DetectError::Invalid(format!("AdaCLIP HSF: {e}")))?;
        let weights = Tensor::<2>::from_data(TensorData::new(hsf_weights(&labels, rows.len()), [1, labels.len()]), &cls.device());
        let weights = if cls.is_autodiff() { weights.autodiff() } else { weights };
        let summed = rows.into_iter().reduce(|a, b| a + b).expect("at least one tap");
        let c = l2_normalize(weights.matmul(summed));
        l2_normalize(c.mul_scalar(HSF_ALPHA) + cls.mul_scalar(1.0 - HSF_ALPHA))
    } else {
        cls
    };
    let score = softmax(feature.matmul(text.clone().transpose()).mul_scalar(LOGIT_SCALE), 1);
    let target = Tensor::<3>::from_data(TensorData::new(vec![label as f32], [1, 1, 1]), &score.device());
    let target = if score.is_autodiff() { target.autodiff() } else { target };
    let classification = focal_loss(score.reshape([1, 2, 1, 1]), target, 2.0, 1e-5);
    let mask = if text.is_autodiff() && !mask.is_autodiff() { mask.autodiff() } else { mask };
    let up = AxisMap::bilinear(g, s, true);
    let mut seg: Option<Tensor<1>> = None;
    for t in &logits {
        let grid = |c: usize| apply_square(tokens_to_grid(t.clone().narrow(1, c, 1).reshape([1, l]), g), &up);
        let p = softmax(Tensor::stack::<4>(vec![grid(0), grid(1)], 1), 1);
        let (pa, pn) = (p.clone().narrow(1, 1, 1).reshape([s, s]), p.clone().narrow(1, 0, 1).reshape([s, s]));
        // `gt.squeeze()` → [S, S]: the Dice is per image row (N = S), the quirk of the module doc.
        let rows = mask.clone().reshape([s, s]);
        let term = focal_loss(p, mask.clone(), 2.0, 1e-5) + binary_dice_loss(pa, rows.clone(), 1.0) + binary_dice_loss(pn, rows.neg().add_scalar(1.0), 1.0);
        seg = Some(seg.map_or(term.clone(), |acc| acc + term));
    }
    let seg = seg.expect("at least one tap");
    Ok((classification.clone() + seg.clone(), classification, seg))
}

fn scalar(t: Tensor<1>) -> Result<f64, DetectError> {
    t.into_data().convert::<f64>().try_into_vec::<f64>().map(|v| v[0]).map_err(|e| DetectError::Invalid(format!("{e:?}")))
}

/// Trains freshly initialised tensors on `samples` (of `index`, which the mosaic draws from),
/// writing `epoch_N.safetensors` and `metrics.jsonl` into `out`.
#[allow(clippy::too_many_arguments)]
pub fn train(clip: &ClipModel, index: &DatasetIndex, split: Split, samples: &[Sample], validation: Option<&[Sample]>, options: &TrainOptions, out: &Path, overwrite: bool, observer: &mut dyn TrainObserver) -> Result<TrainSummary, DetectError> {
    options.config.validate(&clip.config)?;
    if samples.is_empty() || options.epochs == 0 {
        return Err(DetectError::Invalid("AdaCLIP training: needs samples and at least one epoch".into()));
    }
    let mut files = RunFiles::create(out, options.epochs, overwrite)?;
    let planned = files.checkpoints.clone();
    let device = clip.visual.proj.device();
    let tokenizer = vlad_clip::ClipTokenizer::openai()?;
    let initial = init_learned(&options.config, &clip.config, options.seed, &device);
    let detector = |learned: AdaClipLearned| -> Result<AdaClip, DetectError> {
        AdaClip::new(clip.clone(), learned, options.config.clone(), AdaClipOptions { keep_backbone_settings: true, ..Default::default() })
    };
    let untrained = match validation {
        Some(v) => Some(validate(&mut detector(initial.clone())?, v, options.eval_batch_size)?),
        None => None,
    };
    if let Some(v) = &untrained {
        observer.on_untrained(v);
    }
    let mut learned = trainable(initial, &device);
    let mut optimizer = AdamWConfig::new().with_beta_1(options.betas.0).with_beta_2(options.betas.1).with_epsilon(1e-8).with_weight_decay(options.weight_decay).init();
    let steps_per_epoch = steps_per_epoch(samples.len(), 1, options.max_steps_per_epoch);
    observer.on_start(options.epochs, steps_per_epoch);
    let mut stream = NumpyRandom::seed(NUMPY_SEED);
    let mut classes: std::collections::BTreeMap<String, ClassText> = Default::default();
    let mut records = Vec::new();
    for epoch in 1..=options.epochs {
        let started = Instant::now();
        let mut order: Vec<usize> = (0..samples.len()).collect();
        SeededRng::derive(options.seed, &format!("ada-clip/epoch-{epoch}")).shuffle(&mut order);
        let (mut loss_sum, mut parts, mut steps) = (0.0, vec![0.0; 2], 0usize);
        for (step_index, &i) in order.iter().take(steps_per_epoch).enumerate() {
            let sample = &samples[i];
            let mut rng = SeededRng::derive(options.seed, &format!("ada-clip/epoch-{epoch}/sample-{i}"));
            let mosaic = if options.aug_rate > 0.0 && rng.range_f64(0.0, 1.0) < options.aug_rate {
                Some(choose_mosaic_tiles(index, &sample.class_name, split, MosaicPolicy::AdaClip, &mut rng).map_err(|e| DetectError::Invalid(e.to_string()))?)
            } else {
                None
            };
            let (pixels, masks, _) = load_batch(&[sample], options.config.image_size, &[mosaic], &device)?;
            if !classes.contains_key(&sample.class_name) {
                classes.insert(sample.class_name.clone(), ClassText::new(clip, &tokenizer, &sample.class_name)?);
            }
            let class = &classes[&sample.class_name];
            let (loss, image, seg) = image_loss(clip, &learned, &options.config, class, pixels, masks, sample.label.as_int() as usize, &mut stream)?;
            let value = scalar(loss.clone())?;
            if !value.is_finite() {
                return Err(DetectError::Invalid(format!("AdaCLIP training: the loss is {value} (epoch {epoch}, {})", sample.image_path.display())));
            }
            parts[0] += scalar(image)?;
            parts[1] += scalar(seg)?;
            let grads = GradientsParams::from_grads(loss.backward(), &learned);
            learned = optimizer.step(options.lr, learned, grads);
            loss_sum += value;
            steps += 1;
            observer.on_step(epoch, step_index, value);
        }
        let plain = learned.valid();
        checkpoint::save(&planned[epoch - 1], &plain, &options.config)?;
        let validation = match validation {
            Some(v) => Some(validate(&mut detector(plain.clone())?, v, options.eval_batch_size)?),
            None => None,
        };
        let record = EpochRecord::from_sums(epoch, steps, loss_sum, &parts, started, validation, Some(planned[epoch - 1].clone()));
        files.close_epoch(record, observer, &mut records)?;
    }
    Ok(TrainSummary { epochs: records, checkpoint: planned[options.epochs - 1].clone(), untrained })
}
