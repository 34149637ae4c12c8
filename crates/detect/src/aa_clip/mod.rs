//! AA-CLIP (Ma et al., CVPR 2025), as its official code behaves (`spec/aa-clip.md`,
//! github.com/Mwxinnn/AA-CLIP at 53db195f).
//!
//! * **Backbone:** CLIP ViT-L-14-336 with exact (erf) GELU in both towers, run at 518 px with the
//!   positional table resized by rule A (antialiased bicubic); [`AaClip::new`] switches the
//!   backbone to exact GELU and rule A unless told otherwise.
//! * **Residual adapters** ([`Adapter::residual`]): `a = LeakyReLU(x W)`, rescaled per token to
//!   `‖x‖`, `x ← 0.1·a + 0.9·x`, after vision blocks 1–6 and text blocks 1–3 (1-based), on every
//!   token (CLS and text padding included).
//! * **Text:** the `ln_final`-ed EOT token goes through a trainable `Linear + LeakyReLU` that
//!   replaces `text_projection`; anchors `T = [T_N | T_A]` are normalise → mean → normalise over
//!   the 6 normal and 10 anomalous sentences built from the class "real name" ([`prompts`]).
//!   Without a text adapter (the official fallback) plain `encode_text` is used.
//! * **Vision:** tokens after blocks 6/12/18/24 (after the block-6 adapter), CLS dropped, shared
//!   `ln_post`, per-level `seg_proj`, L2 norm; `det` = mean over patches of the normalised
//!   `det_proj` of the last level (not renormalised).
//! * **Maps:** per level `(100·cos_A + 1 − 100·cos_N)/2` on the patch grid, summed over the levels,
//!   Gaussian blur on the grid (7×7 σ 1 industrial, 9×9 σ 1.5 medical, reflect), bilinear upsampling
//!   with `align_corners = true`. Blur and upsampling are linear, so summing first equals the
//!   official per-level order up to rounding.
//! * **Image score:** the official score is transductive (per-class min–max of all maps and of
//!   `(det·T_A + 1)/2` over the whole test set, then `0.5·pmax + 0.5·det`, or `pmax` for medical
//!   data); [`Detector::set_fusion`] describes it for the evaluation harness and the raw det score
//!   is the `"det"` component. [`Detection::image_score`] is a single-image score: the same fusion
//!   on values normalised with fixed ranges ([`AaClipCalibration`], written into every checkpoint
//!   the trainer saves, measured on training images); without a calibration it is the raw det
//!   score (industrial) or the map maximum (medical).
//!
//! Checkpoints ([`checkpoint`]): the official training script's `text_adapter.pth` and
//! `image_adapter*.pth` (both projector variants, told apart by their key names) and our own
//! safetensors files with the same key names and `[out, in]` layout.
//!
//! Training (feature `train`, [`train`]): both stages of `train.py` with their losses,
//! optimisers and schedules, and a documented mode that fixes the two official quirks.
//!
//! # Options a front end needs (for `vlad infer` / `vlad eval`)
//! * `--checkpoint DIR|FILE…` ([`checkpoint::resolve_paths`]): a training directory or the files
//!   themselves (`text_adapter.{pth,safetensors}`, `image_adapter[_N].{pth,safetensors}`).
//! * `--aa-epoch N`: which `image_adapter_N` of a directory (default 15 when present, as the paper;
//!   else the latest `image_adapter`).
//! * `--aa-image-size S` ([`AaClipOptions::image_size`]; default the checkpoint's, else 518).
//! * `--aa-domain industrial|medical` (default from the class: the official medical sets are
//!   medical, everything else industrial).
//! * `--aa-real-name TEXT`: the phrase used in the prompts instead of the official real name (for
//!   classes outside the official tables the folder name with `_` → space is used).
//! * `--aa-keep-activation`: do not switch the backbone to exact GELU.
//! * The evaluation's `--official-fusion` maps to [`Detector::set_fusion`].
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use vlad_clip::preprocess::Preprocess;
use vlad_clip::{Activation, ClipConfig, ClipModel, ClipTokenizer, PosEmbedResize};

