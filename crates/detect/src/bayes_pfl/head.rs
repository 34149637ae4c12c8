//! The trainable head, the official `Context_Prompting` module (`spec/bayes-pfl.md` §3–§8): prompt
//! bank, Gaussian encoders, planar prompt flows, residual cross-attention (RCA), the image-score
//! mappings and the stage-2 `fuse` branch. Field names follow the official module names so that the
//! code reads against the checkpoint keys (`checkpoint.rs` maps them one to one).
//!
//! Conventions: N images, E = text width = embedding size (768), Dv = vision width (1024), T = G²
//! patch tokens, B prompts in the bank, P context and Q state vectors, K flow steps, R Monte-Carlo
//! samples, L patch layers, M = 2·B·R text embeddings per image.
use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use super::flow::{PlanarParams, planar_flows};
use crate::DetectError;
use crate::prompts::l2_normalize;

/// Dimensions of a head. The released checkpoints have B = 3, P = Q = 5, K = 10, L = 4,
/// Dv = 1024, E = 768 and 4 RCA heads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadConfig {
    /// B, prompts in the bank (`prompt_num`).
    pub prompt_num: usize,
    /// P, context vectors per prompt (`prompt_context_len`).
    pub context_len: usize,
    /// Q, state vectors per prompt (`prompt_state_len`).
    pub state_len: usize,
    /// K, planar flow steps (`num_flows`).
    pub num_flows: usize,
    /// L, patch layers read by RCA and `fuse` (`len(features_list)`).
    pub layers: usize,
    /// Dv, vision width of the backbone.
    pub vision_width: usize,
    /// E, text width of the backbone, which must equal its embedding size (the flow samples are
    /// added to token embeddings, the prompts' text features enter RCA).
    pub width: usize,
    /// RCA heads (4, fixed in the official `Zero_Parameter`).
    pub rca_heads: usize,
}

impl HeadConfig {
    /// The released configuration for a backbone of vision width `vision_width` and text width
    /// `width` (B = 3, P = Q = 5, K = 10, 4 layers, 4 RCA heads).
    pub fn official(vision_width: usize, width: usize) -> Self {
        Self { prompt_num: 3, context_len: 5, state_len: 5, num_flows: 10, layers: 4, vision_width, width, rca_heads: 4 }
    }

    /// Hidden width of the encoders and of `fuse` (vision width / 2).
    pub fn hidden(&self) -> usize {
        self.vision_width / 2
    }

    /// P + Q, the vectors that replace the placeholder token.
    pub fn prompt_len(&self) -> usize {
        self.context_len + self.state_len
    }

    /// Checks the divisibility rules.
    pub fn validate(&self) -> Result<(), DetectError> {
        let mut problems = Vec::new();
        for (name, v) in [
            ("prompt_num", self.prompt_num),
            ("context_len", self.context_len),
            ("state_len", self.state_len),
            ("num_flows", self.num_flows),
            ("layers", self.layers),
            ("vision_width", self.vision_width),
            ("width", self.width),
            ("rca_heads", self.rca_heads),
        ] {
            if v == 0 {
                problems.push(format!("{name} is 0"));
            }
        }
        if self.rca_heads > 0 && !self.width.is_multiple_of(self.rca_heads) {
            problems.push(format!("width {} is not divisible by {} RCA heads", self.width, self.rca_heads));
        }
        if !self.vision_width.is_multiple_of(2) {
            problems.push(format!("vision width {} is odd", self.vision_width));
        }
        if problems.is_empty() { Ok(()) } else { Err(DetectError::Invalid(format!("Bayes-PFL head: {}", problems.join("; ")))) }
    }
}

/// Which image-agnostic distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    /// `PFL_normal`, driving the normal state vectors.
    Normal,
    /// `PFL_abnormal`, driving the abnormal state vectors.
    Abnormal,
}

/// `InferenceBlock`: Linear → Softplus → Linear → Softplus → Linear (`module.{0,2,4}`).
#[derive(Module, Debug)]
pub struct InferenceBlock {
    /// `module.0`, in → hidden.
    pub layer0: Linear,
    /// `module.2`, hidden → hidden.
    pub layer2: Linear,
    /// `module.4`, hidden → out.
    pub layer4: Linear,
}

