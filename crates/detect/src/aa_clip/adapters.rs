//! The trainable parts of AA-CLIP (`spec/aa-clip.md` §2–§4) and the two forwards that use them:
//! adapted text anchors and adapted patch features.
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::leaky_relu;
use burn::tensor::{Device, Tensor};
use vlad_clip::text::{TextForward, eot_positions};
use vlad_clip::{BlockHook, ClipModel, VisionForward};

use super::AaClipConfig;
use crate::DetectError;
use crate::prompts::l2_normalize;

/// PyTorch's default LeakyReLU slope, used by every adapter and projector.
pub const LEAKY_SLOPE: f64 = 0.01;

/// `SimpleAdapter`: `Linear(d_in, d_out, bias=False)` followed by LeakyReLU(0.01).
#[derive(Module, Debug)]
pub struct Adapter {
    /// The linear map, burn layout `[d_in, d_out]` (checkpoints store `[d_out, d_in]`).
    pub fc: Linear,
}

impl Adapter {
    /// Zero-initialised adapter (weights come from a checkpoint or an initialiser).
    pub fn new(d_in: usize, d_out: usize, device: &Device) -> Self {
        Self { fc: linear_without_bias(d_in, d_out, device) }
    }

    /// `LeakyReLU(x W)`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        leaky_relu(self.fc.forward(x), LEAKY_SLOPE)
    }

    /// The residual adapter step on a block output `x` `[N, T, D]` (every token):
    /// `a = LeakyReLU(x W)`, rescaled per token to the L2 norm of `x` (no epsilon, as the official
    /// code), then `λ·a + (1 − λ)·x`.
    pub fn residual(&self, x: Tensor<3>, lambda: f64) -> Tensor<3> {
        let a = self.forward(x.clone());
        let a = a.clone() * token_norm(x.clone()) / token_norm(a);
        a.mul_scalar(lambda) + x.mul_scalar(1.0 - lambda)
    }
}

/// `SimpleProj`: a bias-free linear map, followed by LeakyReLU(0.01) when `relu` (the official
/// `--relu` flag, off by default; the key names say which: `fc.0.weight` with, `fc.weight` without).
#[derive(Module, Debug)]
pub struct Projector {
    /// The linear map `[d_in, d_out]`.
    pub fc: Linear,
    /// LeakyReLU after the map.
    #[module(skip)]
    pub relu: bool,
}

impl Projector {
    /// Zero-initialised projector.
    pub fn new(d_in: usize, d_out: usize, relu: bool, device: &Device) -> Self {
        Self { fc: linear_without_bias(d_in, d_out, device), relu }
    }

    /// `x W`, then LeakyReLU if `relu`.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let y = self.fc.forward(x);
        if self.relu { leaky_relu(y, LEAKY_SLOPE) } else { y }
    }
}

/// The official `text_adapter` ModuleList: residual adapters after the first text blocks and the
/// EOT projector (Linear + LeakyReLU, always) that replaces `text_projection`.
#[derive(Module, Debug)]
pub struct TextAdapter {
    /// Adapters after 1-based text blocks 1, 2, … (keys `N.fc.0.weight`, `[W, W]`).
    pub adapters: Vec<Adapter>,
    /// EOT projector (key `{len}.fc.0.weight`, `[E, W]`).
    pub projector: Adapter,
}

impl TextAdapter {
    /// Zero-initialised text adapter for `config`.
    pub fn new(config: &AaClipConfig, device: &Device) -> Self {
        let w = config.text_width;
        Self {
            adapters: (0..config.text_adapt_until).map(|_| Adapter::new(w, w, device)).collect(),
            projector: Adapter::new(w, config.embed_dim, device),
        }
    }
}

/// The official `image_adapter` ModuleDict.
#[derive(Module, Debug)]
pub struct ImageAdapter {
    /// Adapters after 1-based vision blocks 1, 2, … (`layer_adapters.N.fc.0.weight`, `[D, D]`).
    pub layer_adapters: Vec<Adapter>,
    /// One projector per tap level (`seg_proj.K.fc[.0].weight`, `[E, D]`).
    pub seg_proj: Vec<Projector>,
    /// The image-level projector on the last level (`det_proj.fc[.0].weight`, `[E, D]`).
    pub det_proj: Projector,
}

impl ImageAdapter {
    /// Zero-initialised image adapter for `config`.
    pub fn new(config: &AaClipConfig, device: &Device) -> Self {
        let (d, e) = (config.vision_width, config.embed_dim);
        Self {
            layer_adapters: (0..config.image_adapt_until).map(|_| Adapter::new(d, d, device)).collect(),
            seg_proj: config.levels.iter().map(|_| Projector::new(d, e, config.relu, device)).collect(),
            det_proj: Projector::new(d, e, config.relu, device),
        }
    }
}

fn linear_without_bias(d_in: usize, d_out: usize, device: &Device) -> Linear {
    LinearConfig::new(d_in, d_out).with_bias(false).with_initializer(burn::nn::Initializer::Zeros).init(device)
}

