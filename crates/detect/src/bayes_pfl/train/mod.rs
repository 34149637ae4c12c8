//! Training Bayes-PFL (feature `train`; `spec/bayes-pfl.md` §8–§9, the official `train.py`).
//!
//! One [`Trainer::step`] is one official iteration:
//! * the backbone runs without autodiff (frozen; its towers never get gradients), the head runs
//!   with autodiff; gradients reach the prompts and flow samples **through** the frozen text tower;
//! * one image-specific sample per image and one image-agnostic sample per batch (R = 1);
//! * a prompt index b* is drawn per batch; only the pair (normal b*, abnormal b*) enters the CE,
//!   focal and dice terms; the orthogonality and KL terms use all prompts;
//! * stage 1: `L = CE + Σ_layers (focal + dice) + 0.01·(KL_ctx + KL_n + KL_a) + L_orth`, four Adam
//!   groups (prompts 1e-3, temperatures 1e-2, flow parameters 1e-3, everything else 1e-4), betas
//!   (0.5, 0.999), scaled by the cosine schedule with warm-up (stepped per iteration);
//! * stage 2: `L = CE` with the stage-2 image head; a fresh Adam (1e-4, no schedule) on `fuse`,
//!   `class_mapping` and `image_mapping` only (the text features are computed without autodiff:
//!   nothing upstream of them is optimised).
//!
//! The loop around it (data, augmentation, validation, the stage rule, checkpoints, logs) is the
//! CLI's `vlad train bayes-pfl`; [`StageController`] holds the official stage rule and
//! [`init::official_head`] the official initialisation.
pub mod init;
pub mod losses;
pub mod schedule;

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, Param};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Gradients, Tensor, TensorData};
use vlad_clip::{ClipModel, ClipTokenizer, VisionForward};

use self::losses::{cross_entropy, dice_loss, focal_loss, orthogonality};
pub use self::schedule::{CosineWarmup, EpochDecision, StageController, StagePolicy};
use super::checkpoint::DeadWeights;
use super::flow::kl_divergence;
use super::head::{BayesPflHead, Stage, StateKind};
use super::noise::{McNoise, SeededNoise};
use super::text::{ClassPrompt, encode_prompts};
use crate::DetectError;
use crate::postprocess::{AxisMap, apply_square};

/// Learning rates and optimiser settings (the official defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    /// 1-based backbone taps (6, 12, 18, 24).
    pub taps: Vec<usize>,
    /// Input side S (518).
    pub image_size: usize,
    /// Group 1: the prompt bank (`learning_rate_prompt`, 1e-3).
    pub lr_prompt: f64,
    /// Group 2: the two temperatures (1e-2).
    pub lr_temperature: f64,
    /// Group 3: flow parameters and states (`learning_rate_PFL`, 1e-3).
    pub lr_flow: f64,
    /// Group 4: encoders, RCA, mappings (`learning_rate_linear`, 1e-4).
    pub lr_linear: f64,
    /// Stage 2 (`learning_rate_linear`, 1e-4).
    pub lr_stage_two: f64,
    /// Adam β₁ (0.5).
    pub beta_1: f32,
    /// Adam β₂ (0.999).
    pub beta_2: f32,
    /// Adam ε (PyTorch's 1e-8).
    pub epsilon: f32,
    /// Stage-1 schedule.
    pub schedule: CosineWarmup,
}

impl TrainOptions {
    /// The official settings for a run of `iterations_per_epoch` × `epochs` iterations.
    pub fn official(iterations_per_epoch: usize, epochs: usize) -> Self {
        Self {
            taps: vec![6, 12, 18, 24],
            image_size: 518,
            lr_prompt: 1e-3,
            lr_temperature: 1e-2,
            lr_flow: 1e-3,
            lr_linear: 1e-4,
            lr_stage_two: 1e-4,
            beta_1: 0.5,
            beta_2: 0.999,
            epsilon: 1e-8,
            schedule: CosineWarmup::official(iterations_per_epoch, epochs),
        }
    }
}

