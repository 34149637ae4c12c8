//! VAND / APRIL-GAN (Chen et al., CVPR 2023 VAND workshop, 1st place zero-shot), as its official
//! code behaves (`spec/baselines.md` §4 with the corrections of `spec/baselines-audit.md` §1;
//! github.com/ByChelsea/VAND-APRIL-GAN at f13b8a6).
//!
//! * **Backbone:** OpenAI ViT-L-14-336 rebuilt at 518 px: exact (erf) GELU (open_clip builds a
//!   fresh `CLIP` without `quick_gelu` when the size differs) and the positional table resized
//!   with rule A (bicubic, antialias). [`Vand::new`] switches the backbone to both unless told
//!   otherwise.
//! * **Trainable part** ([`LinearLayers`]): one `Linear(D → E, bias)` per tapped block
//!   (`fc.0 … fc.3`), on the raw residual stream after blocks 6/12/18/24, patch tokens only.
//! * **Text:** 245 normal and 175 anomalous sentences ([`prompts`]) from the raw class name;
//!   each embedding normalised, averaged, renormalised → `T = [t_n, t_a]`.
//! * **Zero-shot map:** per tap `softmax(up_ac(100·n(W p + b)·T))₁` (logits upsampled bilinearly
//!   with `align_corners = true`, then the softmax), summed over the taps, no smoothing. With two
//!   channels the softmax is `σ(l_a − l_n)`, and bilinear upsampling is linear, so the difference
//!   is upsampled (one channel instead of two; equal up to rounding).
//! * **Image score (zero-shot):** `softmax(100·n(CLS_proj)·T)₁` with `CLS_proj = ln_post(CLS) @
//!   proj`; the map is not used. It is also the `"text"` component.
//! * **Few-shot** ([`Detector::fit_reference`]): the raw tokens (CLS dropped) of the few-shot taps
//!   of the k normal images form a memory per tap; per query patch `min(1 − cos)` over the memory,
//!   upsampled as above, summed over the taps and added to the zero-shot map. The official image
//!   score is transductive, `0.5·(text + minmax_class(max map))` over the class's test set
//!   ([`Detector::set_fusion`]); [`Detection::image_score`] is the single-image
//!   `0.5·(text + max map)`, which ranks like the official score when the class's range is 1.
//!   The official code extracts the memory in f32 and the queries under fp16 autocast (audit V1);
//!   here both are f32. Which k images: the official draw comes from torch's global generator
//!   (audit V3), so the front ends take the list (e.g. a Python run's `k_shot.txt`) or draw with
//!   their own seeded stream.
//!
//! Checkpoints ([`checkpoint`]): the official `{'trainable_linearlayer': state_dict}` `.pth` and our
//! safetensors files with the same keys. Training (feature `train`, [`train`]): `train.py`.
//!
//! # Options a front end needs (for `vlad infer` / `vlad eval`)
//! * `--checkpoint FILE` (required);
//! * `--vand-image-size S` (default: the checkpoint's, else 37 patches a side = 518);
//! * `--vand-taps`, `--vand-few-shot-taps` (default: the checkpoint's, else the quarters of the
//!   vision depth, 6/12/18/24 for ViT-L);
//! * `--vand-keep-activation`: do not switch the backbone to exact GELU and rule A;
//! * reference images (`--shots K`) turn on the few-shot memory; `--official-fusion` maps to
//!   [`Detector::set_fusion`].
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use vlad_clip::preprocess::Preprocess;
use vlad_clip::{Activation, ClipConfig, ClipModel, ClipTokenizer, PosEmbedResize, VisionForward};

use crate::postprocess::{AxisMap, apply_square, tokens_to_grid};
use crate::prompts::{Averaging, l2_normalize, prototype};
use crate::{DetectError, Detection, Detector, MapRange, MapStatistic, SetFusion};

pub mod checkpoint;
pub mod prompts;
#[cfg(feature = "train")]
pub mod train;

/// The logit scale of the maps and of the image score (`100.0 *` in `test.py`).
pub const LOGIT_SCALE: f64 = 100.0;

