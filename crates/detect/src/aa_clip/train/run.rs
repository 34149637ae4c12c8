//! The two-stage training loop of `train.py`: epochs, batches, optimisers, per-epoch
//! checkpoints, resume, calibration and validation, and a log.
//!
//! Output directory (`--out`):
//! * `text_adapter.safetensors` (after every stage-1 epoch), `image_adapter_N.safetensors` (after
//!   stage-2 epoch N) and `image_adapter.safetensors` (the latest), in the format of
//!   [`super::super::checkpoint`]; every image file carries the calibration measured after its
//!   epoch;
//! * `text_optimizer.bpk`, `image_optimizer.bpk`: Adam state (burnpack) for `--resume`;
//! * `train_state.json`: what is done (epochs per stage, stage-2 iteration) and the options;
//! * `train.log` (text) and `metrics.jsonl` (one JSON record per epoch).
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::module::Module;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};
use vlad_clip::{ClipModel, ClipTokenizer};
use vlad_data::Sample;
use vlad_data::augment::AaClipAugment;
use vlad_metrics::{MapShape, binary_metrics, pixel_metrics};

use super::data::{Augmentation, HostBatch, epoch_batches, load_batch};
use super::{init_image_adapter, init_text_adapter, multistep_lr, stage1_loss, stage2_loss, surgery_features, trainable_image, trainable_text};
use crate::DetectError;
use crate::aa_clip::adapters::{ClassTokens, ImageAdapter, TextAdapter, anchors, vision_features};
use crate::aa_clip::checkpoint::{self, SaveInfo};
use crate::aa_clip::scoring::{AaClipCalibration, ScoreRange, image_raw};
use crate::aa_clip::{AaClipConfig, Domain, class_tokens, prompts, test_maps};

/// Which stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Stage 1: text adapters.
    Text,
    /// Stage 2: image adapters.
    Image,
}

impl Stage {
    /// `stage 1` / `stage 2`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Text => "stage 1 (text adapters)",
            Self::Image => "stage 2 (image adapters)",
        }
    }
}

/// Training options; [`TrainOptions::official`] holds `train.py`'s defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    /// The model.
    pub config: AaClipConfig,
    /// Stage-1 epochs (5; 0 skips the text adapters and uses CLIP's own text encoder, as
    /// `--text_epoch 0`).
    pub text_epochs: usize,
    /// Stage-2 epochs (20).
    pub image_epochs: usize,
    /// Stage-1 batch size (16).
    pub text_batch_size: usize,
    /// Stage-2 batch size (2).
    pub image_batch_size: usize,
    /// Stage-1 learning rate (1e-5).
    pub text_lr: f64,
    /// Stage-2 learning rate (5e-4).
    pub image_lr: f64,
    /// Adam β₁, β₂ ((0.5, 0.999)); ε is PyTorch's 1e-8.
    pub betas: (f32, f32),
    /// Stage-2 `MultiStepLR` milestones in iterations ([16000, 32000]).
    pub milestones: Vec<usize>,
    /// Stage-2 `MultiStepLR` factor (0.5).
    pub gamma: f64,
    /// Weight of the disentangle (orthogonality) loss (0.1).
    pub text_norm_weight: f64,
    /// Fix the two official quirks (module documentation); off to reproduce the official run.
    pub fix_official_quirks: bool,
    /// Seed of initialisation, shuffling and augmentation (111).
    pub seed: u64,
    /// Apply the official augmentations.
    pub augment: bool,
    /// Training images (unaugmented) used to measure the single-image calibration after each
    /// stage-2 epoch (64; 0 disables it).
    pub calibration_images: usize,
    /// Batch size of calibration and validation passes.
    pub eval_batch_size: usize,
    /// Stop each epoch after this many steps (quick experiments; `None`: the whole epoch).
    pub max_steps_per_epoch: Option<usize>,
}

