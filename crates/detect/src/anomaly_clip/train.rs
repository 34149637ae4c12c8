//! Training AnomalyCLIP's prompt learner natively (`spec/baselines.md` §5.5, the official
//! `train.py`): `L = CE(n(z)·T/0.07, y) + 4·Σ_taps [Focal(P, M) + Dice(P_a, M) + Dice(P_n, 1 − M)]`
//! on the upsampled probabilities, Adam lr 1e-3 with betas (0.5, 0.999), batch 8, 15 epochs, seed
//! 111, shuffled; only the contexts and deep prompts learn (gradients go through the frozen text
//! tower); the auxiliary dataset's test split. Data loading, the observer and the validation are
//! VAND's ([`crate::vand::train`]).
use std::path::Path;
use std::time::Instant;

use burn::module::{Module, Param, ParamId};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use vlad_clip::ClipModel;
use vlad_data::{Sample, SeededRng};

use super::{AnomalyClip, AnomalyClipConfig, AnomalyClipOptions, PromptFrame, PromptLearner, TEMPERATURE, checkpoint, image_features, patch_probabilities, text_features, upsampled};
use crate::DetectError;
use crate::aa_clip::train::{cross_entropy, seg_loss};
use crate::vand::train::{EpochRecord, RunFiles, TrainObserver, TrainSummary, load_batch, steps_per_epoch, validate};

/// Weight of the local (map) loss (`lam = 4`).
pub const LOCAL_WEIGHT: f64 = 4.0;

/// Training options; [`TrainOptions::official`] holds `train.py`'s values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    /// The model.
    pub config: AnomalyClipConfig,
    /// Epochs (15).
    pub epochs: usize,
    /// Learning rate (1e-3).
    pub lr: f64,
    /// Adam betas ((0.5, 0.999)).
    pub betas: (f32, f32),
    /// Batch size (8).
    pub batch_size: usize,
    /// Seed of the initialisation and the shuffling (111).
    pub seed: u64,
    /// Stop each epoch after this many steps.
    pub max_steps_per_epoch: Option<usize>,
    /// Batch size of validation passes.
    pub eval_batch_size: usize,
}

impl TrainOptions {
    /// `train.py` around `config`.
    pub fn official(config: AnomalyClipConfig) -> Self {
        Self { config, epochs: 15, lr: 1e-3, betas: (0.5, 0.999), batch_size: 8, seed: 111, max_steps_per_epoch: None, eval_batch_size: 4 }
    }
}

