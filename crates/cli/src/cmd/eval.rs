//! `vlad eval`: runs a detector over the test split of a dataset and reports the papers' metrics
//! per class and their unweighted mean (`spec/evaluation.md` §1–§3, §7).
//!
//! Per class: the detector is told the class; normal reference images (`--shots`, or every train
//! normal for the built-in baseline, which needs them) are fitted; test images are scored in
//! batches; ground-truth masks are brought to the map size with the method's mask rule. Maps (f32)
//! and masks (u8) of the class are kept until its metrics are computed, then dropped, so memory is
//! bounded by the largest class (an MVTec class at 518² is about 45 M pixels: 0.2 GB of maps,
//! 0.05 GB of masks, plus the metrics' sort keys).
//!
//! Image metrics use the score the method's tables use: with `--set-fusion official` (the default)
//! and a detector that defines a transductive per-class fusion (`SetFusion`), the fused score; the
//! raw single-image score's metrics are reported beside them as `deployable`. Pixel metrics use the
//! raw maps (the official min–max of all maps of a class is monotone and leaves them unchanged).
//!
//! Outputs: the Markdown table on stdout; `--out R.json` (with `R.csv` and `R.md` beside it, and
//! `R.deployable.csv` when a fusion was applied); `--save-maps DIR` (raw maps as `.npy`, mirroring
//! the dataset's relative image paths); `--plots DIR` (ROC, PR and PRO curves per class as PNG). No
//! existing file is replaced without `--force`. Unreadable images are reported, skipped and listed.
use std::collections::{BTreeMap, HashSet};
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command, FromArgMatches, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use plotters::chart::SeriesLabelPosition;
use rayon::prelude::*;
use serde::Serialize;
use serde_json::Value;
use vlad_data::load::resize_binary_mask;
use vlad_data::{DatasetIndex, Label, LoadOptions, MaskRule, Replacement, Sample, Split};

use super::common::DatasetArgs;
use vlad_detect::baseline::{BaselineConfig, MeanImageBaseline};
use vlad_detect::postprocess::top_k_mean;
use vlad_detect::{DetectError, Detector, MapRange, MapStatistic, SetFusion};
use vlad_metrics::{
    ApConvention, BinaryMetrics, ClassMetrics, MapShape, MetricsTable, PixelEvaluator, PixelMetrics, ProConvention, ProCurve,
    UndefinedPolicy,
};

use super::detector::{DetectorArgs, DetectorKind, build_detector, detect_host};
use crate::npy;
use crate::plot::{self, Chart, Curve, ReferenceLine};

/// The detector name handled here rather than by the shared `build_detector`.
const BASELINE: &str = "baseline";

/// Points kept per curve in the plots (pixel curves can have millions).
const PLOT_POINTS: usize = 2000;

// ------------------------------------------------------------------------------------------------
// Arguments
// ------------------------------------------------------------------------------------------------

/// `vlad eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub detector: EvalDetectorArgs,
    #[command(flatten)]
    pub dataset: DatasetArgs,
    /// Only these classes (comma-separated), in the dataset's order.
    #[arg(long, value_delimiter = ',')]
    pub classes: Option<Vec<String>>,
    /// Normal reference images per class from its train split: a number K (seeded k-shot draw,
    /// distinct images) or `all`. Default: `all` for the baseline (it needs them), none otherwise.
    #[arg(long, value_parser = parse_shots)]
    pub shots: Option<Shots>,
    /// Seed of the k-shot draw.
    #[arg(long, default_value_t = 111)]
    pub seed: u64,
    /// Images per forward pass.
    #[arg(long, visible_alias = "batch", default_value_t = 8)]
    pub batch_size: usize,
    /// How ground-truth masks are resized to the map size: nearest (AA-CLIP, WinCLIP/anomalib,
    /// MVFA) or bilinear-threshold (VAND, AnomalyCLIP, AdaCLIP, Bayes-PFL). Default: the
    /// detector's method's rule (spec §3).
    #[arg(long, value_enum)]
    pub mask_rule: Option<MaskRuleChoice>,
    /// AUPRO convention: anomalib (= official MVTec), anomalib-legacy (anomalib ≤ 2.2), clipad
    /// (VAND / AnomalyCLIP: 200 thresholds, rescaled FPR), or none.
    #[arg(long, value_enum, default_value_t = ProChoice::Anomalib)]
    pub pro: ProChoice,
    /// AP definition: step (sklearn, the papers) or trapezoid (anomalib ≤ 2.6).
    #[arg(long, value_enum, default_value_t = ApChoice::Step)]
    pub ap: ApChoice,
    /// Count undefined metrics (e.g. image AUROC of an all-anomalous class) as 0 in the mean, as the
    /// repositories print them; by default they are left out and noted.
    #[arg(long)]
    pub zero_undefined: bool,
    /// Image scores for the metrics: `official` applies the detector's transductive per-class
    /// fusion where it defines one (parity with the papers' tables); `none` uses the raw score.
    #[arg(long, value_enum, default_value_t = FusionChoice::Official)]
    pub set_fusion: FusionChoice,
    /// Write every raw map as f32 `.npy` `[S, S]` under this folder.
    #[arg(long)]
    pub save_maps: Option<PathBuf>,
    /// Write ROC, PR and PRO curves per class as PNG under this folder.
    #[arg(long)]
    pub plots: Option<PathBuf>,
    /// Results JSON; the CSV and Markdown tables are written beside it.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Decimals of the percentages in the printed table.
    #[arg(long, default_value_t = 1)]
    pub decimals: usize,
    /// Replace existing output files.
    #[arg(long)]
    pub force: bool,
}

/// `--shots`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shots {
    /// Every normal image of the class's train split.
    All,
    /// K distinct images drawn with the seeded k-shot sampler.
    K(usize),
}

fn parse_shots(s: &str) -> Result<Shots, String> {
    match s {
        "all" => Ok(Shots::All),
        _ => match s.parse::<usize>() {
            Ok(0) | Err(_) => Err(format!("`{s}` is neither `all` nor a number of images ≥ 1")),
            Ok(k) => Ok(Shots::K(k)),
        },
    }
}

impl Shots {
    fn describe(self) -> String {
        match self {
            Shots::All => "all".into(),
            Shots::K(k) => k.to_string(),
        }
    }
}

/// `--mask-rule`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskRuleChoice {
    /// PIL NEAREST, then `!= 0`.
    Nearest,
    /// PIL bilinear on the 0/255 mask, then `> 0.5`.
    BilinearThreshold,
}

impl MaskRuleChoice {
    fn rule(self) -> MaskRule {
        match self {
            MaskRuleChoice::Nearest => MaskRule::Nearest,
            MaskRuleChoice::BilinearThreshold => MaskRule::BilinearThreshold,
        }
    }
}

/// The mask rule of the method a detector reproduces (spec §3). Plain CLIP is the "CLIP" row of
/// the AnomalyCLIP tables, so it follows AnomalyCLIP; WinCLIP follows anomalib; the baseline (no
/// paper) uses nearest, the rule of the official MVTec protocol's anomalib port.
fn default_mask_rule(detector: &str) -> MaskRule {
    match detector {
        "zero-shot" | "vand" | "april-gan" | "anomalyclip" | "anomaly-clip" | "adaclip" | "ada-clip" | "bayes-pfl" | "clip-ad" | "clip-ad-plus" => MaskRule::BilinearThreshold,
        _ => MaskRule::Nearest,
    }
}

fn mask_rule_name(rule: MaskRule) -> &'static str {
    match rule {
        MaskRule::Nearest => "nearest",
        MaskRule::BilinearThreshold => "bilinear-threshold",
    }
}

/// `--pro`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProChoice {
    /// Official MVTec / anomalib ≥ 2.3.
    #[value(alias = "mvtec")]
    Anomalib,
    /// anomalib ≤ 2.2 (per-region resampled curves).
    AnomalibLegacy,
    /// VAND / AnomalyCLIP (CLIP-AD).
    #[value(alias = "clip-ad")]
    Clipad,
    /// No AUPRO.
    None,
}

impl ProChoice {
    /// The metrics crate's convention (`None`: no AUPRO).
    pub fn convention(self) -> Option<ProConvention> {
        match self {
            ProChoice::Anomalib => Some(ProConvention::Anomalib),
            ProChoice::AnomalibLegacy => Some(ProConvention::AnomalibLegacy),
            ProChoice::Clipad => Some(ProConvention::ClipAd),
            ProChoice::None => None,
        }
    }
}