impl InferenceBlock {
    /// A block `input → hidden → hidden → output` (burn's default init; checkpoints replace it).
    pub fn new(input: usize, hidden: usize, output: usize, device: &Device) -> Self {
        Self {
            layer0: LinearConfig::new(input, hidden).init(device),
            layer2: LinearConfig::new(hidden, hidden).init(device),
            layer4: LinearConfig::new(hidden, output).init(device),
        }
    }

    /// Forward (PyTorch's Softplus: β = 1, threshold 20).
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let x = vlad_clip::precise::softplus(self.layer0.forward(x));
        let x = vlad_clip::precise::softplus(self.layer2.forward(x));
        self.layer4.forward(x)
    }
}

/// `Encoder`: the mean μ and the raw second output h of a diagonal Gaussian. The official code
/// returns `exp(½h)` and treats it as the variance, so the sampling std is `exp(¼h)`
/// (`spec/bayes-pfl.md` §4.1).
#[derive(Module, Debug)]
pub struct GaussianEncoder {
    /// μ.
    pub weight_mean: InferenceBlock,
    /// h (called log-variance in the official code).
    pub weight_log_variance: InferenceBlock,
}

impl GaussianEncoder {
    /// An encoder `E → hidden → hidden → E`.
    pub fn new(width: usize, hidden: usize, device: &Device) -> Self {
        Self { weight_mean: InferenceBlock::new(width, hidden, width, device), weight_log_variance: InferenceBlock::new(width, hidden, width, device) }
    }

    /// (μ, h) for inputs `[N, E]`.
    pub fn forward(&self, x: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        (self.weight_mean.forward(x.clone()), self.weight_log_variance.forward(x))
    }
}

/// The sampling standard deviation `exp(¼h)` for the encoder output h.
pub fn sampling_std<const D: usize>(h: Tensor<D>) -> Tensor<D> {
    h.mul_scalar(0.25).exp()
}

/// `PFL_context` (`PlanarPFL`): flow parameters amortised from the global image feature g.
#[derive(Module, Debug)]
pub struct ContextFlow {
    /// `amor_u`: E → K·E.
    pub amor_u: Linear,
    /// `amor_w`: E → K·E.
    pub amor_w: Linear,
    /// `amor_b`: E → K.
    pub amor_b: Linear,
}

impl ContextFlow {
    /// Parameters for `g` `[N, E]`: flow k of image n uses elements `k·E … k·E + E − 1`.
    pub fn params(&self, g: Tensor<2>, num_flows: usize) -> PlanarParams {
        let [n, e] = g.dims();
        PlanarParams {
            u: self.amor_u.forward(g.clone()).reshape([n, num_flows, e]),
            w: self.amor_w.forward(g.clone()).reshape([n, num_flows, e]),
            b: self.amor_b.forward(g).reshape([n, num_flows]),
        }
    }
}

/// `PFL_normal` / `PFL_abnormal` (`PlanarPFL_state`): free flow parameters and the learnable input
/// `state` (x_f), which the shared state encoder turns into the base distribution.
#[derive(Module, Debug)]
pub struct StateFlow {
    /// `amor_u` `[1, K, E, 1]` stored as `[K, E]`.
    pub amor_u: Param<Tensor<2>>,
    /// `amor_w` `[1, K, 1, E]` stored as `[K, E]`.
    pub amor_w: Param<Tensor<2>>,
    /// `amor_b` `[1, K, 1, 1]` stored as `[K]`.
    pub amor_b: Param<Tensor<1>>,
    /// `state` `[1, E]`.
    pub state: Param<Tensor<2>>,
}

impl StateFlow {
    /// Zero-initialised parameters (checkpoints and the training initialiser replace them).
    pub fn new(num_flows: usize, width: usize, device: &Device) -> Self {
        Self {
            amor_u: Param::from_tensor(Tensor::zeros([num_flows, width], device)),
            amor_w: Param::from_tensor(Tensor::zeros([num_flows, width], device)),
            amor_b: Param::from_tensor(Tensor::zeros([num_flows], device)),
            state: Param::from_tensor(Tensor::zeros([1, width], device)),
        }
    }

    /// The flow parameters as a batch of one.
    pub fn params(&self) -> PlanarParams {
        let [k, e] = self.amor_u.dims();
        PlanarParams { u: self.amor_u.val().reshape([1, k, e]), w: self.amor_w.val().reshape([1, k, e]), b: self.amor_b.val().reshape([1, k]) }
    }
}

