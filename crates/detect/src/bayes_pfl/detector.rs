//! The inference detector (`spec/bayes-pfl.md` §2, §6, §7; the official `test.py`).
#[cfg(not(target_arch = "wasm32"))]
use std::path::Path;
use std::sync::Mutex;

use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor, TensorData};
use vlad_clip::preprocess::Preprocess;
#[cfg(not(target_arch = "wasm32"))]
use vlad_clip::weights::WeightFile;
use vlad_clip::{Activation, ClipModel, ClipTokenizer, VisionForward};

#[cfg(not(target_arch = "wasm32"))]
use super::checkpoint::load_checkpoint;
use super::checkpoint::{BayesPflCheckpoint, ImportReport, StageChoice};
use super::head::{BayesPflHead, ContextSamples, Stage, StateKind, StateSamples};
use super::noise::{McNoise, NoiseMode};
use super::text::{ClassPrompt, encode_prompts, official_top_k};
use crate::postprocess::{AxisMap, apply_square};
use crate::{DetectError, Detection, Detector, MapRange, MapStatistic, SetFusion};

/// Options of the detector (what the CLI maps to flags).
#[derive(Debug, Clone, PartialEq)]
pub struct BayesPflOptions {
    /// 1-based backbone blocks whose raw residual stream feeds RCA and `fuse` (official 6, 12,
    /// 18, 24); their number must match the checkpoint's `RCA.linear_proj` layers.
    pub taps: Vec<usize>,
    /// Input side S (official 518; the positional grid is resized by the backbone's rule A).
    pub image_size: usize,
    /// R, Monte-Carlo samples per image (official test 10, validation 5). Time grows linearly.
    pub samples: usize,
    /// Where ε comes from (`--mc-noise sample --seed S` or `--mc-noise zero`).
    pub noise: NoiseMode,
    /// Image-head stage (default: from the checkpoint).
    pub stage: StageChoice,
    /// Gaussian σ of the output map (scipy convention, truncate 4; official 8); `None` for none.
    pub smoothing_sigma: Option<f64>,
    /// Top-k of the map statistic; `None` for the official per-class rule (20 or 2000).
    pub top_k: Option<usize>,
    /// Maps upsampled at once (memory bound: never all L·B·R full-size maps).
    pub map_chunk: usize,
    /// Load a checkpoint even if tensors are missing, mis-shaped or unknown (they are reported).
    pub allow_partial: bool,
    /// Activation of both backbone towers (exact GELU, as the released heads were trained).
    pub activation: Activation,
}

impl Default for BayesPflOptions {
    /// The official test settings (`test.sh`), with seed 333.
    fn default() -> Self {
        Self {
            taps: vec![6, 12, 18, 24],
            image_size: 518,
            samples: 10,
            noise: NoiseMode::Sample { seed: 333 },
            stage: StageChoice::FromFile,
            smoothing_sigma: Some(8.0),
            top_k: None,
            map_chunk: 10,
            allow_partial: false,
            activation: Activation::Gelu,
        }
    }
}

/// Noise source and the image-agnostic samples of the run.
struct McState {
    noise: Box<dyn McNoise>,
    states: Option<(StateSamples, StateSamples)>,
}

/// Everything one forward pass computes (the detector keeps only what [`Detection`] needs; the
/// per-layer parts are filled when asked for, for tests and inspection).
pub struct BayesPflOutput {
    /// g `[N, E]` (`ln_post(CLS) @ proj`, unnormalised).
    pub global: Tensor<2>,
    /// Image-specific samples (zK `[R, N, E]`).
    pub context: ContextSamples,
    /// Normal-state samples of the run (zK `[R, E]`).
    pub normal: StateSamples,
    /// Abnormal-state samples of the run.
    pub abnormal: StateSamples,
    /// Normalised text features `[N, 2·B·R, E]`, `[normal j·B+b | abnormal j·B+b]`.
    pub text: Tensor<3>,
    /// Image logits `[N, 2·B·R]`.
    pub image_logits: Tensor<2>,
    /// s_text `[N]`: mean over i of `σ(logit_a,i − logit_n,i)`.
    pub s_text: Tensor<1>,
    /// A `[N, S, S]`: mean of the L·B·R maps `σ(up(S^a − S^n))`, unsmoothed.
    pub map: Tensor<3>,
    /// A after the Gaussian (or A itself without smoothing) `[N, S, S]`.
    pub smoothed: Tensor<3>,
    /// Mean of `σ(S^a − S^n)` at patch resolution `[N, G, G]`.
    pub patch_map: Tensor<3>,
    /// s_map `[N]`: mean of the top-k values of A.
    pub s_map: Tensor<1>,
    /// Per layer (when asked): RCA text `[N, M, E]`, patch features `[N, T, E]`, patch logits
    /// `[N, T, M]` and the layer's mean map `[N, S, S]`.
    pub layers: Vec<LayerOutput>,
}

