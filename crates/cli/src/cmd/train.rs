//! `vlad train aa-clip`, `vlad train bayes-pfl` and `vlad train vand`: the trainable detectors'
//! official training protocols (`spec/aa-clip.md` §8, `spec/bayes-pfl.md` §8–§9,
//! `spec/baselines.md` §4.6) on any dataset layout vlad reads.
//!
//! Both train on an *auxiliary* dataset (the papers: VisA's test split) and are then evaluated
//! zero-shot on other datasets with `vlad eval --detector aa-clip|bayes-pfl --checkpoint …`.
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use vlad_clip::{Activation, ClipModel, PosEmbedResize};
use vlad_data::augment::{BayesPflAugment, Planar};
use vlad_data::load::{MaskRule, open_image, open_mask, resize_binary_mask};
use vlad_data::{DatasetIndex, FormatChoice, Label, OpenOptions, Sample, SeededRng, Split};
use vlad_detect::Detector;
use vlad_detect::aa_clip::AaClipConfig;
use vlad_detect::aa_clip::train::{init_image_adapter, init_text_adapter};
use vlad_detect::aa_clip::train::run::{self as aa_run, EpochRecord, Stage as AaStage, TrainObserver, TrainOptions as AaTrainOptions};
use vlad_detect::bayes_pfl::checkpoint::{as_weight_file, save_official, save_vlad};
use vlad_detect::bayes_pfl::train::init::official_head;
use vlad_detect::bayes_pfl::train::{EpochDecision, StageController, StagePolicy, TrainBatch, TrainOptions as PflTrainOptions, Trainer};
use vlad_detect::bayes_pfl::{BayesPfl, BayesPflOptions, HeadConfig, NoiseMode, Stage as PflStage, StageChoice, load_checkpoint};
use vlad_imaging::{CLIP_MEAN, CLIP_STD, Filter};
use vlad_metrics::{MapShape, binary_metrics, pixel_metrics};

use super::common::{DatasetArgs, ModelArgs, host_values, parse_list};

/// `vlad train …`.
#[derive(clap::Subcommand, Debug)]
pub enum TrainCommand {
    /// AA-CLIP: stage 1 (text adapters, disentangle loss) then stage 2 (image adapters).
    #[command(name = "aa-clip")]
    AaClip(TrainAaClipArgs),
    /// Bayes-PFL: stage 1 (prompt flows, RCA, all losses) then stage 2 (image head, CE).
    #[command(name = "bayes-pfl")]
    BayesPfl(TrainBayesPflArgs),
    /// VAND / APRIL-GAN: the four linear layers (focal + dice per tap).
    #[command(name = "vand", alias = "april-gan")]
    Vand(TrainVandArgs),
    /// CLIP-AD SDP+: the linear layers on the dual path's original-path taps.
    #[command(name = "clip-ad", alias = "sdp-plus")]
    ClipAd(TrainClipAdArgs),
    /// AnomalyCLIP: the object-agnostic prompt learner (CE + 4 × local loss).
    #[command(name = "anomaly-clip", alias = "anomalyclip")]
    AnomalyClip(TrainAnomalyClipArgs),
    /// AdaCLIP: static and dynamic prompts, projections (batch 1, AdamW lr 0.01, 5 epochs).
    #[command(name = "ada-clip", alias = "adaclip")]
    AdaClip(TrainAdaClipArgs),
    /// MVFA-AD: the seg and det adapters (few-shot on a class's K shots, or zero-shot on other data).
    #[command(name = "mvfa", alias = "mvfa-ad")]
    Mvfa(TrainMvfaArgs),
}

/// Runs `vlad train …`.
pub fn run(command: TrainCommand) -> Result<()> {
    match command {
        TrainCommand::AaClip(args) => train_aa_clip(args),
        TrainCommand::BayesPfl(args) => train_bayes_pfl(args),
        TrainCommand::Vand(args) => train_vand(args),
        TrainCommand::ClipAd(args) => train_clip_ad(args),
        TrainCommand::AnomalyClip(args) => train_anomaly_clip(args),
        TrainCommand::AdaClip(args) => train_ada_clip(args),
        TrainCommand::Mvfa(args) => train_mvfa(args),
    }
}

/// The training data (shared by both methods).
#[derive(clap::Args, Debug, Clone)]
pub struct TrainData {
    #[command(flatten)]
    pub dataset: DatasetArgs,
    /// Only these classes (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub classes: Option<Vec<String>>,
    /// Split used for training: `test` (the official protocol: the auxiliary dataset's test split,
    /// normal and anomalous images with masks) or `train`.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Training directory (created); existing runs are refused unless `--resume`.
    #[arg(long)]
    pub out: PathBuf,
}

impl TrainData {
    fn open(&self) -> Result<DatasetIndex> {
        let mut index = self.dataset.open()?;
        if let Some(classes) = &self.classes {
            index = index.restrict_classes(classes)?;
        }
        if !index.problems.is_empty() {
            eprintln!("note: {} problem(s) while indexing {}, e.g. {}", index.problems.len(), self.dataset.data.display(), index.problems[0]);
        }
        Ok(index)
    }

    fn split(&self) -> Result<Split> {
        match self.split.as_str() {
            "test" => Ok(Split::Test),
            "train" => Ok(Split::Train),
            other => bail!("--split: expected `test` or `train`, got `{other}`"),
        }
    }
}

fn open_validation(root: &Path, classes: Option<&[String]>) -> Result<Vec<Sample>> {
    let open = OpenOptions { format: FormatChoice::Auto, metadata: None, visa_split_csv: None };
    let mut index = vlad_data::open_dataset(root, &open).with_context(|| format!("reading validation dataset {}", root.display()))?;
    if let Some(classes) = classes {
        index = index.restrict_classes(classes)?;
    }
    let samples: Vec<Sample> = index.split(Split::Test).cloned().collect();
    if samples.is_empty() {
        bail!("{}: no test images to validate on", root.display());
    }
    Ok(samples)
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(ProgressStyle::with_template("{prefix:>26} {bar:30} {pos}/{len} {msg} [{elapsed_precise}, eta {eta}]").expect("valid template"));
    bar.set_prefix(what.to_string());
    bar
}

// ------------------------------------------------------------------------------------------------
// AA-CLIP