impl TrainOptions {
    /// `train.py`'s defaults around `config`.
    pub fn official(config: AaClipConfig) -> Self {
        Self {
            config,
            text_epochs: 5,
            image_epochs: 20,
            text_batch_size: 16,
            image_batch_size: 2,
            text_lr: 1e-5,
            image_lr: 5e-4,
            betas: (0.5, 0.999),
            milestones: vec![16000, 32000],
            gamma: 0.5,
            text_norm_weight: 0.1,
            fix_official_quirks: false,
            seed: 111,
            augment: true,
            calibration_images: 64,
            eval_batch_size: 8,
            max_steps_per_epoch: None,
        }
    }

    fn adam(&self) -> ModuleOptimizer {
        AdamConfig::new().with_beta_1(self.betas.0).with_beta_2(self.betas.1).with_epsilon(1e-8).init()
    }

    fn check(&self) -> Result<(), DetectError> {
        let mut problems = Vec::new();
        if self.text_batch_size == 0 || self.image_batch_size == 0 || self.eval_batch_size == 0 {
            problems.push("batch sizes must be at least 1".to_string());
        }
        for (what, lr) in [("text", self.text_lr), ("image", self.image_lr)] {
            if !(lr.is_finite() && lr > 0.0) {
                problems.push(format!("{what} learning rate must be positive, got {lr}"));
            }
        }
        if !(0.0..1.0).contains(&self.betas.0) || !(0.0..1.0).contains(&self.betas.1) {
            problems.push(format!("Adam betas must be in [0, 1), got {:?}", self.betas));
        }
        if self.image_epochs == 0 {
            problems.push("stage 2 needs at least one epoch".into());
        }
        if problems.is_empty() { Ok(()) } else { Err(DetectError::Invalid(format!("training options: {}", problems.join("; ")))) }
    }
}

/// Validation metrics of one pass (per class pooled over its images, then the plain mean over
/// classes, as `metrics_eval`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    /// What was evaluated.
    pub source: String,
    /// Images evaluated.
    pub images: usize,
    /// Mean pixel AUROC over the classes where it is defined.
    pub pixel_auroc: Option<f64>,
    /// Mean image AUROC with the official transductive fusion (per-class min–max).
    pub image_auroc_official: Option<f64>,
    /// Mean image AUROC of the single-image calibrated score.
    pub image_auroc_calibrated: Option<f64>,
    /// `(class, pixel AUROC, official image AUROC)`.
    pub per_class: Vec<(String, Option<f64>, Option<f64>)>,
}

/// What an epoch did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Stage.
    pub stage: Stage,
    /// Epoch number, 1-based.
    pub epoch: usize,
    /// Steps taken.
    pub steps: usize,
    /// Mean of the optimised loss.
    pub loss: f64,
    /// Means of the loss parts (`ce`, `seg_L`, `orthogonal`).
    pub parts: BTreeMap<String, f64>,
    /// Learning rate of the last step.
    pub lr: f64,
    /// Wall time of the epoch in seconds.
    pub seconds: f64,
    /// Calibration measured after the epoch (stage 2).
    pub calibration: Option<AaClipCalibration>,
    /// Validation after the epoch (stage 2, with validation data).
    pub validation: Option<Validation>,
    /// Checkpoint written.
    pub checkpoint: PathBuf,
}

/// Progress callbacks (the CLI draws progress bars with them).
pub trait TrainObserver {
    /// A stage starts (or resumes) at `first_epoch` (0-based) of `epochs`.
    fn on_stage(&mut self, _stage: Stage, _first_epoch: usize, _epochs: usize, _steps_per_epoch: usize) {}
    /// A step finished.
    fn on_step(&mut self, _stage: Stage, _epoch: usize, _step: usize, _loss: f64) {}
    /// An epoch finished.
    fn on_epoch(&mut self, _record: &EpochRecord) {}
    /// A message for the user.
    fn on_message(&mut self, _message: &str) {}
}

/// An observer that ignores everything.
pub struct Quiet;
impl TrainObserver for Quiet {}

