//! AdaCLIP (Cao et al., ECCV 2024), as its official code behaves (`spec/baselines.md` §6 with the
//! audit's §3; github.com/caoyunkang/AdaCLIP at e27ee32, `method/adaclip.py`).
//!
//! * **Backbone:** OpenAI ViT-L/14@336 with **exact GELU**, at 518 px, the positional table resized
//!   by plain bicubic (rule B); [`AdaClip::new`] sets both. Taps after blocks 6/12/18/24 (the raw
//!   residual stream, `n_layers // 4` multiples).
//! * **Hybrid prompts** (`prompting_type='SD'`, `prompting_branch='VL'`, depth 4, length 5): an
//!   unprompted forward gives the pooled image feature `z = ln_post(CLS) @ proj`; 5 linear heads
//!   make dynamic visual prompts `[5, D]` and 5 the dynamic text prompts `[5, E]`. Visual: before
//!   block 1 the 5 tokens `f16(static_v[0] + dyn_v)` are **appended** after the patches, before
//!   blocks 2–4 they are **replaced** by `f16(static_v[i] + dyn_v)` ([`vlad_clip::VisualPrompts`]);
//!   taps drop them. Text: before blocks 2–4 rows 1–5 are **overwritten** by
//!   `f16(static_t[i] + dyn_t)` (`static_t[0]` is never used); the 7 + 5 states × 4 templates are
//!   re-encoded for every image. The official code handles one image per batch; vlad batches the
//!   image tower and encodes the text per image.
//! * **Projections:** 4 × Linear(D → E) on the tapped patch tokens (CLS dropped) and Linear(E → E)
//!   on the pooled feature of the prompted pass, each L2-normalised.
//! * **Map** (`aggregation=True`): per tap `100·u·T`, the logits upsampled bilinearly
//!   (`align_corners=True`), averaged over the taps, softmax, `(P_a + 1 − P_n)/2`, Gaussian σ = 4.
//! * **Image score:** HSF ([`hsf_weights`]): the top `5·k` patches by `softmax(mean_l logits)₁`, their
//!   4 taps' tokens concatenated and clustered by scikit-learn's k-means ([`kmeans`]), the members'
//!   tokens averaged per cluster over all taps, the centroids averaged and normalised → `c`;
//!   `f = n(0.2·c + 0.8·n(cls))`, score `softmax(100·f·T)₁`. Single-image, no set fusion.
//!
//! The k-means draws from NumPy's global generator, seeded with 111 when `test.py` is imported
//! (audit D1): a dataset run is one stream in image order ([`KMeansSeeding::Stream`]); a
//! single-image run gets the first draw after seeding ([`KMeansSeeding::PerImage`], vlad's default,
//! which makes each image's score independent of the others).
//!
//! Checkpoints ([`checkpoint`]): the released `AdaCLIP_Trainer.save` files (38 `clip_model.*`
//! tensors) and our safetensors. Training: [`train`] (feature `train`).
use std::sync::Mutex;

use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use vlad_clip::preprocess::Preprocess;
use vlad_clip::text::{DeepPrompts, TextForward, eot_positions};
use vlad_clip::{Activation, ClipConfig, ClipModel, ClipTokenizer, PosEmbedResize, VisionForward, VisualPrompts};

use crate::anomaly_clip::f16_rounded;
use crate::postprocess::{AxisMap, apply_square, tokens_to_grid};
use crate::prompts::l2_normalize;
use crate::{DetectError, Detection, Detector, HostStaged, Staged};

pub mod checkpoint;
pub mod kmeans;
#[cfg(feature = "train")]
pub mod train;

pub use kmeans::{KMeans, NumpyRandom};

/// The logit scale of maps and image score.
pub const LOGIT_SCALE: f64 = 100.0;
/// HSF's weight of the clustered feature (`alpha`).
pub const HSF_ALPHA: f64 = 0.2;
/// The seed `setup_seed(111)` gives NumPy's global generator in `test.py` / `train.py`.
pub const NUMPY_SEED: u32 = 111;

