//! CLIP-AD (Chen et al., 2023/2024): SDP, the training-free staged dual path, and SDP+, SDP plus
//! VAND-style linear layers, as the official code behaves (`spec/clip-ad.md`; github.com/ByChelsea/CLIP-AD
//! at f004973). `spec/baselines-audit.md` §5 adds CLIP-AD to the shared tables; where the two
//! documents differ, the audit wins (they do not differ on anything implemented here).
//!
//! * **Backbone:** OpenCLIP ViT-B-16-plus-240 (laion400m_e31, exact GELU, its native 240 px; the
//!   WinCLIP backbone), the staged dual path of [`forward`] with taps 3/6/9/12.
//! * **Text:** 198 normal and 220 abnormal sentences ([`prompts`]) from the raw class name, each
//!   embedding normalised, then Representative Vector Selection ([`Rvs`]): the scripts use DBSCAN
//!   (eps 0.5 / min 15, for VisA eps 1.5 / min 25) and the mean of the largest cluster, rounded to
//!   f16 and normalised in f16; `mean` is the plain normalised mean.
//! * **SDP map:** per tap `m = p_a·cos(f, t_a) − p_n·cos(f, t_n)` with `p = softmax(cos(f_CLS, T))`
//!   at temperature 1, summed over the taps, bilinear upsampling with `align_corners = false`, no
//!   softmax, Gaussian σ = 8 (scipy, truncate 4) at S.
//! * **SDP+ map:** the SDP map before smoothing plus `Σ_taps softmax(up_ac(100·n(W O_k + b)·T))₁`
//!   (VAND's layers on the original-path taps), then the Gaussian (σ = 8; the official VisA runs
//!   use 2).
//! * **Image score:** transductive in both: per class `minmax(s_text) + minmax(max map)` with
//!   `s_text = softmax(100·n(S_12 CLS)·T)₁` ([`Detector::set_fusion`]); [`Detection::image_score`]
//!   is the single-image `s_text + max map`.
//!
//! Checkpoints: the released `train_on_mvtec.pth` / `train_on_visa.pth` (`{'linear_layers': …}`,
//! keys `fc.N.weight` `[640, 896]` and `fc.N.bias`) and the safetensors files `vlad train clip-ad`
//! writes, both through [`crate::vand::checkpoint`]. Training: [`train`] (feature `train`).
use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use vlad_clip::preprocess::Preprocess;
use vlad_clip::{ClipConfig, ClipModel, ClipTokenizer};

use crate::postprocess::{AxisMap, apply_square, tokens_to_grid};
use crate::prompts::l2_normalize;
use crate::vand::{LinearLayers, VandConfig, logit_differences};
use crate::{DetectError, Detection, Detector, MapRange, MapStatistic, SetFusion};

pub mod dbscan;
pub mod forward;
pub mod prompts;
#[cfg(feature = "train")]
pub mod train;

pub use forward::{DualPathTaps, staged_dual_path};

/// The top-level key of the released SDP+ files.
pub const TOP_LEVEL_KEY: &str = "linear_layers";

/// How a group of sentence embeddings becomes one prototype (`--rep_vec`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Rvs {
    /// The normalised mean.
    Mean,
    /// The mean of DBSCAN's largest cluster, rounded to f16, normalised in f16.
    Dbscan {
        /// Neighbourhood radius (Euclidean, on unit vectors).
        eps: f64,
        /// Core-point threshold (the point itself included).
        min_samples: usize,
    },
}

impl Rvs {
    /// The scripts' rule: DBSCAN with eps 1.5 / min 25 when the dataset is VisA, else 0.5 / 15.
    pub fn official_for(dataset: &str) -> Self {
        if dataset.eq_ignore_ascii_case("visa") { Self::Dbscan { eps: 1.5, min_samples: 25 } } else { Self::Dbscan { eps: 0.5, min_samples: 15 } }
    }
}

