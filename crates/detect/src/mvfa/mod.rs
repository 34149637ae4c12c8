//! MVFA-AD (Huang et al., CVPR 2024), zero-shot inference as its official code behaves
//! (`spec/baselines.md` §7 with the audit's §4; github.com/MediaBrain-SJTU/MVFA-AD at a30bf7b,
//! `CLIP/adapter.py` and `test_zero.py`).
//!
//! * **Backbone:** OpenAI ViT-L/14@336 with **exact GELU** at **240 px** (17×17 patches), the
//!   positional table resized by antialiased bicubic (rule A); the input is **not** mean/std
//!   normalised (`Resize((240, 240), BICUBIC)` + `ToTensor` only; audit M1).
//! * **Adapters** after blocks 6/12/18/24 (`CLIP_Inplanted`), one `seg` and one `det` adapter per
//!   tap: `med = LeakyReLU(Linear(D → 768, no bias)(x))`, `out = LeakyReLU(Linear(768 → D, no
//!   bias)(med))`; the residual stream is **modified**, `x ← 0.8·x + 0.1·seg_out + 0.1·det_out`, so
//!   later blocks see adapted features — through the backbone's per-block hook
//!   ([`vlad_clip::BlockHook`]), not a copy of the tower. The `med` tokens (CLS dropped) are the
//!   features, taken as text-aligned.
//! * **Text:** VAND's 7 + 5 states × 35 templates ensemble ([`crate::vand::text_prototypes`]) with
//!   MVFA's real names ([`real_name`]).
//! * **Map:** `Σ_taps softmax(up_ac(100·n(seg)·T))₁` at S (logits upsampled bilinearly,
//!   `align_corners=True`); **image score:** `Σ_taps mean_patches softmax(100·n(det)·T)₁`. The
//!   official test min–max normalises both over the test set ([`Detector::set_fusion`]); the
//!   single-image score is the raw sum.
//!
//!
//! **Few-shot** (`test_few.py`, [`Detector::fit_reference`]): the K normal shots are augmented 11
//! ways ([`augment`]); every token (CLS included, audit M2) of every augmented shot, per tap and
//! per head, forms a memory, normalised with `cos_sim`'s norm clamp 1e-8. A query's few-shot map
//! is `Σ_taps up_ac(min_memory(1 − cos(patch, memory)))` at S. The head follows `CLASS_INDEX`
//! ([`MvfaHead::for_class`]): the **segmentation** head (Brain, Liver, Retina_RESC) reports
//! `max(mm(zero) / 2 + mm(few) / 2)` over the set, the **classification** head (Retina_OCT2017,
//! Chest, Histopathology) `mm(det) / 2 + mm(few_det) / 2` with `few_det` the mean of the few-shot
//! map ([`SetFusion::MapMix`]). The single-image map is the raw `zero + few`; the single-image
//! score its maximum (segmentation head) or `det + few_det` (classification head).
//!
//! Training (`train_zero.py`, `train_few.py`): [`train`].
use std::cell::RefCell;

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::{leaky_relu, softmax};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use vlad_clip::preprocess::{Preprocess, Resize};
use vlad_clip::{Activation, BlockHook, ClipConfig, ClipModel, ClipTokenizer, PosEmbedResize, VisionForward};

use crate::postprocess::{AxisMap, apply_square, tokens_to_grid};
use crate::prompts::l2_normalize;
use crate::{DetectError, Detection, Detector, MapRange, MapStatistic, SetFusion};

pub mod augment;
pub mod checkpoint;
#[cfg(feature = "train")]
pub mod train;

/// The logit scale of maps and scores.
pub const LOGIT_SCALE: f64 = 100.0;
/// PyTorch's `LeakyReLU` default slope.
pub const LEAKY_SLOPE: f64 = 0.01;
/// The weight of the stream in `0.8·x + 0.1·seg + 0.1·det`.
pub const STREAM_WEIGHT: f64 = 0.8;
/// The weight of each adapter output.
pub const ADAPTER_WEIGHT: f64 = 0.1;

/// `REAL_NAME` of `prompt.py`: the dataset folder names to the names in the prompts; any other
/// name is used as it is.
pub fn real_name(class_name: &str) -> &str {
    match class_name {
        "Brain" => "Brain",
        "Liver" => "Liver",
        "Retina_RESC" | "Retina_OCT2017" => "retinal OCT",
        "Chest" => "Chest X-ray film",
        "Histopathology" => "histopathological image",
        other => other,
    }
}

/// `cos_sim`'s clamp of the norms.
pub const COS_EPS: f64 = 1e-8;

