//! Detector selection, shared by `vlad infer` and `vlad eval`: the detector name, its options and
//! the backbone, plus the reference-image handling (few-shot memory and single-image calibration)
//! that both commands need.
use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use vlad_detect::aa_clip::{AaClip, AaClipOptions, Domain};
use vlad_detect::bayes_pfl::{BayesPfl, BayesPflOptions, NoiseMode, Stage as PflStage, StageChoice};
use vlad_detect::calibration::{Calibration, ScoreCalibration};
use vlad_detect::prompts::Averaging;
use vlad_detect::anomaly_clip::{AnomalyClip, AnomalyClipOptions};
use vlad_detect::clip_ad::{ClipAd, ClipAdConfig, ClipAdOptions, Rvs};
use vlad_detect::vand::{Vand, VandOptions};
use vlad_detect::winclip::{WinClip, WinClipConfig};
use vlad_detect::zero_shot::{ZeroShotClip, ZeroShotConfig, ZeroShotPrompts};
use vlad_detect::{DetectError, Detector};

use super::common::{ModelArgs, host_values, parse_list};

/// The detectors this front end can build.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DetectorKind {
    /// Plain CLIP zero-shot (the papers' "CLIP" row).
    #[value(name = "zero-shot")]
    ZeroShot,
    /// WinCLIP (zero-shot); WinCLIP+ when reference images are given.
    #[value(name = "winclip")]
    WinClip,
    /// AA-CLIP (residual adapters; needs `--checkpoint`).
    #[value(name = "aa-clip")]
    AaClip,
    /// Bayes-PFL (Bayesian prompt flow; needs `--checkpoint`).
    #[value(name = "bayes-pfl")]
    BayesPfl,
    /// VAND / APRIL-GAN (linear layers on four taps; needs `--checkpoint`); few-shot with
    /// reference images.
    #[value(name = "vand", alias = "april-gan")]
    Vand,
    /// CLIP-AD SDP (training-free staged dual path).
    #[value(name = "clip-ad", alias = "sdp")]
    ClipAd,
    /// CLIP-AD SDP+ (SDP plus trained linear layers; needs `--checkpoint`).
    #[value(name = "clip-ad-plus", alias = "sdp-plus")]
    ClipAdPlus,
    /// AnomalyCLIP (object-agnostic learned prompts, DPAM; needs `--checkpoint`).
    #[value(name = "anomaly-clip", alias = "anomalyclip")]
    AnomalyClip,
    /// AdaCLIP (hybrid static + dynamic prompts on both towers, HSF; needs `--checkpoint`).
    #[value(name = "ada-clip", alias = "adaclip")]
    AdaClip,
    /// MVFA-AD zero-shot (multi-level adapters modifying the stream, medical; needs `--checkpoint`).
    #[value(name = "mvfa", alias = "mvfa-ad")]
    Mvfa,
}

/// `--adaclip-kmeans`: how HSF's k-means is seeded.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KMeansChoice {
    /// Every image from `np.random.seed(111)` (the official single-image run; each image's score
    /// independent of the others).
    PerImage,
    /// One stream from `np.random.seed(111)` over the images in order (the official dataset run
    /// of test.py; scores depend on the order).
    Stream,
}

/// `--clip-ad-rvs`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RvsChoice {
    /// The normalised mean of the sentence embeddings.
    Mean,
    /// DBSCAN eps 0.5 / min_samples 15 (the scripts for every dataset but VisA).
    Dbscan,
    /// DBSCAN eps 1.5 / min_samples 25 (the scripts for VisA).
    DbscanVisa,
}

impl RvsChoice {
    /// The RVS rule.
    pub fn rvs(self) -> Rvs {
        match self {
            Self::Mean => Rvs::Mean,
            Self::Dbscan => Rvs::official_for("mvtec"),
            Self::DbscanVisa => Rvs::official_for("visa"),
        }
    }
}

