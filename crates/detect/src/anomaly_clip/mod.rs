//! AnomalyCLIP (Zhou et al., ICLR 2024), as its official code behaves (`spec/baselines.md` §5 with
//! the audit's §2; github.com/zqhang/AnomalyCLIP at 45ed4dd, after the 2025-04-13 fixes).
//!
//! * **Backbone:** OpenAI ViT-L/14@336 with **QuickGELU** (as loaded), at 518 px, the positional
//!   table resized **bilinearly** (rule C); [`AnomalyClip::new`] sets rule C.
//! * **DPAM:** from block 6 (`DPAM_layer = 20` replaces the last 19 of 24 blocks) a second stream
//!   accumulates the V-V attention outputs and skips the MLP (`VvAttention::Dual`); the taps read
//!   it through `ln_post` and `proj`. The released checkpoints reproduce with **tap 24 only**
//!   (`--features_list 24`, `test.sh`; the audit's A1); other taps are an option.
//! * **Object-agnostic prompts** ([`PromptLearner`]): `[SOT | 12 learned vectors | "object." EOT]`
//!   and `[SOT | 12 learned | "damaged object." EOT]`; text blocks 2–9 first **overwrite** rows
//!   1–4 with learned `[4, W]` tensors rounded to f16 (`.half()`); EOT pooling, `text_projection`,
//!   L2 norm → `T` `[2, E]`, class-agnostic.
//! * **Image score:** `softmax(n(z)·T/0.07)₁` with `z = x[CLS] @ proj` **without `ln_post`**
//!   (the official quirk, issue #14). A single-image score: no set fusion.
//! * **Map:** per tap `P = softmax(n(ln_post(x_d) @ proj)·T/0.07)` on the patches, bilinear
//!   upsampling of the **probabilities** (`align_corners = false`), `(P_a + 1 − P_n)/2`, summed
//!   over the taps, Gaussian σ = 4 (scipy) at S.
//!
//! Checkpoints ([`checkpoint`]): the released `{'prompt_learner': state_dict}` files (the dead
//! `compound_prompt_projections` are read and reported, the frozen buffers used as the official
//! `load_state_dict` does) and our safetensors. Training: [`train`] (feature `train`).
use burn::module::{Module, Param};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use vlad_clip::preprocess::Preprocess;
use vlad_clip::text::{DeepPrompts, TextForward, eot_positions};
use vlad_clip::{ClipConfig, ClipModel, ClipTokenizer, PosEmbedResize, VisionForward, VvAttention};

use crate::postprocess::{AxisMap, apply_square, tokens_to_grid};
use crate::prompts::l2_normalize;
use crate::{DetectError, Detection, Detector};

pub mod checkpoint;
#[cfg(feature = "train")]
pub mod train;

/// The softmax temperature of maps and image score.
pub const TEMPERATURE: f64 = 0.07;

/// The shape of an AnomalyCLIP model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyClipConfig {
    /// 1-based taps of the DPAM stream (the released models: `[24]`).
    pub taps: Vec<usize>,
    /// First DPAM block, 1-based (6 for 24 blocks: `DPAM_layer = 20`).
    pub dpam_from_block: usize,
    /// Input side S (518).
    pub image_size: usize,
    /// Learned context vectors per prompt (`--n_ctx` 12).
    pub n_ctx: usize,
    /// Text layers with learned prompts, the first included (`--depth` 9: blocks 2–9 get deep prompts).
    pub depth: usize,
    /// Rows each deep prompt overwrites (`--t_n_ctx` 4).
    pub t_n_ctx: usize,
    /// Gaussian σ at S (4); `None` for none.
    pub sigma: Option<f64>,
}

impl AnomalyClipConfig {
    /// The released models' settings for a backbone: tap = the last block, DPAM from the first
    /// quarter's end (6 of 24), 37 patches a side (518 for ViT-L/14).
    pub fn for_backbone(clip: &ClipConfig) -> Self {
        let layers = clip.vision.layers;
        Self {
            taps: vec![layers],
            dpam_from_block: (layers / 4).max(1),
            image_size: 37 * clip.vision.patch_size,
            n_ctx: 12,
            depth: 9.min(clip.text.layers),
            t_n_ctx: 4,
            sigma: Some(4.0),
        }
    }