/// Which adapters score an image in few-shot mode (`CLASS_INDEX` of `test_few.py`: positive =
/// segmentation, negative = classification).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MvfaHead {
    /// The `seg` adapters: maps, image score from the fused map.
    Segmentation,
    /// The `det` adapters: image scores only.
    Classification,
}

impl MvfaHead {
    /// `CLASS_INDEX`: Brain, Liver, Retina_RESC segment; Retina_OCT2017, Chest, Histopathology
    /// classify; any other class segments.
    pub fn for_class(class_name: &str) -> Self {
        match class_name {
            "Retina_OCT2017" | "Chest" | "Histopathology" => Self::Classification,
            _ => Self::Segmentation,
        }
    }
}

/// The few-shot memory: per tap the normalised tokens `[M, bottleneck]` of every augmented shot.
#[derive(Debug, Clone)]
pub struct MvfaMemory {
    /// `seg` med tokens per tap.
    pub seg: Vec<Tensor<2>>,
    /// `det` med tokens per tap.
    pub det: Vec<Tensor<2>>,
    /// The number of (unaugmented) shots.
    pub shots: usize,
}

/// `a / clamp(‖a‖, 1e-8)` over the last axis.
fn cos_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powf_scalar(2.0).sum_dim(1).sqrt().clamp_min(COS_EPS);
    x / norm
}

/// The shape of an MVFA model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MvfaConfig {
    /// 1-based adapted blocks (6/12/18/24).
    pub taps: Vec<usize>,
    /// Input side S (240).
    pub image_size: usize,
    /// Adapter bottleneck (768, the embedding width the tokens are compared in).
    pub bottleneck: usize,
}

impl MvfaConfig {
    /// The official settings for a backbone: the quarter taps, `--img_size 240` (17 patches a side
    /// for ViT-L/14), the bottleneck at the embedding width.
    pub fn for_backbone(clip: &ClipConfig) -> Self {
        let q = (clip.vision.layers / 4).max(1);
        Self { taps: (1..=4).map(|i| q * i).collect(), image_size: 240, bottleneck: clip.embed_dim }
    }

    /// Problems of the config for a backbone.
    pub fn validate(&self, clip: &ClipConfig) -> Result<(), DetectError> {
        let layers = clip.vision.layers;
        let mut problems = Vec::new();
        if self.taps.is_empty() {
            problems.push("no taps".to_string());
        }
        if let Some(bad) = self.taps.iter().find(|&&t| t == 0 || t > layers) {
            problems.push(format!("tap {bad} is outside blocks 1..={layers}"));
        }
        if self.bottleneck != clip.embed_dim {
            problems.push(format!("adapter bottleneck {} differs from the embedding width {} the text features have", self.bottleneck, clip.embed_dim));
        }
        if self.image_size < clip.vision.patch_size {
            problems.push(format!("image size {} is below the patch size {}", self.image_size, clip.vision.patch_size));
        }
        if problems.is_empty() { Ok(()) } else { Err(DetectError::Invalid(format!("MVFA config: {}", problems.join("; ")))) }
    }
}

/// `ClipAdapter`: two bias-free linear maps with LeakyReLU.
#[derive(Module, Debug)]
pub struct ClipAdapter {
    /// `fc1.0`: D → bottleneck.
    pub fc1: Linear,
    /// `fc2.0`: bottleneck → D.
    pub fc2: Linear,
}

impl ClipAdapter {
    /// Randomly initialised (PyTorch's default `Linear` init, no bias).
    pub fn new(width: usize, bottleneck: usize, device: &Device) -> Self {
        Self { fc1: LinearConfig::new(width, bottleneck).with_bias(false).init(device), fc2: LinearConfig::new(bottleneck, width).with_bias(false).init(device) }
    }

    /// `(med, out)`.
    pub fn forward(&self, x: Tensor<3>) -> (Tensor<3>, Tensor<3>) {
        let med = leaky_relu(self.fc1.forward(x), LEAKY_SLOPE);
        let out = leaky_relu(self.fc2.forward(med.clone()), LEAKY_SLOPE);
        (med, out)
    }
}

/// The `seg_adapters` and `det_adapters` lists.
#[derive(Module, Debug)]
pub struct MvfaAdapters {
    /// One per tap.
    pub seg: Vec<ClipAdapter>,
    /// One per tap.
    pub det: Vec<ClipAdapter>,
}

impl MvfaAdapters {
    /// Freshly initialised adapters for `config` on `clip`.
    pub fn new(config: &MvfaConfig, clip: &ClipConfig, device: &Device) -> Self {
        let make = || config.taps.iter().map(|_| ClipAdapter::new(clip.vision.width, config.bottleneck, device)).collect();
        Self { seg: make(), det: make() }
    }
}