/// One layer's intermediate results.
pub struct LayerOutput {
    /// Updated text features T'_l `[N, M, E]`.
    pub text: Tensor<3>,
    /// Unit patch features F_l `[N, T, E]`.
    pub patches: Tensor<3>,
    /// `exp(τ)·F_l·T'_lᵀ` `[N, T, M]`.
    pub logits: Tensor<3>,
    /// Mean over the B·R pairs of `σ(up(S^a − S^n))` `[N, S, S]`.
    pub map: Tensor<3>,
}

/// Bayes-PFL as a [`Detector`].
///
/// Build it with [`BayesPfl::new`] from a loaded backbone (OpenAI ViT-L/14@336 for the released
/// checkpoints), a checkpoint path and [`BayesPflOptions`]. The options a front end exposes:
///
/// | option | flag (suggested) | default |
/// |---|---|---|
/// | checkpoint | `--checkpoint FILE` (official `.pth` or vlad burnpack) | required |
/// | `samples` | `--samples R` | 10 |
/// | `noise` | `--mc-noise sample\|zero`, `--seed S` | sample, 333 |
/// | `stage` | `--stage 1\|2` | from the checkpoint |
/// | `taps` | `--taps 6,12,18,24` | 6,12,18,24 |
/// | `image_size` | `--image-size 518` | 518 |
/// | `smoothing_sigma` | `--sigma 8` (0 = none) | 8 |
/// | `top_k` | `--top-k K` | official per-class rule |
/// | `allow_partial` | `--allow-partial` | off |
///
/// The image-agnostic (state) samples are drawn once per run, at the first detection, and reused
/// for every image and class (official behaviour); [`BayesPfl::reset_samples`] starts a new run.
/// [`Detection::image_score`] is the deployable single-image score `½·s_text + ½·s_map` (both in
/// [0, 1]); the components `text` (s_text) and `map_topk` (s_map, top-k of the unsmoothed map) let
/// an evaluator reproduce the official per-class min–max fusion ([`Detector::set_fusion`]).
pub struct BayesPfl {
    model: ClipModel,
    head: BayesPflHead,
    tokenizer: ClipTokenizer,
    options: BayesPflOptions,
    stage: Stage,
    report: ImportReport,
    class: Option<ClassPrompt>,
    state: Mutex<McState>,
    upsample: AxisMap,
    smoothing: Option<AxisMap>,
}

fn invalid(message: String) -> DetectError {
    DetectError::Invalid(message)
}

