//! WinCLIP and WinCLIP+ (`spec/baselines.md` §3), following anomalib 2.7.0
//! (`models/image/winclip`), the project's reference implementation.
//!
//! * Backbone: OpenCLIP ViT-B-16-plus-240 with exact GELU, input fixed at its native 240 px (grid
//!   15×15); any other architecture runs at its own native size.
//! * Text: the compositional prompt ensemble of [`crate::winclip_prompts`] (7 normal and 4
//!   anomalous states × anomalib's 21 templates); each prototype is the **raw** mean of the prompt
//!   embeddings (anomalib/zqhang), normalised only inside the cosine.
//! * Windows: k×k windows slide over the patch grid with stride 1 (anomalib's `make_masks`:
//!   `unfold` of the index grid), default scales 2 and 3. A window embedding selects the CLS token
//!   and the window's tokens from the sequence *after* positional embedding and *before* `ln_pre`
//!   (`VisionTransformer::embed`), runs `ln_pre` and every block on that short sequence, and takes
//!   `ln_post(CLS) @ proj` (`spec/clip.md` §7.4). All windows of all images run as one batch.
//! * Zero-shot: `s = softmax([cos(f, t_n), cos(f, t_a)] / τ)₁` with τ = 0.07 for the image and
//!   every window; per scale each cell gets the harmonic mean of the windows covering it; the map
//!   is the harmonic mean of the image score (as a constant map) and the per-scale maps.
//! * WinCLIP+ (reference images): visual association `v(x) = min_r (1 − cos(x, r)) / 2` over the
//!   memory of the same kind — patch tokens for the patch level, window embeddings per scale
//!   (harmonically aggregated) — averaged into `M_few`; map `(M_zero + M_few)/2`, image score
//!   `(s_img + max M_few)/2`.
//! * The map is upsampled bilinearly with `align_corners = false`; no smoothing.
//!
//! **Few-shot patch tokens** (`spec/baselines.md` §3.5): anomalib reads the patch tokens that
//! open_clip's `VisionTransformer` returns with `output_tokens = True`. In open_clip ≥ 2.24 (default
//! `final_ln_after_pool = False`, checked on 2.24.0, the newest release inside anomalib's pin
//! `>=2.23.0,<2.26.1`, and on 3.3.0) `ln_post` runs on every token before pooling, so these are
//! the final tokens **after `ln_post`, not projected** (896-d for ViT-B-16-plus-240). That is
//! what [`WinClip`] stores and compares.
//!
//! **open_clip version:** anomalib permutes the window batch to sequence-first before calling
//! `visual.transformer`, which is right for open_clip < 2.26.1. Newer open_clip transformers are
//! batch-first, so anomalib 2.7.0 run against open_clip 3.x silently attends across *windows* at
//! each token position instead of within each window. We implement the per-window forward of the
//! spec; the parity fixtures come from anomalib 2.7.0 on open_clip 2.24.0
//! (`tools/fixtures/detect_baselines.py`).
//!
//! **Preprocessing:** [`Detector::preprocess`] is the PIL-exact bicubic squash to 240 with CLIP
//! mean/std (zqhang's pipeline); anomalib's own pre-processor resizes tensors with torchvision's
//! antialiased bicubic, which differs from PIL at the rounding level.
//!
//! Where the re-implementations differ (temperature 0.01, normalised-mean prototypes, 22
//! templates, map maximum as image score), [`WinClipConfig`] exposes the first two as options; the
//! defaults are anomalib's.
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use vlad_clip::preprocess::Preprocess;
use vlad_clip::{ClipModel, ClipTokenizer, VisionForward};

use crate::postprocess::{AxisMap, apply_square, harmonic_aggregation, tokens_to_grid};
use crate::prompts::{Averaging, l2_normalize, prototype};
use crate::{DetectError, Detection, Detector};

/// Options of WinCLIP.
#[derive(Debug, Clone, PartialEq)]
pub struct WinClipConfig {
    /// Window sides in patches (anomalib: 2 and 3).
    pub scales: Vec<usize>,
    /// Softmax temperature τ (anomalib and zqhang: 0.07; caoyunkang and mala-lab: 0.01).
    pub temperature: f32,
    /// How prompt embeddings become prototypes (anomalib: raw mean; mala-lab: normalised mean).
    pub text_averaging: Averaging,
}