/// Result of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainSummary {
    /// Every epoch of this invocation.
    pub epochs: Vec<EpochRecord>,
    /// The latest image checkpoint.
    pub checkpoint: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct State {
    version: u32,
    options: TrainOptions,
    text_epochs_done: usize,
    image_epochs_done: usize,
    iteration: usize,
    train_images: usize,
}

const STATE: &str = "train_state.json";

fn io_error(what: &str, path: &Path, e: impl std::fmt::Display) -> DetectError {
    DetectError::Invalid(format!("cannot {what} {}: {e}", path.display()))
}

struct Log {
    text: std::fs::File,
    json: std::fs::File,
}

impl Log {
    fn open(out: &Path) -> Result<Self, DetectError> {
        let open = |name: &str| {
            let path = out.join(name);
            std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| io_error("open", &path, e))
        };
        Ok(Self { text: open("train.log")?, json: open("metrics.jsonl")? })
    }

    fn line(&mut self, observer: &mut dyn TrainObserver, message: &str) {
        observer.on_message(message);
        let _ = writeln!(self.text, "{message}");
    }

    fn record(&mut self, record: &EpochRecord) {
        let _ = writeln!(self.json, "{}", serde_json::to_string(record).expect("records serialise"));
    }
}

fn scalar(t: &Tensor<1>) -> f64 {
    t.clone().into_data().convert::<f64>().try_into_vec::<f64>().ok().and_then(|v| v.first().copied()).unwrap_or(f64::NAN)
}

fn host<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, DetectError> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| DetectError::Invalid(format!("cannot read a tensor back: {e:?}")))
}

/// Prompt tokens of every class name, with the phrase each uses.
fn class_prompts(tokenizer: &ClipTokenizer, classes: &[String]) -> Result<BTreeMap<String, ClassTokens>, DetectError> {
    classes.iter().map(|c| Ok((c.clone(), class_tokens(tokenizer, &prompts::real_name(c).0)?))).collect()
}

fn distinct_classes<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in samples {
        if !out.contains(&s.class_name) {
            out.push(s.class_name.clone());
        }
    }
    out
}

