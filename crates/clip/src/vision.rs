//! The image tower (`spec/clip.md` §3, §6, §7): patch embedding, positional grid resize, taps of the
//! raw residual stream, V-V attention variants and a per-block hook for residual adapters.
use burn::module::{Module, Param};
use burn::nn::{Initializer, LayerNorm};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, Tensor};

use crate::ClipError;
use crate::config::{Activation, VisionConfig};
use crate::posembed::{PosEmbedResize, resize_positional_embedding};
use crate::transformer::{ResidualBlock, layer_norm};

/// A module applied to the residual stream after chosen blocks (AA-CLIP's residual adapters,
/// MVFA's stream adapters). `block` is 1-based; return `x` unchanged for blocks you do not touch.
pub trait BlockHook {
    /// Called after block `block` (1-based) with its output `[B, T, D]`.
    fn after_block(&self, block: usize, x: Tensor<3>) -> Tensor<3>;
}

/// V-V attention variants (`spec/clip.md` §7.2–7.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VvAttention {
    /// AnomalyCLIP DPAM: from `from_block` (1-based) on, a second stream `x_d` (initialised to the
    /// stream entering that block) accumulates the V-V outputs computed from `ln_1` of the ordinary
    /// stream and skips the MLP. Taps from `from_block` on read `x_d`.
    Dual {
        /// First block (1-based) with V-V attention; AnomalyCLIP's `DPAM_layer = 20` on ViT-L is 6.
        from_block: usize,
    },
    /// AA-CLIP stage-1 "surgery": from `from_block` on, attention is replaced by V-V attention and
    /// the block keeps its residual and MLP.
    Replace {
        /// First block (1-based) with V-V attention.
        from_block: usize,
        /// Reproduce the official bug: attention runs across the images of the batch at each token
        /// position (sequence-first tensor read as batch-first) instead of across tokens.
        batch_axis_quirk: bool,
    },
}

/// What a vision forward should produce besides the final stream.
#[derive(Default, Clone, Copy)]
pub struct VisionForward<'a> {
    /// 1-based blocks whose output residual stream (with CLS) is returned, in this order.
    pub taps: &'a [usize],
    /// Optional V-V attention.
    pub vv: Option<VvAttention>,
    /// Optional per-block module.
    pub hook: Option<&'a dyn BlockHook>,
    /// Optional prompt tokens appended after the patch tokens (AdaCLIP's visual prompts).
    pub prompts: Option<&'a VisualPrompts>,
}

/// Prompt tokens appended to the image sequence (AdaCLIP's `PromptLayer.forward_visual`): before
/// the first listed block the tokens are **appended** after the patch tokens; before each later
/// listed block they **replace** the appended tokens; other blocks carry them unchanged. Taps and
/// the final stream are returned without them (`tokens = x[:-length]`).
pub struct VisualPrompts {
    /// `(0-based block index, tokens [B, n, D])`, in block order, every entry with the same `n`.
    pub layers: Vec<(usize, Tensor<3>)>,
}

impl VisualPrompts {
    /// The number of appended tokens (0 without entries).
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, |(_, t)| t.dims()[1])
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

/// Result of a vision forward.
pub struct VisionOutput {
    /// Residual stream `[B, 1 + G², D]` after each requested tap (after the hook of that block).
    pub taps: Vec<Tensor<3>>,
    /// Final residual stream of the ordinary path `[B, 1 + G², D]` (before `ln_post`).
    pub last: Tensor<3>,
}

/// The first `t` tokens of `[B, T, D]`.
fn drop_appended(x: Tensor<3>, t: usize) -> Tensor<3> {
    let [b, _, d] = x.dims();
    x.slice([0..b, 0..t, 0..d])
}

