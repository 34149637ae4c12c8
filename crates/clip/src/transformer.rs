//! The pre-LN residual block shared by both towers (`spec/clip.md` §3.2), with the attention
//! variants the methods need: causal (text), V-V (AnomalyCLIP DPAM, AA-CLIP stage-1 surgery).
use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::{Bool, Device, Tensor};

use crate::config::Activation;

/// LayerNorm epsilon of every CLIP LayerNorm.
pub const LN_EPS: f64 = 1e-5;

/// A LayerNorm with CLIP's epsilon.
pub fn layer_norm(width: usize, device: &Device) -> LayerNorm {
    LayerNormConfig::new(width).with_epsilon(LN_EPS).init(device)
}

/// Multi-head self-attention with OpenAI's packed projection (`in_proj_weight` rows q | k | v).
#[derive(Module, Debug)]
pub struct Attention {
    /// Packed q/k/v projection, burn layout `[D, 3D]`.
    pub in_proj: Linear,
    /// Output projection `[D, D]`.
    pub out_proj: Linear,
    /// Number of heads.
    pub heads: usize,
}

/// q, k, v split into heads: each `[B, H, T, head_width]`.
struct Qkv {
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
}

impl Attention {
    /// Randomly initialised attention of width `width`.
    pub fn new(width: usize, heads: usize, device: &Device) -> Self {
        Self {
            in_proj: LinearConfig::new(width, 3 * width).init(device),
            out_proj: LinearConfig::new(width, width).init(device),
            heads,
        }
    }

    fn qkv(&self, x: Tensor<3>) -> Qkv {
        let [b, t, d] = x.dims();
        let hw = d / self.heads;
        let packed = self.in_proj.forward(x).reshape([b, t, 3, self.heads, hw]);
        let part = |i: usize| {
            packed
                .clone()
                .slice([0..b, 0..t, i..i + 1, 0..self.heads, 0..hw])
                .reshape([b, t, self.heads, hw])
                .swap_dims(1, 2)
        };
        Qkv { q: part(0), k: part(1), v: part(2) }
    }

    fn scale(&self, hw: usize) -> f64 {
        1.0 / (hw as f64).sqrt()
    }

    /// softmax(a·bᵀ·scale [masked]) · v, heads merged back to `[B, T, D]` (before `out_proj`).
    fn attend(&self, a: Tensor<4>, b: Tensor<4>, v: Tensor<4>, mask: Option<&Tensor<2, Bool>>) -> Tensor<3> {
        let [batch, heads, t, hw] = a.dims();
        let mut scores = a.matmul(b.swap_dims(2, 3)).mul_scalar(self.scale(hw));
        if let Some(mask) = mask {
            let [tq, tk] = mask.dims();
            let mask = mask.clone().reshape([1, 1, tq, tk]).expand([batch, heads, tq, tk]);
            scores = scores.mask_fill(mask, f32::NEG_INFINITY);
        }
        softmax(scores, 3).matmul(v).swap_dims(1, 2).reshape([batch, t, heads * hw])
    }

    /// Standard attention; `mask` is `true` where a query may not see a key.
    pub fn forward(&self, x: Tensor<3>, mask: Option<&Tensor<2, Bool>>) -> Tensor<3> {
        let Qkv { q, k, v } = self.qkv(x);
        self.out_proj.forward(self.attend(q, k, v, mask))
    }

    /// AnomalyCLIP DPAM: the ordinary output and the V-V output (q and k replaced by v), both
    /// through the same `out_proj`.
    pub fn forward_dual(&self, x: Tensor<3>) -> (Tensor<3>, Tensor<3>) {
        let Qkv { q, k, v } = self.qkv(x);
        let ordinary = self.attend(q, k, v.clone(), None);
        let vv = self.attend(v.clone(), v.clone(), v, None);
        (self.out_proj.forward(ordinary), self.out_proj.forward(vv))
    }

    /// V-V attention only: `out_proj(softmax(v·vᵀ·s)·v)` (AA-CLIP stage-1 surgery).
    pub fn forward_vv(&self, x: Tensor<3>) -> Tensor<3> {
        let Qkv { v, .. } = self.qkv(x);
        self.out_proj.forward(self.attend(v.clone(), v.clone(), v, None))
    }
}

/// The two-layer MLP `c_proj(act(c_fc(x)))`.
#[derive(Module, Debug)]
pub struct Mlp {
    /// `D → 4D`.
    pub c_fc: Linear,
    /// `4D → D`.
    pub c_proj: Linear,
}

impl Mlp {
    /// Randomly initialised MLP.
    pub fn new(width: usize, device: &Device) -> Self {
        Self { c_fc: LinearConfig::new(width, 4 * width).init(device), c_proj: LinearConfig::new(4 * width, width).init(device) }
    }

    /// Forward with the given activation.
    pub fn forward(&self, x: Tensor<3>, activation: Activation) -> Tensor<3> {
        let h = self.c_fc.forward(x);
        let h = match activation {
            Activation::Gelu => crate::precise::gelu(h),
            Activation::QuickGelu => h.clone() * sigmoid(h.mul_scalar(1.702)),
        };
        self.c_proj.forward(h)
    }
}

/// One pre-LN residual block.
#[derive(Module, Debug)]
pub struct ResidualBlock {
    /// Pre-attention LayerNorm.
    pub ln_1: LayerNorm,
    /// Self-attention.
    pub attn: Attention,
    /// Pre-MLP LayerNorm.
    pub ln_2: LayerNorm,
    /// MLP.
    pub mlp: Mlp,
}

impl ResidualBlock {
    /// Randomly initialised block.
    pub fn new(width: usize, heads: usize, device: &Device) -> Self {
        Self {
            ln_1: layer_norm(width, device),
            attn: Attention::new(width, heads, device),
            ln_2: layer_norm(width, device),
            mlp: Mlp::new(width, device),
        }
    }

    /// `x + attn(ln_1 x)`, then `x + mlp(ln_2 x)`.
    pub fn forward(&self, x: Tensor<3>, mask: Option<&Tensor<2, Bool>>, activation: Activation) -> Tensor<3> {
        let x = x.clone() + self.attn.forward(self.ln_1.forward(x), mask);
        self.forward_mlp(x, activation)
    }

    /// The MLP half: `x + mlp(ln_2 x)`.
    pub fn forward_mlp(&self, x: Tensor<3>, activation: Activation) -> Tensor<3> {
        x.clone() + self.mlp.forward(self.ln_2.forward(x), activation)
    }
}

/// The strictly-upper-triangular causal mask `[t, t]` (`true` = hidden).
pub fn causal_mask(t: usize, device: &Device) -> Tensor<2, Bool> {
    Tensor::<2, Bool>::tril_mask([t, t], 0, device)
}