/// `vlad train aa-clip`.
#[derive(clap::Args, Debug)]
pub struct TrainAaClipArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: TrainData,
    /// Training images: `full` (every image of the split) or an even K (K/2 normal + K/2 anomalous
    /// per class, seeded; the paper's 2/16/64-shot protocol).
    #[arg(long, default_value = "full")]
    pub shots: String,
    /// Stage-1 epochs (official 5; 0 skips the text adapters).
    #[arg(long, default_value_t = 5)]
    pub text_epochs: usize,
    /// Stage-2 epochs (official 20).
    #[arg(long, visible_alias = "epochs", default_value_t = 20)]
    pub image_epochs: usize,
    /// Stage-1 batch size (official 16).
    #[arg(long, default_value_t = 16)]
    pub text_batch_size: usize,
    /// Stage-2 batch size (official 2).
    #[arg(long, default_value_t = 2)]
    pub image_batch_size: usize,
    /// Stage-1 learning rate (official 1e-5).
    #[arg(long, default_value_t = 1e-5)]
    pub text_lr: f64,
    /// Stage-2 learning rate (official 5e-4).
    #[arg(long, default_value_t = 5e-4)]
    pub image_lr: f64,
    /// Input side (default: 37 patches, 518 for ViT-L-14-336).
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Seed of initialisation, shuffling, augmentation and the k-shot draw (official 111).
    #[arg(long, default_value_t = 111)]
    pub seed: u64,
    /// Train without the official augmentations.
    #[arg(long)]
    pub no_augment: bool,
    /// Fix the two official quirks (V-V softmax across the batch, stage-1 loss detail); off = the
    /// official behaviour.
    #[arg(long)]
    pub fix_official_quirks: bool,
    /// Training images used to measure the single-image score calibration after each stage-2 epoch.
    #[arg(long, default_value_t = 64)]
    pub calibration_images: usize,
    /// Stop each epoch after this many steps (quick experiments).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Validate after every stage-2 epoch on this dataset's test split (pixel and image AUROC).
    #[arg(long)]
    pub val_data: Option<PathBuf>,
    /// Classes of the validation dataset (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub val_classes: Option<Vec<String>>,
    /// Continue the run recorded in `--out`.
    #[arg(long)]
    pub resume: bool,
    /// Keep the backbone's activation and positional rule (default: exact GELU and rule A, as the
    /// official model).
    #[arg(long)]
    pub keep_activation: bool,
}

/// Draws indicatif bars for the AA-CLIP trainer.
struct AaProgress {
    bar: Option<ProgressBar>,
}

impl TrainObserver for AaProgress {
    fn on_stage(&mut self, stage: AaStage, first_epoch: usize, epochs: usize, steps_per_epoch: usize) {
        if let Some(bar) = self.bar.take() {
            bar.finish();
        }
        eprintln!("{}: epochs {}..={epochs}, {steps_per_epoch} steps each", stage.label(), first_epoch + 1);
        self.bar = Some(bar(((epochs - first_epoch) * steps_per_epoch) as u64, stage.label()));
    }

    fn on_step(&mut self, _stage: AaStage, epoch: usize, _step: usize, loss: f64) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.set_message(format!("epoch {} loss {loss:.4}", epoch + 1));
        }
    }

    fn on_epoch(&mut self, record: &EpochRecord) {
        let mut line = format!("epoch {} ({:?}): loss {:.4}, {:.1} s", record.epoch, record.stage, record.loss, record.seconds);
        if let Some(v) = &record.validation {
            let pct = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{:.1}", 100.0 * v));
            line += &format!(", validation pixel AUROC {} image AUROC {} (calibrated {})", pct(v.pixel_auroc), pct(v.image_auroc_official), pct(v.image_auroc_calibrated));
        }
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn on_message(&mut self, message: &str) {
        match &self.bar {
            Some(bar) => bar.println(message),
            None => eprintln!("{message}"),
        }
    }
}

fn train_aa_clip(args: TrainAaClipArgs) -> Result<()> {
    let started = Instant::now();
    let index = args.data.open()?;
    let split = args.data.split()?;
    let samples: Vec<Sample> = if args.shots == "full" {
        index.split(split).cloned().collect()
    } else {
        let k: usize = args.shots.parse().with_context(|| format!("--shots: expected `full` or an even number, got `{}`", args.shots))?;
        vlad_data::aa_clip_kshot(&index, k, args.seed, split)?.iter().flat_map(|c| c.all().cloned().collect::<Vec<_>>()).collect()
    };
    if samples.is_empty() {
        bail!("{}: no {} images to train on", args.data.dataset.data.display(), split.as_str());
    }
    let validation = args.val_data.as_deref().map(|root| open_validation(root, args.val_classes.as_deref())).transpose()?;
    let device = args.model.device()?;
    let mut clip = args.model.load(&device)?;
    if !args.keep_activation {
        clip = clip.with_activation(Activation::Gelu);
        clip.visual.pos_resize = PosEmbedResize::AntialiasBicubic;
    }
    let mut config = AaClipConfig::for_backbone(&clip.config);
    if let Some(size) = args.image_size {
        config.image_size = size;
    }
    let options = AaTrainOptions {
        text_epochs: args.text_epochs,
        image_epochs: args.image_epochs,
        text_batch_size: args.text_batch_size,
        image_batch_size: args.image_batch_size,
        text_lr: args.text_lr,
        image_lr: args.image_lr,
        fix_official_quirks: args.fix_official_quirks,
        seed: args.seed,
        augment: !args.no_augment,
        calibration_images: args.calibration_images,
        max_steps_per_epoch: args.max_steps,
        ..AaTrainOptions::official(config)
    };
    let anomalous = samples.iter().filter(|s| s.label == Label::Anomalous).count();
    eprintln!(
        "training AA-CLIP on {} images ({} anomalous) of {} class(es) from {}, input {}, backbone {}",
        samples.len(),
        anomalous,
        index.classes().len(),
        args.data.dataset.data.display(),
        options.config.image_size,
        clip.config.name
    );
    if let (Some(v), false) = (&validation, args.resume) {
        // The same freshly initialised adapters the run starts from: the "untrained" reference.
        let text = (options.text_epochs > 0).then(|| init_text_adapter(&options.config, options.seed, &device));
        let image = init_image_adapter(&options.config, options.seed, &device);
        let before = aa_run::validate(&clip, text.as_ref(), &image, &options.config, v, options.eval_batch_size, None)?;
        let pct = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{:.1}", 100.0 * v));
        eprintln!(
            "before training (initial adapters): validation pixel AUROC {} image AUROC {} on {} images",
            pct(before.pixel_auroc),
            pct(before.image_auroc_official),
            before.images
        );
        std::fs::create_dir_all(&args.data.out)?;
        std::fs::write(args.data.out.join("untrained_validation.json"), serde_json::to_string_pretty(&before)?)?;
    }
    let mut progress = AaProgress { bar: None };
    let summary = aa_run::train(&clip, &samples, validation.as_deref(), &options, &args.data.out, args.resume, &mut progress)?;
    if let Some(bar) = progress.bar.take() {
        bar.finish();
    }
    eprintln!(
        "done in {:.0} s: {} epoch(s) trained; checkpoint {} (use: vlad eval --detector aa-clip --checkpoint {} …)",
        started.elapsed().as_secs_f64(),
        summary.epochs.len(),
        summary.checkpoint.display(),
        args.data.out.display()
    );
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// Bayes-PFL

/// `vlad train bayes-pfl`.
#[derive(clap::Args, Debug)]
pub struct TrainBayesPflArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: TrainData,
    /// Epochs at most (official 30).
    #[arg(long, default_value_t = 30)]
    pub epochs: usize,
    /// Batch size (official 32).
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Input side (official 518).
    #[arg(long, default_value_t = 518)]
    pub image_size: usize,
    /// 1-based backbone blocks feeding the head (official 6,12,18,24).
    #[arg(long, default_value = "6,12,18,24")]
    pub taps: String,
    /// Seed of initialisation, shuffling, augmentation and the flow samples (official 333).
    #[arg(long, default_value_t = 333)]
    pub seed: u64,
    /// Train without the official augmentations.
    #[arg(long)]
    pub no_augment: bool,
    /// Stage rule: a fixed number of stage-1 epochs, then stage 2 (needs no validation data). Without
    /// it, the official rule runs on `--val-data` (patience 3 on pixel AP, then on image AP).
    #[arg(long)]
    pub stage_one_epochs: Option<usize>,
    /// Validation dataset for the official stage rule (the official code uses 5 classes of the
    /// *target* dataset, which leaks target information; prefer held-out auxiliary classes).
    #[arg(long)]
    pub val_data: Option<PathBuf>,
    /// Classes of the validation dataset (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub val_classes: Option<Vec<String>>,
    /// Monte-Carlo samples R of the validation passes (official 5).
    #[arg(long, default_value_t = 5)]
    pub val_samples: usize,
    /// Stop each epoch after this many steps (quick experiments).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Also write every epoch in the official format (`epoch_post_{epoch}_{stage}.pth`).
    #[arg(long)]
    pub official_pth: bool,
    /// Replace checkpoints already in `--out`.
    #[arg(long)]
    pub force: bool,
}