/// The normal states of the text ensemble (VAND's seven).
pub const NORMAL_STATES: [&str; 7] = ["{}", "flawless {}", "perfect {}", "unblemished {}", "{} without flaw", "{} without defect", "{} without damage"];
/// The anomalous states (VAND's five).
pub const ANOMALOUS_STATES: [&str; 5] = ["damaged {}", "broken {}", "{} with flaw", "{} with defect", "{} with damage"];
/// AdaCLIP's four templates.
pub const TEMPLATES: [&str; 4] = ["a bad photo of a {}.", "a low resolution photo of the {}.", "a bad photo of the {}.", "a cropped photo of the {}."];

/// The sentences of one class: 28 normal then 20 anomalous, in the official order (state, then
/// template); `-` in the class name becomes a space.
pub fn sentences(class_name: &str) -> [Vec<String>; 2] {
    let name = class_name.replace('-', " ");
    let build = |states: &[&str]| -> Vec<String> {
        states.iter().flat_map(|s| TEMPLATES.iter().map(|t| t.replace("{}", &s.replace("{}", &name)))).collect()
    };
    [build(&NORMAL_STATES), build(&ANOMALOUS_STATES)]
}

/// The shape of an AdaCLIP model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaClipConfig {
    /// 1-based taps (6/12/18/24 for 24 blocks).
    pub taps: Vec<usize>,
    /// Input side S (518).
    pub image_size: usize,
    /// Blocks with prompts, the first included (`prompting_depth` 4).
    pub prompting_depth: usize,
    /// Prompt tokens per block (`prompting_length` 5).
    pub prompting_length: usize,
    /// k-means clusters of HSF (`k_clusters` 20).
    pub k_clusters: usize,
    /// Use HSF for the image score (`use_hsf`); off: the projected CLS alone.
    pub use_hsf: bool,
    /// Gaussian σ at S (4); `None` for none.
    pub sigma: Option<f64>,
}

impl AdaClipConfig {
    /// The released models' settings for a backbone: the quarter taps, 37 patches a side.
    pub fn for_backbone(clip: &ClipConfig) -> Self {
        let q = (clip.vision.layers / 4).max(1);
        Self {
            taps: (1..=4).map(|i| q * i).collect(),
            image_size: 37 * clip.vision.patch_size,
            // 4 in the released models; fewer on a backbone with fewer blocks.
            prompting_depth: 4.min(clip.vision.layers).min(clip.text.layers),
            prompting_length: 5,
            k_clusters: 20,
            use_hsf: true,
            sigma: Some(4.0),
        }
    }

    /// Problems of the config for a backbone, with the official architecture constraint.
    pub fn validate(&self, clip: &ClipConfig) -> Result<(), DetectError> {
        let mut problems = Vec::new();
        let layers = clip.vision.layers;
        if self.taps.is_empty() {
            problems.push("no taps".to_string());
        }
        if let Some(bad) = self.taps.iter().find(|&&t| t == 0 || t > layers) {
            problems.push(format!("tap {bad} is outside blocks 1..={layers}"));
        }
        if self.prompting_depth == 0 || self.prompting_depth > layers.min(clip.text.layers) {
            problems.push(format!("prompting depth {} is outside 1..={}", self.prompting_depth, layers.min(clip.text.layers)));
        }
        if self.prompting_length == 0 || self.prompting_length + 2 > clip.text.context_length {
            problems.push(format!("prompting length {} does not fit the text context", self.prompting_length));
        }
        if self.k_clusters == 0 {
            problems.push("k_clusters is 0".to_string());
        }
        if self.image_size < clip.vision.patch_size {
            problems.push(format!("image size {} is below the patch size {}", self.image_size, clip.vision.patch_size));
        }
        if problems.is_empty() { Ok(()) } else { Err(DetectError::Invalid(format!("AdaCLIP config: {}", problems.join("; ")))) }
    }
}