/// One training batch (on the backbone's device, without autodiff).
pub struct TrainBatch {
    /// Preprocessed images `[N, 3, S, S]`.
    pub pixels: Tensor<4>,
    /// Ground-truth masks `[N, S, S]` with values 0 or 1.
    pub masks: Tensor<3>,
    /// Image labels (0 normal, 1 anomalous).
    pub labels: Vec<usize>,
    /// Dataset class names (prompts use their mapped words).
    pub classes: Vec<String>,
}

/// The losses of one step (host values).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LossReport {
    /// The optimised loss.
    pub total: f64,
    /// Cross-entropy of the selected pair.
    pub ce: f64,
    /// Focal loss per layer.
    pub focal: Vec<f64>,
    /// Dice loss per layer.
    pub dice: Vec<f64>,
    /// Σ focal + dice.
    pub seg: f64,
    /// 0.01·KL for the context, normal and abnormal distributions.
    pub kl: [f64; 3],
    /// Their sum (the distribution loss).
    pub dist: f64,
    /// Orthogonality loss.
    pub orth: f64,
}

/// What a step did.
pub struct StepOutput {
    /// Losses (in stage 2 the segmentation, KL and orthogonality terms are computed for the log
    /// only, as the official loop does).
    pub losses: LossReport,
    /// The stage the step trained.
    pub stage: Stage,
    /// The prompt index b*.
    pub prompt_index: usize,
    /// The schedule multiplier used (stage 1).
    pub lr_multiplier: f64,
    /// Gradients as a head whose parameters hold them (zeros where none), when asked for.
    pub gradients: Option<BayesPflHead>,
    /// Normalised text features `[N, 2B, E]` (host copy only when gradients are asked for).
    pub text: Option<Tensor<3>>,
    /// Image logits `[N, 2B]` (likewise).
    pub image_logits: Option<Tensor<2>>,
}

/// Replaces every parameter by its gradient (zeros where there is none).
struct GradientMapper<'a> {
    grads: &'a Gradients,
}

impl ModuleMapper for GradientMapper<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let value = param.val();
        let grad = value.grad(self.grads).unwrap_or_else(|| value.clone().inner().zeros_like());
        Param::from_tensor(grad)
    }
}

/// The training state: frozen backbone, trainable head, optimisers, schedule, noise.
pub struct Trainer {
    model: ClipModel,
    head: BayesPflHead,
    dead: DeadWeights,
    tokenizer: ClipTokenizer,
    options: TrainOptions,
    stage: Stage,
    stage_one: ModuleOptimizer,
    stage_two: ModuleOptimizer,
    iteration: usize,
    noise: Box<dyn McNoise>,
    pair_rng: SeededNoise,
    prompts: HashMap<String, ClassPrompt>,
    upsample: AxisMap,
}

fn adam(options: &TrainOptions) -> ModuleOptimizer {
    AdamConfig::new().with_beta_1(options.beta_1).with_beta_2(options.beta_2).with_epsilon(options.epsilon).init()
}

fn host_scalar(t: Tensor<1>) -> Result<f64, DetectError> {
    let v = t.inner().into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| DetectError::Invalid(format!("cannot read a loss back: {e:?}")))?;
    Ok(v[0] as f64)
}

impl Trainer {
    /// A trainer for `model` (its towers stay frozen and off autodiff) and `head` (moved onto
    /// autodiff). `noise` draws the flow samples; `seed` the prompt index of each batch.
    pub fn new(model: ClipModel, head: BayesPflHead, dead: DeadWeights, options: TrainOptions, noise: Box<dyn McNoise>, seed: u64) -> Result<Self, DetectError> {
        let c = &head.config;
        let v = &model.config.vision;
        if c.vision_width != v.width || c.width != model.config.text.width || c.width != model.config.embed_dim {
            return Err(DetectError::Invalid(format!(
                "the head (vision width {}, width {}) does not fit the backbone (vision {}, text {}, embedding {})",
                c.vision_width, c.width, v.width, model.config.text.width, model.config.embed_dim
            )));
        }
        if options.taps.len() != c.layers || options.taps.iter().any(|&t| t == 0 || t > v.layers) {
            return Err(DetectError::Invalid(format!("taps {:?} do not fit {} head layers and {} backbone blocks", options.taps, c.layers, v.layers)));
        }
        if options.image_size < v.patch_size {
            return Err(DetectError::Invalid(format!("image size {} is below the patch size {}", options.image_size, v.patch_size)));
        }
        let grid = options.image_size / v.patch_size;
        Ok(Self {
            model: model.valid(),
            head: head.train(),
            dead,
            tokenizer: ClipTokenizer::openai()?,
            stage: Stage::One,
            stage_one: adam(&options),
            stage_two: adam(&options),
            iteration: 0,
            noise,
            pair_rng: SeededNoise::new(seed),
            prompts: HashMap::new(),
            upsample: AxisMap::bilinear(grid, options.image_size, true),
            options,
        })
    }