    fn validate(&self, clip: &ClipConfig) -> Result<(), DetectError> {
        let mut problems = Vec::new();
        let (layers, text_layers) = (clip.vision.layers, clip.text.layers);
        if self.taps.is_empty() {
            problems.push("no taps".to_string());
        }
        if let Some(bad) = self.taps.iter().find(|&&t| t < self.dpam_from_block || t > layers) {
            problems.push(format!("tap {bad} is outside the DPAM blocks {}..={layers}", self.dpam_from_block));
        }
        if self.dpam_from_block == 0 || self.dpam_from_block > layers {
            problems.push(format!("DPAM block {} is outside 1..={layers}", self.dpam_from_block));
        }
        if self.depth == 0 || self.depth > text_layers {
            problems.push(format!("prompt depth {} is outside 1..={text_layers}", self.depth));
        }
        if self.n_ctx == 0 || self.t_n_ctx > self.n_ctx {
            problems.push(format!("{} context vectors with {} deep-prompt rows", self.n_ctx, self.t_n_ctx));
        }
        if self.image_size < clip.vision.patch_size {
            problems.push(format!("image size {} is below the patch size {}", self.image_size, clip.vision.patch_size));
        }
        if problems.is_empty() { Ok(()) } else { Err(DetectError::Invalid(format!("AnomalyCLIP config: {}", problems.join("; ")))) }
    }
}

/// `AnomalyCLIP_PromptLearner`'s learned part: the two contexts and the deep prompts.
#[derive(Module, Debug)]
pub struct PromptLearner {
    /// `ctx_pos` `[n_ctx, W]` (the checkpoint stores `[1, 1, n_ctx, W]`).
    pub ctx_pos: Param<Tensor<2>>,
    /// `ctx_neg` `[n_ctx, W]`.
    pub ctx_neg: Param<Tensor<2>>,
    /// `compound_prompts_text.{0..depth−2}` `[t_n_ctx, W]`.
    pub compound_prompts_text: Vec<Param<Tensor<2>>>,
}

/// The frozen rows around the contexts: SOT embedding and the embeddings after the contexts,
/// per prompt, and the token ids (for the EOT position).
#[derive(Debug, Clone)]
pub struct PromptFrame {
    /// `[1, W]` each.
    pub prefix: [Tensor<2>; 2],
    /// `[T − 1 − n_ctx, W]` each.
    pub suffix: [Tensor<2>; 2],
    /// Token ids of `"X … X object."` and `"X … X damaged object."`.
    pub ids: [Vec<u32>; 2],
}

/// The two prompt texts (`"X X … X object."`, `"X X … X damaged object."`).
pub fn prompt_texts(n_ctx: usize) -> [String; 2] {
    let x = vec!["X"; n_ctx].join(" ");
    [format!("{x} object."), format!("{x} damaged object.")]
}

impl PromptFrame {
    /// The frame built from the backbone's token table (what the official learner registers as
    /// buffers at construction).
    pub fn from_backbone(model: &ClipModel, tokenizer: &ClipTokenizer, n_ctx: usize) -> Result<Self, DetectError> {
        let texts = prompt_texts(n_ctx);
        let ids = tokenizer.tokenize_batch(&texts)?;
        let emb = model.text.embed_ids(&ids)?;
        let [_, t, w] = emb.dims();
        let row = |i: usize, a: usize, b: usize| emb.clone().slice([i..i + 1, a..b, 0..w]).reshape([b - a, w]);
        Ok(Self { prefix: [row(0, 0, 1), row(1, 0, 1)], suffix: [row(0, 1 + n_ctx, t), row(1, 1 + n_ctx, t)], ids: [ids[0].clone(), ids[1].clone()] })
    }
}

/// `x` rounded to the nearest f16 value with tensor arithmetic only (no read-back, so it runs on
/// WebGPU inside a synchronous call): Veltkamp's split `c = 8193·x, hi = c − (c − x)` keeps the
/// 11 significant bits of an f16 (round to nearest; an exact tie may round away from even), and
/// below 2⁻¹⁴, where f16 is subnormal, the value is rounded to a multiple of 2⁻²⁴. Overflow (above
/// 65504) is not handled: prompts are far smaller.
pub fn f16_round<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let c = x.clone().mul_scalar(8193.0);
    let normal = c.clone() - (c - x.clone());
    let subnormal = x.clone().mul_scalar(16_777_216.0).round().div_scalar(16_777_216.0);
    normal.mask_where(x.abs().lower_elem(6.103_515_6e-5), subnormal)
}

/// `x.half()` as the official deep prompts use it: the values rounded to f16; with autodiff the
/// gradient passes straight through (the official backward additionally rounds the gradient to
/// f16, which vlad does not reproduce: see the parity test).
pub fn f16_rounded(x: Tensor<2>) -> Result<Tensor<2>, DetectError> {
    let rounded = f16_round(x.clone().detach());
    Ok(if x.is_autodiff() { x.clone() + (rounded - x.detach()) } else { rounded })
}