/// Trains AA-CLIP on `train` (the auxiliary dataset's images; the official code uses a test split)
/// with the backbone `clip` (kept frozen on its own device; the adapters train on its autodiff
/// twin). `validation`, when given, is evaluated after every stage-2 epoch. Writes into `out`;
/// with `resume`, continues the run recorded there.
pub fn train(
    clip: &ClipModel,
    train: &[Sample],
    validation: Option<&[Sample]>,
    options: &TrainOptions,
    out: &Path,
    resume: bool,
    observer: &mut dyn TrainObserver,
) -> Result<TrainSummary, DetectError> {
    options.check()?;
    options.config.validate(&clip.config)?;
    if train.is_empty() {
        return Err(DetectError::Invalid("no training images".into()));
    }
    std::fs::create_dir_all(out).map_err(|e| io_error("create", out, e))?;
    let state_path = out.join(STATE);
    let mut state = if resume {
        let text = std::fs::read_to_string(&state_path).map_err(|e| io_error("read", &state_path, e))?;
        let state: State = serde_json::from_str(&text).map_err(|e| io_error("parse", &state_path, e))?;
        let mut comparable = state.options.clone();
        comparable.text_epochs = options.text_epochs;
        comparable.image_epochs = options.image_epochs;
        if comparable != *options {
            return Err(DetectError::Invalid(format!("{}: the run was started with other options; resume with the same ones (only the epoch counts may change)", state_path.display())));
        }
        if state.train_images != train.len() {
            return Err(DetectError::Invalid(format!("{}: the run was started with {} training images, now {}", state_path.display(), state.train_images, train.len())));
        }
        State { options: options.clone(), ..state }
    } else {
        if state_path.exists() {
            return Err(DetectError::Invalid(format!("{} already holds a training run; pass --resume to continue it or choose another --out", out.display())));
        }
        State { version: 1, options: options.clone(), text_epochs_done: 0, image_epochs_done: 0, iteration: 0, train_images: train.len() }
    };
    let save_state = |state: &State| -> Result<(), DetectError> {
        let tmp = out.join(format!("{STATE}.partial"));
        std::fs::write(&tmp, serde_json::to_string_pretty(state).expect("state serialises")).map_err(|e| io_error("write", &tmp, e))?;
        std::fs::rename(&tmp, &state_path).map_err(|e| io_error("write", &state_path, e))
    };
    let mut log = Log::open(out)?;
    let config = &options.config;
    let plain = clip.visual.proj.device();
    let device = plain.clone().autodiff();
    let tokenizer = ClipTokenizer::openai()?;
    let train_classes = distinct_classes(train);
    let prompts_of = class_prompts(&tokenizer, &train_classes)?;
    for class in &train_classes {
        let (name, source) = prompts::real_name(class);
        log.line(observer, &format!("class `{class}`: prompts use \"{name}\" ({source:?})"));
    }
    let mut summary = TrainSummary { epochs: Vec::new(), checkpoint: out.join("image_adapter.safetensors") };

    // ---- stage 1 ------------------------------------------------------------------------------
    let text_path = out.join("text_adapter.safetensors");
    let text_optim_path = out.join("text_optimizer.bpk");
    let mut text: Option<TextAdapter> = None;
    if options.text_epochs > 0 {
        let initial = if state.text_epochs_done > 0 {
            checkpoint::load_files(std::slice::from_ref(&text_path), &clip.config, &plain)?.text.ok_or_else(|| DetectError::Invalid(format!("{}: no text adapter", text_path.display())))?
        } else {
            init_text_adapter(config, options.seed, &plain)
        };
        let mut module = trainable_text(initial, &device);
        let mut optim = options.adam();
        if state.text_epochs_done > 0 && text_optim_path.exists() {
            optim = optim.load(&text_optim_path).map_err(|e| io_error("load", &text_optim_path, format!("{e:?}")))?;
        }
        let steps = steps_per_epoch(train.len(), options.text_batch_size, options.max_steps_per_epoch);
        observer.on_stage(Stage::Text, state.text_epochs_done, options.text_epochs, steps);
        for epoch in state.text_epochs_done..options.text_epochs {
            let started = Instant::now();
            let mut sums: BTreeMap<String, f64> = BTreeMap::new();
            let mut total = 0.0;
            let mut done = 0;
            let batches = epoch_batches(train.len(), options.text_batch_size, options.seed, &format!("aa-clip/stage1/epoch{epoch}/order"));
            let augment = AaClipAugment::stage1();
            prefetch(
                batches.into_iter().take(steps).collect(),
                |indices: Vec<usize>| {
                    let samples: Vec<&Sample> = indices.iter().map(|&i| &train[i]).collect();
                    load_batch(&samples, config.image_size, |k| augmentation(options, &augment, 1, epoch, indices[k]))
                },
                |batch: HostBatch| {
                    let (pixels, masks) = batch.tensors(&plain);
                    let features = surgery_features(clip, config, pixels, !options.fix_official_quirks)?;
                    let classes = distinct_classes_of(&batch.classes);
                    let tokens: Vec<ClassTokens> = classes.iter().map(|c| prompts_of[c].clone()).collect();
                    let sample_class: Vec<usize> = batch.classes.iter().map(|c| classes.iter().position(|x| x == c).expect("listed")).collect();
                    let loss = stage1_loss(clip, &module, config, &features, masks, &tokens, &sample_class, options.text_norm_weight, options.fix_official_quirks)?;
                    let value = scalar(&loss.total);
                    for (k, seg) in loss.seg.iter().enumerate() {
                        *sums.entry(format!("seg_{}", config.levels[k])).or_default() += scalar(seg);
                    }
                    *sums.entry("orthogonal".into()).or_default() += scalar(&loss.orthogonal);
                    let grads = GradientsParams::from_grads(loss.total.backward(), &module);
                    module = optim.step(options.text_lr, module.clone(), grads);
                    total += value;
                    done += 1;
                    observer.on_step(Stage::Text, epoch, done, value);
                    Ok(())
                },
            )?;
            let text_valid = module.valid();
            checkpoint::save(&text_path, Some(&text_valid), None, &SaveInfo { config, epoch: Some(epoch + 1), calibration: None })?;
            optim.save(&text_optim_path).map_err(|e| io_error("write", &text_optim_path, format!("{e:?}")))?;
            state.text_epochs_done = epoch + 1;
            save_state(&state)?;
            let record = EpochRecord {
                stage: Stage::Text,
                epoch: epoch + 1,
                steps: done,
                loss: total / done.max(1) as f64,
                parts: sums.into_iter().map(|(k, v)| (k, v / done.max(1) as f64)).collect(),
                lr: options.text_lr,
                seconds: started.elapsed().as_secs_f64(),
                calibration: None,
                validation: None,
                checkpoint: text_path.clone(),
            };
            log.line(observer, &format!("{} epoch {}: loss {:.5} {:?} ({:.1} s)", Stage::Text.label(), record.epoch, record.loss, record.parts, record.seconds));
            log.record(&record);
            observer.on_epoch(&record);
            summary.epochs.push(record);
        }
        text = Some(module.valid());
    } else {
        log.line(observer, "no stage 1 (text epochs 0): anchors come from CLIP's own text encoder");
    }

    // ---- stage 2 ------------------------------------------------------------------------------
    let eval_classes: Vec<String> = {
        let mut c = train_classes.clone();
        for v in distinct_classes(validation.unwrap_or(&[])) {
            if !c.contains(&v) {
                c.push(v);
            }
        }
        c
    };
    let eval_prompts = class_prompts(&tokenizer, &eval_classes)?;
    let class_anchor: BTreeMap<String, Tensor<2>> = {
        let tokens: Vec<ClassTokens> = eval_classes.iter().map(|c| eval_prompts[c].clone()).collect();
        let list = anchors(clip, text.as_ref(), config, &tokens)?;
        eval_classes.iter().cloned().zip(list).collect()
    };
    let image_path = out.join("image_adapter.safetensors");
    let image_optim_path = out.join("image_optimizer.bpk");
    let initial = if state.image_epochs_done > 0 {
        checkpoint::load_files(std::slice::from_ref(&image_path), &clip.config, &plain)?.image
    } else {
        init_image_adapter(config, options.seed, &plain)
    };
    let mut module = trainable_image(initial, &device);
    let mut optim = options.adam();
    if state.image_epochs_done > 0 && image_optim_path.exists() {
        optim = optim.load(&image_optim_path).map_err(|e| io_error("load", &image_optim_path, format!("{e:?}")))?;
    }
    let steps = steps_per_epoch(train.len(), options.image_batch_size, options.max_steps_per_epoch);
    observer.on_stage(Stage::Image, state.image_epochs_done, options.image_epochs, steps);
    let calibration_set: Vec<Sample> = {
        let picks = epoch_batches(train.len(), 1, options.seed, "aa-clip/calibration");
        picks.into_iter().take(options.calibration_images).map(|i| train[i[0]].clone()).collect()
    };
    for epoch in state.image_epochs_done..options.image_epochs {
        let started = Instant::now();
        let mut sums: BTreeMap<String, f64> = BTreeMap::new();
        let mut total = 0.0;
        let mut done = 0;
        let mut lr = options.image_lr;
        let batches = epoch_batches(train.len(), options.image_batch_size, options.seed, &format!("aa-clip/stage2/epoch{epoch}/order"));
        let augment = AaClipAugment::stage2();
        prefetch(
            batches.into_iter().take(steps).collect(),
            |indices: Vec<usize>| {
                let samples: Vec<&Sample> = indices.iter().map(|&i| &train[i]).collect();
                load_batch(&samples, config.image_size, |k| augmentation(options, &augment, 2, epoch, indices[k]))
            },
            |batch: HostBatch| {
                let (pixels, masks) = batch.tensors(&plain);
                let anchors = Tensor::stack(batch.classes.iter().map(|c| class_anchor[c].clone()).collect(), 0);
                let loss = stage2_loss(clip, &module, config, pixels, masks, &batch.labels, anchors)?;
                let value = scalar(&loss.total);
                *sums.entry("ce".into()).or_default() += scalar(&loss.ce);
                for (k, seg) in loss.seg.iter().enumerate() {
                    *sums.entry(format!("seg_{}", config.levels[k])).or_default() += scalar(seg);
                }
                lr = multistep_lr(options.image_lr, &options.milestones, options.gamma, state.iteration);
                let grads = GradientsParams::from_grads(loss.total.backward(), &module);
                module = optim.step(lr, module.clone(), grads);
                state.iteration += 1;
                total += value;
                done += 1;
                observer.on_step(Stage::Image, epoch, done, value);
                Ok(())
            },
        )?;
        let image_valid = module.valid();
        let calibration = if calibration_set.is_empty() {
            None
        } else {
            let pass = evaluate(clip, &image_valid, config, &class_anchor, &calibration_set, options.eval_batch_size)?;
            Some(pass.calibration(format!("{} training images (auxiliary data, unaugmented) after stage-2 epoch {}", calibration_set.len(), epoch + 1)))
        };
        let validation = match validation {
            Some(v) if !v.is_empty() => Some(evaluate(clip, &image_valid, config, &class_anchor, v, options.eval_batch_size)?.metrics(format!("validation set ({} images)", v.len()), calibration.as_ref())?),
            _ => None,
        };
        let info = SaveInfo { config, epoch: Some(epoch + 1), calibration: calibration.as_ref() };
        let epoch_path = out.join(format!("image_adapter_{}.safetensors", epoch + 1));
        checkpoint::save(&epoch_path, None, Some(&image_valid), &info)?;
        checkpoint::save(&image_path, None, Some(&image_valid), &info)?;
        optim.save(&image_optim_path).map_err(|e| io_error("write", &image_optim_path, format!("{e:?}")))?;
        state.image_epochs_done = epoch + 1;
        save_state(&state)?;
        let record = EpochRecord {
            stage: Stage::Image,
            epoch: epoch + 1,
            steps: done,
            loss: total / done.max(1) as f64,
            parts: sums.into_iter().map(|(k, v)| (k, v / done.max(1) as f64)).collect(),
            lr,
            seconds: started.elapsed().as_secs_f64(),
            calibration,
            validation,
            checkpoint: epoch_path,
        };
        let val = record.validation.as_ref().map_or(String::new(), |v| {
            format!(
                "; validation pixel AUROC {} image AUROC (official fusion) {} (calibrated) {}",
                fmt_metric(v.pixel_auroc),
                fmt_metric(v.image_auroc_official),
                fmt_metric(v.image_auroc_calibrated)
            )
        });
        log.line(observer, &format!("{} epoch {}: loss {:.5} {:?} lr {:e} ({:.1} s){val}", Stage::Image.label(), record.epoch, record.loss, record.parts, record.lr, record.seconds));
        log.record(&record);
        observer.on_epoch(&record);
        summary.epochs.push(record);
    }
    Ok(summary)
}