    /// The stage being trained.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// Scheduler steps taken so far.
    pub fn iteration(&self) -> usize {
        self.iteration
    }

    /// The options.
    pub fn options(&self) -> &TrainOptions {
        &self.options
    }

    /// The dead tensors kept for the official checkpoint format.
    pub fn dead(&self) -> &DeadWeights {
        &self.dead
    }

    /// The backbone.
    pub fn model(&self) -> &ClipModel {
        &self.model
    }

    /// A copy of the head without autodiff (to validate, cache or save).
    pub fn head(&self) -> BayesPflHead {
        self.head.valid()
    }

    /// Replaces the head's weights (the official "load the cached best weights"); optimiser
    /// states are kept.
    pub fn restore(&mut self, head: BayesPflHead) {
        self.head = head.train();
    }

    /// Switches to stage 2 (its optimiser starts fresh, as the official one is unused until then).
    pub fn start_stage_two(&mut self) {
        self.stage = Stage::Two;
    }

    fn prompt(&mut self, class: &str) -> Result<ClassPrompt, DetectError> {
        if let Some(p) = self.prompts.get(class) {
            return Ok(p.clone());
        }
        let p = ClassPrompt::new(&self.tokenizer, class, self.head.config.prompt_len())?;
        self.prompts.insert(class.to_string(), p.clone());
        Ok(p)
    }

    fn noise(&mut self, values: Vec<f32>, shape: Vec<usize>, what: &str) -> Result<Tensor<3>, DetectError> {
        let n: usize = shape.iter().product();
        if values.len() != n {
            return Err(DetectError::Invalid(format!("the noise source gave {} values for the {what} sample, expected {n}", values.len())));
        }
        let shape3 = [shape[0], shape[1], shape[2]];
        Ok(Tensor::from_data(TensorData::new(values, shape3), &self.model.visual.proj.device()))
    }