/// One Bayes-PFL training sample: the official `train.py` pipeline (augment at the original size,
/// bicubic resize to S, mask by PIL bilinear + threshold 0.5, CLIP normalisation).
fn pfl_sample(sample: &Sample, size: usize, augment: Option<(&BayesPflAugment, u64, String)>) -> Result<(Vec<f32>, Vec<f32>)> {
    let image = open_image(&sample.image_path)?;
    let (w, h) = image.dimensions();
    let mask = match (&sample.mask_path, sample.label) {
        (Some(path), Label::Anomalous) => {
            let mask = open_mask(path)?;
            if mask.dimensions() != (w, h) {
                bail!("{}: mask is {:?}, its image is {:?}", path.display(), mask.dimensions(), (w, h));
            }
            mask
        }
        _ => vlad_imaging::GrayImage::new(w, h),
    };
    let (image, mask) = match augment {
        Some((augment, seed, label)) => augment.augment(&image, &mask, &mut SeededRng::derive(seed, &label))?,
        None => (image, mask),
    };
    let s = size as u32;
    let image = vlad_imaging::resize_rgb(&image, s, s, Filter::Bicubic);
    let mask = resize_binary_mask(&mask, s, s, MaskRule::BilinearThreshold);
    let planar = Planar::from_image_and_mask(&image, &mask, CLIP_MEAN, CLIP_STD)?;
    let plane = size * size;
    let mut data = planar.data;
    let mask: Vec<f32> = data.split_off(3 * plane).into_iter().map(|v| if v != 0.0 { 1.0 } else { 0.0 }).collect();
    Ok((data, mask))
}

fn pfl_batch(samples: &[&Sample], size: usize, device: &Device, augment: Option<(&BayesPflAugment, u64, String)>) -> Result<TrainBatch> {
    let loaded: Vec<(Vec<f32>, Vec<f32>)> = samples
        .par_iter()
        .map(|s| {
            let aug = augment.as_ref().map(|(a, seed, label)| (*a, *seed, format!("{label}/{}", s.image_path.display())));
            pfl_sample(s, size, aug).with_context(|| format!("loading {}", s.image_path.display()))
        })
        .collect::<Result<_>>()?;
    let n = samples.len();
    let mut pixels = Vec::with_capacity(n * 3 * size * size);
    let mut masks = Vec::with_capacity(n * size * size);
    for (p, m) in loaded {
        pixels.extend(p);
        masks.extend(m);
    }
    Ok(TrainBatch {
        pixels: Tensor::from_data(TensorData::new(pixels, [n, 3, size, size]), device),
        masks: Tensor::from_data(TensorData::new(masks, [n, size, size]), device),
        labels: samples.iter().map(|s| s.label.as_int() as usize).collect(),
        classes: samples.iter().map(|s| s.class_name.clone()).collect(),
    })
}

/// Mean per-class pixel AP and image AP (image score = s_text, as the official validation; its
/// per-class min–max does not change AP) of the current head on `samples`.
fn pfl_validate(trainer: &Trainer, model: &ClipModel, samples: &[Sample], args: &TrainBayesPflArgs, taps: &[usize]) -> Result<(f64, f64)> {
    let file = as_weight_file(&trainer.head(), trainer.dead(), "validation")?;
    let device = model.visual.proj.device();
    let checkpoint = load_checkpoint(&file, &device, StageChoice::Fixed(trainer.stage()), false)?;
    let options = BayesPflOptions {
        taps: taps.to_vec(),
        image_size: args.image_size,
        samples: args.val_samples,
        noise: NoiseMode::Sample { seed: args.seed },
        ..BayesPflOptions::default()
    };
    let mut detector = BayesPfl::from_checkpoint(model.clone(), checkpoint, options)?;
    let pre = detector.preprocess();
    let mut classes: Vec<String> = Vec::new();
    for s in samples {
        if !classes.contains(&s.class_name) {
            classes.push(s.class_name.clone());
        }
    }
    let (mut pixel_aps, mut image_aps) = (Vec::new(), Vec::new());
    for class in &classes {
        detector.set_class(class)?;
        let of_class: Vec<&Sample> = samples.iter().filter(|s| &s.class_name == class).collect();
        let (mut maps, mut masks, mut scores, mut labels) = (Vec::new(), Vec::<u8>::new(), Vec::new(), Vec::new());
        let mut side = 0;
        for sample in of_class {
            let image = open_image(&sample.image_path)?;
            let pixels = pre.batch(&[pre.to_chw(&image)], &device)?;
            let out = detector.detect(pixels)?;
            side = out.map.dims()[1];
            maps.extend(host_values(out.map)?);
            let text = out.components.into_iter().find(|(n, _)| n == "text").map(|(_, t)| t).unwrap_or(out.image_score);
            scores.extend(host_values(text)?);
            labels.push(sample.label == Label::Anomalous);
            let mask = match &sample.mask_path {
                Some(p) if sample.label == Label::Anomalous => resize_binary_mask(&open_mask(p)?, side as u32, side as u32, MaskRule::BilinearThreshold),
                _ => vlad_imaging::GrayImage::new(side as u32, side as u32),
            };
            masks.extend(mask.into_raw().into_iter().map(|v| u8::from(v != 0)));
        }
        if let Some(ap) = pixel_metrics(&maps, &masks, MapShape { n: labels.len(), height: side, width: side }, None)?.binary.average_precision {
            pixel_aps.push(ap);
        }
        if let Some(ap) = binary_metrics(&scores, &labels)?.average_precision {
            image_aps.push(ap);
        }
    }
    let mean = |v: &[f64]| if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 };
    Ok((mean(&pixel_aps), mean(&image_aps)))
}