/// AdaCLIP's learned tensors (the six modules `AdaCLIP_Trainer` trains and saves).
#[derive(Module, Debug)]
pub struct AdaClipLearned {
    /// `text_prompter.static_prompts.{i}` `[length, W]` (index 0 is never used). The official code
    /// sizes the text prompter by the embedding width E (`text_channel=output_dim`), which only
    /// runs where the text width W equals E (every released backbone: 768 for ViT-L/14); vlad
    /// sizes it by W, the same shapes there, and also runs backbones with W ≠ E.
    pub text_static: Vec<Param<Tensor<2>>>,
    /// `visual_prompter.static_prompts.{i}` `[length, D]`.
    pub visual_static: Vec<Param<Tensor<2>>>,
    /// `patch_token_layer.head.{l}`: D → E per tap.
    pub patch_token_layer: Vec<Linear>,
    /// `cls_token_layer.head.0`: E → E.
    pub cls_token_layer: Linear,
    /// `dynamic_visual_prompt_generator.head.{j}`: E → D per prompt token.
    pub dynamic_visual: Vec<Linear>,
    /// `dynamic_text_prompt_generator.head.{j}`: E → W per prompt token.
    pub dynamic_text: Vec<Linear>,
}

impl AdaClipLearned {
    /// Freshly initialised as the official constructor does: static prompts N(0, 0.02), linear
    /// layers with PyTorch's default (uniform ±1/√fan_in, burn's default Linear init).
    pub fn new(config: &AdaClipConfig, clip: &ClipConfig, device: &Device) -> Self {
        let (d, e, w, len) = (clip.vision.width, clip.embed_dim, clip.text.width, config.prompting_length);
        let normal = Initializer::Normal { mean: 0.0, std: 0.02 };
        let linear = |i: usize, o: usize| LinearConfig::new(i, o).init(device);
        Self {
            text_static: (0..config.prompting_depth).map(|_| normal.init([len, w], device)).collect(),
            visual_static: (0..config.prompting_depth).map(|_| normal.init([len, d], device)).collect(),
            patch_token_layer: config.taps.iter().map(|_| linear(d, e)).collect(),
            cls_token_layer: linear(e, e),
            dynamic_visual: (0..len).map(|_| linear(e, d)).collect(),
            dynamic_text: (0..len).map(|_| linear(e, w)).collect(),
        }
    }

    /// The dynamic prompts of pooled features `z` `[B, E]`: visual `[B, len, D]`, text `[B, len, W]`.
    pub fn dynamic_prompts(&self, z: Tensor<2>) -> (Tensor<3>, Tensor<3>) {
        let heads = |hs: &[Linear]| Tensor::stack(hs.iter().map(|h| h.forward(z.clone())).collect(), 1);
        (heads(&self.dynamic_visual), heads(&self.dynamic_text))
    }
}

/// How HSF's k-means is seeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KMeansSeeding {
    /// Every image starts from `np.random.seed(seed)` (the official single-image run; vlad's
    /// default: an image's score does not depend on the others).
    PerImage(u32),
    /// One stream from `np.random.seed(seed)` across the images in the order they are scored (the
    /// official dataset run; [`AdaClip::restart_stream`] restarts it).
    Stream(u32),
}

/// The tokenised sentences of the current class.
#[derive(Debug, Clone)]
pub struct ClassText {
    /// The class name.
    pub name: String,
    /// Token embeddings `[28 + 20, T, W]` (before positions).
    pub embeddings: Tensor<3>,
    /// EOT positions.
    pub eot: Vec<usize>,
    /// Sentences of the normal set (the first `normal` rows).
    pub normal: usize,
}