impl BayesPfl {
    /// Loads the checkpoint at `checkpoint` (an official `.pth`, read under its top-level key
    /// `MyModel`, or a vlad burnpack/safetensors file) and wraps `model`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(model: ClipModel, checkpoint: &Path, options: BayesPflOptions) -> Result<Self, DetectError> {
        if !checkpoint.exists() {
            return Err(invalid(format!("{}: no such checkpoint", checkpoint.display())));
        }
        let file = open_checkpoint(checkpoint)?;
        let device = model.visual.proj.device();
        let loaded = load_checkpoint(&file, &device, options.stage, options.allow_partial)?;
        Self::from_checkpoint(model, loaded, options)
    }

    /// Wraps a loaded backbone and an already loaded checkpoint (bytes in the browser).
    pub fn from_checkpoint(model: ClipModel, checkpoint: BayesPflCheckpoint, options: BayesPflOptions) -> Result<Self, DetectError> {
        let model = model.with_activation(options.activation);
        let head = checkpoint.head;
        let c = &head.config;
        let v = &model.config.vision;
        let mut problems = Vec::new();
        if c.vision_width != v.width {
            problems.push(format!("the checkpoint expects vision width {}, the backbone has {}", c.vision_width, v.width));
        }
        if c.width != model.config.text.width || c.width != model.config.embed_dim {
            problems.push(format!(
                "the checkpoint expects text width and embedding size {}, the backbone has {} and {}",
                c.width, model.config.text.width, model.config.embed_dim
            ));
        }
        if options.taps.len() != c.layers {
            problems.push(format!("{} taps given ({:?}) for a checkpoint with {} RCA layers", options.taps.len(), options.taps, c.layers));
        }
        if let Some(&bad) = options.taps.iter().find(|&&t| t == 0 || t > v.layers) {
            problems.push(format!("tap {bad} is outside the backbone's blocks 1..={}", v.layers));
        }
        if options.samples == 0 {
            problems.push("samples (R) must be at least 1".into());
        }
        if options.image_size < v.patch_size {
            problems.push(format!("image size {} is below the patch size {}", options.image_size, v.patch_size));
        }
        if options.top_k == Some(0) {
            problems.push("top-k must be at least 1".into());
        }
        if let Some(sigma) = options.smoothing_sigma.filter(|s| !(s.is_finite() && *s > 0.0)) {
            problems.push(format!("smoothing sigma must be positive, got {sigma}"));
        }
        if !problems.is_empty() {
            return Err(invalid(format!("Bayes-PFL: {}", problems.join("; "))));
        }
        let stage = match options.stage {
            StageChoice::Fixed(s) => s,
            StageChoice::FromFile => checkpoint.stage,
        };
        let grid = options.image_size / v.patch_size;
        let s = options.image_size;
        Ok(Self {
            tokenizer: ClipTokenizer::openai()?,
            state: Mutex::new(McState { noise: options.noise.source(), states: None }),
            upsample: AxisMap::bilinear(grid, s, true),
            smoothing: options.smoothing_sigma.map(|sigma| AxisMap::gaussian_scipy(s, sigma, 4.0)),
            model,
            head,
            options,
            stage,
            report: checkpoint.report,
            class: None,
        })
    }

    /// The options in use.
    pub fn options(&self) -> &BayesPflOptions {
        &self.options
    }

    /// The image-head stage in use.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// What the checkpoint import read.
    pub fn import_report(&self) -> &ImportReport {
        &self.report
    }

    /// The head.
    pub fn head(&self) -> &BayesPflHead {
        &self.head
    }

    /// The backbone.
    pub fn model(&self) -> &ClipModel {
        &self.model
    }

    /// Sets R (and starts a new run: the state samples are drawn again).
    pub fn set_samples(&mut self, samples: usize) -> Result<(), DetectError> {
        if samples == 0 {
            return Err(invalid("samples (R) must be at least 1".into()));
        }
        self.options.samples = samples;
        self.reset_samples();
        Ok(())
    }

    /// Replaces the noise source (and starts a new run).
    pub fn set_noise(&mut self, noise: Box<dyn McNoise>) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        state.noise = noise;
        state.states = None;
    }

    /// Starts a new run: the image-agnostic samples are drawn again at the next detection.
    pub fn reset_samples(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).states = None;
    }

    /// The class prompt in use.
    pub fn class_prompt(&self) -> Option<&ClassPrompt> {
        self.class.as_ref()
    }

    /// The top-k of the map statistic for the current class.
    pub fn top_k(&self) -> usize {
        let side = self.options.image_size;
        let k = self.options.top_k.unwrap_or_else(|| self.class.as_ref().map_or(2000, |c| official_top_k(&c.class_name)));
        k.clamp(1, side * side)
    }

    fn noise_tensor<const D: usize>(&self, values: Vec<f32>, shape: [usize; D], what: &str) -> Result<Tensor<D>, DetectError> {
        let n: usize = shape.iter().product();
        if values.len() != n {
            return Err(invalid(format!("the noise source gave {} values for the {what} samples, expected {n} ({shape:?})", values.len())));
        }
        Ok(Tensor::from_data(TensorData::new(values, shape), &self.device()))
    }

    /// Runs everything on a batch `[N, 3, S, S]`; `layers` keeps the per-layer results.
    pub fn forward(&self, pixels: Tensor<4>, layers: bool) -> Result<BayesPflOutput, DetectError> {
        let prompt = self.class.as_ref().ok_or_else(|| invalid("call set_class before detect".into()))?;
        let [n, c, h, w] = pixels.dims();
        let s = self.options.image_size;
        if n == 0 || c != 3 || h != s || w != s {
            return Err(invalid(format!("Bayes-PFL takes images [N ≥ 1, 3, {s}, {s}], got [{n}, {c}, {h}, {w}]")));
        }
        let config = &self.head.config;
        let (r, b, e) = (self.options.samples, config.prompt_num, config.width);
        let pairs = b * r;

        // Backbone: raw residual streams at the taps (CLS removed) and g = ln_post(CLS) @ proj.
        let out = self.model.visual.forward(pixels, VisionForward { taps: &self.options.taps, ..Default::default() })?;
        let global = self.model.visual.pool(out.last);
        let patches: Vec<Tensor<3>> = out
            .taps
            .into_iter()
            .map(|t| {
                let [n, tokens, d] = t.dims();
                t.slice([0..n, 1..tokens, 0..d])
            })
            .collect();

        // Noise: the state samples once per run, the context samples per call.
        let (normal, abnormal, eps_context) = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if state.states.is_none() {
                let eps_n = state.noise.state(StateKind::Normal, r, e);
                let eps_a = state.noise.state(StateKind::Abnormal, r, e);
                let eps_n = self.noise_tensor(eps_n, [r, e], "normal-state")?;
                let eps_a = self.noise_tensor(eps_a, [r, e], "abnormal-state")?;
                state.states = Some((self.head.state_samples(StateKind::Normal, eps_n), self.head.state_samples(StateKind::Abnormal, eps_a)));
            }
            let eps = state.noise.context(r, n, e);
            let (normal, abnormal) = state.states.clone().expect("drawn above");
            (normal, abnormal, eps)
        };
        let [rn, _] = normal.zk.dims();
        if rn != r {
            return Err(invalid(format!("the run's state samples have R = {rn}, the options R = {r}; call reset_samples")));
        }
        let eps_context = self.noise_tensor(eps_context, [r, n, e], "context")?;
        let context = self.head.context_samples(global.clone(), eps_context);

        // Text features of every prompt, one batch through the text tower.
        let prompts: Vec<&ClassPrompt> = vec![prompt; n];
        let text = encode_prompts(&self.model.text, &self.head, &prompts, context.zk.clone(), normal.zk.clone(), abnormal.zk.clone())?;

        // Text branch of the image score.
        let image = self.head.image_embedding(global.clone(), &patches, self.stage);
        let image_logits = self.head.image_logits(text.clone(), image);
        let difference = image_logits.clone().slice([0..n, pairs..2 * pairs]) - image_logits.clone().slice([0..n, 0..pairs]);
        let s_text = sigmoid(difference).mean_dim(1).reshape([n]);

        // Pixel maps: σ(up(S^a − S^n)) accumulated per chunk of pairs; never all maps at once.
        let g = self.grid();
        let device = self.device();
        let mut total = Tensor::<3>::zeros([n, s, s], &device);
        let mut patch_total = Tensor::<2>::zeros([n, g * g], &device);
        let mut layer_outputs = Vec::new();
        let chunk = (self.options.map_chunk / n).max(1);
        for (layer, tokens) in patches.iter().enumerate() {
            let (logits, updated, dense) = self.head.pixel_logits(layer, text.clone(), tokens.clone());
            let t = g * g;
            let diff = logits.clone().slice([0..n, 0..t, pairs..2 * pairs]) - logits.clone().slice([0..n, 0..t, 0..pairs]);
            patch_total = patch_total + sigmoid(diff.clone()).sum_dim(2).reshape([n, t]);
            let diff = diff.swap_dims(1, 2); // [N, pairs, T]
            let mut layer_sum = Tensor::<3>::zeros([n, s, s], &device);
            let mut start = 0;
            while start < pairs {
                let end = (start + chunk).min(pairs);
                let c = end - start;
                let block = diff.clone().slice([0..n, start..end, 0..t]).reshape([n * c, g, g]);
                let up = sigmoid(apply_square(block, &self.upsample)).reshape([n, c, s, s]);
                // A one-map chunk is reshaped, not summed: burn-cubecl 0.22.1's `sum_dim` over an
                // axis of size 1 of this (permuted) layout returns wrong values on wgpu.
                let chunk_sum = if c == 1 { up.reshape([n, s, s]) } else { up.sum_dim(1).reshape([n, s, s]) };
                layer_sum = layer_sum + chunk_sum;
                start = end;
            }
            if layers {
                layer_outputs.push(LayerOutput { text: updated, patches: dense, logits, map: layer_sum.clone().div_scalar(pairs as f64) });
            }
            total = total + layer_sum;
        }
        let count = (config.layers * pairs) as f64;
        let map = total.div_scalar(count);
        let patch_map = patch_total.div_scalar(count).reshape([n, g, g]);
        let smoothed = match &self.smoothing {
            Some(gaussian) => apply_square(map.clone(), gaussian),
            None => map.clone(),
        };
        let k = self.top_k();
        let s_map = crate::postprocess::top_k_mean_rows(map.clone().reshape([n, s * s]), k);
        Ok(BayesPflOutput { global, context, normal, abnormal, text, image_logits, s_text, map, smoothed, patch_map, s_map, layers: layer_outputs })
    }
}