fn fmt_metric(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{:.2}", 100.0 * v))
}

fn steps_per_epoch(n: usize, batch: usize, cap: Option<usize>) -> usize {
    let steps = n.div_ceil(batch.max(1));
    cap.map_or(steps, |c| c.min(steps))
}

fn augmentation(options: &TrainOptions, augment: &AaClipAugment, stage: u8, epoch: usize, sample: usize) -> Augmentation {
    if options.augment {
        Augmentation::On { augment: augment.clone(), seed: options.seed, label: format!("aa-clip/stage{stage}/epoch{epoch}/sample{sample}") }
    } else {
        Augmentation::Off
    }
}

fn distinct_classes_of(classes: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in classes {
        if !out.contains(c) {
            out.push(c.clone());
        }
    }
    out
}

/// Loads jobs on a helper thread (one batch ahead) while `consume` runs on this one.
fn prefetch<J: Send, T: Send>(jobs: Vec<J>, load: impl Fn(J) -> Result<T, DetectError> + Sync, mut consume: impl FnMut(T) -> Result<(), DetectError>) -> Result<(), DetectError> {
    std::thread::scope(|scope| {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Result<T, DetectError>>(1);
        let load = &load;
        scope.spawn(move || {
            for job in jobs {
                let item = load(job);
                let failed = item.is_err();
                if sender.send(item).is_err() || failed {
                    break;
                }
            }
        });
        for item in receiver {
            consume(item?)?;
        }
        Ok(())
    })
}