/// The learnable prompt bank.
#[derive(Module, Debug)]
pub struct PromptBank {
    /// `prompt_context` `[B, P, E]`, shared by normal and abnormal prompts.
    pub context: Param<Tensor<3>>,
    /// `prompt_state_normal` `[B, Q, E]`.
    pub state_normal: Param<Tensor<3>>,
    /// `prompt_state_abnormal` `[B, Q, E]`.
    pub state_abnormal: Param<Tensor<3>>,
}

/// The two learnable temperatures (exp() is taken in use).
#[derive(Module, Debug)]
pub struct Temperatures {
    /// `temperature_pixel` (stored as `[1]`, a 0-d tensor in the checkpoints).
    pub pixel: Param<Tensor<1>>,
    /// `temperature_image`.
    pub image: Param<Tensor<1>>,
}

/// `Zero_Parameter`, the residual cross-attention: text queries attend over projected patch
/// tokens with no key/value projections (`spec/bayes-pfl.md` §6).
#[derive(Module, Debug)]
pub struct Rca {
    /// `q_proj_pre` (a Conv1d with kernel 1 in the checkpoint), E → E.
    pub q_proj_pre: Linear,
    /// `linear_proj.{l}`: per-layer Dv → E, no bias.
    pub linear_proj: Vec<Linear>,
    /// Heads (4).
    pub heads: usize,
}

impl Rca {
    /// Layer `layer` on normalised text features `[N, M, E]` and raw patch tokens `[N, T, Dv]`:
    /// returns the updated, renormalised text features `[N, M, E]` and the unit patch features
    /// `F_l` `[N, T, E]`. The softmax scale is `E^(−½)` (1/√768), not the head width's.
    pub fn forward(&self, layer: usize, text: Tensor<3>, patches: Tensor<3>) -> (Tensor<3>, Tensor<3>) {
        let dense = l2_normalize(self.linear_proj[layer].forward(patches));
        let [n, m, e] = text.dims();
        let [_, t, _] = dense.dims();
        let h = self.heads;
        let hw = e / h;
        let q = self.q_proj_pre.forward(text.clone()).reshape([n, m, h, hw]).swap_dims(1, 2);
        let kv = dense.clone().reshape([n, t, h, hw]).swap_dims(1, 2);
        let attention = softmax(q.matmul(kv.clone().swap_dims(2, 3)).mul_scalar((e as f64).powf(-0.5)), 3);
        let attended = attention.matmul(kv).swap_dims(1, 2).reshape([n, m, e]);
        (l2_normalize(attended + text), dense)
    }
}

/// `Global_Feature` (`fuse`): attention pooling of the concatenated patch layers, no non-linearity.
#[derive(Module, Debug)]
pub struct GlobalFeature {
    /// `fuse_modules`: L·Dv → Dv/2.
    pub fuse_modules: Linear,
    /// `compress`: Dv/2 → 1 (pooling logits).
    pub compress: Linear,
    /// `post_process`: Dv/2 → E.
    pub post_process: Linear,
}

impl GlobalFeature {
    /// `[N, E]` from the L patch layers `[N, T, Dv]`.
    pub fn forward(&self, patches: &[Tensor<3>]) -> Tensor<2> {
        let x = self.fuse_modules.forward(Tensor::cat(patches.to_vec(), 2));
        let weights = softmax(self.compress.forward(x.clone()), 1);
        let [n, _, hidden] = x.dims();
        let pooled = (weights * x).sum_dim(1).reshape([n, hidden]);
        self.post_process.forward(pooled)
    }
}

/// The whole trainable module.
#[derive(Module, Debug)]
pub struct BayesPflHead {
    /// Optimiser group 1 (lr 1e-3).
    pub prompts: PromptBank,
    /// Optimiser group 2 (lr 1e-2).
    pub temperatures: Temperatures,
    /// `PFL_context` flow parameters (group 3).
    pub context_flow: ContextFlow,
    /// `PFL_normal` (group 3).
    pub normal_flow: StateFlow,
    /// `PFL_abnormal` (group 3).
    pub abnormal_flow: StateFlow,
    /// Image-specific base distribution from g (group 4; alias `PFL_context.encoder`).
    pub context_encoder: GaussianEncoder,
    /// Image-agnostic base distribution, shared by the normal and abnormal flows (group 4; aliases
    /// `PFL_{normal,abnormal}.encoder`).
    pub state_encoder: GaussianEncoder,
    /// Residual cross-attention (group 4).
    pub rca: Rca,
    /// Text-branch mapping of the image score (group 4 and stage 2).
    pub class_mapping: Linear,
    /// Stage-2 patch pooling.
    pub fuse: GlobalFeature,
    /// Stage-2 image mapping.
    pub image_mapping: Linear,
    /// Dimensions.
    #[module(skip)]
    pub config: HeadConfig,
}