/// Per-token L2 norm `[N, T, 1]` of `[N, T, D]`.
fn token_norm(x: Tensor<3>) -> Tensor<3> {
    x.powf_scalar(2.0).sum_dim(2).sqrt()
}

/// Applies the residual adapters after the first blocks of a tower (1-based block numbers).
pub struct AdapterHook<'a> {
    /// Adapter `i` follows block `i + 1`.
    pub adapters: &'a [Adapter],
    /// λ.
    pub lambda: f64,
}

impl BlockHook for AdapterHook<'_> {
    fn after_block(&self, block: usize, x: Tensor<3>) -> Tensor<3> {
        match self.adapters.get(block.wrapping_sub(1)) {
            Some(adapter) => adapter.residual(x, self.lambda),
            None => x,
        }
    }
}

/// What the adapted vision tower produces for a batch.
pub struct VisionFeatures {
    /// Residual stream at each level `[B, 1 + L, D]` (CLS included, after the adapters).
    pub taps: Vec<Tensor<3>>,
    /// Unit patch features per level `n(seg_proj_k(ln_post(level_k)))`, `[B, L, E]`.
    pub seg: Vec<Tensor<3>>,
    /// Mean over patches of `n(det_proj(ln_post(last level)))`, `[B, E]`, not renormalised.
    pub det: Tensor<2>,
}

/// `AdaptedCLIP.forward` (`spec/aa-clip.md` §4.1) on pixels `[B, 3, S, S]`.
pub fn vision_features(clip: &ClipModel, image: &ImageAdapter, config: &AaClipConfig, pixels: Tensor<4>) -> Result<VisionFeatures, DetectError> {
    let hook = AdapterHook { adapters: &image.layer_adapters, lambda: config.image_adapt_weight };
    let out = clip.visual.forward(pixels, VisionForward { taps: &config.levels, vv: None, hook: Some(&hook), prompts: None })?;
    let mut seg = Vec::with_capacity(out.taps.len());
    let mut last = None;
    for (tap, proj) in out.taps.iter().zip(&image.seg_proj) {
        let [b, t, d] = tap.dims();
        let tokens = clip.visual.ln_post(tap.clone().slice([0..b, 1..t, 0..d]));
        seg.push(l2_normalize(proj.forward(tokens.clone())));
        last = Some(tokens);
    }
    let last = last.ok_or_else(|| DetectError::Invalid("AA-CLIP needs at least one tap level".into()))?;
    let det = l2_normalize(image.det_proj.forward(last)).mean_dim(1);
    let [b, _, e] = det.dims();
    Ok(VisionFeatures { taps: out.taps, seg, det: det.reshape([b, e]) })
}

/// Text features `[N, E]` of token rows: the adapted encoder (`AdaptedCLIP.encode_text`: adapters
/// after the first blocks, `ln_final` at EOT, EOT projector) or, without a text adapter, CLIP's
/// own `encode_text` with `text_projection` (`spec/aa-clip.md` §3.1, step 7).
pub fn encode_text(clip: &ClipModel, text: Option<&TextAdapter>, config: &AaClipConfig, ids: &[Vec<u32>]) -> Result<Tensor<2>, DetectError> {
    let eot = eot_positions(ids)?;
    let x = clip.text.embed_ids(ids)?;
    Ok(match text {
        Some(adapter) => {
            let hook = AdapterHook { adapters: &adapter.adapters, lambda: config.text_adapt_weight };
            let out = clip.text.forward_embeddings(x, &eot, TextForward { deep_prompts: None, hook: Some(&hook) })?;
            adapter.projector.forward(out.pooled)
        }
        None => clip.text.forward_embeddings(x, &eot, TextForward::default())?.projected,
    })
}

/// Token rows of one class: the normal and the anomalous sentences.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassTokens {
    /// Normal sentences (6 in the official prompt set).
    pub normal: Vec<Vec<u32>>,
    /// Anomalous sentences (10).
    pub anomalous: Vec<Vec<u32>>,
}

/// Anchors `[E, 2]` (column 0 normal, column 1 anomalous) of several classes with one text
/// forward: per state, normalise every sentence embedding, average, normalise
/// (`get_adapted_single_class_text_embedding`).
pub fn anchors(clip: &ClipModel, text: Option<&TextAdapter>, config: &AaClipConfig, classes: &[ClassTokens]) -> Result<Vec<Tensor<2>>, DetectError> {
    let mut ids = Vec::new();
    let mut groups = Vec::new();
    for class in classes {
        for group in [&class.normal, &class.anomalous] {
            if group.is_empty() {
                return Err(DetectError::Invalid("empty prompt group".into()));
            }
            groups.push(ids.len()..ids.len() + group.len());
            ids.extend(group.iter().cloned());
        }
    }
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let emb = l2_normalize(encode_text(clip, text, config, &ids)?);
    let [_, e] = emb.dims();
    let states: Vec<Tensor<2>> = groups.into_iter().map(|range| l2_normalize(emb.clone().slice([range, 0..e]).mean_dim(0))).collect();
    Ok(states.chunks(2).map(|pair| Tensor::cat(vec![pair[0].clone(), pair[1].clone()], 0).transpose()).collect())
}