fn train_bayes_pfl(args: TrainBayesPflArgs) -> Result<()> {
    let started = Instant::now();
    if args.batch_size == 0 || args.epochs == 0 {
        bail!("--batch-size and --epochs must be at least 1");
    }
    let policy = match (args.stage_one_epochs, &args.val_data) {
        (Some(n), _) => StagePolicy::Fixed { stage_one_epochs: n },
        (None, Some(_)) => StagePolicy::Official { patience: 3 },
        (None, None) => bail!("choose the stage rule: --stage-one-epochs N (fixed schedule) or --val-data DIR (the official validation rule)"),
    };
    let index = args.data.open()?;
    let split = args.data.split()?;
    let samples: Vec<Sample> = index.split(split).cloned().collect();
    if samples.is_empty() {
        bail!("{}: no {} images to train on", args.data.dataset.data.display(), split.as_str());
    }
    let validation = match (&policy, &args.val_data) {
        (StagePolicy::Official { .. }, Some(root)) => Some(open_validation(root, args.val_classes.as_deref())?),
        _ => None,
    };
    std::fs::create_dir_all(&args.data.out).with_context(|| format!("cannot create {}", args.data.out.display()))?;
    let planned: Vec<PathBuf> = (1..=args.epochs).flat_map(|e| [1, 2].map(|s| args.data.out.join(format!("epoch_post_{e}_{s}.bpk")))).collect();
    if !args.force
        && let Some(existing) = planned.iter().find(|p| p.exists())
    {
        bail!("{} already exists (choose another --out or pass --force)", existing.display());
    }

    let device = args.model.device()?;
    let model = args.model.load(&device)?.with_activation(Activation::Gelu);
    let taps = parse_list(&args.taps, "--taps")?;
    let config = HeadConfig { layers: taps.len(), ..HeadConfig::official(model.config.vision.width, model.config.text.width) };
    let (head, dead) = official_head(&config, args.seed, &device)?;
    let steps_per_epoch = samples.len().div_ceil(args.batch_size);
    let steps_per_epoch = args.max_steps.map_or(steps_per_epoch, |m| m.min(steps_per_epoch));
    let options = PflTrainOptions { taps: taps.clone(), image_size: args.image_size, ..PflTrainOptions::official(steps_per_epoch, args.epochs) };
    let mut trainer = Trainer::new(model.clone(), head, dead, options, NoiseMode::Sample { seed: args.seed }.source(), args.seed)?;
    let mut controller = StageController::new(policy);
    let augment = (!args.no_augment).then(BayesPflAugment::default);
    eprintln!(
        "training Bayes-PFL on {} images of {} class(es) from {}, input {}, taps {:?}, backbone {}, {}",
        samples.len(),
        index.classes().len(),
        args.data.dataset.data.display(),
        args.image_size,
        taps,
        model.config.name,
        match policy {
            StagePolicy::Fixed { stage_one_epochs } => format!("stage 1 for {stage_one_epochs} epoch(s), then stage 2"),
            StagePolicy::Official { .. } => "official stage rule on the validation set".to_string(),
        }
    );
    let mut log = std::fs::OpenOptions::new().create(true).append(true).open(args.data.out.join("metrics.jsonl"))?;
    let mut best: Option<vlad_detect::bayes_pfl::BayesPflHead> = None;
    let mut last = args.data.out.join("epoch_post_1_1.bpk");
    for epoch in 1..=args.epochs {
        let stage = trainer.stage();
        let mut order: Vec<usize> = (0..samples.len()).collect();
        SeededRng::derive(args.seed, &format!("bayes-pfl/epoch-{epoch}")).shuffle(&mut order);
        let progress = bar(steps_per_epoch as u64, &format!("epoch {epoch} (stage {})", stage.number()));
        let (mut loss_sum, mut steps) = (0.0, 0usize);
        let epoch_started = Instant::now();
        for (step, chunk) in order.chunks(args.batch_size).take(steps_per_epoch).enumerate() {
            let batch: Vec<&Sample> = chunk.iter().map(|&i| &samples[i]).collect();
            let label = format!("bayes-pfl/epoch-{epoch}/step-{step}");
            let batch = pfl_batch(&batch, args.image_size, &device, augment.as_ref().map(|a| (a, args.seed, label)))?;
            let out = trainer.step(&batch, None, false)?;
            loss_sum += out.losses.total;
            steps += 1;
            progress.inc(1);
            progress.set_message(format!("loss {:.4} (ce {:.4}, seg {:.4})", out.losses.total, out.losses.ce, out.losses.seg));
        }
        progress.finish_and_clear();
        let loss = loss_sum / steps.max(1) as f64;
        let (pixel_ap, image_ap) = match &validation {
            Some(v) if controller.needs_validation() => pfl_validate(&trainer, &model, v, &args, &taps)?,
            _ => (f64::NAN, f64::NAN),
        };
        last = args.data.out.join(format!("epoch_post_{epoch}_{}.bpk", stage.number()));
        save_vlad(&last, &trainer.head(), trainer.dead(), stage, args.force)?;
        if args.official_pth {
            save_official(&last.with_extension("pth"), &trainer.head(), trainer.dead())?;
        }
        let decision = controller.end_epoch(pixel_ap, image_ap);
        let record = serde_json::json!({
            "epoch": epoch, "stage": stage.number(), "steps": steps, "loss": loss,
            "validation_pixel_ap": pixel_ap.is_finite().then_some(pixel_ap),
            "validation_image_ap": image_ap.is_finite().then_some(image_ap),
            "decision": format!("{decision:?}"), "seconds": epoch_started.elapsed().as_secs_f64(),
            "checkpoint": last.display().to_string(),
        });
        use std::io::Write as _;
        writeln!(log, "{record}")?;
        let val = if pixel_ap.is_finite() { format!(", validation pixel AP {:.1} image AP {:.1}", 100.0 * pixel_ap, 100.0 * image_ap) } else { String::new() };
        eprintln!("epoch {epoch} (stage {}): loss {loss:.4}{val}, {:.1} s → {} [{decision:?}]", stage.number(), epoch_started.elapsed().as_secs_f64(), last.display());
        match decision {
            EpochDecision::Improved => best = Some(trainer.head()),
            EpochDecision::Continue => {}
            EpochDecision::SwitchToStageTwo => {
                if let Some(head) = best.take() {
                    trainer.restore(head);
                }
                trainer.start_stage_two();
            }
            EpochDecision::Stop => break,
        }
    }
    if trainer.stage() == PflStage::One {
        eprintln!("note: training ended in stage 1; the image head of stage 2 was never trained");
    }
    eprintln!(
        "done in {:.0} s; last checkpoint {} (use: vlad eval --detector bayes-pfl --checkpoint {} --pfl-taps {} --pfl-image-size {} …)",
        started.elapsed().as_secs_f64(),
        last.display(),
        last.display(),
        args.taps,
        args.image_size
    );
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// VAND / APRIL-GAN

/// `vlad train vand`. The official runs: `--epochs 15` on VisA (no mosaic), `--epochs 3 --aug-rate
/// 0.2` on MVTec; both on the test split, batch 8, Adam 1e-3 with betas (0.5, 0.999), seed 111.
#[derive(clap::Args, Debug)]
pub struct TrainVandArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: TrainData,
    /// Epochs (official: 15 on VisA, 3 on MVTec).
    #[arg(long, default_value_t = 15)]
    pub epochs: usize,
    /// Learning rate (official 1e-3).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Batch size (official 8).
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Probability of the 2×2 mosaic of four images of the class (official: 0.2 on MVTec, 0 on VisA).
    #[arg(long, default_value_t = 0.0)]
    pub aug_rate: f64,
    /// Seed of initialisation, shuffling and the mosaic (official 111).
    #[arg(long, default_value_t = 111)]
    pub seed: u64,
    /// Input side (default: 37 patches, 518 for ViT-L-14-336).
    #[arg(long)]
    pub image_size: Option<usize>,
    /// 1-based blocks feeding the linear layers (default: the quarters of the vision depth).
    #[arg(long)]
    pub taps: Option<String>,
    /// Write a checkpoint every N epochs (`save_freq`; the last epoch is always written).
    #[arg(long, default_value_t = 1)]
    pub save_every: usize,
    /// Keep the backbone's activation and positional rule (default: exact GELU and rule A).
    #[arg(long)]
    pub keep_activation: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

/// Draws an indicatif bar for the epoch-based trainers (VAND, CLIP-AD SDP+, AnomalyCLIP).
struct EpochProgress {
    bar: Option<ProgressBar>,
}

impl vlad_detect::vand::train::TrainObserver for EpochProgress {
    fn on_untrained(&mut self, v: &vlad_detect::vand::train::Validation) {
        eprintln!("before training (initial layers): validation pixel AUROC {} image AUROC {} on {} images", pct(v.pixel_auroc), pct(v.image_auroc), v.images);
    }

    fn on_start(&mut self, epochs: usize, steps_per_epoch: usize) {
        eprintln!("{epochs} epoch(s) of {steps_per_epoch} steps");
        self.bar = Some(bar((epochs * steps_per_epoch) as u64, "linear layers"));
    }

    fn on_step(&mut self, epoch: usize, _step: usize, loss: f64) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.set_message(format!("epoch {epoch} loss {loss:.4}"));
        }
    }

    fn on_epoch(&mut self, record: &vlad_detect::vand::train::EpochRecord) {
        let mut line = format!("epoch {}: loss {:.4}, {:.1} s", record.epoch, record.loss, record.seconds);
        if let Some(v) = &record.validation {
            line += &format!(", validation pixel AUROC {} image AUROC {}", pct(v.pixel_auroc), pct(v.image_auroc));
        }
        if let Some(path) = &record.checkpoint {
            line += &format!(" → {}", path.display());
        }
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}