impl ClassText {
    /// Tokenises and embeds the 48 sentences of `class_name`.
    pub fn new(model: &ClipModel, tokenizer: &ClipTokenizer, class_name: &str) -> Result<Self, DetectError> {
        let [normal, anomalous] = sentences(class_name);
        let all: Vec<String> = normal.iter().chain(&anomalous).cloned().collect();
        let ids = tokenizer.tokenize_batch(&all)?;
        Ok(Self { name: class_name.to_string(), embeddings: model.text.embed_ids(&ids)?, eot: eot_positions(&ids)?, normal: normal.len() })
    }
}

/// The text features `[2, E]` (normal, anomalous; unit rows) for one image's dynamic text prompts
/// `dyn_t` `[len, W]`: rows 1..=len of the text blocks 2..depth overwritten by
/// `f16(static_t[i] + dyn_t)`, per-sentence normalised, averaged per set, renormalised.
pub fn text_features(model: &ClipModel, learned: &AdaClipLearned, class: &ClassText, dyn_t: Tensor<2>) -> Result<Tensor<2>, DetectError> {
    let layers = learned
        .text_static
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, p)| Ok((i, f16_rounded(p.val() + dyn_t.clone())?)))
        .collect::<Result<Vec<_>, DetectError>>()?;
    let deep = DeepPrompts { layers };
    let mut x = class.embeddings.clone();
    if dyn_t.is_autodiff() && !x.is_autodiff() {
        x = x.autodiff();
    }
    let out = model.text.forward_embeddings(x, &class.eot, TextForward { deep_prompts: Some(&deep), hook: None })?;
    let unit = l2_normalize(out.projected);
    let [n, e] = unit.dims();
    let mean = |a: usize, b: usize| l2_normalize(unit.clone().slice([a..b, 0..e]).mean_dim(0));
    // `F.normalize(text_features, dim=1)` of the stacked `[B, E, 2]` renormalises each column.
    Ok(l2_normalize(Tensor::cat(vec![mean(0, class.normal), mean(class.normal, n)], 0)))
}

/// The image side of a batch: the unit projected CLS `[B, E]` of the prompted pass, the unit
/// projected patch tokens `[B, G², E]` per tap, and the dynamic text prompts `[B, len, W]`.
pub struct ImageFeatures {
    /// `n(cls_token_layer(z'))`.
    pub cls: Tensor<2>,
    /// `n(patch_token_layer[l](tap_l))`, CLS dropped.
    pub patches: Vec<Tensor<3>>,
    /// The dynamic visual prompts `[B, len, D]` (before the static ones are added).
    pub dynamic_visual: Tensor<3>,
    /// The dynamic text prompts.
    pub dynamic_text: Tensor<3>,
}

/// The unprompted forward (no gradient, as `generate_and_set_dynamic_promtps`), the dynamic
/// prompts, the prompted forward and the projections.
pub fn image_features(model: &ClipModel, learned: &AdaClipLearned, config: &AdaClipConfig, pixels: Tensor<4>) -> Result<ImageFeatures, DetectError> {
    let z = model.visual.encode_image(pixels.clone())?.detach();
    let z = if learned.cls_token_layer.weight.val().is_autodiff() && !z.is_autodiff() { z.autodiff() } else { z };
    let (dyn_v, dyn_t) = learned.dynamic_prompts(z);
    let [b, len, d] = dyn_v.dims();
    let layers = learned
        .visual_static
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let tokens = p.val().unsqueeze::<3>().expand([b, len, d]) + dyn_v.clone();
            Ok((i, f16_rounded(tokens.reshape([b * len, d]))?.reshape([b, len, d])))
        })
        .collect::<Result<Vec<_>, DetectError>>()?;
    let prompts = VisualPrompts { layers };
    let dynamic_visual = dyn_v.clone();
    let out = model.visual.forward(pixels, VisionForward { taps: &config.taps, prompts: Some(&prompts), ..Default::default() })?;
    let pooled = model.visual.pool(out.last);
    let cls = l2_normalize(learned.cls_token_layer.forward(pooled));
    let patches = out
        .taps
        .into_iter()
        .zip(&learned.patch_token_layer)
        .map(|(tap, head)| {
            let [b, t, d] = tap.dims();
            l2_normalize(head.forward(tap.slice([0..b, 1..t, 0..d])))
        })
        .collect();
    Ok(ImageFeatures { cls, patches, dynamic_visual, dynamic_text: dyn_t })
}