    /// One iteration on `batch`. `prompt_index` fixes b* (drawn uniformly otherwise);
    /// `keep_gradients` returns the gradients (tests, inspection).
    pub fn step(&mut self, batch: &TrainBatch, prompt_index: Option<usize>, keep_gradients: bool) -> Result<StepOutput, DetectError> {
        let [n, c, h, w] = batch.pixels.dims();
        let s = self.options.image_size;
        if n == 0 || c != 3 || h != s || w != s {
            return Err(DetectError::Invalid(format!("training images must be [N ≥ 1, 3, {s}, {s}], got [{n}, {c}, {h}, {w}]")));
        }
        if batch.masks.dims() != [n, s, s] || batch.labels.len() != n || batch.classes.len() != n {
            return Err(DetectError::Invalid(format!(
                "a batch of {n} images needs masks [{n}, {s}, {s}] (got {:?}), {n} labels (got {}) and {n} class names (got {})",
                batch.masks.dims(),
                batch.labels.len(),
                batch.classes.len()
            )));
        }
        if let Some(&bad) = batch.labels.iter().find(|&&l| l > 1) {
            return Err(DetectError::Invalid(format!("image labels must be 0 or 1, got {bad}")));
        }
        let (b, e) = (self.head.config.prompt_num, self.head.config.width);
        let index = match prompt_index {
            Some(i) if i < b => i,
            Some(i) => return Err(DetectError::Invalid(format!("prompt index {i} is outside the bank of {b}"))),
            None => ((self.pair_rng.uniform() * b as f64) as usize).min(b - 1),
        };
        let prompts: Vec<ClassPrompt> = batch.classes.iter().map(|c| self.prompt(c)).collect::<Result<_, _>>()?;
        let prompts: Vec<&ClassPrompt> = prompts.iter().collect();

        // Frozen backbone (no autodiff).
        let out = self.model.visual.forward(batch.pixels.clone(), VisionForward { taps: &self.options.taps, ..Default::default() })?;
        let global = self.model.visual.pool(out.last);
        let patches: Vec<Tensor<3>> = out
            .taps
            .into_iter()
            .map(|t| {
                let [n, tokens, d] = t.dims();
                t.slice([0..n, 1..tokens, 0..d])
            })
            .collect();

        // One context sample per image, one state sample per batch.
        let eps_context = self.noise.context(1, n, e);
        let eps_normal = self.noise.state(StateKind::Normal, 1, e);
        let eps_abnormal = self.noise.state(StateKind::Abnormal, 1, e);
        let eps_context = self.noise(eps_context, vec![1, n, e], "context")?;
        let eps_normal = self.noise(eps_normal, vec![1, 1, e], "normal-state")?.reshape([1, e]);
        let eps_abnormal = self.noise(eps_abnormal, vec![1, 1, e], "abnormal-state")?.reshape([1, e]);

        let stage = self.stage;
        // Stage 2 optimises only the image head: everything else runs without autodiff.
        let frozen;
        let flows_head = match stage {
            Stage::One => &self.head,
            Stage::Two => {
                frozen = self.head.valid();
                &frozen
            }
        };
        let context = flows_head.context_samples(global.clone(), eps_context);
        let normal = flows_head.state_samples(StateKind::Normal, eps_normal);
        let abnormal = flows_head.state_samples(StateKind::Abnormal, eps_abnormal);
        let text = encode_prompts(&self.model.text, flows_head, &prompts, context.zk.clone(), normal.zk.clone(), abnormal.zk.clone())?;

        // Image score and CE on the selected pair.
        let image = self.head.image_embedding(global.clone(), &patches, stage);
        let logits = self.head.image_logits(text.clone(), image);
        let pair = Tensor::cat(vec![logits.clone().slice([0..n, index..index + 1]), logits.clone().slice([0..n, b + index..b + index + 1])], 1);
        let ce = cross_entropy(pair, &batch.labels);

        // Segmentation terms of the selected pair, per layer.
        let g = s / self.model.visual.patch_size;
        let masks = batch.masks.clone();
        let mut seg_terms = Vec::new();
        let (mut focal_values, mut dice_values) = (Vec::new(), Vec::new());
        for (layer, tokens) in patches.iter().enumerate() {
            let (pixel, _, _) = flows_head.pixel_logits(layer, text.clone(), tokens.clone());
            let t = g * g;
            let diff = pixel.clone().slice([0..n, 0..t, b + index..b + index + 1]) - pixel.slice([0..n, 0..t, index..index + 1]);
            let up = apply_square(diff.reshape([n, g, g]), &self.upsample);
            // softmax over the pair = σ of the difference (σ(−d) for the normal class, exactly).
            let (p_a, p_n) = (sigmoid(up.clone()), sigmoid(up.neg()));
            let focal = focal_loss(p_a.clone(), p_n, masks.clone());
            let dice = dice_loss(p_a, masks.clone());
            focal_values.push(host_scalar(focal.clone())?);
            dice_values.push(host_scalar(dice.clone())?);
            seg_terms.push(focal + dice);
        }
        let seg = seg_terms.into_iter().reduce(|a, b| a + b).expect("at least one layer");
        let [r, _, _] = context.z0.dims();
        debug_assert_eq!(r, 1);
        let kl_context = kl_divergence(context.mu.clone(), context.h.clone(), context.z0.clone().reshape([n, e]), context.zk.clone().reshape([n, e]), context.log_det.clone().reshape([n]), n)
            .mul_scalar(0.01);
        let kl_normal = kl_divergence(normal.mu.clone(), normal.h.clone(), normal.z0.clone(), normal.zk.clone(), normal.log_det.clone(), n).mul_scalar(0.01);
        let kl_abnormal = kl_divergence(abnormal.mu.clone(), abnormal.h.clone(), abnormal.z0.clone(), abnormal.zk.clone(), abnormal.log_det.clone(), n).mul_scalar(0.01);
        let dist = kl_context.clone() + kl_normal.clone() + kl_abnormal.clone();
        let orth = orthogonality(text.clone().slice([0..n, 0..b, 0..e])) + orthogonality(text.clone().slice([0..n, b..2 * b, 0..e]));

        let total = match stage {
            Stage::One => ce.clone() + seg.clone() + dist.clone() + orth.clone(),
            Stage::Two => ce.clone(),
        };
        let losses = LossReport {
            total: host_scalar(total.clone())?,
            ce: host_scalar(ce)?,
            focal: focal_values,
            dice: dice_values,
            seg: host_scalar(seg)?,
            kl: [host_scalar(kl_context)?, host_scalar(kl_normal)?, host_scalar(kl_abnormal)?],
            dist: host_scalar(dist)?,
            orth: host_scalar(orth)?,
        };
        if !losses.total.is_finite() {
            return Err(DetectError::Invalid(format!("the loss is not finite: {losses:?}")));
        }

        let mut grads = total.backward();
        let gradients = keep_gradients.then(|| self.head.clone().map(&mut GradientMapper { grads: &grads }).valid());
        let multiplier = self.options.schedule.multiplier(self.iteration);
        // Cloning a module shares its tensors; the optimiser returns updated copies per group.
        let BayesPflHead { prompts, temperatures, context_flow, normal_flow, abnormal_flow, context_encoder, state_encoder, rca, class_mapping, fuse, image_mapping, config } = self.head.clone();
        let o = &self.options;
        self.head = match stage {
            Stage::One => {
                let opt = &mut self.stage_one;
                let step = |lr: f64| lr * multiplier;
                let prompts_grads = GradientsParams::from_module(&mut grads, &prompts);
                let prompts = opt.step(step(o.lr_prompt), prompts, prompts_grads);
                let temp_grads = GradientsParams::from_module(&mut grads, &temperatures);
                let temperatures = opt.step(step(o.lr_temperature), temperatures, temp_grads);
                let gr = GradientsParams::from_module(&mut grads, &context_flow);
                let context_flow = opt.step(step(o.lr_flow), context_flow, gr);
                let gr = GradientsParams::from_module(&mut grads, &normal_flow);
                let normal_flow = opt.step(step(o.lr_flow), normal_flow, gr);
                let gr = GradientsParams::from_module(&mut grads, &abnormal_flow);
                let abnormal_flow = opt.step(step(o.lr_flow), abnormal_flow, gr);
                let gr = GradientsParams::from_module(&mut grads, &context_encoder);
                let context_encoder = opt.step(step(o.lr_linear), context_encoder, gr);
                let gr = GradientsParams::from_module(&mut grads, &state_encoder);
                let state_encoder = opt.step(step(o.lr_linear), state_encoder, gr);
                let gr = GradientsParams::from_module(&mut grads, &rca);
                let rca = opt.step(step(o.lr_linear), rca, gr);
                let gr = GradientsParams::from_module(&mut grads, &class_mapping);
                let class_mapping = opt.step(step(o.lr_linear), class_mapping, gr);
                // fuse and image_mapping get no gradient in stage 1.
                BayesPflHead { prompts, temperatures, context_flow, normal_flow, abnormal_flow, context_encoder, state_encoder, rca, class_mapping, fuse, image_mapping, config }
            }
            Stage::Two => {
                let opt = &mut self.stage_two;
                let lr = o.lr_stage_two;
                let gr = GradientsParams::from_module(&mut grads, &fuse);
                let fuse = opt.step(lr, fuse, gr);
                let gr = GradientsParams::from_module(&mut grads, &class_mapping);
                let class_mapping = opt.step(lr, class_mapping, gr);
                let gr = GradientsParams::from_module(&mut grads, &image_mapping);
                let image_mapping = opt.step(lr, image_mapping, gr);
                BayesPflHead { prompts, temperatures, context_flow, normal_flow, abnormal_flow, context_encoder, state_encoder, rca, class_mapping, fuse, image_mapping, config }
            }
        };
        self.iteration += 1;
        Ok(StepOutput {
            losses,
            stage,
            prompt_index: index,
            lr_multiplier: multiplier,
            text: keep_gradients.then(|| text.inner()),
            image_logits: keep_gradients.then(|| logits.inner()),
            gradients,
        })
    }
}