/// Samples of the image-specific distribution for a batch.
#[derive(Debug, Clone)]
pub struct ContextSamples {
    /// μ `[N, E]`.
    pub mu: Tensor<2>,
    /// h `[N, E]` (variance `exp(½h)`).
    pub h: Tensor<2>,
    /// Base samples `[R, N, E]`.
    pub z0: Tensor<3>,
    /// Flow outputs `[R, N, E]`.
    pub zk: Tensor<3>,
    /// Summed log-determinants `[R, N]`.
    pub log_det: Tensor<2>,
}

/// Samples of one image-agnostic distribution.
#[derive(Debug, Clone)]
pub struct StateSamples {
    /// μ `[1, E]`.
    pub mu: Tensor<2>,
    /// h `[1, E]`.
    pub h: Tensor<2>,
    /// Base samples `[R, E]`.
    pub z0: Tensor<2>,
    /// Flow outputs `[R, E]`.
    pub zk: Tensor<2>,
    /// Summed log-determinants `[R]`.
    pub log_det: Tensor<1>,
}

impl BayesPflHead {
    /// A head with burn's default initialisation (replaced by a checkpoint load or by the
    /// official initialiser of the training code).
    pub fn new(config: &HeadConfig, device: &Device) -> Result<Self, DetectError> {
        config.validate()?;
        let (e, dv, hid) = (config.width, config.vision_width, config.hidden());
        let (b, p, q, k) = (config.prompt_num, config.context_len, config.state_len, config.num_flows);
        let zeros3 = |shape: [usize; 3]| Param::from_tensor(Tensor::zeros(shape, device));
        let scalar = || Param::from_tensor(Tensor::from_data(TensorData::new(vec![(1.0f32 / 0.07).ln()], [1]), device));
        Ok(Self {
            prompts: PromptBank { context: zeros3([b, p, e]), state_normal: zeros3([b, q, e]), state_abnormal: zeros3([b, q, e]) },
            temperatures: Temperatures { pixel: scalar(), image: scalar() },
            context_flow: ContextFlow {
                amor_u: LinearConfig::new(e, k * e).init(device),
                amor_w: LinearConfig::new(e, k * e).init(device),
                amor_b: LinearConfig::new(e, k).init(device),
            },
            normal_flow: StateFlow::new(k, e, device),
            abnormal_flow: StateFlow::new(k, e, device),
            context_encoder: GaussianEncoder::new(e, hid, device),
            state_encoder: GaussianEncoder::new(e, hid, device),
            rca: Rca {
                q_proj_pre: LinearConfig::new(e, e).init(device),
                linear_proj: (0..config.layers).map(|_| LinearConfig::new(dv, e).with_bias(false).init(device)).collect(),
                heads: config.rca_heads,
            },
            class_mapping: LinearConfig::new(e, e).init(device),
            fuse: GlobalFeature {
                fuse_modules: LinearConfig::new(config.layers * dv, hid).init(device),
                compress: LinearConfig::new(hid, 1).init(device),
                post_process: LinearConfig::new(hid, e).init(device),
            },
            image_mapping: LinearConfig::new(e, e).init(device),
            config: config.clone(),
        })
    }

    /// The device of the parameters.
    pub fn device(&self) -> Device {
        self.class_mapping.weight.device()
    }

    /// Image-specific samples from the global features `g` `[N, E]` and noise `eps` `[R, N, E]`:
    /// `z0 = μ + exp(¼h)·ε`, pushed through the image's amortised flows.
    pub fn context_samples(&self, g: Tensor<2>, eps: Tensor<3>) -> ContextSamples {
        let [n, e] = g.dims();
        let (mu, h) = self.context_encoder.forward(g.clone());
        let z0 = mu.clone().reshape([1, n, e]) + sampling_std(h.clone()).reshape([1, n, e]) * eps;
        let params = self.context_flow.params(g, self.config.num_flows);
        let (zk, log_det) = planar_flows(z0.clone(), &params);
        ContextSamples { mu, h, z0, zk, log_det }
    }