/// Maps and raw scores of an evaluation pass, per class.
struct Pass {
    classes: Vec<ClassPass>,
}

struct ClassPass {
    name: String,
    domain: Domain,
    size: usize,
    maps: Vec<f32>,
    masks: Vec<u8>,
    det: Vec<f32>,
    labels: Vec<bool>,
}

impl ClassPass {
    fn map_max(&self) -> Vec<f32> {
        self.maps.chunks(self.size * self.size).map(|m| m.iter().copied().fold(f32::NEG_INFINITY, f32::max)).collect()
    }
}

fn evaluate(
    clip: &ClipModel,
    image: &ImageAdapter,
    config: &AaClipConfig,
    class_anchor: &BTreeMap<String, Tensor<2>>,
    samples: &[Sample],
    batch_size: usize,
) -> Result<Pass, DetectError> {
    let device = clip.visual.proj.device();
    let mut classes: Vec<ClassPass> = Vec::new();
    for name in distinct_classes(samples) {
        let members: Vec<&Sample> = samples.iter().filter(|s| s.class_name == name).collect();
        let anchors = class_anchor.get(&name).ok_or_else(|| DetectError::Invalid(format!("no anchors for class `{name}`")))?.clone();
        let domain = prompts::class_domain(&name).unwrap_or(Domain::Industrial);
        let mut pass = ClassPass { name: name.clone(), domain, size: config.image_size, maps: Vec::new(), masks: Vec::new(), det: Vec::new(), labels: Vec::new() };
        for chunk in members.chunks(batch_size) {
            let batch = load_batch(chunk, config.image_size, |_| Augmentation::Off)?;
            let (pixels, _) = batch.tensors(&device);
            let features = vision_features(clip, image, config, pixels)?;
            let (_, map) = test_maps(&features.seg, anchors.clone(), config.image_size, domain);
            pass.maps.extend(host(map)?);
            pass.det.extend(host(image_raw(features.det, anchors.clone()))?);
            pass.masks.extend(batch.masks.iter().map(|&m| u8::from(m != 0.0)));
            pass.labels.extend(batch.labels.iter().map(|&l| l == 1));
        }
        classes.push(pass);
    }
    Ok(Pass { classes })
}