/// The shape of a CLIP-AD model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClipAdConfig {
    /// 1-based taps (3, 6, 9, 12: the stage ends).
    pub taps: Vec<usize>,
    /// Input side S (240).
    pub image_size: usize,
    /// Store clean taps instead of the official aliased ones ([`forward`]).
    pub clean_taps: bool,
    /// Representative Vector Selection.
    pub rvs: Rvs,
    /// Gaussian σ at S (8; the official SDP+ VisA runs use 2); `None` for none.
    pub sigma: Option<f64>,
}

impl ClipAdConfig {
    /// The published settings for the backbone `clip`: taps at the stage ends, its native size,
    /// aliased taps, DBSCAN with the non-VisA parameters, σ = 8.
    pub fn for_backbone(clip: &ClipConfig) -> Self {
        let stage = (clip.vision.layers / 4).max(1);
        Self { taps: (1..=4).map(|k| k * stage).collect(), image_size: clip.vision.image_size, clean_taps: false, rvs: Rvs::official_for("mvtec"), sigma: Some(8.0) }
    }

    fn validate(&self, clip: &ClipConfig) -> Result<(), DetectError> {
        let layers = clip.vision.layers;
        let mut problems = Vec::new();
        if layers < 4 || !layers.is_multiple_of(4) {
            problems.push(format!("the stages need a vision depth divisible by 4, the backbone has {layers} blocks"));
        }
        if self.taps.is_empty() {
            problems.push("no taps".into());
        }
        if let Some(bad) = self.taps.iter().find(|&&t| t == 0 || t > layers) {
            problems.push(format!("tap {bad} is outside vision blocks 1..={layers}"));
        }
        if self.image_size < clip.vision.patch_size {
            problems.push(format!("image size {} is below the patch size {}", self.image_size, clip.vision.patch_size));
        }
        if let Some(sigma) = self.sigma.filter(|s| !(s.is_finite() && *s > 0.0)) {
            problems.push(format!("σ must be positive, got {sigma}"));
        }
        if let Rvs::Dbscan { eps, min_samples } = self.rvs
            && (!(eps.is_finite() && eps > 0.0) || min_samples == 0)
        {
            problems.push(format!("DBSCAN needs eps > 0 and min_samples ≥ 1, got {eps} and {min_samples}"));
        }
        if problems.is_empty() { Ok(()) } else { Err(DetectError::Invalid(format!("CLIP-AD config: {}", problems.join("; ")))) }
    }

    /// The linear layers' shape for this config on `clip` (taps, widths, input side).
    pub fn linear_config(&self, clip: &ClipConfig) -> VandConfig {
        VandConfig { taps: self.taps.clone(), few_shot_taps: self.taps.clone(), image_size: self.image_size, vision_width: clip.vision.width, embed_dim: clip.embed_dim }
    }
}

/// `f32 → f16 → f32`.
fn f16_round(x: f32) -> f32 {
    half::f16::from_f32(x).to_f32()
}

/// Reduces unit sentence embeddings `[n, E]` to one unit prototype `[E]` (`encode_text_with_prompt_ensemble`'s
/// `rep_vec`). DBSCAN runs on the host; a group that is all noise (where the official code
/// crashes) falls back to the mean, which the returned note says.
pub fn representative_vector(embeddings: Tensor<2>, rvs: Rvs) -> Result<(Tensor<1>, Option<String>), DetectError> {
    let [n, e] = embeddings.dims();
    match rvs {
        Rvs::Mean => Ok((l2_normalize(embeddings.mean_dim(0)).reshape([e]), None)),
        Rvs::Dbscan { eps, min_samples } => {
            let device = embeddings.device();
            let host = embeddings.clone().into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| DetectError::Invalid(format!("cannot read the text embeddings back: {e:?}")))?;
            let labels = dbscan::dbscan(&host, e, eps, min_samples);
            let Some(label) = dbscan::largest_cluster(&labels) else {
                let note = format!("DBSCAN (eps {eps}, min_samples {min_samples}) found no cluster among {n} sentences; using their mean");
                return Ok((l2_normalize(embeddings.mean_dim(0)).reshape([e]), Some(note)));
            };
            // np.mean over axis 0 of float32 rows: a running f32 sum per coordinate, then / count.
            let members: Vec<usize> = (0..n).filter(|&i| labels[i] == label).collect();
            let mut sum = vec![0f32; e];
            for &i in &members {
                sum.iter_mut().zip(&host[i * e..(i + 1) * e]).for_each(|(s, &v)| *s += v);
            }
            let mean: Vec<f32> = sum.iter().map(|&s| f16_round(s / members.len() as f32)).collect();
            // `class_embedding /= class_embedding.norm()` on an f16 tensor: the norm is rounded to
            // f16, and so is every quotient.
            let norm = f16_round(mean.iter().map(|&v| v * v).sum::<f32>().sqrt());
            let unit: Vec<f32> = mean.iter().map(|&v| f16_round(v / norm)).collect();
            Ok((Tensor::from_data(TensorData::new(unit, [e]), &device), None))
        }
    }
}