    /// Image-agnostic samples for noise `eps` `[R, E]` (the flow's input is its learnable `state`;
    /// the encoder is shared by both kinds).
    pub fn state_samples(&self, kind: StateKind, eps: Tensor<2>) -> StateSamples {
        let flow = match kind {
            StateKind::Normal => &self.normal_flow,
            StateKind::Abnormal => &self.abnormal_flow,
        };
        let [r, e] = eps.dims();
        let (mu, h) = self.state_encoder.forward(flow.state.val());
        let z0 = mu.clone() + sampling_std(h.clone()) * eps;
        let (zk, log_det) = planar_flows(z0.clone().reshape([r, 1, e]), &flow.params());
        StateSamples { mu, h, z0, zk: zk.reshape([r, e]), log_det: log_det.reshape([r]) }
    }

    /// The P + Q vectors that replace the placeholder, for every image, state, sample and prompt:
    /// `[N·2·R·B, P+Q, E]`, sequence `((n·2 + s)·R + j)·B + b` with s = 0 normal, 1 abnormal —
    /// the official order `[normal j·B+b | abnormal j·B+b]` per image. The context sample
    /// `zk_context[j, n]` is added to every context row of both states, `zk_normal[j]` /
    /// `zk_abnormal[j]` to every state row.
    pub fn prompt_vectors(&self, zk_context: Tensor<3>, zk_normal: Tensor<2>, zk_abnormal: Tensor<2>) -> Tensor<3> {
        let c = &self.config;
        let (b, p, q, e) = (c.prompt_num, c.context_len, c.state_len, c.width);
        let [r, n, _] = zk_context.dims();
        let context = self.prompts.context.val().reshape([1, 1, 1, b, p, e])
            + zk_context.swap_dims(0, 1).reshape([n, 1, r, 1, 1, e]);
        let context = context.expand([n, 2, r, b, p, e]);
        let states = Tensor::stack::<4>(vec![self.prompts.state_normal.val(), self.prompts.state_abnormal.val()], 0).reshape([1, 2, 1, b, q, e])
            + Tensor::stack::<3>(vec![zk_normal, zk_abnormal], 0).reshape([1, 2, r, 1, 1, e]);
        let states = states.expand([n, 2, r, b, q, e]);
        Tensor::cat(vec![context, states], 4).reshape([n * 2 * r * b, p + q, e])
    }

    /// The image embedding of the text branch, normalised: stage 1 `n(g)`, stage 2
    /// `n(image_mapping(g + fuse(patches)))`.
    pub fn image_embedding(&self, global: Tensor<2>, patches: &[Tensor<3>], stage: Stage) -> Tensor<2> {
        match stage {
            Stage::One => l2_normalize(global),
            Stage::Two => l2_normalize(self.image_mapping.forward(global + self.fuse.forward(patches))),
        }
    }

    /// Image logits `exp(τ_img) · n(class_mapping(t))·e` for text features `[N, M, E]` and image
    /// embeddings `[N, E]` → `[N, M]`.
    pub fn image_logits(&self, text: Tensor<3>, image: Tensor<2>) -> Tensor<2> {
        let [n, m, e] = text.dims();
        let mapped = l2_normalize(self.class_mapping.forward(text));
        let logits = mapped.matmul(image.reshape([n, e, 1])).reshape([n, m]);
        logits * self.temperatures.image.val().exp().reshape([1, 1])
    }

    /// Patch logits of layer `layer`: `exp(τ_pix) · F_l · T'_lᵀ` → `[N, T, M]`, plus the RCA
    /// outputs (T'_l, F_l).
    pub fn pixel_logits(&self, layer: usize, text: Tensor<3>, patches: Tensor<3>) -> (Tensor<3>, Tensor<3>, Tensor<3>) {
        let (updated, dense) = self.rca.forward(layer, text, patches);
        let logits = dense.clone().matmul(updated.clone().swap_dims(1, 2)) * self.temperatures.pixel.val().exp().reshape([1, 1, 1]);
        (logits, updated, dense)
    }
}

/// Which image head a checkpoint uses (`spec/bayes-pfl.md` §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    /// `e = n(g)`.
    One,
    /// `e = n(image_mapping(g + fuse(patches)))` (the released checkpoints).
    Two,
}

impl Stage {
    /// 1 or 2.
    pub fn number(self) -> u32 {
        match self {
            Self::One => 1,
            Self::Two => 2,
        }
    }

    /// From 1 or 2.
    pub fn from_number(n: u32) -> Option<Self> {
        match n {
            1 => Some(Self::One),
            2 => Some(Self::Two),
            _ => None,
        }
    }
}