/// `--zs-prompts`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PromptChoice {
    /// "a photo of a normal {}." / "a photo of an anomalous {}.".
    Single,
    /// WinCLIP's compositional ensemble (147 + 84 prompts), normalised means.
    Winclip,
}

/// `--winclip-text-averaging`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AveragingChoice {
    /// Mean of the raw embeddings (anomalib, zqhang).
    Raw,
    /// Normalise, average, renormalise (mala-lab).
    Normalized,
}

/// `--mvfa-head`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MvfaHeadChoice {
    /// By class name, as `CLASS_INDEX` of `test_few.py` (Retina_OCT2017, Chest, Histopathology
    /// classify; everything else segments).
    Auto,
    /// The `seg` adapters: fused maps, image score their maximum.
    Seg,
    /// The `det` adapters: image scores from `det` and the mean few-shot map.
    Det,
}

/// Which detector, its options and its backbone.
#[derive(clap::Args, Debug, Clone)]
pub struct DetectorArgs {
    /// Detector.
    #[arg(long, value_enum)]
    pub detector: DetectorKind,
    #[command(flatten)]
    pub model: ModelArgs,
    /// zero-shot: prompt set.
    #[arg(long, value_enum, default_value_t = PromptChoice::Single)]
    pub zs_prompts: PromptChoice,
    /// zero-shot: logit scale 1/τ.
    #[arg(long, default_value_t = 100.0)]
    pub zs_logit_scale: f32,
    /// zero-shot: input side (default: the architecture's native size).
    #[arg(long)]
    pub zs_image_size: Option<usize>,
    /// zero-shot: Gaussian σ (scipy convention, truncate 4) on the output map; none by default.
    #[arg(long)]
    pub zs_sigma: Option<f64>,
    /// winclip: softmax temperature τ (anomalib 0.07; some re-implementations use 0.01).
    #[arg(long, default_value_t = 0.07)]
    pub winclip_temperature: f32,
    /// winclip: window sides in patches.
    #[arg(long, default_value = "2,3")]
    pub winclip_scales: String,
    /// winclip: how prompt embeddings are averaged into the two prototypes.
    #[arg(long, value_enum, default_value_t = AveragingChoice::Raw)]
    pub winclip_text_averaging: AveragingChoice,
    /// aa-clip, bayes-pfl, vand: the trained weights. AA-CLIP: a training directory or the files
    /// (`text_adapter.*`, `image_adapter[_N].*`, official `.pth` or vlad safetensors). Bayes-PFL:
    /// one file (the released `{'MyModel': …}` `.pth`, or vlad's burnpack). VAND: one file (the
    /// official `{'trainable_linearlayer': …}` `.pth`, or vlad's safetensors).
    #[arg(long, num_args = 1..)]
    pub checkpoint: Vec<std::path::PathBuf>,
    /// aa-clip: `image_adapter_N` of a checkpoint directory (default 15 when present, else the latest).
    #[arg(long)]
    pub aa_epoch: Option<usize>,
    /// aa-clip: input side (default: the checkpoint's, else 518).
    #[arg(long)]
    pub aa_image_size: Option<usize>,
    /// aa-clip: industrial or medical (blur and score fusion; default from the class).
    #[arg(long)]
    pub aa_domain: Option<String>,
    /// aa-clip: phrase used in the prompts instead of the class's real name.
    #[arg(long)]
    pub aa_real_name: Option<String>,
    /// aa-clip: keep the backbone's activation and positional rule (default: exact GELU and rule A,
    /// as the official model).
    #[arg(long)]
    pub aa_keep_activation: bool,
    /// bayes-pfl: R, Monte-Carlo samples per image (official test 10).
    #[arg(long, visible_alias = "samples", default_value_t = 10)]
    pub pfl_samples: usize,
    /// bayes-pfl: input side (official 518).
    #[arg(long, default_value_t = 518)]
    pub pfl_image_size: usize,
    /// bayes-pfl: 1-based backbone blocks feeding the head (official 6,12,18,24).
    #[arg(long, default_value = "6,12,18,24")]
    pub pfl_taps: String,
    /// bayes-pfl: Monte-Carlo noise: `sample` (seeded normals) or `zero` (the flows' means).
    #[arg(long, visible_alias = "mc-noise", default_value = "sample")]
    pub pfl_noise: String,
    /// bayes-pfl: seed of the Monte-Carlo noise (official 333).
    #[arg(long, visible_alias = "mc-seed", default_value_t = 333)]
    pub pfl_seed: u64,
    /// bayes-pfl: Gaussian σ of the output map (scipy convention; official 8; 0 for none).
    #[arg(long, default_value_t = 8.0)]
    pub pfl_sigma: f64,
    /// bayes-pfl: top-k of the map score (default: the official per-class rule, 20 or 2000).
    #[arg(long)]
    pub pfl_top_k: Option<usize>,
    /// bayes-pfl: image-head stage 1 or 2 (default: from the checkpoint).
    #[arg(long)]
    pub pfl_stage: Option<u8>,
    /// vand: input side (default: the checkpoint's, else 37 patches a side = 518 for ViT-L-14-336).
    #[arg(long)]
    pub vand_image_size: Option<usize>,
    /// vand: 1-based blocks feeding the linear layers (default: the checkpoint's, else the quarters
    /// of the vision depth, 6,12,18,24 for ViT-L).
    #[arg(long)]
    pub vand_taps: Option<String>,
    /// vand: 1-based blocks of the few-shot memory (default: the same as the taps, as the official
    /// scripts).
    #[arg(long)]
    pub vand_few_shot_taps: Option<String>,
    /// vand: keep the backbone's activation and positional rule (default: exact GELU and rule A, as
    /// the official model at 518).
    #[arg(long)]
    pub vand_keep_activation: bool,
    /// clip-ad, clip-ad-plus: representative vector selection of the prototypes (the scripts:
    /// `dbscan`, `dbscan-visa` when testing VisA).
    #[arg(long, value_enum, default_value_t = RvsChoice::Dbscan)]
    pub clip_ad_rvs: RvsChoice,
    /// clip-ad, clip-ad-plus: Gaussian σ at the output size (official 8; SDP+ on VisA 2; 0 for none).
    #[arg(long, default_value_t = 8.0)]
    pub clip_ad_sigma: f64,
    /// clip-ad, clip-ad-plus: input side (default: the backbone's native size, 240 for ViT-B-16-plus-240).
    #[arg(long)]
    pub clip_ad_image_size: Option<usize>,
    /// clip-ad, clip-ad-plus: clean taps instead of the official in-place aliasing (not what the
    /// released SDP+ layers were trained on).
    #[arg(long)]
    pub clip_ad_clean_taps: bool,
    /// anomaly-clip: DPAM taps (the released models: the last block, 24; the CLI default of the
    /// official test script, 6,12,18,24, is a different model).
    #[arg(long)]
    pub anomalyclip_taps: Option<String>,
    /// anomaly-clip: input side (default: the checkpoint's, else 518 for ViT-L/14).
    #[arg(long)]
    pub anomalyclip_image_size: Option<usize>,
    /// anomaly-clip: Gaussian σ (official 4; 0 for none).
    #[arg(long, default_value_t = 4.0)]
    pub anomalyclip_sigma: f64,
    /// ada-clip: input side (default: the checkpoint's, else 518 for ViT-L/14).
    #[arg(long)]
    pub adaclip_image_size: Option<usize>,
    /// ada-clip: Gaussian σ (official 4; 0 for none).
    #[arg(long, default_value_t = 4.0)]
    pub adaclip_sigma: f64,
    /// ada-clip: image score from the projected CLS alone (`--use_hsf False`).
    #[arg(long)]
    pub adaclip_no_hsf: bool,
    /// ada-clip: seeding of HSF's k-means.
    #[arg(long, value_enum, default_value_t = KMeansChoice::PerImage)]
    pub adaclip_kmeans: KMeansChoice,
    /// ada-clip: keep the backbone's activation and positional rule (default: exact GELU and
    /// rule B, as the official model at 518).
    #[arg(long)]
    pub adaclip_keep_activation: bool,
    /// mvfa: input side (default 240, `--img_size` of the official scripts).
    #[arg(long)]
    pub mvfa_image_size: Option<usize>,
    /// mvfa with --shots: which adapters score the few-shot memory.
    #[arg(long, value_enum, default_value_t = MvfaHeadChoice::Auto)]
    pub mvfa_head: MvfaHeadChoice,
}