/// Per-tap logits `100·u·T` `[G², 2]` of one image's patches `[G², E]`.
pub fn tap_logits(patches: &[Tensor<2>], text: &Tensor<2>) -> Vec<Tensor<2>> {
    patches.iter().map(|u| u.clone().matmul(text.clone().transpose()).mul_scalar(LOGIT_SCALE)).collect()
}

/// The mean of the taps' logits `[G², 2]`.
pub fn mean_logits(logits: &[Tensor<2>]) -> Tensor<2> {
    let n = logits.len() as f64;
    logits.iter().cloned().reduce(|a, b| a + b).expect("at least one tap").div_scalar(n)
}

/// The top `min(L, 5·k)` patch indices by `softmax(mean logits)₁`, largest first (ties: lower
/// index first), from the host values of that probability.
pub fn top_patches(anomaly: &[f32], k_clusters: usize) -> Vec<usize> {
    let k = anomaly.len().min(5 * k_clusters);
    let mut order: Vec<usize> = (0..anomaly.len()).collect();
    order.sort_by(|&a, &b| anomaly[b].total_cmp(&anomaly[a]).then(a.cmp(&b)));
    order.truncate(k);
    order
}

/// HSF's weights on the selected rows from the cluster labels: each cluster's centroid is the mean
/// of its members' tokens over all `taps` taps, and the centroids are averaged, so row `i` weighs
/// `1/(K·taps·n_{c(i)})` in every tap. Clusters without members are skipped (the official code would
/// average an empty set into NaN; scikit-learn's relocation makes them next to impossible).
pub fn hsf_weights(labels: &[usize], taps: usize) -> Vec<f32> {
    let clusters = labels.iter().max().map_or(0, |m| m + 1);
    let mut counts = vec![0usize; clusters];
    labels.iter().for_each(|&l| counts[l] += 1);
    let nonempty = counts.iter().filter(|&&c| c > 0).count() as f64;
    labels.iter().map(|&l| (1.0 / (nonempty * taps as f64 * counts[l] as f64)) as f32).collect()
}

/// Reads a tensor back to the host (native and the CPU engine; WebGPU needs the async path).
pub fn host_values<const D: usize>(t: Tensor<D>, what: &str) -> Result<Vec<f32>, DetectError> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| DetectError::Invalid(format!("cannot read the {what} back: {e:?}")))
}

/// Options of [`AdaClip::new`].
#[derive(Debug, Clone, Default)]
pub struct AdaClipOptions {
    /// Input side (default: the config's).
    pub image_size: Option<usize>,
    /// Keep the backbone's activation and positional rule (default: exact GELU and rule B, plain
    /// bicubic, as the official `create_model` at 518).
    pub keep_backbone_settings: bool,
    /// HSF off (`--use_hsf False`): the image score from the projected CLS alone.
    pub no_hsf: bool,
    /// k-means seeding (default: per image, seed 111).
    pub seeding: Option<KMeansSeeding>,
}

/// The AdaCLIP detector.
pub struct AdaClip {
    model: ClipModel,
    learned: AdaClipLearned,
    config: AdaClipConfig,
    tokenizer: ClipTokenizer,
    class: Option<ClassText>,
    seeding: KMeansSeeding,
    stream: Mutex<NumpyRandom>,
}

/// What one image's HSF needs from the host: the top patches and their concatenated tokens.
pub struct HsfInput {
    /// The selected patch indices, in order.
    pub order: Vec<usize>,
    /// `[k, taps·E]` row-major.
    pub data: Vec<f32>,
}