impl Default for WinClipConfig {
    /// anomalib's settings.
    fn default() -> Self {
        Self { scales: vec![2, 3], temperature: 0.07, text_averaging: Averaging::RawMean }
    }
}

/// The k×k windows (stride 1) of an `h×w` patch grid, as anomalib's `make_masks` orders them:
/// windows by the row-major position of their top-left cell, cells of a window row-major, cells
/// numbered row-major on the grid.
pub fn sliding_windows(h: usize, w: usize, k: usize) -> Result<Vec<Vec<usize>>, DetectError> {
    if k == 0 || h < k || w < k {
        return Err(DetectError::Invalid(format!("a {k}×{k} window does not fit the {h}×{w} patch grid")));
    }
    let mut windows = Vec::with_capacity((h - k + 1) * (w - k + 1));
    for top in 0..=h - k {
        for left in 0..=w - k {
            windows.push((0..k).flat_map(|i| (0..k).map(move |j| (top + i) * w + left + j)).collect());
        }
    }
    Ok(windows)
}

/// Normal reference embeddings of the current class (WinCLIP+).
struct Memory {
    /// Unit patch tokens (after `ln_post`, unprojected) `[K·G², D]`.
    patches: Tensor<2>,
    /// Unit window embeddings per scale `[K·n_windows, E]`.
    windows: Vec<Tensor<2>>,
    /// Number of reference images.
    count: usize,
}

/// WinCLIP's embeddings of a batch (anomalib's `encode_image`).
pub struct WinClipEmbeddings {
    /// Full-image embeddings `ln_post(CLS) @ proj` `[B, E]` (not normalised).
    pub image: Tensor<2>,
    /// Window embeddings per scale `[B, n_windows, E]` (not normalised).
    pub windows: Vec<Tensor<3>>,
    /// Final patch tokens after `ln_post`, unprojected, `[B, G², D]` (not normalised).
    pub patches: Tensor<3>,
}

/// WinCLIP (zero-shot) and WinCLIP+ (after [`Detector::fit_reference`]).
pub struct WinClip {
    model: ClipModel,
    tokenizer: ClipTokenizer,
    config: WinClipConfig,
    /// Cells of every window, per scale.
    windows: Vec<Vec<Vec<usize>>>,
    /// Class of the current prompts.
    class: Option<String>,
    /// `[2, E]` prototypes (normal, anomalous) of the current class, not normalised.
    text: Option<Tensor<2>>,
    memory: Option<Memory>,
}