/// `--ap`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApChoice {
    /// sklearn's step-wise sum.
    Step,
    /// Trapezoid (anomalib ≤ 2.6).
    Trapezoid,
}

/// `--set-fusion`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FusionChoice {
    /// The detector's official per-class fusion, where it has one.
    Official,
    /// The raw single-image score.
    None,
}

/// Options of the built-in baseline (`--detector baseline`).
#[derive(clap::Args, Debug, Clone)]
pub struct BaselineArgs {
    /// baseline: input and map side S.
    #[arg(long, default_value_t = 224)]
    pub baseline_size: usize,
    /// baseline: side of the cells averaged into the patch map (must divide the size).
    #[arg(long, default_value_t = 16)]
    pub baseline_patch: usize,
    /// baseline: divide the distance by the references' per-pixel standard deviation.
    #[arg(long)]
    pub baseline_std: bool,
}

impl BaselineArgs {
    fn config(&self) -> BaselineConfig {
        BaselineConfig {
            image_size: self.baseline_size,
            patch: self.baseline_patch,
            std_normalize: self.baseline_std,
            ..BaselineConfig::default()
        }
    }
}

/// Which detector: the built-in baseline, or one of the shared CLIP detectors.
#[derive(Debug, Clone)]
pub enum DetectorChoice {
    /// `--detector baseline`.
    Baseline(BaselineArgs),
    /// Any detector `build_detector` knows (the options `vlad infer` takes; boxed, they are many).
    Shared(Box<DetectorArgs>),
}

/// The detector options of `vlad eval`: those of `vlad infer` (`DetectorArgs`, shared) with
/// `baseline` added to `--detector` and `--weights` optional for it.
///
/// `DetectorArgs` has no `baseline`, so `--detector` is parsed as a name here; for the shared
/// detectors, the arguments given on the command line are handed to `DetectorArgs`'s own parser,
/// which keeps its checks, defaults and future options.
#[derive(Debug, Clone)]
pub struct EvalDetectorArgs {
    /// The detector and its options.
    pub choice: DetectorChoice,
    /// `--backend`.
    pub backend: String,
    /// Every option of the chosen detector with its value, as recorded in the results.
    pub options: BTreeMap<String, Value>,
}

fn detector_command() -> Command {
    <DetectorArgs as clap::Args>::augment_args(Command::new("vlad eval").no_binary_name(true))
}

/// The value of every argument of `cmd` in `matches` (defaults included), keyed by long name.
fn recorded_options(cmd: &Command, matches: &ArgMatches) -> BTreeMap<String, Value> {
    let mut options = BTreeMap::new();
    for arg in cmd.get_arguments() {
        let (id, Some(long)) = (arg.get_id().as_str(), arg.get_long()) else { continue };
        let value = match arg.get_action() {
            ArgAction::SetTrue | ArgAction::SetFalse => Value::Bool(matches.get_flag(id)),
            _ => match matches.get_raw(id) {
                Some(raw) => {
                    let values: Vec<Value> = raw.map(|v| Value::String(v.to_string_lossy().into_owned())).collect();
                    if values.len() == 1 { values.into_iter().next().expect("one value") } else { Value::Array(values) }
                }
                None => continue,
            },
        };
        options.insert(long.to_string(), value);
    }
    options
}