fn min_max(values: &[f32]) -> Vec<f32> {
    let (lo, hi) = values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    values.iter().map(|v| (v - lo) / (hi - lo)).collect()
}

fn mean(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let defined: Vec<f64> = values.flatten().collect();
    (!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64)
}

impl Pass {
    fn calibration(&self, source: String) -> AaClipCalibration {
        let map_max: Vec<f32> = self.classes.iter().flat_map(ClassPass::map_max).collect();
        let det: Vec<f32> = self.classes.iter().flat_map(|c| c.det.iter().copied()).collect();
        AaClipCalibration {
            map_max: ScoreRange::of(&map_max).unwrap_or(ScoreRange { low: 0.0, high: 1.0 }),
            det: ScoreRange::of(&det).unwrap_or(ScoreRange { low: 0.0, high: 1.0 }),
            source,
        }
    }

    fn metrics(&self, source: String, calibration: Option<&AaClipCalibration>) -> Result<Validation, DetectError> {
        let metrics_error = |e: vlad_metrics::MetricsError| DetectError::Invalid(format!("validation metrics: {e}"));
        let mut per_class = Vec::new();
        let mut calibrated = Vec::new();
        let mut images = 0;
        for c in &self.classes {
            let n = c.labels.len();
            images += n;
            let pixel = pixel_metrics(&c.maps, &c.masks, MapShape::new(n, c.size, c.size), None).map_err(metrics_error)?.binary.auroc;
            // metrics_eval: one min–max over all maps of the class, one over its det scores.
            let (lo, hi) = c.maps.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            let map_max = c.map_max();
            let pmax: Vec<f32> = map_max.iter().map(|m| (m - lo) / (hi - lo)).collect();
            let fused: Vec<f32> = match c.domain {
                Domain::Industrial => pmax.iter().zip(min_max(&c.det)).map(|(m, d)| 0.5 * m + 0.5 * d).collect(),
                Domain::Medical => pmax,
            };
            let image = binary_metrics(&fused, &c.labels).map_err(metrics_error)?.auroc;
            if let Some(cal) = calibration {
                let single: Vec<f32> = map_max.iter().zip(&c.det).map(|(&m, &d)| cal.fuse_host(m, d, c.domain)).collect();
                calibrated.push(binary_metrics(&single, &c.labels).map_err(metrics_error)?.auroc);
            }
            per_class.push((c.name.clone(), pixel, image));
        }
        Ok(Validation {
            source,
            images,
            pixel_auroc: mean(per_class.iter().map(|p| p.1)),
            image_auroc_official: mean(per_class.iter().map(|p| p.2)),
            image_auroc_calibrated: mean(calibrated.into_iter()),
            per_class,
        })
    }
}