/// The per-block hook: after each tapped block, both adapters read the stream, their `med` tokens
/// are kept, and the stream becomes `0.8·x + 0.1·seg_out + 0.1·det_out`.
struct StreamAdapters<'a> {
    adapters: &'a MvfaAdapters,
    taps: &'a [usize],
    meds: RefCell<Vec<(Tensor<3>, Tensor<3>)>>,
}

impl BlockHook for StreamAdapters<'_> {
    fn after_block(&self, block: usize, x: Tensor<3>) -> Tensor<3> {
        let Some(i) = self.taps.iter().position(|&t| t == block) else { return x };
        // Training: the stream joins the adapters' graph at the first tap.
        let x = if self.adapters.seg[i].fc1.weight.val().is_autodiff() && !x.is_autodiff() { x.autodiff() } else { x };
        let (seg_med, seg_out) = self.adapters.seg[i].forward(x.clone());
        let (det_med, det_out) = self.adapters.det[i].forward(x.clone());
        self.meds.borrow_mut().push((seg_med, det_med));
        x.mul_scalar(STREAM_WEIGHT) + seg_out.mul_scalar(ADAPTER_WEIGHT) + det_out.mul_scalar(ADAPTER_WEIGHT)
    }
}

/// The adapted image features of a batch.
pub struct MvfaFeatures {
    /// `seg` med tokens per tap `[B, 1 + G², bottleneck]` (CLS first).
    pub seg: Vec<Tensor<3>>,
    /// `det` med tokens per tap.
    pub det: Vec<Tensor<3>>,
    /// `ln_post(CLS) @ proj` of the adapted stream `[B, E]`.
    pub pooled: Tensor<2>,
}

/// The adapted forward of `CLIP_Inplanted`.
pub fn image_features(model: &ClipModel, adapters: &MvfaAdapters, config: &MvfaConfig, pixels: Tensor<4>) -> Result<MvfaFeatures, DetectError> {
    let hook = StreamAdapters { adapters, taps: &config.taps, meds: RefCell::new(Vec::new()) };
    let out = model.visual.forward(pixels, VisionForward { hook: Some(&hook), ..Default::default() })?;
    let pooled = model.visual.pool(out.last);
    let (seg, det) = hook.meds.into_inner().into_iter().unzip();
    Ok(MvfaFeatures { seg, det, pooled })
}

/// Per tap the patch probabilities of the anomalous prompt `[B, G²]` and the logits `[B, G², 2]`
/// of `tokens` (CLS dropped, normalised) against `text` `[2, E]`.
fn patch_logits(tokens: &Tensor<3>, text: &Tensor<2>) -> Tensor<3> {
    let [b, t, e] = tokens.dims();
    let u = l2_normalize(tokens.clone().slice([0..b, 1..t, 0..e]));
    u.reshape([b * (t - 1), e]).matmul(text.clone().transpose()).mul_scalar(LOGIT_SCALE).reshape([b, t - 1, 2])
}

/// Options of [`Mvfa::new`].
#[derive(Debug, Clone, Default)]
pub struct MvfaOptions {
    /// Input side (default: the config's, 240).
    pub image_size: Option<usize>,
    /// Keep the backbone's activation and positional rule (default: exact GELU and rule A).
    pub keep_backbone_settings: bool,
    /// The few-shot head (default: by class name, [`MvfaHead::for_class`]).
    pub head: Option<MvfaHead>,
    /// Images per forward pass when building the few-shot memory (default 8).
    pub memory_batch: Option<usize>,
}

/// The MVFA-AD zero-shot detector.
pub struct Mvfa {
    model: ClipModel,
    adapters: MvfaAdapters,
    config: MvfaConfig,
    tokenizer: ClipTokenizer,
    text: Option<Tensor<2>>,
    options: MvfaOptions,
    head: MvfaHead,
    memory: Option<MvfaMemory>,
}

impl Mvfa {
    /// Wraps a backbone and adapters.
    pub fn new(mut model: ClipModel, adapters: MvfaAdapters, mut config: MvfaConfig, options: MvfaOptions) -> Result<Self, DetectError> {
        if !options.keep_backbone_settings {
            model = model.with_activation(Activation::Gelu);
            model.visual.pos_resize = PosEmbedResize::AntialiasBicubic;
        }
        if let Some(size) = options.image_size {
            config.image_size = size;
        }
        config.validate(&model.config)?;
        let head = options.head.unwrap_or(MvfaHead::Segmentation);
        Ok(Self { model, adapters, config, tokenizer: ClipTokenizer::openai()?, text: None, options, head, memory: None })
    }