/// The scores of a batch before HSF: everything but the image score, on the device.
pub struct Pending {
    /// The unit CLS features `[B, E]`.
    pub cls: Tensor<2>,
    /// Per image, per tap, patches `[G², E]`.
    pub patches: Vec<Vec<Tensor<2>>>,
    /// Per image, text `[2, E]`.
    pub text: Vec<Tensor<2>>,
    /// Per image, `softmax(mean logits)₁` `[G²]` (what HSF ranks patches by).
    pub anomaly: Vec<Tensor<1>>,
    /// The maps `[B, S, S]` and `[B, G, G]`.
    pub map: Tensor<3>,
    /// Patch-resolution map.
    pub patch_map: Tensor<3>,
}

impl AdaClip {
    /// Wraps a backbone and learned tensors.
    pub fn new(mut model: ClipModel, learned: AdaClipLearned, mut config: AdaClipConfig, options: AdaClipOptions) -> Result<Self, DetectError> {
        if !options.keep_backbone_settings {
            model = model.with_activation(Activation::Gelu);
            model.visual.pos_resize = PosEmbedResize::Bicubic;
        }
        if let Some(size) = options.image_size {
            config.image_size = size;
        }
        if options.no_hsf {
            config.use_hsf = false;
        }
        config.validate(&model.config)?;
        let seeding = options.seeding.unwrap_or(KMeansSeeding::PerImage(NUMPY_SEED));
        let seed = match seeding {
            KMeansSeeding::PerImage(s) | KMeansSeeding::Stream(s) => s,
        };
        Ok(Self { model, learned, config, tokenizer: ClipTokenizer::openai()?, class: None, seeding, stream: Mutex::new(NumpyRandom::seed(seed)) })
    }

    /// [`AdaClip::new`] from loaded weights.
    pub fn from_weights(model: ClipModel, weights: checkpoint::AdaClipWeights, options: AdaClipOptions) -> Result<Self, DetectError> {
        Self::new(model, weights.learned, weights.config, options)
    }

    /// The backbone.
    pub fn model(&self) -> &ClipModel {
        &self.model
    }

    /// The learned tensors.
    pub fn learned(&self) -> &AdaClipLearned {
        &self.learned
    }

    /// The configuration.
    pub fn config(&self) -> &AdaClipConfig {
        &self.config
    }

    /// The k-means seeding.
    pub fn seeding(&self) -> KMeansSeeding {
        self.seeding
    }

    /// Restarts the k-means stream from its seed ([`KMeansSeeding::Stream`]).
    pub fn restart_stream(&self) {
        if let KMeansSeeding::Stream(seed) = self.seeding {
            *self.stream.lock().expect("k-means stream") = NumpyRandom::seed(seed);
        }
    }

    fn class(&self) -> Result<&ClassText, DetectError> {
        self.class.as_ref().ok_or_else(|| DetectError::Invalid("AdaCLIP: set the class before scoring (its prompts name it)".into()))
    }