/// Normal reference images per forward pass while the memory is built.
const REFERENCE_CHUNK: usize = 4;

/// The shape of a VAND model around its backbone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VandConfig {
    /// 1-based blocks whose outputs feed the linear layers (`--features_list 6 12 18 24`).
    pub taps: Vec<usize>,
    /// 1-based blocks of the few-shot memory (`--few_shot_features`; the scripts pass the same
    /// 6 12 18 24, the CLI default would be 3 6 9, audit V2).
    pub few_shot_taps: Vec<usize>,
    /// Input side S (518).
    pub image_size: usize,
    /// Vision width D (1024): the input of each linear layer.
    pub vision_width: usize,
    /// Joint space E (768, CLIP's embed dim): the output of each linear layer.
    pub embed_dim: usize,
}

impl VandConfig {
    /// The published ViT-L-14-336 run.
    pub fn official() -> Self {
        Self { taps: vec![6, 12, 18, 24], few_shot_taps: vec![6, 12, 18, 24], image_size: 518, vision_width: 1024, embed_dim: 768 }
    }

    /// The official values for ViT-L; for other depths the taps are the quarters of the vision
    /// depth and the input keeps 37 patches a side.
    pub fn for_backbone(clip: &ClipConfig) -> Self {
        let layers = clip.vision.layers;
        let taps: Vec<usize> = (1..=4).map(|k| ((k * layers) as f64 / 4.0).round().max(1.0) as usize).collect();
        Self {
            few_shot_taps: taps.clone(),
            taps,
            image_size: 37 * clip.vision.patch_size,
            vision_width: clip.vision.width,
            embed_dim: clip.embed_dim,
        }
    }

    /// Checks the config against a backbone.
    pub fn validate(&self, clip: &ClipConfig) -> Result<(), DetectError> {
        let layers = clip.vision.layers;
        let mut problems = Vec::new();
        if self.taps.is_empty() {
            problems.push("no taps".to_string());
        }
        for (what, taps) in [("tap", &self.taps), ("few-shot tap", &self.few_shot_taps)] {
            if let Some(bad) = taps.iter().find(|&&t| t == 0 || t > layers) {
                problems.push(format!("{what} {bad} is outside vision blocks 1..={layers}"));
            }
        }
        if self.vision_width != clip.vision.width {
            problems.push(format!("linear layers take width {}, the backbone's vision width is {}", self.vision_width, clip.vision.width));
        }
        if self.embed_dim != clip.embed_dim {
            problems.push(format!("linear layers map to {}, the backbone's embed dim is {}", self.embed_dim, clip.embed_dim));
        }
        if self.image_size < clip.vision.patch_size {
            problems.push(format!("image size {} is below the patch size {}", self.image_size, clip.vision.patch_size));
        }
        if problems.is_empty() { Ok(()) } else { Err(DetectError::Invalid(format!("VAND config: {}", problems.join("; ")))) }
    }
}

/// The official `LinearLayer`: `fc[i] = Linear(D, E)` with bias, one per tap.
#[derive(Module, Debug)]
pub struct LinearLayers {
    /// One map per tap, burn layout `[D, E]` (checkpoints store `[E, D]`).
    pub fc: Vec<Linear>,
}

impl LinearLayers {
    /// Zero-initialised layers (weights come from a checkpoint or [`LinearLayers::init`]).
    pub fn new(config: &VandConfig, device: &Device) -> Self {
        let fc = config
            .taps
            .iter()
            .map(|_| LinearConfig::new(config.vision_width, config.embed_dim).with_initializer(burn::nn::Initializer::Zeros).init(device))
            .collect();
        Self { fc }
    }