/// The prototypes `[2, E]` (normal, anomalous) of a class, and notes (DBSCAN fallbacks).
pub fn text_prototypes(model: &ClipModel, tokenizer: &ClipTokenizer, class_name: &str, rvs: Rvs) -> Result<(Tensor<2>, Vec<String>), DetectError> {
    if class_name.trim().is_empty() {
        return Err(DetectError::Invalid("empty class name".into()));
    }
    let (normal, anomalous) = prompts::ensemble(class_name);
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for (group, sentences) in [("normal", normal), ("anomalous", anomalous)] {
        let ids = tokenizer.tokenize_batch(&sentences)?;
        let (row, note) = representative_vector(l2_normalize(model.encode_text(&ids)?), rvs)?;
        notes.extend(note.map(|n| format!("{class_name} ({group}): {n}")));
        rows.push(row);
    }
    Ok((Tensor::stack(rows, 0), notes))
}

/// The SDP map on the patch grid, `[B, G, G]`: `Σ_taps p_a·cos(f, t_a) − p_n·cos(f, t_n)`.
pub fn sdp_grid(surgery: &[Tensor<3>], text: &Tensor<2>, g: usize) -> Tensor<3> {
    let mut sum: Option<Tensor<2>> = None;
    for s in surgery {
        let [b, t, e] = s.dims();
        let f = l2_normalize(s.clone());
        let cos = f.reshape([b * t, e]).matmul(text.clone().transpose()).reshape([b, t, 2]);
        let p = softmax(cos.clone().slice([0..b, 0..1, 0..2]), 2).reshape([b, 1, 2]);
        let patches = cos.slice([0..b, 1..t, 0..2]);
        let weighted = patches * p;
        let m = (weighted.clone().slice([0..b, 0..t - 1, 1..2]) - weighted.slice([0..b, 0..t - 1, 0..1])).reshape([b, t - 1]);
        sum = Some(match sum.take() {
            Some(acc) => acc + m,
            None => m,
        });
    }
    tokens_to_grid(sum.expect("at least one tap"), g)
}

/// Options of [`ClipAd::new`].
#[derive(Debug, Clone, Default)]
pub struct ClipAdOptions {
    /// Input side (default: the config's).
    pub image_size: Option<usize>,
}

/// CLIP-AD: SDP without linear layers, SDP+ with them.
pub struct ClipAd {
    model: ClipModel,
    tokenizer: ClipTokenizer,
    config: ClipAdConfig,
    layers: Option<LinearLayers>,
    text: Option<Tensor<2>>,
    notes: Vec<String>,
}