    /// Everything on the device; the image score waits for HSF ([`Self::finish`]).
    pub fn forward(&self, pixels: Tensor<4>) -> Result<Pending, DetectError> {
        let [b, c, h, w] = pixels.dims();
        let s = self.config.image_size;
        if b == 0 || c != 3 || h != s || w != s {
            return Err(DetectError::Invalid(format!("AdaCLIP takes images [B ≥ 1, 3, {s}, {s}], got [{b}, {c}, {h}, {w}]")));
        }
        let class = self.class()?;
        let g = self.grid();
        let features = image_features(&self.model, &self.learned, &self.config, pixels)?;
        let [_, len, w] = features.dynamic_text.dims();
        let e = self.model.config.embed_dim;
        let l = g * g;
        let (mut patches, mut text, mut anomaly, mut mean) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in 0..b {
            let dyn_t = features.dynamic_text.clone().slice([i..i + 1, 0..len, 0..w]).reshape([len, w]);
            let t = text_features(&self.model, &self.learned, class, dyn_t)?;
            let image: Vec<Tensor<2>> = features.patches.iter().map(|p| p.clone().slice([i..i + 1, 0..l, 0..e]).reshape([l, e])).collect();
            let m = mean_logits(&tap_logits(&image, &t));
            anomaly.push(softmax(m.clone(), 1).narrow(1, 1, 1).reshape([l]));
            mean.push(m);
            patches.push(image);
            text.push(t);
        }
        // [B, G², 2] → [B, 2, G, G], the logits upsampled (align_corners = True), then softmax.
        let logits = Tensor::stack::<3>(mean, 0);
        let channel = |t: &Tensor<3>, c: usize| t.clone().narrow(2, c, 1).reshape([b, l]);
        let grids = |t: &Tensor<3>| [tokens_to_grid(channel(t, 0), g), tokens_to_grid(channel(t, 1), g)];
        let [ln, la] = grids(&logits);
        let up = AxisMap::bilinear(g, s, true);
        let (un, ua) = (apply_square(ln.clone(), &up), apply_square(la.clone(), &up));
        let aggregate = |n: Tensor<3>, a: Tensor<3>| {
            let p = softmax(Tensor::stack::<4>(vec![n, a], 1), 1);
            let [bb, _, hh, ww] = p.dims();
            (p.clone().narrow(1, 1, 1) - p.narrow(1, 0, 1)).add_scalar(1.0).div_scalar(2.0).reshape([bb, hh, ww])
        };
        let mut map = aggregate(un, ua);
        if let Some(sigma) = self.config.sigma {
            map = apply_square(map, &AxisMap::gaussian_scipy(s, sigma, 4.0));
        }
        let patch_map = aggregate(ln, la);
        Ok(Pending { cls: features.cls, patches, text, anomaly, map, patch_map })
    }

    /// The indices to gather for image `i`'s HSF from its anomaly values (host).
    pub fn hsf_order(&self, anomaly: &[f32]) -> Vec<usize> {
        top_patches(anomaly, self.config.k_clusters)
    }

    /// The selected rows `[k, taps·E]` of image `i` on the device.
    pub fn hsf_rows(&self, pending: &Pending, i: usize, order: &[usize]) -> Tensor<2> {
        let device = pending.cls.device();
        let index = Tensor::<1, Int>::from_data(TensorData::new(order.iter().map(|&o| o as i64).collect::<Vec<_>>(), [order.len()]), &device);
        Tensor::cat(pending.patches[i].iter().map(|p| p.clone().select(0, index.clone())).collect(), 1)
    }

    /// k-means labels for one image's selected rows (host data), drawing from the seeding's stream.
    pub fn cluster(&self, data: &[f32], rows: usize) -> Result<Vec<usize>, DetectError> {
        let d = data.len() / rows.max(1);
        let kmeans = KMeans::new(self.config.k_clusters);
        let run = |rng: &mut NumpyRandom| kmeans.fit_predict(data, rows, d, rng).map_err(|e| DetectError::Invalid(format!("AdaCLIP HSF: {e}")));
        match self.seeding {
            KMeansSeeding::PerImage(seed) => run(&mut NumpyRandom::seed(seed)),
            KMeansSeeding::Stream(_) => run(&mut self.stream.lock().expect("k-means stream")),
        }
    }