    /// PyTorch's default `nn.Linear` initialisation (weight and bias `U(−1/√D, 1/√D)`) from a
    /// seeded stream per layer (the distribution of `train.py`'s layers; torch's stream is not
    /// reproduced).
    #[cfg(feature = "train")]
    pub fn init(config: &VandConfig, seed: u64, device: &Device) -> Self {
        use burn::module::Param;
        use burn::tensor::TensorData;
        let mut layers = Self::new(config, device);
        let (d, e) = (config.vision_width, config.embed_dim);
        let bound = 1.0 / (d as f64).sqrt();
        for (i, fc) in layers.fc.iter_mut().enumerate() {
            let mut rng = vlad_data::SeededRng::derive(seed, &format!("vand/init/fc.{i}"));
            let w: Vec<f32> = (0..d * e).map(|_| rng.range_f64(-bound, bound) as f32).collect();
            let b: Vec<f32> = (0..e).map(|_| rng.range_f64(-bound, bound) as f32).collect();
            fc.weight = Param::from_tensor(Tensor::from_data(TensorData::new(w, [d, e]), device));
            fc.bias = Some(Param::from_tensor(Tensor::from_data(TensorData::new(b, [e]), device)));
        }
        layers
    }

    /// `LinearLayer.forward`: `fc[i]` on the patch tokens (CLS dropped) of tap `i`, `[B, T, D]` →
    /// `[B, T − 1, E]`.
    pub fn forward(&self, taps: &[Tensor<3>]) -> Vec<Tensor<3>> {
        self.fc
            .iter()
            .zip(taps)
            .map(|(fc, tap)| {
                let [b, t, d] = tap.dims();
                fc.forward(tap.clone().slice([0..b, 1..t, 0..d]))
            })
            .collect()
    }
}

/// `encode_text_with_prompt_ensemble` for one class: `[2, E]`, rows `t_n`, `t_a` (unit length).
pub fn text_prototypes(model: &ClipModel, tokenizer: &ClipTokenizer, class_name: &str) -> Result<Tensor<2>, DetectError> {
    if class_name.trim().is_empty() {
        return Err(DetectError::Invalid("empty class name".into()));
    }
    let (normal, anomalous) = prompts::ensemble(class_name);
    let t_n = prototype(model, tokenizer, &normal, Averaging::NormalizedMean)?;
    let t_a = prototype(model, tokenizer, &anomalous, Averaging::NormalizedMean)?;
    Ok(Tensor::stack(vec![t_n, t_a], 0))
}

/// Per tap the patch-grid logit difference `100·n(W p + b)·(t_a − t_n)`, `[B, G, G]` each (the
/// two channels of the official logits enter only through this difference). `text` holds the
/// prototypes of each image's class, `[B, 2, E]`, or `[1, 2, E]` for all.
pub fn logit_differences(layers: &LinearLayers, taps: &[Tensor<3>], text: &Tensor<3>, g: usize) -> Vec<Tensor<3>> {
    let [_, _, e] = text.dims();
    let direction = (text.clone().narrow(1, 1, 1) - text.clone().narrow(1, 0, 1)).swap_dims(1, 2).mul_scalar(LOGIT_SCALE);
    layers
        .forward(taps)
        .into_iter()
        .map(|tokens| {
            let [b, l, _] = tokens.dims();
            let logits = l2_normalize(tokens).matmul(direction.clone().expand([b, e, 1])).reshape([b, l]);
            tokens_to_grid(logits, g)
        })
        .collect()
}

/// The training probabilities of one tap, `[B, 2, S, S]` (normal, anomalous): the upsampled
/// logits softmaxed over the two channels, as `train.py` feeds them to the losses.
pub fn training_probabilities(difference: Tensor<3>, image_size: usize) -> Tensor<4> {
    let [b, g, _] = difference.dims();
    let up = apply_square(difference, &AxisMap::bilinear(g, image_size, true));
    let anomalous = sigmoid(up).reshape([b, 1, image_size, image_size]);
    Tensor::cat(vec![anomalous.clone().neg().add_scalar(1.0), anomalous], 1)
}

/// Options of [`Vand::new`].
#[derive(Debug, Clone, Default)]
pub struct VandOptions {
    /// Input side (default: the checkpoint's config).
    pub image_size: Option<usize>,
    /// Few-shot taps (default: the checkpoint's config).
    pub few_shot_taps: Option<Vec<usize>>,
    /// Keep the backbone's activation and positional rule (default: exact GELU and rule A).
    pub keep_backbone_settings: bool,
}