impl WinClip {
    /// Wraps a loaded backbone (for the published setting: ViT-B-16-plus-240 with exact GELU).
    pub fn new(model: ClipModel, config: WinClipConfig) -> Result<Self, DetectError> {
        if !(config.temperature.is_finite() && config.temperature > 0.0) {
            return Err(DetectError::Invalid(format!("temperature must be positive, got {}", config.temperature)));
        }
        if config.scales.is_empty() {
            return Err(DetectError::Invalid("WinCLIP needs at least one window scale".into()));
        }
        let g = model.visual.native_grid;
        let windows = config.scales.iter().map(|&k| sliding_windows(g, g, k)).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { model, tokenizer: ClipTokenizer::openai()?, config, windows, class: None, text: None, memory: None })
    }

    /// The options.
    pub fn config(&self) -> &WinClipConfig {
        &self.config
    }

    /// Number of reference images in the few-shot memory (0: zero-shot WinCLIP).
    pub fn shots(&self) -> usize {
        self.memory.as_ref().map_or(0, |m| m.count)
    }

    /// Forgets the reference images (back to zero-shot).
    pub fn clear_reference(&mut self) {
        self.memory = None;
    }

    /// The `[2, E]` text prototypes (normal, anomalous) of the current class, not normalised.
    pub fn text_prototypes(&self) -> Option<Tensor<2>> {
        self.text.clone()
    }

    fn image_size(&self) -> usize {
        self.model.visual.native_grid * self.model.visual.patch_size
    }

    fn check_pixels(&self, pixels: &Tensor<4>) -> Result<usize, DetectError> {
        let [b, c, h, w] = pixels.dims();
        let s = self.image_size();
        if b == 0 || c != 3 || h != s || w != s {
            return Err(DetectError::Invalid(format!("WinCLIP takes images [B ≥ 1, 3, {s}, {s}], got [{b}, {c}, {h}, {w}]")));
        }
        Ok(b)
    }

    /// Image, window and patch embeddings of a batch `[B, 3, S, S]`.
    pub fn embeddings(&self, pixels: Tensor<4>) -> Result<WinClipEmbeddings, DetectError> {
        let b = self.check_pixels(&pixels)?;
        let visual = &self.model.visual;
        // Tokens after the positional embedding, before `ln_pre`: what anomalib's hook captures.
        let tokens = visual.embed(pixels)?;
        let [_, t, d] = tokens.dims();
        let last = visual.forward_tokens(tokens.clone(), VisionForward::default()).last;
        let image = visual.pool(last.clone());
        let patches = visual.ln_post(last.slice([0..b, 1..t, 0..d]));
        let device = tokens.device();
        let windows = self
            .windows
            .iter()
            .map(|cells| {
                let per_window = 1 + cells[0].len();
                // CLS (index 0) then the window's patch tokens (shifted by one for the CLS slot).
                let index: Vec<i64> = cells.iter().flat_map(|w| std::iter::once(0).chain(w.iter().map(|&c| c as i64 + 1))).collect();
                let count = cells.len();
                let index = Tensor::<1, Int>::from_data(TensorData::new(index, [count * per_window]), &device);
                let selected = tokens.clone().select(1, index).reshape([b * count, per_window, d]);
                let out = visual.forward_tokens(selected, VisionForward::default()).last;
                let pooled = visual.pool(out);
                let e = pooled.dims()[1];
                pooled.reshape([b, count, e])
            })
            .collect();
        Ok(WinClipEmbeddings { image, windows, patches })
    }

    /// anomalib's `class_scores(…, target_class=1)`: anomalous probability of `[N, E]` embeddings.
    fn anomalous_probability(&self, embeddings: Tensor<2>, text: &Tensor<2>) -> Tensor<1> {
        let n = embeddings.dims()[0];
        let logits = l2_normalize(embeddings).matmul(l2_normalize(text.clone()).transpose()).div_scalar(self.config.temperature);
        softmax(logits, 1).slice([0..n, 1..2]).reshape([n])
    }

    /// Zero-shot maps `[B, G²]` and image scores `[B]`.
    fn zero_shot(&self, encoded: &WinClipEmbeddings, text: &Tensor<2>) -> (Tensor<2>, Tensor<1>) {
        let b = encoded.image.dims()[0];
        let cells = self.model.visual.native_grid.pow(2);
        let image_score = self.anomalous_probability(encoded.image.clone(), text);
        // Harmonic mean over the scales, the full image counting as one more scale.
        let mut inverse_sum = image_score.clone().reshape([b, 1]).expand([b, cells]).recip();
        for (windows, cells_of) in encoded.windows.iter().zip(&self.windows) {
            let [_, n, e] = windows.dims();
            let scores = self.anomalous_probability(windows.clone().reshape([b * n, e]), text).reshape([b, n]);
            inverse_sum = inverse_sum + harmonic_aggregation(scores, cells_of, cells).recip();
        }
        let map = inverse_sum.recip().mul_scalar((self.windows.len() + 1) as f32);
        (map, image_score)
    }

    /// Few-shot map `M_few` `[B, G²]`.
    fn few_shot(&self, encoded: &WinClipEmbeddings, memory: &Memory) -> Tensor<2> {
        let [b, l, d] = encoded.patches.dims();
        let mut maps = vec![association(encoded.patches.clone().reshape([b * l, d]), &memory.patches).reshape([b, l])];
        for ((windows, reference), cells_of) in encoded.windows.iter().zip(&memory.windows).zip(&self.windows) {
            let [_, n, e] = windows.dims();
            let scores = association(windows.clone().reshape([b * n, e]), reference).reshape([b, n]);
            maps.push(harmonic_aggregation(scores, cells_of, l));
        }
        let count = maps.len() as f32;
        Tensor::stack::<3>(maps, 0).sum_dim(0).reshape([b, l]).div_scalar(count)
    }
}