impl clap::Args for EvalDetectorArgs {
    fn augment_args(cmd: Command) -> Command {
        let mut names = vec![clap::builder::PossibleValue::new(BASELINE).help("built in: distance to the mean normal image, no weights")];
        names.extend(DetectorKind::value_variants().iter().filter_map(|v| v.to_possible_value()).filter(|p| p.get_name() != BASELINE));
        let cmd = <BaselineArgs as clap::Args>::augment_args(<DetectorArgs as clap::Args>::augment_args(cmd));
        cmd.mut_arg("detector", |a| {
            a.value_parser(clap::builder::PossibleValuesParser::new(names))
                .help("Detector: `baseline` (built in: distance to the mean normal image, no weights) or a CLIP detector")
        })
        .mut_arg("weights", |a| a.required(false))
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for EvalDetectorArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        use clap::error::ErrorKind;
        let name = matches
            .get_one::<String>("detector")
            .cloned()
            .ok_or_else(|| clap::Error::raw(ErrorKind::MissingRequiredArgument, "--detector is required\n"))?;
        let backend = matches.get_one::<String>("backend").cloned().unwrap_or_else(|| "flex".into());
        let from_command_line = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
        if name == BASELINE {
            if from_command_line("weights") {
                return Err(clap::Error::raw(ErrorKind::ArgumentConflict, "the baseline detector takes no --weights\n"));
            }
            let baseline = <BaselineArgs as FromArgMatches>::from_arg_matches(matches)?;
            let mut options = recorded_options(&<BaselineArgs as clap::Args>::augment_args(Command::new("baseline")), matches);
            options.insert("detector".into(), Value::String(name));
            options.insert("backend".into(), Value::String(backend.clone()));
            return Ok(Self { choice: DetectorChoice::Baseline(baseline), backend, options });
        }
        if !from_command_line("weights") {
            return Err(clap::Error::raw(ErrorKind::MissingRequiredArgument, format!("--weights is required for --detector {name}\n")));
        }
        // Hand the shared options given on the command line to DetectorArgs's own parser.
        let command = detector_command();
        let mut argv: Vec<OsString> = Vec::new();
        for arg in command.get_arguments() {
            let (id, Some(long)) = (arg.get_id().as_str(), arg.get_long()) else { continue };
            if !from_command_line(id) {
                continue;
            }
            if arg.get_action().takes_values() {
                for raw in matches.get_raw(id).into_iter().flatten() {
                    let mut item = OsString::from(format!("--{long}="));
                    item.push(raw);
                    argv.push(item);
                }
            } else {
                argv.push(OsString::from(format!("--{long}")));
            }
        }
        let shared_matches = command.clone().try_get_matches_from(argv)?;
        let shared = <DetectorArgs as FromArgMatches>::from_arg_matches(&shared_matches)?;
        let options = recorded_options(&command, &shared_matches);
        Ok(Self { choice: DetectorChoice::Shared(Box::new(shared)), backend, options })
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl EvalDetectorArgs {
    /// Builds the detector on its device.
    fn build(&self) -> Result<Box<dyn Detector>> {
        match &self.choice {
            DetectorChoice::Baseline(args) => {
                let device = vlad_clip::device_for(vlad_clip::Backend::parse(&self.backend)?)?;
                Ok(Box::new(MeanImageBaseline::new(args.config(), device)?))
            }
            DetectorChoice::Shared(args) => {
                let device = args.model.device()?;
                build_detector(args, &device)
            }
        }
    }

    fn needs_references(&self) -> bool {
        matches!(self.choice, DetectorChoice::Baseline(_))
    }
}

// ------------------------------------------------------------------------------------------------
// Set fusion
// ------------------------------------------------------------------------------------------------

/// Min and max of the values (checked finite when they were read back).
fn min_max(values: &[f32]) -> (f32, f32) {
    values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

/// `(x − min)/(max − min)` as the repositories compute it (f32). A constant input has no range;
/// the official code would divide by zero (NaN): here every value becomes 0.
fn min_max_normalize(x: f32, (lo, hi): (f32, f32)) -> f32 {
    if hi > lo { (x - lo) / (hi - lo) } else { 0.0 }
}

/// What a set fusion gives for one class: the fused image scores and, when the fusion mixes maps
/// ([`SetFusion::MapMix`]), the fused maps the pixel metrics are reported on.
#[derive(Debug)]
struct Fused {
    scores: Vec<f32>,
    maps: Option<Vec<f32>>,
}

/// The fused image scores of one class under `fusion` (`SetFusion` documents the formula). For
/// `MinMax`: the `n` maps of `image_len` values are min–max normalised over the class (every pixel
/// together, or through their statistics, as `MapRange` says), the named component too when the
/// fusion asks, then `map_weight · stat + component_weight · component`. For `MapMix`: the named
/// map components, each normalised over all pixels of the class, mixed into fused maps; the image
/// score is their maximum or the mix of the normalised named score components. `None` for
/// `SetFusion::None`.
fn fused_scores(
    fusion: &SetFusion,
    maps: &[f32],
    image_len: usize,
    components: &BTreeMap<String, Vec<f32>>,
    map_components: &BTreeMap<String, Vec<f32>>,
) -> Result<Option<Fused>> {
    if matches!(fusion, SetFusion::None) {
        return Ok(None);
    }
    if image_len == 0 || maps.is_empty() || !maps.len().is_multiple_of(image_len) {
        bail!("internal: {} map values do not form maps of {image_len}", maps.len());
    }
    let n = maps.len() / image_len;
    let component = |name: &str| -> Result<&Vec<f32>> {
        let values = components.get(name).with_context(|| {
            format!(
                "the detector's set fusion uses the score component `{name}`, which its detections do not provide (they have: {})",
                components.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })?;
        if values.len() != n {
            bail!("internal: component `{name}` has {} values for {n} images", values.len());
        }
        Ok(values)
    };
    match fusion {
        SetFusion::None => Ok(None),
        SetFusion::MinMax { component: name, map_weight, component_weight, statistic, map_range, normalize_component } => {
            let statistic_of = |map: &[f32]| match *statistic {
                MapStatistic::Max => map.iter().copied().fold(f32::NEG_INFINITY, f32::max),
                MapStatistic::TopKMean(k) => top_k_mean(map, image_len, k)[0],
            };
            let stats: Vec<f32> = match map_range {
                MapRange::AllPixels => {
                    let range = min_max(maps);
                    maps.par_chunks(image_len)
                        .map(|map| statistic_of(&map.iter().map(|&v| min_max_normalize(v, range)).collect::<Vec<_>>()))
                        .collect()
                }
                MapRange::Statistics => {
                    let raw: Vec<f32> = maps.par_chunks(image_len).map(statistic_of).collect();
                    let range = min_max(&raw);
                    raw.iter().map(|&v| min_max_normalize(v, range)).collect()
                }
            };
            let Some(name) = name else {
                return Ok(Some(Fused { scores: stats.iter().map(|&s| map_weight * s).collect(), maps: None }));
            };
            let values = component(name)?;
            let component_range = min_max(values);
            let component_of = |c: f32| if *normalize_component { min_max_normalize(c, component_range) } else { c };
            Ok(Some(Fused { scores: stats.iter().zip(values).map(|(&s, &c)| map_weight * s + component_weight * component_of(c)).collect(), maps: None }))
        }
        SetFusion::MapMix { maps: mixed, components: mixed_components } => {
            if mixed.is_empty() && mixed_components.is_empty() {
                bail!("internal: a map mix of nothing");
            }
            let mut fused_maps: Option<Vec<f32>> = None;
            for (name, weight) in mixed {
                let values = map_components.get(name).with_context(|| {
                    format!(
                        "the detector's set fusion mixes the map `{name}`, which its detections do not provide (they have: {})",
                        if map_components.is_empty() { "none".to_string() } else { map_components.keys().cloned().collect::<Vec<_>>().join(", ") }
                    )
                })?;
                if values.len() != maps.len() {
                    bail!("internal: map component `{name}` has {} values for {} map values", values.len(), maps.len());
                }
                let range = min_max(values);
                let acc = fused_maps.get_or_insert_with(|| vec![0.0; maps.len()]);
                acc.par_iter_mut().zip(values.par_iter()).for_each(|(a, &v)| *a += weight * min_max_normalize(v, range));
            }
            let scores = if mixed_components.is_empty() {
                let fused = fused_maps.as_ref().expect("maps to mix");
                fused.par_chunks(image_len).map(|m| m.iter().copied().fold(f32::NEG_INFINITY, f32::max)).collect()
            } else {
                let mut scores = vec![0.0f32; n];
                for (name, weight) in mixed_components {
                    let values = component(name)?;
                    let range = min_max(values);
                    for (s, &v) in scores.iter_mut().zip(values) {
                        *s += weight * min_max_normalize(v, range);
                    }
                }
                scores
            };
            Ok(Some(Fused { scores, maps: fused_maps }))
        }
    }
}

/// How the fusion is described in the results.
#[derive(Debug, Serialize)]
struct FusionRecord {
    /// `--set-fusion`.
    requested: &'static str,
    /// `min-max` or `none`.
    applied: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    component: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    map_weight: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    component_weight: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    map_statistic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    map_range: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    component_normalized: Option<bool>,
    /// `MapMix`: the mixed maps and their weights.
    #[serde(skip_serializing_if = "Option::is_none")]
    mixed_maps: Option<Vec<(String, f32)>>,
    /// `MapMix`: the mixed score components and their weights.
    #[serde(skip_serializing_if = "Option::is_none")]
    mixed_components: Option<Vec<(String, f32)>>,
    note: &'static str,
}

impl FusionRecord {
    fn new(choice: FusionChoice, fusion: &SetFusion) -> Self {
        let requested = match choice {
            FusionChoice::Official => "official",
            FusionChoice::None => "none",
        };
        match fusion {
            SetFusion::MinMax { component, map_weight, component_weight, statistic, map_range, normalize_component } => Self {
                requested,
                applied: "min-max",
                component: component.clone(),
                map_weight: Some(*map_weight),
                component_weight: Some(*component_weight),
                map_statistic: Some(match statistic {
                    MapStatistic::Max => "max".into(),
                    MapStatistic::TopKMean(k) => format!("top-{k} mean"),
                }),
                map_range: Some(match map_range {
                    MapRange::AllPixels => "all pixels of the class",
                    MapRange::Statistics => "the per-image statistics of the class",
                }),
                component_normalized: component.as_ref().map(|_| *normalize_component),
                mixed_maps: None,
                mixed_components: None,
                note: "image metrics use the transductive per-class fused score (parity with the papers); \
                       `deployable` holds the metrics of the raw single-image score",
            },
            SetFusion::MapMix { maps, components } => Self {
                requested,
                applied: "map-mix",
                component: None,
                map_weight: None,
                component_weight: None,
                map_statistic: components.is_empty().then(|| "max".to_string()),
                map_range: Some("all pixels of the class, per mixed map"),
                component_normalized: (!components.is_empty()).then_some(true),
                mixed_maps: Some(maps.clone()),
                mixed_components: Some(components.clone()),
                note: "image and pixel metrics use the transductive per-class fused maps and scores (parity with the papers); \
                       `deployable` holds the metrics of the raw single-image maps and scores",
            },
            SetFusion::None => Self {
                requested,
                applied: "none",
                component: None,
                map_weight: None,
                component_weight: None,
                map_statistic: None,
                map_range: None,
                component_normalized: None,
                mixed_maps: None,
                mixed_components: None,
                note: match choice {
                    FusionChoice::Official => "the detector defines no set fusion: image metrics use its raw single-image score",
                    FusionChoice::None => "image metrics use the raw single-image score",
                },
            },
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Results
// ------------------------------------------------------------------------------------------------

/// An image that was not scored.
#[derive(Debug, Clone, Serialize)]
struct Skipped {
    class: String,
    image: String,
    /// `test` or `reference`.
    role: &'static str,
    error: String,
}

/// One scored test image.
#[derive(Debug, Clone, Serialize)]
struct ImageRecord {
    class: String,
    image: String,
    label: Label,
    /// Raw single-image score.
    score: f32,
    /// The fused score the image metrics used, when a set fusion was applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    fused_score: Option<f32>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    components: BTreeMap<String, f32>,
    /// The saved map, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    map: Option<String>,
}

/// A row of the results: metrics plus counts.
#[derive(Debug, Clone, Serialize)]
struct ClassRecord {
    #[serde(flatten)]
    metrics: ClassMetrics,
    /// Test images scored (normal + anomalous).
    images: usize,
    normal: usize,
    anomalous: usize,
    /// Test images that could not be read.
    skipped: usize,
    /// Normal reference images fitted.
    references: usize,
    /// Connected ground-truth regions (8-connectivity), when AUPRO was computed.
    #[serde(skip_serializing_if = "Option::is_none")]
    regions: Option<usize>,
}

#[derive(Debug, Serialize)]
struct DeployableRecord {
    note: &'static str,
    classes: Vec<ClassMetrics>,
    mean: ClassMetrics,
}

#[derive(Debug, Serialize)]
struct DetectorRecord {
    name: String,
    options: BTreeMap<String, Value>,
    input_size: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    map_size: Option<usize>,
    grid: usize,
}

#[derive(Debug, Serialize)]
struct DatasetRecord {
    path: String,
    format: String,
    classes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    classes_without_test_images: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    indexing_problems: Vec<String>,
}

#[derive(Debug, Serialize)]
struct ProtocolRecord {
    split: &'static str,
    mask_rule: &'static str,
    ap: ApConvention,
    pro: Option<ProConvention>,
    undefined: UndefinedPolicy,
    #[serde(skip_serializing_if = "Option::is_none")]
    shots: Option<String>,
    seed: u64,
    batch_size: usize,
    set_fusion: FusionRecord,
}

#[derive(Debug, Default, Serialize)]
struct OutputsRecord {
    #[serde(skip_serializing_if = "Option::is_none")]
    json: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    csv: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    markdown: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deployable_csv: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    maps: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    plots: Vec<String>,
}

#[derive(Debug, Serialize)]
struct TimingRecord {
    seconds: f64,
    images_per_second: f64,
}

/// Everything `--out` holds. Metric values are fractions in [0, 1], `null` where undefined.
#[derive(Debug, Serialize)]
struct Report {
    vlad_version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    git_describe: Option<String>,
    command: Vec<String>,
    date: String,
    detector: DetectorRecord,
    dataset: DatasetRecord,
    protocol: ProtocolRecord,
    classes: Vec<ClassRecord>,
    mean: ClassMetrics,
    #[serde(skip_serializing_if = "Option::is_none")]
    deployable: Option<DeployableRecord>,
    skipped: Vec<Skipped>,
    images: Vec<ImageRecord>,
    outputs: OutputsRecord,
    timing: TimingRecord,
}

/// `git describe` of the source tree this binary was built from, if it is still there (the state
/// at run time, which may be newer than the build).
fn git_describe() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["-C", env!("CARGO_MANIFEST_DIR"), "describe", "--always", "--dirty", "--tags"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

// ------------------------------------------------------------------------------------------------
// Paths
// ------------------------------------------------------------------------------------------------

/// A file-name-safe version of a class name.
fn safe_name(name: &str) -> String {
    let s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    if s.is_empty() || s.chars().all(|c| c == '.') { "_".into() } else { s }
}

/// `<dir>/<image path relative to the dataset root, extension replaced by .npy>`; paths outside
/// the root (or with `..`) become `<dir>/<class>/<file stem>.npy`. Names are made unique.
fn map_paths(dir: &Path, index: &DatasetIndex, samples: &[&Sample]) -> Vec<PathBuf> {
    let mut used = HashSet::new();
    samples
        .iter()
        .map(|s| {
            let relative = index.relative(&s.image_path);
            let clean = relative.components().all(|c| matches!(c, Component::Normal(_)));
            let base = if clean {
                dir.join(relative.with_extension(""))
            } else {
                dir.join(safe_name(&s.class_name)).join(s.image_path.file_stem().unwrap_or_default())
            };
            let mut candidate = base.with_extension("npy");
            let mut n = 2;
            while !used.insert(candidate.clone()) {
                let mut name = base.file_name().unwrap_or_default().to_os_string();
                name.push(format!("_{n}.npy"));
                candidate = base.with_file_name(name);
                n += 1;
            }
            candidate
        })
        .collect()
}

fn plot_paths(dir: &Path, class: &str) -> [PathBuf; 3] {
    let c = safe_name(class);
    [dir.join(format!("{c}_roc.png")), dir.join(format!("{c}_pr.png")), dir.join(format!("{c}_pro.png"))]
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!("{stem}{suffix}"))
}

// ------------------------------------------------------------------------------------------------
// Per-class accumulation and metrics
// ------------------------------------------------------------------------------------------------

/// Everything scored for one class (maps f32, masks 0/1).
#[derive(Default)]
struct ClassScores {
    side: usize,
    maps: Vec<f32>,
    masks: Vec<u8>,
    scores: Vec<f32>,
    labels: Vec<bool>,
    components: BTreeMap<String, Vec<f32>>,
    /// Map components (`[n·S·S]` each) when the detector provides them.
    map_components: BTreeMap<String, Vec<f32>>,
    records: Vec<ImageRecord>,
}

/// Curves for the plots of one class.
struct ClassCurves {
    image_roc: Option<vlad_metrics::RocCurve>,
    pixel_roc: Option<vlad_metrics::RocCurve>,
    image_pr: Option<vlad_metrics::PrCurve>,
    pixel_pr: Option<vlad_metrics::PrCurve>,
    pro: Option<ProCurve>,
}

struct ClassOutcome {
    reported: ClassMetrics,
    deployable: Option<ClassMetrics>,
    regions: Option<usize>,
    curves: Option<ClassCurves>,
}

/// The pixel metrics of one class's maps (and the PRO curve when `want_curves`), with the
/// evaluator kept for the ROC/PR curves.
fn pixel_metrics_of<'a>(
    class: &str,
    maps: &'a [f32],
    masks: &'a [u8],
    shape: MapShape,
    pro: Option<ProConvention>,
    want_curves: bool,
) -> Result<(PixelMetrics, Option<ProCurve>, PixelEvaluator<'a, u8>)> {
    let evaluator = PixelEvaluator::new(maps, masks, shape).with_context(|| format!("pixel metrics of class {class}"))?;
    let (aupro, regions, pro_curve) = match pro {
        Some(convention) if want_curves => {
            let (curve, regions) = evaluator.pro_curve(convention);
            (curve.as_ref().and_then(|c| c.aupro), Some(regions), curve)
        }
        Some(convention) => {
            let (value, regions) = evaluator.aupro(convention);
            (value, Some(regions), None)
        }
        None => (None, None, None),
    };
    Ok((PixelMetrics { binary: evaluator.binary_metrics(), aupro, pro_convention: pro, regions }, pro_curve, evaluator))
}

/// Image and pixel metrics of one class (and the curves when `curves` is set). With a fusion,
/// `reported` uses the fused scores (and fused maps when the fusion mixes maps), `deployable` the
/// raw ones.
fn class_metrics(
    class: &str,
    scored: &ClassScores,
    fused: Option<&Fused>,
    pro: Option<ProConvention>,
    ap: ApConvention,
    curves: bool,
) -> Result<ClassOutcome> {
    let n = scored.labels.len();
    let shape = MapShape::new(n, scored.side, scored.side);
    let fused_maps = fused.and_then(|f| f.maps.as_deref());
    let (pixel, pro_curve, evaluator) = pixel_metrics_of(class, fused_maps.unwrap_or(&scored.maps), &scored.masks, shape, pro, curves)?;
    let regions = pixel.regions;
    let raw_pixel = match fused_maps {
        Some(_) => pixel_metrics_of(class, &scored.maps, &scored.masks, shape, pro, false)?.0,
        None => pixel,
    };
    let raw_image = vlad_metrics::binary_metrics(&scored.scores, &scored.labels).with_context(|| format!("image metrics of class {class}"))?;
    let fused_scores = fused.map(|f| f.scores.as_slice());
    let reported_scores = fused_scores.unwrap_or(&scored.scores);
    let image: BinaryMetrics = match fused_scores {
        Some(f) => vlad_metrics::binary_metrics(f, &scored.labels).with_context(|| format!("fused image metrics of class {class}"))?,
        None => raw_image,
    };
    let reported = ClassMetrics::from_results(class, Some(&image), Some(&pixel), ap);
    let deployable = fused.map(|_| ClassMetrics::from_results(class, Some(&raw_image), Some(&raw_pixel), ap));
    let curves = curves.then(|| ClassCurves {
        image_roc: vlad_metrics::roc_curve(reported_scores, &scored.labels).ok().flatten(),
        pixel_roc: evaluator.roc_curve().map(|c| c.downsample(PLOT_POINTS)),
        image_pr: vlad_metrics::precision_recall_curve(reported_scores, &scored.labels).ok().flatten(),
        pixel_pr: evaluator.pr_curve().map(|c| c.downsample(PLOT_POINTS)),
        pro: pro_curve,
    });
    Ok(ClassOutcome { reported, deployable, regions, curves })
}

fn fmt_metric(value: Option<f64>) -> String {
    value.map_or_else(|| "undefined".into(), |v| format!("{v:.3}"))
}

/// Writes the ROC, PR and PRO charts of a class; returns the files written.
fn write_plots(dir: &Path, class: &str, curves: &ClassCurves, metrics: &ClassMetrics, pro: Option<ProConvention>) -> Result<Vec<PathBuf>> {
    let [roc_path, pr_path, pro_path] = plot_paths(dir, class);
    let mut written = Vec::new();
    let unit = (0.0, 1.0);
    let mut roc = Vec::new();
    if let Some(c) = &curves.image_roc {
        roc.push(Curve { label: format!("image (AUROC {})", fmt_metric(metrics.image_auroc)), x: c.fpr.clone(), y: c.tpr.clone() });
    }
    if let Some(c) = &curves.pixel_roc {
        roc.push(Curve { label: format!("pixel (AUROC {})", fmt_metric(metrics.pixel_auroc)), x: c.fpr.clone(), y: c.tpr.clone() });
    }
    if !roc.is_empty() {
        let chart = Chart {
            title: format!("{class}: ROC"),
            x_label: "false-positive rate".into(),
            y_label: "true-positive rate".into(),
            x_range: unit,
            y_range: unit,
            curves: roc,
            reference: Some(ReferenceLine { from: (0.0, 0.0), to: (1.0, 1.0), label: "chance".into() }),
            legend: SeriesLabelPosition::LowerRight,
        };
        plot::save_png(&chart, &roc_path)?;
        written.push(roc_path);
    }
    // Precision-recall curves as steps: the step-wise AP is the area under exactly this line.
    let mut pr = Vec::new();
    if let Some(c) = &curves.image_pr {
        let (x, y) = plot::steps_post(&c.recall, &c.precision);
        pr.push(Curve { label: format!("image (AP {})", fmt_metric(metrics.image_ap)), x, y });
    }
    if let Some(c) = &curves.pixel_pr {
        let (x, y) = plot::steps_post(&c.recall, &c.precision);
        pr.push(Curve { label: format!("pixel (AP {})", fmt_metric(metrics.pixel_ap)), x, y });
    }
    if !pr.is_empty() {
        let chart = Chart {
            title: format!("{class}: precision–recall"),
            x_label: "recall".into(),
            y_label: "precision".into(),
            x_range: unit,
            y_range: unit,
            curves: pr,
            reference: None,
            legend: SeriesLabelPosition::LowerLeft,
        };
        plot::save_png(&chart, &pr_path)?;
        written.push(pr_path);
    }
    if let (Some(c), Some(convention)) = (&curves.pro, pro) {
        let x_label = match convention {
            ProConvention::ClipAd => "false-positive rate (before the CLIP-AD rescaling)",
            _ => "false-positive rate",
        };
        let points = c.fpr.len();
        let keep: Vec<usize> = if points > PLOT_POINTS { (0..PLOT_POINTS).map(|i| i * (points - 1) / (PLOT_POINTS - 1)).collect() } else { (0..points).collect() };
        let chart = Chart {
            title: format!("{class}: per-region overlap"),
            x_label: x_label.into(),
            y_label: "PRO".into(),
            x_range: (0.0, vlad_metrics::FPR_LIMIT),
            y_range: unit,
            curves: vec![Curve {
                label: format!("PRO, {} (AUPRO {})", convention.name(), fmt_metric(metrics.aupro)),
                x: keep.iter().map(|&i| c.fpr[i]).collect(),
                y: keep.iter().map(|&i| c.pro[i]).collect(),
            }],
            reference: None,
            legend: SeriesLabelPosition::LowerRight,
        };
        plot::save_png(&chart, &pro_path)?;
        written.push(pro_path);
    }
    Ok(written)
}

// ------------------------------------------------------------------------------------------------
// The command
// ------------------------------------------------------------------------------------------------

/// Decoded and preprocessed samples of a batch: `(index in the class, preprocessed, mask)`; the
/// failures go to `skipped`.
fn load_batch(
    samples: &[&Sample],
    offset: usize,
    pre: &vlad_clip::preprocess::Preprocess,
    index: &DatasetIndex,
    role: &'static str,
    skipped: &mut Vec<Skipped>,
) -> Vec<(usize, Vec<f32>, vlad_imaging::GrayImage)> {
    let options = LoadOptions { size: None, ..LoadOptions::default() };
    let loaded: Vec<_> = samples
        .par_iter()
        .map(|s| vlad_data::load_sample(s, &options).map(|l| (pre.to_chw(&l.image), l.mask)))
        .collect();
    let mut ok = Vec::with_capacity(samples.len());
    for (i, (sample, result)) in samples.iter().zip(loaded).enumerate() {
        match result {
            Ok((pixels, mask)) => ok.push((offset + i, pixels, mask)),
            Err(e) => skipped.push(Skipped {
                class: sample.class_name.clone(),
                image: index.relative(&sample.image_path).display().to_string(),
                role,
                error: e.to_string(),
            }),
        }
    }
    ok
}

/// Normal reference samples of a class.
fn reference_samples(index: &DatasetIndex, class: &str, shots: Shots, seed: u64) -> Result<Vec<Sample>> {
    let samples = match shots {
        Shots::All => {
            let mut all: Vec<Sample> = index.select(class, Split::Train).filter(|s| s.label == Label::Normal).cloned().collect();
            all.sort_by(|a, b| a.image_path.cmp(&b.image_path));
            all
        }
        Shots::K(k) => vlad_data::reference_shots(index, class, k, seed, Replacement::Without)?,
    };
    if samples.is_empty() {
        bail!("class {class}: no normal images in the train split to use as references (the baseline needs them)");
    }
    Ok(samples)
}

/// Runs `vlad eval`.
pub fn run(args: EvalArgs) -> Result<()> {
    let build = || args.detector.build();
    evaluate(&args, build)
}

/// The evaluation with the detector built by `build` (called once the inputs and outputs have been
/// checked, since loading weights can take a while).
fn evaluate(args: &EvalArgs, build: impl FnOnce() -> Result<Box<dyn Detector>>) -> Result<()> {
    let started = Instant::now();
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let mut index = args.dataset.open()?;
    if let Some(classes) = &args.classes {
        index = index.restrict_classes(classes)?;
    }
    let all_classes = index.classes();
    let (classes, without_test): (Vec<String>, Vec<String>) =
        all_classes.into_iter().partition(|c| index.select(c, Split::Test).next().is_some());
    for c in &without_test {
        eprintln!("note: class {c} has no test images; left out");
    }
    if classes.is_empty() {
        bail!("{}: no class has test images", args.dataset.data.display());
    }
    if !index.problems.is_empty() {
        eprintln!("note: {} problem(s) while indexing the dataset (listed in the results JSON), e.g. {}", index.problems.len(), index.problems[0]);
    }

    // Output paths, all checked before any work is done.
    let tests: Vec<Vec<&Sample>> = classes.iter().map(|c| index.select(c, Split::Test).collect()).collect();
    let maps: Vec<Vec<PathBuf>> = match &args.save_maps {
        Some(dir) => tests.iter().map(|t| map_paths(dir, &index, t)).collect(),
        None => tests.iter().map(|_| Vec::new()).collect(),
    };
    let fusion_wanted = args.set_fusion == FusionChoice::Official;
    let mut planned: Vec<PathBuf> = maps.iter().flatten().cloned().collect();
    if let Some(dir) = &args.plots {
        planned.extend(classes.iter().flat_map(|c| plot_paths(dir, c)));
    }
    let out_paths = args.out.as_ref().map(|json| (json.clone(), json.with_extension("csv"), json.with_extension("md"), with_suffix(json, ".deployable.csv")));
    if let Some((json, csv, md, deployable)) = &out_paths {
        planned.extend([json.clone(), csv.clone(), md.clone(), deployable.clone()]);
    }
    if !args.force {
        let existing: Vec<&PathBuf> = planned.iter().filter(|p| p.exists()).collect();
        if let Some(first) = existing.first() {
            bail!("{} output file(s) already exist, e.g. {} (pass --force to replace them)", existing.len(), first.display());
        }
    }

    let mut detector = build()?;
    let pre = detector.preprocess();
    let mask_rule = args.mask_rule.map_or_else(|| default_mask_rule(detector.name()), MaskRuleChoice::rule);
    let shots = args.shots.or(args.detector.needs_references().then_some(Shots::All));
    // The fusion can depend on the references (VAND fuses only with a few-shot memory): it is
    // asked again after each class's references are fitted.
    let mut fusion = if fusion_wanted { detector.set_fusion() } else { SetFusion::None };
    let pro = args.pro.convention();
    let ap = match args.ap {
        ApChoice::Step => ApConvention::Step,
        ApChoice::Trapezoid => ApConvention::Trapezoid,
    };
    let policy = if args.zero_undefined { UndefinedPolicy::Zero } else { UndefinedPolicy::Skip };
    eprintln!(
        "evaluating {} on {} class(es) of {} ({}), masks {}, AUPRO {}, set fusion {}",
        detector.name(),
        classes.len(),
        args.dataset.data.display(),
        index.format,
        mask_rule_name(mask_rule),
        pro.map_or("none", ProConvention::name),
        match (fusion_wanted, &fusion) {
            (false, _) => "none",
            (true, SetFusion::None) if shots.is_some() => "official (decided after the references)",
            (true, SetFusion::None) => "none (the detector defines none)",
            (true, SetFusion::MapMix { .. }) => "map mix (official)",
            (true, _) => "min-max (official)",
        },
    );

    let total: usize = tests.iter().map(Vec::len).sum();
    let progress = ProgressBar::new(total as u64);
    progress.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} [{elapsed_precise}, eta {eta}]").expect("valid template"));
    let device = detector.device();
    let mut skipped = Vec::new();
    let mut rows = Vec::new();
    let mut deployable_rows = Vec::new();
    let mut images = Vec::new();
    let mut plots_written = Vec::new();
    let mut map_size = None;
    let mut scored_images = 0usize;

    for ((class, samples), map_files) in classes.iter().zip(&tests).zip(&maps) {
        progress.set_message(class.clone());
        detector.set_class(class).with_context(|| format!("class {class}"))?;
        let mut references = 0;
        if let Some(shots) = shots {
            let samples = reference_samples(&index, class, shots, args.seed)?;
            let refs: Vec<&Sample> = samples.iter().collect();
            let before = skipped.len();
            let loaded = load_batch(&refs, 0, &pre, &index, "reference", &mut skipped);
            for s in &skipped[before..] {
                progress.suspend(|| eprintln!("skipped reference {}: {}", s.image, s.error));
            }
            if loaded.is_empty() {
                bail!("class {class}: none of the {} reference image(s) could be read", refs.len());
            }
            references = loaded.len();
            let pixels: Vec<Vec<f32>> = loaded.into_iter().map(|(_, p, _)| p).collect();
            let batch = pre.batch(&pixels, &device)?;
            drop(pixels);
            match detector.fit_reference(batch) {
                Ok(()) => {}
                Err(DetectError::Unsupported { detector, .. }) => bail!("{detector} takes no reference images: drop --shots"),
                Err(e) => return Err(e).with_context(|| format!("class {class}: fitting {references} reference image(s)")),
            }
            if fusion_wanted {
                fusion = detector.set_fusion();
            }
        }

        let mut scored = ClassScores::default();
        let mut skipped_here = 0;
        for (chunk_index, chunk) in samples.chunks(args.batch_size).enumerate() {
            let offset = chunk_index * args.batch_size;
            let before = skipped.len();
            let batch = load_batch(chunk, offset, &pre, &index, "test", &mut skipped);
            for s in &skipped[before..] {
                progress.suspend(|| eprintln!("skipped {}: {}", s.image, s.error));
            }
            skipped_here += skipped.len() - before;
            progress.inc((chunk.len() - batch.len()) as u64);
            if batch.is_empty() {
                continue;
            }
            let pixels: Vec<Vec<f32>> = batch.iter().map(|(_, p, _)| p.clone()).collect();
            let out = detect_host(detector.as_ref(), pre.batch(&pixels, &device)?).with_context(|| format!("class {class}: scoring a batch"))?;
            let side = out.side;
            if scored.side == 0 {
                scored.side = side;
                scored.maps.reserve(samples.len() * side * side);
                scored.masks.reserve(samples.len() * side * side);
            } else if scored.side != side {
                bail!("the detector changed its map size from {} to {side} within class {class}", scored.side);
            }
            map_size = Some(side);
            let area = side * side;
            if out.maps.len() != batch.len() * area || out.scores.len() != batch.len() {
                bail!("internal: the detector returned {} map values and {} scores for {} images of {side}²", out.maps.len(), out.scores.len(), batch.len());
            }
            for (i, (sample_index, _, mask)) in batch.iter().enumerate() {
                let sample = samples[*sample_index];
                let map = &out.maps[i * area..(i + 1) * area];
                let image = index.relative(&sample.image_path).display().to_string();
                if let Some(bad) = map.iter().chain(std::iter::once(&out.scores[i])).find(|v| !v.is_finite()) {
                    bail!("{image}: the detector produced a non-finite value ({bad})");
                }
                let resized = resize_binary_mask(mask, side as u32, side as u32, mask_rule);
                scored.masks.extend(resized.as_raw().iter().map(|&v| u8::from(v != 0)));
                scored.maps.extend_from_slice(map);
                scored.scores.push(out.scores[i]);
                scored.labels.push(sample.label == Label::Anomalous);
                let mut components = BTreeMap::new();
                for (name, values) in &out.components {
                    scored.components.entry(name.clone()).or_default().push(values[i]);
                    components.insert(name.clone(), values[i]);
                }
                for (name, values) in &out.map_components {
                    if values.len() != out.maps.len() {
                        bail!("internal: map component `{name}` has {} values for {} map values", values.len(), out.maps.len());
                    }
                    scored.map_components.entry(name.clone()).or_default().extend_from_slice(&values[i * area..(i + 1) * area]);
                }
                let map_file = match map_files.get(*sample_index) {
                    Some(path) => {
                        npy::write_f32(path, &[side, side], map, args.force)?;
                        Some(path.display().to_string())
                    }
                    None => None,
                };
                scored.records.push(ImageRecord {
                    class: class.clone(),
                    image,
                    label: sample.label,
                    score: out.scores[i],
                    fused_score: None,
                    components,
                    map: map_file,
                });
            }
            progress.inc(batch.len() as u64);
        }

        let n = scored.labels.len();
        scored_images += n;
        let normal = scored.labels.iter().filter(|&&l| !l).count();
        let mut record = ClassRecord {
            metrics: ClassMetrics::new(class.clone()),
            images: n,
            normal,
            anomalous: n - normal,
            skipped: skipped_here,
            references,
            regions: None,
        };
        if n == 0 {
            record.metrics.notes.push("no test image could be read".into());
            deployable_rows.push(record.metrics.clone());
            rows.push(record);
            continue;
        }
        let fused = fused_scores(&fusion, &scored.maps, scored.side * scored.side, &scored.components, &scored.map_components)
            .with_context(|| format!("class {class}: set fusion"))?;
        if let Some(f) = &fused {
            for (r, &v) in scored.records.iter_mut().zip(&f.scores) {
                r.fused_score = Some(v);
            }
        }
        let outcome = progress.suspend(|| class_metrics(class, &scored, fused.as_ref(), pro, ap, args.plots.is_some()))?;
        if let (Some(dir), Some(curves)) = (&args.plots, &outcome.curves) {
            plots_written.extend(write_plots(dir, class, curves, &outcome.reported, pro)?);
        }
        record.metrics = outcome.reported.clone();
        record.regions = outcome.regions;
        deployable_rows.push(outcome.deployable.unwrap_or(outcome.reported));
        rows.push(record);
        images.append(&mut scored.records);
    }
    progress.finish_and_clear();

    let table = MetricsTable { classes: rows.iter().map(|r| r.metrics.clone()).collect(), ap_convention: ap, pro_convention: pro };
    let fusion_applied = !matches!(fusion, SetFusion::None);
    let deployable_table = fusion_applied.then_some(MetricsTable { classes: deployable_rows, ap_convention: ap, pro_convention: pro });
    let mut markdown = table.to_markdown(policy, args.decimals);
    if let Some(t) = &deployable_table {
        markdown.push_str("\nDeployable (raw single-image score, no per-class fusion):\n\n");
        markdown.push_str(&t.to_markdown(policy, args.decimals));
    }
    println!("{markdown}");
    if !skipped.is_empty() {
        eprintln!("skipped {} unreadable image(s) (listed in the results JSON)", skipped.len());
    }

    let seconds = started.elapsed().as_secs_f64();
    let mut outputs = OutputsRecord {
        maps: args.save_maps.as_ref().map(|d| d.display().to_string()),
        plots: plots_written.iter().map(|p| p.display().to_string()).collect(),
        ..OutputsRecord::default()
    };
    if let Some((json_path, csv_path, md_path, deployable_path)) = &out_paths {
        let write = |path: &Path, text: &str| -> Result<()> {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            }
            std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
        };
        write(csv_path, &table.to_csv(policy))?;
        write(md_path, &markdown)?;
        outputs.json = Some(json_path.display().to_string());
        outputs.csv = Some(csv_path.display().to_string());
        outputs.markdown = Some(md_path.display().to_string());
        if let Some(t) = &deployable_table {
            write(deployable_path, &t.to_csv(policy))?;
            outputs.deployable_csv = Some(deployable_path.display().to_string());
        }
        let report = Report {
            vlad_version: env!("CARGO_PKG_VERSION"),
            git_describe: git_describe(),
            command: std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect(),
            date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            detector: DetectorRecord {
                name: detector.name().to_string(),
                options: args.detector.options.clone(),
                input_size: pre.size,
                map_size,
                grid: detector.grid(),
            },
            dataset: DatasetRecord {
                path: args.dataset.data.display().to_string(),
                format: index.format.to_string(),
                classes: classes.clone(),
                classes_without_test_images: without_test,
                indexing_problems: index.problems.iter().map(ToString::to_string).collect(),
            },
            protocol: ProtocolRecord {
                split: "test",
                mask_rule: mask_rule_name(mask_rule),
                ap,
                pro,
                undefined: policy,
                shots: shots.map(Shots::describe),
                seed: args.seed,
                batch_size: args.batch_size,
                set_fusion: FusionRecord::new(args.set_fusion, &fusion),
            },
            mean: table.macro_mean(policy),
            deployable: deployable_table.as_ref().map(|t| DeployableRecord {
                note: "metrics of the raw single-image score (no per-class normalisation); pixel metrics are the same",
                classes: t.classes.clone(),
                mean: t.macro_mean(policy),
            }),
            classes: rows,
            skipped,
            images,
            outputs,
            timing: TimingRecord { seconds, images_per_second: if seconds > 0.0 { scored_images as f64 / seconds } else { 0.0 } },
        };
        write(json_path, &serde_json::to_string_pretty(&report)?)?;
        eprintln!("results written to {}", json_path.display());
    }
    eprintln!("scored {scored_images} image(s) in {seconds:.1} s");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/eval/set_fusion.json");
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }

    fn floats(v: &Value) -> Vec<f32> {
        v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
    }

    /// Against NumPy transcribing AA-CLIP's `metrics_eval` (`tools/fixtures/eval.py`), for the map
    /// maximum and a top-k mean, with and without a component. f32 arithmetic on both sides in the
    /// same order: equal to a few ulps.
    #[test]
    fn set_fusion_matches_numpy() {
        let doc = fixture();
        let side = doc["side"].as_u64().unwrap() as usize;
        let maps = floats(&doc["maps"]);
        let components = BTreeMap::from([("det".to_string(), floats(&doc["det"]))]);
        for case in doc["cases"].as_array().unwrap() {
            let statistic = match case["statistic"].as_str().unwrap() {
                "max" => MapStatistic::Max,
                _ => MapStatistic::TopKMean(case["k"].as_u64().unwrap() as usize),
            };
            let fusion = SetFusion::MinMax {
                component: case["component"].as_str().map(String::from),
                map_weight: case["map_weight"].as_f64().unwrap() as f32,
                component_weight: case["component_weight"].as_f64().unwrap() as f32,
                statistic,
                map_range: MapRange::AllPixels,
                normalize_component: true,
            };
            let got = fused_scores(&fusion, &maps, side * side, &components, &BTreeMap::new()).unwrap().unwrap().scores;
            let want = floats(&case["expected"]);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 2e-7, "{case}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn set_fusion_none_missing_component_and_constant_maps() {
        let components = BTreeMap::new();
        assert!(fused_scores(&SetFusion::None, &[1.0; 4], 4, &components, &BTreeMap::new()).unwrap().is_none());
        let fusion = SetFusion::MinMax { component: Some("text".into()), map_weight: 0.5, component_weight: 0.5, statistic: MapStatistic::Max, map_range: MapRange::AllPixels, normalize_component: true };
        let err = fused_scores(&fusion, &[1.0; 4], 2, &components, &BTreeMap::new()).unwrap_err().to_string();
        assert!(err.contains("`text`"), "{err}");
        let only_map = SetFusion::MinMax { component: None, map_weight: 1.0, component_weight: 0.0, statistic: MapStatistic::Max, map_range: MapRange::AllPixels, normalize_component: true };
        assert_eq!(fused_scores(&only_map, &[3.0; 4], 2, &components, &BTreeMap::new()).unwrap().unwrap().scores, vec![0.0, 0.0]);
    }

    /// VAND's few-shot fusion (`test.py`): `0.5·(text + minmax_class(max map))`, the range taken
    /// over the per-image maxima and the text probability left as it is.
    #[test]
    fn set_fusion_over_statistics_leaves_the_component_alone() {
        // Three 2-pixel maps with maxima 1, 3, 2 (pixel minimum 0): over the maxima the range is
        // [1, 3] → 0, 1, 0.5; over all pixels it would be [0, 3].
        let maps = [0.0, 1.0, 3.0, 0.5, 2.0, 2.0];
        let components = BTreeMap::from([("text".to_string(), vec![0.2, 0.4, 0.9])]);
        let vand = SetFusion::MinMax {
            component: Some("text".into()),
            map_weight: 0.5,
            component_weight: 0.5,
            statistic: MapStatistic::Max,
            map_range: MapRange::Statistics,
            normalize_component: false,
        };
        let got = fused_scores(&vand, &maps, 2, &components, &BTreeMap::new()).unwrap().unwrap().scores;
        for (g, w) in got.iter().zip([0.5 * 0.2, 0.5 * (0.4 + 1.0), 0.5 * (0.9 + 0.5)]) {
            assert!((g - w).abs() <= 1e-7, "{got:?}");
        }
        let all_pixels = SetFusion::MinMax {
            component: Some("text".into()),
            map_weight: 0.5,
            component_weight: 0.5,
            statistic: MapStatistic::Max,
            map_range: MapRange::AllPixels,
            normalize_component: false,
        };
        let got = fused_scores(&all_pixels, &maps, 2, &components, &BTreeMap::new()).unwrap().unwrap().scores;
        assert!((got[0] - 0.5 * (1.0 / 3.0 + 0.2)).abs() <= 1e-7, "{got:?}");
    }

    /// MVFA's few-shot fusion (`test_few.py`): each named map min–max normalised over every pixel
    /// of the class, mixed 0.5/0.5; the image score the fused maximum (segmentation head) or the
    /// mix of normalised score components (classification head).
    #[test]
    fn map_mix_normalises_each_map_over_the_class() {
        // Two images of two pixels. zero: range [0, 4]; few: range [1, 3].
        let maps = [9.0; 4];
        let map_components = BTreeMap::from([("zero".to_string(), vec![0.0, 2.0, 4.0, 1.0]), ("few".to_string(), vec![3.0, 1.0, 2.0, 1.0])]);
        let seg = SetFusion::MapMix { maps: vec![("zero".into(), 0.5), ("few".into(), 0.5)], components: vec![] };
        let fused = fused_scores(&seg, &maps, 2, &BTreeMap::new(), &map_components).unwrap().unwrap();
        let want_maps = [0.5 * 0.0 + 0.5 * 1.0, 0.5 * 0.5 + 0.0, 0.5 * 1.0 + 0.5 * 0.5, 0.5 * 0.25 + 0.0];
        let got_maps = fused.maps.unwrap();
        for (g, w) in got_maps.iter().zip(want_maps) {
            assert!((g - w).abs() <= 1e-7, "{got_maps:?}");
        }
        assert_eq!(fused.scores, vec![0.5, 0.75]);
        let components = BTreeMap::from([("det".to_string(), vec![1.0, 3.0]), ("few_det".to_string(), vec![5.0, 4.0])]);
        let det = SetFusion::MapMix { maps: vec![], components: vec![("det".into(), 0.5), ("few_det".into(), 0.5)] };
        let fused = fused_scores(&det, &maps, 2, &components, &BTreeMap::new()).unwrap().unwrap();
        assert!(fused.maps.is_none());
        assert_eq!(fused.scores, vec![0.5, 0.5]);
        let err = fused_scores(&seg, &maps, 2, &components, &BTreeMap::new()).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("`zero`") && err.contains("none"), "{err}");
    }

    #[test]
    fn shots_and_names_parse() {
        assert_eq!(parse_shots("all"), Ok(Shots::All));
        assert_eq!(parse_shots("4"), Ok(Shots::K(4)));
        assert!(parse_shots("0").unwrap_err().contains("`0`"));
        assert!(parse_shots("x").is_err());
        assert_eq!(safe_name("head ct/1"), "head_ct_1");
        assert_eq!(safe_name(".."), "_");
        assert_eq!(default_mask_rule("zero-shot"), MaskRule::BilinearThreshold);
        assert_eq!(default_mask_rule("winclip"), MaskRule::Nearest);
        assert_eq!(with_suffix(Path::new("out/r.json"), ".deployable.csv"), PathBuf::from("out/r.deployable.csv"));
    }

    #[test]
    fn map_paths_mirror_the_dataset_and_stay_inside_the_folder() {
        let sample = |class: &str, path: &str| Sample {
            class_name: class.into(),
            image_path: PathBuf::from(path),
            mask_path: None,
            label: Label::Normal,
            defect_type: "good".into(),
            split: Split::Test,
        };
        let samples = [
            sample("bottle", "/data/bottle/test/good/000.png"),
            sample("bottle", "/data/bottle/test/good/000.jpg"),
            sample("bottle", "/elsewhere/x/001.png"),
            sample("cable", "/data/../etc/002.png"),
        ];
        let index = DatasetIndex { root: "/data".into(), format: vlad_data::DatasetFormat::Mvtec, samples: samples.to_vec(), problems: vec![] };
        let refs: Vec<&Sample> = samples.iter().collect();
        let paths = map_paths(Path::new("/maps"), &index, &refs);
        assert_eq!(paths[0], PathBuf::from("/maps/bottle/test/good/000.npy"));
        assert_eq!(paths[1], PathBuf::from("/maps/bottle/test/good/000_2.npy"));
        assert_eq!(paths[2], PathBuf::from("/maps/bottle/001.npy"));
        assert_eq!(paths[3], PathBuf::from("/maps/cable/002.npy"));
    }

    /// The baseline with an AA-CLIP-like official fusion: a `det` component (the map mean) and
    /// `0.5 · max(normalised map) + 0.5 · normalised det` — defined, as VAND's, only once reference
    /// images are fitted (so the harness must ask after fitting them).
    struct FusingBaseline(MeanImageBaseline, bool);

    impl Detector for FusingBaseline {
        fn name(&self) -> &'static str {
            "fusing-baseline"
        }
        fn device(&self) -> burn::tensor::Device {
            self.0.device()
        }
        fn preprocess(&self) -> vlad_clip::preprocess::Preprocess {
            self.0.preprocess()
        }
        fn grid(&self) -> usize {
            self.0.grid()
        }
        fn set_class(&mut self, name: &str) -> Result<(), DetectError> {
            self.0.set_class(name)
        }
        fn detect(&self, pixels: burn::tensor::Tensor<4>) -> Result<vlad_detect::Detection, DetectError> {
            let mut out = self.0.detect(pixels)?;
            let [b, s, _] = out.map.dims();
            out.components.push(("det".into(), out.map.clone().reshape([b, s * s]).mean_dim(1).reshape([b])));
            Ok(out)
        }
        fn fit_reference(&mut self, normal: burn::tensor::Tensor<4>) -> Result<(), DetectError> {
            self.1 = true;
            self.0.fit_reference(normal)
        }
        fn set_fusion(&self) -> SetFusion {
            if !self.1 {
                return SetFusion::None;
            }
            SetFusion::MinMax { component: Some("det".into()), map_weight: 0.5, component_weight: 0.5, statistic: MapStatistic::Max, map_range: MapRange::AllPixels, normalize_component: true }
        }
    }

    fn parse(argv: &[&str]) -> Result<EvalArgs, clap::Error> {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: EvalArgs,
        }
        let mut all = vec!["vlad"];
        all.extend_from_slice(argv);
        Cli::try_parse_from(all).map(|c| c.args)
    }

    /// With a detector that defines an official fusion, the reported image metrics are those of
    /// the fused scores, the deployable table those of the raw scores, and `--set-fusion none`
    /// reports the raw ones; pixel metrics are the same either way.
    #[test]
    fn official_fusion_is_reported_beside_the_deployable_score() {
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/eval/synth");
        let root = std::env::temp_dir().join(format!("vlad-eval-fusion-{}", std::process::id()));
        let out = root.join("r.json");
        let run_with = |fusion: &str| {
            let argv = ["--detector", "baseline", "--baseline-size", "32", "--baseline-patch", "8", "--data", data.to_str().unwrap()];
            let mut argv = argv.to_vec();
            argv.extend_from_slice(&["--out", out.to_str().unwrap(), "--force", "--set-fusion", fusion]);
            let args = parse(&argv).unwrap();
            let DetectorChoice::Baseline(b) = &args.detector.choice else { unreachable!() };
            let inner = MeanImageBaseline::new(b.config(), vlad_clip::device_for(vlad_clip::Backend::Flex).unwrap()).unwrap();
            evaluate(&args, || Ok(Box::new(FusingBaseline(inner, false)))).unwrap();
            serde_json::from_str::<Value>(&std::fs::read_to_string(&out).unwrap()).unwrap()
        };
        let fused = run_with("official");
        assert_eq!(fused["protocol"]["set_fusion"]["applied"], "min-max");
        assert_eq!(fused["protocol"]["set_fusion"]["component"], "det");
        assert!(root.join("r.deployable.csv").is_file());
        let raw = run_with("none");
        assert_eq!(raw["protocol"]["set_fusion"]["applied"], "none");
        assert!(raw["deployable"].is_null());
        for (i, class) in ["washer", "weave"].iter().enumerate() {
            let images: Vec<&Value> = fused["images"].as_array().unwrap().iter().filter(|r| r["class"] == *class).collect();
            let labels: Vec<bool> = images.iter().map(|r| r["label"] == "anomalous").collect();
            let column = |key: &str| images.iter().map(|r| r[key].as_f64().unwrap() as f32).collect::<Vec<f32>>();
            let by_fused = vlad_metrics::binary_metrics(&column("fused_score"), &labels).unwrap();
            let by_raw = vlad_metrics::binary_metrics(&column("score"), &labels).unwrap();
            let (reported, deployable) = (&fused["classes"][i], &fused["deployable"]["classes"][i]);
            assert_eq!(reported["class"], *class);
            assert_eq!(reported["image_auroc"].as_f64(), by_fused.auroc);
            assert_eq!(reported["image_ap"].as_f64(), by_fused.average_precision);
            assert_eq!(deployable["image_auroc"].as_f64(), by_raw.auroc);
            assert_eq!(raw["classes"][i]["image_auroc"].as_f64(), by_raw.auroc);
            for key in ["pixel_auroc", "pixel_ap", "pixel_f1_max", "aupro"] {
                assert_eq!(reported[key], deployable[key], "{key}");
                assert_eq!(reported[key], raw["classes"][i][key], "{key}");
            }
            // The fused scores are the 0.5/0.5 fusion, in [0, 1], and the component is recorded.
            assert!(column("fused_score").iter().all(|v| (0.0..=1.0).contains(v)));
            assert!(images.iter().all(|r| r["components"]["det"].is_number()));
        }
        std::fs::remove_dir_all(root).ok();
    }

    /// `--detector baseline` needs no weights; shared detectors get their own parser's checks.
    #[test]
    fn detector_arguments_add_baseline_to_the_shared_ones() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["--data", "/d"];
            argv.extend_from_slice(extra);
            parse(&argv)
        };
        let args = parse(&["--detector", "baseline", "--baseline-size", "32", "--baseline-patch", "8"]).unwrap();
        let DetectorChoice::Baseline(b) = &args.detector.choice else { panic!("not the baseline") };
        assert_eq!((b.baseline_size, b.baseline_patch, b.baseline_std), (32, 8, false));
        assert_eq!(args.detector.options["baseline-size"], Value::String("32".into()));
        assert_eq!(args.detector.options["baseline-std"], Value::Bool(false));
        assert_eq!(args.detector.options["backend"], Value::String("flex".into()));
        let err = parse(&["--detector", "baseline", "--weights", "w.pt"]).err().unwrap().to_string();
        assert!(err.contains("takes no --weights"), "{err}");
        let err = parse(&["--detector", "winclip"]).err().unwrap().to_string();
        assert!(err.contains("--weights is required"), "{err}");
        let err = parse(&["--detector", "nope"]).err().unwrap().to_string();
        assert!(err.contains("baseline") && err.contains("winclip"), "{err}");
        let args = parse(&["--detector", "winclip", "--weights", "w.pt", "--winclip-scales", "2,3,4", "--arch", "tiny"]).unwrap();
        let DetectorChoice::Shared(shared) = &args.detector.choice else { panic!("not shared") };
        assert_eq!(shared.detector, DetectorKind::WinClip);
        assert_eq!(shared.winclip_scales, "2,3,4");
        assert_eq!(shared.model.arch.as_deref(), Some("tiny"));
        assert_eq!(args.detector.options["winclip-scales"], Value::String("2,3,4".into()));
        assert_eq!(args.detector.options["winclip-temperature"], Value::String("0.07".into()));
    }
}