    /// [`Mvfa::new`] from loaded weights.
    pub fn from_weights(model: ClipModel, weights: checkpoint::MvfaWeights, options: MvfaOptions) -> Result<Self, DetectError> {
        Self::new(model, weights.adapters, weights.config, options)
    }

    /// The backbone.
    pub fn model(&self) -> &ClipModel {
        &self.model
    }

    /// The adapters.
    pub fn adapters(&self) -> &MvfaAdapters {
        &self.adapters
    }

    /// The configuration.
    pub fn config(&self) -> &MvfaConfig {
        &self.config
    }

    /// The few-shot head of the current class.
    pub fn head(&self) -> MvfaHead {
        self.head
    }

    /// The few-shot memory, once references are fitted.
    pub fn memory(&self) -> Option<&MvfaMemory> {
        self.memory.as_ref()
    }

    /// The few-shot map `[B, S, S]` and its patch-grid sum `[B, G, G]` of query tokens per tap
    /// against a memory per tap.
    fn few_shot_maps(&self, tokens: &[Tensor<3>], memory: &[Tensor<2>]) -> (Tensor<3>, Tensor<3>) {
        let s = self.config.image_size;
        let up = AxisMap::bilinear(self.grid(), s, true);
        let (mut map, mut patch_map): (Option<Tensor<3>>, Option<Tensor<3>>) = (None, None);
        for (t, mem) in tokens.iter().zip(memory) {
            let [b, n, e] = t.dims();
            let g = self.grid();
            let query = cos_normalize(t.clone().slice([0..b, 1..n, 0..e]).reshape([b * (n - 1), e]));
            // min over the memory of (1 − cos) = 1 − max cos (1 − x is monotone: the same floats).
            let nearest = query.matmul(mem.clone().transpose()).max_dim(1).reshape([b, n - 1]);
            let grid = tokens_to_grid(nearest.neg().add_scalar(1.0), g);
            let up_map = apply_square(grid.clone(), &up);
            map = Some(map.map_or(up_map.clone(), |m| m + up_map));
            patch_map = Some(patch_map.map_or(grid.clone(), |m| m + grid));
        }
        (map.expect("at least one tap"), patch_map.expect("at least one tap"))
    }

    /// The text prototypes `[2, E]` of the current class.
    pub fn text(&self) -> Option<&Tensor<2>> {
        self.text.as_ref()
    }
}