/// The VAND / APRIL-GAN detector.
pub struct Vand {
    model: ClipModel,
    tokenizer: ClipTokenizer,
    layers: LinearLayers,
    config: VandConfig,
    /// `[2, E]` prototypes of the current class.
    text: Option<Tensor<2>>,
    /// Unit-length memory tokens `[M, D]` per few-shot tap.
    memory: Option<Vec<Tensor<2>>>,
}

impl Vand {
    /// Wraps a backbone and trained layers; switches the backbone to exact GELU and rule A (the
    /// official model) unless `keep_backbone_settings`.
    pub fn new(mut model: ClipModel, layers: LinearLayers, mut config: VandConfig, options: VandOptions) -> Result<Self, DetectError> {
        if !options.keep_backbone_settings {
            model = model.with_activation(Activation::Gelu);
            model.visual.pos_resize = PosEmbedResize::AntialiasBicubic;
        }
        if let Some(size) = options.image_size {
            config.image_size = size;
        }
        if let Some(taps) = options.few_shot_taps {
            config.few_shot_taps = taps;
        }
        config.validate(&model.config)?;
        if layers.fc.len() != config.taps.len() {
            return Err(DetectError::Invalid(format!("{} linear layers for {} taps {:?}", layers.fc.len(), config.taps.len(), config.taps)));
        }
        Ok(Self { model, tokenizer: ClipTokenizer::openai()?, layers, config, text: None, memory: None })
    }

    /// [`Vand::new`] with loaded weights ([`checkpoint::load_weight_file`]).
    pub fn from_weights(model: ClipModel, weights: checkpoint::VandWeights, options: VandOptions) -> Result<Self, DetectError> {
        Self::new(model, weights.layers, weights.config, options)
    }

    /// The backbone.
    pub fn model(&self) -> &ClipModel {
        &self.model
    }

    /// The configuration in use.
    pub fn config(&self) -> &VandConfig {
        &self.config
    }

    /// The linear layers.
    pub fn layers(&self) -> &LinearLayers {
        &self.layers
    }

    /// The prototypes `[2, E]` of the current class.
    pub fn text(&self) -> Option<&Tensor<2>> {
        self.text.as_ref()
    }

    /// Whether a few-shot memory is held.
    pub fn has_memory(&self) -> bool {
        self.memory.is_some()
    }

    fn check_pixels(&self, pixels: &Tensor<4>, what: &str) -> Result<usize, DetectError> {
        let [b, c, h, w] = pixels.dims();
        let s = self.config.image_size;
        if b == 0 || c != 3 || h != s || w != s {
            return Err(DetectError::Invalid(format!("VAND takes {what} [N ≥ 1, 3, {s}, {s}], got [{b}, {c}, {h}, {w}]")));
        }
        Ok(b)
    }

    /// The few-shot map of a batch on the patch grid, `[B, G, G]` per few-shot tap:
    /// `1 − max_m cos(p, memory_m)`.
    fn memory_distances(&self, memory: &[Tensor<2>], taps: &[Tensor<3>]) -> Vec<Tensor<3>> {
        let g = self.grid();
        memory
            .iter()
            .zip(taps)
            .map(|(bank, tap)| {
                let [b, t, d] = tap.dims();
                let query = l2_normalize(tap.clone().slice([0..b, 1..t, 0..d]));
                let cos = query.matmul(bank.clone().transpose().unsqueeze::<3>());
                let nearest = cos.max_dim(2).reshape([b, t - 1]);
                tokens_to_grid(nearest.neg().add_scalar(1.0), g)
            })
            .collect()
    }
}

impl Detector for Vand {
    fn name(&self) -> &'static str {
        "vand"
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

    /// Builds the prototypes from the raw class name and forgets the references (they belong to
    /// the previous class).
    fn set_class(&mut self, name: &str) -> Result<(), DetectError> {
        self.text = Some(text_prototypes(&self.model, &self.tokenizer, name)?);
        self.memory = None;
        Ok(())
    }

