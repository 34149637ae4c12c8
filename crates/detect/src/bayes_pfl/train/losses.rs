//! Bayes-PFL's losses (`spec/bayes-pfl.md` §8; the official `loss.py` and `train.py`). They are
//! not the Loss_ToolBox focal/dice of `crate::losses`: the focal loss here averages foreground and
//! background pixels separately and adds the two means, and the dice loss is foreground-only and
//! summed over the whole batch.
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};

use crate::prompts::l2_normalize;

/// `FocalLoss` (γ = 2, α = 1, ε = 1e-8) on the anomalous-class probability `p_a` and the
/// normal-class probability `p_n` `[N, H, W]` of the selected prompt pair, against the 0/1 mask
/// `gt`: per pixel `pt = p[gt]`, `f = −(1 − pt)²·ln(pt + 1e-8)`; the loss is the mean of f over the
/// foreground pixels of the batch plus the mean over the background pixels (each denominator
/// + 1e-8, so an empty set contributes 0).
pub fn focal_loss(p_anomalous: Tensor<3>, p_normal: Tensor<3>, gt: Tensor<3>) -> Tensor<1> {
    let background = gt.clone().neg().add_scalar(1.0);
    let pt = p_anomalous * gt.clone() + p_normal * background.clone();
    let focal = pt.clone().neg().add_scalar(1.0).powi_scalar(2) * pt.add_scalar(1e-8).log().neg();
    let fg = (focal.clone() * gt.clone()).sum() / gt.sum().add_scalar(1e-8);
    let bg = (focal * background.clone()).sum() / background.sum().add_scalar(1e-8);
    fg + bg
}

/// `DiceLoss` as used (foreground only, ε = 1e-5, one value for the whole batch):
/// `1 − (2·Σ p_a·gt + ε)/(Σ p_a + Σ gt + ε)`.
pub fn dice_loss(p_anomalous: Tensor<3>, gt: Tensor<3>) -> Tensor<1> {
    let intersection = (p_anomalous.clone() * gt.clone()).sum();
    let union = p_anomalous.sum() + gt.sum();
    (intersection.mul_scalar(2.0).add_scalar(1e-5) / union.add_scalar(1e-5)).neg().add_scalar(1.0)
}

/// `Orthogonal_Loss` on one group of text features `[N, B, E]`: cosine Gram matrices (features
/// renormalised, as `F.normalize` does), squared, diagonal zeroed, mean over the N·B·B entries.
pub fn orthogonality(group: Tensor<3>) -> Tensor<1> {
    let [n, b, _] = group.dims();
    let unit = l2_normalize(group);
    let gram = unit.clone().matmul(unit.swap_dims(1, 2)).powi_scalar(2);
    let off_diagonal = Tensor::<2>::eye(b, &gram.device()).neg().add_scalar(1.0).reshape([1, b, b]);
    (gram * off_diagonal).sum().div_scalar((n * b * b) as f64)
}

/// `nn.CrossEntropyLoss()` (mean over the batch) of logits `[N, C]` and class indices.
pub fn cross_entropy(logits: Tensor<2>, labels: &[usize]) -> Tensor<1> {
    let [n, c] = logits.dims();
    assert_eq!(labels.len(), n, "{} labels for {n} logits", labels.len());
    let device = logits.device();
    let index = Tensor::<1, Int>::from_data(TensorData::new(labels.iter().map(|&l| l as i64).collect::<Vec<_>>(), [n]), &device);
    let onehot = index.one_hot::<2>(c).float();
    let onehot = if logits.is_autodiff() { onehot.autodiff() } else { onehot };
    (log_softmax(logits, 1) * onehot).sum().div_scalar(n as f64).neg()
}