fn pct(x: Option<f64>) -> String {
    x.map_or("–".to_string(), |v| format!("{:.1}", 100.0 * v))
}

fn train_vand(args: TrainVandArgs) -> Result<()> {
    use vlad_detect::vand::VandConfig;
    use vlad_detect::vand::train::{TrainOptions as VandTrainOptions, VandMethod, train as vand_train};
    let started = Instant::now();
    let TrainingSet { index, split, samples, validation } = training_samples(&args.data, &args.run)?;
    let device = args.model.device()?;
    let mut clip = args.model.load(&device)?;
    if !args.keep_activation {
        clip = clip.with_activation(Activation::Gelu);
        clip.visual.pos_resize = PosEmbedResize::AntialiasBicubic;
    }
    let mut config = VandConfig::for_backbone(&clip.config);
    if let Some(size) = args.image_size {
        config.image_size = size;
    }
    if let Some(taps) = &args.taps {
        config.taps = parse_list(taps, "--taps")?;
        config.few_shot_taps = config.taps.clone();
    }
    let options = VandTrainOptions {
        epochs: args.epochs,
        lr: args.lr,
        batch_size: args.batch_size,
        aug_rate: args.aug_rate,
        seed: args.seed,
        save_every: args.save_every,
        max_steps_per_epoch: args.run.max_steps,
        ..VandTrainOptions::official(config)
    };
    let anomalous = samples.iter().filter(|s| s.label == Label::Anomalous).count();
    eprintln!(
        "training VAND on {} images ({} anomalous) of {} class(es) from {}, input {}, taps {:?}, backbone {}",
        samples.len(),
        anomalous,
        index.classes().len(),
        args.data.dataset.data.display(),
        options.config.image_size,
        options.config.taps,
        clip.config.name
    );
    let mut progress = EpochProgress { bar: None };
    let method = VandMethod::new(&clip, options.config.clone())?;
    let summary = vand_train(&method, &index, split, &samples, validation.as_deref(), &options, &args.data.out, args.run.force, &mut progress)?;
    finish_run(&mut progress, &summary, &args.data.out, started, &format!("vand --vand-image-size {}", options.config.image_size))
}

// ------------------------------------------------------------------------------------------------
// CLIP-AD SDP+

/// `vlad train clip-ad`. The official run (`train_SDP_plus.sh`): the auxiliary dataset's test split
/// in dataset order, batch 8, Adam lr 1e-4 with default betas, 5 epochs, seed 42, DBSCAN prototypes
/// with the training dataset's parameters.
#[derive(clap::Args, Debug)]
pub struct TrainClipAdArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: TrainData,
    /// Epochs (official 5).
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// Learning rate (official 1e-4).
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// Batch size (official 8).
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Seed of the initialisation (official 42; the official run does not shuffle).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Prototypes of the training classes (`dbscan-visa` when training on VisA, as the scripts).
    #[arg(long, value_enum, default_value_t = super::detector::RvsChoice::Dbscan)]
    pub rvs: super::detector::RvsChoice,
    /// Input side (default: the backbone's native size).
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Gaussian σ of the validation maps (official 8; 2 when validating on VisA).
    #[arg(long, default_value_t = 8.0)]
    pub sigma: f64,
    /// Train on clean taps instead of the official aliased ones.
    #[arg(long)]
    pub clean_taps: bool,
    /// Shuffle the samples every epoch (the official run does not).
    #[arg(long)]
    pub shuffle: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