#[cfg(test)]
mod tests {
    /// Against the `half` crate's conversion on values of the deep prompts' scale and beyond,
    /// subnormals of f16 included: equal except at exact ties (none in this stream).
    #[test]
    fn f16_round_matches_the_half_crate() {
        use burn::tensor::{Tensor, TensorData};
        let device = burn::tensor::Device::flex();
        let mut state = 0x1234_5678_9ABC_DEF0u64;
        let values: Vec<f32> = (0..20_000)
            .map(|i| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let u = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                u * [0.04f32, 3e-4, 2e-6, 50.0][i % 4]
            })
            .collect();
        let got = super::f16_round(Tensor::<1>::from_data(TensorData::new(values.clone(), [values.len()]), &device));
        let got = got.into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
        for (v, g) in values.iter().zip(&got) {
            assert_eq!(*g, half::f16::from_f32(*v).to_f32(), "{v:e}");
        }
    }
}

/// `encode_text_learn` of the learner's two prompts: `T` `[2, E]`, unit rows (normal, anomalous).
pub fn text_features(model: &ClipModel, learner: &PromptLearner, frame: &PromptFrame) -> Result<Tensor<2>, DetectError> {
    let lift = |t: Tensor<2>| if learner.ctx_pos.val().is_autodiff() && !t.is_autodiff() { t.autodiff() } else { t };
    let prompt = |i: usize, ctx: Tensor<2>| Tensor::cat(vec![lift(frame.prefix[i].clone()), ctx, lift(frame.suffix[i].clone())], 0);
    let x = Tensor::stack(vec![prompt(0, learner.ctx_pos.val()), prompt(1, learner.ctx_neg.val())], 0);
    let layers = learner
        .compound_prompts_text
        .iter()
        .enumerate()
        .map(|(i, p)| Ok((i + 1, f16_rounded(p.val())?)))
        .collect::<Result<Vec<_>, DetectError>>()?;
    let deep = DeepPrompts { layers };
    let eot = eot_positions(&[frame.ids[0].clone(), frame.ids[1].clone()])?;
    let out = model.text.forward_embeddings(x, &eot, TextForward { deep_prompts: Some(&deep), hook: None })?;
    Ok(l2_normalize(out.projected))
}

/// The image side of a batch: `n(z)` `[B, E]` (CLS without `ln_post`) and the unit patch features
/// `[B, L, E]` of each tap (`ln_post` and `proj` of the DPAM stream, CLS dropped).
pub fn image_features(model: &ClipModel, config: &AnomalyClipConfig, pixels: Tensor<4>) -> Result<(Tensor<2>, Vec<Tensor<3>>), DetectError> {
    let vv = Some(VvAttention::Dual { from_block: config.dpam_from_block });
    let out = model.visual.forward(pixels, VisionForward { taps: &config.taps, vv, hook: None, prompts: None })?;
    let [b, t, d] = out.last.dims();
    let z = model.visual.project(out.last.slice([0..b, 0..1, 0..d])).reshape([b as i64, -1]);
    let patches = out
        .taps
        .into_iter()
        .map(|tap| l2_normalize(model.visual.project(model.visual.ln_post(tap)).slice([0..b, 1..t, 0..model.config.embed_dim])))
        .collect();
    Ok((l2_normalize(z), patches))
}

/// Per-tap patch probabilities on the grid, `[B, 2, G, G]` (normal, anomalous).
pub fn patch_probabilities(patches: &[Tensor<3>], text: &Tensor<2>, g: usize) -> Vec<Tensor<4>> {
    patches
        .iter()
        .map(|f| {
            let [b, l, e] = f.dims();
            let p = softmax(f.clone().reshape([b * l, e]).matmul(text.clone().transpose()).div_scalar(TEMPERATURE), 1).reshape([b, l, 2]);
            let grid = |c: usize| tokens_to_grid(p.clone().slice([0..b, 0..l, c..c + 1]).reshape([b, l]), g).unsqueeze_dim::<4>(1);
            Tensor::cat(vec![grid(0), grid(1)], 1)
        })
        .collect()
}

/// `get_similarity_map`: the probabilities upsampled bilinearly (`align_corners = false`) to S.
pub fn upsampled(p: Tensor<4>, s: usize) -> Tensor<4> {
    let [b, c, g, _] = p.dims();
    apply_square(p.reshape([b * c, g, g]), &AxisMap::bilinear(g, s, false)).reshape([b, c, s, s])
}