/// Evaluates adapters on `samples` (unaugmented; anchors from `text`, or CLIP's own text encoder
/// without it): the metrics logged after every stage-2 epoch.
pub fn validate(
    clip: &ClipModel,
    text: Option<&TextAdapter>,
    image: &ImageAdapter,
    config: &AaClipConfig,
    samples: &[Sample],
    batch_size: usize,
    calibration: Option<&AaClipCalibration>,
) -> Result<Validation, DetectError> {
    let tokenizer = ClipTokenizer::openai()?;
    let classes = distinct_classes(samples);
    let prompts_of = class_prompts(&tokenizer, &classes)?;
    let tokens: Vec<ClassTokens> = classes.iter().map(|c| prompts_of[c].clone()).collect();
    let class_anchor: BTreeMap<String, Tensor<2>> = classes.iter().cloned().zip(anchors(clip, text, config, &tokens)?).collect();
    evaluate(clip, image, config, &class_anchor, samples, batch_size.max(1))?.metrics(format!("{} images", samples.len()), calibration)
}

/// The calibration ranges measured on `samples` (see [`AaClipCalibration`]).
pub fn measure_calibration(
    clip: &ClipModel,
    text: Option<&TextAdapter>,
    image: &ImageAdapter,
    config: &AaClipConfig,
    samples: &[Sample],
    batch_size: usize,
    source: String,
) -> Result<AaClipCalibration, DetectError> {
    let tokenizer = ClipTokenizer::openai()?;
    let classes = distinct_classes(samples);
    let prompts_of = class_prompts(&tokenizer, &classes)?;
    let tokens: Vec<ClassTokens> = classes.iter().map(|c| prompts_of[c].clone()).collect();
    let class_anchor: BTreeMap<String, Tensor<2>> = classes.iter().cloned().zip(anchors(clip, text, config, &tokens)?).collect();
    Ok(evaluate(clip, image, config, &class_anchor, samples, batch_size.max(1))?.calibration(source))
}
