//! Plain CLIP zero-shot detection (`spec/baselines.md` §2): the "CLIP" row of the AnomalyCLIP and
//! WinCLIP tables. Image score `softmax(τ⁻¹·[cos(z,t_n), cos(z,t_a)])₁` on the CLIP image embedding;
//! pixel map from the final-layer patch tokens through `ln_post` and `proj`, upsampled bilinearly.
//! Expected to localise at or below chance: CLIP's last-layer patch tokens are not aligned with text.
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor};
use vlad_clip::preprocess::Preprocess;
use vlad_clip::{ClipModel, ClipTokenizer, VisionForward};

use crate::postprocess::{AxisMap, apply_square, tokens_to_grid};
use crate::prompts::{Averaging, l2_normalize, prototype};
use crate::{DetectError, Detection, Detector};

/// Which prompts describe "normal" and "anomalous".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZeroShotPrompts {
    /// "a photo of a normal {}." / "a photo of an anomalous {}." (the "CLIP" row; the wording is
    /// the usual one, the papers do not print it verbatim).
    Single,
    /// WinCLIP's compositional ensemble (7 normal and 4 anomalous states × 21 templates),
    /// prototypes as normalised means.
    WinClipEnsemble,
}

/// Options of the zero-shot detector.
#[derive(Debug, Clone)]
pub struct ZeroShotConfig {
    /// Prompt set.
    pub prompts: ZeroShotPrompts,
    /// Logit scale 1/τ (100 in the papers' CLIP rows).
    pub logit_scale: f32,
    /// Input side S (default: the backbone's native size).
    pub image_size: usize,
    /// Gaussian σ (scipy convention, truncate 4) applied to the upsampled map; `None` for none.
    pub smoothing_sigma: Option<f64>,
}

impl ZeroShotConfig {
    /// The papers' "CLIP" row at input side `image_size`: the two single prompts, 1/τ = 100, no
    /// smoothing.
    pub fn new(image_size: usize) -> Self {
        Self { prompts: ZeroShotPrompts::Single, logit_scale: 100.0, image_size, smoothing_sigma: None }
    }
}

/// Plain CLIP as an anomaly detector.
pub struct ZeroShotClip {
    model: ClipModel,
    tokenizer: ClipTokenizer,
    config: ZeroShotConfig,
    /// `[2, E]` unit prototypes (normal, anomalous) of the current class.
    text: Option<Tensor<2>>,
}

impl ZeroShotClip {
    /// Wraps a loaded backbone (QuickGELU for parity with the CLIP rows).
    pub fn new(model: ClipModel, config: ZeroShotConfig) -> Result<Self, DetectError> {
        let patch = model.visual.patch_size;
        if config.image_size < patch {
            return Err(DetectError::Invalid(format!("image size {} is below the patch size {patch}", config.image_size)));
        }
        if !(config.logit_scale.is_finite() && config.logit_scale > 0.0) {
            return Err(DetectError::Invalid(format!("logit scale must be positive, got {}", config.logit_scale)));
        }
        if let Some(sigma) = config.smoothing_sigma.filter(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(DetectError::Invalid(format!("smoothing sigma must be positive, got {sigma}")));
        }
        Ok(Self { model, tokenizer: ClipTokenizer::openai()?, config, text: None })
    }

    fn prompt_groups(&self, name: &str) -> (Vec<String>, Vec<String>) {
        match self.config.prompts {
            ZeroShotPrompts::Single => (vec![format!("a photo of a normal {name}.")], vec![format!("a photo of an anomalous {name}.")]),
            ZeroShotPrompts::WinClipEnsemble => crate::winclip_prompts::ensemble(name),
        }
    }
}

impl Detector for ZeroShotClip {
    fn name(&self) -> &'static str {
        "zero-shot"
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
        let (normal, anomalous) = self.prompt_groups(name);
        let t_n = prototype(&self.model, &self.tokenizer, &normal, Averaging::NormalizedMean)?;
        let t_a = prototype(&self.model, &self.tokenizer, &anomalous, Averaging::NormalizedMean)?;
        self.text = Some(Tensor::stack(vec![t_n, t_a], 0));
        Ok(())
    }

    fn detect(&self, pixels: Tensor<4>) -> Result<Detection, DetectError> {
        let text = self.text.clone().ok_or_else(|| DetectError::Invalid("call set_class before detect".into()))?;
        let [b, c, h, w] = pixels.dims();
        let s = self.config.image_size;
        if b == 0 || c != 3 || h != s || w != s {
            return Err(DetectError::Invalid(format!("zero-shot CLIP takes images [B ≥ 1, 3, {s}, {s}], got [{b}, {c}, {h}, {w}]")));
        }
        let g = self.grid();
        let out = self.model.visual.forward(pixels, VisionForward::default())?;
        let [_, t, d] = out.last.dims();
        let image = l2_normalize(self.model.visual.pool(out.last.clone()));
        let patches = out.last.slice([0..b, 1..t, 0..d]);
        let patches = l2_normalize(self.model.visual.project(self.model.visual.ln_post(patches)));
        let scale = self.config.logit_scale as f64;
        // Image: softmax over (normal, anomalous) of scaled cosines, anomalous probability.
        let image_logits = image.matmul(text.clone().transpose()).mul_scalar(scale);
        let image_score = softmax(image_logits, 1).slice([0..b, 1..2]).reshape([b]);
        // Patches: the same per token.
        let [_, l, e] = patches.dims();
        let patch_logits = patches.reshape([b * l, e]).matmul(text.transpose()).mul_scalar(scale);
        let patch_scores = softmax(patch_logits, 1).slice([0..b * l, 1..2]).reshape([b, l]);
        let patch_map = tokens_to_grid(patch_scores, g);
        let mut axis = AxisMap::bilinear(g, s, false);
        if let Some(sigma) = self.config.smoothing_sigma {
            axis = AxisMap::gaussian_scipy(s, sigma, 4.0).after(&axis);
        }
        let map = apply_square(patch_map.clone(), &axis);
        Ok(Detection { image_score, map, patch_map, map_components: vec![], components: vec![] })
    }
}