/// Builds the detector on `device` (class not set yet).
pub fn build_detector(args: &DetectorArgs, device: &Device) -> Result<Box<dyn Detector>> {
    let model = args.model.load(device)?;
    Ok(match args.detector {
        DetectorKind::ZeroShot => {
            let size = args.zs_image_size.unwrap_or(model.config.vision.image_size);
            let config = ZeroShotConfig {
                prompts: match args.zs_prompts {
                    PromptChoice::Single => ZeroShotPrompts::Single,
                    PromptChoice::Winclip => ZeroShotPrompts::WinClipEnsemble,
                },
                logit_scale: args.zs_logit_scale,
                image_size: size,
                smoothing_sigma: args.zs_sigma,
            };
            Box::new(ZeroShotClip::new(model, config)?)
        }
        DetectorKind::WinClip => {
            if model.config.name != "ViT-B-16-plus-240" {
                eprintln!("note: WinCLIP was published on ViT-B-16-plus-240; running it on {} at its native size", model.config.name);
            }
            let config = WinClipConfig {
                scales: parse_list(&args.winclip_scales, "--winclip-scales")?,
                temperature: args.winclip_temperature,
                text_averaging: match args.winclip_text_averaging {
                    AveragingChoice::Raw => Averaging::RawMean,
                    AveragingChoice::Normalized => Averaging::NormalizedMean,
                },
            };
            Box::new(WinClip::new(model, config)?)
        }
        DetectorKind::AaClip => {
            if args.checkpoint.is_empty() {
                bail!("aa-clip needs --checkpoint (a `vlad train aa-clip` output directory or the adapter files)");
            }
            let options = AaClipOptions {
                image_size: args.aa_image_size,
                domain: args.aa_domain.as_deref().map(Domain::parse).transpose()?,
                real_name: args.aa_real_name.clone(),
                calibration: None,
                keep_backbone_settings: args.aa_keep_activation,
                epoch: args.aa_epoch,
            };
            let (detector, notes) = AaClip::load(model, &args.checkpoint, options)?;
            for note in notes {
                eprintln!("note: {note}");
            }
            Box::new(detector)
        }
        DetectorKind::BayesPfl => {
            let [checkpoint] = args.checkpoint.as_slice() else {
                bail!("bayes-pfl needs exactly one --checkpoint file, got {}", args.checkpoint.len());
            };
            let noise = match args.pfl_noise.as_str() {
                "sample" => NoiseMode::Sample { seed: args.pfl_seed },
                "zero" => NoiseMode::Zero,
                other => bail!("--pfl-noise: expected `sample` or `zero`, got `{other}`"),
            };
            let stage = match args.pfl_stage {
                None => StageChoice::FromFile,
                Some(1) => StageChoice::Fixed(PflStage::One),
                Some(2) => StageChoice::Fixed(PflStage::Two),
                Some(other) => bail!("--pfl-stage: expected 1 or 2, got {other}"),
            };
            let options = BayesPflOptions {
                taps: parse_list(&args.pfl_taps, "--pfl-taps")?,
                image_size: args.pfl_image_size,
                samples: args.pfl_samples,
                noise,
                stage,
                smoothing_sigma: (args.pfl_sigma > 0.0).then_some(args.pfl_sigma),
                top_k: args.pfl_top_k,
                allow_partial: args.model.allow_partial,
                ..BayesPflOptions::default()
            };
            Box::new(BayesPfl::new(model, checkpoint, options)?)
        }
        DetectorKind::Vand => {
            let [checkpoint] = args.checkpoint.as_slice() else {
                bail!(
                    "vand needs exactly one --checkpoint file (the official `epoch_N.pth` / `*_pretrained.pth` or a `vlad train vand` file), got {}",
                    args.checkpoint.len()
                );
            };
            let taps = args.vand_taps.as_deref().map(|t| parse_list(t, "--vand-taps")).transpose()?;
            let file = vlad_detect::vand::checkpoint::open(checkpoint)?;
            let weights = vlad_detect::vand::checkpoint::load_weight_file(&file, &model.config, taps.as_deref(), device)?;
            let options = VandOptions {
                image_size: args.vand_image_size,
                few_shot_taps: args.vand_few_shot_taps.as_deref().map(|t| parse_list(t, "--vand-few-shot-taps")).transpose()?,
                keep_backbone_settings: args.vand_keep_activation,
            };
            Box::new(Vand::from_weights(model, weights, options)?)
        }
        DetectorKind::ClipAd | DetectorKind::ClipAdPlus => {
            if model.config.name != "ViT-B-16-plus-240" {
                eprintln!("note: CLIP-AD was published on ViT-B-16-plus-240; running it on {}", model.config.name);
            }
            let config = ClipAdConfig {
                rvs: args.clip_ad_rvs.rvs(),
                sigma: (args.clip_ad_sigma > 0.0).then_some(args.clip_ad_sigma),
                clean_taps: args.clip_ad_clean_taps,
                ..ClipAdConfig::for_backbone(&model.config)
            };
            let layers = match (args.detector, args.checkpoint.as_slice()) {
                (DetectorKind::ClipAd, []) => None,
                (DetectorKind::ClipAd, _) => bail!("clip-ad (SDP) takes no checkpoint; use --detector clip-ad-plus for SDP+"),
                (_, [checkpoint]) => {
                    let file = vlad_detect::vand::checkpoint::open_keyed(checkpoint, vlad_detect::clip_ad::TOP_LEVEL_KEY)?;
                    Some(vlad_detect::vand::checkpoint::load_weight_file(&file, &model.config, Some(&config.taps), device)?.layers)
                }
                (_, files) => bail!(
                    "clip-ad-plus needs exactly one --checkpoint file (the released train_on_mvtec.pth / train_on_visa.pth or a `vlad train clip-ad` file), got {}",
                    files.len()
                ),
            };
            Box::new(ClipAd::new(model, layers, config, ClipAdOptions { image_size: args.clip_ad_image_size })?)
        }
        DetectorKind::AnomalyClip => {
            let [checkpoint] = args.checkpoint.as_slice() else {
                bail!("anomaly-clip needs exactly one --checkpoint file (a released epoch_N.pth or a `vlad train anomaly-clip` file), got {}", args.checkpoint.len());
            };
            let file = vlad_detect::anomaly_clip::checkpoint::open(checkpoint)?;
            let mut weights = vlad_detect::anomaly_clip::checkpoint::load_weight_file(&file, &model.config, device)?;
            for note in &weights.notes {
                eprintln!("note: {note}");
            }
            weights.config.sigma = (args.anomalyclip_sigma > 0.0).then_some(args.anomalyclip_sigma);
            let options = AnomalyClipOptions {
                image_size: args.anomalyclip_image_size,
                taps: args.anomalyclip_taps.as_deref().map(|t| parse_list(t, "--anomalyclip-taps")).transpose()?,
                keep_backbone_settings: false,
            };
            Box::new(AnomalyClip::from_weights(model, weights, options)?)
        }
        DetectorKind::AdaClip => {
            use vlad_detect::ada_clip::{AdaClip, AdaClipOptions, KMeansSeeding, NUMPY_SEED};
            let [checkpoint] = args.checkpoint.as_slice() else {
                bail!(
                    "ada-clip needs exactly one --checkpoint file (a released pretrained_*.pth or a `vlad train ada-clip` file), got {}",
                    args.checkpoint.len()
                );
            };
            let file = vlad_detect::ada_clip::checkpoint::open(checkpoint)?;
            let mut weights = vlad_detect::ada_clip::checkpoint::load_weight_file(&file, &model.config, device)?;
            weights.config.sigma = (args.adaclip_sigma > 0.0).then_some(args.adaclip_sigma);
            let seeding = match args.adaclip_kmeans {
                KMeansChoice::PerImage => KMeansSeeding::PerImage(NUMPY_SEED),
                KMeansChoice::Stream => KMeansSeeding::Stream(NUMPY_SEED),
            };
            let options = AdaClipOptions {
                image_size: args.adaclip_image_size,
                keep_backbone_settings: args.adaclip_keep_activation,
                no_hsf: args.adaclip_no_hsf,
                seeding: Some(seeding),
            };
            Box::new(AdaClip::from_weights(model, weights, options)?)
        }
        DetectorKind::Mvfa => {
            use vlad_detect::mvfa::{Mvfa, MvfaOptions};
            let [checkpoint] = args.checkpoint.as_slice() else {
                bail!("mvfa needs exactly one --checkpoint file (a released ckpt/zero-shot/<obj>.pth), got {}", args.checkpoint.len());
            };
            let file = vlad_detect::mvfa::checkpoint::open(checkpoint)?;
            let weights = vlad_detect::mvfa::checkpoint::load_weight_file(&file, &model.config, device)?;
            let head = match args.mvfa_head {
                MvfaHeadChoice::Auto => None,
                MvfaHeadChoice::Seg => Some(vlad_detect::mvfa::MvfaHead::Segmentation),
                MvfaHeadChoice::Det => Some(vlad_detect::mvfa::MvfaHead::Classification),
            };
            Box::new(Mvfa::from_weights(model, weights, MvfaOptions { image_size: args.mvfa_image_size, head, ..Default::default() })?)
        }
    })
}