    /// The image scores from the per-image HSF inputs (`None` per image without HSF).
    pub fn finish(&self, pending: Pending, hsf: Vec<Option<HsfInput>>) -> Result<Detection, DetectError> {
        let b = pending.text.len();
        let [_, e] = pending.cls.dims();
        let device = pending.cls.device();
        let taps = self.config.taps.len();
        let mut scores = Vec::with_capacity(b);
        for (i, input) in hsf.into_iter().enumerate() {
            let cls = pending.cls.clone().slice([i..i + 1, 0..e]);
            let feature = match input {
                Some(input) => {
                    let labels = self.cluster(&input.data, input.order.len())?;
                    let weights = Tensor::<2>::from_data(TensorData::new(hsf_weights(&labels, taps), [1, labels.len()]), &device);
                    let rows = self.hsf_rows(&pending, i, &input.order);
                    let per_tap = rows.reshape([input.order.len(), taps, e]).sum_dim(1).reshape([input.order.len(), e]);
                    let c = l2_normalize(weights.matmul(per_tap));
                    l2_normalize(c.mul_scalar(HSF_ALPHA) + cls.mul_scalar(1.0 - HSF_ALPHA))
                }
                None => cls,
            };
            let logits = feature.matmul(pending.text[i].clone().transpose()).mul_scalar(LOGIT_SCALE);
            scores.push(softmax(logits, 1).narrow(1, 1, 1).reshape([1]));
        }
        let image_score = Tensor::cat(scores, 0);
        Ok(Detection { image_score: image_score.clone(), map: pending.map, patch_map: pending.patch_map, map_components: vec![], components: vec![("hsf".into(), image_score)] })
    }
}

impl Detector for AdaClip {
    fn name(&self) -> &'static str {
        "ada-clip"
    }

    fn device(&self) -> Device {
        self.model.visual.proj.device()
    }

    fn preprocess(&self) -> Preprocess {
        Preprocess::squash(self.config.image_size as u32)
    }

    fn grid(&self) -> usize {
        self.model.visual.grid_for(self.config.image_size)
    }

    fn set_class(&mut self, name: &str) -> Result<(), DetectError> {
        if name.trim().is_empty() {
            return Err(DetectError::Invalid("empty class name".into()));
        }
        if self.class.as_ref().is_none_or(|c| c.name != name) {
            self.class = Some(ClassText::new(&self.model, &self.tokenizer, name)?);
        }
        Ok(())
    }

    fn detect(&self, pixels: Tensor<4>) -> Result<Detection, DetectError> {
        crate::run_staged(self, pixels)
    }

    fn host_staged(&self) -> Option<&dyn HostStaged> {
        Some(self)
    }
}

/// Between the host turns of HSF.
enum HsfStage {
    /// The rankings were requested.
    Ranking(Pending),
    /// The selected rows were requested.
    Rows(Pending, Vec<Vec<usize>>),
}

impl HostStaged for AdaClip {
    /// The device pass, then the per-image rankings to read (none without HSF).
    fn stage_start(&self, pixels: Tensor<4>) -> Result<Staged, DetectError> {
        let pending = self.forward(pixels)?;
        if !self.config.use_hsf {
            let b = pending.text.len();
            return Ok(Staged::Done(Box::new(self.finish(pending, (0..b).map(|_| None).collect())?)));
        }
        Ok(Staged::Read { tensors: pending.anomaly.clone(), state: Box::new(HsfStage::Ranking(pending)) })
    }

    /// Rankings → the selected rows to read; rows → k-means and the scores.
    fn stage_continue(&self, state: Box<dyn std::any::Any>, host: Vec<Vec<f32>>) -> Result<Staged, DetectError> {
        let state = state.downcast::<HsfStage>().map_err(|_| DetectError::Invalid("AdaCLIP: a staged step from another detector".into()))?;
        match *state {
            HsfStage::Ranking(pending) => {
                let orders: Vec<Vec<usize>> = host.iter().map(|a| self.hsf_order(a)).collect();
                let tensors = orders.iter().enumerate().map(|(i, o)| self.hsf_rows(&pending, i, o).reshape([-1])).collect();
                Ok(Staged::Read { tensors, state: Box::new(HsfStage::Rows(pending, orders)) })
            }
            HsfStage::Rows(pending, orders) => {
                let inputs = orders.into_iter().zip(host).map(|(order, data)| Some(HsfInput { order, data })).collect();
                Ok(Staged::Done(Box::new(self.finish(pending, inputs)?)))
            }
        }
    }
}