fn train_clip_ad(args: TrainClipAdArgs) -> Result<()> {
    use vlad_detect::clip_ad::ClipAdConfig;
    use vlad_detect::clip_ad::train::{ClipAdMethod, official_options};
    use vlad_detect::vand::train::train as train_layers;
    let started = Instant::now();
    let TrainingSet { index, split, samples, validation } = training_samples(&args.data, &args.run)?;
    let device = args.model.device()?;
    let clip = args.model.load(&device)?;
    let mut config = ClipAdConfig {
        rvs: args.rvs.rvs(),
        sigma: (args.sigma > 0.0).then_some(args.sigma),
        clean_taps: args.clean_taps,
        ..ClipAdConfig::for_backbone(&clip.config)
    };
    if let Some(size) = args.image_size {
        config.image_size = size;
    }
    let options = vlad_detect::vand::train::TrainOptions {
        epochs: args.epochs,
        lr: args.lr,
        batch_size: args.batch_size,
        seed: args.seed,
        shuffle: args.shuffle,
        max_steps_per_epoch: args.run.max_steps,
        ..official_options(&config, &clip.config)
    };
    eprintln!(
        "training CLIP-AD SDP+ on {} images of {} class(es) from {}, input {}, taps {:?}, backbone {}",
        samples.len(),
        index.classes().len(),
        args.data.dataset.data.display(),
        config.image_size,
        config.taps,
        clip.config.name
    );
    let method = ClipAdMethod::new(&clip, config)?;
    let mut progress = EpochProgress { bar: None };
    let summary = train_layers(&method, &index, split, &samples, validation.as_deref(), &options, &args.data.out, args.run.force, &mut progress)?;
    finish_run(&mut progress, &summary, &args.data.out, started, "clip-ad-plus")
}

// ------------------------------------------------------------------------------------------------
// AnomalyCLIP

/// `vlad train anomaly-clip`. The official run (`train.sh`): the auxiliary dataset's test split,
/// 15 epochs, batch 8, Adam lr 1e-3 with betas (0.5, 0.999), seed 111, DPAM taps `24`.
#[derive(clap::Args, Debug)]
pub struct TrainAnomalyClipArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: TrainData,
    /// Epochs (official 15).
    #[arg(long, default_value_t = 15)]
    pub epochs: usize,
    /// Learning rate (official 1e-3).
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Batch size (official 8).
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Seed of the initialisation and shuffling (official 111).
    #[arg(long, default_value_t = 111)]
    pub seed: u64,
    /// Input side (default: 37 patches, 518 for ViT-L/14).
    #[arg(long)]
    pub image_size: Option<usize>,
    /// DPAM taps (default: the last block, as the released models).
    #[arg(long)]
    pub taps: Option<String>,
    #[command(flatten)]
    pub run: RunArgs,
}

fn train_anomaly_clip(args: TrainAnomalyClipArgs) -> Result<()> {
    use vlad_detect::anomaly_clip::AnomalyClipConfig;
    use vlad_detect::anomaly_clip::train::{TrainOptions as AcTrainOptions, train as ac_train};
    let started = Instant::now();
    let TrainingSet { index, samples, validation, .. } = training_samples(&args.data, &args.run)?;
    let device = args.model.device()?;
    let mut clip = args.model.load(&device)?;
    clip.visual.pos_resize = PosEmbedResize::Bilinear;
    let mut config = AnomalyClipConfig::for_backbone(&clip.config);
    if let Some(size) = args.image_size {
        config.image_size = size;
    }
    if let Some(taps) = &args.taps {
        config.taps = parse_list(taps, "--taps")?;
    }
    let options = AcTrainOptions { epochs: args.epochs, lr: args.lr, batch_size: args.batch_size, seed: args.seed, max_steps_per_epoch: args.run.max_steps, ..AcTrainOptions::official(config) };
    eprintln!(
        "training AnomalyCLIP's prompts on {} images of {} class(es) from {}, input {}, DPAM taps {:?} from block {}, backbone {}",
        samples.len(),
        index.classes().len(),
        args.data.dataset.data.display(),
        options.config.image_size,
        options.config.taps,
        options.config.dpam_from_block,
        clip.config.name
    );
    let mut progress = EpochProgress { bar: None };
    let summary = ac_train(&clip, &samples, validation.as_deref(), &options, &args.data.out, args.run.force, &mut progress)?;
    finish_run(&mut progress, &summary, &args.data.out, started, "anomaly-clip")
}

/// What a trainer reads: the dataset, its training split and samples, and the validation samples.
struct TrainingSet {
    index: DatasetIndex,
    split: Split,
    samples: Vec<Sample>,
    validation: Option<Vec<Sample>>,
}

/// What the epoch-based trainers (VAND, CLIP-AD SDP+, AnomalyCLIP) share on the command line.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Stop each epoch after this many steps (quick experiments).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Validate before training and after every epoch on this dataset's test split (the official
    /// CLIP-AD run validates on the *target* dataset, which leaks it; any held-out set works).
    #[arg(long)]
    pub val_data: Option<PathBuf>,
    /// Classes of the validation dataset (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub val_classes: Option<Vec<String>>,
    /// Replace checkpoints already in `--out`.
    #[arg(long)]
    pub force: bool,
}

/// The training samples of `data`'s split and the validation samples, if a validation set is given.
fn training_samples(data: &TrainData, run: &RunArgs) -> Result<TrainingSet> {
    let (val_data, val_classes) = (run.val_data.as_deref(), run.val_classes.as_deref());
    let index = data.open()?;
    let split = data.split()?;
    let samples: Vec<Sample> = index.split(split).cloned().collect();
    if samples.is_empty() {
        bail!("{}: no {} images to train on", data.dataset.data.display(), split.as_str());
    }
    let validation = val_data.map(|root| open_validation(root, val_classes)).transpose()?;
    Ok(TrainingSet { index, split, samples, validation })
}

/// The end of a run of the linear-layer and prompt trainers: the bar, `untrained_validation.json`
/// and how to use the checkpoint (`detector` is the `--detector` value with any options).
fn finish_run(progress: &mut EpochProgress, summary: &vlad_detect::vand::train::TrainSummary, out: &Path, started: Instant, detector: &str) -> Result<()> {
    if let Some(bar) = progress.bar.take() {
        bar.finish();
    }
    if let Some(before) = &summary.untrained {
        std::fs::write(out.join("untrained_validation.json"), serde_json::to_string_pretty(before)?)?;
    }
    eprintln!(
        "done in {:.0} s; last checkpoint {} (use: vlad eval --detector {detector} --checkpoint {} …)",
        started.elapsed().as_secs_f64(),
        summary.checkpoint.display(),
        summary.checkpoint.display()
    );
    Ok(())
}

// ------------------------------------------------------------------------------------------------
// AdaCLIP

/// `vlad train ada-clip`. The official run (`train.sh`): the training datasets' test splits (MVTec
/// with the mosaic at rate 0.2), 5 epochs, batch 1, AdamW lr 0.01 with betas (0.5, 0.999) and
/// weight decay 0.01, seed 111, prompting depth 4, length 5, 20 clusters.
#[derive(clap::Args, Debug)]
pub struct TrainAdaClipArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: TrainData,
    /// Epochs (official 5).
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// Learning rate (official 0.01).
    #[arg(long, default_value_t = 0.01)]
    pub lr: f64,
    /// Probability of AdaCLIP's 2×2 mosaic (official 0.2 for MVTec, 0 for the other datasets).
    #[arg(long, default_value_t = 0.2)]
    pub aug_rate: f64,
    /// Seed of the initialisation, shuffling and mosaic (official 111).
    #[arg(long, default_value_t = 111)]
    pub seed: u64,
    /// Input side (default: 37 patches, 518 for ViT-L/14).
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Train without HSF (`--use_hsf False`).
    #[arg(long)]
    pub no_hsf: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

