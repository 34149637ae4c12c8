//! CLIP-AD's staged dual-path vision encoder (`spec/clip-ad.md` §2), on the backbone's own blocks.
//!
//! Every block computes, from `ln_1` of the **original** stream, the ordinary attention `A` and the
//! V-V attention `U` through the same `out_proj`. The original stream is plain CLIP
//! (`Y = X + A`, `X' = Y + MLP(ln_2 Y)`); the surgery stream is the plain sum of `U` over the
//! blocks of a stage (`L/4` blocks), restarted at every stage. Per tap `k`:
//! * `S_k = ln_post([O_k CLS; surgery patches]) @ proj` (the surgery stream with the original
//!   path's CLS row);
//! * `O_k`, the raw original-path tokens.
//!
//! **Aliasing** (the official in-place `+=`, reproduced by default): the tensor stored at tap `k`
//! is the one block `k + 1` adds its attention to, so `O_k = Y_{k+1}` for `k < L` (the mid-block
//! state of the next block), and its CLS row is the one copied into `S_k`; a surgery tap before
//! the end of its stage keeps accumulating to the stage end. `clean_taps` stores `X_k` and the
//! surgery sum after block `k` instead (not the official behaviour: the released SDP+ layers were
//! trained on the aliased taps).
use burn::tensor::Tensor;
use vlad_clip::vision::VisionTransformer;

use crate::DetectError;

/// The two outputs per tap.
pub struct DualPathTaps {
    /// `S_k`, `[B, T, E]` (after `ln_post` and `proj`, not normalised).
    pub surgery: Vec<Tensor<3>>,
    /// `O_k`, `[B, T, D]` (raw).
    pub original: Vec<Tensor<3>>,
}

/// Runs the dual path over `pixels` `[B, 3, S, S]` (normalised) and returns the outputs at the
/// 1-based blocks `taps`.
pub fn staged_dual_path(visual: &VisionTransformer, pixels: Tensor<4>, taps: &[usize], clean_taps: bool) -> Result<DualPathTaps, DetectError> {
    let layers = visual.resblocks.len();
    if layers < 4 || !layers.is_multiple_of(4) {
        return Err(DetectError::Invalid(format!("CLIP-AD's stages need a vision depth divisible by 4, got {layers} blocks")));
    }
    if let Some(bad) = taps.iter().find(|&&t| t == 0 || t > layers) {
        return Err(DetectError::Invalid(format!("CLIP-AD tap {bad} is outside vision blocks 1..={layers}")));
    }
    let stage = layers / 4;
    let mut x = visual.ln_pre.forward(visual.embed(pixels)?);
    let mut z: Option<Tensor<3>> = None;
    let mut original: Vec<Option<Tensor<3>>> = vec![None; taps.len()];
    let mut surgery: Vec<Option<Tensor<3>>> = vec![None; taps.len()];
    for (count, block) in visual.resblocks.iter().enumerate() {
        let number = count + 1;
        let (ordinary, vv) = block.attn.forward_dual(block.ln_1.forward(x.clone()));
        z = Some(match z.take() {
            Some(sum) if !count.is_multiple_of(stage) => sum + vv,
            _ => vv,
        });
        let y = x + ordinary;
        for (slot, &tap) in taps.iter().enumerate() {
            // The official in-place add of this block's attention lands in the tensor stored at
            // tap `number − 1`; the surgery sum stored earlier in this stage keeps growing.
            if !clean_taps && tap + 1 == number {
                original[slot] = Some(y.clone());
            }
            if !clean_taps && tap < number && (tap - 1) / stage == count / stage {
                surgery[slot] = z.clone();
            }
        }
        x = block.forward_mlp(y, visual.activation);
        for (slot, &tap) in taps.iter().enumerate() {
            if tap == number {
                original[slot] = Some(x.clone());
                surgery[slot] = z.clone();
            }
        }
    }
    let mut out = DualPathTaps { surgery: Vec::with_capacity(taps.len()), original: Vec::with_capacity(taps.len()) };
    for (s, o) in surgery.into_iter().zip(original) {
        let (s, o) = (s.expect("every tap is reached"), o.expect("every tap is reached"));
        let [b, t, d] = s.dims();
        let with_cls = Tensor::cat(vec![o.clone().slice([0..b, 0..1, 0..d]), s.slice([0..b, 1..t, 0..d])], 1);
        out.surgery.push(visual.project(visual.ln_post(with_cls)));
        out.original.push(o);
    }
    Ok(out)
}