/// The ViT image tower.
#[derive(Module, Debug)]
pub struct VisionTransformer {
    /// Patch embedding, `[D, 3, P, P]`, no bias.
    pub conv1: Conv2d,
    /// CLS token `[D]`.
    pub class_embedding: Param<Tensor<1>>,
    /// Positional table at the checkpoint's native grid `[1 + G0², D]`.
    pub positional_embedding: Param<Tensor<2>>,
    /// LayerNorm before the transformer.
    pub ln_pre: LayerNorm,
    /// Residual blocks.
    pub resblocks: Vec<ResidualBlock>,
    /// LayerNorm of the pooled CLS token.
    pub ln_post: LayerNorm,
    /// Projection `[D, E]`, used as `x @ proj`.
    pub proj: Param<Tensor<2>>,
    /// Patch side.
    pub patch_size: usize,
    /// Native grid side G0.
    pub native_grid: usize,
    /// MLP activation.
    #[module(skip)]
    pub activation: Activation,
    /// Rule used when the input grid differs from the native one.
    #[module(skip)]
    pub pos_resize: PosEmbedResize,
}

impl VisionTransformer {
    /// Randomly initialised tower.
    pub fn new(config: &VisionConfig, embed_dim: usize, activation: Activation, device: &Device) -> Self {
        let d = config.width;
        let g = config.native_grid();
        // Parameters are lazy: a checkpoint load replaces them before they are ever materialised.
        let normal = Initializer::Normal { mean: 0.0, std: (d as f64).powf(-0.5) };
        Self {
            conv1: Conv2dConfig::new([3, d], [config.patch_size, config.patch_size])
                .with_stride([config.patch_size, config.patch_size])
                .with_bias(false)
                .init(device),
            class_embedding: normal.init([d], device),
            positional_embedding: normal.init([1 + g * g, d], device),
            ln_pre: layer_norm(d, device),
            resblocks: (0..config.layers).map(|_| ResidualBlock::new(d, config.heads, device)).collect(),
            ln_post: layer_norm(d, device),
            proj: normal.init([d, embed_dim], device),
            patch_size: config.patch_size,
            native_grid: g,
            activation,
            pos_resize: PosEmbedResize::AntialiasBicubic,
        }
    }

    /// Residual width D.
    pub fn width(&self) -> usize {
        self.class_embedding.dims()[0]
    }

    /// Grid side for a square input of side `size`.
    pub fn grid_for(&self, size: usize) -> usize {
        size / self.patch_size
    }

    /// Positional table for grid `g` (the native table, or its resize by `pos_resize`).
    pub fn positional_embedding_for(&self, g: usize) -> Tensor<2> {
        resize_positional_embedding(self.positional_embedding.val(), self.native_grid, g, self.pos_resize)
    }

    /// Patch tokens with CLS prepended and positions added, before `ln_pre`: `[B, 1 + G², D]`.
    /// (WinCLIP selects window tokens from this, `spec/clip.md` §7.4.)
    pub fn embed(&self, pixels: Tensor<4>) -> Result<Tensor<3>, ClipError> {
        let [b, c, h, w] = pixels.dims();
        if c != 3 || h != w || h < self.patch_size {
            return Err(ClipError::Shape(format!(
                "image batch must be [B, 3, S, S] with S ≥ {}, got [{b}, {c}, {h}, {w}]",
                self.patch_size
            )));
        }
        let g = h / self.patch_size;
        // PyTorch's strided convolution ignores trailing pixels that do not fill a patch.
        let pixels = if g * self.patch_size != h {
            let s = g * self.patch_size;
            pixels.slice([0..b, 0..3, 0..s, 0..s])
        } else {
            pixels
        };
        let d = self.width();
        let patches = self.conv1.forward(pixels).reshape([b, d, g * g]).swap_dims(1, 2);
        let cls = self.class_embedding.val().reshape([1, 1, d]).expand([b, 1, d]);
        let tokens = Tensor::cat(vec![cls, patches], 1);
        let pos = self.positional_embedding_for(g).unsqueeze::<3>();
        Ok(tokens + pos)
    }