fn train_ada_clip(args: TrainAdaClipArgs) -> Result<()> {
    use vlad_detect::ada_clip::AdaClipConfig;
    use vlad_detect::ada_clip::train::{TrainOptions as AdaTrainOptions, train as ada_train};
    let started = Instant::now();
    let TrainingSet { index, split, samples, validation } = training_samples(&args.data, &args.run)?;
    let device = args.model.device()?;
    let mut clip = args.model.load(&device)?.with_activation(Activation::Gelu);
    clip.visual.pos_resize = PosEmbedResize::Bicubic;
    let mut config = AdaClipConfig::for_backbone(&clip.config);
    if let Some(size) = args.image_size {
        config.image_size = size;
    }
    config.use_hsf = !args.no_hsf;
    let options = AdaTrainOptions { epochs: args.epochs, lr: args.lr, aug_rate: args.aug_rate, seed: args.seed, max_steps_per_epoch: args.run.max_steps, ..AdaTrainOptions::official(config) };
    eprintln!(
        "training AdaCLIP's prompts and projections on {} images of {} class(es) from {}, input {}, taps {:?}, HSF {}, backbone {}",
        samples.len(),
        index.classes().len(),
        args.data.dataset.data.display(),
        options.config.image_size,
        options.config.taps,
        if options.config.use_hsf { "on" } else { "off" },
        clip.config.name
    );
    let mut progress = EpochProgress { bar: None };
    let summary = ada_train(&clip, &index, split, &samples, validation.as_deref(), &options, &args.data.out, args.run.force, &mut progress)?;
    finish_run(&mut progress, &summary, &args.data.out, started, "ada-clip")
}

// ------------------------------------------------------------------------------------------------
// MVFA-AD

/// `--protocol` of `vlad train mvfa`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MvfaProtocolChoice {
    /// `train_few.py`: K anomalous + K normal shots of one class, 11 augmentations each.
    FewShot,
    /// `train_zero.py`: every image of the training split (other datasets than the target).
    ZeroShot,
}

/// `--det-loss` of `vlad train mvfa`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MvfaDetLossChoice {
    /// `BCEWithLogitsLoss` on the mean patch probability, as the official code (never reaches 0).
    Official,
    /// `BCELoss` on the probability.
    Corrected,
}

/// `vlad train mvfa`. The official runs: few-shot `train_few.py` (50 epochs, Adam lr 1e-3, betas
/// (0.5, 0.999), seed 111, input 240, the K shots of `dataset/fewshot_seed/<obj>/<K>-shot.txt`,
/// scored on the target's test split after every epoch, the first best kept); zero-shot
/// `train_zero.py` (lr 1e-4, the other datasets' images, scored 5 times an epoch, ties replace).
/// By default vlad scores on held-out data: few-shot the rest of the shot pool (or `--val-data`),
/// zero-shot `--val-data`; `--select-on-target-test` is the official choice (it selects on the
/// data it then reports).
#[derive(clap::Args, Debug)]
pub struct TrainMvfaArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: TrainData,
    /// The protocol.
    #[arg(long, value_enum, default_value_t = MvfaProtocolChoice::FewShot)]
    pub protocol: MvfaProtocolChoice,
    /// Few-shot: K anomalous and K normal shots of the class (official 2, 4, 8, 16).
    #[arg(long, default_value_t = 4)]
    pub shots: usize,
    /// Few-shot: the split the shots are drawn from (seeded) when no `--seed-list` is given (BMAD's
    /// `valid` is indexed as `train`; MVTec-style layouts keep anomalies in `test`).
    #[arg(long, default_value = "train")]
    pub shots_split: String,
    /// Few-shot: an MVFA seed list (`fewshot_seed/<obj>/<K>-shot.txt`) naming the shots.
    #[arg(long)]
    pub seed_list: Option<PathBuf>,
    /// Few-shot: the seed list's iteration (`--iterate`).
    #[arg(long, default_value_t = 0)]
    pub iterate: usize,
    /// Epochs (official 50).
    #[arg(long, default_value_t = 50)]
    pub epochs: usize,
    /// Learning rate (default: the protocol's, few-shot 1e-3, zero-shot 1e-4).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Seed of initialisation, shot drawing and shuffling (official 111).
    #[arg(long, default_value_t = 111)]
    pub seed: u64,
    /// Input side (official 240).
    #[arg(long)]
    pub image_size: Option<usize>,
    /// The image loss.
    #[arg(long, value_enum, default_value_t = MvfaDetLossChoice::Official)]
    pub det_loss: MvfaDetLossChoice,
    /// Score on the training dataset's own test split of the class (the official few-shot model
    /// selection; for the official zero-shot one pass the target dataset as `--val-data`).
    #[arg(long)]
    pub select_on_target_test: bool,
    /// Images per forward pass when scoring.
    #[arg(long, default_value_t = 8)]
    pub eval_batch_size: usize,
    /// Keep the backbone's activation and positional rule (default: exact GELU and rule A).
    #[arg(long)]
    pub keep_activation: bool,
    #[command(flatten)]
    pub run: RunArgs,
}

impl vlad_detect::mvfa::train::MvfaObserver for EpochProgress {
    fn on_selection(&mut self, selection: &vlad_detect::mvfa::train::Selection, best: bool) {
        let parts: Vec<String> = selection
            .classes
            .iter()
            .map(|c| format!("{} pixel AUROC {} image AUROC {}", c.class_name, pct(c.pixel_auroc), pct(c.image_auroc)))
            .collect();
        let line = format!("  score (epoch {}, step {}): {:.4}{} — {}", selection.epoch, selection.step, selection.score, if best { " (best so far)" } else { "" }, parts.join("; "));
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }
}

fn split_arg(value: &str, flag: &str) -> Result<Split> {
    match value {
        "test" => Ok(Split::Test),
        "train" => Ok(Split::Train),
        other => bail!("{flag}: expected `test` or `train`, got `{other}`"),
    }
}