/// Opens a checkpoint file: PyTorch zip files under the top-level key `MyModel` (the released
/// format), anything else as it is.
#[cfg(not(target_arch = "wasm32"))]
pub fn open_checkpoint(path: &Path) -> Result<WeightFile, DetectError> {
    use std::io::Read;
    let mut head = [0u8; 4];
    let is_zip = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .map_err(|e| invalid(format!("{}: cannot read: {e}", path.display())))?
        == 4
        && &head == b"PK\x03\x04";
    let file = WeightFile::open(path, is_zip.then_some("MyModel")).map_err(|e| DetectError::Clip(e.into()))?;
    Ok(file)
}

impl Detector for BayesPfl {
    fn name(&self) -> &'static str {
        "bayes-pfl"
    }

    fn device(&self) -> Device {
        self.head.device()
    }

    fn preprocess(&self) -> Preprocess {
        Preprocess::squash(self.options.image_size as u32)
    }

    fn grid(&self) -> usize {
        self.options.image_size / self.model.visual.patch_size
    }

    fn set_class(&mut self, name: &str) -> Result<(), DetectError> {
        self.class = Some(ClassPrompt::new(&self.tokenizer, name, self.head.config.prompt_len())?);
        Ok(())
    }

    fn detect(&self, pixels: Tensor<4>) -> Result<Detection, DetectError> {
        let out = self.forward(pixels, false)?;
        let image_score = (out.s_text.clone() + out.s_map.clone()).mul_scalar(0.5);
        Ok(Detection {
            image_score,
            map: out.smoothed,
            patch_map: out.patch_map,
            map_components: vec![],
            components: vec![("text".into(), out.s_text), ("map_topk".into(), out.s_map)],
        })
    }

    /// The official fusion: per class, min–max of s_text and of the top-k mean of the unsmoothed
    /// map, fused 0.5/0.5. `SetFusion` computes its map statistic on [`Detection::map`], which is
    /// smoothed here; the exact official statistic is the component `map_topk`.
    fn set_fusion(&self) -> SetFusion {
        SetFusion::MinMax {
            component: Some("text".into()),
            map_weight: 0.5,
            component_weight: 0.5,
            statistic: MapStatistic::TopKMean(self.top_k()),
            map_range: MapRange::AllPixels,
            normalize_component: true,
        }
    }
}
