//! Training losses shared by the trained detectors (AA-CLIP, Bayes-PFL). Both repositories copy
//! the focal loss of Hsuxu's `Loss_ToolBox-PyTorch` and a binary Dice loss; the functions here are
//! those losses with their defaults exposed, written on plain tensors so that they run with or
//! without autodiff.
use burn::tensor::Tensor;

/// `FocalLoss(apply_nonlin=None, alpha=None, gamma, smooth, size_average=True)` of
/// Loss_ToolBox on probabilities `probs` `[B, C, H, W]` (already normalised over C) and class
/// indices `target` `[B, H, W]` (stored as floats, e.g. a 0/1 mask for two classes).
///
/// Per pixel: the one-hot target is clamped to `[smooth/(C−1), 1 − smooth]`,
/// `pt = Σ_c onehot_c · p_c + smooth`, and the loss is the mean over all pixels of
/// `−(1 − pt)^γ · ln(pt)` (α = None weighs every class 1). The defaults of the repositories are
/// γ = 2 and smooth = 1e-5.
pub fn focal_loss(probs: Tensor<4>, target: Tensor<3>, gamma: f64, smooth: f64) -> Tensor<1> {
    let [b, c, h, w] = probs.dims();
    assert_eq!(target.dims(), [b, h, w], "focal loss: target {:?} does not match probabilities {:?}", target.dims(), probs.dims());
    assert!(c >= 2, "focal loss needs at least two classes, got {c}");
    let low = smooth / (c as f64 - 1.0);
    let high = 1.0 - smooth;
    let target = target.unsqueeze_dim::<4>(1);
    let mut pt: Option<Tensor<3>> = None;
    for class in 0..c {
        let onehot = target.clone().equal_elem(class as f32).float().clamp(low, high);
        let term = (onehot * probs.clone().narrow(1, class, 1)).reshape([b, h, w]);
        pt = Some(match pt {
            Some(sum) => sum + term,
            None => term,
        });
    }
    let pt = pt.expect("at least two classes").add_scalar(smooth);
    let weight = pt.clone().neg().add_scalar(1.0).powf_scalar(gamma);
    (weight * pt.log()).neg().mean()
}

/// `BinaryDiceLoss` (smooth 1) of the repositories on `input` and `target` `[B, …]`: per sample
/// `dice_b = (2·Σ p·t + smooth)/(Σ p + Σ t + smooth)`, loss `1 − mean_b dice_b`.
pub fn binary_dice_loss<const D: usize>(input: Tensor<D>, target: Tensor<D>, smooth: f64) -> Tensor<1> {
    let dims = input.dims();
    assert_eq!(dims, target.dims(), "dice loss: input {:?} and target {:?} differ", dims, target.dims());
    let b = dims[0];
    let input = input.reshape([b as i64, -1]);
    let target = target.reshape([b as i64, -1]);
    let intersection = (input.clone() * target.clone()).sum_dim(1);
    let dice = intersection.mul_scalar(2.0).add_scalar(smooth) / (input.sum_dim(1) + target.sum_dim(1)).add_scalar(smooth);
    dice.mean().neg().add_scalar(1.0)
}