fn train_mvfa(args: TrainMvfaArgs) -> Result<()> {
    use vlad_detect::mvfa::MvfaConfig;
    use vlad_detect::mvfa::train::{DetLoss, Protocol, SelectionData, TrainOptions as MvfaTrainOptions, TrainSet, few_shot_images, train as mvfa_train};
    let started = Instant::now();
    let index = args.data.open()?;
    let device = args.model.device()?;
    let mut clip = args.model.load(&device)?;
    if !args.keep_activation {
        clip = clip.with_activation(Activation::Gelu);
        clip.visual.pos_resize = PosEmbedResize::AntialiasBicubic;
    }
    let mut config = MvfaConfig::for_backbone(&clip.config);
    if let Some(size) = args.image_size {
        config.image_size = size;
    }
    let protocol = match args.protocol {
        MvfaProtocolChoice::FewShot => Protocol::FewShot,
        MvfaProtocolChoice::ZeroShot => Protocol::ZeroShot,
    };
    let mut options = MvfaTrainOptions::official(config, protocol);
    options.epochs = args.epochs;
    options.seed = args.seed;
    options.max_steps_per_epoch = args.run.max_steps;
    options.eval_batch_size = args.eval_batch_size.max(1);
    options.det_loss = match args.det_loss {
        MvfaDetLossChoice::Official => DetLoss::Official,
        MvfaDetLossChoice::Corrected => DetLoss::Corrected,
    };
    if let Some(lr) = args.lr {
        options.lr = lr;
    }
    let s = options.config.image_size;
    let validation = args.run.val_data.as_deref().map(|root| open_validation(root, args.run.val_classes.as_deref())).transpose()?;
    let mut progress = EpochProgress { bar: None };
    let summary = match protocol {
        Protocol::FewShot => {
            let classes = index.classes();
            let [class] = classes.as_slice() else {
                bail!("MVFA few-shot trains one class at a time: {} has {} ({}); pick one with --classes", args.data.dataset.data.display(), classes.len(), classes.join(", "));
            };
            let class = class.to_string();
            let (abnormal, normal) = match &args.seed_list {
                Some(list) => {
                    let text = std::fs::read_to_string(list).with_context(|| format!("reading the seed list {}", list.display()))?;
                    let seeds = vlad_data::readers::parse_fewshot_seed(&text, list)?;
                    vlad_data::readers::fewshot_samples(&index, &class, &seeds, args.iterate, list)?
                }
                None => {
                    let split = split_arg(&args.shots_split, "--shots-split")?;
                    let shots = vlad_data::sample_class(&index, &class, split, args.shots, args.shots, args.seed, vlad_data::Replacement::Without)
                        .with_context(|| format!("drawing {} anomalous and {} normal shots of {class:?} from its {} split (pass --shots-split or --seed-list)", args.shots, args.shots, split.as_str()))?;
                    (shots.anomalous, shots.normal)
                }
            };
            if let Some(missing) = abnormal.iter().find(|x| x.mask_path.is_none()) {
                bail!("{}: an anomalous shot without a mask (MVFA's seg loss needs one)", missing.image_path.display());
            }
            // Selection: the official target test split, else --val-data, else the rest of the pool.
            let chosen: std::collections::BTreeSet<&Path> = abnormal.iter().chain(&normal).map(|x| x.image_path.as_path()).collect();
            let (samples, shots_for_memory, source): (Vec<Sample>, Vec<Sample>, String) = if args.select_on_target_test {
                let test: Vec<Sample> = index.split(Split::Test).filter(|x| x.class_name == class).cloned().collect();
                (test, normal.clone(), format!("the test split of {} (official: the reported data selects the model)", args.data.dataset.data.display()))
            } else if let Some(val) = &validation {
                let root = args.run.val_data.as_deref().expect("validation comes from --val-data");
                let val_index = vlad_data::open_dataset(root, &OpenOptions { format: FormatChoice::Auto, metadata: None, visa_split_csv: None })?;
                let memory = vlad_data::reference_shots(&val_index, &class, args.shots, args.seed, vlad_data::Replacement::Without)
                    .with_context(|| format!("{}: normal shots of {class:?} for the selection memory", root.display()))?;
                (val.iter().filter(|x| x.class_name == class).cloned().collect(), memory, format!("{} (held out; memory from its train split)", root.display()))
            } else {
                let split = if args.seed_list.is_some() { Split::Train } else { split_arg(&args.shots_split, "--shots-split")? };
                let rest: Vec<Sample> = index.split(split).filter(|x| x.class_name == class && !chosen.contains(x.image_path.as_path())).cloned().collect();
                (rest, normal.clone(), format!("the {} images of the {} pool that are not shots (held out)", class, split.as_str()))
            };
            let both = samples.iter().any(|x| x.label == Label::Anomalous) && samples.iter().any(|x| x.label == Label::Normal);
            let selection_samples = if both { Some(samples) } else {
                eprintln!("note: no model selection ({source} lacks normal or anomalous images); the last epoch is the result");
                None
            };
            let images = few_shot_images(&abnormal, &normal, s, &device)?;
            eprintln!(
                "training MVFA few-shot on {class:?}: {} anomalous + {} normal shots → {} augmented images, input {s}, taps {:?}, backbone {}; selection on {}",
                abnormal.len(),
                normal.len(),
                images.len(),
                options.config.taps,
                clip.config.name,
                if selection_samples.is_some() { source.as_str() } else { "nothing" }
            );
            let data = selection_samples.as_ref().map(|samples| SelectionData { samples, normal_shots: Some(&shots_for_memory) });
            mvfa_train(&clip, TrainSet::InMemory(images), data.as_ref(), &options, &args.data.out, args.run.force, &mut progress)?
        }
        Protocol::ZeroShot => {
            if args.select_on_target_test {
                bail!("--select-on-target-test is the few-shot protocol's; the official zero-shot run selects on the target's test split: pass the target dataset as --val-data");
            }
            let split = args.data.split()?;
            let samples: Vec<Sample> = index.split(split).cloned().collect();
            if samples.is_empty() {
                bail!("{}: no {} images to train on", args.data.dataset.data.display(), split.as_str());
            }
            if validation.is_none() {
                eprintln!("note: no --val-data, so no model selection; the last checkpoint is the result");
            }
            eprintln!(
                "training MVFA zero-shot on {} images of {} class(es) from {}, input {s}, taps {:?}, backbone {}",
                samples.len(),
                index.classes().len(),
                args.data.dataset.data.display(),
                options.config.taps,
                clip.config.name
            );
            let data = validation.as_ref().map(|samples| SelectionData { samples, normal_shots: None });
            mvfa_train(&clip, TrainSet::Files(&samples), data.as_ref(), &options, &args.data.out, args.run.force, &mut progress)?
        }
    };
    if let Some(bar) = progress.bar.take() {
        bar.finish();
    }
    std::fs::write(args.data.out.join("summary.json"), serde_json::to_string_pretty(&summary)?)?;
    if let Some(best) = &summary.best {
        eprintln!("best score {:.4} at epoch {} step {}", best.score, best.epoch, best.step);
    }
    let shots = if protocol == Protocol::FewShot { format!(" --shots {}", args.shots) } else { String::new() };
    eprintln!(
        "done in {:.0} s; checkpoint {} (use: vlad eval --detector mvfa --checkpoint {}{shots} …)",
        started.elapsed().as_secs_f64(),
        summary.checkpoint.display(),
        summary.checkpoint.display()
    );
    Ok(())
}