/// Visual association score `min_r (1 − cos(x, r)) / 2` of each row of `x` `[N, F]` against the
/// unit rows of `memory` `[M, F]`: `[N]`.
fn association(x: Tensor<2>, memory: &Tensor<2>) -> Tensor<1> {
    let n = x.dims()[0];
    let cosine = l2_normalize(x).matmul(memory.clone().transpose());
    cosine.neg().add_scalar(1.0).min_dim(1).reshape([n]).div_scalar(2.0)
}

impl Detector for WinClip {
    fn name(&self) -> &'static str {
        "winclip"
    }

    fn device(&self) -> Device {
        self.model.visual.proj.device()
    }

    fn preprocess(&self) -> Preprocess {
        Preprocess::squash(self.image_size() as u32)
    }

    fn grid(&self) -> usize {
        self.model.visual.native_grid
    }

    /// Builds the prompt ensemble for `name` (used verbatim, e.g. `metal_nut`, as anomalib does).
    /// A different class drops the reference memory: it belongs to the previous class.
    fn set_class(&mut self, name: &str) -> Result<(), DetectError> {
        if name.trim().is_empty() {
            return Err(DetectError::Invalid("empty class name".into()));
        }
        let (normal, anomalous) = crate::winclip_prompts::ensemble(name);
        let averaging = self.config.text_averaging;
        let t_n = prototype(&self.model, &self.tokenizer, &normal, averaging)?;
        let t_a = prototype(&self.model, &self.tokenizer, &anomalous, averaging)?;
        self.text = Some(Tensor::stack(vec![t_n, t_a], 0));
        if self.class.as_deref() != Some(name) {
            self.memory = None;
        }
        self.class = Some(name.to_string());
        Ok(())
    }

    fn detect(&self, pixels: Tensor<4>) -> Result<Detection, DetectError> {
        let text = self.text.clone().ok_or_else(|| DetectError::Invalid("call set_class before detect".into()))?;
        let encoded = self.embeddings(pixels)?;
        let b = encoded.image.dims()[0];
        let g = self.grid();
        let (zero_map, zero_score) = self.zero_shot(&encoded, &text);
        let mut components = vec![("zero_shot".to_string(), zero_score.clone())];
        let (patch_scores, image_score) = match &self.memory {
            None => (zero_map, zero_score),
            Some(memory) => {
                let few_map = self.few_shot(&encoded, memory);
                let few_max = few_map.clone().max_dim(1).reshape([b]);
                components.push(("few_shot_max".to_string(), few_max.clone()));
                ((zero_map + few_map).div_scalar(2.0), (zero_score + few_max).div_scalar(2.0))
            }
        };
        let patch_map = tokens_to_grid(patch_scores, g);
        let map = apply_square(patch_map.clone(), &AxisMap::bilinear(g, self.image_size(), false));
        Ok(Detection { image_score, map, patch_map, map_components: vec![], components })
    }

    /// Stores the patch tokens and window embeddings of `normal` `[K, 3, S, S]` (replacing any
    /// earlier memory), turning WinCLIP into WinCLIP+.
    fn fit_reference(&mut self, normal: Tensor<4>) -> Result<(), DetectError> {
        let encoded = self.embeddings(normal)?;
        let [k, l, d] = encoded.patches.dims();
        let patches = l2_normalize(encoded.patches.reshape([k * l, d]));
        let windows = encoded
            .windows
            .into_iter()
            .map(|w| {
                let [_, n, e] = w.dims();
                l2_normalize(w.reshape([k * n, e]))
            })
            .collect();
        self.memory = Some(Memory { patches, windows, count: k });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_follow_make_masks() {
        // anomalib's docstring: make_masks((3, 3), 2) columns.
        assert_eq!(sliding_windows(3, 3, 2).unwrap(), vec![vec![0, 1, 3, 4], vec![1, 2, 4, 5], vec![3, 4, 6, 7], vec![4, 5, 7, 8]]);
        assert_eq!(sliding_windows(15, 15, 2).unwrap().len(), 196);
        assert_eq!(sliding_windows(15, 15, 3).unwrap().len(), 169);
        assert!(sliding_windows(2, 5, 3).unwrap_err().to_string().contains("3×3"));
    }
}