/// Options of [`AnomalyClip::new`].
#[derive(Debug, Clone, Default)]
pub struct AnomalyClipOptions {
    /// Input side (default: the config's).
    pub image_size: Option<usize>,
    /// Taps (default: the config's, `[24]`).
    pub taps: Option<Vec<usize>>,
    /// Keep the backbone's positional rule (default: rule C, bilinear).
    pub keep_backbone_settings: bool,
}

/// The AnomalyCLIP detector.
pub struct AnomalyClip {
    model: ClipModel,
    learner: PromptLearner,
    config: AnomalyClipConfig,
    /// `[2, E]`, computed once (class-agnostic).
    text: Tensor<2>,
}

impl AnomalyClip {
    /// Wraps a backbone and a learner; the prompts are encoded once here.
    pub fn new(mut model: ClipModel, learner: PromptLearner, frame: &PromptFrame, mut config: AnomalyClipConfig, options: AnomalyClipOptions) -> Result<Self, DetectError> {
        if !options.keep_backbone_settings {
            model.visual.pos_resize = PosEmbedResize::Bilinear;
        }
        if let Some(size) = options.image_size {
            config.image_size = size;
        }
        if let Some(taps) = options.taps {
            config.taps = taps;
        }
        config.validate(&model.config)?;
        let text = text_features(&model, &learner, frame)?;
        Ok(Self { model, learner, config, text })
    }

    /// [`AnomalyClip::new`] from loaded weights.
    pub fn from_weights(model: ClipModel, weights: checkpoint::AnomalyClipWeights, options: AnomalyClipOptions) -> Result<Self, DetectError> {
        let tokenizer = ClipTokenizer::openai()?;
        let frame = match weights.frame {
            Some(f) => f,
            None => PromptFrame::from_backbone(&model, &tokenizer, weights.config.n_ctx)?,
        };
        Self::new(model, weights.learner, &frame, weights.config, options)
    }

    /// The backbone.
    pub fn model(&self) -> &ClipModel {
        &self.model
    }

    /// The learner.
    pub fn learner(&self) -> &PromptLearner {
        &self.learner
    }

    /// The configuration.
    pub fn config(&self) -> &AnomalyClipConfig {
        &self.config
    }

    /// The text features `[2, E]`.
    pub fn text(&self) -> &Tensor<2> {
        &self.text
    }
}

impl Detector for AnomalyClip {
    fn name(&self) -> &'static str {
        "anomaly-clip"
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

    /// Nothing to do: the prompts are object-agnostic ("object").
    fn set_class(&mut self, name: &str) -> Result<(), DetectError> {
        if name.trim().is_empty() {
            return Err(DetectError::Invalid("empty class name".into()));
        }
        Ok(())
    }

    fn detect(&self, pixels: Tensor<4>) -> Result<Detection, DetectError> {
        let [b, c, h, w] = pixels.dims();
        let s = self.config.image_size;
        if b == 0 || c != 3 || h != s || w != s {
            return Err(DetectError::Invalid(format!("AnomalyCLIP takes images [B ≥ 1, 3, {s}, {s}], got [{b}, {c}, {h}, {w}]")));
        }
        let g = self.grid();
        let (z, patches) = image_features(&self.model, &self.config, pixels)?;
        let image_score = softmax(z.matmul(self.text.clone().transpose()).div_scalar(TEMPERATURE), 1).narrow(1, 1, 1).reshape([b]);
        let mut map: Option<Tensor<3>> = None;
        let mut patch_map: Option<Tensor<3>> = None;
        for p in patch_probabilities(&patches, &self.text, g) {
            let up = upsampled(p.clone(), s);
            let m = (up.clone().narrow(1, 1, 1) - up.narrow(1, 0, 1)).add_scalar(1.0).div_scalar(2.0).reshape([b, s, s]);
            let pm = (p.clone().narrow(1, 1, 1) - p.narrow(1, 0, 1)).add_scalar(1.0).div_scalar(2.0).reshape([b, g, g]);
            map = Some(map.map_or(m.clone(), |acc| acc + m));
            patch_map = Some(patch_map.map_or(pm.clone(), |acc| acc + pm));
        }
        let mut map = map.expect("at least one tap");
        if let Some(sigma) = self.config.sigma {
            map = apply_square(map, &AxisMap::gaussian_scipy(s, sigma, 4.0));
        }
        Ok(Detection { image_score: image_score.clone(), map, patch_map: patch_map.expect("at least one tap"), map_components: vec![], components: vec![("text".into(), image_score)] })
    }
}