    /// `ln_pre` and the blocks over given tokens `[B, T, D]` (from [`Self::embed`], possibly a subset).
    pub fn forward_tokens(&self, tokens: Tensor<3>, options: VisionForward<'_>) -> VisionOutput {
        let mut x = self.ln_pre.forward(tokens);
        let mut dual: Option<Tensor<3>> = None;
        let mut taps: Vec<Option<Tensor<3>>> = vec![None; options.taps.len()];
        let [_, t_image, _] = x.dims();
        let mut appended = 0;
        for (index, block) in self.resblocks.iter().enumerate() {
            let number = index + 1;
            if let Some(prompts) = options.prompts {
                for (layer, tokens) in &prompts.layers {
                    if *layer == index {
                        let [b, _, d] = x.dims();
                        let kept = x.slice([0..b, 0..t_image, 0..d]);
                        appended = tokens.dims()[1];
                        x = Tensor::cat(vec![kept, tokens.clone()], 1);
                    }
                }
            }
            match options.vv {
                Some(VvAttention::Dual { from_block }) if number >= from_block => {
                    let x_d = dual.take().unwrap_or_else(|| x.clone());
                    let (ordinary, vv) = block.attn.forward_dual(block.ln_1.forward(x.clone()));
                    dual = Some(x_d + vv);
                    x = block.forward_mlp(x + ordinary, self.activation);
                }
                Some(VvAttention::Replace { from_block, batch_axis_quirk }) if number >= from_block => {
                    let normed = block.ln_1.forward(x.clone());
                    let vv = if batch_axis_quirk {
                        block.attn.forward_vv(normed.swap_dims(0, 1)).swap_dims(0, 1)
                    } else {
                        block.attn.forward_vv(normed)
                    };
                    x = block.forward_mlp(x + vv, self.activation);
                }
                _ => x = block.forward(x, None, self.activation),
            }
            if let Some(hook) = options.hook {
                x = hook.after_block(number, x);
            }
            for (slot, &tap) in taps.iter_mut().zip(options.taps) {
                if tap == number {
                    let stream = dual.clone().unwrap_or_else(|| x.clone());
                    *slot = Some(if appended > 0 { drop_appended(stream, t_image) } else { stream });
                }
            }
        }
        if appended > 0 {
            x = drop_appended(x, t_image);
        }
        let taps = taps
            .into_iter()
            .zip(options.taps)
            .map(|(t, n)| t.unwrap_or_else(|| panic!("tap {n} is outside blocks 1..={}", self.resblocks.len())))
            .collect();
        VisionOutput { taps, last: x }
    }

    /// Full forward from pixels `[B, 3, S, S]` (normalised).
    pub fn forward(&self, pixels: Tensor<4>, options: VisionForward<'_>) -> Result<VisionOutput, ClipError> {
        if let Some(&bad) = options.taps.iter().find(|&&t| t == 0 || t > self.resblocks.len()) {
            return Err(ClipError::Config(format!("tap {bad} is outside blocks 1..={}", self.resblocks.len())));
        }
        let tokens = self.embed(pixels)?;
        Ok(self.forward_tokens(tokens, options))
    }

    /// `ln_post` on every token of a stream `[B, T, D]`.
    pub fn ln_post(&self, x: Tensor<3>) -> Tensor<3> {
        self.ln_post.forward(x)
    }

    /// `x @ proj` for `[B, T, D]` → `[B, T, E]`.
    pub fn project(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, t, d] = x.dims();
        let e = self.proj.dims()[1];
        x.reshape([b * t, d]).matmul(self.proj.val()).reshape([b, t, e])
    }

    /// CLIP image embedding `ln_post(CLS) @ proj` from a final stream: `[B, E]` (not normalised).
    pub fn pool(&self, last: Tensor<3>) -> Tensor<2> {
        let [b, _, d] = last.dims();
        let cls = last.slice([0..b, 0..1, 0..d]);
        let e = self.proj.dims()[1];
        self.project(self.ln_post(cls)).reshape([b, e])
    }

    /// Pixels → CLIP image embedding `[B, E]`.
    pub fn encode_image(&self, pixels: Tensor<4>) -> Result<Tensor<2>, ClipError> {
        let out = self.forward(pixels, VisionForward::default())?;
        Ok(self.pool(out.last))
    }
}