impl Detector for Mvfa {
    fn name(&self) -> &'static str {
        "mvfa"
    }

    fn device(&self) -> Device {
        self.model.visual.proj.device()
    }

    /// `Resize((S, S), BICUBIC)` + `ToTensor`: no mean/std normalisation.
    fn preprocess(&self) -> Preprocess {
        Preprocess { size: self.config.image_size as u32, resize: Resize::Squash, mean: [0.0; 3], std: [1.0; 3] }
    }

    fn grid(&self) -> usize {
        self.model.visual.grid_for(self.config.image_size)
    }

    /// `Brain`, `Liver`, `Retina_RESC`, `Retina_OCT2017`, `Chest`, `Histopathology` get MVFA's real
    /// names; other names are used as they are.
    fn set_class(&mut self, name: &str) -> Result<(), DetectError> {
        self.text = Some(crate::vand::text_prototypes(&self.model, &self.tokenizer, real_name(name))?);
        self.head = self.options.head.unwrap_or_else(|| MvfaHead::for_class(name));
        // The memory belongs to the previous class.
        self.memory = None;
        Ok(())
    }

    /// `test_few.py`'s memory: the references augmented 11 ways, every token per tap and head.
    fn fit_reference(&mut self, normal: Tensor<4>) -> Result<(), DetectError> {
        let [k, c, h, w] = normal.dims();
        let s = self.config.image_size;
        if k == 0 || c != 3 || h != s || w != s {
            return Err(DetectError::Invalid(format!("MVFA reference images must be [K ≥ 1, 3, {s}, {s}], got [{k}, {c}, {h}, {w}]")));
        }
        let augmented = augment::augment(normal);
        let total = k * augment::AUGMENTED_PER_SHOT;
        let chunk = self.options.memory_batch.unwrap_or(8).max(1);
        let taps = self.config.taps.len();
        let (mut seg, mut det): (Vec<Vec<Tensor<2>>>, Vec<Vec<Tensor<2>>>) = (vec![Vec::new(); taps], vec![Vec::new(); taps]);
        for start in (0..total).step_by(chunk) {
            let end = (start + chunk).min(total);
            let features = image_features(&self.model, &self.adapters, &self.config, augmented.clone().slice([start..end, 0..3, 0..s, 0..s]))?;
            for (i, (sg, dt)) in features.seg.into_iter().zip(features.det).enumerate() {
                let [b, n, e] = sg.dims();
                seg[i].push(cos_normalize(sg.reshape([b * n, e])));
                det[i].push(cos_normalize(dt.reshape([b * n, e])));
            }
        }
        let cat = |parts: Vec<Vec<Tensor<2>>>| parts.into_iter().map(|p| Tensor::cat(p, 0)).collect();
        self.memory = Some(MvfaMemory { seg: cat(seg), det: cat(det), shots: k });
        Ok(())
    }

    fn detect(&self, pixels: Tensor<4>) -> Result<Detection, DetectError> {
        let [b, c, h, w] = pixels.dims();
        let s = self.config.image_size;
        if b == 0 || c != 3 || h != s || w != s {
            return Err(DetectError::Invalid(format!("MVFA takes images [B ≥ 1, 3, {s}, {s}], got [{b}, {c}, {h}, {w}]")));
        }
        let text = self.text.as_ref().ok_or_else(|| DetectError::Invalid("MVFA: set the class before scoring (its prompts name it)".into()))?;
        let g = self.grid();
        let l = g * g;
        let features = image_features(&self.model, &self.adapters, &self.config, pixels)?;
        let up = AxisMap::bilinear(g, s, true);
        let (mut map, mut patch_map, mut score): (Option<Tensor<3>>, Option<Tensor<3>>, Option<Tensor<1>>) = (None, None, None);
        for tokens in &features.seg {
            let logits = patch_logits(tokens, text);
            let grid = |ch: usize| tokens_to_grid(logits.clone().narrow(2, ch, 1).reshape([b, l]), g);
            let (n, a) = (grid(0), grid(1));
            let p = softmax(Tensor::stack::<4>(vec![apply_square(n.clone(), &up), apply_square(a.clone(), &up)], 1), 1).narrow(1, 1, 1).reshape([b, s, s]);
            let pp = softmax(Tensor::stack::<4>(vec![n, a], 1), 1).narrow(1, 1, 1).reshape([b, g, g]);
            map = Some(map.map_or(p.clone(), |m| m + p));
            patch_map = Some(patch_map.map_or(pp.clone(), |m| m + pp));
        }
        for tokens in &features.det {
            let prob = softmax(patch_logits(tokens, text), 2).narrow(2, 1, 1).reshape([b, l]).mean_dim(1).reshape([b]);
            score = Some(score.map_or(prob.clone(), |s| s + prob));
        }
        let score = score.expect("at least one tap");
        let (map, patch_map) = (map.expect("at least one tap"), patch_map.expect("at least one tap"));
        let Some(memory) = &self.memory else {
            return Ok(Detection { image_score: score.clone(), map, patch_map, map_components: vec![], components: vec![("det".into(), score)] });
        };
        let (few, few_patch) = match self.head {
            MvfaHead::Segmentation => self.few_shot_maps(&features.seg, &memory.seg),
            MvfaHead::Classification => self.few_shot_maps(&features.det, &memory.det),
        };
        let few_det = few.clone().reshape([b, s * s]).mean_dim(1).reshape([b]);
        let image_score = match self.head {
            MvfaHead::Segmentation => (map.clone() + few.clone()).reshape([b, s * s]).max_dim(1).reshape([b]),
            MvfaHead::Classification => score.clone() + few_det.clone(),
        };
        Ok(Detection {
            image_score,
            map: map.clone() + few.clone(),
            patch_map: patch_map + few_patch,
            map_components: vec![("zero".into(), map), ("few".into(), few)],
            components: vec![("det".into(), score), ("few_det".into(), few_det)],
        })
    }

    /// `test_zero.py`: the image scores min–max normalised over the test set (the maps too, which
    /// does not change pixel AUROC). `test_few.py`: the zero- and few-shot maps (segmentation
    /// head) or scores (classification head) min–max normalised over the set and averaged.
    fn set_fusion(&self) -> SetFusion {
        if self.memory.is_some() {
            let half = |name: &str| (name.to_string(), 0.5f32);
            return match self.head {
                MvfaHead::Segmentation => SetFusion::MapMix { maps: vec![half("zero"), half("few")], components: vec![] },
                MvfaHead::Classification => SetFusion::MapMix { maps: vec![], components: vec![half("det"), half("few_det")] },
            };
        }
        SetFusion::MinMax { component: Some("det".into()), map_weight: 0.0, component_weight: 1.0, statistic: MapStatistic::Max, map_range: MapRange::Statistics, normalize_component: true }
    }
}