use crate::postprocess::{AxisMap, apply_square};
use crate::{DetectError, Detection, Detector, MapRange, MapStatistic, SetFusion};

mod adapters;
pub mod checkpoint;
pub mod prompts;
pub mod scoring;
#[cfg(feature = "train")]
pub mod train;

pub use adapters::{Adapter, AdapterHook, ClassTokens, ImageAdapter, LEAKY_SLOPE, Projector, TextAdapter, VisionFeatures, anchors, encode_text, vision_features};
pub use checkpoint::AaClipWeights;
pub use scoring::{AaClipCalibration, ScoreRange};

/// Where a class comes from: it sets the blur and the image-score fusion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Domain {
    /// VisA, MVTec, BTAD, MPDD and anything unknown: 7×7 blur with σ = 1, `0.5·pmax + 0.5·det`.
    Industrial,
    /// Brain, Liver, Retina, the colon sets: 9×9 blur with σ = 1.5, image score `pmax`.
    Medical,
}

impl Domain {
    /// Parses `industrial` or `medical`.
    pub fn parse(s: &str) -> Result<Self, DetectError> {
        match s.to_ascii_lowercase().as_str() {
            "industrial" => Ok(Self::Industrial),
            "medical" => Ok(Self::Medical),
            other => Err(DetectError::Invalid(format!("unknown AA-CLIP domain `{other}`: expected industrial or medical"))),
        }
    }

    /// Gaussian kernel size and σ of the map blur.
    pub fn blur(self) -> (usize, f64) {
        match self {
            Self::Industrial => (7, 1.0),
            Self::Medical => (9, 1.5),
        }
    }
}

/// The shape of an AA-CLIP model around its backbone. [`AaClipConfig::official`] holds the
/// published values; [`AaClipConfig::for_backbone`] scales them to other depths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AaClipConfig {
    /// 1-based vision blocks whose outputs feed the per-level heads (6, 12, 18, 24).
    pub levels: Vec<usize>,
    /// Vision blocks, from the first, followed by a residual adapter (6).
    pub image_adapt_until: usize,
    /// Text blocks, from the first, followed by a residual adapter (3).
    pub text_adapt_until: usize,
    /// λ of the vision adapters (0.1).
    pub image_adapt_weight: f64,
    /// λ of the text adapters (0.1).
    pub text_adapt_weight: f64,
    /// LeakyReLU after `seg_proj` / `det_proj` (the official `--relu`, off by default).
    pub relu: bool,
    /// Vision width D (1024).
    pub vision_width: usize,
    /// Text width W (768).
    pub text_width: usize,
    /// Joint space E of anchors and projected patches (768, CLIP's embed dim: the stage-1
    /// features are `@ visual.proj`).
    pub embed_dim: usize,
    /// First 1-based block with V-V attention in the stage-1 surgery model (6: `DPAM_layer = 20`
    /// replaces the last 19 of 24 blocks).
    pub surgery_from_block: usize,
    /// Input side S (518).
    pub image_size: usize,
}

impl AaClipConfig {
    /// The official ViT-L-14-336 values.
    pub fn official() -> Self {
        Self {
            levels: vec![6, 12, 18, 24],
            image_adapt_until: 6,
            text_adapt_until: 3,
            image_adapt_weight: 0.1,
            text_adapt_weight: 0.1,
            relu: false,
            vision_width: 1024,
            text_width: 768,
            embed_dim: 768,
            surgery_from_block: 6,
            image_size: 518,
        }
    }