/// A stored calibration: the statistics and what they were measured for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationFile {
    /// Detector name (`Detector::name`).
    pub detector: String,
    /// Class the prompts were built for.
    pub class: String,
    /// Number of normal reference images measured.
    pub references: usize,
    /// Whether each reference was scored against a memory of the others (few-shot detectors).
    pub leave_one_out: bool,
    /// The statistics.
    pub calibration: Calibration,
}

impl CalibrationFile {
    /// Reads a calibration and checks that it belongs to `detector` and `class`.
    pub fn load(path: &Path, detector: &str, class: &str) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read calibration {}", path.display()))?;
        let file: Self = serde_json::from_str(&text).with_context(|| format!("{}: not a vlad calibration file", path.display()))?;
        if file.detector != detector || file.class != class {
            bail!(
                "{}: calibration of detector `{}` for class `{}`, but this run is `{detector}` for `{class}`",
                path.display(),
                file.detector,
                file.class
            );
        }
        Ok(file)
    }

    /// Writes the calibration as JSON (refuses to replace a file unless `overwrite`).
    pub fn save(&self, path: &Path, overwrite: bool) -> Result<()> {
        if path.exists() && !overwrite {
            bail!("{}: already exists (pass --force to replace it)", path.display());
        }
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Raw image scores `[B]` and maps `[B, S·S]` of a batch, on the host.
pub struct HostDetection {
    /// Image scores.
    pub scores: Vec<f32>,
    /// Maps, row-major, one `S·S` block per image.
    pub maps: Vec<f32>,
    /// Map side S.
    pub side: usize,
    /// Named score components, each `[B]`.
    pub components: Vec<(String, Vec<f32>)>,
    /// Named map components, each `[B, S·S]` ([`vlad_detect::Detection::map_components`]).
    pub map_components: Vec<(String, Vec<f32>)>,
}

/// Runs the detector on `pixels` `[B, 3, S, S]` and reads the results back.
pub fn detect_host(detector: &dyn Detector, pixels: Tensor<4>) -> Result<HostDetection> {
    let out = detector.detect(pixels)?;
    let side = out.map.dims()[1];
    let components = out.components.into_iter().map(|(name, t)| Ok((name, host_values(t)?))).collect::<Result<Vec<_>>>()?;
    let map_components = out.map_components.into_iter().map(|(name, t)| Ok((name, host_values(t)?))).collect::<Result<Vec<_>>>()?;
    Ok(HostDetection { scores: host_values(out.image_score)?, maps: host_values(out.map)?, side, components, map_components })
}

/// What was done with the normal reference images.
pub struct ReferenceOutcome {
    /// The detector keeps them as its few-shot memory.
    pub memory: bool,
    /// Statistics measured on them (`None` when they cannot be measured without bias).
    pub calibration: Option<CalibrationFile>,
}

/// Uses normal reference images `[K, 3, S, S]` of `class`: as the few-shot memory when the
/// detector has one, and to measure a single-image calibration. A detector with a memory would
/// score its own references as perfectly normal, so each reference is then scored against a memory
/// of the *other* K − 1 (leave-one-out; slightly conservative, since the final memory has K
/// images), which needs K ≥ 2. Detectors without a memory score all K as they are.
pub fn use_references(detector: &mut dyn Detector, class: &str, references: &[Vec<f32>], batch_size: usize) -> Result<ReferenceOutcome> {
    let device = detector.device();
    let pre = detector.preprocess();
    let k = references.len();
    if k == 0 {
        bail!("no reference images");
    }
    let all = pre.batch(references, &device)?;
    let memory = match detector.fit_reference(all) {
        Ok(()) => true,
        Err(DetectError::Unsupported { .. }) => false,
        Err(e) => return Err(e.into()),
    };
    let mut scores = Vec::with_capacity(k);
    let mut pixels = Vec::new();
    if memory {
        if k < 2 {
            eprintln!("note: calibration needs at least 2 reference images with {} (leave-one-out); scores stay raw", detector.name());
            return Ok(ReferenceOutcome { memory, calibration: None });
        }
        for i in 0..k {
            let others: Vec<Vec<f32>> = references.iter().enumerate().filter(|&(j, _)| j != i).map(|(_, r)| r.clone()).collect();
            detector.fit_reference(pre.batch(&others, &device)?)?;
            let out = detect_host(detector, pre.batch(std::slice::from_ref(&references[i]), &device)?)?;
            scores.extend(out.scores);
            pixels.extend(out.maps);
        }
        detector.fit_reference(pre.batch(references, &device)?)?;
    } else {
        for chunk in references.chunks(batch_size.max(1)) {
            let out = detect_host(detector, pre.batch(chunk, &device)?)?;
            scores.extend(out.scores);
            pixels.extend(out.maps);
        }
    }
    let measure = |values: &[f32], what: &str| {
        ScoreCalibration::from_normal(values).with_context(|| format!("the reference images gave no finite {what}"))
    };
    let calibration = Calibration { image: measure(&scores, "image score")?, pixel: measure(&pixels, "map value")? };
    Ok(ReferenceOutcome {
        memory,
        calibration: Some(CalibrationFile {
            detector: detector.name().to_string(),
            class: class.to_string(),
            references: k,
            leave_one_out: memory,
            calibration,
        }),
    })
}