/// The official initialisation: every learned tensor `N(0, 0.02)`, from a seeded stream (torch's
/// stream is not reproduced).
pub fn init_learner(config: &AnomalyClipConfig, width: usize, seed: u64, device: &Device) -> PromptLearner {
    let normal = |label: &str, rows: usize| {
        let mut rng = SeededRng::derive(seed, &format!("anomaly-clip/init/{label}"));
        // Box–Muller from two uniforms (1 − u keeps the logarithm finite).
        let values: Vec<f32> = (0..rows * width)
            .map(|_| {
                let (u1, u2) = (1.0 - rng.uniform(), rng.uniform());
                (0.02 * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
            })
            .collect();
        Param::from_tensor(Tensor::from_data(TensorData::new(values, [rows, width]), device))
    };
    PromptLearner {
        ctx_pos: normal("ctx_pos", config.n_ctx),
        ctx_neg: normal("ctx_neg", config.n_ctx),
        compound_prompts_text: (0..config.depth.saturating_sub(1)).map(|i| normal(&format!("compound_prompts_text.{i}"), config.t_n_ctx)).collect(),
    }
}

/// Fixed parameter ids (for the optimiser state) and the autodiff copy on `device`.
pub fn trainable(mut learner: PromptLearner, device: &Device) -> PromptLearner {
    let mut id = 0xA0C1_0000u64;
    let mut fix = |p: &mut Param<Tensor<2>>| {
        *p = Param::initialized(ParamId::from(id), p.val()).set_require_grad(true);
        id += 1;
    };
    fix(&mut learner.ctx_pos);
    fix(&mut learner.ctx_neg);
    learner.compound_prompts_text.iter_mut().for_each(&mut fix);
    learner.fork(&device.clone().autodiff()).train()
}

/// The loss of one batch (`pixels` `[B, 3, S, S]`, 0/1 `masks` `[B, S, S]`, labels 0/1): total,
/// image CE and the local part (before the weight of 4).
pub fn batch_loss(clip: &ClipModel, learner: &PromptLearner, frame: &PromptFrame, config: &AnomalyClipConfig, pixels: Tensor<4>, masks: Tensor<3>, labels: &[usize]) -> Result<(Tensor<1>, Tensor<1>, Tensor<1>), DetectError> {
    let text = text_features(clip, learner, frame)?;
    let (z, patches) = image_features(clip, config, pixels)?;
    let lift2 = |t: Tensor<2>| if text.is_autodiff() && !t.is_autodiff() { t.autodiff() } else { t };
    let z = lift2(z);
    let patches: Vec<Tensor<3>> = patches.into_iter().map(|p| if text.is_autodiff() && !p.is_autodiff() { p.autodiff() } else { p }).collect();
    let image = cross_entropy(z.matmul(text.clone().transpose()).div_scalar(TEMPERATURE), labels);
    let [b, s, _] = masks.dims();
    let masks = masks.reshape([b, 1, s, s]);
    let masks = if text.is_autodiff() { masks.autodiff() } else { masks };
    let g = clip.visual.grid_for(config.image_size);
    let local = patch_probabilities(&patches, &text, g)
        .into_iter()
        .map(|p| seg_loss(upsampled(p, config.image_size), masks.clone()))
        .reduce(|a, b| a + b)
        .expect("at least one tap");
    Ok((local.clone().mul_scalar(LOCAL_WEIGHT) + image.clone(), image, local))
}

fn scalar(t: Tensor<1>) -> Result<f64, DetectError> {
    t.into_data().convert::<f64>().try_into_vec::<f64>().map(|v| v[0]).map_err(|e| DetectError::Invalid(format!("{e:?}")))
}

/// Trains a fresh learner on `samples`, writing `epoch_N.safetensors` and `metrics.jsonl` to `out`.
#[allow(clippy::too_many_arguments)]
pub fn train(clip: &ClipModel, samples: &[Sample], validation: Option<&[Sample]>, options: &TrainOptions, out: &Path, overwrite: bool, observer: &mut dyn TrainObserver) -> Result<TrainSummary, DetectError> {
    options.config.validate(&clip.config)?;
    if samples.is_empty() || options.epochs == 0 || options.batch_size == 0 {
        return Err(DetectError::Invalid("AnomalyCLIP training: needs samples, at least one epoch and a batch size ≥ 1".into()));
    }
    let mut files = RunFiles::create(out, options.epochs, overwrite)?;
    let planned = files.checkpoints.clone();
    let device = clip.visual.proj.device();
    let tokenizer = vlad_clip::ClipTokenizer::openai()?;
    let frame = PromptFrame::from_backbone(clip, &tokenizer, options.config.n_ctx)?;
    let initial = init_learner(&options.config, clip.config.text.width, options.seed, &device);
    let detector = |learner: PromptLearner| -> Result<AnomalyClip, DetectError> {
        AnomalyClip::new(clip.clone(), learner, &frame, options.config.clone(), AnomalyClipOptions { keep_backbone_settings: true, ..Default::default() })
    };
    let untrained = match validation {
        Some(v) => Some(validate(&mut detector(initial.clone())?, v, options.eval_batch_size)?),
        None => None,
    };
    if let Some(v) = &untrained {
        observer.on_untrained(v);
    }
    let mut learner = trainable(initial, &device);
    let mut optimizer = AdamConfig::new().with_beta_1(options.betas.0).with_beta_2(options.betas.1).with_epsilon(1e-8).init();
    let steps_per_epoch = steps_per_epoch(samples.len(), options.batch_size, options.max_steps_per_epoch);
    observer.on_start(options.epochs, steps_per_epoch);
    let mut records = Vec::new();
    for epoch in 1..=options.epochs {
        let started = Instant::now();
        let mut order: Vec<usize> = (0..samples.len()).collect();
        SeededRng::derive(options.seed, &format!("anomaly-clip/epoch-{epoch}")).shuffle(&mut order);
        let (mut loss_sum, mut parts, mut steps) = (0.0, vec![0.0; 2], 0usize);
        for (step_index, chunk) in order.chunks(options.batch_size).take(steps_per_epoch).enumerate() {
            let batch: Vec<&Sample> = chunk.iter().map(|&i| &samples[i]).collect();
            let (pixels, masks, _) = load_batch(&batch, options.config.image_size, &vec![None; batch.len()], &device)?;
            let labels: Vec<usize> = batch.iter().map(|s| s.label.as_int() as usize).collect();
            let (loss, image, local) = batch_loss(clip, &learner, &frame, &options.config, pixels, masks, &labels)?;
            let value = scalar(loss.clone())?;
            if !value.is_finite() {
                return Err(DetectError::Invalid(format!("AnomalyCLIP training: the loss is {value}")));
            }
            parts[0] += scalar(image)?;
            parts[1] += scalar(local)?;
            let grads = GradientsParams::from_grads(loss.backward(), &learner);
            learner = optimizer.step(options.lr, learner, grads);
            loss_sum += value;
            steps += 1;
            observer.on_step(epoch, step_index, value);
        }
        let plain = learner.valid();
        checkpoint::save(&planned[epoch - 1], &plain, &frame, &options.config)?;
        let validation = match validation {
            Some(v) => Some(validate(&mut detector(plain.clone())?, v, options.eval_batch_size)?),
            None => None,
        };
        let record = EpochRecord::from_sums(epoch, steps, loss_sum, &parts, started, validation, Some(planned[epoch - 1].clone()));
        files.close_epoch(record, observer, &mut records)?;
    }
    Ok(TrainSummary { epochs: records, checkpoint: planned[options.epochs - 1].clone(), untrained })
}