    /// The official values for a 24-block vision / 12-block text backbone; for other depths the
    /// levels are the quarters of the vision depth, the vision adapters and the surgery start at
    /// the first level, and a quarter of the text blocks (at least one) get adapters. The input
    /// side keeps 37 patches per side (518 px for patch 14).
    pub fn for_backbone(clip: &ClipConfig) -> Self {
        let layers = clip.vision.layers;
        let levels: Vec<usize> = (1..=4).map(|k| ((k * layers) as f64 / 4.0).round().max(1.0) as usize).collect();
        Self {
            image_adapt_until: levels[0],
            surgery_from_block: levels[0],
            levels,
            text_adapt_until: ((clip.text.layers as f64 / 4.0).round() as usize).clamp(1, clip.text.layers.max(1)),
            vision_width: clip.vision.width,
            text_width: clip.text.width,
            embed_dim: clip.embed_dim,
            image_size: 37 * clip.vision.patch_size,
            ..Self::official()
        }
    }

    /// Checks the config against a backbone.
    pub fn validate(&self, clip: &ClipConfig) -> Result<(), DetectError> {
        let mut problems = Vec::new();
        let (layers, text_layers) = (clip.vision.layers, clip.text.layers);
        if self.levels.is_empty() {
            problems.push("no tap levels".to_string());
        }
        if let Some(bad) = self.levels.iter().find(|&&l| l == 0 || l > layers) {
            problems.push(format!("level {bad} is outside vision blocks 1..={layers}"));
        }
        if self.image_adapt_until > layers {
            problems.push(format!("{} vision adapters for {layers} blocks", self.image_adapt_until));
        }
        if self.text_adapt_until > text_layers {
            problems.push(format!("{} text adapters for {text_layers} blocks", self.text_adapt_until));
        }
        if self.surgery_from_block == 0 || self.surgery_from_block > layers {
            problems.push(format!("surgery block {} is outside 1..={layers}", self.surgery_from_block));
        }
        for (what, ours, theirs) in [
            ("vision width", self.vision_width, clip.vision.width),
            ("text width", self.text_width, clip.text.width),
            ("joint dimension (CLIP embed dim)", self.embed_dim, clip.embed_dim),
        ] {
            if ours != theirs {
                problems.push(format!("{what} {ours} does not match the backbone's {theirs}"));
            }
        }
        if self.image_size < clip.vision.patch_size {
            problems.push(format!("image size {} is below the patch size {}", self.image_size, clip.vision.patch_size));
        }
        for (what, lambda) in [("image", self.image_adapt_weight), ("text", self.text_adapt_weight)] {
            if !(0.0..=1.0).contains(&lambda) {
                problems.push(format!("{what} adapter weight {lambda} is outside [0, 1]"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(DetectError::Invalid(format!("AA-CLIP config does not fit backbone `{}`: {}", clip.name, problems.join("; "))))
        }
    }

    /// Patch-grid side at [`Self::image_size`].
    pub fn grid(&self, patch_size: usize) -> usize {
        self.image_size / patch_size
    }
}

/// Options of the inference detector (see the module documentation for their CLI names).
#[derive(Debug, Clone, Default)]
pub struct AaClipOptions {
    /// Input side S (default: the checkpoint's, else the backbone default of
    /// [`AaClipConfig::for_backbone`], 518 for ViT-L-14-336).
    pub image_size: Option<usize>,
    /// Domain for every class (default: from the class table, unknown classes industrial).
    pub domain: Option<Domain>,
    /// Phrase used in the prompts instead of the class's real name.
    pub real_name: Option<String>,
    /// Calibration of the single-image score (default: the one stored in the checkpoint).
    pub calibration: Option<AaClipCalibration>,
    /// Keep the backbone's activation and positional-resize rule (default: switch to exact GELU
    /// and rule A, as the official model).
    pub keep_backbone_settings: bool,
    /// `image_adapter_N` to use from a checkpoint directory.
    pub epoch: Option<usize>,
}

/// The current class: its prompts and anchors.
#[derive(Debug, Clone)]
pub struct ClassState {
    /// The class name given to [`Detector::set_class`].
    pub name: String,
    /// The phrase in the prompts.
    pub real_name: String,
    /// Where the phrase came from.
    pub name_source: prompts::NameSource,
    /// Blur and fusion domain.
    pub domain: Domain,
    /// Anchors `[E, 2]` (normal, anomalous).
    pub anchors: Tensor<2>,
}

/// The AA-CLIP detector (inference).
pub struct AaClip {
    model: ClipModel,
    tokenizer: ClipTokenizer,
    config: AaClipConfig,
    weights: AaClipWeights,
    options: AaClipOptions,
    class: Option<ClassState>,
}

impl AaClip {
    /// Builds the detector from a backbone and loaded adapter weights.
    pub fn new(model: ClipModel, weights: AaClipWeights, options: AaClipOptions) -> Result<Self, DetectError> {
        let model = if options.keep_backbone_settings {
            model
        } else {
            let mut model = model.with_activation(Activation::Gelu);
            model.visual.pos_resize = PosEmbedResize::AntialiasBicubic;
            model
        };
        let mut config = weights.config.clone();
        if let Some(size) = options.image_size {
            config.image_size = size;
        }
        config.validate(&model.config)?;
        Ok(Self { model, tokenizer: ClipTokenizer::openai()?, config, weights, options, class: None })
    }

    /// Loads adapter checkpoints (directories or files, see [`checkpoint::resolve_paths`]) for
    /// `model` and builds the detector. Notes about the choices made (which epoch, a missing text
    /// adapter) are returned for the caller to print.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(model: ClipModel, paths: &[std::path::PathBuf], options: AaClipOptions) -> Result<(Self, Vec<String>), DetectError> {
        let device = model.visual.proj.device();
        let (files, mut notes) = checkpoint::resolve_paths(paths, options.epoch)?;
        let weights = checkpoint::load_files(&files, &model.config, &device)?;
        if weights.text.is_none() {
            notes.push("no text adapter: anchors come from CLIP's own text encoder with text_projection (official fallback)".into());
        }
        Ok((Self::new(model, weights, options)?, notes))
    }

    /// The model config in use.
    pub fn config(&self) -> &AaClipConfig {
        &self.config
    }

    /// The backbone.
    pub fn model(&self) -> &ClipModel {
        &self.model
    }

    /// The adapter weights.
    pub fn weights(&self) -> &AaClipWeights {
        &self.weights
    }

    /// The current class, if set.
    pub fn class(&self) -> Option<&ClassState> {
        self.class.as_ref()
    }

    /// The calibration used by the single-image score (the option, else the checkpoint's).
    pub fn calibration(&self) -> Option<&AaClipCalibration> {
        self.options.calibration.as_ref().or(self.weights.calibration.as_ref())
    }

    /// Replaces the calibration of the single-image score.
    pub fn set_calibration(&mut self, calibration: Option<AaClipCalibration>) {
        self.options.calibration = calibration;
    }

    /// Adapted features of a batch `[B, 3, S, S]`.
    pub fn features(&self, pixels: Tensor<4>) -> Result<VisionFeatures, DetectError> {
        vision_features(&self.model, &self.weights.image, &self.config, pixels)
    }

    /// Anchors `[E, 2]` of a prompt phrase.
    pub fn anchors_for(&self, real_name: &str) -> Result<Tensor<2>, DetectError> {
        let tokens = class_tokens(&self.tokenizer, real_name)?;
        let mut out = anchors(&self.model, self.weights.text.as_ref(), &self.config, &[tokens])?;
        Ok(out.remove(0))
    }

    fn domain(&self) -> Domain {
        self.class.as_ref().map_or(self.options.domain.unwrap_or(Domain::Industrial), |c| c.domain)
    }
}

/// Tokenised sentences of a real name.
pub fn class_tokens(tokenizer: &ClipTokenizer, real_name: &str) -> Result<ClassTokens, DetectError> {
    let (normal, anomalous) = prompts::sentences(real_name);
    Ok(ClassTokens { normal: tokenizer.tokenize_batch(&normal)?, anomalous: tokenizer.tokenize_batch(&anomalous)? })
}

/// Maps of a batch from adapted features and shared anchors `[E, 2]`: the blurred sum of the
/// level maps on the grid `[B, G, G]` and its upsampling to `size` `[B, S, S]`.
pub fn test_maps(seg: &[Tensor<3>], anchors: Tensor<2>, size: usize, domain: Domain) -> (Tensor<3>, Tensor<3>) {
    let mut sum: Option<Tensor<3>> = None;
    for features in seg {
        let b = features.dims()[0];
        let level = scoring::level_map(scoring::similarity(features.clone(), scoring::shared_anchors(anchors.clone(), b)));
        sum = Some(match sum {
            Some(s) => s + level,
            None => level,
        });
    }
    let sum = sum.expect("at least one level");
    let g = sum.dims()[1];
    let patch_map = apply_square(sum, &scoring::grid_blur(g, domain));
    let map = apply_square(patch_map.clone(), &AxisMap::bilinear(g, size, true));
    (patch_map, map)
}

impl Detector for AaClip {
    fn name(&self) -> &'static str {
        "aa-clip"
    }

    fn device(&self) -> Device {
        self.model.visual.proj.device()
    }

    fn preprocess(&self) -> Preprocess {
        Preprocess::squash(self.config.image_size as u32)
    }

    fn grid(&self) -> usize {
        self.config.grid(self.model.visual.patch_size)
    }

    fn set_class(&mut self, name: &str) -> Result<(), DetectError> {
        if name.trim().is_empty() {
            return Err(DetectError::Invalid("empty class name".into()));
        }
        let (real_name, name_source) = match &self.options.real_name {
            Some(given) => (given.clone(), prompts::NameSource::Given),
            None => prompts::real_name(name),
        };
        let domain = self.options.domain.or_else(|| prompts::class_domain(name)).unwrap_or(Domain::Industrial);
        let anchors = self.anchors_for(&real_name)?;
        self.class = Some(ClassState { name: name.to_string(), real_name, name_source, domain, anchors });
        Ok(())
    }

    fn detect(&self, pixels: Tensor<4>) -> Result<Detection, DetectError> {
        let class = self.class.as_ref().ok_or_else(|| DetectError::Invalid("call set_class before detect".into()))?;
        let [b, c, h, w] = pixels.dims();
        let s = self.config.image_size;
        if b == 0 || c != 3 || h != s || w != s {
            return Err(DetectError::Invalid(format!("AA-CLIP takes images [B ≥ 1, 3, {s}, {s}], got [{b}, {c}, {h}, {w}]")));
        }
        let features = self.features(pixels)?;
        let (patch_map, map) = test_maps(&features.seg, class.anchors.clone(), s, class.domain);
        let det = scoring::image_raw(features.det, class.anchors.clone());
        let image_score = match self.calibration() {
            Some(calibration) => {
                let map_max = map.clone().reshape([b, s * s]).max_dim(1).reshape([b]);
                calibration.fuse(map_max, det.clone(), class.domain)
            }
            None => match class.domain {
                Domain::Industrial => det.clone(),
                Domain::Medical => map.clone().reshape([b, s * s]).max_dim(1).reshape([b]),
            },
        };
        Ok(Detection { image_score, map, patch_map, map_components: vec![], components: vec![("det".to_string(), det)] })
    }

    fn set_fusion(&self) -> SetFusion {
        match self.domain() {
            Domain::Industrial => SetFusion::MinMax { component: Some("det".into()), map_weight: 0.5, component_weight: 0.5, statistic: MapStatistic::Max, map_range: MapRange::AllPixels, normalize_component: true },
            Domain::Medical => SetFusion::MinMax { component: None, map_weight: 1.0, component_weight: 0.0, statistic: MapStatistic::Max, map_range: MapRange::AllPixels, normalize_component: true },
        }
    }
}