    fn detect(&self, pixels: Tensor<4>) -> Result<Detection, DetectError> {
        let text = self.text.clone().ok_or_else(|| DetectError::Invalid("call set_class before detect".into()))?;
        let b = self.check_pixels(&pixels, "images")?;
        let (s, g) = (self.config.image_size, self.grid());
        let n_taps = self.config.taps.len();
        let mut taps = self.config.taps.clone();
        if self.memory.is_some() {
            taps.extend(&self.config.few_shot_taps);
        }
        let out = self.model.visual.forward(pixels, VisionForward { taps: &taps, ..Default::default() })?;

        // Image: the text probability of the CLIP image embedding.
        let image = l2_normalize(self.model.visual.pool(out.last.clone()));
        let text_score = softmax(image.matmul(text.clone().transpose()).mul_scalar(LOGIT_SCALE), 1).narrow(1, 1, 1).reshape([b]);

        // Zero-shot map: Σ_taps σ(upsampled logit difference).
        let axis = AxisMap::bilinear(g, s, true);
        let differences = logit_differences(&self.layers, &out.taps[..n_taps], &text.clone().unsqueeze::<3>(), g);
        let mut map: Option<Tensor<3>> = None;
        let mut patch_map: Option<Tensor<3>> = None;
        let mut add = |up: Tensor<3>, grid: Tensor<3>| {
            map = Some(match map.take() {
                Some(m) => m + up,
                None => up,
            });
            patch_map = Some(match patch_map.take() {
                Some(m) => m + grid,
                None => grid,
            });
        };
        for d in differences {
            add(sigmoid(apply_square(d.clone(), &axis)), sigmoid(d));
        }
        let few_shot = self.memory.as_ref().map(|memory| self.memory_distances(memory, &out.taps[n_taps..]));
        if let Some(distances) = &few_shot {
            for d in distances {
                add(apply_square(d.clone(), &axis), d.clone());
            }
        }
        let (map, patch_map) = (map.expect("at least one tap"), patch_map.expect("at least one tap"));
        let image_score = if few_shot.is_some() {
            let peak = map.clone().reshape([b, s * s]).max_dim(1).reshape([b]);
            (text_score.clone() + peak).mul_scalar(0.5)
        } else {
            text_score.clone()
        };
        Ok(Detection { image_score, map, patch_map, map_components: vec![], components: vec![("text".into(), text_score)] })
    }

    /// Builds the memory: the raw tokens (CLS dropped) of the few-shot taps of `[K, 3, S, S]`
    /// normal images, unit length, `[K·(T − 1), D]` per tap.
    fn fit_reference(&mut self, normal: Tensor<4>) -> Result<(), DetectError> {
        let k = self.check_pixels(&normal, "reference images")?;
        let taps = self.config.few_shot_taps.clone();
        let s = self.config.image_size;
        let mut banks: Vec<Vec<Tensor<2>>> = vec![Vec::new(); taps.len()];
        for start in (0..k).step_by(REFERENCE_CHUNK) {
            let end = (start + REFERENCE_CHUNK).min(k);
            let chunk = normal.clone().slice([start..end, 0..3, 0..s, 0..s]);
            let out = self.model.visual.forward(chunk, VisionForward { taps: &taps, ..Default::default() })?;
            for (bank, tap) in banks.iter_mut().zip(out.taps) {
                let [n, t, d] = tap.dims();
                bank.push(l2_normalize(tap.slice([0..n, 1..t, 0..d]).reshape([n * (t - 1), d])));
            }
        }
        self.memory = Some(banks.into_iter().map(|parts| Tensor::cat(parts, 0)).collect());
        Ok(())
    }

    /// Zero-shot: none (the official image score is the text probability, a single-image score).
    /// Few-shot: `0.5·text + 0.5·minmax_class(max map)`, the range over the maxima of the class
    /// and the text probability as it is (`test.py`).
    fn set_fusion(&self) -> SetFusion {
        if self.memory.is_none() {
            return SetFusion::None;
        }
        SetFusion::MinMax {
            component: Some("text".into()),
            map_weight: 0.5,
            component_weight: 0.5,
            statistic: MapStatistic::Max,
            map_range: MapRange::Statistics,
            normalize_component: false,
        }
    }
}