impl ClipAd {
    /// SDP (`layers` = `None`) or SDP+ on a backbone (used as it is: the published one is exact-GELU
    /// natively).
    pub fn new(model: ClipModel, layers: Option<LinearLayers>, mut config: ClipAdConfig, options: ClipAdOptions) -> Result<Self, DetectError> {
        if let Some(size) = options.image_size {
            config.image_size = size;
        }
        config.validate(&model.config)?;
        if let Some(l) = &layers
            && l.fc.len() != config.taps.len()
        {
            return Err(DetectError::Invalid(format!("{} linear layers for {} taps {:?}", l.fc.len(), config.taps.len(), config.taps)));
        }
        Ok(Self { model, tokenizer: ClipTokenizer::openai()?, config, layers, text: None, notes: Vec::new() })
    }

    /// The backbone.
    pub fn model(&self) -> &ClipModel {
        &self.model
    }

    /// The configuration.
    pub fn config(&self) -> &ClipAdConfig {
        &self.config
    }

    /// The prototypes of the current class.
    pub fn text(&self) -> Option<&Tensor<2>> {
        self.text.as_ref()
    }

    /// Notes of the last [`Detector::set_class`] (DBSCAN fallbacks).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// Sets the prototypes directly (training-time validation reuses the ones it computed).
    pub fn set_text(&mut self, text: Tensor<2>) {
        self.text = Some(text);
    }
}

impl Detector for ClipAd {
    fn name(&self) -> &'static str {
        if self.layers.is_some() { "clip-ad-plus" } else { "clip-ad" }
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
        let (text, notes) = text_prototypes(&self.model, &self.tokenizer, name, self.config.rvs)?;
        self.text = Some(text);
        self.notes = notes;
        Ok(())
    }

    fn detect(&self, pixels: Tensor<4>) -> Result<Detection, DetectError> {
        let text = self.text.clone().ok_or_else(|| DetectError::Invalid("call set_class before detect".into()))?;
        let [b, c, h, w] = pixels.dims();
        let s = self.config.image_size;
        if b == 0 || c != 3 || h != s || w != s {
            return Err(DetectError::Invalid(format!("CLIP-AD takes images [B ≥ 1, 3, {s}, {s}], got [{b}, {c}, {h}, {w}]")));
        }
        let g = self.grid();
        let taps = staged_dual_path(&self.model.visual, pixels, &self.config.taps, self.config.clean_taps)?;
        // Image: the last tap's CLS (tap 12 = the CLIP image embedding) against the prototypes, ×100.
        let last = taps.surgery.last().expect("at least one tap").clone();
        let [_, _, e] = last.dims();
        let cls = l2_normalize(last.slice([0..b, 0..1, 0..e]).reshape([b, e]));
        let s_text = softmax(cls.matmul(text.clone().transpose()).mul_scalar(100.0), 1).narrow(1, 1, 1).reshape([b]);
        // SDP: bilinear without align_corners.
        let sdp = sdp_grid(&taps.surgery, &text, g);
        let mut map = apply_square(sdp.clone(), &AxisMap::bilinear(g, s, false));
        let mut patch_map = sdp;
        // SDP+: VAND's maps on the original-path taps (align_corners = true, softmax after).
        if let Some(layers) = &self.layers {
            let axis = AxisMap::bilinear(g, s, true);
            for d in logit_differences(layers, &taps.original, &text.clone().unsqueeze::<3>(), g) {
                map = map + sigmoid(apply_square(d.clone(), &axis));
                patch_map = patch_map + sigmoid(d);
            }
        }
        if let Some(sigma) = self.config.sigma {
            map = apply_square(map, &AxisMap::gaussian_scipy(s, sigma, 4.0));
        }
        let s_map = map.clone().reshape([b, s * s]).max_dim(1).reshape([b]);
        let image_score = s_text.clone() + s_map;
        Ok(Detection { image_score, map, patch_map, map_components: vec![], components: vec![("text".into(), s_text)] })
    }

    /// `minmax(s_text) + minmax(max map)` over the class's test set (`util/metrics.py`).
    fn set_fusion(&self) -> SetFusion {
        SetFusion::MinMax {
            component: Some("text".into()),
            map_weight: 1.0,
            component_weight: 1.0,
            statistic: MapStatistic::Max,
            map_range: MapRange::Statistics,
            normalize_component: true,
        }
    }
}
